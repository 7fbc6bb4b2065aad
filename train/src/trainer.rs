//! `facegate-train train`: the Siamese encoder trained with tch on a folder of labelled faces.
//!
//! Pipeline: scan (hashes, duplicates) → split by person → detect + align every image once
//! (cached) → optional softmax pre-training of a classifier head over the training people (the
//! encoder's last hidden layer is the embedding) → contrastive or triplet training on P×K batches
//! with online mining → per-epoch validation loss and EER on the validation people, using an
//! exponential moving average of the weights → early stopping, best checkpoint, learning curves.

use anyhow::{bail, Context, Result};
use facegate_face::{preprocess, FaceFinder, YuNet};
use facegate_shared::synthetic::SplitMix64;
use facegate_shared::{gallery_file::write_atomic, ChannelOrder, InputSpec, Scores};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tch::{nn, Device, Kind, Tensor};

use crate::curves::EpochMetrics;
use crate::losses::{contrastive_loss, pairwise_distances, triplet_loss, Mining};
use crate::model::{l2_normalise, ArchConfig};
use crate::net::{is_onnx, BaseRef, Freeze, ImportedBase, Net};
use crate::onnx::import::{FrozenCut, OnnxNet};
use crate::optim::{Optimizer, OptimizerKind};
use facegate_hostkit::data::{aligned_crops, scan, ImageEntry, Splits};

/// Grey input mean and std on the 0–255 scale: maps pixels to `[-1, 1]`.
pub const GREY_MEAN: f32 = 127.5;
pub const GREY_STD: f32 = 127.5;
/// Default margins, chosen for distances in `[0, 2]`.
pub const DEFAULT_TRIPLET_MARGIN: f64 = 0.4;
pub const DEFAULT_CONTRASTIVE_MARGIN: f64 = 1.4;

/// Which metric loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum LossKind {
    Contrastive,
    Triplet,
}

/// Where to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum DeviceArg {
    /// CUDA when present, otherwise CPU.
    Auto,
    Cpu,
    Cuda,
}

impl DeviceArg {
    /// The tch device; `cuda` without a GPU is an error.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceArg::Auto => Ok(Device::cuda_if_available()),
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceArg::Cuda => bail!("--device cuda was requested but no CUDA device is available; use --device cpu"),
        }
    }
}

/// Training settings (the CLI flags, saved beside every checkpoint).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct TrainArgs {
    /// Folder with one sub-folder of photos per person (DATA/<person>/<image>).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder for checkpoints, splits, metrics and plots.
    #[arg(long, short = 'o', default_value = "runs/train")]
    pub out: PathBuf,
    /// Seed for the split, sampling, augmentation and initialisation.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Device: auto picks CUDA when present.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Metric loss.
    #[arg(long, value_enum, default_value = "triplet")]
    pub loss: LossKind,
    /// Triplet mining strategy.
    #[arg(long, value_enum, default_value = "batch-hard")]
    pub mining: Mining,
    /// Loss margin on the unit sphere (default 0.4 for triplet, 1.4 for contrastive).
    #[arg(long)]
    pub margin: Option<f64>,
    /// Steps of softmax classifier pre-training before the metric loss (0 to skip).
    #[arg(long, default_value_t = 500)]
    pub pretrain_steps: usize,
    /// Steps of metric-loss training.
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Steps per epoch (validation, metrics and checkpoint after each).
    #[arg(long, default_value_t = 100)]
    pub epoch_steps: usize,
    /// People per batch (P).
    #[arg(long, default_value_t = 8)]
    pub people_per_batch: usize,
    /// Images per person per batch (K).
    #[arg(long, default_value_t = 4)]
    pub images_per_person: usize,
    /// Peak learning rate (cosine decay within each phase).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Optimiser.
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerKind,
    /// Decay of the weight average used for validation and checkpoints (0 disables).
    #[arg(long, default_value_t = 0.995)]
    pub ema: f64,
    /// Epochs without a better validation EER before stopping.
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// People held out for validation.
    #[arg(long, default_value_t = 4)]
    pub val_people: usize,
    /// People held out for the final test.
    #[arg(long, default_value_t = 8)]
    pub test_people: usize,
    /// Start from these weights: a `.safetensors` checkpoint of the built-in encoder, or a
    /// pretrained ONNX encoder with its card beside it (e.g. models/face_recognition_sface_2021dec.onnx),
    /// imported into tch with its own architecture and fine-tuned.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Layers kept fixed (transfer learning; needs --init-from): N = the stem and the first N
    /// residual blocks of the built-in encoder, or the first N layers with weights of an imported
    /// one; `backbone` = everything before the embedding (fully connected) layer.
    #[arg(long, default_value = "none")]
    pub freeze: Freeze,
    /// Continue an interrupted run from OUT/last.
    #[arg(long)]
    pub resume: bool,
    /// Turn off augmentation.
    #[arg(long)]
    pub no_augment: bool,
    /// Cache folder for aligned crops.
    #[arg(long, default_value = ".cache")]
    pub cache: PathBuf,
    /// YuNet detector model.
    #[arg(long, default_value = "models/face_detection_yunet_2023mar.onnx")]
    pub detector: PathBuf,
    /// Stop after this many steps as if interrupted (for resume tests).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// Person-k-fold: the number of person-disjoint folds (with --fold; `facegate-train cv` runs
    /// them all). The fold's people are the test people (--test-people is then not used) and
    /// --val-people of the other folds validate.
    #[arg(long, requires = "fold")]
    #[serde(default)]
    pub folds: Option<usize>,
    /// Person-k-fold: which fold (0 to FOLDS − 1) is tested.
    #[arg(long, requires = "folds")]
    #[serde(default)]
    pub fold: Option<usize>,
    /// Distil from this pretrained ONNX encoder (its card beside it), e.g.
    /// models/face_recognition_sface_2021dec.onnx: imported through the ONNX bridge, frozen, in
    /// evaluation mode, run once on the training people's aligned faces (cached), and the
    /// student's cosine similarities within each batch are pulled towards the teacher's.
    #[arg(long)]
    #[serde(default)]
    pub teacher: Option<PathBuf>,
    /// What is distilled (with --teacher): `relational` (the student's cosine similarities within
    /// each batch pulled towards the teacher's), `embedding` (the student's last hidden layer,
    /// through a trained projection, regressed onto the teacher's embedding), or `both`.
    #[arg(long, value_enum, default_value = "relational")]
    #[serde(default)]
    pub distill: DistillKind,
    /// With --teacher: also distil on this many blends of two training people's faces (new
    /// faces, none a training person), 32 of them beside each batch (0: none). They go through
    /// the student with the batch, so they share its batch-norm statistics.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub distill_blends: usize,
    /// Weight of the distillation term (with --teacher).
    #[arg(long, default_value_t = DEFAULT_DISTILL_WEIGHT)]
    #[serde(default = "default_distill_weight")]
    pub distill_weight: f64,
    /// Augmentation: `basic` (flip, ±4 px shift, ±5 % scale, contrast and brightness) or
    /// `strong` (also ±12° rotation, ±10 % scale, gamma, blur, noise: the door's lighting and
    /// pose changes). --no-augment turns both off.
    #[arg(long, value_enum, default_value = "basic")]
    #[serde(default)]
    pub augment: Augment,
    /// Channels of the built-in encoder's stem, three blocks and head (default 24,48,96,128,32).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub widths: Option<Vec<i64>>,
    /// With an imported encoder whose first layers are frozen (`--freeze`): run those layers once
    /// on V views of each training face (the face itself and V - 1 augmented copies) and train
    /// the rest on the cached feature maps, one view drawn per face and step (0: run every layer
    /// every step). The frozen layers' cost is paid once instead of every step; augmentation is
    /// limited to the V views. Validation and test faces go through the whole network.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub trunk_views: usize,
}

