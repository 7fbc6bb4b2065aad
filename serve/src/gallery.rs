//! The served gallery: loaded under the door's install rules, swapped atomically when a newer
//! signed revision appears at the same path, and kept when the new file is refused.

use facegate_shared::install::{Floor, InstallRules, Verdict};
use facegate_shared::Matcher;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ServeError;

/// One installed gallery with its index.
pub struct Loaded {
    /// The gallery and its exact index.
    pub matcher: Matcher,
    /// Revision and SHA-256 of the installed bytes (the replay floor).
    pub floor: Floor,
    /// When it was installed, Unix seconds.
    pub installed_at: u64,
}

/// What a reload check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The file did not change since the last look.
    Unchanged,
    /// The file changed and holds the installed gallery (same revision, same bytes).
    Current,
    /// A newer revision was installed.
    Installed { revision: u64, members: usize },
    /// The changed file was refused; the installed gallery keeps serving.
    Refused(String),
}

/// File identity used to notice a change without reading the file: (inode, size, mtime ns).
type Stamp = (u64, u64, i128);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok((m.ino(), m.len(), i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())))
}

/// The gallery a server answers from.
pub struct ServedGallery {
    path: PathBuf,
    rules: InstallRules,
    current: RwLock<Arc<Loaded>>,
    seen: std::sync::Mutex<Option<Stamp>>,
    /// Where the replay floor survives a restart (`None`: memory only).
    state: Option<PathBuf>,
}

impl ServedGallery {
    /// Loads `path` under `rules` (trusted key, encoder binding). With `state`, the replay floor
    /// is read from that file first (an older gallery than the last one served is refused, also
    /// after a restart) and written at every install; without it the first load sets the floor.
    pub fn open(path: &Path, rules: InstallRules, state: Option<&Path>) -> Result<Self, ServeError> {
        let err = |e: &dyn std::fmt::Display| ServeError::Gallery(format!("{}: {e}", path.display()));
        let st = stamp(path).map_err(|e| err(&e))?;
        let c = rules.verify_file(path).map_err(|e| err(&e))?;
        if let Some(state) = state {
            let floor = Floor::read(state).map_err(|e| err(&e))?;
            if InstallRules::judge(&c, floor.as_ref()).map_err(|e| err(&e))? == Verdict::Newer {
                c.floor().write(state).map_err(|e| err(&e))?;
            }
        }
        let floor = c.floor();
        let matcher = Matcher::fastest(c.gallery).map_err(|e| ServeError::Gallery(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            rules,
            current: RwLock::new(Arc::new(Loaded { matcher, floor, installed_at: now() })),
            seen: std::sync::Mutex::new(Some(st)),
            state: state.map(Path::to_owned),
        })
    }

    /// A snapshot of the installed gallery: a request keeps answering from it even if a newer
    /// one is installed meanwhile (never a mix of two).
    pub fn snapshot(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Looks at the file; when it changed, verifies it (signature, encoder, replay guard) and
    /// installs a newer revision. A refused or unreadable file leaves the installed gallery as it
    /// is; the same changed file is judged once (until it changes again).
    pub fn check(&self) -> Reload {
        let st = match stamp(&self.path) {
            Ok(s) => s,
            Err(e) => return self.judged(None, Reload::Refused(format!("{}: {e}", self.path.display()))),
        };
        {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == Some(st) {
                return Reload::Unchanged;
            }
        }
        let floor = self.snapshot().floor;
        let outcome = match self.rules.verify_file(&self.path) {
            Err(e) if !e.is_permanent() => return Reload::Refused(e.to_string()), // retry next time
            Err(e) => Reload::Refused(e.to_string()),
            Ok(c) => match InstallRules::judge(&c, Some(&floor)) {
                Err(e) => Reload::Refused(e.to_string()),
                Ok(Verdict::Current) => Reload::Current,
                Ok(Verdict::Newer) => {
                    let floor = c.floor();
                    let members = c.gallery.members().len();
                    match Matcher::fastest(c.gallery) {
                        Err(e) => Reload::Refused(e.to_string()),
                        Ok(matcher) => {
                            // the floor first: a crash after it can only make a restart stricter
                            if let Some(state) = &self.state {
                                if let Err(e) = floor.write(state) {
                                    return self.judged(
                                        Some(st),
                                        Reload::Refused(format!("cannot record the replay floor: {e}")),
                                    );
                                }
                            }
                            *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                                Arc::new(Loaded { matcher, floor, installed_at: now() });
                            Reload::Installed { revision: floor.revision, members }
                        }
                    }
                }
            },
        };
        self.judged(Some(st), outcome)
    }

    fn judged(&self, st: Option<Stamp>, r: Reload) -> Reload {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == st {
            return Reload::Unchanged; // a missing file is reported once, not at every look
        }
        *seen = st;
        r
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
