//! How far window detection ([`RoiDetector`]) moves YuNet's landmarks, and SFace's embedding,
//! from the whole canvas's, beside how far the whole canvas's own move when the frame moves by
//! one pixel (the detector's jitter). Only frames detected in a window are compared. ORL photos of 3 people enlarged to 140, 200 and 260 px on a
//! grey 640×480 frame, moving 7 px right and 3 px down per frame (5 frames after the first).
//! Run: `cargo run --release -p facegate-face --example window_gap` (needs `make setup`).

use facegate_face::{
    align_face, load_image, paths, DetectPath, Detection, Encoder, FaceDetector, RoiDetector, TractEncoder, YuNet,
};
use image::{imageops, Rgb, RgbImage};
use std::path::{Path, PathBuf};
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}
fn face(person: u32, k: u32, side: u32) -> RgbImage {
    let img = load_image(&root().join(format!("data/orl/s{person}/{k}.pgm"))).unwrap();
    imageops::resize(&img, side * 92 / 112, side, imageops::FilterType::Triangle)
}
fn frame(img: &RgbImage, x: i64, y: i64) -> RgbImage {
    let mut f = RgbImage::from_pixel(640, 480, Rgb([110, 110, 110]));
    imageops::overlay(&mut f, img, x, y);
    f
}
fn lm_gap(a: &Detection, b: &Detection, dx: f32, dy: f32) -> f32 {
    a.landmarks
        .iter()
        .zip(&b.landmarks)
        .map(|(p, q)| ((p[0] - q[0] + dx).abs()).max((p[1] - q[1] + dy).abs()))
        .fold(0.0, f32::max)
}
fn main() {
    let y = root().join("models").join(paths::YUNET);
    let whole = YuNet::load(&y).unwrap();
    let sface = TractEncoder::load(&root().join("models").join(paths::SFACE)).unwrap();
    let emb = |f: &RgbImage, d: &Detection| sface.encode(&align_face(f, &d.landmarks, 112, 112).unwrap()).unwrap();
    let (mut all_win, mut all_shift, mut all_dwin, mut all_dshift) = (vec![], vec![], vec![], vec![]);
    for side in [140u32, 200, 260] {
        for p in [1u32, 5, 9] {
            let roi = RoiDetector::load(&y, (640, 480), 100).unwrap();
            let img = face(p, 1, side);
            for i in 0..6i64 {
                let f = frame(&img, 120 + 7 * i, 60 + 3 * i);
                let f1 = frame(&img, 121 + 7 * i, 61 + 3 * i);
                let w = whole.detect(&f).unwrap()[0];
                let w1 = whole.detect(&f1).unwrap()[0];
                let r = roi.detect(&f).unwrap()[0];
                if !matches!(roi.last_path(), DetectPath::Window(_)) {
                    continue; // the whole canvas (the first frame, or a face too large): nothing to compare
                }
                all_win.push(lm_gap(&w, &r, 0.0, 0.0));
                all_shift.push(lm_gap(&w, &w1, 1.0, 1.0));
                let (ew, er, e1) = (emb(&f, &w), emb(&f, &r), emb(&f1, &w1));
                all_dwin.push(ew.distance(&er).unwrap());
                all_dshift.push(ew.distance(&e1).unwrap());
            }
            eprintln!("face {side} px, s{p}: {} window frames so far", all_win.len());
        }
    }
    let summary = |v: &[f32]| {
        let max = v.iter().copied().fold(0.0, f32::max);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        serde_json::json!({ "mean": (mean * 1e4).round() / 1e4, "max": (max * 1e4).round() / 1e4, "n": v.len() })
    };
    let out = serde_json::json!({
        "landmark_gap_px": { "window_vs_whole": summary(&all_win), "whole_moved_1px": summary(&all_shift) },
        "sface_distance": { "window_vs_whole": summary(&all_dwin), "whole_moved_1px": summary(&all_dshift) },
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
