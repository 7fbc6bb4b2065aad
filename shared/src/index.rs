//! Nearest-neighbour search over many stored embeddings (the "100,000 actors" use).
//!
//! Building is separate from querying, as in linfa-nn: an [`IndexKind`] builds a
//! [`NearestNeighbourIndex`] from an [`EmbeddingMatrix`]. Three implementations share one test suite:
//! - [`IndexKind::BruteForce`]: the naive reference (per-row `Embedding::distance`-style maths);
//! - [`IndexKind::Flat`]: the default, an exact scan of a contiguous row-major matrix with an
//!   eight-lane dot product and a bounded top-k; measured fastest (see `benches/index.rs`);
//! - [`IndexKind::Linfa`]: linfa-nn's linear search, KD-tree or ball tree with Euclidean distance.

use crate::embedding::{distance_from_cosine, dot};
use crate::{Embedding, EmbeddingDim};

/// Errors building or querying an index.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    /// A row or the query does not have the index's dimension.
    #[error("index dimension {expected}, got a vector of {got}")]
    DimMismatch { expected: usize, got: usize },
    /// linfa-nn refused to build or query.
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

/// linfa-nn's algorithms.
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
    /// Fast exact scan (default).
    Flat,
    /// linfa-nn.
    Linfa(LinfaAlgorithm),
}

impl IndexKind {
    /// Every kind, for benches and the shared test suite.
    pub const ALL: [IndexKind; 5] = [
        IndexKind::BruteForce,
        IndexKind::Flat,
        IndexKind::Linfa(LinfaAlgorithm::LinearSearch),
        IndexKind::Linfa(LinfaAlgorithm::KdTree),
        IndexKind::Linfa(LinfaAlgorithm::BallTree),
    ];

    /// A short name (`brute`, `flat`, `linfa-linear`, `linfa-kdtree`, `linfa-balltree`).
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::BruteForce => "brute",
            IndexKind::Flat => "flat",
            IndexKind::Linfa(LinfaAlgorithm::LinearSearch) => "linfa-linear",
            IndexKind::Linfa(LinfaAlgorithm::KdTree) => "linfa-kdtree",
            IndexKind::Linfa(LinfaAlgorithm::BallTree) => "linfa-balltree",
        }
    }

    /// Parses [`IndexKind::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Builds the index over `rows` (takes ownership; no copy for the fast paths).
    pub fn build(self, rows: EmbeddingMatrix) -> Result<Box<dyn NearestNeighbourIndex>, IndexError> {
        Ok(match self {
            IndexKind::BruteForce => Box::new(BruteForceIndex(rows)),
            IndexKind::Flat => Box::new(FlatIndex(rows)),
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

/// Naive reference: one distance per row, full sort.
struct BruteForceIndex(EmbeddingMatrix);

impl NearestNeighbourIndex for BruteForceIndex {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn search(&self, query: &Embedding, k: usize) -> Result<Vec<Neighbour>, IndexError> {
        check_query(self.0.dim, query)?;
        let q = query.as_slice();
        let mut all: Vec<Neighbour> = (0..self.0.len())
            .map(|row| {
                let d2: f32 = self.0.row(row).iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                Neighbour { row, distance: d2.sqrt().min(2.0) }
            })
            .collect();
        all.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
        all.truncate(k);
        Ok(all)
    }
}

/// Exact scan: highest dot product = smallest distance; bounded insertion top-k.
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
        // (similarity, row), best first; `floor` is the k-th best similarity so far.
        let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        let mut floor = f32::NEG_INFINITY;
        for (row, r) in self.0.data.chunks_exact(q.len()).enumerate() {
            let s = dot(r, q);
            if top.len() == k && s <= floor {
                continue;
            }
            let pos = top.partition_point(|&(t, _)| t >= s);
            top.insert(pos, (s, row));
            if top.len() > k {
                top.pop();
            }
            if top.len() == k {
                floor = top[k - 1].0;
            }
        }
        Ok(top.into_iter().map(|(s, row)| Neighbour { row, distance: distance_from_cosine(s.min(1.0)) }).collect())
    }
}

type LinfaBox<'a> = Box<dyn linfa_nn::NearestNeighbourIndex<f32> + Send + Sync + 'a>;

self_cell::self_cell!(
    struct LinfaCell {
        owner: ndarray::Array2<f32>,
        #[covariant]
        dependent: LinfaBox,
    }
);

/// linfa-nn index owning its point matrix.
struct LinfaIndex {
    dim: EmbeddingDim,
    len: usize,
    cell: Option<LinfaCell>,
}

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
        let q = ndarray::ArrayView1::from(query.as_slice());
        let found =
            cell.borrow_dependent().k_nearest(q, k.min(self.len)).map_err(|e| IndexError::Linfa(e.to_string()))?;
        let mut out: Vec<Neighbour> = found
            .into_iter()
            .map(|(p, row)| {
                let d2: f32 = p.iter().zip(query.as_slice()).map(|(a, b)| (a - b) * (a - b)).sum();
                Neighbour { row, distance: d2.sqrt().min(2.0) }
            })
            .collect();
        out.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
        Ok(out)
    }
}
