//! The installed gallery: loaded only when signed by a trusted key, made with the encoder in use,
//! and not older than the newest revision this unit has installed (a replayed old gallery could
//! re-admit a removed member). Polled for a new version; an invalid new file is rejected and the
//! last good gallery stays in use.

use ed25519_dalek::VerifyingKey;
use facegate_shared::{gallery_file, Fingerprint, Gallery, GalleryError, IndexError, Matcher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why a gallery was not installed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The gallery file itself (missing, corrupt, unsigned, untrusted, wrong encoder, rollback).
    #[error("gallery {path}: {source}")]
    Gallery { path: String, source: GalleryError },
    /// The revision file cannot be read or written.
    #[error("gallery state file {path}: {reason}")]
    State { path: String, reason: String },
    /// Building the search index failed.
    #[error("gallery index: {0}")]
    Index(#[from] IndexError),
}

/// What a poll found.
#[derive(Debug)]
pub enum Reload {
    /// The file has not changed.
    Unchanged,
    /// A newer valid gallery is now in use.
    Installed { revision: u64, members: usize },
    /// The file changed but was refused; the previous gallery stays in use.
    Rejected(StoreError),
}

/// What identifies one version of the file without reading it: an atomic replace gives a new
/// inode and change time even when size and modification time (coarse clock) match.
#[derive(Debug, Clone, PartialEq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    changed: (i64, i64),
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp { modified: m.modified().ok(), len: m.len(), inode: m.ino(), changed: (m.ctime(), m.ctime_nsec()) })
}

/// The gallery in use and where it came from.
pub struct GalleryStore {
    path: PathBuf,
    state_path: PathBuf,
    trusted: Vec<VerifyingKey>,
    encoder: Fingerprint,
    matcher: Matcher,
    seen: Option<FileStamp>,
}

impl GalleryStore {
    /// Loads and checks the gallery at `path`; refuses to start without a valid one.
    pub fn open(
        path: &Path,
        state_path: &Path,
        trusted: Vec<VerifyingKey>,
        encoder: Fingerprint,
    ) -> Result<Self, StoreError> {
        let seen = stamp(path);
        let installed = read_state(state_path)?;
        let gallery = check(path, &trusted, &encoder, installed)?;
        write_state(state_path, gallery.revision)?;
        let matcher = Matcher::fastest(gallery)?;
        Ok(Self { path: path.to_owned(), state_path: state_path.to_owned(), trusted, encoder, matcher, seen })
    }

    /// The matcher over the gallery in use.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Revision of the gallery in use.
    pub fn revision(&self) -> u64 {
        self.matcher.gallery().revision
    }

    /// Checks the file and installs a newer valid gallery.
    pub fn poll(&mut self) -> Reload {
        let now = stamp(&self.path);
        if now == self.seen {
            return Reload::Unchanged;
        }
        self.seen = now;
        match self.try_install() {
            Ok(Some((revision, members))) => Reload::Installed { revision, members },
            Ok(None) => Reload::Unchanged,
            Err(e) => Reload::Rejected(e),
        }
    }

    fn try_install(&mut self) -> Result<Option<(u64, usize)>, StoreError> {
        let current = self.revision();
        let g = check(&self.path, &self.trusted, &self.encoder, current)?;
        if g.revision == current {
            // Same revision: the file was touched or copied again. Identical content is fine;
            // different content under an old revision number is a replay.
            if &g == self.matcher.gallery() {
                return Ok(None);
            }
            return Err(StoreError::Gallery {
                path: self.path.display().to_string(),
                source: GalleryError::Rollback { installed: current, offered: g.revision },
            });
        }
        let members = g.members().len();
        let revision = g.revision;
        let matcher = Matcher::fastest(g)?;
        write_state(&self.state_path, revision)?;
        self.matcher = matcher;
        Ok(Some((revision, members)))
    }
}

fn check(path: &Path, trusted: &[VerifyingKey], encoder: &Fingerprint, installed: u64) -> Result<Gallery, StoreError> {
    let err = |source| StoreError::Gallery { path: path.display().to_string(), source };
    let g = gallery_file::load(path).and_then(|s| s.trusted(trusted)).map_err(err)?;
    g.check_encoder(encoder).map_err(err)?;
    if g.revision < installed {
        return Err(err(GalleryError::Rollback { installed, offered: g.revision }));
    }
    Ok(g)
}

const STATE_HEADER: &str = "facegate-door state v1";

/// The highest revision installed on this unit (0 when the file does not exist yet).
pub fn read_state(path: &Path) -> Result<u64, StoreError> {
    let bad = |reason: String| StoreError::State { path: path.display().to_string(), reason };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut lines = text.lines();
    if lines.next() != Some(STATE_HEADER) {
        return Err(bad("not a facegate-door state file".into()));
    }
    lines
        .next()
        .and_then(|l| l.strip_prefix("revision "))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("no revision line (delete it only if you know the gallery is current)".into()))
}

fn write_state(path: &Path, revision: u64) -> Result<(), StoreError> {
    gallery_file::write_atomic(path, format!("{STATE_HEADER}\nrevision {revision}\n").as_bytes())
        .map_err(|e| StoreError::State { path: path.display().to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("door.state");
        assert_eq!(read_state(&p).unwrap(), 0);
        write_state(&p, 42).unwrap();
        assert_eq!(read_state(&p).unwrap(), 42);
        std::fs::write(&p, "hello").unwrap();
        assert!(read_state(&p).is_err());
    }
}
