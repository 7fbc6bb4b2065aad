//! Bearer tokens: read from a tokens file, kept only as SHA-256 digests, compared in constant time.

use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

use crate::ServeError;

/// Shortest token accepted in a tokens file (about 96 bits as base64).
pub const MIN_TOKEN_CHARS: usize = 16;

/// The accepted tokens, as digests (the tokens themselves are dropped after reading).
#[derive(Clone)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} accepted)", self.digests.len())
    }
}

impl Tokens {
    /// Reads a tokens file: one token per line; blank lines and lines starting with `#` are
    /// ignored. Every token must be at least [`MIN_TOKEN_CHARS`] printable ASCII characters
    /// without spaces; an empty file is an error (it would lock every client out by accident).
    pub fn read(path: &Path) -> Result<Self, ServeError> {
        let bad = |why: String| ServeError::Tokens { path: path.display().to_string(), why };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let mut digests = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.len() < MIN_TOKEN_CHARS || !t.bytes().all(|b| b.is_ascii_graphic()) {
                // never echo the token itself
                return Err(bad(format!(
                    "line {}: a token must be at least {MIN_TOKEN_CHARS} printable characters without spaces",
                    n + 1
                )));
            }
            digests.push(Sha256::digest(t.as_bytes()).into());
        }
        if digests.is_empty() {
            return Err(bad("no tokens in the file".into()));
        }
        Ok(Self { digests })
    }

    /// Tokens given directly (tests).
    pub fn from_tokens(tokens: &[&str]) -> Self {
        Self { digests: tokens.iter().map(|t| Sha256::digest(t.as_bytes()).into()).collect() }
    }

    /// Whether `presented` is one of the tokens. Takes the same time whichever token matches,
    /// or none: every digest is compared, without early exit.
    pub fn accepts(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut any = subtle::Choice::from(0);
        for known in &self.digests {
            any |= known.ct_eq(&d);
        }
        any.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tokens_and_refuses_weak_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(&p, "# front desk\nabcdefghijklmnop0123\n\n  second-token-0123456  \n").unwrap();
        let t = Tokens::read(&p).unwrap();
        assert!(t.accepts("abcdefghijklmnop0123"));
        assert!(t.accepts("second-token-0123456"));
        assert!(!t.accepts("abcdefghijklmnop012"));
        assert!(!t.accepts(""));
        std::fs::write(&p, "short\n").unwrap();
        let e = Tokens::read(&p).unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("short"), "{e}");
        std::fs::write(&p, "# nothing\n").unwrap();
        assert!(Tokens::read(&p).unwrap_err().to_string().contains("no tokens"));
    }
}
