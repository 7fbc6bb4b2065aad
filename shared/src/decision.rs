//! The decisions Facegate makes: 1:1 verification, 1:N identification, claim-then-verify, and
//! ranking. Thresholds are distances on the unit sphere; a member with several embeddings matches
//! on its closest one.

use crate::{
    Date, DecisionPolicy, Embedding, EmbeddingError, EmbeddingMatrix, Gallery, IndexError, IndexKind, MemberId,
    NearestNeighbourIndex, Threshold,
};

/// Outcome of a 1:1 comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verification {
    /// Euclidean distance in `[0, 2]`.
    pub distance: f32,
    /// Cosine similarity, `1 − d²/2`.
    pub similarity: f32,
    /// `distance <= threshold`.
    pub accepted: bool,
}

/// 1:1 verification: are `a` and `b` the same person at `threshold`?
///
/// The distance is [`Embedding::distance`] (the formula every index reports), so a pair verified
/// here and found by a search gets the same number; the similarity is derived from it. Fails only
/// when the dimensions differ.
pub fn verify(a: &Embedding, b: &Embedding, threshold: Threshold) -> Result<Verification, EmbeddingError> {
    let distance = a.distance(b)?;
    let similarity = crate::embedding::cosine_from_distance(distance);
    Ok(Verification { distance, similarity, accepted: threshold.accepts(distance) })
}

/// Why the door stays shut.
#[derive(Debug, Clone, PartialEq)]
pub enum DenialReason {
    /// No member is within the threshold. `nearest` is the closest distance, if any member exists.
    Unknown { nearest: Option<f32> },
    /// The face matches a member whose membership does not admit them today.
    Expired { member: MemberId, distance: f32 },
    /// Two different members match almost equally well.
    Ambiguous { first: MemberId, first_distance: f32, second: MemberId, second_distance: f32 },
}

impl DenialReason {
    /// A short machine-readable code: `unknown`, `expired`, `ambiguous`.
    pub fn code(&self) -> &'static str {
        match self {
            DenialReason::Unknown { .. } => "unknown",
            DenialReason::Expired { .. } => "expired",
            DenialReason::Ambiguous { .. } => "ambiguous",
        }
    }
}

/// A 1:N (or claim) decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The member may enter.
    Granted { member: MemberId, distance: f32 },
    /// Nobody may enter.
    Denied(DenialReason),
}

/// The door's 1:N rules on the closest members, best first (only the first two are read), each
/// with its distance and whether its membership admits its holder today. In order: none within
/// the threshold → `Unknown`; a different member within the ambiguity margin of the best →
/// `Ambiguous`; the best not admitted today → `Expired`; otherwise `Granted`. One copy for every
/// index (in process, PostgreSQL).
pub fn decide(top: &[(MemberId, f32, bool)], policy: &DecisionPolicy) -> Decision {
    let Some((best, best_d, admitted)) = top.first() else {
        return Decision::Denied(DenialReason::Unknown { nearest: None });
    };
    if !policy.threshold().accepts(*best_d) {
        return Decision::Denied(DenialReason::Unknown { nearest: Some(*best_d) });
    }
    if let Some((second, second_d, _)) = top.get(1) {
        if second_d - best_d < policy.ambiguity_margin() {
            return Decision::Denied(DenialReason::Ambiguous {
                first: best.clone(),
                first_distance: *best_d,
                second: second.clone(),
                second_distance: *second_d,
            });
        }
    }
    if *admitted {
        Decision::Granted { member: best.clone(), distance: *best_d }
    } else {
        Decision::Denied(DenialReason::Expired { member: best.clone(), distance: *best_d })
    }
}

/// A member and their best distance to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Member id.
    pub member: MemberId,
    /// Position of the member in [`Gallery::members`].
    pub index: usize,
    /// Distance of the member's closest embedding.
    pub distance: f32,
}

/// A gallery with a built nearest-neighbour index over all its embeddings.
pub struct Matcher {
    gallery: Gallery,
    index: Box<dyn NearestNeighbourIndex>,
    row_member: Vec<u32>,
    max_per_member: usize,
}

