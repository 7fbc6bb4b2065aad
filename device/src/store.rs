//! The door's galleries on disk, under the install rules of [`facegate_shared::install`].
//!
//! Layout (see `device/deploy/README.md` for owners and modes):
//! - the **inbox** file (`gallery.inbox`): where the front desk drops (or a puller downloads) a
//!   signed gallery. The door only reads it;
//! - the **state directory** (`gallery.state_dir`), writable only by the door's user, holding
//!   the **installed copy** (`gallery.fgg`, the last gallery the door accepted, so it survives a
//!   restart and a deleted inbox) and the **install state** (`install.state`: revision and SHA-256
//!   of the installed copy, checksummed).
//!
//! The replay floor is the larger of the install state and the installed copy's signed revision,
//! so deleting or editing the state file never lowers it; a missing or unreadable state file with
//! an installed copy present is reported loudly (a start-up note, logged) and rewritten from the
//! installed copy. Start-up and hot reload apply the same rule ([`InstallRules::judge`]).
//! [`Access::ReadOnly`] (used by `facegate-door check`) reports what would happen and writes
//! nothing.

use facegate_shared::install::{self, Candidate, Floor, InstallError, InstallRules, StateError, Verdict};
use facegate_shared::{gallery_file, GalleryError, IndexError, Matcher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// File name of the installed copy inside the state directory.
pub const INSTALLED_NAME: &str = "gallery.fgg";
/// File name of the install state inside the state directory.
pub const STATE_NAME: &str = "install.state";

/// Why the store cannot be opened or a gallery not installed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A gallery file was refused (unreadable, corrupt, untrusted, other encoder, replayed).
    /// (`reason` is shown in the message, not chained as a source, so it is printed once.)
    #[error("gallery {path}: {reason}")]
    Install { path: String, reason: InstallError },
    /// The install state cannot be written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state directory is missing, unusable or writable by others.
    #[error("gallery state directory {path}: {problem}")]
    StateDir { path: String, problem: String },
    /// Nothing valid to run with.
    #[error("no usable gallery: {0}")]
    NoGallery(String),
    /// Building the search index failed.
    #[error("gallery index: {0}")]
    Index(#[from] IndexError),
}

impl StoreError {
    /// Whether retrying the same file can succeed (disk full, a file still being written).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Install { reason, .. } => !reason.is_permanent(),
            StoreError::State(_) | StoreError::Index(_) | StoreError::StateDir { .. } => true,
            StoreError::NoGallery(_) => false,
        }
    }
}

/// Whether the store may write (run) or only look (check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Install from the inbox, write the installed copy and the state.
    ReadWrite,
    /// Decide exactly as `ReadWrite` would, write nothing.
    ReadOnly,
}

/// Where the store's files are.
#[derive(Debug, Clone, PartialEq)]
pub struct StorePaths {
    /// The drop location.
    pub inbox: PathBuf,
    /// The door's own directory.
    pub state_dir: PathBuf,
}

impl StorePaths {
    /// The installed copy.
    pub fn installed(&self) -> PathBuf {
        self.state_dir.join(INSTALLED_NAME)
    }
    /// The install state.
    pub fn state(&self) -> PathBuf {
        self.state_dir.join(STATE_NAME)
    }
}

/// What a poll found.
#[derive(Debug)]
pub enum Reload {
    /// The inbox has not changed (or holds the installed gallery).
    Unchanged,
    /// A newer valid gallery is now in use.
    Installed { revision: u64, members: usize },
    /// The inbox file was refused for good; logged once per file version.
    Rejected(StoreError),
    /// Installing failed for a reason that may go away (disk full, file being written); it is
    /// retried on every poll. `first` is true the first time this error is seen.
    Deferred { error: StoreError, first: bool },
}

/// What identifies one version of a file without reading it: an atomic replace gives a new inode
/// and change time even when size and modification time (coarse clock) match.
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

/// The gallery in use, and where it came from.
pub struct GalleryStore {
    paths: StorePaths,
    rules: InstallRules,
    access: Access,
    matcher: Matcher,
    floor: Floor,
    /// The inbox version last judged for good (installed, current or permanently refused).
    seen: Option<FileStamp>,
    last_deferred: Option<String>,
    notes: Vec<String>,
}

