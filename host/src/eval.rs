//! `facegate eval` and `facegate calibrate`: any encoder with a card, on the same people, through
//! the same pipeline the door unit uses.

use anyhow::{bail, Context, Result};
use facegate_face::{card_path_for, load_image, Encoder, FacePipeline, TractEncoder};
use facegate_shared::{
    gallery_file::write_atomic, open_set_false_accept, CalibratedThreshold, Embedding, ModelCard, Scores, Threshold,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::data::{scan, Splits};

/// Which held-out people of a split manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitName {
    Train,
    Val,
    Test,
}

/// The people to evaluate on and the models to use.
#[derive(Debug, Clone, clap::Args)]
pub struct PeopleArgs {
    /// Encoder ONNX with its `.card.json` beside it.
    #[arg(long)]
    pub model: PathBuf,
    /// Folder with one sub-folder per person.
    #[arg(long)]
    pub data: PathBuf,
    /// Split manifest written by `facegate-train train` (with --split).
    #[arg(long)]
    pub splits: Option<PathBuf>,
    /// Which split's people to use.
    #[arg(long, value_enum)]
    pub split: Option<SplitName>,
    /// YuNet detector model.
    #[arg(long, default_value = crate::commands::DEFAULT_DETECTOR)]
    pub detector: PathBuf,
}

/// Embeddings of every usable image of the chosen people, through the shared pipeline.
pub struct PeopleEmbeddings {
    pub people: Vec<String>,
    pub items: Vec<(usize, Embedding)>,
    pub skipped: Vec<(String, String)>,
}

/// Embeds the chosen people's photos with `model`.
pub fn embed_people(a: &PeopleArgs) -> Result<(PeopleEmbeddings, ModelCard)> {
    let (all, _) = scan(&a.data)?;
    let people: Vec<String> = match (&a.splits, a.split) {
        (Some(path), Some(which)) => {
            let s = Splits::load(path).with_context(|| format!("reading {}", path.display()))?;
            match which {
                SplitName::Train => s.train,
                SplitName::Val => s.val,
                SplitName::Test => s.test,
            }
        }
        (None, None) => all.keys().cloned().collect(),
        _ => bail!("--splits and --split go together"),
    };
    let pipeline = FacePipeline::new(crate::commands::load_detector(&a.detector)?, TractEncoder::load(&a.model)?);
    let card = pipeline.encoder.card().clone();
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let total: usize = people.iter().map(|p| all.get(p).map_or(0, Vec::len)).sum();
    let bar = crate::progress::bar(total as u64, "embedding");
    for (i, p) in people.iter().enumerate() {
        let imgs = all.get(p).with_context(|| format!("person {p} is not in {}", a.data.display()))?;
        for e in imgs {
            bar.inc(1);
            match load_image(&e.path).and_then(|img| pipeline.embed_one(&img)) {
                Ok(f) => items.push((i, f.embedding)),
                Err(err) => skipped.push((e.path.display().to_string(), err.to_string())),
            }
        }
    }
    bar.finish_and_clear();
    Ok((PeopleEmbeddings { people, items, skipped }, card))
}

/// Genuine and impostor distances of all pairs.
pub fn all_pairs(items: &[(usize, Embedding)]) -> Result<Scores> {
    Ok(Scores::from_labelled(items)?)
}

/// Figures `facegate eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub fingerprint: String,
    pub people: usize,
    pub images: usize,
    pub skipped: usize,
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
    pub auc: f64,
    pub eer: f64,
    pub eer_threshold: f32,
    pub tar_at_far_1e2: f64,
    pub tar_at_far_1e3: f64,
    pub rank1_identification: f64,
    pub threshold: f32,
    pub threshold_source: String,
    pub far_at_threshold: f64,
    pub tar_at_threshold: f64,
    /// Per-comparison FAR used below: the measured one, or when no impostor pair was accepted,
    /// the 95 % upper bound 3 / impostor pairs (rule of three).
    pub open_set_far_basis: f64,
    /// Chance that a stranger is let in as some member, for gallery sizes 20, 500 and 10,000:
    /// `1 − (1 − FAR)^N`, about `N × FAR`.
    pub open_set_false_accept: Vec<(u64, f64)>,
}

/// Computes the report.
pub fn evaluate(e: &PeopleEmbeddings, card: &ModelCard, far_target: f64) -> Result<EvalReport> {
    let scores = all_pairs(&e.items)?;
    let (eer, eer_t) = scores.eer();
    // rank-1: each image's nearest other image is the same person
    let mut correct = 0;
    for (i, (p, q)) in e.items.iter().enumerate() {
        let best = e
            .items
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (pp, x))| (pp, q.distance(x).unwrap_or(2.0)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if best.is_some_and(|(pp, _)| pp == p) {
            correct += 1;
        }
    }
    let (threshold, source) = match &card.threshold {
        Some(t) => (t.distance.get(), format!("model card (FAR {} on {})", t.far, t.data)),
        None => (scores.threshold_for_far(far_target)?, format!("calibrated here at FAR {far_target}")),
    };
    let far = scores.far(threshold);
    let basis = if far > 0.0 { far } else { 3.0 / scores.impostor().len() as f64 };
    Ok(EvalReport {
        model: card.name.clone(),
        fingerprint: card.fingerprint.to_string(),
        people: e.people.len(),
        images: e.items.len(),
        skipped: e.skipped.len(),
        genuine_pairs: scores.genuine().len(),
        impostor_pairs: scores.impostor().len(),
        auc: scores.auc(),
        eer,
        eer_threshold: eer_t,
        tar_at_far_1e2: scores.tar_at_far(1e-2)?,
        tar_at_far_1e3: scores.tar_at_far(1e-3)?,
        rank1_identification: correct as f64 / e.items.len().max(1) as f64,
        threshold,
        threshold_source: source,
        far_at_threshold: far,
        tar_at_threshold: scores.tar(threshold),
        open_set_far_basis: basis,
        open_set_false_accept: [20u64, 500, 10_000].iter().map(|&n| (n, open_set_false_accept(basis, n))).collect(),
    })
}

/// Writes a calibrated threshold into the model's card.
pub fn write_threshold(model: &Path, threshold: f32, far: f64, data: String) -> Result<ModelCard> {
    let path = card_path_for(model);
    let mut card = ModelCard::load(&path)?;
    card.threshold = Some(CalibratedThreshold { distance: Threshold::new(threshold)?, far, data });
    write_atomic(&path, (card.to_json() + "\n").as_bytes())?;
    Ok(card)
}
