//! Bounded latency statistics: a fixed-size log-bucketed histogram of durations in milliseconds.
//!
//! A door or a service records one latency per decision for as long as it runs, so the statistics
//! must not grow with the number of samples: [`LatencyHistogram`] holds a fixed array of bucket
//! counts ([`LatencyHistogram::MEMORY_BYTES`], about 15 KiB, whatever the count) and answers
//! quantiles within a stated relative error ([`LatencyHistogram::RELATIVE_ERROR`], 0.543 %).
//!
//! Layout: buckets cover `[1 µs, 2³⁰ µs)` (1 µs to about 1074 s) in 30 octaves of
//! [`SUB_BUCKETS`] geometric sub-buckets each, so bucket `i` is
//! `[MIN_MS · 2^(i/64), MIN_MS · 2^((i+1)/64))`; below it an underflow bucket, above it an
//! overflow bucket. Count, sum, minimum and maximum are kept exactly besides.

use crate::stats::nearest_rank;

/// Sub-buckets per octave (power of two). Each bucket spans a ratio of `2^(1/64)` ≈ 1.0109.
pub(crate) const SUB_BUCKETS: usize = 64;
/// Octaves covered above [`MIN_MS`]: up to `MIN_MS · 2^30` ≈ 1.07e6 ms ≈ 1074 s.
pub(crate) const OCTAVES: usize = 30;
/// Lower edge of the first bucket: 1 µs. Smaller samples land in the underflow bucket.
pub(crate) const MIN_MS: f64 = 1e-3;
/// Upper edge of the last bucket (`MIN_MS · 2^30`). Larger samples land in the overflow bucket.
pub(crate) const MAX_MS: f64 = MIN_MS * (1u64 << OCTAVES) as f64;

/// Log-spaced buckets between [`MIN_MS`] and [`MAX_MS`].
const LOG_BUCKETS: usize = SUB_BUCKETS * OCTAVES;
/// Slot of the underflow bucket (`[0, MIN_MS)`); the log buckets follow it.
const UNDERFLOW: usize = 0;
/// Slot of the overflow bucket (`[MAX_MS, ∞)`).
const OVERFLOW: usize = LOG_BUCKETS + 1;
/// All slots: underflow, the log buckets, overflow.
const SLOTS: usize = LOG_BUCKETS + 2;