impl GalleryStore {
    /// Opens the store: the installed copy, then the inbox, under the install rules. Fails when
    /// there is no valid gallery to run with. Things an operator must know about (a missing state
    /// file, a refused inbox file) are kept as notes for the event log ([`GalleryStore::take_notes`]).
    pub fn open(paths: &StorePaths, rules: InstallRules, access: Access) -> Result<Self, StoreError> {
        let mut notes = Vec::new();
        if !check_state_dir(&paths.state_dir, access)? {
            notes.push(format!(
                "state directory {} does not exist yet (the first run creates it)",
                paths.state_dir.display()
            ));
        }
        let state_path = paths.state();
        let state = match Floor::read(&state_path) {
            Ok(s) => s,
            Err(e) => {
                notes.push(format!("install state unusable, taking the floor from the installed copy: {e}"));
                None
            }
        };
        let installed_path = paths.installed();
        let mut current: Option<Candidate> = None;
        if installed_path.exists() {
            match rules.verify_file(&installed_path).and_then(|c| InstallRules::judge(&c, state.as_ref()).map(|_| c)) {
                Ok(c) => {
                    if state.is_none() {
                        notes.push(format!(
                            "install state {} is missing: replay floor taken from the installed copy (revision {})",
                            state_path.display(),
                            c.gallery.revision
                        ));
                    }
                    current = Some(c);
                }
                Err(e) => notes.push(format!("installed copy {} refused: {e}", installed_path.display())),
            }
        }
        let mut floor = install::higher(state, current.as_ref().map(Candidate::floor));
        let mut write_state = floor.is_some() && floor != state;

        let inbox_stamp = stamp(&paths.inbox);
        let mut seen = None;
        if inbox_stamp.is_some() {
            match try_inbox(&paths.inbox, &rules, floor.as_ref()) {
                Ok((c, Verdict::Current, _)) => {
                    seen = inbox_stamp;
                    current.get_or_insert(c);
                }
                Ok((c, Verdict::Newer, bytes)) => {
                    if access == Access::ReadWrite {
                        gallery_file::write_atomic(&installed_path, &bytes).map_err(|source| StoreError::Install {
                            path: installed_path.display().to_string(),
                            reason: io(source),
                        })?;
                        write_state = true;
                    } else {
                        notes.push(format!("inbox revision {} would be installed", c.gallery.revision));
                    }
                    seen = inbox_stamp;
                    floor = Some(c.floor());
                    current = Some(c);
                }
                Err(e) => {
                    if current.is_none() {
                        return Err(e);
                    }
                    if !e.is_transient() {
                        seen = inbox_stamp;
                    }
                    notes.push(format!("inbox refused, keeping the installed gallery: {e}"));
                }
            }
        }
        let Some(current) = current else {
            return Err(StoreError::NoGallery(format!(
                "nothing installed in {} and no gallery in the inbox {}",
                paths.state_dir.display(),
                paths.inbox.display()
            )));
        };
        let floor = floor.unwrap_or_else(|| current.floor());
        if write_state && access == Access::ReadWrite {
            floor.write(&state_path)?;
        }
        let matcher = Matcher::fastest(current.gallery)?;
        Ok(Self { paths: paths.clone(), rules, access, matcher, floor, seen, last_deferred: None, notes })
    }

    /// Notes from start-up for the event log (taken once).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The matcher over the gallery in use.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Revision of the gallery in use.
    pub fn revision(&self) -> u64 {
        self.matcher.gallery().revision
    }

    /// The replay floor.
    pub fn floor(&self) -> Floor {
        self.floor
    }

    /// Where the files are.
    pub fn paths(&self) -> &StorePaths {
        &self.paths
    }

    /// Checks the inbox and installs a newer valid gallery. A permanent refusal is reported once
    /// per file version; a transient failure is retried on every poll until it succeeds.
    pub fn poll(&mut self) -> Reload {
        let now = stamp(&self.paths.inbox);
        if now.is_none() || now == self.seen {
            return Reload::Unchanged;
        }
        match self.try_install() {
            Ok(r) => {
                self.seen = now;
                self.last_deferred = None;
                r
            }
            Err(error) if error.is_transient() => {
                let text = error.to_string();
                let first = self.last_deferred.as_ref() != Some(&text);
                self.last_deferred = Some(text);
                Reload::Deferred { error, first }
            }
            Err(e) => {
                self.seen = now;
                self.last_deferred = None;
                Reload::Rejected(e)
            }
        }
    }

    fn try_install(&mut self) -> Result<Reload, StoreError> {
        let (c, verdict, bytes) = try_inbox(&self.paths.inbox, &self.rules, Some(&self.floor))?;
        if verdict == Verdict::Current {
            return Ok(Reload::Unchanged);
        }
        let (revision, members) = (c.gallery.revision, c.gallery.members().len());
        let floor = c.floor();
        let matcher = Matcher::fastest(c.gallery)?;
        if self.access == Access::ReadWrite {
            let installed = self.paths.installed();
            gallery_file::write_atomic(&installed, &bytes)
                .map_err(|source| StoreError::Install { path: installed.display().to_string(), reason: io(source) })?;
            floor.write(&self.paths.state())?;
        }
        self.matcher = matcher;
        self.floor = floor;
        Ok(Reload::Installed { revision, members })
    }
}

fn io(source: std::io::Error) -> InstallError {
    InstallError::Gallery(GalleryError::Io { path: String::new(), error: source })
}

/// Reads, verifies and judges the inbox file; returns its bytes for copying.
fn try_inbox(
    inbox: &Path,
    rules: &InstallRules,
    floor: Option<&Floor>,
) -> Result<(Candidate, Verdict, Vec<u8>), StoreError> {
    let err = |reason| StoreError::Install { path: inbox.display().to_string(), reason };
    let bytes = rules.read(inbox).map_err(err)?;
    let c = rules.verify(&bytes).map_err(err)?;
    let verdict = InstallRules::judge(&c, floor).map_err(err)?;
    Ok((c, verdict, bytes))
}

/// The state directory is created owner-only when running, and must not be writable by group or
/// others: whoever can write it can lower the replay floor. `Ok(false)`: it does not exist yet
/// (read-only access).
fn check_state_dir(dir: &Path, access: Access) -> Result<bool, StoreError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let bad = |problem: String| StoreError::StateDir { path: dir.display().to_string(), problem };
    if !dir.exists() {
        if access == Access::ReadOnly {
            return Ok(false);
        }
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| bad(e.to_string()))?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| bad(e.to_string()))?;
    if meta.file_type().is_symlink() {
        return Err(bad("is a symbolic link; name the real directory".into()));
    }
    if !meta.is_dir() {
        return Err(bad("is not a directory".into()));
    }
    // The owner of /proc/self is this process's effective user.
    if let Ok(me) = std::fs::metadata("/proc/self") {
        if meta.uid() != me.uid() {
            return Err(bad(format!(
                "is owned by uid {}, not by the door's user (uid {}): only the door may write its replay guard",
                meta.uid(),
                me.uid()
            )));
        }
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(bad(format!(
            "is writable by group or others (mode {mode:o}); it must be writable only by the door's user \
             (chmod 700): whoever can write it can replay an old gallery"
        )));
    }
    Ok(true)
}
