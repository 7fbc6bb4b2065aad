//! Unit-length face embeddings and the distances between them.
//!
//! Every [`Embedding`] lies on the unit sphere, so the Euclidean distance between two of them lies
//! in `[0, 2]` and relates to cosine similarity by `d² = 2 − 2·cos`. Margins and thresholds in
//! Facegate are chosen for that range (see [`crate::Threshold`]).

use serde::{Deserialize, Serialize};

/// Largest embedding dimension any reader accepts (guards allocations on untrusted input).
pub const MAX_EMBEDDING_DIM: usize = 4096;

/// How far from 1 the norm of a stored embedding may be before [`Embedding::from_unit`] calls the
/// file corrupt. Within it the vector is re-normalised.
pub(crate) const STORED_NORM_TOLERANCE: f32 = 1e-3;

/// How far from 1 the norm of every [`Embedding`] is at most: four f32 epsilons (4.8e-7). Dividing
/// by an f64 norm and rounding to f32 leaves each component within two rounding steps (2.4e-7
/// relative) of exact, so the norm is too.
pub(crate) const UNIT_NORM_SLACK: f64 = 4.0 * f32::EPSILON as f64;

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
        check_components(&v)?;
        let norm = norm_f64(&v);
        if norm.is_nan() || norm <= 1e-12 {
            return Err(EmbeddingError::ZeroNorm);
        }
        scale_to_unit(&mut v, norm);
        Ok(Self(v.into_boxed_slice()))
    }

    /// Accepts a vector that should already be unit length, as stored in a gallery file.
    ///
    /// Fails with [`EmbeddingError::NotUnit`] when its norm is more than 1e-3 from 1 (a corrupt
    /// file), and like [`Embedding::new`] on empty, over-long or non-finite vectors. Within that
    /// tolerance the vector is re-normalised, so every `Embedding` is unit to f32 precision (norm
    /// within 4.8e-7 of 1) and the indexes' exactness proofs hold. A vector already that close to
    /// unit (everything [`Embedding::new`] produces) keeps its exact bits, so a decode/encode round
    /// trip stays byte-exact.
    pub fn from_unit(mut v: Vec<f32>) -> Result<Self, EmbeddingError> {
        check_components(&v)?;
        let norm = norm_f64(&v);
        if (norm - 1.0).abs() > f64::from(STORED_NORM_TOLERANCE) {
            return Err(EmbeddingError::NotUnit { norm: norm as f32 });
        }
        if (norm - 1.0).abs() > UNIT_NORM_SLACK {
            scale_to_unit(&mut v, norm);
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

    /// Euclidean distance in `[0, 2]`, by [`unit_distance`] (the one formula Facegate uses).
    pub fn distance(&self, other: &Embedding) -> Result<f32, EmbeddingError> {
        self.check_dim(other)?;
        Ok(unit_distance(&self.0, &other.0))
    }

    fn check_dim(&self, other: &Embedding) -> Result<(), EmbeddingError> {
        if self.dim() != other.dim() {
            return Err(EmbeddingError::DimMismatch { expected: self.dim(), got: other.dim() });
        }
        Ok(())
    }
}

/// The distance between two unit vectors: `‖a − b‖`, clamped to the sphere's diameter 2.
///
/// This is the one distance formula of Facegate: [`Embedding::distance`], [`crate::verify`] and
/// every index report it, so the same pair always gets the same bits. The difference form is
/// accurate near 0, where `sqrt(2 − 2·cos)` cancels: a cosine within one f32 ulp of 1 reads as a
/// distance of 0 or 3.5e-4 and nothing between. Both slices must have the same length.
#[inline]
pub(crate) fn unit_distance(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += (x - y) * (x - y);
    }
    let sum = (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail;
    sum.sqrt().min(2.0)
}

/// `d = sqrt(2 − 2·cos)` for unit vectors; clamped so rounding never yields NaN. A conversion of
/// thresholds and reported similarities; distances between embeddings come from [`unit_distance`].
pub fn distance_from_cosine(cos: f32) -> f32 {
    (2.0 - 2.0 * cos).max(0.0).sqrt()
}

/// `cos = 1 − d²/2` for unit vectors.
pub fn cosine_from_distance(d: f32) -> f32 {
    1.0 - d * d / 2.0
}

/// Rejects empty, over-long and non-finite vectors.
fn check_components(v: &[f32]) -> Result<(), EmbeddingError> {
    EmbeddingDim::new(v.len())?;
    if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(EmbeddingError::NotFinite { index, value });
    }
    Ok(())
}

