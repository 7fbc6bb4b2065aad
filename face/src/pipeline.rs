//! The pipeline every Facegate program uses: decode → detect → align → preprocess → encode.

use facegate_shared::{Embedding, InputSpec};
use image::RgbImage;

use crate::{align_face, AlignedFace, Detection, Encoder, FaceDetector, FaceError};

/// Smallest face (box width in source pixels) used by default.
pub const DEFAULT_MIN_FACE_PX: f32 = 24.0;

/// A face found in an image, aligned for one encoder input size.
#[derive(Debug, Clone)]
pub struct FoundFace {
    /// Where the detector saw it.
    pub detection: Detection,
    /// The aligned crop.
    pub aligned: AlignedFace,
}

/// An embedding and the detection it came from.
#[derive(Debug, Clone)]
pub struct FaceEmbedding {
    /// Unit embedding.
    pub embedding: Embedding,
    /// Detection.
    pub detection: Detection,
}

/// Detects faces and aligns them to an input size; no encoder needed (the trainer uses it).
pub struct FaceFinder<D> {
    /// The detector.
    pub detector: D,
    /// Faces narrower than this (source pixels) are ignored.
    pub min_face_px: f32,
}

impl<D: FaceDetector> FaceFinder<D> {
    /// A finder with the default minimum face size.
    pub fn new(detector: D) -> Self {
        Self { detector, min_face_px: DEFAULT_MIN_FACE_PX }
    }

    fn usable(&self, img: &RgbImage) -> Result<(Vec<Detection>, Option<Detection>), FaceError> {
        let all = self.detector.detect(img)?;
        let biggest_small = all.iter().copied().max_by(|a, b| a.area().total_cmp(&b.area()));
        let usable: Vec<Detection> = all.into_iter().filter(|d| d.bbox[2] >= self.min_face_px).collect();
        Ok((usable, biggest_small))
    }

    /// Exactly one usable face, aligned for `spec` (enrolment and training photos).
    /// Errors: [`FaceError::NoFace`], [`FaceError::FaceTooSmall`], [`FaceError::ManyFaces`].
    pub fn find_one(&self, img: &RgbImage, spec: &InputSpec) -> Result<FoundFace, FaceError> {
        let (usable, any) = self.usable(img)?;
        match usable.as_slice() {
            [] => Err(match any {
                Some(d) => FaceError::FaceTooSmall { size: d.bbox[2], min: self.min_face_px },
                None => FaceError::NoFace,
            }),
            [d] => self.align(img, *d, spec),
            many => Err(FaceError::ManyFaces { count: many.len(), scores: many.iter().map(|d| d.score).collect() }),
        }
    }

    /// The largest usable face, if any, aligned for `spec` (door frames).
    pub fn find_largest(&self, img: &RgbImage, spec: &InputSpec) -> Result<Option<FoundFace>, FaceError> {
        let (usable, _) = self.usable(img)?;
        match usable.into_iter().max_by(|a, b| a.area().total_cmp(&b.area())) {
            Some(d) => self.align(img, d, spec).map(Some),
            None => Ok(None),
        }
    }

    fn align(&self, img: &RgbImage, d: Detection, spec: &InputSpec) -> Result<FoundFace, FaceError> {
        let aligned = align_face(img, &d.landmarks, spec.width, spec.height).ok_or(FaceError::NoFace)?;
        Ok(FoundFace { detection: d, aligned })
    }
}

/// Finder plus encoder.
pub struct FacePipeline<D, E> {
    /// Detection and alignment.
    pub finder: FaceFinder<D>,
    /// The encoder.
    pub encoder: E,
}

impl<D: FaceDetector, E: Encoder> FacePipeline<D, E> {
    /// A pipeline with the default minimum face size.
    pub fn new(detector: D, encoder: E) -> Self {
        Self { finder: FaceFinder::new(detector), encoder }
    }

    /// Embeds the single face of an enrolment or query photo.
    pub fn embed_one(&self, img: &RgbImage) -> Result<FaceEmbedding, FaceError> {
        let f = self.finder.find_one(img, &self.encoder.card().input)?;
        Ok(FaceEmbedding { embedding: self.encoder.encode(&f.aligned)?, detection: f.detection })
    }

    /// Embeds the largest face of a camera frame, if any.
    pub fn embed_largest(&self, img: &RgbImage) -> Result<Option<FaceEmbedding>, FaceError> {
        match self.finder.find_largest(img, &self.encoder.card().input)? {
            Some(f) => Ok(Some(FaceEmbedding { embedding: self.encoder.encode(&f.aligned)?, detection: f.detection })),
            None => Ok(None),
        }
    }
}
