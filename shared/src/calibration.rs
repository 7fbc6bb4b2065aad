//! Verification metrics from genuine (same person) and impostor (different people) distances.
//!
//! Convention: a pair is accepted when `distance <= t`. `FAR(t)` is the share of impostor pairs
//! accepted, `TAR(t)` the share of genuine pairs accepted, `FRR(t) = 1 − TAR(t)`.

use serde::{Deserialize, Serialize};

use crate::{Embedding, EmbeddingError};

/// Errors computing metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    /// Metrics need at least one genuine and one impostor distance.
    #[error("need at least one genuine and one impostor distance (got {genuine} and {impostor})")]
    Empty { genuine: usize, impostor: usize },
    /// A distance was NaN or infinite.
    #[error("distance {0} is not finite")]
    NotFinite(f32),
    /// A target FAR outside (0, 1).
    #[error("target FAR {0} is outside (0, 1)")]
    BadFar(f64),
    /// Two of the embeddings given to [`Scores::from_labelled`] could not be compared
    /// ([`EmbeddingError::DimMismatch`]).
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
}

/// One point of the ROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// Threshold (accept when `distance <= threshold`).
    pub threshold: f32,
    /// False accept rate at this threshold.
    pub far: f64,
    /// True accept rate at this threshold.
    pub tar: f64,
}

/// Sorted genuine and impostor distances, ready for any metric.
#[derive(Debug, Clone)]
pub struct Scores {
    genuine: Vec<f32>,
    impostor: Vec<f32>,
}

impl Scores {
    /// Checks and sorts the distances.
    pub fn new(mut genuine: Vec<f32>, mut impostor: Vec<f32>) -> Result<Self, CalibrationError> {
        if genuine.is_empty() || impostor.is_empty() {
            return Err(CalibrationError::Empty { genuine: genuine.len(), impostor: impostor.len() });
        }
        if let Some(&x) = genuine.iter().chain(&impostor).find(|x| !x.is_finite()) {
            return Err(CalibrationError::NotFinite(x));
        }
        genuine.sort_by(f32::total_cmp);
        impostor.sort_by(f32::total_cmp);
        Ok(Self { genuine, impostor })
    }

    /// Scores of every pair of labelled embeddings: each unordered pair `i < j` once, genuine
    /// when the two labels are equal (the same person, member or class), impostor otherwise.
    /// `n` items give `n·(n−1)/2` distances, so this suits evaluation sets, not 100k galleries.
    ///
    /// Errors: [`CalibrationError::Embedding`] when two embeddings differ in dimension, and
    /// [`CalibrationError::Empty`] when the labels give no genuine or no impostor pair (all
    /// different, all equal, or fewer than two items).
    pub fn from_labelled<L: PartialEq>(items: &[(L, Embedding)]) -> Result<Self, CalibrationError> {
        let (genuine, impostor) = split_pairs(
            items.len(),
            |i, j| items[i].0 == items[j].0,
            |i, j| items[i].1.distance(&items[j].1).map_err(CalibrationError::from),
        )?;
        Self::new(genuine, impostor)
    }

    /// [`Scores::from_labelled`] for distances computed elsewhere (e.g. a distance matrix from
    /// the trainer): the same pairs `i < j` of `labels`, with `distance(i, j)` for each.
    ///
    /// Errors: [`CalibrationError::Empty`] and [`CalibrationError::NotFinite`], as [`Scores::new`].
    pub fn from_labelled_distances<L: PartialEq>(
        labels: &[L],
        mut distance: impl FnMut(usize, usize) -> f32,
    ) -> Result<Self, CalibrationError> {
        let (genuine, impostor) =
            split_pairs(labels.len(), |i, j| labels[i] == labels[j], |i, j| Ok::<_, CalibrationError>(distance(i, j)))?;
        Self::new(genuine, impostor)
    }

    /// Sorted genuine distances.
    pub fn genuine(&self) -> &[f32] {
        &self.genuine
    }
    /// Sorted impostor distances.
    pub fn impostor(&self) -> &[f32] {
        &self.impostor
    }

    /// Share of `sorted` that is `<= t`.
    fn rate(sorted: &[f32], t: f32) -> f64 {
        sorted.partition_point(|&x| x <= t) as f64 / sorted.len() as f64
    }

    /// FAR at threshold `t`.
    pub fn far(&self, t: f32) -> f64 {
        Self::rate(&self.impostor, t)
    }
    /// TAR at threshold `t`.
    pub fn tar(&self, t: f32) -> f64 {
        Self::rate(&self.genuine, t)
    }