impl Matcher {
    /// Indexes every embedding of `gallery` with the measured-fastest exact index for its size.
    pub fn fastest(gallery: Gallery) -> Result<Self, IndexError> {
        let kind = IndexKind::fastest_exact(gallery.embedding_count(), gallery.dim.get());
        Self::new(gallery, kind)
    }

    /// Indexes every embedding of `gallery` with `kind`.
    pub fn new(gallery: Gallery, kind: IndexKind) -> Result<Self, IndexError> {
        let mut rows = EmbeddingMatrix::with_capacity(gallery.dim, gallery.embedding_count());
        let mut row_member = Vec::with_capacity(gallery.embedding_count());
        for (i, m) in gallery.members().iter().enumerate() {
            for e in &m.embeddings {
                rows.push(e)?;
                row_member.push(i as u32);
            }
        }
        let max_per_member = gallery.max_embeddings_per_member();
        Ok(Self { index: kind.build(rows)?, gallery, row_member, max_per_member })
    }

    /// The gallery being matched against.
    pub fn gallery(&self) -> &Gallery {
        &self.gallery
    }

    /// The `k` best-matching members, best first, each at its closest embedding.
    pub fn rank(&self, query: &Embedding, k: usize) -> Result<Vec<Ranked>, IndexError> {
        if k == 0 || self.row_member.is_empty() {
            return Ok(Vec::new());
        }
        // k members need at most k × (embeddings per member) rows.
        let rows = self.index.search(query, k.saturating_mul(self.max_per_member))?;
        let mut seen = Vec::with_capacity(k);
        let mut out = Vec::with_capacity(k);
        for n in rows {
            let idx = self.row_member[n.row] as usize;
            if seen.contains(&idx) {
                continue;
            }
            seen.push(idx);
            out.push(Ranked { member: self.gallery.members()[idx].id.clone(), index: idx, distance: n.distance });
            if out.len() == k {
                break;
            }
        }
        Ok(out)
    }

    /// 1:N identification on `today`.
    ///
    /// Rules, in order: no member within the threshold → `Unknown`; a different member within
    /// `ambiguity_margin` of the best → `Ambiguous`; best member not valid today → `Expired`;
    /// otherwise `Granted`.
    pub fn identify(&self, query: &Embedding, policy: &DecisionPolicy, today: Date) -> Result<Decision, IndexError> {
        let top: Vec<(MemberId, f32, bool)> = self
            .rank(query, 2)?
            .into_iter()
            .map(|r| {
                let admitted = self.gallery.members()[r.index].validity.admits(today);
                (r.member, r.distance, admitted)
            })
            .collect();
        Ok(decide(&top, policy))
    }

    /// Claim-then-verify: the visitor claims to be `id`; compare with that member only.
    /// An unknown id is denied as `Unknown` (nothing to compare with).
    pub fn claim(
        &self,
        id: &MemberId,
        query: &Embedding,
        threshold: Threshold,
        today: Date,
    ) -> Result<Decision, IndexError> {
        let Some(index) = self.gallery.members().iter().position(|m| &m.id == id) else {
            return Ok(Decision::Denied(DenialReason::Unknown { nearest: None }));
        };
        let mut best = f32::INFINITY;
        for e in &self.gallery.members()[index].embeddings {
            let d = e.distance(query).map_err(|_| IndexError::DimMismatch { expected: e.dim(), got: query.dim() })?;
            best = best.min(d);
        }
        if !threshold.accepts(best) {
            return Ok(Decision::Denied(DenialReason::Unknown { nearest: Some(best) }));
        }
        Ok(self.admit(index, best, threshold, today))
    }

    fn admit(&self, index: usize, distance: f32, threshold: Threshold, today: Date) -> Decision {
        debug_assert!(threshold.accepts(distance));
        let m = &self.gallery.members()[index];
        if m.validity.admits(today) {
            Decision::Granted { member: m.id.clone(), distance }
        } else {
            Decision::Denied(DenialReason::Expired { member: m.id.clone(), distance })
        }
    }
}
