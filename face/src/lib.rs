//! # facegate-face
//!
//! The one face pipeline shared by the host CLI, the trainer and the door unit:
//! [`decode_image`] → [`FaceDetector`] ([`YuNet`]) → [`align_face`] (ArcFace 5-point template) →
//! [`preprocess`] (driven by the encoder's [`ModelCard`](facegate_shared::ModelCard)) →
//! [`Encoder`] ([`TractEncoder`]). Each seam has a fake for tests ([`FixedDetector`],
//! [`FixedEncoder`]). Links tract, never tch or a camera.

mod align;
pub mod border;
mod detect;
mod encode;
mod error;
mod image_io;
pub mod kernels;
pub mod liveness;
pub mod parallax;
mod pipeline;
mod preprocess;
pub mod profile;
pub mod quality;
pub mod rewrite;
pub mod ring;
pub mod sface;
mod track;

pub use align::{align_face, template_for, AlignedFace, Similarity, ARCFACE_TEMPLATE_112, TEMPLATE_SIDE};
pub use detect::{
    decode_yunet, non_max_suppression, Detection, FaceDetector, FixedDetector, Letterbox, YuNet, CANVAS_HEIGHT,
    CANVAS_WIDTH, DEFAULT_SCORE_THRESHOLD, MAX_UPSCALE, NMS_IOU,
};
pub use encode::{card_path_for, Encoder, FixedEncoder, GraphPrep, TractEncoder};
pub use error::FaceError;
pub use image_io::{decode_image, load_image, MAX_DECODE_BYTES, MAX_FILE_BYTES, MAX_IMAGE_PIXELS};
pub use pipeline::{FaceEmbedding, FaceFinder, FacePipeline, FoundFace, StageTimings, DEFAULT_MIN_FACE_PX};
pub use preprocess::{preprocess, LUMA_WEIGHTS};
pub use quality::{inconsistent_photos, HeadPose, QualityLimits, QualityProblem, QualityReport};
pub use track::{DetectCounts, DetectPath, RoiDetector, EDGE_PX, MARGIN, MAX_AREA_FRACTION, WINDOW_SIDES};

/// Default file names inside `models/`.
pub mod paths {
    /// YuNet detector.
    pub const YUNET: &str = "face_detection_yunet_2023mar.onnx";
    /// SFace encoder.
    pub const SFACE: &str = "face_recognition_sface_2021dec.onnx";
}
