//! Person-k-fold cross-validation (`facegate-train cv`): one training run per fold, each person a
//! test person exactly once ([`facegate_hostkit::data::Splits::fold`]), validation people drawn
//! from the training side of each fold. One split of 8 people cannot tell a better recipe from
//! luck; the mean and spread over folds can.
//!
//! Writes `OUT/fold-N/` (each run: checkpoints, `splits.json`, metrics, learning curves),
//! `OUT/cv.json` (every fold's figures, the mean and the sample standard deviation) and
//! `OUT/cv.md` (the same as a table). Interrupted, it keeps the folds that finished.

use crate::trainer::{train, TestFigures, TrainArgs, TrainSummary};
use anyhow::{bail, Result};
use facegate_shared::gallery_file::write_atomic;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One fold's result.
#[derive(Debug, Clone, Serialize)]
pub struct FoldResult {
    pub fold: usize,
    pub seconds: f64,
    pub best_step: usize,
    pub val_eer: f64,
    pub test: TestFigures,
}

/// Mean and sample standard deviation of one figure over the folds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(v: &[f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
        let (min, max) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        Some(Self { mean, sd, min, max })
    }
}

/// What `cv` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    pub folds: usize,
    pub seed: u64,
    pub finished: Vec<FoldResult>,
    pub test_eer: Option<Spread>,
    pub test_auc: Option<Spread>,
    /// Over the folds where FAR 1e-2 could be reached.
    pub tar_at_far_1e2: Option<Spread>,
    pub open_set_20: Option<Spread>,
    pub open_set_500: Option<Spread>,
    pub interrupted: bool,
}

impl CvReport {
    fn new(folds: usize, seed: u64, finished: Vec<FoldResult>, interrupted: bool) -> Self {
        let pick = |f: fn(&FoldResult) -> Option<f64>| Spread::of(&finished.iter().filter_map(f).collect::<Vec<_>>());
        Self {
            folds,
            seed,
            test_eer: pick(|r| Some(r.test.eer)),
            test_auc: pick(|r| Some(r.test.auc)),
            tar_at_far_1e2: pick(|r| r.test.tar_at_far_1e2),
            open_set_20: pick(|r| Some(r.test.open_set_20)),
            open_set_500: pick(|r| Some(r.test.open_set_500)),
            finished,
            interrupted,
        }
    }

    /// The report as a Markdown table (percentages).
    pub fn markdown(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.2} %", 100.0 * v));
        let mut out = String::from(
            "| fold | test people | best step | val EER | test EER | AUC | TAR @ FAR 1e-2 | stranger matches, 20 / 500 members | minutes |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.finished {
            out += &format!(
                "| {} | {} | {} | {} | {} | {:.4} | {} | {} / {} | {:.1} |\n",
                r.fold,
                r.test.people,
                r.best_step,
                pct(Some(r.val_eer)),
                pct(Some(r.test.eer)),
                r.test.auc,
                pct(r.test.tar_at_far_1e2),
                pct(Some(r.test.open_set_20)),
                pct(Some(r.test.open_set_500)),
                r.seconds / 60.0
            );
        }
        let ms =
            |s: &Option<Spread>| s.map_or("–".into(), |s| format!("{:.2} ± {:.2} %", 100.0 * s.mean, 100.0 * s.sd));
        out += &format!(
            "| **mean ± sd** | | | | **{}** | {} | {} | {} / {} | |\n",
            ms(&self.test_eer),
            self.test_auc.map_or("–".into(), |s| format!("{:.4} ± {:.4}", s.mean, s.sd)),
            ms(&self.tar_at_far_1e2),
            ms(&self.open_set_20),
            ms(&self.open_set_500)
        );
        out
    }
}

/// Runs `folds` trainings of `args` (each in `OUT/fold-N`), then writes and returns the report.
pub fn cross_validate(args: &TrainArgs, folds: usize, interrupt: Arc<AtomicBool>) -> Result<CvReport> {
    if folds < 2 {
        bail!("--folds must be at least 2");
    }
    if args.resume {
        bail!("cv does not resume: run it again (the aligned crops are cached)");
    }
    std::fs::create_dir_all(&args.out)?;
    let mut finished = Vec::new();
    let mut interrupted = false;
    for fold in 0..folds {
        let mut a = args.clone();
        a.out = args.out.join(format!("fold-{fold}"));
        a.folds = Some(folds);
        a.fold = Some(fold);
        eprintln!("cv: fold {fold} of {folds} -> {}", a.out.display());
        let started = Instant::now();
        let s: TrainSummary = train(&a, interrupt.clone())?;
        if s.interrupted || interrupt.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let Some(test) = s.test else { bail!("fold {fold}: too few test people for a test EER") };
        finished.push(FoldResult {
            fold,
            seconds: started.elapsed().as_secs_f64(),
            best_step: s.best_step,
            val_eer: s.best_val_eer,
            test,
        });
        // written after every fold: an interrupted run keeps what finished
        let report = CvReport::new(folds, args.seed, finished.clone(), false);
        write_atomic(&args.out.join("cv.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
        write_atomic(&args.out.join("cv.md"), report.markdown().as_bytes())?;
    }
    let report = CvReport::new(folds, args.seed, finished, interrupted);
    write_atomic(&args.out.join("cv.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    write_atomic(&args.out.join("cv.md"), report.markdown().as_bytes())?;
    eprintln!("{}", report.markdown());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_mean_and_sample_sd() {
        let s = Spread::of(&[0.02, 0.04, 0.06]).unwrap();
        assert!((s.mean - 0.04).abs() < 1e-12 && (s.sd - 0.02).abs() < 1e-12, "{s:?}");
        assert_eq!((s.min, s.max), (0.02, 0.06));
        assert_eq!(Spread::of(&[0.5]).unwrap().sd, 0.0);
        assert!(Spread::of(&[]).is_none());
    }
}