/// Latency histogram with a fixed memory footprint.
///
/// `record` is O(1) and allocation-free; `quantile` walks the 1922 buckets. Two histograms always
/// share one layout, so [`LatencyHistogram::merge`] is plain addition (per-thread histograms can
/// be merged for a report).
///
/// Quantiles use nearest-rank semantics: `quantile(q)` estimates the sample of rank `⌈q·n⌉`
/// (1-based; rank 1 for `q = 0`) in sorted order, the sample [`crate::percentile`] returns. The estimate is the geometric midpoint of the
/// bucket holding that sample, clamped to `[min, max]`; rank 1 and rank n return the exact minimum
/// and maximum. For a sample in `[MIN_MS, MAX_MS)` the relative error is at most
/// [`Self::RELATIVE_ERROR`]; below 1 µs the error is under 1 µs absolute; above `MAX_MS` the
/// estimate is the exact maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// `SLOTS` counts, allocated once.
    counts: Box<[u64]>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    rejected: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// The worst relative error of [`Self::quantile`] for samples between 1 µs and [`MAX_MS`]:
    /// half a bucket in log space, `2^(1/128) − 1` = 0.005 429 9…, rounded up (which also covers
    /// the f64 rounding of a sample that falls exactly on a bucket edge).
    pub const RELATIVE_ERROR: f64 = 0.00543;

    /// Heap and inline bytes one histogram holds, whatever it has recorded: 15 432 on 64-bit targets
    /// (1922 `u64` bucket counts plus 56 bytes of exact statistics).
    pub const MEMORY_BYTES: usize = std::mem::size_of::<Self>() + SLOTS * std::mem::size_of::<u64>();

    /// An empty histogram (allocates its buckets once).
    pub fn new() -> Self {
        Self {
            counts: vec![0; SLOTS].into_boxed_slice(),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            rejected: 0,
        }
    }

    /// Records one duration in milliseconds.
    ///
    /// NaN, negative and infinite values are not latencies: they leave count, sum, min, max and
    /// every bucket untouched and only increase [`Self::rejected`], so one bad clock reading can
    /// neither poison the sum nor panic a door. `-0.0` counts as 0.
    pub fn record(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            self.rejected += 1;
            return;
        }
        let ms = ms.max(0.0); // -0.0 → 0.0
        self.counts[slot_of(ms)] += 1;
        self.count += 1;
        self.sum += ms;
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
    }

    /// Records a [`std::time::Duration`].
    pub fn record_duration(&mut self, d: std::time::Duration) {
        self.record(d.as_secs_f64() * 1e3);
    }

    /// Number of recorded samples (rejected ones excluded).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of values [`Self::record`] refused (NaN, negative or infinite).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Sum of the recorded samples in milliseconds (exact up to f64 rounding); 0 when empty.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest recorded sample, exactly; `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest recorded sample, exactly; `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Mean of the recorded samples; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The nearest-rank `q`-quantile (`q` in `[0, 1]`), within [`Self::RELATIVE_ERROR`].
    ///
    /// `None` when the histogram is empty or `q` is NaN or outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = nearest_rank(q, self.count);
        if rank == 1 {
            return Some(self.min);
        }
        if rank == self.count {
            return Some(self.max);
        }
        let mut seen = 0u64;
        for (slot, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(representative(slot).clamp(self.min, self.max));
            }
        }
        Some(self.max) // unreachable: the counts add up to `count`
    }

    /// The median and the 99th percentile, or `None` when empty.
    pub fn median_p99(&self) -> Option<(f64, f64)> {
        Some((self.quantile(0.5)?, self.quantile(0.99)?))
    }

    /// Adds every sample of `other` to `self`, as if they had been recorded here.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.rejected += other.rejected;
    }

    /// Bytes this histogram holds: always [`Self::MEMORY_BYTES`].
    pub fn memory_bytes(&self) -> usize {
        Self::MEMORY_BYTES
    }

    /// `(upper_bound_ms, cumulative_count)` for each non-empty bucket, in increasing order:
    /// `cumulative_count` samples are below `upper_bound_ms` (the overflow bucket's bound is
    /// `f64::INFINITY`, with the total count). The shape of a Prometheus histogram's `le` series;
    /// a sample exactly on a bound counts in the next bucket.
    pub fn cumulative_buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut seen = 0u64;
        self.counts.iter().enumerate().filter_map(move |(slot, &c)| {
            seen += c;
            (c > 0).then(|| (upper_bound(slot), seen))
        })
    }
}

/// The slot a finite, non-negative sample falls in.
fn slot_of(ms: f64) -> usize {
    if ms < MIN_MS {
        UNDERFLOW
    } else if ms >= MAX_MS {
        OVERFLOW
    } else {
        // log2 may be off by an ulp at an edge: step to the bucket whose computed edges hold `ms`,
        // so bucketing agrees exactly with `edge` (and with `cumulative_buckets`' bounds)
        let mut i = (((ms / MIN_MS).log2() * SUB_BUCKETS as f64) as usize).min(LOG_BUCKETS - 1);
        if i > 0 && ms < edge(i) {
            i -= 1;
        } else if i + 1 < LOG_BUCKETS && ms >= edge(i + 1) {
            i += 1;
        }
        1 + i
    }
}

/// Lower edge of log bucket `i` (`0..=LOG_BUCKETS`).
fn edge(i: usize) -> f64 {
    MIN_MS * (i as f64 / SUB_BUCKETS as f64).exp2()
}