    /// The ROC curve: one point per distinct distance, from (0, 0) below the smallest distance
    /// to (1, 1) at the largest.
    pub fn roc(&self) -> Vec<RocPoint> {
        let mut ts: Vec<f32> = self.genuine.iter().chain(&self.impostor).copied().collect();
        ts.sort_by(f32::total_cmp);
        ts.dedup();
        let first = ts[0];
        let mut out = Vec::with_capacity(ts.len() + 1);
        out.push(RocPoint { threshold: first.next_down(), far: 0.0, tar: 0.0 });
        out.extend(ts.into_iter().map(|t| RocPoint { threshold: t, far: self.far(t), tar: self.tar(t) }));
        out
    }

    /// Area under the ROC curve: the chance that a random genuine pair is closer than a random
    /// impostor pair (ties count one half).
    pub fn auc(&self) -> f64 {
        let mut wins = 0.0f64;
        for &g in &self.genuine {
            let below = self.impostor.partition_point(|&x| x < g);
            let upto = self.impostor.partition_point(|&x| x <= g);
            wins += (self.impostor.len() - upto) as f64 + 0.5 * (upto - below) as f64;
        }
        wins / (self.genuine.len() as f64 * self.impostor.len() as f64)
    }

    /// Equal error rate and the threshold where FAR and FRR cross (linear interpolation
    /// between neighbouring ROC points).
    pub fn eer(&self) -> (f64, f32) {
        let roc = self.roc();
        let mut prev = roc[0];
        for p in &roc[1..] {
            let (d0, d1) = ((1.0 - prev.tar) - prev.far, (1.0 - p.tar) - p.far);
            if d1 <= 0.0 {
                let alpha = if d0 - d1 > 0.0 { d0 / (d0 - d1) } else { 0.0 };
                let eer = prev.far + alpha * (p.far - prev.far);
                let t = prev.threshold + alpha as f32 * (p.threshold - prev.threshold);
                return (eer, t);
            }
            prev = *p;
        }
        (0.0, roc[roc.len() - 1].threshold)
    }

    /// The largest threshold whose FAR does not exceed `target` (just below the impostor
    /// distance that would push FAR over it).
    pub fn threshold_for_far(&self, target: f64) -> Result<f32, CalibrationError> {
        if !(target > 0.0 && target < 1.0) {
            return Err(CalibrationError::BadFar(target));
        }
        let allowed = (target * self.impostor.len() as f64 + 1e-9).floor() as usize;
        Ok(self.impostor[allowed.min(self.impostor.len() - 1)].next_down())
    }

    /// A threshold for `target` FAR that does not trust the empirical tail beyond what the sample
    /// can show: the smaller of [`Scores::threshold_for_far`] and a normal fit of the impostor
    /// distances, `μ + σ·Φ⁻¹(target)`. With a few hundred impostor pairs the empirical 1e-3
    /// quantile is just below the smallest impostor distance, which unseen people undercut.
    pub fn threshold_for_far_conservative(&self, target: f64) -> Result<f32, CalibrationError> {
        let empirical = self.threshold_for_far(target)?;
        let n = self.impostor.len() as f64;
        let mean = self.impostor.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = self.impostor.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let fitted = (mean + var.sqrt() * normal_quantile(target)) as f32;
        Ok(empirical.min(fitted).max(f32::MIN_POSITIVE))
    }

    /// TAR at the threshold chosen for `target` FAR.
    pub fn tar_at_far(&self, target: f64) -> Result<f64, CalibrationError> {
        Ok(self.tar(self.threshold_for_far(target)?))
    }
}

/// Genuine and impostor distances of every pair `i < j` of `n` items, in pair order.
fn split_pairs<E>(
    n: usize,
    same: impl Fn(usize, usize) -> bool,
    mut distance: impl FnMut(usize, usize) -> Result<f32, E>,
) -> Result<(Vec<f32>, Vec<f32>), E> {
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for i in 0..n {
        for j in i + 1..n {
            let d = distance(i, j)?;
            if same(i, j) {
                genuine.push(d);
            } else {
                impostor.push(d);
            }
        }
    }
    Ok((genuine, impostor))
}

/// The standard normal quantile Φ⁻¹(p) for `p` in (0, 1) (Abramowitz & Stegun 26.2.23,
/// absolute error below 4.5e-4).
pub fn normal_quantile(p: f64) -> f64 {
    let q = if p < 0.5 { p } else { 1.0 - p };
    let t = (-2.0 * q.ln()).sqrt();
    let z = t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t);
    if p < 0.5 {
        -z
    } else {
        z
    }
}

