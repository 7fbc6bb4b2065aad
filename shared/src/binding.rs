//! What ties a gallery to the encoder that made its embeddings: the ONNX bytes **and** every card
//! field that changes an embedding (input size, channel order, mean, std, constant extra inputs,
//! alignment template). A card edited after enrolment changes every embedding while the ONNX
//! fingerprint still matches, so the gallery records these fields and a reader names the one that
//! differs.

use crate::{ChannelOrder, ConstInput, Fingerprint, ModelCard};

/// The card fields that change an embedding, as enrolment saw them.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    /// Encoder input width in pixels (the aligned crop width).
    pub width: u32,
    /// Encoder input height in pixels.
    pub height: u32,
    /// Channel order.
    pub channels: ChannelOrder,
    /// Per-channel mean (0–255 scale).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (0–255 scale).
    pub std: Vec<f32>,
    /// Alignment template name.
    pub alignment: String,
    /// Constant extra graph inputs.
    pub extra_inputs: Vec<ConstInput>,
}

/// The ONNX fingerprint plus the preprocessing that enrolment used.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderBinding {
    /// SHA-256 of the encoder ONNX bytes.
    pub onnx: Fingerprint,
    /// The card fields that change embeddings.
    pub preprocessing: Preprocessing,
}

impl ModelCard {
    /// The binding a gallery enrolled with this encoder and card carries.
    pub fn binding(&self) -> EncoderBinding {
        let i = &self.input;
        EncoderBinding {
            onnx: self.fingerprint,
            preprocessing: Preprocessing {
                width: i.width,
                height: i.height,
                channels: i.channels,
                mean: i.mean.clone(),
                std: i.std.clone(),
                alignment: self.alignment.clone(),
                extra_inputs: self.extra_inputs.clone(),
            },
        }
    }
}

/// The first values of a long list are enough to tell a person which card was used.
const SHOWN_VALUES: usize = 8;

impl Preprocessing {
    /// The fields compared by [`Preprocessing::first_difference`], in the order compared.
    pub const FIELDS: [&'static str; 7] =
        ["input.width", "input.height", "input.channels", "input.mean", "input.std", "alignment", "extra_inputs"];

    /// The first field, in the order of [`Preprocessing::FIELDS`], where `self` and `other` differ,
    /// as `(field, self's value, other's value)` written for a person. `None` when all are equal.
    /// Floats compare with `==`, so a NaN never equals anything and is always reported.
    pub fn first_difference(&self, other: &Preprocessing) -> Option<(&'static str, String, String)> {
        let pair = |field, a: String, b: String| Some((field, a, b));
        if self.width != other.width {
            return pair("input.width", self.width.to_string(), other.width.to_string());
        }
        if self.height != other.height {
            return pair("input.height", self.height.to_string(), other.height.to_string());
        }
        if self.channels != other.channels {
            return pair("input.channels", channel_name(self.channels).into(), channel_name(other.channels).into());
        }
        if self.mean != other.mean {
            return pair("input.mean", floats(&self.mean), floats(&other.mean));
        }
        if self.std != other.std {
            return pair("input.std", floats(&self.std), floats(&other.std));
        }
        if self.alignment != other.alignment {
            return pair("alignment", format!("{:?}", self.alignment), format!("{:?}", other.alignment));
        }
        if self.extra_inputs != other.extra_inputs {
            return pair("extra_inputs", extra_inputs(&self.extra_inputs), extra_inputs(&other.extra_inputs));
        }
        None
    }
}

/// The name a card's JSON uses for a channel order.
fn channel_name(c: ChannelOrder) -> &'static str {
    match c {
        ChannelOrder::Grey => "grey",
        ChannelOrder::Rgb => "rgb",
        ChannelOrder::Bgr => "bgr",
    }
}

/// `[0.5, 1.0]`, or the first [`SHOWN_VALUES`] values and the count of a longer list.
fn floats(v: &[f32]) -> String {
    if v.len() <= SHOWN_VALUES {
        return format!("{v:?}");
    }
    let shown: Vec<String> = v[..SHOWN_VALUES].iter().map(|x| format!("{x:?}")).collect();
    format!("[{}, … ({} values)]", shown.join(", "), v.len())
}

/// `[scalar_op1 shape [1] values [1.0]]`, or `[]` when there are none.
fn extra_inputs(v: &[ConstInput]) -> String {
    let items: Vec<String> =
        v.iter().map(|x| format!("{} shape {:?} values {}", x.name, x.shape, floats(&x.values))).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named_and_readable() {
        let a = crate::synthetic::binding(b"m").preprocessing;
        assert_eq!(a.first_difference(&a.clone()), None);
        let mut b = a.clone();
        b.channels = ChannelOrder::Bgr;
        b.mean = vec![0.0; 3]; // a later field also differs: the first one is reported
        assert_eq!(a.first_difference(&b), Some(("input.channels", "grey".into(), "bgr".into())));
        let mut b = a.clone();
        b.extra_inputs = vec![ConstInput { name: "scalar_op1".into(), shape: vec![1], values: vec![1.0] }];
        assert_eq!(
            a.first_difference(&b),
            Some(("extra_inputs", "[]".into(), "[scalar_op1 shape [1] values [1.0]]".into()))
        );
        let mut b = a.clone();
        b.alignment = "other".into();
        assert_eq!(a.first_difference(&b), Some(("alignment", "\"arcface-5pt\"".into(), "\"other\"".into())));
        assert_eq!(floats(&[0.5; 10]), "[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, … (10 values)]");
        let mut nan = a.clone();
        nan.std = vec![f32::NAN];
        assert_eq!(nan.first_difference(&nan.clone()).map(|d| d.0), Some("input.std"));
    }
}