/// Exclusive upper bound of `slot`.
fn upper_bound(slot: usize) -> f64 {
    match slot {
        UNDERFLOW => MIN_MS,
        OVERFLOW => f64::INFINITY,
        s => edge(s),
    }
}

/// The estimate for a sample in `slot`, before clamping to `[min, max]`: the geometric midpoint of
/// a log bucket (so the relative error is at most `2^(1/128) − 1` either way), half of `MIN_MS` for
/// the underflow bucket, and infinity for the overflow bucket (the clamp turns it into the maximum).
fn representative(slot: usize) -> f64 {
    match slot {
        UNDERFLOW => MIN_MS / 2.0,
        OVERFLOW => f64::INFINITY,
        s => MIN_MS * (((s - 1) as f64 + 0.5) / SUB_BUCKETS as f64).exp2(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::SplitMix64;

    /// Quantiles checked: a grid of every 0.5 % plus the tails a latency report quotes.
    fn qs() -> Vec<f64> {
        let mut v: Vec<f64> = (0..=200).map(|i| i as f64 / 200.0).collect();
        v.extend([0.001, 0.0001, 0.999, 0.9999, 0.99999, 1.0 / 3.0, 2.0 / 3.0]);
        v
    }

    fn check_against_exact(name: &str, samples: &[f64]) {
        let mut h = LatencyHistogram::new();
        samples.iter().for_each(|&s| h.record(s));
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(h.count(), samples.len() as u64);
        assert_eq!(h.min(), Some(sorted[0]));
        assert_eq!(h.max(), Some(sorted[sorted.len() - 1]));
        let exact_sum: f64 = samples.iter().sum();
        assert!((h.sum() - exact_sum).abs() <= 1e-9 * exact_sum, "{name}: sum");
        let mut worst = 0.0f64;
        for q in qs() {
            let want = crate::percentile(&sorted, q);
            let got = h.quantile(q).unwrap();
            let err = (got - want).abs() / want;
            worst = worst.max(err);
            assert!(err <= LatencyHistogram::RELATIVE_ERROR, "{name}: q {q}: got {got}, exact {want}, error {err}");
        }
        eprintln!("{name}: worst relative error {worst:.5} over {} quantiles", qs().len());
    }

    #[test]
    fn relative_error_constant_is_half_a_bucket_rounded_up() {
        let half_bucket = 2f64.powf(1.0 / (2.0 * SUB_BUCKETS as f64)) - 1.0;
        assert!(half_bucket <= LatencyHistogram::RELATIVE_ERROR);
        assert!(LatencyHistogram::RELATIVE_ERROR - half_bucket < 1e-6);
        assert_eq!(MAX_MS, 1_073_741.824);
    }

    #[test]
    fn quantiles_of_seeded_distributions_are_within_the_stated_error() {
        let mut rng = SplitMix64::new(20_260_601);
        let n = 50_000;
        // uniform over 0.01 ms .. 100 ms
        let uniform: Vec<f64> = (0..n).map(|_| 0.01 + 99.99 * rng.next_f64()).collect();
        // log-normal around 8 ms (a typical decision time), σ = 1 in log space
        let lognormal: Vec<f64> = (0..n).map(|_| 8.0 * f64::from(rng.normal()).exp()).collect();
        // exponential with mean 3 ms (queueing delays), floored at 1 µs
        let exponential: Vec<f64> = (0..n).map(|_| (-3.0 * (1.0 - rng.next_f64()).ln()).max(MIN_MS)).collect();
        // Pareto tail (α = 1.2) from 0.5 ms: stalls up to minutes
        let pareto: Vec<f64> =
            (0..n).map(|_| (0.5 * (1.0 - rng.next_f64()).powf(-1.0 / 1.2)).min(MAX_MS / 2.0)).collect();
        // bimodal: a fast path at ~2 ms and a slow path at ~200 ms, 5 % slow
        let bimodal: Vec<f64> = (0..n)
            .map(|_| {
                let centre = if rng.next_f64() < 0.05 { 200.0 } else { 2.0 };
                centre * (1.0 + 0.1 * f64::from(rng.normal())).max(0.01)
            })
            .collect();
        // integer milliseconds (a coarse clock): many exact ties, some on bucket edges
        let integers: Vec<f64> = (0..n).map(|_| (1 + rng.below(64)) as f64).collect();
        // spanning the whole range, 1 µs .. ~1000 s
        let wide: Vec<f64> = (0..n).map(|_| MIN_MS * (30.0 * rng.next_f64()).exp2()).collect();
        for (name, s) in [
            ("uniform", &uniform),
            ("log-normal", &lognormal),
            ("exponential", &exponential),
            ("pareto", &pareto),
            ("bimodal", &bimodal),
            ("integers", &integers),
            ("wide", &wide),
        ] {
            check_against_exact(name, s);
        }
        // small counts, where ranks are coarse
        for n in [2usize, 3, 7, 10, 99, 100, 101] {
            let s: Vec<f64> = (0..n).map(|_| 0.1 + 50.0 * rng.next_f64()).collect();
            check_against_exact(&format!("{n} samples"), &s);
        }
    }

    #[test]
    fn bucket_edges_land_within_the_error() {
        // every bucket edge and its neighbours in f64, the worst case for the log2 bucketing
        let samples: Vec<f64> = (0..=LOG_BUCKETS - 1)
            .flat_map(|i| {
                let e = edge(i);
                [e, e.next_up(), e.next_down().max(MIN_MS)]
            })
            .collect();
        for &s in &samples {
            let mut h = LatencyHistogram::new();
            // three samples so the median is neither the min nor the max shortcut
            h.record(s * 0.5);
            h.record(s);
            h.record(s * 2.0);
            let got = h.quantile(0.5).unwrap();
            assert!((got - s).abs() / s <= LatencyHistogram::RELATIVE_ERROR, "{s}: {got}");
        }
    }

    #[test]
    fn empty_one_sample_and_all_equal() {
        let h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.median_p99(), None);
        assert_eq!((h.count(), h.sum(), h.min(), h.max(), h.mean()), (0, 0.0, None, None, None));
        assert_eq!(h.cumulative_buckets().count(), 0);

        for v in [0.0, 0.0004, MIN_MS, 12.345, 999_999.0, 5e6] {
            let mut h = LatencyHistogram::new();
            h.record(v);
            for q in [0.0, 0.01, 0.5, 0.99, 1.0] {
                assert_eq!(h.quantile(q), Some(v), "one sample {v}");
            }
            assert_eq!(h.median_p99(), Some((v, v)));

            let mut h = LatencyHistogram::new();
            (0..1000).for_each(|_| h.record(v));
            assert_eq!(h.median_p99(), Some((v, v)), "all equal {v}");
            assert_eq!(h.count(), 1000);
            assert!((h.mean().unwrap() - v).abs() <= 1e-12 * v);
        }
    }

    #[test]
    fn out_of_range_quantiles_and_the_ends() {
        let mut h = LatencyHistogram::new();
        [3.0, 1.0, 2.0, 40.0].into_iter().for_each(|v| h.record(v));
        assert_eq!(h.quantile(-0.1), None);
        assert_eq!(h.quantile(1.1), None);
        assert_eq!(h.quantile(f64::NAN), None);
        assert_eq!(h.quantile(0.0), Some(1.0));
        assert_eq!(h.quantile(1.0), Some(40.0));
        // rank ⌈0.5·4⌉ = 2: the sample 2.0, within the error
        let m = h.quantile(0.5).unwrap();
        assert!((m - 2.0).abs() / 2.0 <= LatencyHistogram::RELATIVE_ERROR);
    }

    #[test]
    fn rejected_values_touch_nothing_else() {
        let mut h = LatencyHistogram::new();
        h.record(5.0);
        let before = h.clone();
        for bad in [f64::NAN, -1.0, -1e-9, f64::INFINITY, f64::NEG_INFINITY] {
            h.record(bad);
        }
        assert_eq!(h.rejected(), 5);
        assert_eq!(h.count(), 1);
        assert_eq!(h.sum(), 5.0);
        assert_eq!(h.median_p99(), Some((5.0, 5.0)));
        assert_eq!(h.counts, before.counts);
        h.record(-0.0);
        assert_eq!((h.count(), h.min(), h.rejected()), (2, Some(0.0), 5));
        assert!(h.min().unwrap().is_sign_positive());
    }

    #[test]
    fn underflow_and_overflow() {
        let mut h = LatencyHistogram::new();
        [0.0002, 0.0005, 0.0007, 5.0, 2e6, 3e6].into_iter().for_each(|v| h.record(v));
        // rank 2 is in the underflow bucket: under 1 µs off
        assert!((h.quantile(0.3).unwrap() - 0.0005).abs() < MIN_MS);
        // rank 5 is in the overflow bucket: the estimate is the maximum
        assert_eq!(h.quantile(0.75), Some(3e6));
        let b: Vec<_> = h.cumulative_buckets().collect();
        assert_eq!(b.first(), Some(&(MIN_MS, 3)));
        assert_eq!(b.last(), Some(&(f64::INFINITY, 6)));
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut rng = SplitMix64::new(8);
        let (mut a, mut b, mut all) = (LatencyHistogram::new(), LatencyHistogram::new(), LatencyHistogram::new());
        for i in 0..10_000 {
            let v = 0.05 * f64::from(rng.normal()).exp() * if i % 3 == 0 { 100.0 } else { 1.0 };
            (if i % 2 == 0 { &mut a } else { &mut b }).record(v);
            all.record(v);
        }
        a.record(f64::NAN);
        all.record(f64::NAN);
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.counts, all.counts);
        assert_eq!(
            (merged.count(), merged.min(), merged.max(), merged.rejected()),
            (all.count(), all.min(), all.max(), 1)
        );
        assert!((merged.sum() - all.sum()).abs() <= 1e-9 * all.sum());
        for q in qs() {
            assert_eq!(merged.quantile(q), all.quantile(q), "q {q}");
        }
        // merging an empty histogram changes nothing, and into an empty one copies
        let mut m2 = merged.clone();
        m2.merge(&LatencyHistogram::new());
        assert_eq!(m2, merged);
        let mut e = LatencyHistogram::new();
        e.merge(&merged);
        assert_eq!(e, merged);
    }

    #[test]
    fn memory_does_not_grow_with_samples() {
        let mut h = LatencyHistogram::new();
        let empty = h.memory_bytes();
        let mut rng = SplitMix64::new(1);
        for _ in 0..1_000_000 {
            h.record(MIN_MS * (32.0 * rng.next_f64()).exp2());
        }
        assert_eq!(h.memory_bytes(), empty);
        assert_eq!(h.counts.len(), SLOTS);
        assert_eq!(empty, LatencyHistogram::MEMORY_BYTES);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(LatencyHistogram::MEMORY_BYTES, 15_432);
    }

    #[test]
    fn cumulative_buckets_count_the_samples_below_each_bound() {
        let mut rng = SplitMix64::new(77);
        let samples: Vec<f64> = (0..5000).map(|_| 0.3 * f64::from(rng.normal()).exp2().powi(3)).collect();
        let mut h = LatencyHistogram::new();
        samples.iter().for_each(|&s| h.record(s));
        let buckets: Vec<_> = h.cumulative_buckets().collect();
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        assert_eq!(buckets.last().unwrap().1, h.count());
        for &(bound, cumulative) in &buckets {
            assert_eq!(samples.iter().filter(|&&s| s < bound).count() as u64, cumulative, "bound {bound}");
        }
        // the edges themselves count in the bucket above
        let mut h = LatencyHistogram::new();
        h.record(edge(100));
        assert_eq!(h.cumulative_buckets().next(), Some((edge(101), 1)));
    }
}
