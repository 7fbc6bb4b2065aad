//! Gym members: identifiers, calendar dates and membership validity.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::Embedding;

/// Longest member id accepted.
pub const MAX_MEMBER_ID_LEN: usize = 64;
/// Longest display name accepted (bytes of UTF-8).
pub const MAX_NAME_LEN: usize = 256;

/// Errors validating member fields.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MemberError {
    /// Ids are 1..=64 characters of letters, digits, `-`, `_` or `.`.
    #[error("member id {0:?} is invalid: use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadId(String),
    /// Names are 1..=256 bytes without control characters.
    #[error("member name {0:?} is invalid: use 1 to 256 bytes without control characters")]
    BadName(String),
    /// Dates are written `YYYY-MM-DD`.
    #[error("date {0:?} is invalid: write it as YYYY-MM-DD")]
    BadDate(String),
    /// A member needs at least one embedding.
    #[error("member {0} has no embeddings")]
    NoEmbeddings(String),
}

/// A member id as printed on the membership card (`17`, `s12`, `anna.k`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberId(String);

impl MemberId {
    /// Checks the id's length and characters.
    pub fn new(id: &str) -> Result<Self, MemberError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_MEMBER_ID_LEN
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(MemberError::BadId(id.to_owned()))
        }
    }
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a display name.
pub fn check_name(name: &str) -> Result<(), MemberError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(MemberError::BadName(name.to_owned()));
    }
    Ok(())
}

/// A calendar date (UTC), stored as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date(pub i32);

impl Date {
    /// Parses `YYYY-MM-DD` (years 1970..=9999).
    pub fn parse(s: &str) -> Result<Self, MemberError> {
        let bad = || MemberError::BadDate(s.to_owned());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok()).ok_or_else(bad);
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return Err(bad());
        }
        Ok(Self(days_from_civil(y as i32, m, d)))
    }

    /// Today's date in UTC from the system clock.
    pub fn today() -> Self {
        let secs =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        Self::from_unix_seconds(secs)
    }

    /// The UTC date containing the given Unix time.
    pub fn from_unix_seconds(secs: i64) -> Self {
        Self(secs.div_euclid(86_400) as i32)
    }

    /// `(year, month, day)`.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-calendar algorithms (proleptic Gregorian).
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i32 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i32::from(m <= 2);
    (y, m, d)
}

/// When a membership lets its holder in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// First valid day (inclusive); `None` means since enrolment.
    pub from: Option<Date>,
    /// Last valid day (inclusive); `None` means open-ended.
    pub until: Option<Date>,
    /// The front desk can suspend a membership without changing its dates.
    pub active: bool,
}

impl Validity {
    /// An active, open-ended membership.
    pub const OPEN: Validity = Validity { from: None, until: None, active: true };

    /// Whether the membership admits its holder on `day`.
    pub fn admits(&self, day: Date) -> bool {
        self.active && self.from.is_none_or(|f| day >= f) && self.until.is_none_or(|u| day <= u)
    }
}

/// One enrolled member and their reference embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Unique id within a gallery.
    pub id: MemberId,
    /// Display name for the front desk.
    pub name: String,
    /// Membership dates and suspension flag.
    pub validity: Validity,
    /// Enrolment time, Unix seconds.
    pub enrolled_at: i64,
    /// One embedding per enrolment photo; matching uses the closest.
    pub embeddings: Vec<Embedding>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_validate() {
        assert_eq!(Date::parse("1970-01-01").unwrap(), Date(0));
        assert_eq!(Date::parse("2000-03-01").unwrap(), Date(11_017));
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        for bad in ["2023-02-29", "2024-13-01", "2024-1-01", "20240101xx", "", "1969-12-31"] {
            assert_eq!(Date::parse(bad), Err(MemberError::BadDate(bad.into())), "{bad}");
        }
        for d in [0, 1, 59, 60, 365, 11_016, 19_782, 2_932_896] {
            assert_eq!(Date::parse(&Date(d).to_string()).unwrap(), Date(d));
        }
        assert_eq!(Date::from_unix_seconds(86_399), Date(0));
        assert_eq!(Date::from_unix_seconds(86_400), Date(1));
    }

    #[test]
    fn validity_is_inclusive() {
        let v = Validity { from: Some(Date(10)), until: Some(Date(20)), active: true };
        assert!(!v.admits(Date(9)) && v.admits(Date(10)) && v.admits(Date(20)) && !v.admits(Date(21)));
        assert!(!Validity { active: false, ..v }.admits(Date(15)));
        assert!(Validity::OPEN.admits(Date(0)));
    }

    #[test]
    fn ids_and_names() {
        assert!(MemberId::new("s12").is_ok());
        assert!(MemberId::new("anna.k-2_x").is_ok());
        for bad in ["", "a b", "x/y", &"a".repeat(65)] {
            assert_eq!(MemberId::new(bad), Err(MemberError::BadId(bad.into())));
        }
        assert!(check_name("Anna Kowalska").is_ok());
        assert!(check_name("bad\nname").is_err());
    }
}