/// Default weight of the distillation term.
pub const DEFAULT_DISTILL_WEIGHT: f64 = 4.0;

fn default_distill_weight() -> f64 {
    DEFAULT_DISTILL_WEIGHT
}

/// Which distillation term (`--distill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
pub enum DistillKind {
    #[default]
    Relational,
    Embedding,
    Both,
}

/// How much the training images are varied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
pub enum Augment {
    #[default]
    Basic,
    Strong,
}

impl TrainArgs {
    /// The margin in use.
    pub fn margin(&self) -> f64 {
        self.margin.unwrap_or(match self.loss {
            LossKind::Triplet => DEFAULT_TRIPLET_MARGIN,
            LossKind::Contrastive => DEFAULT_CONTRASTIVE_MARGIN,
        })
    }

    /// Checks flags before any work starts.
    pub fn validate(&self) -> Result<()> {
        let m = self.margin();
        if !(m > 0.0 && m <= 2.0) {
            bail!("--margin {m} must be in (0, 2]: distances between unit embeddings lie in [0, 2]");
        }
        if self.people_per_batch < 2 || self.images_per_person < 2 {
            bail!(
                "batches need at least 2 people and 2 images per person (got P={}, K={})",
                self.people_per_batch,
                self.images_per_person
            );
        }
        if self.steps == 0 || self.epoch_steps == 0 {
            bail!("--steps and --epoch-steps must be positive");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.weight_decay < 0.0 || !(0.0..1.0).contains(&self.ema) {
            bail!("--lr must be positive, --weight-decay non-negative and --ema in [0, 1)");
        }
        let imported = self.init_from.as_deref().is_some_and(is_onnx);
        if let Freeze::Layers(n) = self.freeze {
            if n > 3 && !imported {
                bail!("--freeze {n} is more than the 3 residual blocks of the built-in encoder");
            }
        }
        if self.freeze != Freeze::None && self.init_from.is_none() && !self.resume {
            bail!("--freeze keeps pretrained blocks fixed: give the weights with --init-from");
        }
        if self.val_people < 2 {
            bail!("--val-people must be at least 2 (validation EER needs impostor pairs)");
        }
        if !(self.distill_weight >= 0.0 && self.distill_weight.is_finite()) {
            bail!("--distill-weight must be a non-negative number");
        }
        if self.teacher.is_none() && (self.distill_blends > 0 || self.distill != DistillKind::Relational) {
            bail!("--distill and --distill-blends shape the distillation: give the teacher with --teacher");
        }
        if imported && self.augment == Augment::Strong {
            bail!("--augment strong assumes inputs scaled to [-1, 1] (the built-in encoder); an imported encoder keeps its own scaling: use --augment basic");
        }
        if self.trunk_views > 0 {
            if !imported || self.freeze == Freeze::None {
                bail!("--trunk-views caches the frozen layers of an imported encoder: give --init-from X.onnx and --freeze");
            }
            if self.distill_blends > 0 {
                bail!("--trunk-views and --distill-blends cannot be combined (blends go through every layer)");
            }
            if self.no_augment && self.trunk_views > 1 {
                bail!("--no-augment leaves one view of each face: use --trunk-views 1");
            }
            if self.trunk_views > 32 {
                bail!("--trunk-views {}: at most 32 views", self.trunk_views);
            }
        }
        if let Some(w) = &self.widths {
            if w.len() != 5 || w.iter().any(|&c| !(1..=1024).contains(&c)) {
                bail!("--widths takes 5 channel counts between 1 and 1024 (stem, 3 blocks, head), got {w:?}");
            }
            if imported {
                bail!("--widths shapes the built-in encoder; an imported one (--init-from X.onnx) keeps its own");
            }
        }
        Ok(())
    }

    /// The built-in encoder's architecture these flags ask for.
    pub fn arch(&self) -> ArchConfig {
        let mut arch = ArchConfig::default();
        if let Some(w) = &self.widths {
            arch.widths.copy_from_slice(w);
        }
        arch
    }
}

/// The input the default encoder takes: 64×64 grey in `[-1, 1]`.
pub fn default_input_spec(arch: &ArchConfig) -> InputSpec {
    InputSpec {
        name: "input".into(),
        width: arch.input_size as u32,
        height: arch.input_size as u32,
        channels: if arch.in_channels == 1 { ChannelOrder::Grey } else { ChannelOrder::Rgb },
        mean: vec![GREY_MEAN; arch.in_channels as usize],
        std: vec![GREY_STD; arch.in_channels as usize],
    }
}

/// Resumable state saved in `OUT/last/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    step: usize,
    epoch_loss_sum: f64,
    epoch_loss_n: usize,
    metrics: Vec<EpochMetrics>,
    best_eer: f64,
    best_step: usize,
    bad_epochs: usize,
    stopped_early: bool,
    /// The flags that shape the run ([`recipe`]); a resume with others is refused. Absent in
    /// states saved before it was recorded (those resume unchecked).
    #[serde(default)]
    recipe: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Flags that do not change what a run computes: where it writes, how it was started, the
/// device (a run may continue on another), and the crop cache.
const NOT_RECIPE: [&str; 5] = ["out", "resume", "stop_after", "device", "cache"];

/// The flags that shape a run, by name.
fn recipe(args: &TrainArgs) -> Result<serde_json::Map<String, serde_json::Value>> {
    let serde_json::Value::Object(mut m) = serde_json::to_value(args)? else {
        bail!("training flags are not a JSON object");
    };
    m.retain(|k, _| !NOT_RECIPE.contains(&k.as_str()));
    Ok(m)
}

/// Refuses to resume a run with other flags than it started with, naming them.
fn check_resume_recipe(
    saved: &serde_json::Map<String, serde_json::Value>,
    now: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let null = serde_json::Value::Null;
    let mut keys: Vec<&String> = saved.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| saved.get(*k).unwrap_or(&null) != now.get(*k).unwrap_or(&null))
        // a flag added to Facegate after the run started is not in its record: it matches when
        // it is off now (0, false or unset)
        .filter(|k| {
            saved.contains_key(*k)
                || now.get(*k).is_some_and(|v| !(v.is_null() || v.as_bool() == Some(false) || v.as_f64() == Some(0.0)))
        })
        .map(|k| {
            format!(
                "--{}: {} at the start, {} now",
                k.replace('_', "-"),
                saved.get(k).unwrap_or(&null),
                now.get(k).unwrap_or(&null)
            )
        })
        .collect();
    if !differ.is_empty() {
        bail!(
            "--resume with other training flags than the run started with ({}); resume with the same flags, or start a new run in another --out",
            differ.join("; ")
        );
    }
    Ok(())
}

