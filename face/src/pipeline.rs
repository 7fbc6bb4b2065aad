//! The pipeline every Facegate program uses: decode → detect → align → preprocess → encode.

use facegate_shared::{Embedding, InputSpec};
use image::RgbImage;
use std::time::{Duration, Instant};

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

/// How long each stage of [`FacePipeline::embed_largest_timed`] took on one image. A stage that
/// did not run (no usable face, so nothing to align or encode) is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    /// Detection, including picking the largest usable face.
    pub detect: Duration,
    /// Alignment of that face to the encoder's input size.
    pub align: Option<Duration>,
    /// Preprocessing and encoding of the aligned crop.
    pub encode: Option<Duration>,
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
        match self.largest_usable(img)? {
            Some(d) => self.align(img, d, spec).map(Some),
            None => Ok(None),
        }
    }

    /// Detection only: the largest usable face, if any.
    fn largest_usable(&self, img: &RgbImage) -> Result<Option<Detection>, FaceError> {
        let (usable, _) = self.usable(img)?;
        Ok(usable.into_iter().max_by(|a, b| a.area().total_cmp(&b.area())))
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

    /// Embeds the largest face of a camera frame, if any (the door's path, through
    /// [`FacePipeline::embed_largest_timed`]).
    pub fn embed_largest(&self, img: &RgbImage) -> Result<Option<FaceEmbedding>, FaceError> {
        self.embed_largest_timed(img).map(|(face, _)| face)
    }

    /// [`FacePipeline::embed_largest`] with the time each stage took (the door's `bench` reports
    /// them). Errors as [`FaceFinder::find_largest`] and [`Encoder::encode`]; an alignment that
    /// fails (degenerate landmarks) is [`FaceError::NoFace`].
    pub fn embed_largest_timed(&self, img: &RgbImage) -> Result<(Option<FaceEmbedding>, StageTimings), FaceError> {
        let t = Instant::now();
        let largest = self.finder.largest_usable(img)?;
        let mut timings = StageTimings { detect: t.elapsed(), ..StageTimings::default() };
        let Some(d) = largest else { return Ok((None, timings)) };
        let t = Instant::now();
        let found = self.finder.align(img, d, &self.encoder.card().input)?;
        timings.align = Some(t.elapsed());
        let t = Instant::now();
        let embedding = self.encoder.encode(&found.aligned)?;
        timings.encode = Some(t.elapsed());
        Ok((Some(FaceEmbedding { embedding, detection: found.detection }), timings))
    }
}
