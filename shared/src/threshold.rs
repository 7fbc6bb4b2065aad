//! Checked decision settings: the distance threshold and the ambiguity margin.

use serde::{Deserialize, Serialize};

/// Errors validating decision settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// A threshold must be a distance on the unit sphere: strictly positive and at most 2.
    #[error("threshold {0} is outside (0, 2]: distances between unit embeddings lie in [0, 2]")]
    OutOfRange(f32),
    /// The ambiguity margin must be finite and in [`AMBIGUITY_MARGIN_MIN`, `AMBIGUITY_MARGIN_MAX`].
    #[error("ambiguity margin {0} is outside [{AMBIGUITY_MARGIN_MIN}, {AMBIGUITY_MARGIN_MAX}]")]
    BadMargin(f32),
    /// An unsigned setting tried to loosen the signed threshold.
    #[error(
        "threshold {requested} is looser than the gallery's signed threshold {signed}: \
         a local setting may only tighten it (use a value of at most {signed}, or none)"
    )]
    Looser { requested: f32, signed: f32 },
}

/// Smallest ambiguity margin (no ambiguity check).
pub const AMBIGUITY_MARGIN_MIN: f32 = 0.0;
/// Largest ambiguity margin: half the distance range; beyond it nearly every grant is ambiguous.
pub const AMBIGUITY_MARGIN_MAX: f32 = 1.0;

/// The one range check for the ambiguity margin (config files, command lines, the policy).
pub fn check_ambiguity_margin(m: f32) -> Result<f32, ThresholdError> {
    if m.is_finite() && (AMBIGUITY_MARGIN_MIN..=AMBIGUITY_MARGIN_MAX).contains(&m) {
        Ok(m)
    } else {
        Err(ThresholdError::BadMargin(m))
    }
}

/// A distance threshold in `(0, 2]`: two embeddings match when their distance is `<=` it.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f32", into = "f32")]
pub struct Threshold(f32);

impl Threshold {
    /// Checks that `t` is a finite distance in `(0, 2]`.
    pub fn new(t: f32) -> Result<Self, ThresholdError> {
        if t.is_finite() && t > 0.0 && t <= 2.0 {
            Ok(Self(t))
        } else {
            Err(ThresholdError::OutOfRange(t))
        }
    }
    /// The distance.
    pub fn get(self) -> f32 {
        self.0
    }
    /// Whether a distance is accepted (`distance <= threshold`).
    pub fn accepts(self, distance: f32) -> bool {
        distance <= self.0
    }
}

impl TryFrom<f32> for Threshold {
    type Error = ThresholdError;
    fn try_from(v: f32) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}
impl From<Threshold> for f32 {
    fn from(t: Threshold) -> f32 {
        t.0
    }
}

/// Default ambiguity margin: the runner-up member must be at least this much farther away.
pub const DEFAULT_AMBIGUITY_MARGIN: f32 = 0.05;

/// The 1:N decision policy, validated once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionPolicy {
    /// Largest accepted distance.
    threshold: Threshold,
    /// A grant is refused as ambiguous when a second member is closer than `best + margin`.
    ambiguity_margin: f32,
}

impl DecisionPolicy {
    /// Checks the margin ([`check_ambiguity_margin`]).
    pub fn new(threshold: Threshold, ambiguity_margin: f32) -> Result<Self, ThresholdError> {
        Ok(Self { threshold, ambiguity_margin: check_ambiguity_margin(ambiguity_margin)? })
    }

    /// Largest accepted distance.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// A grant is refused as ambiguous when a second member is closer than `best + margin`.
    pub fn ambiguity_margin(&self) -> f32 {
        self.ambiguity_margin
    }

    /// The same policy (its margin already checked) with another threshold.
    pub fn with_threshold(self, threshold: Threshold) -> Self {
        Self { threshold, ..self }
    }

    /// The policy for a signed threshold and an unsigned local one that may only tighten it:
    /// `local` above `signed` is [`ThresholdError::Looser`]; `None` uses `signed`.
    pub fn tightened(
        signed: Threshold,
        local: Option<Threshold>,
        ambiguity_margin: f32,
    ) -> Result<Self, ThresholdError> {
        let threshold = match local {
            Some(t) if t.get() > signed.get() => {
                return Err(ThresholdError::Looser { requested: t.get(), signed: signed.get() })
            }
            Some(t) => t,
            None => signed,
        };
        Self::new(threshold, ambiguity_margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_range() {
        assert!(Threshold::new(2.0).is_ok());
        assert_eq!(Threshold::new(0.0), Err(ThresholdError::OutOfRange(0.0)));
        assert_eq!(Threshold::new(2.01), Err(ThresholdError::OutOfRange(2.01)));
        assert!(Threshold::new(f32::NAN).is_err());
        let t = Threshold::new(0.8).unwrap();
        assert!(t.accepts(0.8) && !t.accepts(0.800_001));
        assert_eq!(DecisionPolicy::new(t, -0.1), Err(ThresholdError::BadMargin(-0.1)));
        assert_eq!(DecisionPolicy::new(t, 1.5), Err(ThresholdError::BadMargin(1.5)));
    }

    #[test]
    fn a_local_threshold_may_only_tighten() {
        let signed = Threshold::new(0.8).unwrap();
        let p = DecisionPolicy::tightened(signed, None, 0.05).unwrap();
        assert_eq!(p.threshold(), signed);
        let p = DecisionPolicy::tightened(signed, Some(Threshold::new(0.6).unwrap()), 0.05).unwrap();
        assert_eq!(p.threshold().get(), 0.6);
        let p = DecisionPolicy::tightened(signed, Some(signed), 0.05).unwrap();
        assert_eq!(p.threshold(), signed);
        let e = DecisionPolicy::tightened(signed, Some(Threshold::new(2.0).unwrap()), 0.05).unwrap_err();
        assert_eq!(e, ThresholdError::Looser { requested: 2.0, signed: 0.8 });
        assert!(e.to_string().contains("2") && e.to_string().contains("0.8"), "{e}");
    }
}
