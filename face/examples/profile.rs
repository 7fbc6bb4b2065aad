//! Per-node profile of the door's models on the bench frame (ORL `s1/1.pgm` enlarged 3× on a
//! grey 640×480 frame): SFace and the ORL-trained encoder as shipped and with the load-time PReLU
//! rewrite, YuNet at the 640×480 and 320×256 canvases. Prints Markdown tables for BENCHMARKS.md.
//! Run: `taskset -c 1 cargo run --release -p facegate-face --example profile [RUNS]` (`ALL=1`: every
//! node, not only the slowest).

use facegate_face::profile::Profile;
use facegate_face::{
    align_face, card_path_for, load_image, paths, preprocess, Encoder, FaceDetector, GraphPrep, TractEncoder, YuNet,
};
use image::{imageops, Rgb, RgbImage};
use std::path::Path;

fn table(title: &str, p: &Profile, top: usize) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!("\n#### {title}: {:.2} ms per run\n", ms(p.total));
    println!("| operator | ms | share |\n|---|---|---|");
    for n in p.by_op().iter().take(top) {
        println!("| {} | {:.2} | {:.0} % |", n.op, ms(n.time), 100.0 * ms(n.time) / ms(p.total));
    }
    println!("\n| slowest nodes | operator | ms |\n|---|---|---|");
    for n in p.nodes.iter().take(if std::env::var("ALL").is_ok() { 200 } else { top }) {
        println!("| `{}` | {} | {:.2} |", n.name, n.op, ms(n.time));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: u32 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(20);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let models = root.join("models");
    let face = load_image(&root.join("data/orl/s1/1.pgm"))?;
    let face = imageops::resize(&face, 276, 336, imageops::FilterType::Triangle);
    let mut frame = RgbImage::from_pixel(640, 480, Rgb([110, 110, 110]));
    imageops::overlay(&mut frame, &face, 180, 70);

    for (w, h) in [(640, 480), (320, 256)] {
        for prep in [GraphPrep::AsShipped, GraphPrep::Rewritten] {
            let det = YuNet::load_with(&models.join(paths::YUNET), w, h, prep)?;
            table(&format!("YuNet {w}×{h}, {prep:?}"), &det.profile(&frame, runs)?, 6);
        }
    }
    let det = YuNet::load(&models.join(paths::YUNET))?;
    let d = det.detect(&frame)?[0];
    for name in [paths::SFACE, "facegate-default.onnx"] {
        let path = models.join(name);
        let card = facegate_shared::ModelCard::load(&card_path_for(&path))?;
        let bytes = std::fs::read(&path)?;
        for prep in [GraphPrep::AsShipped, GraphPrep::Rewritten] {
            let enc = TractEncoder::from_bytes_with(&bytes, card.clone(), name, prep)?;
            let spec = &enc.card().input;
            let crop = align_face(&frame, &d.landmarks, spec.width, spec.height).ok_or("alignment failed")?;
            table(&format!("{name}, {prep:?}"), &enc.profile(&preprocess(&crop, spec), runs)?, 6);
        }
    }
    Ok(())
}
