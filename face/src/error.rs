//! The face pipeline's typed errors.

use facegate_shared::{CardError, EmbeddingError};

/// Everything that can go wrong between an image file and an embedding.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The bytes are not an image this build decodes, or the image is truncated or corrupt.
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// The image has no pixels.
    #[error("image is empty ({width}x{height})")]
    EmptyImage { width: u32, height: u32 },
    /// The image declares more pixels than any photo should have (decompression bomb guard).
    #[error("image is {width}x{height}, over the limit of {max_pixels} pixels")]
    TooLarge { width: u32, height: u32, max_pixels: u64 },
    /// No face was found.
    #[error("no face found")]
    NoFace,
    /// More than one face where exactly one is required.
    #[error("{count} faces found (scores {scores:?}); use a photo with exactly one face")]
    ManyFaces { count: usize, scores: Vec<f32> },
    /// The only face is smaller than the minimum size.
    #[error("face is {size:.0} px wide, smaller than the minimum {min:.0} px; move closer or use a larger photo")]
    FaceTooSmall { size: f32, min: f32 },
    /// An ONNX model could not be loaded or prepared.
    #[error("model {path}: {reason}")]
    Model { path: String, reason: String },
    /// The model card is missing or invalid.
    #[error("model card: {0}")]
    Card(#[from] CardError),
    /// The card and the graph disagree.
    #[error("card and graph disagree on {what}: card says {card}, graph has {graph}")]
    CardMismatch { what: &'static str, card: String, graph: String },
    /// Running a model failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The encoder produced an unusable vector.
    #[error("encoder output: {0}")]
    Embedding(#[from] EmbeddingError),
}
