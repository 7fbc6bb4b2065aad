//! SHA-256 fingerprints that tie galleries to the exact encoder that made them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// SHA-256 of an encoder's ONNX bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(pub [u8; 32]);

/// A fingerprint text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("fingerprint {0:?} is not 64 hexadecimal digits")]
pub struct BadFingerprint(pub String);

impl Fingerprint {
    /// The SHA-256 of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, BadFingerprint> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadFingerprint(s.to_owned()))?;
        Ok(Self(out))
    }
    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}
impl TryFrom<String> for Fingerprint {
    type Error = BadFingerprint;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::from_hex(&s)
    }
}
impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sha256_of_abc() {
        let f = Fingerprint::of_bytes(b"abc");
        assert_eq!(f.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(Fingerprint::from_hex(&f.to_string()).unwrap(), f);
        assert!(Fingerprint::from_hex("zz").is_err());
    }
}