/// Saved beside `best.safetensors`: enough to rebuild and describe the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointInfo {
    pub arch: ArchConfig,
    pub input: InputSpec,
    pub args: TrainArgs,
    pub step: usize,
    pub val_eer: f64,
    pub test_eer: Option<f64>,
    pub train_people: usize,
    pub splits: PathBuf,
    /// The pretrained ONNX encoder this was fine-tuned from (none: the built-in encoder).
    #[serde(default)]
    pub base: Option<BaseRef>,
}

impl CheckpointInfo {
    /// `x.safetensors` → `x.json`.
    pub fn path_for(weights: &Path) -> PathBuf {
        weights.with_extension("json")
    }
    /// Reads the info beside `weights`.
    pub fn load(weights: &Path) -> Result<Self> {
        let p = Self::path_for(weights);
        serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
            .with_context(|| format!("parsing {}", p.display()))
    }
}

/// A face set as device tensors.
pub struct FaceSet {
    /// `N × C × H × W`, preprocessed.
    pub x: Tensor,
    /// `N` person indices.
    pub y: Tensor,
    /// Image indices for each person.
    pub by_person: Vec<Vec<i64>>,
    /// The teacher's embeddings of these images (training set with --teacher only).
    pub teacher: Option<Teacher>,
}

/// A frozen teacher's view of the training images.
pub struct Teacher {
    /// `N × Dt` unit rows (zero where `known` is 0).
    pub embeddings: Tensor,
    /// `N`: 1 where the teacher embedded the image.
    pub known: Tensor,
    /// `--distill-blends`: the student's inputs of blended faces and the teacher's embeddings.
    pub blends: Option<(Tensor, Tensor)>,
}

impl FaceSet {
    fn new(crops: &[(usize, Vec<f32>)], spec: &InputSpec, people: usize, device: Device) -> Self {
        let c = spec.channels.channels() as i64;
        let (h, w) = (spec.height as i64, spec.width as i64);
        let flat: Vec<f32> = crops.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let x = Tensor::from_slice(&flat).view([crops.len() as i64, c, h, w]).to_device(device);
        let labels: Vec<i64> = crops.iter().map(|(p, _)| *p as i64).collect();
        let mut by_person = vec![Vec::new(); people];
        for (i, (p, _)) in crops.iter().enumerate() {
            by_person[*p].push(i as i64);
        }
        Self { x, y: Tensor::from_slice(&labels).to_device(device), by_person, teacher: None }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.x.size()[0] as usize
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Embeds a whole set in eval mode, in chunks.
pub fn embed_all(net: &Net, x: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let n = x.size()[0];
        let chunks: Vec<Tensor> =
            (0..n).step_by(256).map(|s| net.embed_t(&x.narrow(0, s, (n - s).min(256)), false)).collect();
        Tensor::cat(&chunks, 0)
    })
}

/// Genuine and impostor distances of all pairs in a set.
pub fn pair_scores(e: &Tensor, y: &Tensor) -> Result<Scores> {
    let d = Vec::<f32>::try_from(&pairwise_distances(e).to_device(Device::Cpu).view([-1]))?;
    let labels = Vec::<i64>::try_from(&y.to_device(Device::Cpu))?;
    let n = labels.len();
    Ok(Scores::from_labelled_distances(&labels, |a, b| d[a * n + b])?)
}

