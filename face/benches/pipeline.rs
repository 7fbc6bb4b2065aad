//! Face pipeline latency on one core: YuNet detection at 640×480, 640×640 and 320×256, alignment, SFace and
//! default-encoder encoding (with the load-time graph rewrites and as shipped; YuNet also as shipped), and a whole 640×480 frame (detect + align + encode) with each. The frame is ORL `s1/1.pgm`
//! upscaled 3× on a grey 640×480 background. Window detection (`RoiDetector`, after the first
//! frame) is benched apart, on the same photo enlarged 2× (the 3× face is too large for a window
//! worth running), with the whole-canvas frame on that photo beside it. Needs `make setup`.
//! Run: `cargo bench -p facegate-face --bench pipeline`.

use criterion::{criterion_group, criterion_main, Criterion};
use facegate_face::{
    align_face, card_path_for, load_image, paths, DetectPath, Encoder, FaceDetector, FacePipeline, GraphPrep,
    RoiDetector, TractEncoder, YuNet,
};
use image::{imageops, Rgb, RgbImage};
use std::path::Path;
use std::time::Duration;

/// ORL `s1/1.pgm` enlarged to `w × h` at `(x, y)` on a grey 640×480 frame.
fn frame_with(w: u32, h: u32, x: i64, y: i64) -> RgbImage {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let face = load_image(&root.join("data/orl/s1/1.pgm")).expect("run `make setup` first");
    let face = imageops::resize(&face, w, h, imageops::FilterType::Triangle);
    let mut frame = RgbImage::from_pixel(640, 480, Rgb([110, 110, 110]));
    imageops::overlay(&mut frame, &face, x, y);
    frame
}

/// The peer's frame: the photo enlarged 3× (a face filling 70 % of the frame's height).
fn frame() -> RgbImage {
    frame_with(276, 336, 180, 70)
}

fn pipeline(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("models");
    let frame = frame();
    let mut g = c.benchmark_group("face");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for (w, h) in [(640, 480), (640, 640), (320, 256)] {
        let det = YuNet::load_with_canvas(&root.join(paths::YUNET), w, h).unwrap();
        assert_eq!(det.detect(&frame).unwrap().len(), 1);
        g.bench_function(format!("detect_yunet_{w}x{h}"), |b| b.iter(|| det.detect(&frame).unwrap()));
    }
    // the detector without the load-time max-pool rewrite, for the before/after in one run
    for (w, h) in [(640, 480), (320, 256)] {
        let det = YuNet::load_with(&root.join(paths::YUNET), w, h, GraphPrep::AsShipped).unwrap();
        g.bench_function(format!("detect_yunet_{w}x{h}_as_shipped"), |b| b.iter(|| det.detect(&frame).unwrap()));
    }
    // window detection (the door's `model.roi_refresh`): after the first frame, a window around
    // the face; reported apart from the whole-canvas figures (OpenCV's pipeline has no windows).
    // The peer's face is too large for a window worth running; this one is enlarged 2× (a face
    // about 170 px high).
    let frame2x = frame_with(184, 224, 200, 100);
    for (w, h) in [(640, 480), (320, 256)] {
        let det = RoiDetector::load(&root.join(paths::YUNET), (w, h), 100).unwrap();
        det.detect(&frame2x).unwrap();
        assert_eq!(det.detect(&frame2x).unwrap().len(), 1);
        let DetectPath::Window(side) = det.last_path() else { panic!("no window at {w}x{h}") };
        g.bench_function(format!("detect_yunet_{w}x{h}_window_{side}"), |b| b.iter(|| det.detect(&frame2x).unwrap()));
    }
    let det = YuNet::load(&root.join(paths::YUNET)).unwrap();
    let d = det.detect(&frame).unwrap()[0];
    g.bench_function("align_112", |b| b.iter(|| align_face(&frame, &d.landmarks, 112, 112).unwrap()));
    let sface = TractEncoder::load(&root.join(paths::SFACE)).unwrap();
    let crop = align_face(&frame, &d.landmarks, 112, 112).unwrap();
    g.bench_function("encode_sface", |b| b.iter(|| sface.encode(&crop).unwrap()));
    let default = TractEncoder::load(&root.join("facegate-default.onnx")).unwrap();
    let spec = &default.card().input;
    let small = align_face(&frame, &d.landmarks, spec.width, spec.height).unwrap();
    g.bench_function("encode_default", |b| b.iter(|| default.encode(&small).unwrap()));
    // the same encoders without the load-time PReLU rewrite
    let as_shipped = |name: &str| {
        let path = root.join(name);
        let card = facegate_shared::ModelCard::load(&card_path_for(&path)).unwrap();
        TractEncoder::from_bytes_with(&std::fs::read(&path).unwrap(), card, name, GraphPrep::AsShipped).unwrap()
    };
    let e = as_shipped(paths::SFACE);
    g.bench_function("encode_sface_as_shipped", |b| b.iter(|| e.encode(&crop).unwrap()));
    let e = as_shipped("facegate-default.onnx");
    g.bench_function("encode_default_as_shipped", |b| b.iter(|| e.encode(&small).unwrap()));
    let p = FacePipeline::new(det, sface);
    g.bench_function("frame_640x480_detect_align_sface", |b| b.iter(|| p.embed_largest(&frame).unwrap().unwrap()));
    let p = FacePipeline::new(YuNet::load_with_canvas(&root.join(paths::YUNET), 320, 256).unwrap(), p.encoder);
    g.bench_function("frame_320x256_detect_align_sface", |b| b.iter(|| p.embed_largest(&frame).unwrap().unwrap()));
    // the 2× frame, on the whole canvas and then in windows
    let p = FacePipeline::new(RoiDetector::load(&root.join(paths::YUNET), (640, 480), 0).unwrap(), p.encoder);
    g.bench_function("frame2x_640x480_detect_align_sface", |b| b.iter(|| p.embed_largest(&frame2x).unwrap().unwrap()));
    let p = FacePipeline::new(RoiDetector::load(&root.join(paths::YUNET), (640, 480), 100).unwrap(), p.encoder);
    p.embed_largest(&frame2x).unwrap().unwrap();
    g.bench_function("frame2x_640x480_window_detect_align_sface", |b| {
        b.iter(|| p.embed_largest(&frame2x).unwrap().unwrap())
    });
    let p = FacePipeline::new(YuNet::load(&root.join(paths::YUNET)).unwrap(), default);
    g.bench_function("frame_640x480_detect_align_default", |b| b.iter(|| p.embed_largest(&frame).unwrap().unwrap()));
    let p = FacePipeline::new(YuNet::load_with_canvas(&root.join(paths::YUNET), 320, 256).unwrap(), p.encoder);
    g.bench_function("frame_320x256_detect_align_default", |b| b.iter(|| p.embed_largest(&frame).unwrap().unwrap()));
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
