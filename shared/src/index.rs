//! Nearest-neighbour search over many stored embeddings (the "100,000 actors" use).
//!
//! Building is separate from querying, as in linfa-nn: an [`IndexKind`] builds a
//! [`NearestNeighbourIndex`] from an [`EmbeddingMatrix`]. Three implementations share one test suite:
//! - [`IndexKind::BruteForce`]: the naive reference (per-row [`Embedding::distance`], full sort);
//! - [`IndexKind::Flat`]: an exact scan of a contiguous row-major f32 matrix with an eight-lane
//!   dot product and a bounded top-k; memory-bandwidth bound (51 MB per query at 100k × 128-d);
//! - [`IndexKind::Sq8`]: the default, still exact: a first pass over int8-quantised rows (a quarter
//!   of the bytes) with a proven error bound picks every row that can be in the true top-k, and
//!   only those are re-scored in f32. Measured fastest (see `benches/index.rs`);
//! - `IndexKind::Linfa` (feature `linfa`, off by default): linfa-nn's linear search, KD-tree or
//!   ball tree with Euclidean distance, a comparator for benchmarks that the door never links.
//!
//! Every index reports distances with the one formula of [`Embedding::distance`] and orders by
//! (distance, row), so all of them return the same rows in the same order with the same distances
//! as brute force. Where an index ranks by another quantity (a dot product, int8 codes, linfa's
//! own distance sums) it keeps every row that rounding could move into the top k, within a proven
//! slack, and re-scores those with the formula.

use crate::embedding::{dot, unit_distance};
use crate::{Embedding, EmbeddingDim};

/// Errors building or querying an index.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    /// A row or the query does not have the index's dimension.
    #[error("index dimension {expected}, got a vector of {got}")]
    DimMismatch { expected: usize, got: usize },
    /// linfa-nn refused to build or query.
    #[cfg(feature = "linfa")]
    #[error("linfa-nn: {0}")]
    Linfa(String),
}

/// One search result: the row number in the matrix and its distance in `[0, 2]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// Row in the [`EmbeddingMatrix`] the index was built from.
    pub row: usize,
    /// Euclidean distance on the unit sphere.
    pub distance: f32,
}

/// Unit-length rows stored contiguously (row-major), the input every index is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingMatrix {
    dim: EmbeddingDim,
    data: Vec<f32>,
}

impl EmbeddingMatrix {
    /// An empty matrix of rows of `dim`.
    pub fn new(dim: EmbeddingDim) -> Self {
        Self { dim, data: Vec::new() }
    }
    /// An empty matrix with room for `rows` rows.
    pub fn with_capacity(dim: EmbeddingDim, rows: usize) -> Self {
        Self { dim, data: Vec::with_capacity(rows * dim.get()) }
    }
    /// Appends a row; fails on a dimension mismatch.
    pub fn push(&mut self, e: &Embedding) -> Result<(), IndexError> {
        if e.dim() != self.dim.get() {
            return Err(IndexError::DimMismatch { expected: self.dim.get(), got: e.dim() });
        }
        self.data.extend_from_slice(e.as_slice());
        Ok(())
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim.get()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Row dimension.
    pub fn dim(&self) -> EmbeddingDim {
        self.dim
    }
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.dim.get();
        &self.data[i * d..(i + 1) * d]
    }
    /// Bytes held by the rows.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<f32>()
    }
}

/// A built index that answers k-nearest queries.
pub trait NearestNeighbourIndex: Send + Sync {
    /// Number of indexed rows.
    fn len(&self) -> usize;
    /// Whether the index is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `k` nearest rows, nearest first (fewer if the index holds fewer). Ties keep row order.
    fn search(&self, query: &Embedding, k: usize) -> Result<Vec<Neighbour>, IndexError>;
}

/// linfa-nn's algorithms (feature `linfa`).
#[cfg(feature = "linfa")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinfaAlgorithm {
    /// O(N) scan.
    LinearSearch,
    /// K-D tree (does not help in 128 dimensions).
    KdTree,
    /// Ball tree (does not help in 128 dimensions).
    BallTree,
}

/// Which index to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// Naive reference implementation.
    BruteForce,
    /// Exact f32 scan.
    Flat,
    /// Exact search with an int8 pre-filter and f32 re-scoring (default).
    Sq8,
    /// linfa-nn (feature `linfa`).
    #[cfg(feature = "linfa")]
    Linfa(LinfaAlgorithm),
}