/// Random variations of a batch (`N × C × H × W`, values in about `[-1, 1]`).
fn augment(x: &Tensor, kind: Augment) -> Tensor {
    let strong = kind == Augment::Strong;
    let b = x.size()[0];
    let dev = x.device();
    let opts = (Kind::Float, dev);
    let uniform = |lo: f64, hi: f64, shape: &[i64]| Tensor::rand(shape, opts) * (hi - lo) + lo;
    let scale = if strong { uniform(0.9, 1.1, &[b]) } else { uniform(0.95, 1.05, &[b]) };
    let flip = Tensor::rand([b], opts).gt(0.5).to_kind(Kind::Float) * 2.0 - 1.0;
    let angle = if strong { uniform(-12f64.to_radians(), 12f64.to_radians(), &[b]) } else { Tensor::zeros([b], opts) };
    // ±4 px (strong: ±6 px) at 64 px, in normalised coordinates
    let px = if strong { 6.0 } else { 4.0 };
    let half = x.size()[3] as f64 / 2.0;
    let tx = uniform(-px / half, px / half, &[b]);
    let ty = uniform(-px / half, px / half, &[b]);
    let (cos, sin) = (angle.cos() * &scale, angle.sin() * &scale);
    // scale · rotation · horizontal flip
    let theta = Tensor::stack(&[&cos * &flip, -sin.shallow_clone(), tx, &sin * &flip, cos, ty], 1).view([b, 2, 3]);
    let grid = Tensor::affine_grid_generator(&theta, x.size(), false);
    let mut out = x.grid_sampler(&grid, 0, 1, false);
    if strong {
        // gamma on [0, 1]: under- and over-exposed doors
        let gamma = uniform(-0.4, 0.4, &[b, 1, 1, 1]).exp();
        out = ((out + 1.0) * 0.5).clamp(0.0, 1.0).pow(&gamma) * 2.0 - 1.0;
        // a 3×3 binomial blur on a third of the faces (focus, motion)
        let c = out.size()[1];
        let k = Tensor::from_slice(&[1f32, 2., 1., 2., 4., 2., 1., 2., 1.]).to_device(dev) / 16.0;
        let k = k.view([1, 1, 3, 3]).repeat([c, 1, 1, 1]);
        let padded = out.pad([1, 1, 1, 1], "replicate", None);
        let blurred = padded.conv2d(&k, None::<Tensor>, [1, 1], [0, 0], [1, 1], c);
        let pick = Tensor::rand([b, 1, 1, 1], opts).lt(1.0 / 3.0);
        out = blurred.where_self(&pick, &out);
        // sensor noise
        out = &out + Tensor::randn(out.size(), opts) * uniform(0.0, 0.04, &[b, 1, 1, 1]);
    }
    let (contrast, bright) = if strong {
        (uniform(0.7, 1.3, &[b, 1, 1, 1]), uniform(-0.25, 0.25, &[b, 1, 1, 1]))
    } else {
        (uniform(0.8, 1.2, &[b, 1, 1, 1]), uniform(-0.2, 0.2, &[b, 1, 1, 1]))
    };
    out * contrast + bright
}

fn cosine_lr(peak: f64, step_in_phase: usize, phase_len: usize) -> f64 {
    let t = step_in_phase as f64 / phase_len.max(1) as f64;
    peak * (0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

fn copy_vars(dst: &nn::VarStore, src: &nn::VarStore) -> Result<()> {
    let s = src.variables();
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in dst.variables() {
            let v = s.get(&name).with_context(|| format!("variable {name} missing"))?;
            t.copy_(v);
        }
        Ok(())
    })
}

/// Moves the weight average towards the current weights; frozen variables are left exactly as
/// they are (averaging a constant would still change its last bits).
fn ema_update(ema: &nn::VarStore, vs: &nn::VarStore, decay: f64, frozen: &HashSet<String>) {
    let src = vs.variables();
    tch::no_grad(|| {
        for (name, mut t) in ema.variables() {
            if frozen.contains(&name) {
                continue;
            }
            if let Some(v) = src.get(&name) {
                let _ = t.g_mul_scalar_(decay).g_add_(&(v * (1.0 - decay)));
            }
        }
    });
}

fn sample_batch(set: &FaceSet, people: &[usize], p: usize, k: usize, rng: &mut SplitMix64) -> Vec<i64> {
    let mut chosen: Vec<usize> = people.to_vec();
    for i in (1..chosen.len()).rev() {
        chosen.swap(i, rng.below(i + 1));
    }
    let mut idx = Vec::with_capacity(p * k);
    for &person in chosen.iter().take(p) {
        let imgs = &set.by_person[person];
        let mut order: Vec<i64> = imgs.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for j in 0..k {
            idx.push(order[j % order.len()]);
        }
    }
    idx
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub best_checkpoint: PathBuf,
    pub best_val_eer: f64,
    pub best_step: usize,
    pub test_eer: Option<f64>,
    /// Held-out figures of the best checkpoint (`None` when there were too few test people).
    pub test: Option<TestFigures>,
    pub diagnosis: String,
    pub images_per_second: f64,
    pub interrupted: bool,
}

/// The best checkpoint on the test people: all genuine and impostor pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestFigures {
    pub people: usize,
    pub eer: f64,
    pub auc: f64,
    /// TAR at FAR 1e-2 (`None` when there are too few impostor pairs to reach it).
    pub tar_at_far_1e2: Option<f64>,
    /// Chance that a stranger matches someone in a gallery of 20 / 500 members at the EER
    /// threshold (FAR = EER per comparison).
    pub open_set_20: f64,
    pub open_set_500: f64,
}

