//! Unit-length face embeddings and the distances between them.
//!
//! Every [`Embedding`] lies on the unit sphere, so the Euclidean distance between two of them lies
//! in `[0, 2]` and relates to cosine similarity by `d² = 2 − 2·cos`. Margins and thresholds in
//! Facegate are chosen for that range (see [`crate::Threshold`]).

use serde::{Deserialize, Serialize};

/// Largest embedding dimension any reader accepts (guards allocations on untrusted input).
pub const MAX_EMBEDDING_DIM: usize = 4096;

/// Errors building or comparing embeddings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbeddingError {
    /// The vector was empty or longer than [`MAX_EMBEDDING_DIM`].
    #[error("embedding dimension {got} is outside 1..={max}")]
    BadDim { got: usize, max: usize },
    /// A component was NaN or infinite.
    #[error("embedding component {index} is not finite ({value})")]
    NotFinite { index: usize, value: f32 },
    /// The vector has (numerically) zero length and has no direction.
    #[error("embedding has zero length and cannot be normalised")]
    ZeroNorm,
    /// A stored embedding that should already be unit length is not (corrupt file).
    #[error("stored embedding has norm {norm}, expected 1")]
    NotUnit { norm: f32 },
    /// Two embeddings of different dimensions were compared.
    #[error("embedding dimension mismatch: expected {expected}, got {got}")]
    DimMismatch { expected: usize, got: usize },
}

/// The dimension of the embeddings of one encoder, checked once (1..=[`MAX_EMBEDDING_DIM`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "usize", into = "usize")]
pub struct EmbeddingDim(usize);

impl EmbeddingDim {
    /// Checks `dim`; fails with [`EmbeddingError::BadDim`] for 0 or more than [`MAX_EMBEDDING_DIM`].
    pub fn new(dim: usize) -> Result<Self, EmbeddingError> {
        if dim == 0 || dim > MAX_EMBEDDING_DIM {
            return Err(EmbeddingError::BadDim { got: dim, max: MAX_EMBEDDING_DIM });
        }
        Ok(Self(dim))
    }
    /// The dimension as a count.
    pub fn get(self) -> usize {
        self.0
    }
}

impl TryFrom<usize> for EmbeddingDim {
    type Error = EmbeddingError;
    fn try_from(v: usize) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<EmbeddingDim> for usize {
    fn from(d: EmbeddingDim) -> usize {
        d.0
    }
}

/// An L2-normalised embedding: a point on the unit sphere.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Box<[f32]>);

impl Embedding {
    /// Normalises `v` to unit length. Rejects empty, over-long, non-finite and zero vectors.
    pub fn new(mut v: Vec<f32>) -> Result<Self, EmbeddingError> {
        EmbeddingDim::new(v.len())?;
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(EmbeddingError::NotFinite { index, value });
        }
        let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        if norm.is_nan() || norm <= 1e-12 {
            return Err(EmbeddingError::ZeroNorm);
        }
        let inv = (1.0 / norm) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
        Ok(Self(v.into_boxed_slice()))
    }

    /// Wraps a vector that must already be unit length (within 1e-3), keeping its exact bits.
    /// Used by readers so a decode/encode round trip is byte-exact.
    pub fn from_unit(v: Vec<f32>) -> Result<Self, EmbeddingError> {
        EmbeddingDim::new(v.len())?;
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(EmbeddingError::NotFinite { index, value });
        }
        let norm = dot(&v, &v).sqrt();
        if (norm - 1.0).abs() > 1e-3 {
            return Err(EmbeddingError::NotUnit { norm });
        }
        Ok(Self(v.into_boxed_slice()))
    }

    /// The components (unit length).
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.0.len()
    }

    /// Cosine similarity in `[-1, 1]` (the dot product, since both are unit vectors).
    pub fn cosine(&self, other: &Embedding) -> Result<f32, EmbeddingError> {
        self.check_dim(other)?;
        Ok(dot(&self.0, &other.0).clamp(-1.0, 1.0))
    }

    /// Euclidean distance in `[0, 2]`, computed from the cosine as `sqrt(2 − 2·cos)`.
    pub fn distance(&self, other: &Embedding) -> Result<f32, EmbeddingError> {
        Ok(distance_from_cosine(self.cosine(other)?))
    }

    fn check_dim(&self, other: &Embedding) -> Result<(), EmbeddingError> {
        if self.dim() != other.dim() {
            return Err(EmbeddingError::DimMismatch { expected: self.dim(), got: other.dim() });
        }
        Ok(())
    }
}

/// `d = sqrt(2 − 2·cos)` for unit vectors; clamped so rounding never yields NaN.
pub fn distance_from_cosine(cos: f32) -> f32 {
    (2.0 - 2.0 * cos).max(0.0).sqrt()
}

/// `cos = 1 − d²/2` for unit vectors.
pub fn cosine_from_distance(d: f32) -> f32 {
    1.0 - d * d / 2.0
}

/// Dot product with eight independent accumulators so the compiler vectorises it.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_on_construction() {
        let e = Embedding::new(vec![3.0, 4.0]).unwrap();
        assert_eq!(e.as_slice(), &[0.6, 0.8]);
    }

    #[test]
    fn rejects_bad_vectors_with_typed_errors() {
        assert_eq!(Embedding::new(vec![]), Err(EmbeddingError::BadDim { got: 0, max: MAX_EMBEDDING_DIM }));
        assert_eq!(Embedding::new(vec![0.0, 0.0]), Err(EmbeddingError::ZeroNorm));
        assert!(matches!(Embedding::new(vec![1.0, f32::NAN]), Err(EmbeddingError::NotFinite { index: 1, .. })));
        let a = Embedding::new(vec![1.0, 0.0]).unwrap();
        let b = Embedding::new(vec![1.0, 0.0, 0.0]).unwrap();
        assert_eq!(a.distance(&b), Err(EmbeddingError::DimMismatch { expected: 2, got: 3 }));
    }

    #[test]
    fn sphere_extremes() {
        let a = Embedding::new(vec![1.0, 0.0, 0.0]).unwrap();
        let b = Embedding::new(vec![-2.0, 0.0, 0.0]).unwrap();
        let c = Embedding::new(vec![0.0, 5.0, 0.0]).unwrap();
        assert_eq!(a.distance(&a).unwrap(), 0.0);
        assert_eq!(a.distance(&b).unwrap(), 2.0);
        assert!((a.distance(&c).unwrap() - 2f32.sqrt()).abs() < 1e-6);
        assert_eq!(a.cosine(&b).unwrap(), -1.0);
    }

    #[test]
    fn dot_matches_naive_for_odd_lengths() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-5);
    }
}