impl IndexKind {
    /// Every kind this build has, for benches and the shared test suite: brute force first, then
    /// the fast exact ones, then (feature `linfa`) linfa-nn's three.
    pub const ALL: &'static [IndexKind] = &[
        IndexKind::BruteForce,
        IndexKind::Flat,
        IndexKind::Sq8,
        #[cfg(feature = "linfa")]
        IndexKind::Linfa(LinfaAlgorithm::LinearSearch),
        #[cfg(feature = "linfa")]
        IndexKind::Linfa(LinfaAlgorithm::KdTree),
        #[cfg(feature = "linfa")]
        IndexKind::Linfa(LinfaAlgorithm::BallTree),
    ];

    /// A short name (`brute`, `flat`, `sq8`; with feature `linfa` also `linfa-linear`,
    /// `linfa-kdtree`, `linfa-balltree`).
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::BruteForce => "brute",
            IndexKind::Flat => "flat",
            IndexKind::Sq8 => "sq8",
            #[cfg(feature = "linfa")]
            IndexKind::Linfa(LinfaAlgorithm::LinearSearch) => "linfa-linear",
            #[cfg(feature = "linfa")]
            IndexKind::Linfa(LinfaAlgorithm::KdTree) => "linfa-kdtree",
            #[cfg(feature = "linfa")]
            IndexKind::Linfa(LinfaAlgorithm::BallTree) => "linfa-balltree",
        }
    }

    /// Parses [`IndexKind::name`]; `None` for an unknown name, and for a linfa name in a build
    /// without feature `linfa`.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == s)
    }

    /// Builds the index over `rows` (takes ownership; no copy for the fast paths).
    pub fn build(self, rows: EmbeddingMatrix) -> Result<Box<dyn NearestNeighbourIndex>, IndexError> {
        Ok(match self {
            IndexKind::BruteForce => Box::new(BruteForceIndex(rows)),
            IndexKind::Flat => Box::new(FlatIndex(rows)),
            IndexKind::Sq8 => Box::new(Sq8Index::build(rows)),
            #[cfg(feature = "linfa")]
            IndexKind::Linfa(alg) => Box::new(LinfaIndex::build(alg, rows)?),
        })
    }
}

fn check_query(dim: EmbeddingDim, q: &Embedding) -> Result<(), IndexError> {
    if q.dim() != dim.get() {
        return Err(IndexError::DimMismatch { expected: dim.get(), got: q.dim() });
    }
    Ok(())
}

/// How far (in similarity, or in distance) rounding can move one row against another when an
/// index ranks by a dot product or by another summation of the distance instead of by
/// [`unit_distance`].
///
/// For `dim`-term f32 sums of unit vectors the computed dot product and squared distance are each
/// within `γ = dim·u/(1 − dim·u)` (`u = 2⁻²⁴`) of exact, and the norms are within 4.8e-7 of 1, so
/// `d² = 2 − 2·s` holds to `5γ + 1e-6`. If `t` is the k-th best computed similarity, a row in the
/// top k by computed distance then has a computed similarity of at least `t − (6γ + 1e-6)`.
/// The slack `3·dim·ε + 2e-6` (`ε = 2u`) covers `6γ + 1e-6` for every allowed dimension
/// (≤ 4096), with room for the square roots and clamps. It also bounds (in distance) how far two
/// summation orders of `‖a − b‖` can disagree (at most `2γ`), which is what linfa's re-query needs.
fn rounding_slack(dim: usize) -> f32 {
    3.0 * dim as f32 * f32::EPSILON + 2e-6
}

/// Sorts by (distance, row) and keeps the first `k`: the order every index returns.
fn finish(mut found: Vec<Neighbour>, k: usize) -> Vec<Neighbour> {
    found.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
    found.truncate(k);
    found
}

/// Naive reference: one distance per row, full sort.
struct BruteForceIndex(EmbeddingMatrix);

impl NearestNeighbourIndex for BruteForceIndex {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn search(&self, query: &Embedding, k: usize) -> Result<Vec<Neighbour>, IndexError> {
        check_query(self.0.dim, query)?;
        let q = query.as_slice();
        let all = (0..self.0.len()).map(|row| Neighbour { row, distance: unit_distance(self.0.row(row), q) }).collect();
        Ok(finish(all, k))
    }
}

/// Exact scan: highest dot product = smallest distance; a bounded insertion top-k that also keeps
/// the rows within [`rounding_slack`] of the k-th best, which are then re-scored with
/// [`unit_distance`] so the result is brute force's to the bit.
struct FlatIndex(EmbeddingMatrix);

