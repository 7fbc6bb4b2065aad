//! Evaluation plots for `facegate eval`: ROC and pair-distance histograms (PNG), and the font
//! registration every plot in the project uses.

use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// Font used for plot text (Debian `fonts-dejavu-core`, installed by `make setup`).
pub const PLOT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the plot font once per process (every plot calls it first).
pub fn register_font() -> Result<()> {
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