/// Runs training. `interrupt` is set by Ctrl-C: the run saves `OUT/last` and returns.
pub fn train(args: &TrainArgs, interrupt: Arc<AtomicBool>) -> Result<TrainSummary> {
    args.validate()?;
    let device = args.device.resolve()?;
    let arch = args.arch();
    let base = match &args.init_from {
        Some(p) if is_onnx(p) => Some(ImportedBase::load(p).with_context(|| format!("--init-from {}", p.display()))?),
        _ => None,
    };
    let spec = base.as_ref().map(|b| b.card.input.clone()).unwrap_or_else(|| default_input_spec(&arch));
    let (people, report) = scan(&args.data)?;
    let names: Vec<String> = people.keys().cloned().collect();
    let splits = match (args.folds, args.fold) {
        (Some(k), Some(i)) => Splits::fold(&names, args.seed, k, i, args.val_people)?,
        _ => Splits::by_person(&names, args.seed, args.val_people, args.test_people)?,
    };
    if splits.train.len() < args.people_per_batch {
        bail!("{} training people is fewer than --people-per-batch {}", splits.train.len(), args.people_per_batch);
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let splits_path = args.out.join("splits.json");
    splits.save(&splits_path)?;
    eprintln!(
        "data: {} people, {} images; split by person {} train / {} val / {} test (seed {}) -> {}",
        names.len(),
        people.values().map(Vec::len).sum::<usize>(),
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        args.seed,
        splits_path.display()
    );
    if !report.cross_person_duplicates.is_empty()
        || report.same_person_duplicates > 0
        || !report.too_few_images.is_empty()
    {
        eprintln!(
            "data: excluded {} duplicate groups across people, {} duplicates within a person, {} people with fewer than 2 images",
            report.cross_person_duplicates.len(),
            report.same_person_duplicates,
            report.too_few_images.len()
        );
    }

    // Detect and align every image once (cached).
    let finder = FaceFinder::new(YuNet::load(&args.detector)?);
    type Faces = Vec<(usize, Vec<f32>)>;
    type Loaded = (Faces, Vec<ImageEntry>, Vec<facegate_hostkit::data::Rejected>);
    let load_split = |split: &[String]| -> Result<Loaded> {
        let entries: Vec<_> = split.iter().flat_map(|p| people[p].iter().cloned()).collect();
        let bar = facegate_hostkit::progress::bar(entries.len() as u64, "aligning faces");
        let (crops, rejected) = aligned_crops(&finder, &entries, &spec, &args.cache, &bar);
        bar.finish_and_clear();
        let index: std::collections::HashMap<&String, usize> = split.iter().enumerate().map(|(i, p)| (p, i)).collect();
        let (out, kept): (Faces, Vec<ImageEntry>) = entries
            .iter()
            .zip(crops)
            .filter_map(|(e, c)| c.map(|c| ((index[&e.person], preprocess(&c, &spec)), e.clone())))
            .unzip();
        Ok((out, kept, rejected))
    };
    let (train_crops, train_entries, mut rejected) = load_split(&splits.train)?;
    let (val_crops, _, r2) = load_split(&splits.val)?;
    let (test_crops, _, r3) = load_split(&splits.test)?;
    rejected.extend(r2);
    rejected.extend(r3);
    if !rejected.is_empty() {
        eprintln!("data: {} images without a usable face were skipped:", rejected.len());
        for r in &rejected {
            eprintln!("  {}: {}", r.path, r.reason);
        }
    }
    write_atomic(
        &args.out.join("data_report.json"),
        serde_json::to_string_pretty(&serde_json::json!({"scan": report, "rejected": rejected}))?.as_bytes(),
    )?;
    let mut train_set = FaceSet::new(&train_crops, &spec, splits.train.len(), device);
    if let Some(teacher) = &args.teacher {
        // the training people's images only: the teacher never sees a validation or test face
        let (tb, by_sha) =
            crate::distill::teacher_embeddings(teacher, &args.detector, &train_entries, &args.cache, device)?;
        let dim = tb.embedding_dim as usize;
        let mut rows = Vec::with_capacity(train_entries.len() * dim);
        let mut known = Vec::with_capacity(train_entries.len());
        for e in &train_entries {
            match by_sha.get(&e.sha256) {
                Some(v) => {
                    rows.extend_from_slice(v);
                    known.push(1f32);
                }
                None => {
                    rows.extend(std::iter::repeat_n(0f32, dim));
                    known.push(0f32);
                }
            }
        }
        let missing = known.iter().filter(|&&k| k == 0.0).count();
        if missing > 0 {
            eprintln!("teacher: {missing} training images have no teacher embedding (no face at its input size); they are not distilled");
        }
        let blends = if args.distill_blends > 0 {
            let tspec = tb.card.input.clone();
            let bar = facegate_hostkit::progress::bar(train_entries.len() as u64, "aligning faces for the teacher");
            let (tcrops, _) = aligned_crops(&finder, &train_entries, &tspec, &args.cache, &bar);
            bar.finish_and_clear();
            let tlen = tspec.channels.channels() * (tspec.width * tspec.height) as usize;
            let ok: Vec<bool> = tcrops.iter().map(Option::is_some).collect();
            let flat: Vec<f32> = tcrops
                .iter()
                .flat_map(|c| c.as_ref().map_or_else(|| vec![0f32; tlen], |c| preprocess(c, &tspec)))
                .collect();
            let tx = Tensor::from_slice(&flat)
                .view([
                    train_entries.len() as i64,
                    tspec.channels.channels() as i64,
                    tspec.height as i64,
                    tspec.width as i64,
                ])
                .to_device(device);
            let labels: Vec<i64> = train_crops.iter().map(|(p, _)| *p as i64).collect();
            Some(crate::distill::blends(
                &tb,
                &train_set.x,
                &tx,
                &ok,
                &labels,
                args.distill_blends,
                args.seed ^ 0x5EED_B1E0,
            )?)
        } else {
            None
        };
        train_set.teacher = Some(Teacher {
            embeddings: Tensor::from_slice(&rows).view([train_entries.len() as i64, dim as i64]).to_device(device),
            known: Tensor::from_slice(&known).to_device(device),
            blends,
        });
    }
    let val_set = FaceSet::new(&val_crops, &spec, splits.val.len(), device);
    let test_set = FaceSet::new(&test_crops, &spec, splits.test.len(), device);
    let train_people: Vec<usize> = (0..splits.train.len()).filter(|&p| train_set.by_person[p].len() >= 2).collect();

    // Model, weight average, classifier head, optimiser.
    tch::manual_seed(args.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), &arch, base.as_ref());
    let mut ema_vs = nn::VarStore::new(device);
    let ema_net = Net::new(&ema_vs.root(), &arch, base.as_ref());
    let head_vs = nn::VarStore::new(device);
    let head =
        nn::linear(head_vs.root() / "classifier", net.embedding_dim(), splits.train.len() as i64, Default::default());
    // --distill embedding|both: the student's last hidden layer is projected to the teacher's
    // size and regressed onto its embedding (the projection trains with the classifier head and
    // is not part of the exported encoder)
    let projection = match (&train_set.teacher, args.distill) {
        (Some(t), DistillKind::Embedding | DistillKind::Both) => Some(nn::linear(
            head_vs.root() / "projection",
            net.embedding_dim(),
            t.embeddings.size()[1],
            Default::default(),
        )),
        _ => None,
    };
    match (&args.init_from, &base) {
        (Some(init), None) => {
            let mut tmp = nn::VarStore::new(device);
            let _ = Net::new(&tmp.root(), &arch, None);
            tmp.load(init).with_context(|| format!("loading --init-from {}", init.display()))?;
            copy_vars(&vs, &tmp)?;
            eprintln!("model: initialised from {}", init.display());
        }
        (Some(init), Some(_)) => {
            eprintln!("model: imported from {} (weights and batch-norm statistics)", init.display())
        }
        _ => {}
    }
    let frozen: HashSet<String> = net.frozen_variables(&vs, args.freeze)?.into_iter().collect();
    let mut params: Vec<(String, Tensor)> = Vec::new();
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in named {
        if !t.requires_grad() {
            continue;
        }
        if frozen.contains(&name) {
            let _ = t.set_requires_grad(false);
        } else {
            params.push((name, t));
        }
    }
    let mut head_params: Vec<(String, Tensor)> =
        head_vs.variables().into_iter().map(|(n, t)| (format!("head.{n}"), t)).collect();
    head_params.sort_by(|a, b| a.0.cmp(&b.0));
    let n_params: i64 = params.iter().map(|(_, t)| t.numel() as i64).sum();
    eprintln!(
        "model: {}; {:.3} M trainable parameters (--freeze {}: {} variables fixed), device {:?}",
        net.describe(&spec),
        n_params as f64 / 1e6,
        args.freeze,
        frozen.len(),
        device
    );
    let mut all_params: Vec<(String, Tensor)> = params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    all_params.extend(head_params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())));
    let mut opt = Optimizer::new(args.optimizer, all_params, args.weight_decay);
    copy_vars(&ema_vs, &vs)?;
    let trunk = match (&net, args.trunk_views) {
        (_, 0) => None,
        (Net::Imported(n, _), views) => {
            let cut = n.frozen_cut(&frozen).context(
                "--trunk-views: the frozen layers do not end in one value that the rest of the network reads \
                 (nothing or everything frozen, or a skip connection across the cut)",
            )?;
            let started = std::time::Instant::now();
            let maps = trunk_maps(n, &cut, &train_set.x, views, args)?;
            eprintln!(
                "trunk: frozen layers to '{}' run once on {views} views of {} faces: maps {:?} in {:.0} s",
                cut.value,
                train_set.len(),
                maps.size(),
                started.elapsed().as_secs_f64()
            );
            Some((cut, maps))
        }
        (Net::Small(_), _) => bail!("--trunk-views needs an imported encoder"),
    };

    let last = args.out.join("last");
    let best_path = args.out.join("best.safetensors");
    let mut state = RunState {
        step: 0,
        epoch_loss_sum: 0.0,
        epoch_loss_n: 0,
        metrics: Vec::new(),
        best_eer: f64::INFINITY,
        best_step: 0,
        bad_epochs: 0,
        stopped_early: false,
        recipe: Some(recipe(args)?),
    };
    let (mut vs, mut head_vs) = (vs, head_vs);
    if args.resume {
        let saved: RunState = serde_json::from_str(
            &std::fs::read_to_string(last.join("state.json"))
                .with_context(|| format!("--resume: no run to resume in {}", last.display()))?,
        )?;
        if let (Some(was), Some(now)) = (&saved.recipe, &state.recipe) {
            check_resume_recipe(was, now)?;
        }
        // a state saved before flags were recorded stays unchecked: its first resume's flags are
        // not the ones it started with
        state = saved;
        // loading copies into the existing tensors, so the modules and the optimiser see them
        vs.load(last.join("encoder.safetensors"))?;
        ema_vs.load(last.join("ema.safetensors"))?;
        head_vs.load(last.join("classifier.safetensors"))?;
        opt.load_state(&Tensor::read_safetensors(last.join("optimizer.safetensors"))?)?;
        eprintln!("resume: continuing from step {}", state.step);
    }
    run_loop(
        args,
        device,
        &arch,
        &spec,
        &splits_path,
        vs,
        ema_vs,
        ema_net,
        net,
        head_vs,
        head,
        projection.as_ref(),
        opt,
        state,
        base.as_ref(),
        &frozen,
        &train_set,
        &val_set,
        &test_set,
        &train_people,
        trunk.as_ref(),
        &best_path,
        &last,
        interrupt,
    )
}