impl NearestNeighbourIndex for FlatIndex {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn search(&self, query: &Embedding, k: usize) -> Result<Vec<Neighbour>, IndexError> {
        check_query(self.0.dim, query)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let q = query.as_slice();
        let slack = rounding_slack(q.len());
        // (similarity, row), best first; every row within `slack` of the k-th best so far
        let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        let mut floor = f32::NEG_INFINITY;
        for (row, r) in self.0.data.chunks_exact(q.len()).enumerate() {
            let s = dot(r, q);
            if s < floor {
                continue;
            }
            let pos = top.partition_point(|&(t, _)| t >= s);
            top.insert(pos, (s, row));
            if top.len() >= k {
                floor = top[k - 1].0 - slack;
                while top.last().is_some_and(|&(t, _)| t < floor) {
                    top.pop();
                }
            }
        }
        let candidates =
            top.into_iter().map(|(_, row)| Neighbour { row, distance: unit_distance(self.0.row(row), q) }).collect();
        Ok(finish(candidates, k))
    }
}

/// Default index for large galleries: measured fastest exact search at 100k × 128-d
/// (see `benches/index.rs`).
pub const DEFAULT_INDEX: IndexKind = IndexKind::Sq8;

/// Below this many bytes of f32 rows the plain scan stays in cache and beats the two-pass int8
/// search (measured: 1k rows 15.7 µs vs 27 µs, 10k rows 217 µs vs 251 µs, 100k rows 8.6 ms vs
/// 2.5 ms, 128-d, one core).
pub const FLAT_MAX_BYTES: usize = 16 << 20;

impl IndexKind {
    /// The measured-fastest exact index for `rows` vectors of `dim`.
    pub fn fastest_exact(rows: usize, dim: usize) -> Self {
        if rows.saturating_mul(dim).saturating_mul(4) <= FLAT_MAX_BYTES {
            IndexKind::Flat
        } else {
            IndexKind::Sq8
        }
    }
}

/// Exact search in two passes.
///
/// Each row `r` is stored as `scale_r · r̂` with `r̂` in int8 (`scale_r = max|r_i| / 127`), and
/// `err_r = ‖r − scale_r · r̂‖`; the query is quantised the same way with error `e_q`. For the
/// approximate similarity `ŝ = scale_q · scale_r · (q̂ · r̂)` and the true `s = q · r`:
/// `|s − ŝ| ≤ err_r + (1 + err_r) · e_q ≤ b` with `b` from the largest `err_r`. If `t` is the k-th
/// largest `ŝ`, k rows have `s ≥ t − b`, so every true top-k row has `ŝ ≥ t − 2b`; a further
/// [`rounding_slack`] covers the f32 rounding of the distances. Exactly those candidates are
/// re-scored with [`unit_distance`], so the result equals brute force's to the bit. The proof needs
/// unit rows and query, which every [`Embedding`] is (to f32 precision).
struct Sq8Index {
    rows: EmbeddingMatrix,
    codes: Vec<i8>,
    scales: Vec<f32>,
    max_err: f32,
}

fn quantise(v: &[f32], out: &mut Vec<i8>) -> (f32, f32) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut err2 = 0.0f32;
    for &x in v {
        let c = (x / scale).round().clamp(-127.0, 127.0);
        out.push(c as i8);
        let e = x - c * scale;
        err2 += e * e;
    }
    (scale, err2.sqrt())
}

/// int8 dot product with sixteen i32 lanes (vectorises to widening multiply-adds).
#[inline]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let n = a.len() / 16 * 16;
    let tail: i32 = a[n..].iter().zip(&b[n..]).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
    acc.iter().sum::<i32>() + tail
}

impl Sq8Index {
    fn build(rows: EmbeddingMatrix) -> Self {
        let d = rows.dim.get();
        let mut codes = Vec::with_capacity(rows.data.len());
        let mut scales = Vec::with_capacity(rows.len());
        let mut max_err = 0.0f32;
        for r in rows.data.chunks_exact(d) {
            let (scale, err) = quantise(r, &mut codes);
            scales.push(scale);
            max_err = max_err.max(err);
        }
        Self { rows, codes, scales, max_err }
    }
}

