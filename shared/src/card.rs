//! The model card: what an encoder expects and what it was measured to do. It travels beside the
//! ONNX file (`NAME.card.json`) and drives preprocessing on host and door alike.

use serde::{Deserialize, Serialize};

use crate::{EmbeddingDim, Fingerprint, Threshold};

/// The card format version this build writes and the newest it reads.
pub const CARD_VERSION: u32 = 1;
/// Largest card file accepted.
pub const MAX_CARD_BYTES: usize = 1 << 20;
/// Largest input side accepted (pixels).
pub const MAX_INPUT_SIDE: u32 = 1024;

/// Errors reading a card.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// Not JSON, or fields missing, unknown or of the wrong type.
    #[error("model card is malformed: {0}")]
    Malformed(String),
    /// A card written by a newer Facegate.
    #[error("model card version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    /// A field holds an impossible value.
    #[error("model card field {field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    /// The card is too large to be a card.
    #[error("model card is {0} bytes, larger than any card ({MAX_CARD_BYTES})")]
    TooLarge(usize),
    /// The ONNX file does not have the fingerprint the card records.
    #[error("model file fingerprint {actual} does not match its card ({card}); the card belongs to another model")]
    FingerprintMismatch { card: String, actual: String },
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Pixel layout of the encoder input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// One grey channel (luma of colour frames).
    Grey,
    /// Red, green, blue planes.
    Rgb,
    /// Blue, green, red planes.
    Bgr,
}

impl ChannelOrder {
    /// Number of planes.
    pub fn channels(self) -> usize {
        match self {
            ChannelOrder::Grey => 1,
            ChannelOrder::Rgb | ChannelOrder::Bgr => 3,
        }
    }
}

/// The encoder input tensor (NCHW, batch 1). Pixel values start in 0–255 and become
/// `(value − mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Graph input name.
    pub name: String,
    /// Width in pixels (equals the aligned crop width).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channel order.
    pub channels: ChannelOrder,
    /// Per-channel mean, on the 0–255 scale.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, on the 0–255 scale.
    pub std: Vec<f32>,
}

/// A constant extra graph input (SFace has a one-element `scalar_op1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstInput {
    /// Graph input name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// A threshold and the false-accept rate it was calibrated at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedThreshold {
    /// Accept when distance `<=` this.
    pub distance: Threshold,
    /// Per-comparison FAR measured at that distance on `data`.
    pub far: f64,
    /// What it was calibrated on (for example `ORL validation people s3,s17,...`).
    pub data: String,
}

/// Measured quality.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardMetrics {
    /// EER on the validation people.
    #[serde(default)]
    pub val_eer: Option<f64>,
    /// EER on the held-out test people.
    #[serde(default)]
    pub test_eer: Option<f64>,
}

/// Everything needed to use an encoder correctly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// [`CARD_VERSION`].
    pub card_version: u32,
    /// Model name.
    pub name: String,
    /// SHA-256 of the ONNX bytes.
    pub fingerprint: Fingerprint,
    /// ONNX opset the graph uses.
    pub opset: i64,
    /// Encoder input.
    pub input: InputSpec,
    /// Constant extra inputs.
    #[serde(default)]
    pub extra_inputs: Vec<ConstInput>,
    /// Alignment template, currently always `arcface-5pt` scaled to the input size.
    pub alignment: String,
    /// Output dimension.
    pub embedding_dim: EmbeddingDim,
    /// Always `euclidean-unit-sphere`: the output is L2-normalised and compared by Euclidean
    /// distance in `[0, 2]`.
    pub metric: String,
    /// Whether the graph itself L2-normalises its output.
    pub normalised_in_graph: bool,
    /// Recommended threshold.
    #[serde(default)]
    pub threshold: Option<CalibratedThreshold>,
    /// Training data, split manifest and recipe, free text.
    #[serde(default)]
    pub training: Option<String>,
    /// Measured EERs.
    #[serde(default)]
    pub metrics: CardMetrics,
    /// Licence of the weights.
    #[serde(default)]
    pub licence: Option<String>,
}

/// The only alignment template Facegate knows.
pub const ALIGNMENT_ARCFACE_5PT: &str = "arcface-5pt";
/// The only metric Facegate knows.
pub const METRIC_UNIT_SPHERE: &str = "euclidean-unit-sphere";

impl ModelCard {
    /// Parses and validates a card from JSON text.
    pub fn from_json(text: &str) -> Result<Self, CardError> {
        if text.len() > MAX_CARD_BYTES {
            return Err(CardError::TooLarge(text.len()));
        }
        #[derive(Deserialize)]
        struct Version {
            card_version: u32,
        }
        let v: Version = serde_json::from_str(text).map_err(|e| CardError::Malformed(e.to_string()))?;
        if v.card_version != CARD_VERSION {
            return Err(CardError::UnsupportedVersion { found: v.card_version, supported: CARD_VERSION });
        }
        let card: ModelCard = serde_json::from_str(text).map_err(|e| CardError::Malformed(e.to_string()))?;
        card.validate()?;
        Ok(card)
    }