/// Largest `--trunk-views` cache.
const MAX_TRUNK_CACHE_GIB: f64 = 4.0;

/// The frozen layers' feature maps of `views` views of every face in `x` (view 0 the face
/// itself, the others augmented), rows ordered view by view: row `v * N + i`.
fn trunk_maps(net: &OnnxNet, cut: &FrozenCut, x: &Tensor, views: usize, args: &TrainArgs) -> Result<Tensor> {
    let n = x.size()[0];
    tch::no_grad(|| {
        // the cache's size, from one face's maps, before it is built
        let one = net.run_frozen(cut, &x.narrow(0, 0, n.min(1)))?.numel() as f64;
        let gib = one * 4.0 * n as f64 * views as f64 / (1u64 << 30) as f64;
        if gib > MAX_TRUNK_CACHE_GIB {
            bail!(
                "--trunk-views {views}: the cached maps of {n} faces would take {gib:.1} GiB \
                 (limit {MAX_TRUNK_CACHE_GIB} GiB): use fewer views or cut later"
            );
        }
        let mut all = Vec::new();
        for v in 0..views {
            tch::manual_seed((args.seed as i64).wrapping_mul(7_919).wrapping_add(v as i64));
            let xv = if v == 0 { x.shallow_clone() } else { augment(x, args.augment) };
            for s in (0..n).step_by(32) {
                all.push(net.run_frozen(cut, &xv.narrow(0, s, (n - s).min(32)))?);
            }
        }
        Ok(Tensor::cat(&all, 0))
    })
}

