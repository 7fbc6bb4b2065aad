//! Ed25519 key files for signing galleries.
//!
//! A key file is one line of text, versioned and checksummed:
//! `facegate-ed25519-secret v1 <64 hex digits> <crc32 of the key bytes, 8 hex digits>` (or `-public`).
//! The secret file is created with owner-only permissions (0600).

use ed25519_dalek::{SigningKey, VerifyingKey};
use std::path::Path;

const SECRET_TAG: &str = "facegate-ed25519-secret";
const PUBLIC_TAG: &str = "facegate-ed25519-public";
const KEY_FILE_VERSION: &str = "v1";

/// Errors reading or writing key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file is not a key file of the expected kind and version.
    #[error("{path}: not a Facegate {expected} key file (version {KEY_FILE_VERSION})")]
    Format { path: String, expected: &'static str },
    /// The checksum in the file does not match its key.
    #[error("{path}: key checksum mismatch (file corrupt)")]
    Checksum { path: String },
    /// The bytes are not a valid ed25519 public key.
    #[error("{path}: not a valid ed25519 public key")]
    InvalidKey { path: String },
    /// The operating system random source failed.
    #[error("could not get randomness for a new key: {0}")]
    Random(String),
    /// Refusing to overwrite an existing key.
    #[error("{0} already exists; refusing to overwrite a key (move it away first)")]
    Exists(String),
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A fresh signing key from the operating system's random source.
pub fn generate_signing_key() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn line(tag: &str, bytes: &[u8; 32]) -> String {
    format!("{tag} {KEY_FILE_VERSION} {} {:08x}\n", hex::encode(bytes), crc32fast::hash(bytes))
}

fn parse(path: &Path, text: &str, tag: &'static str, expected: &'static str) -> Result<[u8; 32], KeyError> {
    let p = path.display().to_string();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let format = || KeyError::Format { path: p.clone(), expected };
    if fields.len() != 4 || fields[0] != tag || fields[1] != KEY_FILE_VERSION {
        return Err(format());
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(fields[2], &mut key).map_err(|_| format())?;
    let crc = u32::from_str_radix(fields[3], 16).map_err(|_| format())?;
    if crc != crc32fast::hash(&key) {
        return Err(KeyError::Checksum { path: p });
    }
    Ok(key)
}

/// Writes a new key pair: `secret` (mode 0600) and `public`. Never overwrites an existing file.
pub fn write_key_pair(key: &SigningKey, secret: &Path, public: &Path) -> Result<(), KeyError> {
    for p in [secret, public] {
        if p.exists() {
            return Err(KeyError::Exists(p.display().to_string()));
        }
    }
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| KeyError::Io { path, source }
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    {
        use std::io::Write;
        let mut f = opts.open(secret).map_err(io(secret))?;
        f.write_all(line(SECRET_TAG, key.as_bytes()).as_bytes()).map_err(io(secret))?;
        f.sync_all().map_err(io(secret))?;
    }
    crate::gallery_file::write_atomic(public, line(PUBLIC_TAG, key.verifying_key().as_bytes()).as_bytes())
        .map_err(io(public))
}

/// Reads a secret key file.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.display().to_string(), source })?;
    Ok(SigningKey::from_bytes(&parse(path, &text, SECRET_TAG, "secret")?))
}

/// Reads a public key file.
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.display().to_string(), source })?;
    let bytes = parse(path, &text, PUBLIC_TAG, "public")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidKey { path: path.display().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_with_owner_only_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (s, p) = (dir.path().join("k.secret"), dir.path().join("k.pub"));
        let key = SigningKey::from_bytes(&[7; 32]);
        write_key_pair(&key, &s, &p).unwrap();
        assert_eq!(read_signing_key(&s).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(read_verifying_key(&p).unwrap(), key.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&s).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(matches!(write_key_pair(&key, &s, &p), Err(KeyError::Exists(_))));
        // a secret file is not a public key, and a flipped digit fails the checksum
        assert!(matches!(read_verifying_key(&s), Err(KeyError::Format { .. })));
        let text = std::fs::read_to_string(&p).unwrap();
        let mut bytes = text.into_bytes();
        bytes[27] = if bytes[27] == b'0' { b'1' } else { b'0' }; // first hex digit of the key
        std::fs::write(&p, bytes).unwrap();
        assert!(matches!(read_verifying_key(&p), Err(KeyError::Checksum { .. })));
    }
}
