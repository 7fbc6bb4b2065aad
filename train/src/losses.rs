//! Metric-learning losses on L2-normalised embeddings (distances in `[0, 2]`).
//!
//! All take a batch of unit embeddings `E` (`N × D`) and integer labels (`N`), and compare every
//! pair inside the batch (the P-persons × K-images batches of the trainer).

use tch::{Kind, Tensor};

/// Online triplet mining strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Mining {
    /// Every valid (anchor, positive, negative), averaged over those with a positive loss.
    BatchAll,
    /// For each anchor, its farthest positive and nearest negative.
    BatchHard,
    /// For each (anchor, positive), the nearest negative farther than the positive; if there is
    /// none, the farthest negative (FaceNet's semi-hard rule).
    SemiHard,
}

/// Pairwise Euclidean distances of unit rows, `sqrt(max(0, 2 − 2·E·Eᵀ))` (a tiny epsilon keeps
/// the gradient finite at 0).
pub fn pairwise_distances(e: &Tensor) -> Tensor {
    ((e.matmul(&e.tr()) * -2.0 + 2.0).clamp_min(0.0) + 1e-12).sqrt()
}

/// `(same, different)`: boolean `N × N` masks; `same` excludes the diagonal.
pub fn label_masks(labels: &Tensor) -> (Tensor, Tensor) {
    let n = labels.size()[0];
    let eq = labels.unsqueeze(0).eq_tensor(&labels.unsqueeze(1));
    let eye = Tensor::eye(n, (Kind::Bool, labels.device()));
    (eq.logical_and(&eye.logical_not()), eq.logical_not())
}

/// Contrastive loss over all pairs of the batch: same person `d²`, different people
/// `max(0, margin − d)²`; the mean over positive pairs plus the mean over negative pairs.
pub fn contrastive_loss(e: &Tensor, labels: &Tensor, margin: f64) -> Tensor {
    contrastive_from_distances(&pairwise_distances(e), labels, margin)
}

/// [`contrastive_loss`] on a precomputed distance matrix.
pub fn contrastive_from_distances(d: &Tensor, labels: &Tensor, margin: f64) -> Tensor {
    let (same, diff) = label_masks(labels);
    let (same, diff) = (same.to_kind(Kind::Float), diff.to_kind(Kind::Float));
    let pos = (d.square() * &same).sum(Kind::Float) / same.sum(Kind::Float).clamp_min(1.0);
    let neg = ((-d + margin).relu().square() * &diff).sum(Kind::Float) / diff.sum(Kind::Float).clamp_min(1.0);
    pos + neg
}

/// For each anchor: index of its farthest positive and of its nearest negative.
/// Anchors without a positive get their own index as positive.
pub fn batch_hard_indices(d: &Tensor, labels: &Tensor) -> (Tensor, Tensor) {
    let (same, diff) = label_masks(labels);
    let pos = d.where_self(&same, &Tensor::from(-1.0f32)).argmax(1, false);
    let neg = d.where_self(&diff, &Tensor::from(f32::INFINITY)).argmin(1, false);
    (pos, neg)
}

/// For each (anchor, positive) pair, the chosen negative under the semi-hard rule (`N × N`
/// indices; meaningful where `same` is true).
pub fn semi_hard_indices(d: &Tensor, labels: &Tensor) -> Tensor {
    let (_, diff) = label_masks(labels);
    // dap[a, p, n] = d[a, p]; dan[a, p, n] = d[a, n]
    let dap = d.unsqueeze(2);
    let dan = d.unsqueeze(1);
    let diff3 = diff.unsqueeze(1);
    let outside = dan.gt_tensor(&dap).logical_and(&diff3);
    let inf = Tensor::from(f32::INFINITY);
    let nearest_outside = dan.where_self(&outside, &inf).argmin(2, false);
    let has_outside = outside.any_dim(2, false);
    let farthest = d.where_self(&diff, &Tensor::from(-1.0f32)).argmax(1, true).expand_as(&nearest_outside);
    nearest_outside.where_self(&has_outside, &farthest)
}

