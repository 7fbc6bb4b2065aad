//! Order statistics of samples: the nearest-rank percentile every report uses.
//!
//! One definition of "the q-th percentile" for the whole project: the sample of 1-based rank
//! `⌈q·n⌉` in sorted order (rank 1 for `q = 0`), so a reported value is always one that was
//! measured. [`crate::LatencyHistogram`] estimates the same rank from its buckets.

/// The 1-based nearest rank of the `q`-quantile among `n` samples: `⌈q·n⌉`, at least 1 and at
/// most `n`. Panics if `n` is 0.
pub(crate) fn nearest_rank(q: f64, n: u64) -> u64 {
    ((q * n as f64).ceil() as u64).clamp(1, n)
}

/// Nearest-rank percentile of `sorted` (ascending): the sample of rank `⌈q·n⌉`, e.g.
/// `percentile(&v, 0.5)` for the median and `percentile(&v, 0.99)` for p99. `q` outside `[0, 1]`
/// gives the minimum or the maximum.
///
/// Panics if `sorted` is empty; callers report "no samples" instead of calling it.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[nearest_rank(q, sorted.len() as u64) as usize - 1]
}
