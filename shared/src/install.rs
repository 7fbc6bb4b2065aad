//! The rules for installing a gallery, in one place for every reader that installs one (the door
//! unit's inbox, a gallery pulled from a URL, the matching service):
//!
//! 1. **Trust before parse**: the envelope's signature must come from a trusted key before any
//!    payload byte is parsed ([`crate::gallery_file::decode_trusted`]).
//! 2. **Encoder binding**: the gallery must have been enrolled with the encoder in use, ONNX bytes
//!    and every preprocessing field of its card ([`crate::Gallery::check_encoder`]).
//! 3. **Replay guard**: the offered revision must be above the installed [`Floor`], or equal to it
//!    with the very same bytes (SHA-256). An older revision, or other content under the same
//!    revision number, could re-admit a revoked member and is refused.
//!
//! The floor is remembered in a small state file ([`Floor::read`], [`Floor::write`]) that lives
//! where only the installing process can write; readers take the larger of that file and the
//! signed revision of the installed copy, so deleting the state file never lowers it.

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use std::path::Path;

use crate::{gallery_file, EncoderBinding, Gallery, GalleryError};

/// Why a gallery is not installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file itself: unreadable, too large, corrupt, unsigned, untrusted, other encoder.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// An older revision than the installed one (a replayed file).
    #[error("gallery revision {offered} is older than the installed revision {installed} (replayed file?)")]
    Older { installed: u64, offered: u64 },
    /// The installed revision number with other content.
    #[error(
        "gallery revision {revision} has other content than the installed revision {revision} \
         (sha256 {offered} vs {installed}): a new gallery must carry a higher revision"
    )]
    SameRevisionOtherContent { revision: u64, installed: String, offered: String },
}

impl InstallError {
    /// Whether trying the same bytes again can never succeed (bad signature, older revision,
    /// other encoder...). I/O errors are transient: the file may still be being written, or the
    /// disk may come back.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, InstallError::Gallery(GalleryError::Io { .. }))
    }
}

/// A gallery that passed rules 1 and 2, with the digest of its exact bytes.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The decoded gallery.
    pub gallery: Gallery,
    /// SHA-256 of the file bytes.
    pub sha256: [u8; 32],
}

impl Candidate {
    /// The floor this gallery sets once installed.
    pub fn floor(&self) -> Floor {
        Floor { revision: self.gallery.revision, sha256: self.sha256 }
    }
}

/// The installed revision and the digest of the installed bytes: nothing below it is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    /// Highest installed revision.
    pub revision: u64,
    /// SHA-256 of the installed file at that revision.
    pub sha256: [u8; 32],
}

/// What the replay guard says about a verified candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A higher revision: install it.
    Newer,
    /// The installed gallery itself (same revision, same bytes): nothing to do.
    Current,
}

/// Trusted keys and the encoder in use: everything rules 1 and 2 need.
#[derive(Debug, Clone)]
pub struct InstallRules {
    trusted: Vec<VerifyingKey>,
    encoder: EncoderBinding,
    max_file_bytes: u64,
}

impl InstallRules {
    /// Rules for galleries signed by one of `trusted` and enrolled with `encoder`.
    pub fn new(trusted: Vec<VerifyingKey>, encoder: EncoderBinding) -> Self {
        Self { trusted, encoder, max_file_bytes: gallery_file::MAX_GALLERY_FILE_BYTES }
    }

    /// Refuses files larger than `max` bytes before reading them (a door unit with little memory
    /// sets this well below the format's own limit).
    pub fn with_max_file_bytes(mut self, max: u64) -> Self {
        self.max_file_bytes = max;
        self
    }

    /// The encoder galleries must be bound to.
    pub fn encoder(&self) -> &EncoderBinding {
        &self.encoder
    }

    /// Rules 1 and 2 on a file's bytes.
    pub fn verify(&self, bytes: &[u8]) -> Result<Candidate, InstallError> {
        let gallery = gallery_file::decode_trusted(bytes, &self.trusted)?;
        gallery.check_encoder(&self.encoder)?;
        Ok(Candidate { gallery, sha256: Sha256::digest(bytes).into() })
    }

    /// Reads `path` (size-capped before reading); see [`InstallRules::with_max_file_bytes`].
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, InstallError> {
        Ok(gallery_file::read_capped_to(path, self.max_file_bytes)?)
    }

    /// Reads `path` (size-capped before reading) and applies rules 1 and 2.
    pub fn verify_file(&self, path: &Path) -> Result<Candidate, InstallError> {
        self.verify(&self.read(path)?)
    }

