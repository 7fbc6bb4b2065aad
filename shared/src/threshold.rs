//! Checked decision settings: the distance threshold and the ambiguity margin.

use serde::{Deserialize, Serialize};

/// Errors validating decision settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// A threshold must be a distance on the unit sphere: strictly positive and at most 2.
    #[error("threshold {0} is outside (0, 2]: distances between unit embeddings lie in [0, 2]")]
    OutOfRange(f32),
    /// The ambiguity margin must be finite and in [0, 2].
    #[error("ambiguity margin {0} is outside [0, 2]")]
    BadMargin(f32),
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
    pub threshold: Threshold,
    /// A grant is refused as ambiguous when a second member is closer than `best + margin`.
    pub ambiguity_margin: f32,
}

impl DecisionPolicy {
    /// Checks the margin (finite, in `[0, 2]`).
    pub fn new(threshold: Threshold, ambiguity_margin: f32) -> Result<Self, ThresholdError> {
        if !(ambiguity_margin.is_finite() && (0.0..=2.0).contains(&ambiguity_margin)) {
            return Err(ThresholdError::BadMargin(ambiguity_margin));
        }
        Ok(Self { threshold, ambiguity_margin })
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
    }
}
