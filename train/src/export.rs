//! `facegate-train export`: checkpoint → ONNX + model card + golden pair, with a tch/tract parity check.

use anyhow::{bail, Context, Result};
use facegate_face::{card_path_for, Encoder, TractEncoder};
use facegate_shared::synthetic::SplitMix64;
use facegate_shared::{
    gallery_file::write_atomic, CardMetrics, EmbeddingDim, Fingerprint, ModelCard, ALIGNMENT_ARCFACE_5PT, CARD_VERSION,
    METRIC_UNIT_SPHERE,
};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

use crate::net::{ImportedBase, Net};
use crate::onnx::write::{encoder_to_onnx, OPSET};
use crate::trainer::CheckpointInfo;

/// Largest tch/tract difference (per embedding component) an export accepts.
pub const PARITY_TOLERANCE: f32 = 1e-4;
/// Inputs compared in the parity check.
pub const PARITY_INPUTS: usize = 8;

/// Flags of `facegate-train export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Checkpoint written by `facegate-train train` (`best.safetensors`, with `best.json` beside it).
    pub checkpoint: PathBuf,
    /// Output ONNX path; the card (`.card.json`) and golden pair (`.golden.json`) go beside it.
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    /// Model name for the card (default: the output file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Also write `NAME.dynamic.onnx` with a symbolic batch dimension (for batch embedding on a
    /// host; the door unit uses the fixed-batch file the card describes). Built-in encoder only.
    #[arg(long)]
    pub dynamic_batch: bool,
}

/// The golden pair written beside an export: one input and the embedding it must give.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Golden {
    /// Shape of the input.
    pub shape: Vec<usize>,
    /// Preprocessed input values, row-major.
    pub input: Vec<f32>,
    /// The embedding tch computed for it.
    pub embedding: Vec<f32>,
    /// Tolerance the door unit's test applies.
    pub tolerance: f32,
}

/// `NAME.onnx` → `NAME.golden.json`.
pub fn golden_path_for(onnx: &Path) -> PathBuf {
    onnx.with_extension("golden.json")
}

/// What the export measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportSummary {
    pub onnx: PathBuf,
    /// The dynamic-batch variant, when asked for.
    pub dynamic_batch: Option<PathBuf>,
    pub card: PathBuf,
    pub bytes: usize,
    pub fingerprint: String,
    pub parity_max_abs_diff: f32,
    pub threshold: Option<f32>,
}

/// Loads a checkpoint into an eval-ready network (with the ONNX base it was fine-tuned from, if any).
pub fn load_checkpoint(path: &Path) -> Result<(nn::VarStore, Net, CheckpointInfo, Option<ImportedBase>)> {
    let info = CheckpointInfo::load(path)?;
    let base = info.base.as_ref().map(ImportedBase::from_reference).transpose()?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &info.arch, base.as_ref());
    vs.load(path).with_context(|| format!("loading weights {}", path.display()))?;
    Ok((vs, net, info, base))
}