#[allow(clippy::too_many_arguments)]
fn run_loop(
    args: &TrainArgs,
    device: Device,
    arch: &ArchConfig,
    spec: &InputSpec,
    splits_path: &Path,
    vs: nn::VarStore,
    ema_vs: nn::VarStore,
    ema_net: Net,
    net: Net,
    head_vs: nn::VarStore,
    head: nn::Linear,
    projection: Option<&nn::Linear>,
    mut opt: Optimizer,
    mut state: RunState,
    base: Option<&ImportedBase>,
    frozen: &HashSet<String>,
    train_set: &FaceSet,
    val_set: &FaceSet,
    test_set: &FaceSet,
    train_people: &[usize],
    trunk: Option<&(FrozenCut, Tensor)>,
    best_path: &Path,
    last: &Path,
    interrupt: Arc<AtomicBool>,
) -> Result<TrainSummary> {
    let margin = args.margin();
    let total = args.pretrain_steps + args.steps;
    let (p, k) = (args.people_per_batch.min(train_people.len()), args.images_per_person);
    let eval_net = if args.ema > 0.0 { &ema_net } else { &net };
    let eval_vs = if args.ema > 0.0 { &ema_vs } else { &vs };
    let metric_loss = |e: &Tensor, y: &Tensor| match args.loss {
        LossKind::Triplet => triplet_loss(e, y, margin, args.mining),
        LossKind::Contrastive => contrastive_loss(e, y, margin),
    };
    let save_last = |state: &RunState, opt: &Optimizer| -> Result<()> {
        std::fs::create_dir_all(last)?;
        vs.save(last.join("encoder.safetensors"))?;
        ema_vs.save(last.join("ema.safetensors"))?;
        head_vs.save(last.join("classifier.safetensors"))?;
        let st = opt.state();
        Tensor::write_safetensors(
            &st.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>(),
            last.join("optimizer.safetensors"),
        )?;
        write_atomic(&last.join("state.json"), serde_json::to_string(state)?.as_bytes())?;
        Ok(())
    };
    let started = std::time::Instant::now();
    let start_step = state.step;
    let mut bar = facegate_hostkit::progress::epoch_bar(args.epoch_steps as u64, state.step / args.epoch_steps + 1);
    let mut interrupted = false;
    while state.step < total && !state.stopped_early {
        if interrupt.load(Ordering::SeqCst) || args.stop_after.is_some_and(|s| state.step >= s) {
            interrupted = true;
            break;
        }
        let step = state.step;
        let pretraining = step < args.pretrain_steps;
        let lr = if pretraining {
            cosine_lr(args.lr, step, args.pretrain_steps)
        } else {
            cosine_lr(args.lr, step - args.pretrain_steps, args.steps)
        };
        tch::manual_seed((args.seed as i64).wrapping_mul(1_000_003).wrapping_add(step as i64));
        let mut rng = SplitMix64::new(args.seed.wrapping_mul(0x9E37_79B9).wrapping_add(step as u64));
        let picked = sample_batch(train_set, train_people, p, k, &mut rng);
        let idx = Tensor::from_slice(&picked).to_device(device);
        let y = train_set.y.index_select(0, &idx);
        // --distill-blends: 32 blended faces go through the student beside the batch
        let blends = train_set.teacher.as_ref().and_then(|t| t.blends.as_ref());
        let blend_idx = blends.map(|(bx, _)| {
            let n = bx.size()[0] as usize;
            Tensor::from_slice(&(0..32).map(|_| rng.below(n) as i64).collect::<Vec<_>>()).to_device(device)
        });
        let (hidden, blend_hidden) = match (&blend_idx, blends, trunk) {
            (_, _, Some((cut, maps))) => {
                // one cached view of each face (validate() keeps blends out)
                let n = train_set.len() as i64;
                let rows: Vec<i64> = picked.iter().map(|&i| rng.below(args.trunk_views) as i64 * n + i).collect();
                let Net::Imported(inet, _) = &net else { bail!("--trunk-views needs an imported encoder") };
                (inet.run_rest(cut, &maps.index_select(0, &Tensor::from_slice(&rows).to_device(device)), true)?, None)
            }
            (Some(bi), Some((bx, _)), None) => {
                let x = train_set.x.index_select(0, &idx);
                let x = if args.no_augment { x } else { augment(&x, args.augment) };
                let all = net.hidden_t(&Tensor::cat(&[&x, &bx.index_select(0, bi)], 0), true);
                let b = x.size()[0];
                (all.narrow(0, 0, b), Some(all.narrow(0, b, all.size()[0] - b)))
            }
            _ => {
                let x = train_set.x.index_select(0, &idx);
                let x = if args.no_augment { x } else { augment(&x, args.augment) };
                (net.hidden_t(&x, true), None)
            }
        };
        let mut loss = if pretraining {
            hidden.apply(&head).cross_entropy_for_logits(&y)
        } else {
            metric_loss(&l2_normalise(&hidden), &y)
        };
        if let Some(t) = &train_set.teacher {
            let (te, known) = (t.embeddings.index_select(0, &idx), t.known.index_select(0, &idx));
            if matches!(args.distill, DistillKind::Relational | DistillKind::Both) {
                let (s, te, known) = match (&blend_hidden, &blend_idx, &t.blends) {
                    (Some(bh), Some(bi), Some((_, be))) => (
                        Tensor::cat(&[&hidden, bh], 0),
                        Tensor::cat(&[&te, &be.index_select(0, bi)], 0),
                        Tensor::cat(&[&known, &Tensor::ones([bi.size()[0]], (Kind::Float, device))], 0),
                    ),
                    _ => (hidden.shallow_clone(), te.shallow_clone(), known.shallow_clone()),
                };
                loss += crate::distill::relational_loss(&l2_normalise(&s), &te, &known) * args.distill_weight;
            }
            if let Some(proj) = projection {
                let p = l2_normalise(&hidden.apply(proj));
                loss += crate::distill::embedding_loss(&p, &te, &known) * args.distill_weight;
            }
        }
        opt.zero_grad();
        loss.backward();
        opt.step(lr);
        if args.ema > 0.0 {
            ema_update(&ema_vs, &vs, args.ema, frozen);
        }
        state.epoch_loss_sum += loss.double_value(&[]);
        state.epoch_loss_n += 1;
        state.step += 1;
        bar.inc(1);
        bar.set_message(format!("loss {:.4}", state.epoch_loss_sum / state.epoch_loss_n as f64));

        if state.step.is_multiple_of(args.epoch_steps) || state.step == total {
            bar.finish_and_clear();
            let epoch = state.step.div_ceil(args.epoch_steps);
            let e = embed_all(eval_net, &val_set.x);
            let val_loss = tch::no_grad(|| metric_loss(&e, &val_set.y)).double_value(&[]);
            let (val_eer, _) = pair_scores(&e, &val_set.y)?.eer();
            let row = EpochMetrics {
                epoch,
                step: state.step,
                phase: if pretraining { "softmax".into() } else { args.loss_name() },
                train_loss: state.epoch_loss_sum / state.epoch_loss_n.max(1) as f64,
                val_loss,
                val_eer,
                lr,
            };
            let ips = ((state.step - start_step) * p * k) as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "epoch {:>3} step {:>5} [{}] train loss {:.4}  val loss {:.4}  val EER {:5.2}%  lr {:.2e}  {:.0} img/s",
                row.epoch,
                row.step,
                row.phase,
                row.train_loss,
                row.val_loss,
                row.val_eer * 100.0,
                row.lr,
                ips
            );
            state.metrics.push(row);
            state.epoch_loss_sum = 0.0;
            state.epoch_loss_n = 0;
            // Early stopping and the best checkpoint (metric phase only).
            if !pretraining || args.pretrain_steps == state.step {
                if val_eer < state.best_eer {
                    state.best_eer = val_eer;
                    state.best_step = state.step;
                    state.bad_epochs = 0;
                    eval_vs.save(best_path)?;
                    let info = CheckpointInfo {
                        arch: arch.clone(),
                        input: spec.clone(),
                        args: args.clone(),
                        step: state.step,
                        val_eer,
                        test_eer: None,
                        train_people: train_people.len(),
                        splits: splits_path.to_path_buf(),
                        base: base.map(ImportedBase::reference),
                    };
                    write_atomic(
                        &CheckpointInfo::path_for(best_path),
                        serde_json::to_string_pretty(&info)?.as_bytes(),
                    )?;
                } else if !pretraining {
                    state.bad_epochs += 1;
                    if state.bad_epochs >= args.patience {
                        eprintln!("early stop: no better validation EER for {} epochs", args.patience);
                        state.stopped_early = true;
                    }
                }
            }
            crate::curves::write_metrics_csv(&args.out.join("metrics.csv"), &state.metrics)?;
            save_last(&state, &opt)?;
            bar = facegate_hostkit::progress::epoch_bar(args.epoch_steps as u64, epoch + 1);
        }
    }
    bar.finish_and_clear();
    let ips = ((state.step - start_step) * p * k) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    if interrupted {
        save_last(&state, &opt)?;
        eprintln!("interrupted at step {}: state saved in {}; continue with --resume", state.step, last.display());
        return Ok(TrainSummary {
            best_checkpoint: best_path.to_path_buf(),
            best_val_eer: state.best_eer,
            best_step: state.best_step,
            test_eer: None,
            test: None,
            diagnosis: String::new(),
            images_per_second: ips,
            interrupted: true,
        });
    }
    if !best_path.exists() {
        bail!("no checkpoint was written: the run ended before the first epoch");
    }
    // Test EER of the best checkpoint on the held-out test people.
    let mut best_vs = nn::VarStore::new(device);
    let best_net = Net::new(&best_vs.root(), arch, base);
    best_vs.load(best_path)?;
    let test = if test_set.len() >= 2 && test_set.by_person.iter().filter(|v| !v.is_empty()).count() >= 2 {
        let scores = pair_scores(&embed_all(&best_net, &test_set.x), &test_set.y)?;
        let eer = scores.eer().0;
        Some(TestFigures {
            people: test_set.by_person.iter().filter(|v| !v.is_empty()).count(),
            eer,
            auc: scores.auc(),
            tar_at_far_1e2: scores.tar_at_far(1e-2).ok(),
            open_set_20: facegate_shared::open_set_false_accept(eer, 20),
            open_set_500: facegate_shared::open_set_false_accept(eer, 500),
        })
    } else {
        None
    };
    let test_eer = test.as_ref().map(|t| t.eer);
    let mut info = CheckpointInfo::load(best_path)?;
    info.test_eer = test_eer;
    write_atomic(&CheckpointInfo::path_for(best_path), serde_json::to_string_pretty(&info)?.as_bytes())?;
    let diagnosis = crate::curves::diagnose(&state.metrics);
    let plot = args.out.join("learning_curves.png");
    match crate::curves::plot(&plot, &state.metrics) {
        Ok(()) => eprintln!("learning curves: {}", plot.display()),
        Err(e) => eprintln!(
            "learning curves: not drawn ({}); the figures are in metrics.csv",
            facegate_shared::error_chain(&*e)
        ),
    }
    eprintln!("diagnosis: {diagnosis}");
    eprintln!(
        "best: step {} val EER {:.2}%{}; checkpoint {}",
        state.best_step,
        state.best_eer * 100.0,
        test_eer
            .map(|t| format!(", test EER {:.2}% on {} held-out people", t * 100.0, test_set.by_person.len()))
            .unwrap_or_default(),
        best_path.display()
    );
    Ok(TrainSummary {
        best_checkpoint: best_path.to_path_buf(),
        best_val_eer: state.best_eer,
        best_step: state.best_step,
        test_eer,
        test,
        diagnosis,
        images_per_second: ips,
        interrupted: false,
    })
}