impl NearestNeighbourIndex for Sq8Index {
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn search(&self, query: &Embedding, k: usize) -> Result<Vec<Neighbour>, IndexError> {
        check_query(self.rows.dim, query)?;
        let n = self.rows.len();
        if k == 0 || n == 0 {
            return Ok(Vec::new());
        }
        let q = query.as_slice();
        let mut qc = Vec::with_capacity(q.len());
        let (q_scale, q_err) = quantise(q, &mut qc);
        // a little slack for the f32 rounding of the bound itself
        let bound = self.max_err + (1.0 + self.max_err) * q_err + 1e-5;
        let k = k.min(n);
        // pass 1: approximate similarities over the int8 codes (a quarter of the f32 bytes)
        let approx: Vec<f32> = self
            .codes
            .chunks_exact(q.len())
            .zip(&self.scales)
            .map(|(c, &s)| dot_i8(c, &qc) as f32 * (s * q_scale))
            .collect();
        // the k-th largest approximation
        let mut top: Vec<f32> = Vec::with_capacity(k + 1);
        for &a in &approx {
            if top.len() < k || a > top[k - 1] {
                let pos = top.partition_point(|&t| t >= a);
                top.insert(pos, a);
                top.truncate(k);
            }
        }
        let cut = top[k - 1] - 2.0 * bound - rounding_slack(q.len());
        // pass 2: the one distance formula for the candidates only
        let candidates = approx
            .iter()
            .enumerate()
            .filter(|(_, &a)| a >= cut)
            .map(|(row, _)| Neighbour { row, distance: unit_distance(self.rows.row(row), q) })
            .collect();
        Ok(finish(candidates, k))
    }
}

#[cfg(feature = "linfa")]
type LinfaBox<'a> = Box<dyn linfa_nn::NearestNeighbourIndex<f32> + Send + Sync + 'a>;

#[cfg(feature = "linfa")]
self_cell::self_cell!(
    struct LinfaCell {
        owner: ndarray::Array2<f32>,
        #[covariant]
        dependent: LinfaBox,
    }
);

/// linfa-nn index owning its point matrix.
#[cfg(feature = "linfa")]
struct LinfaIndex {
    dim: EmbeddingDim,
    len: usize,
    cell: Option<LinfaCell>,
}

#[cfg(feature = "linfa")]
impl LinfaIndex {
    fn build(alg: LinfaAlgorithm, rows: EmbeddingMatrix) -> Result<Self, IndexError> {
        use linfa_nn::NearestNeighbour;
        let (dim, len) = (rows.dim, rows.len());
        if len == 0 {
            return Ok(Self { dim, len, cell: None });
        }
        let arr = ndarray::Array2::from_shape_vec((len, dim.get()), rows.data)
            .map_err(|e| IndexError::Linfa(e.to_string()))?;
        let algo = match alg {
            LinfaAlgorithm::LinearSearch => linfa_nn::CommonNearestNeighbour::LinearSearch,
            LinfaAlgorithm::KdTree => linfa_nn::CommonNearestNeighbour::KdTree,
            LinfaAlgorithm::BallTree => linfa_nn::CommonNearestNeighbour::BallTree,
        };
        let cell = LinfaCell::try_new(arr, |a| {
            algo.from_batch(a, linfa_nn::distance::L2Dist).map_err(|e| IndexError::Linfa(e.to_string()))
        })?;
        Ok(Self { dim, len, cell: Some(cell) })
    }
}

#[cfg(feature = "linfa")]
impl NearestNeighbourIndex for LinfaIndex {
    fn len(&self) -> usize {
        self.len
    }
    fn search(&self, query: &Embedding, k: usize) -> Result<Vec<Neighbour>, IndexError> {
        check_query(self.dim, query)?;
        let Some(cell) = &self.cell else { return Ok(Vec::new()) };
        if k == 0 {
            return Ok(Vec::new());
        }
        let q = query.as_slice();
        let view = ndarray::ArrayView1::from(q);
        let index = cell.borrow_dependent();
        let points = cell.borrow_owner();
        let rescore = |found: Vec<(ndarray::ArrayView1<'_, f32>, usize)>| -> Vec<Neighbour> {
            found.into_iter().map(|(_, row)| Neighbour { row, distance: row_distance(points, row, q) }).collect()
        };
        let linfa = |e: linfa_nn::NnError| IndexError::Linfa(e.to_string());
        if k >= self.len {
            return Ok(finish(rescore(index.k_nearest(view, self.len).map_err(linfa)?), k));
        }
        // linfa ranks by its own sum of squares, whose rounding may differ from ours at the k-th
        // place: take everything within the k-th distance plus the rounding slack, and re-score.
        let first = rescore(index.k_nearest(view, k).map_err(linfa)?);
        let kth = first.iter().map(|n| n.distance).fold(0.0f32, f32::max);
        let range = kth + rounding_slack(q.len());
        Ok(finish(rescore(index.within_range(view, range).map_err(linfa)?), k))
    }
}

/// [`unit_distance`] from row `row` of linfa's point matrix to `q`.
#[cfg(feature = "linfa")]
fn row_distance(points: &ndarray::Array2<f32>, row: usize, q: &[f32]) -> f32 {
    let r = points.row(row);
    match r.as_slice() {
        Some(r) => unit_distance(r, q),
        None => unit_distance(&r.to_vec(), q),
    }
}
