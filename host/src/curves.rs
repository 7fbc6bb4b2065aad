//! Learning curves: `metrics.csv`, `learning_curves.png`, and a diagnosis of under- or overfitting.

use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

use crate::train::EpochMetrics;

/// Font used for plot text (Debian `fonts-dejavu-core`, installed by `make setup`).
pub const PLOT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Writes the metrics table atomically.
pub fn write_metrics_csv(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let mut s = String::from("epoch,step,phase,train_loss,val_loss,val_eer,lr\n");
    for r in rows {
        s += &format!(
            "{},{},{},{:.6},{:.6},{:.6},{:.6e}\n",
            r.epoch, r.step, r.phase, r.train_loss, r.val_loss, r.val_eer, r.lr
        );
    }
    facegate_shared::gallery_file::write_atomic(path, s.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads the diagnosis off the curves of the metric-loss phase:
/// - underfitting: the training loss fell by less than a third, or validation EER stayed above 25 %;
/// - overfitting: validation EER stood clearly above its best (by half the best, and at least half
///   a point) for two or more later epochs while the training loss kept falling (reports the epoch
///   it began);
/// - otherwise a good fit.
pub fn diagnose(rows: &[EpochMetrics]) -> String {
    let metric: Vec<&EpochMetrics> = rows.iter().filter(|r| r.phase != "softmax").collect();
    if metric.len() < 2 {
        return "too few epochs to judge the fit".into();
    }
    let first = metric[0].train_loss;
    let last = metric[metric.len() - 1];
    let best = metric.iter().min_by(|a, b| a.val_eer.total_cmp(&b.val_eer)).expect("non-empty");
    if last.train_loss > first * 0.67 || best.val_eer > 0.25 {
        return format!(
            "underfitting: training loss went from {first:.3} to {:.3} and the best validation EER is {:.1}%; train longer, raise the learning rate or use a larger model",
            last.train_loss,
            best.val_eer * 100.0
        );
    }
    let after: Vec<&&EpochMetrics> = metric.iter().filter(|r| r.epoch > best.epoch).collect();
    let margin = (0.5 * best.val_eer).max(0.005);
    let rising = after.iter().filter(|r| r.val_eer > best.val_eer + margin).count();
    let train_falling = after.last().is_some_and(|r| r.train_loss < best.train_loss);
    if rising >= 2 && train_falling {
        return format!(
            "overfitting from epoch {}: validation EER rose from {:.1}% while training loss kept falling; the best checkpoint (epoch {}) is kept",
            best.epoch,
            best.val_eer * 100.0,
            best.epoch
        );
    }
    format!(
        "good fit: training loss {first:.3} -> {:.3}, best validation EER {:.1}% at epoch {} with no sustained rise after it",
        last.train_loss,
        best.val_eer * 100.0,
        best.epoch
    )
}

fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if DONE.get().is_none() {
        let font =
            std::fs::read(PLOT_FONT).with_context(|| format!("font {PLOT_FONT} missing (Debian fonts-dejavu-core)"))?;
        let font: &'static [u8] = Box::leak(font.into_boxed_slice());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, font);
        let _ = DONE.set(());
    }
    Ok(())
}

/// ROC curve (TAR against FAR, log FAR axis) with the threshold in use marked.
pub fn plot_roc(path: &Path, scores: &facegate_shared::Scores, threshold: f32) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (560, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let floor = 1.0 / scores.impostor().len().max(1) as f64;
    let pts: Vec<(f64, f64)> = scores.roc().iter().map(|p| (p.far.max(floor), p.tar)).collect();
    let mut c = ChartBuilder::on(&root)
        .caption("ROC (accept when distance <= threshold)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d((floor..1.0).log_scale(), 0.0..1.01)?;
    c.configure_mesh().x_desc("false accept rate").y_desc("true accept rate").draw()?;
    c.draw_series(LineSeries::new(pts, &BLUE))?;
    let at = (scores.far(threshold).max(floor), scores.tar(threshold));
    c.draw_series(std::iter::once(Circle::new(at, 5, RED.filled())))?
        .label(format!("threshold {threshold:.3}"))
        .legend(|(x, y)| Circle::new((x + 7, y), 4, RED.filled()));
    c.configure_series_labels().position(SeriesLabelPosition::LowerRight).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// Histograms of genuine and impostor distances on [0, 2] with the threshold as a vertical line.
pub fn plot_distances(path: &Path, scores: &facegate_shared::Scores, threshold: f32) -> Result<()> {
    register_font()?;
    const BINS: usize = 50;
    let hist = |d: &[f32]| {
        let mut h = [0f64; BINS];
        for &x in d {
            h[((x / 2.0 * BINS as f32) as usize).min(BINS - 1)] += 1.0;
        }
        let n = d.len().max(1) as f64;
        h.map(|v| v / n)
    };
    let (g, i) = (hist(scores.genuine()), hist(scores.impostor()));
    let top = g.iter().chain(&i).fold(0.0f64, |a, &b| a.max(b)) * 1.1 + 1e-9;
    let root = BitMapBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption("pair distances on the unit sphere", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0f64..2.0, 0.0..top)?;
    c.configure_mesh().x_desc("distance").y_desc("fraction of pairs").draw()?;
    let w = 2.0 / BINS as f64;
    for (h, color, name) in [(g, BLUE, "same person"), (i, RED, "different people")] {
        c.draw_series(
            h.iter().enumerate().map(|(k, &v)| {
                Rectangle::new([(k as f64 * w, 0.0), ((k + 1) as f64 * w, v)], color.mix(0.45).filled())
            }),
        )?
        .label(name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.45).filled()));
    }
    let t = threshold as f64;
    c.draw_series(LineSeries::new([(t, 0.0), (t, top)], BLACK.stroke_width(2)))?
        .label(format!("threshold {threshold:.3}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], BLACK));
    c.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    Ok(())
}

/// Draws training and validation loss (left) and validation EER (right) per epoch.
pub fn plot(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let n = rows.len().max(1) as f64;
    let max_loss = rows.iter().flat_map(|r| [r.train_loss, r.val_loss]).fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let mut c = ChartBuilder::on(&left)
        .caption("loss", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..n + 1.0, 0.0..max_loss)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(rows.iter().map(|r| (r.epoch as f64, r.train_loss)), &BLUE))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
    c.draw_series(LineSeries::new(rows.iter().map(|r| (r.epoch as f64, r.val_loss)), &RED))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
    c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    let max_eer = rows.iter().map(|r| r.val_eer * 100.0).fold(0.0f64, f64::max).max(1.0) * 1.1;
    let mut c = ChartBuilder::on(&right)
        .caption("validation EER (%)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..n + 1.0, 0.0..max_eer)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(rows.iter().map(|r| (r.epoch as f64, r.val_eer * 100.0)), &RED))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(train: &[f64], eer: &[f64]) -> Vec<EpochMetrics> {
        train
            .iter()
            .zip(eer)
            .enumerate()
            .map(|(i, (&t, &e))| EpochMetrics {
                epoch: i + 1,
                step: (i + 1) * 10,
                phase: "triplet".into(),
                train_loss: t,
                val_loss: t,
                val_eer: e,
                lr: 1e-3,
            })
            .collect()
    }

    #[test]
    fn diagnoses() {
        assert!(diagnose(&rows(&[1.0, 0.95, 0.9], &[0.3, 0.3, 0.3])).starts_with("underfitting"));
        let over = diagnose(&rows(&[1.0, 0.5, 0.3, 0.2, 0.1], &[0.2, 0.08, 0.1, 0.13, 0.15]));
        assert!(over.starts_with("overfitting from epoch 2"), "{over}");
        assert!(diagnose(&rows(&[1.0, 0.5, 0.3, 0.25], &[0.2, 0.1, 0.06, 0.05])).starts_with("good fit"));
        // this repository's ORL run: best 0.5 % then about 1.1 % for four epochs
        let orl = diagnose(&rows(
            &[0.14, 0.076, 0.043, 0.025, 0.011, 0.006],
            &[0.005, 0.0056, 0.0111, 0.0111, 0.0111, 0.0117],
        ));
        assert!(orl.starts_with("overfitting from epoch 1"), "{orl}");
    }
}
