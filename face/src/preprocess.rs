//! The one preprocessing function: an aligned crop becomes the encoder's input tensor as its card
//! describes it. Training, enrolment, evaluation and the door unit all call [`preprocess`].

use facegate_shared::{ChannelOrder, InputSpec};

use crate::AlignedFace;

/// ITU-R BT.601 luma weights used to turn colour into grey.
pub const LUMA_WEIGHTS: [f32; 3] = [0.299, 0.587, 0.114];

/// Converts an aligned crop (RGB 0–255) to a `C × H × W` tensor (batch dimension not included)
/// in the card's channel order, each value `(v − mean[c]) / std[c]`.
///
/// The crop must have the card's width and height (the aligner is always called with them).
pub fn preprocess(face: &AlignedFace, spec: &InputSpec) -> Vec<f32> {
    debug_assert_eq!((face.width, face.height), (spec.width, spec.height));
    let plane = (face.width * face.height) as usize;
    let channels = spec.channels.channels();
    let mut out = vec![0.0f32; channels * plane];
    let order: &[usize] = match spec.channels {
        ChannelOrder::Grey => &[],
        ChannelOrder::Rgb => &[0, 1, 2],
        ChannelOrder::Bgr => &[2, 1, 0],
    };
    for (i, px) in face.rgb.chunks_exact(3).enumerate().take(plane) {
        if order.is_empty() {
            let y = LUMA_WEIGHTS[0] * px[0] + LUMA_WEIGHTS[1] * px[1] + LUMA_WEIGHTS[2] * px[2];
            out[i] = (y - spec.mean[0]) / spec.std[0];
        } else {
            for (c, &src) in order.iter().enumerate() {
                out[c * plane + i] = (px[src] - spec.mean[c]) / spec.std[c];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(channels: ChannelOrder, mean: Vec<f32>, std: Vec<f32>) -> InputSpec {
        InputSpec { name: "x".into(), width: 2, height: 1, channels, mean, std }
    }

    #[test]
    fn channel_orders_and_normalisation() {
        let face = AlignedFace { width: 2, height: 1, rgb: vec![10.0, 20.0, 30.0, 255.0, 0.0, 127.5] };
        assert_eq!(
            preprocess(&face, &spec(ChannelOrder::Rgb, vec![0.0; 3], vec![1.0; 3])),
            [10.0, 255.0, 20.0, 0.0, 30.0, 127.5]
        );
        assert_eq!(
            preprocess(&face, &spec(ChannelOrder::Bgr, vec![0.0; 3], vec![1.0; 3])),
            [30.0, 127.5, 20.0, 0.0, 10.0, 255.0]
        );
        let grey = preprocess(&face, &spec(ChannelOrder::Grey, vec![127.5], vec![127.5]));
        let y0 = 0.299 * 10.0 + 0.587 * 20.0 + 0.114 * 30.0;
        assert!((grey[0] - (y0 - 127.5) / 127.5).abs() < 1e-6);
        assert_eq!(grey.len(), 2);
    }
}