/// The Euclidean norm, accumulated in f64 so it is exact to f32 precision.
fn norm_f64(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt()
}

/// Divides `v` by its `norm`. Each component is then within about two f32 rounding steps of exact,
/// so the result's norm is within [`UNIT_NORM_SLACK`] of 1.
fn scale_to_unit(v: &mut [f32], norm: f64) {
    let inv = (1.0 / norm) as f32;
    v.iter_mut().for_each(|x| *x *= inv);
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

    #[test]
    fn from_unit_renormalises_within_tolerance_and_rejects_beyond() {
        for scale in [1.0009f32, 0.9995, 1.000_999, 0.999_001] {
            let e = Embedding::from_unit(vec![0.6 * scale, 0.8 * scale, 0.0]).unwrap();
            assert!((norm_f64(e.as_slice()) - 1.0).abs() <= UNIT_NORM_SLACK, "scale {scale}");
            assert!((e.as_slice()[0] - 0.6).abs() < 1e-6 && (e.as_slice()[1] - 0.8).abs() < 1e-6);
        }
        for scale in [1.0011f32, 0.9989, 2.0] {
            assert!(matches!(Embedding::from_unit(vec![scale, 0.0]), Err(EmbeddingError::NotUnit { .. })));
        }
        assert_eq!(Embedding::from_unit(vec![]), Err(EmbeddingError::BadDim { got: 0, max: MAX_EMBEDDING_DIM }));
        assert!(matches!(Embedding::from_unit(vec![f32::NAN]), Err(EmbeddingError::NotFinite { index: 0, .. })));
    }

    #[test]
    fn from_unit_keeps_the_bits_of_what_new_produces() {
        let mut rng = crate::synthetic::SplitMix64::new(11);
        for d in [2usize, 3, 17, 128, 512, 4096] {
            for _ in 0..20 {
                let v: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
                let e = Embedding::new(v).unwrap();
                assert!((norm_f64(e.as_slice()) - 1.0).abs() <= UNIT_NORM_SLACK);
                let again = Embedding::from_unit(e.as_slice().to_vec()).unwrap();
                assert_eq!(again.as_slice(), e.as_slice(), "dim {d}");
            }
        }
    }

    #[test]
    fn unit_distance_is_accurate_near_zero_and_agrees_with_the_cosine_form_elsewhere() {
        // two unit vectors 1e-4 apart: the cosine form rounds cos to 1 (or one ulp below) and
        // reads 0 or 3.5e-4; the difference form reads 1e-4.
        let a = Embedding::new(vec![1.0, 0.0]).unwrap();
        let b = Embedding::new(vec![1.0, 1e-4]).unwrap();
        let d = a.distance(&b).unwrap();
        assert!((d - 1e-4).abs() < 1e-7, "{d}");
        assert_eq!(a.distance(&a).unwrap(), 0.0);
        let mut rng = crate::synthetic::SplitMix64::new(5);
        for _ in 0..200 {
            let dim = EmbeddingDim::new(1 + rng.below(200)).unwrap();
            let x = crate::synthetic::random_unit(&mut rng, dim);
            let y = crate::synthetic::random_unit(&mut rng, dim);
            let d = x.distance(&y).unwrap();
            assert_eq!(d, y.distance(&x).unwrap());
            assert!((d - distance_from_cosine(x.cosine(&y).unwrap())).abs() < 1e-5);
            assert!((0.0..=2.0).contains(&d));
        }
    }
}