impl TrainArgs {
    fn loss_name(&self) -> String {
        match self.loss {
            LossKind::Triplet => format!("triplet-{:?}", self.mining).to_lowercase(),
            LossKind::Contrastive => "contrastive".into(),
        }
    }
}

/// Forward + backward + optimiser step on random batches of the default encoder; images/s.
pub fn bench_throughput(batch: i64, steps: usize, device: DeviceArg) -> Result<serde_json::Value> {
    if batch < 2 || steps == 0 {
        bail!("--batch must be at least 2 and --steps positive");
    }
    let device = device.resolve()?;
    tch::manual_seed(0);
    let arch = ArchConfig::default();
    let vs = nn::VarStore::new(device);
    let net = crate::model::EmbeddingNet::new(&vs.root(), arch.clone());
    let params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    let mut opt = Optimizer::new(OptimizerKind::Adam, params, 5e-4);
    let x = Tensor::randn([batch, arch.in_channels, arch.input_size, arch.input_size], (Kind::Float, device));
    let y = Tensor::arange(batch, (Kind::Int64, device)).remainder(batch / 4 + 1);
    let mut run = |n: usize| {
        for _ in 0..n {
            let loss = triplet_loss(&net.embed_t(&x, true), &y, DEFAULT_TRIPLET_MARGIN, Mining::BatchHard);
            opt.zero_grad();
            loss.backward();
            opt.step(1e-3);
        }
    };
    run(2);
    let t = std::time::Instant::now();
    run(steps);
    let secs = t.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "device": format!("{device:?}"), "threads": tch::get_num_threads(), "batch": batch, "steps": steps,
        "images_per_second": (batch as f64 * steps as f64) / secs, "ms_per_step": secs * 1e3 / steps as f64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resume_accepts_a_flag_added_since_only_when_it_is_off() {
        let saved = json!({"lr": 0.003, "seed": 7}).as_object().unwrap().clone();
        let now = |v: serde_json::Value| {
            let mut m = saved.clone();
            m.insert("trunk_views".into(), v);
            m
        };
        assert!(check_resume_recipe(&saved, &now(json!(0))).is_ok());
        let e = check_resume_recipe(&saved, &now(json!(8))).unwrap_err();
        assert!(e.to_string().contains("--trunk-views: null at the start, 8 now"), "{e}");
        let mut changed = saved.clone();
        changed.insert("lr".into(), json!(0.01));
        assert!(check_resume_recipe(&saved, &changed).is_err(), "a recorded flag that changed is refused");
    }
}