    /// Rule 3: the replay guard against `floor` (`None`: nothing was ever installed).
    pub fn judge(candidate: &Candidate, floor: Option<&Floor>) -> Result<Verdict, InstallError> {
        let Some(floor) = floor else { return Ok(Verdict::Newer) };
        let offered = candidate.gallery.revision;
        if offered > floor.revision {
            Ok(Verdict::Newer)
        } else if offered < floor.revision {
            Err(InstallError::Older { installed: floor.revision, offered })
        } else if candidate.sha256 == floor.sha256 {
            Ok(Verdict::Current)
        } else {
            Err(InstallError::SameRevisionOtherContent {
                revision: offered,
                installed: hex::encode(&floor.sha256[..8]),
                offered: hex::encode(&candidate.sha256[..8]),
            })
        }
    }
}

/// The higher of two floors (by revision; the first wins a tie).
pub fn higher(a: Option<Floor>, b: Option<Floor>) -> Option<Floor> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.revision > a.revision { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("install state {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// Not a state file of this version, or its checksum does not match.
    #[error("install state {path}: {problem}")]
    Corrupt { path: String, problem: String },
}

const STATE_HEADER: &str = "facegate install state v2";
/// Largest state file read (a real one is about 130 bytes).
const MAX_STATE_BYTES: u64 = 4096;

impl Floor {
    /// The state file's text: header, revision, digest, and a CRC-32 of the lines above it.
    pub fn to_text(&self) -> String {
        let body = format!("{STATE_HEADER}\nrevision {}\nsha256 {}\n", self.revision, hex::encode(self.sha256));
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body}crc32 {crc:08x}\n")
    }

    /// Parses [`Floor::to_text`]; `path` names the file in errors.
    pub fn from_text(text: &str, path: &str) -> Result<Self, StateError> {
        let bad = |problem: &str| StateError::Corrupt { path: path.to_owned(), problem: problem.to_owned() };
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != 4 || lines[0] != STATE_HEADER {
            return Err(bad("not a facegate install state file (version 2)"));
        }
        let body_len = text.rfind("crc32 ").ok_or_else(|| bad("no checksum line"))?;
        let crc = lines[3].strip_prefix("crc32 ").and_then(|c| u32::from_str_radix(c, 16).ok());
        if crc != Some(crc32fast::hash(&text.as_bytes()[..body_len])) {
            return Err(bad("checksum mismatch (the file was edited or damaged)"));
        }
        let revision =
            lines[1].strip_prefix("revision ").and_then(|n| n.parse().ok()).ok_or_else(|| bad("no revision"))?;
        let mut sha256 = [0u8; 32];
        lines[2]
            .strip_prefix("sha256 ")
            .and_then(|h| hex::decode_to_slice(h, &mut sha256).ok())
            .ok_or_else(|| bad("no sha256"))?;
        Ok(Floor { revision, sha256 })
    }

    /// Reads the state file: `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Self>, StateError> {
        use std::io::Read;
        let p = path.display().to_string();
        let io = |source| StateError::Io { path: p.clone(), source };
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut text = String::new();
        f.take(MAX_STATE_BYTES).read_to_string(&mut text).map_err(io)?;
        Self::from_text(&text, &p).map(Some)
    }

    /// Writes the state file atomically.
    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        gallery_file::write_atomic(path, self.to_text().as_bytes())
            .map_err(|source| StateError::Io { path: path.display().to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor(revision: u64, b: u8) -> Floor {
        Floor { revision, sha256: [b; 32] }
    }

    #[test]
    fn state_text_round_trips_and_any_edit_is_refused() {
        let f = floor(42, 0xab);
        let text = f.to_text();
        assert_eq!(Floor::from_text(&text, "s").unwrap(), f);
        // Lowering the revision by hand is caught by the checksum.
        let edited = text.replace("revision 42", "revision 41");
        assert!(matches!(Floor::from_text(&edited, "s"), Err(StateError::Corrupt { .. })));
        assert!(matches!(
            Floor::from_text("facegate-door state v1\nrevision 3\n", "s"),
            Err(StateError::Corrupt { .. })
        ));
        assert!(matches!(Floor::from_text("", "s"), Err(StateError::Corrupt { .. })));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        assert_eq!(Floor::read(&p).unwrap(), None);
        f.write(&p).unwrap();
        assert_eq!(Floor::read(&p).unwrap(), Some(f));
    }

    #[test]
    fn higher_takes_the_larger_revision() {
        assert_eq!(higher(None, None), None);
        assert_eq!(higher(Some(floor(3, 1)), None), Some(floor(3, 1)));
        assert_eq!(higher(None, Some(floor(3, 1))), Some(floor(3, 1)));
        assert_eq!(higher(Some(floor(3, 1)), Some(floor(5, 2))), Some(floor(5, 2)));
        assert_eq!(higher(Some(floor(5, 1)), Some(floor(5, 2))), Some(floor(5, 1)));
    }
}