/// Triplet loss `max(0, d(a,p) − d(a,n) + margin)` with online mining.
pub fn triplet_loss(e: &Tensor, labels: &Tensor, margin: f64, mining: Mining) -> Tensor {
    triplet_from_distances(&pairwise_distances(e), labels, margin, mining)
}

/// [`triplet_loss`] on a precomputed distance matrix.
pub fn triplet_from_distances(d: &Tensor, labels: &Tensor, margin: f64, mining: Mining) -> Tensor {
    let (same, diff) = label_masks(labels);
    match mining {
        Mining::BatchHard => {
            let (p, n) = batch_hard_indices(d, labels);
            let dap = d.gather(1, &p.unsqueeze(1), false).squeeze_dim(1);
            let dan = d.gather(1, &n.unsqueeze(1), false).squeeze_dim(1);
            let has_pos = same.any_dim(1, false).to_kind(Kind::Float);
            ((dap - dan + margin).relu() * &has_pos).sum(Kind::Float) / has_pos.sum(Kind::Float).clamp_min(1.0)
        }
        Mining::BatchAll => {
            let t = (d.unsqueeze(2) - d.unsqueeze(1) + margin).relu();
            let valid = same.unsqueeze(2).logical_and(&diff.unsqueeze(1)).to_kind(Kind::Float);
            let l = t * valid;
            let active = l.gt(1e-16).to_kind(Kind::Float).sum(Kind::Float).clamp_min(1.0);
            l.sum(Kind::Float) / active
        }
        Mining::SemiHard => {
            let n = semi_hard_indices(d, labels);
            let dan =
                d.unsqueeze(1).expand([-1, d.size()[0], -1], false).gather(2, &n.unsqueeze(2), false).squeeze_dim(2);
            let samef = same.to_kind(Kind::Float);
            ((d - dan + margin).relu() * &samef).sum(Kind::Float) / samef.sum(Kind::Float).clamp_min(1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], n: i64) -> Tensor {
        Tensor::from_slice(v).view([n, -1])
    }
    fn f(x: &Tensor) -> f64 {
        x.double_value(&[])
    }

    #[test]
    fn contrastive_at_the_unit_sphere_extremes() {
        // two identical points of one person: loss 0; opposite points of one person: d = 2, loss 4
        let same = Tensor::from_slice(&[0i64, 0]);
        let e = t(&[1.0, 0.0, -1.0, 0.0], 2);
        assert!((f(&contrastive_loss(&e, &same, 1.0)) - 4.0).abs() < 1e-5);
        // two different people at distance 0: loss margin²
        let diff = Tensor::from_slice(&[0i64, 1]);
        let e0 = t(&[1.0, 0.0, 1.0, 0.0], 2);
        assert!((f(&contrastive_loss(&e0, &diff, 1.4)) - 1.96).abs() < 1e-5);
        // different people farther than the margin: 0
        assert!(f(&contrastive_loss(&e, &diff, 1.4)).abs() < 1e-6);
    }

    #[test]
    fn contrastive_hand_computed() {
        // points at 0°, 90° (same person) and 180° (other person), margin 1.5
        // pos: d(0,90)=√2 → 2 (mean over the 2 ordered pairs: 2)
        // neg: d(0,180)=2 → 0 ; d(90,180)=√2 → (1.5−√2)² ; mean over 4 ordered pairs
        let e = t(&[1.0, 0.0, 0.0, 1.0, -1.0, 0.0], 3);
        let l = Tensor::from_slice(&[0i64, 0, 1]);
        let want = 2.0 + 2.0 * (1.5 - 2f64.sqrt()).powi(2) / 4.0;
        assert!((f(&contrastive_loss(&e, &l, 1.5)) - want).abs() < 1e-5);
    }

    /// Hand-built distance matrix: people A = {0, 1, 2}, B = {3, 4}.
    fn batch() -> (Tensor, Tensor) {
        #[rustfmt::skip]
        let d = t(&[
            0.0, 0.3, 0.9, 0.5, 1.2,
            0.3, 0.0, 0.4, 0.2, 0.8,
            0.9, 0.4, 0.0, 1.1, 0.7,
            0.5, 0.2, 1.1, 0.0, 0.6,
            1.2, 0.8, 0.7, 0.6, 0.0,
        ], 5);
        (d, Tensor::from_slice(&[0i64, 0, 0, 1, 1]))
    }

    #[test]
    fn batch_hard_picks_farthest_positive_and_nearest_negative() {
        let (d, l) = batch();
        let (p, n) = batch_hard_indices(&d, &l);
        assert_eq!(Vec::<i64>::try_from(&p).unwrap(), [2, 2, 0, 4, 3]);
        assert_eq!(Vec::<i64>::try_from(&n).unwrap(), [3, 3, 4, 1, 2]);
        // losses: a0 .9-.5+.1=.5 ; a1 .4-.2+.1=.3 ; a2 .9-.7+.1=.3 ; a3 .6-.2+.1=.5 ; a4 .6-.7+.1=0
        let want = (0.5 + 0.3 + 0.3 + 0.5 + 0.0) / 5.0;
        assert!((f(&triplet_from_distances(&d, &l, 0.1, Mining::BatchHard)) - want).abs() < 1e-5);
    }

    #[test]
    fn semi_hard_picks_nearest_negative_beyond_the_positive() {
        let (d, l) = batch();
        let n = semi_hard_indices(&d, &l);
        let at = |a: i64, p: i64| n.int64_value(&[a, p]);
        // (0,1): d=.3, negatives of 0: 3 (.5), 4 (1.2) → nearest beyond .3 is 3
        assert_eq!(at(0, 1), 3);
        // (0,2): d=.9, negatives .5, 1.2 → 4
        assert_eq!(at(0, 2), 4);
        // (1,2): d=.4, negatives of 1: 3 (.2), 4 (.8) → 4
        assert_eq!(at(1, 2), 4);
        // (2,0): d=.9, negatives of 2: 3 (1.1), 4 (.7) → 3
        assert_eq!(at(2, 0), 3);
        // (3,4): d=.6, negatives of 3: 0 (.5), 1 (.2), 2 (1.1) → 2
        assert_eq!(at(3, 4), 2);
        // (1,0): d=.3 , negatives .2, .8 → 4 ; none beyond: (4,3) d=.6 with negatives 1.2,.8,.7 → all beyond → .7 is 2
        assert_eq!(at(4, 3), 2);
    }

    #[test]
    fn semi_hard_falls_back_to_the_farthest_negative() {
        // A = {0, 1} far apart, B = {2} close to 0: no negative beyond d(0,1) = 1.5
        let d = t(&[0.0, 1.5, 0.2, 1.5, 0.0, 0.4, 0.2, 0.4, 0.0], 3);
        let l = Tensor::from_slice(&[0i64, 0, 1]);
        assert_eq!(semi_hard_indices(&d, &l).int64_value(&[0, 1]), 2);
    }

    #[test]
    fn batch_all_averages_active_triplets() {
        let (d, l) = batch();
        // margin 0: active triplets have d(a,p) > d(a,n)
        // a0: p1(.3) vs n3(.5),n4(1.2): none; p2(.9): n3 .4 active → .4
        // a1: p0(.3): n3(.2) → .1 ; p2(.4): n3 → .2
        // a2: p0(.9): n4(.7) → .2 ; p1(.4): none
        // a3: p4(.6): n0(.5) → .1, n1(.2) → .4
        // a4: p3(.6): none
        let want = (0.4 + 0.1 + 0.2 + 0.2 + 0.1 + 0.4) / 6.0;
        assert!((f(&triplet_from_distances(&d, &l, 0.0, Mining::BatchAll)) - want).abs() < 1e-5);
    }

    #[test]
    fn distances_of_unit_vectors() {
        let e = t(&[1.0, 0.0, 0.0, 1.0, -1.0, 0.0], 3);
        let d = pairwise_distances(&e);
        assert!((d.double_value(&[0, 2]) - 2.0).abs() < 1e-5);
        assert!((d.double_value(&[0, 1]) - 2f64.sqrt()).abs() < 1e-5);
        assert!(d.double_value(&[1, 1]) < 1e-5);
    }
}