/// Runs the export.
/// The card gets no threshold here: `facegate calibrate` measures one on held-out people.
pub fn export(args: &ExportArgs) -> Result<ExportSummary> {
    let (_vs, net, info, base) = load_checkpoint(&args.checkpoint)?;
    if args.dynamic_batch && base.is_some() {
        bail!("--dynamic-batch is for the built-in encoder; an imported graph keeps its own input shape");
    }
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| args.out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
    let from = match &base {
        Some(b) => format!("{} fine-tuned (--freeze {}) by ", b.card.name, info.args.freeze),
        None => String::new(),
    };
    let training = format!(
        "{from}facegate train on {} ({} training people; split by person, manifest {}); {} softmax pre-training steps, then {:?} loss with margin {}; seed {}; best at step {}",
        info.args.data.display(),
        info.train_people,
        info.splits.display(),
        info.args.pretrain_steps,
        info.args.loss,
        info.args.margin(),
        info.args.seed,
        info.step
    );
    let metadata = vec![
        ("facegate.name".to_owned(), name.clone()),
        ("facegate.input".to_owned(), serde_json::to_string(&info.input)?),
        ("facegate.alignment".to_owned(), ALIGNMENT_ARCFACE_5PT.to_owned()),
        ("facegate.metric".to_owned(), METRIC_UNIT_SPHERE.to_owned()),
        ("facegate.training".to_owned(), training.clone()),
        ("facegate.val_eer".to_owned(), info.val_eer.to_string()),
        ("facegate.test_eer".to_owned(), info.test_eer.map(|t| t.to_string()).unwrap_or_default()),
    ];
    let (bytes, opset, normalised_in_graph, extra_inputs, licence) = match &net {
        Net::Small(n) => (
            encoder_to_onnx(n, &metadata, false)?,
            OPSET,
            true,
            vec![],
            "MIT OR Apache-2.0 (weights trained by Facegate on the ORL faces, AT&T Laboratories Cambridge)".to_owned(),
        ),
        Net::Imported(n, _) => {
            let b = base.as_ref().context("imported network without its base")?;
            (
                n.to_onnx(&metadata)?,
                n.graph().opset,
                b.card.normalised_in_graph,
                b.card.extra_inputs.clone(),
                format!(
                    "{} (the base model's licence), fine-tuned by Facegate on the ORL faces",
                    b.card.licence.as_deref().unwrap_or("unknown")
                ),
            )
        }
    };
    let card = ModelCard {
        card_version: CARD_VERSION,
        name,
        fingerprint: Fingerprint::of_bytes(&bytes),
        opset,
        input: info.input.clone(),
        extra_inputs,
        alignment: ALIGNMENT_ARCFACE_5PT.into(),
        embedding_dim: EmbeddingDim::new(net.embedding_dim() as usize)?,
        metric: METRIC_UNIT_SPHERE.into(),
        normalised_in_graph,
        threshold: None,
        training: Some(training),
        metrics: CardMetrics { val_eer: Some(info.val_eer), test_eer: info.test_eer },
        licence: Some(licence),
    };

    // Parity: the same inputs through tch and through tract.
    let tract = TractEncoder::from_bytes(&bytes, card.clone(), &args.out.display().to_string())?;
    let c = info.input.channels.channels() as i64;
    let (h, w) = (i64::from(info.input.height), i64::from(info.input.width));
    // random pixels in 0–255, preprocessed with the card's per-channel mean and std
    let (mean, std) = (&info.input.mean, &info.input.std);
    let plane = (h * w) as usize;
    let mut rng = SplitMix64::new(20_261_129);
    let mut worst = 0.0f32;
    let mut golden = None;
    for i in 0..PARITY_INPUTS {
        let input: Vec<f32> = (0..(c * h * w) as usize)
            .map(|j| (rng.next_f64() as f32 * 255.0 - mean[j / plane]) / std[j / plane])
            .collect();
        let x = Tensor::from_slice(&input).view([1, c, h, w]);
        let want = Vec::<f32>::try_from(&tch::no_grad(|| net.embed_t(&x, false)).view([-1]))?;
        let got = tract.encode_tensor(&input)?;
        let diff = want.iter().zip(got.as_slice()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        worst = worst.max(diff);
        if i == 0 {
            golden = Some(Golden {
                shape: vec![1, c as usize, h as usize, w as usize],
                input,
                embedding: want,
                tolerance: PARITY_TOLERANCE,
            });
        }
    }
    if worst > PARITY_TOLERANCE {
        bail!("parity check failed: tch and tract embeddings differ by {worst:e} (limit {PARITY_TOLERANCE:e}); nothing was written");
    }
    write_atomic(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    let card_path = card_path_for(&args.out);
    write_atomic(&card_path, (card.to_json() + "\n").as_bytes())?;
    write_atomic(&golden_path_for(&args.out), serde_json::to_string(&golden)?.as_bytes())?;
    let dynamic = match (&net, args.dynamic_batch) {
        (Net::Small(n), true) => {
            let path = args.out.with_extension("dynamic.onnx");
            write_atomic(&path, &encoder_to_onnx(n, &metadata, true)?)?;
            Some(path)
        }
        _ => None,
    };
    Ok(ExportSummary {
        dynamic_batch: dynamic,
        onnx: args.out.clone(),
        card: card_path,
        bytes: bytes.len(),
        fingerprint: card.fingerprint.to_string(),
        parity_max_abs_diff: worst,
        threshold: card.threshold.map(|t| t.distance.get()),
    })
}
