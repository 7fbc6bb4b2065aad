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
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One fold's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldResult {
    pub fold: usize,
    pub seconds: f64,
    pub best_step: usize,
    pub val_eer: f64,
    pub test: TestFigures,
}

/// Mean and sample standard deviation of one figure over the folds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// One recipe's cross-validation, named for the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct RecipeRow {
    pub name: String,
    pub dir: PathBuf,
    pub test_eer: Vec<f64>,
    pub eer: Spread,
    pub tar_at_far_1e2: Option<Spread>,
    pub auc: Spread,
    /// Against the first recipe, fold by fold (same folds): mean and sd of `first − this` test EER.
    pub gain_over_first: Option<Spread>,
    /// Whether the mean gain exceeds the first recipe's fold-to-fold sd of test EER.
    pub better_than_noise: bool,
}

/// `facegate-train cv-compare`: several `cv` runs (same seed and folds) side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub folds: usize,
    pub seed: u64,
    pub recipes: Vec<RecipeRow>,
}

impl Comparison {
    /// Reads `DIR/cv.json` of each `(name, DIR)`; the first is the reference. Every run must
    /// have the same seed and number of folds and have finished every fold.
    pub fn load(runs: &[(String, PathBuf)]) -> Result<Self> {
        if runs.len() < 2 {
            bail!("give at least two runs to compare (NAME=DIR, the first is the reference)");
        }
        let mut reports = Vec::new();
        for (name, dir) in runs {
            let p = dir.join("cv.json");
            let text =
                std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("{name}: reading {}: {e}", p.display()))?;
            let r: CvReport =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{name}: parsing {}: {e}", p.display()))?;
            if r.interrupted || r.finished.len() != r.folds {
                bail!(
                    "{name}: {} finished {} of {} folds; compare finished runs only",
                    dir.display(),
                    r.finished.len(),
                    r.folds
                );
            }
            reports.push(r);
        }
        let (folds, seed) = (reports[0].folds, reports[0].seed);
        for ((name, _), r) in runs.iter().zip(&reports) {
            if r.folds != folds || r.seed != seed {
                bail!(
                    "{name}: {} folds with seed {}, the reference has {folds} with seed {seed}: not the same folds",
                    r.folds,
                    r.seed
                );
            }
        }
        // the same people tested in each fold (same data, seed, k and --val-people)
        let tested = |dir: &Path, fold: usize| -> Result<Vec<String>> {
            let p = dir.join(format!("fold-{fold}")).join("splits.json");
            Ok(facegate_hostkit::data::Splits::load(&p)?.test)
        };
        for fold in 0..folds {
            let first = tested(&runs[0].1, fold)?;
            for (name, dir) in &runs[1..] {
                if tested(dir, fold)? != first {
                    bail!("{name}: fold {fold} tests other people than {}'s: not the same folds", runs[0].0);
                }
            }
        }
        let eers = |r: &CvReport| {
            let mut f: Vec<(usize, f64)> = r.finished.iter().map(|f| (f.fold, f.test.eer)).collect();
            f.sort_by_key(|x| x.0);
            f.into_iter().map(|x| x.1).collect::<Vec<f64>>()
        };
        let first = eers(&reports[0]);
        let noise = Spread::of(&first).map_or(0.0, |s| s.sd);
        let recipes = runs
            .iter()
            .zip(&reports)
            .enumerate()
            .map(|(i, ((name, dir), r))| {
                let e = eers(r);
                let gain = (i > 0)
                    .then(|| Spread::of(&first.iter().zip(&e).map(|(a, b)| a - b).collect::<Vec<_>>()))
                    .flatten();
                RecipeRow {
                    name: name.clone(),
                    dir: dir.clone(),
                    eer: Spread::of(&e).expect("finished folds"),
                    test_eer: e,
                    tar_at_far_1e2: r.tar_at_far_1e2,
                    auc: r.test_auc.expect("finished folds"),
                    better_than_noise: gain.is_some_and(|g| g.mean > noise),
                    gain_over_first: gain,
                }
            })
            .collect();
        Ok(Self { folds, seed, recipes })
    }

    /// The comparison as a Markdown table (percentages).
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{} folds, seed {}; gain = the reference's test EER minus the recipe's, fold by fold (mean ± sd)\n\n| recipe | test EER per fold | mean ± sd | TAR @ FAR 1e-2 | AUC | gain over {} | beyond the fold-to-fold sd |\n|---|---|---|---|---|---|---|\n",
            self.folds, self.seed, self.recipes[0].name
        );
        for r in &self.recipes {
            let per: Vec<String> = r.test_eer.iter().map(|e| format!("{:.2}", 100.0 * e)).collect();
            out += &format!(
                "| {} | {} | {:.2} ± {:.2} % | {} | {:.4} ± {:.4} | {} | {} |\n",
                r.name,
                per.join(" / "),
                100.0 * r.eer.mean,
                100.0 * r.eer.sd,
                r.tar_at_far_1e2.map_or("–".into(), |s| format!("{:.1} ± {:.1} %", 100.0 * s.mean, 100.0 * s.sd)),
                r.auc.mean,
                r.auc.sd,
                r.gain_over_first.map_or("(reference)".into(), |g| format!(
                    "{:+.2} ± {:.2} pp",
                    100.0 * g.mean,
                    100.0 * g.sd
                )),
                if r.gain_over_first.is_none() {
                    ""
                } else if r.better_than_noise {
                    "yes"
                } else {
                    "no"
                }
            );
        }
        out
    }

    /// Test EER per fold, one line of points per recipe, the means as dashed lines.
    pub fn plot(&self, path: &Path) -> Result<()> {
        use plotters::prelude::*;
        facegate_hostkit::plots::register_font()?;
        let root = BitMapBackend::new(path, (760, 460)).into_drawing_area();
        root.fill(&WHITE)?;
        let top =
            self.recipes.iter().flat_map(|r| r.test_eer.iter()).fold(0.0f64, |a, &b| a.max(b)) * 100.0 * 1.6 + 0.5; // room for the legend above the points
        let mut c = ChartBuilder::on(&root)
            .caption(
                format!("test EER per fold ({} person-disjoint folds, seed {})", self.folds, self.seed),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(-0.5..self.folds as f64 - 0.5, 0.0..top)?;
        c.configure_mesh()
            .x_desc("fold")
            .y_desc("test EER (%)")
            .x_labels(self.folds)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        const COLOURS: [RGBColor; 7] = [
            RGBColor(200, 30, 30),
            RGBColor(30, 90, 200),
            RGBColor(20, 140, 60),
            RGBColor(150, 60, 170),
            RGBColor(230, 120, 0),
            RGBColor(0, 150, 160),
            RGBColor(60, 60, 60),
        ];
        for (i, r) in self.recipes.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let dx = (i as f64 - (self.recipes.len() - 1) as f64 / 2.0) * 0.08;
            let pts: Vec<(f64, f64)> = r.test_eer.iter().enumerate().map(|(f, e)| (f as f64 + dx, 100.0 * e)).collect();
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?
                .label(format!("{}: {:.2} ± {:.2} %", r.name, 100.0 * r.eer.mean, 100.0 * r.eer.sd))
                .legend(move |(x, y)| Circle::new((x + 7, y), 4, colour.filled()));
            c.draw_series(LineSeries::new(pts, colour.stroke_width(1)))?;
            let m = 100.0 * r.eer.mean;
            c.draw_series(DashedLineSeries::new(vec![(-0.5, m), (self.folds as f64 - 0.5, m)], 6, 4, colour.into()))?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
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

    fn run(dir: &Path, seed: u64, eers: &[f64]) {
        let finished = eers
            .iter()
            .enumerate()
            .map(|(fold, &eer)| FoldResult {
                fold,
                seconds: 60.0,
                best_step: 600,
                val_eer: eer,
                test: TestFigures {
                    people: 8,
                    eer,
                    auc: 1.0 - eer,
                    tar_at_far_1e2: Some(1.0 - 2.0 * eer),
                    open_set_20: 0.5,
                    open_set_500: 1.0,
                },
            })
            .collect();
        for f in 0..eers.len() {
            let test = if seed == 7 { vec![format!("s{f}")] } else { vec![format!("t{f}")] };
            let s = facegate_hostkit::data::Splits { seed, train: vec![], val: vec![], test };
            std::fs::create_dir_all(dir.join(format!("fold-{f}"))).unwrap();
            s.save(&dir.join(format!("fold-{f}/splits.json"))).unwrap();
        }
        let r = CvReport::new(eers.len(), seed, finished, false);
        std::fs::write(dir.join("cv.json"), serde_json::to_string(&r).unwrap()).unwrap();
    }

    #[test]
    fn comparison_pairs_folds_and_counts_only_gains_beyond_the_noise() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c, e) = (d.path().join("a"), d.path().join("b"), d.path().join("c"), d.path().join("e"));
        run(&a, 7, &[0.04, 0.12, 0.15, 0.10, 0.10]); // sd 4.0 pp
        run(&b, 7, &[0.02, 0.05, 0.06, 0.04, 0.05]); // 5.8 pp better on average
        run(&c, 7, &[0.03, 0.11, 0.14, 0.09, 0.09]); // 1 pp better on every fold: not beyond the sd
        run(&e, 8, &[0.01, 0.01, 0.01, 0.01, 0.01]);
        let named =
            |v: &[(&str, &PathBuf)]| v.iter().map(|(n, p)| (n.to_string(), p.to_path_buf())).collect::<Vec<_>>();
        let cmp = Comparison::load(&named(&[("today", &a), ("distil", &b), ("tiny", &c)])).unwrap();
        let g = cmp.recipes[1].gain_over_first.unwrap();
        assert!((g.mean - 0.058).abs() < 1e-9, "{g:?}");
        assert!(cmp.recipes[1].better_than_noise && !cmp.recipes[2].better_than_noise);
        assert!(cmp.recipes[0].gain_over_first.is_none());
        let md = cmp.markdown();
        assert!(md.contains("| distil | 2.00 / 5.00 / 6.00 / 4.00 / 5.00 | 4.40 ± 1.52 % |"), "{md}");
        let png = d.path().join("cmp.png");
        cmp.plot(&png).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 1000);
        // other folds (seed) or a single run are refused
        assert!(Comparison::load(&named(&[("today", &a), ("other", &e)]))
            .unwrap_err()
            .to_string()
            .contains("not the same folds"));
        assert!(Comparison::load(&named(&[("today", &a)])).is_err());
        // same seed and k but other people tested in a fold
        let f = d.path().join("f");
        run(&f, 7, &[0.01, 0.01, 0.01, 0.01, 0.01]);
        let other = facegate_hostkit::data::Splits { seed: 7, train: vec![], val: vec![], test: vec!["s9".into()] };
        other.save(&f.join("fold-3/splits.json")).unwrap();
        let err = Comparison::load(&named(&[("today", &a), ("f", &f)])).unwrap_err().to_string();
        assert!(err.contains("fold 3 tests other people"), "{err}");
    }
}
