//! Learning curves: `metrics.csv`, `learning_curves.png`, and a diagnosis of under- or overfitting.

use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

use facegate_hostkit::plots::register_font;

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub step: usize,
    pub phase: String,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_eer: f64,
    pub lr: f64,
}

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