/// Expected chance that a stranger matches some member of a gallery of `n` people when each
/// comparison falsely accepts with probability `far`: `1 − (1 − far)^n` (about `n × far` when small).
pub fn open_set_false_accept(far: f64, n: u64) -> f64 {
    1.0 - (1.0 - far).powf(n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(g: &[f32], i: &[f32]) -> Scores {
        Scores::new(g.to_vec(), i.to_vec()).unwrap()
    }

    #[test]
    fn perfect_separation() {
        let sc = s(&[0.1, 0.2], &[0.3, 0.4]);
        assert_eq!(sc.auc(), 1.0);
        let (eer, t) = sc.eer();
        assert_eq!(eer, 0.0);
        assert!((0.2..0.3).contains(&t));
        assert_eq!(sc.tar_at_far(0.4).unwrap(), 1.0);
    }

    #[test]
    fn hand_computed_overlap() {
        // genuine 0.1 0.3 0.5 ; impostor 0.2 0.4 0.6 0.8
        let sc = s(&[0.5, 0.1, 0.3], &[0.8, 0.2, 0.6, 0.4]);
        // pairs g<i: 0.1 beats 4, 0.3 beats 3, 0.5 beats 2 -> 9 of 12
        assert!((sc.auc() - 9.0 / 12.0).abs() < 1e-12);
        assert_eq!(sc.far(0.4), 0.5);
        assert!((sc.tar(0.4) - 2.0 / 3.0).abs() < 1e-12);
        // t=0.3: far .25 frr 1/3 ; t=0.4: far .5 frr 1/3 ; crossing between t=0.3 and 0.4?
        // d(0.3) = 1/3-1/4 = 1/12 >0, d(0.4) = 1/3-1/2 = -1/6 <0 -> alpha = (1/12)/(1/4) = 1/3
        // eer = 0.25 + (1/3)(0.25) = 1/3
        let (eer, t) = sc.eer();
        assert!((eer - 1.0 / 3.0).abs() < 1e-9, "{eer}");
        assert!((t - (0.3 + 0.1 / 3.0)).abs() < 1e-6, "{t}");
        // FAR <= 0.25 allows one impostor (0.2): threshold just below 0.4
        let t = sc.threshold_for_far(0.25).unwrap();
        assert!(t < 0.4 && t > 0.399_99);
        assert_eq!(sc.far(t), 0.25);
        assert!((sc.tar_at_far(0.25).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // FAR < 1/4 allows none: below 0.2
        assert_eq!(sc.far(sc.threshold_for_far(0.2).unwrap()), 0.0);
    }

    #[test]
    fn ties_and_errors() {
        let sc = s(&[0.5], &[0.5]);
        assert_eq!(sc.auc(), 0.5);
        assert_eq!(Scores::new(vec![], vec![1.0]).unwrap_err(), CalibrationError::Empty { genuine: 0, impostor: 1 });
        assert!(matches!(Scores::new(vec![f32::NAN], vec![1.0]), Err(CalibrationError::NotFinite(_))));
        assert_eq!(sc.threshold_for_far(0.0), Err(CalibrationError::BadFar(0.0)));
        let roc = s(&[0.1, 0.3], &[0.2]).roc();
        assert_eq!(roc.len(), 4);
        assert_eq!((roc[0].far, roc[0].tar), (0.0, 0.0));
        assert_eq!((roc[3].far, roc[3].tar), (1.0, 1.0));
    }

    #[test]
    fn normal_quantiles_and_the_conservative_threshold() {
        assert!((normal_quantile(1e-3) + 3.0902).abs() < 1e-3);
        assert!((normal_quantile(0.025) + 1.96).abs() < 1e-3);
        assert!((normal_quantile(0.975) - 1.96).abs() < 1e-3);
        // impostors 1.0 1.2 1.4 1.6 (mean 1.3, sd 0.2582): fit gives 1.3 − 3.09·0.2582 ≈ 0.502,
        // below the empirical threshold (just under 1.0), so the fit wins
        let sc = s(&[0.2, 0.4], &[1.0, 1.2, 1.4, 1.6]);
        let t = sc.threshold_for_far_conservative(1e-3).unwrap();
        assert!((t - 0.5022).abs() < 2e-3, "{t}");
        // half the impostors at 1.0: at FAR 0.4 the empirical threshold (just under 1.0) is below
        // the fit (1.5 − 0.253·0.535 ≈ 1.36)
        let sc = s(&[0.2], &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!(sc.threshold_for_far_conservative(0.4).unwrap(), sc.threshold_for_far(0.4).unwrap());
    }

    #[test]
    fn open_set_grows_with_gallery() {
        assert!((open_set_false_accept(1e-3, 1) - 1e-3).abs() < 1e-12);
        assert!((open_set_false_accept(1e-4, 20) - 0.001998).abs() < 1e-5);
        assert!(open_set_false_accept(1e-3, 10_000) > 0.99);
    }
}