    /// Reads and validates `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, CardError> {
        let io = |source| CardError::Io { path: path.display().to_string(), source };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_CARD_BYTES as u64 {
            return Err(CardError::TooLarge(meta.len() as usize));
        }
        Self::from_json(&std::fs::read_to_string(path).map_err(io)?)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("card serialises")
    }

    /// Checks that `onnx_bytes` are the model this card describes.
    pub fn check_fingerprint(&self, onnx_bytes: &[u8]) -> Result<(), CardError> {
        let actual = Fingerprint::of_bytes(onnx_bytes);
        if actual != self.fingerprint {
            return Err(CardError::FingerprintMismatch {
                card: self.fingerprint.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// Checks field values.
    pub fn validate(&self) -> Result<(), CardError> {
        let inv = |field, problem: String| Err(CardError::Invalid { field, problem });
        let i = &self.input;
        if !(1..=MAX_INPUT_SIDE).contains(&i.width) || !(1..=MAX_INPUT_SIDE).contains(&i.height) {
            return inv("input.width/height", format!("{}x{} is outside 1..={MAX_INPUT_SIDE}", i.width, i.height));
        }
        let c = i.channels.channels();
        if i.mean.len() != c || i.std.len() != c {
            return inv("input.mean/std", format!("need {c} values each for {:?}", i.channels));
        }
        if i.mean.iter().any(|m| !m.is_finite()) || i.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return inv("input.mean/std", "means must be finite and stds finite and positive".into());
        }
        if i.name.is_empty() {
            return inv("input.name", "empty".into());
        }
        for x in &self.extra_inputs {
            let n: usize = x.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).unwrap_or(usize::MAX);
            if n != x.values.len() || n > 1 << 16 {
                return inv(
                    "extra_inputs",
                    format!("{}: shape {:?} does not hold {} values", x.name, x.shape, x.values.len()),
                );
            }
        }
        if self.alignment != ALIGNMENT_ARCFACE_5PT {
            return inv("alignment", format!("{:?} is unknown (expected {ALIGNMENT_ARCFACE_5PT:?})", self.alignment));
        }
        if self.metric != METRIC_UNIT_SPHERE {
            return inv("metric", format!("{:?} is unknown (expected {METRIC_UNIT_SPHERE:?})", self.metric));
        }
        if let Some(t) = &self.threshold {
            if !(0.0..=1.0).contains(&t.far) {
                return inv("threshold.far", format!("{} is not a rate", t.far));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ModelCard {
        ModelCard {
            card_version: CARD_VERSION,
            name: "test".into(),
            fingerprint: Fingerprint::of_bytes(b"onnx"),
            opset: 13,
            input: InputSpec {
                name: "input".into(),
                width: 64,
                height: 64,
                channels: ChannelOrder::Grey,
                mean: vec![127.5],
                std: vec![127.5],
            },
            extra_inputs: vec![],
            alignment: ALIGNMENT_ARCFACE_5PT.into(),
            embedding_dim: EmbeddingDim::new(128).unwrap(),
            metric: METRIC_UNIT_SPHERE.into(),
            normalised_in_graph: true,
            threshold: Some(CalibratedThreshold {
                distance: Threshold::new(0.9).unwrap(),
                far: 1e-3,
                data: "x".into(),
            }),
            training: None,
            metrics: CardMetrics::default(),
            licence: None,
        }
    }

    #[test]
    fn round_trip_and_rejections() {
        let c = sample();
        assert_eq!(ModelCard::from_json(&c.to_json()).unwrap(), c);
        assert!(c.check_fingerprint(b"onnx").is_ok());
        assert!(matches!(c.check_fingerprint(b"other"), Err(CardError::FingerprintMismatch { .. })));
        let future = c.to_json().replace("\"card_version\": 1", "\"card_version\": 2");
        assert!(matches!(ModelCard::from_json(&future), Err(CardError::UnsupportedVersion { found: 2, supported: 1 })));
        let unknown = c.to_json().replacen('{', "{\"surprise\": 1,", 1);
        assert!(matches!(ModelCard::from_json(&unknown), Err(CardError::Malformed(_))));
        let mut bad = c.clone();
        bad.input.std = vec![0.0];
        assert!(matches!(
            ModelCard::from_json(&bad.to_json()),
            Err(CardError::Invalid { field: "input.mean/std", .. })
        ));
        let mut bad = c.clone();
        bad.input.channels = ChannelOrder::Rgb;
        assert!(matches!(bad.validate(), Err(CardError::Invalid { .. })));
        let bad_t = c.to_json().replace("\"distance\": 0.9", "\"distance\": 3.0");
        assert!(matches!(ModelCard::from_json(&bad_t), Err(CardError::Malformed(_))));
        assert!(matches!(ModelCard::from_json("not json"), Err(CardError::Malformed(_))));
    }
}
