//! The committed trained encoder (`models/facegate-default.onnx`) gives its golden embedding on
//! this machine, within the tolerance recorded by `facegate export` (which wrote the golden pair
//! from tch). Runs on x86-64 and, in `make test`, on aarch64 under qemu.

use facegate_face::{Encoder, TractEncoder};
use std::path::Path;

#[derive(serde::Deserialize)]
struct Golden {
    shape: Vec<usize>,
    input: Vec<f32>,
    embedding: Vec<f32>,
    tolerance: f32,
}

#[test]
fn default_encoder_reproduces_its_golden_embedding() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("models");
    let onnx = models.join("facegate-default.onnx");
    let golden: Golden =
        serde_json::from_str(&std::fs::read_to_string(models.join("facegate-default.golden.json")).unwrap()).unwrap();
    let enc = TractEncoder::load(&onnx).unwrap();
    let spec = &enc.card().input;
    assert_eq!(golden.shape, [1, spec.channels.channels(), spec.height as usize, spec.width as usize]);
    let got = enc.encode_tensor(&golden.input).unwrap();
    let worst = golden.embedding.iter().zip(got.as_slice()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(
        worst <= golden.tolerance,
        "embedding differs from the golden one by {worst} (tolerance {})",
        golden.tolerance
    );
    assert_eq!(got.dim(), enc.card().embedding_dim.get());
}
