//! The event log: one JSON object per line, appended and flushed per event, rotated by size.
//! No face images are written here (see `log.store_faces`).

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The door started.
    Start,
    /// The door stopped (signal or end of replay).
    Stop,
    /// A grant or a denial.
    Decision,
    /// A claimed id was read (claim mode).
    Claim,
    /// A new gallery was installed, or one was rejected.
    Gallery,
    /// The frame source failed or recovered.
    Source,
    /// The lock failed to actuate (the door stays locked).
    Lock,
    /// A liveness challenge was given (which side the member was asked to turn to).
    Challenge,
    /// A liveness deny cue (a photo or a screen in the hand) fired on an appearance that ended
    /// with no decision line saying so: the face left or changed before the door decided, or
    /// the door had denied it for another reason first. The door stayed locked.
    Liveness,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// UTC wall time, RFC 3339 with milliseconds.
    pub time: String,
    /// Kind.
    pub event: EventKind,
    /// `granted` or `denied` for decisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// Member concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Distance to that member (or to the nearest one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f32>,
    /// Denial reason code (`unknown`, `expired`, `ambiguous`, `lock_failed`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Processing time of the deciding frame: detection + alignment + encoding + matching.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The frame's label (file name for replays, sequence number for cameras).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
    /// Human-readable detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    /// An event of `kind` stamped now, every optional field empty.
    pub fn now(kind: EventKind) -> Self {
        Event {
            time: rfc3339(SystemTime::now()),
            event: kind,
            decision: None,
            member: None,
            distance: None,
            reason: None,
            latency_ms: None,
            frame: None,
            detail: None,
        }
    }

    /// Sets the detail text.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

/// `2026-11-29T08:01:02.345Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, day) = facegate_shared::Date::from_unix_seconds(secs).ymd();
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, d.subsec_millis())
}

/// Where events go. `record` returns only after the event is handed to the OS (or failed).
pub trait EventSink {
    /// Records one event.
    fn record(&mut self, event: &Event) -> io::Result<()>;
    /// Makes everything recorded durable (called at exit).
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: EventSink + ?Sized> EventSink for Box<T> {
    fn record(&mut self, event: &Event) -> io::Result<()> {
        (**self).record(event)
    }
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
}

/// Append-only JSON Lines file rotated by size: `events.jsonl` → `events.jsonl.1` → ... `.keep`.
pub struct JsonlLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl JsonlLog {
    /// Opens (creating) the log for appending. Fails if the folder is missing or not writable.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self { path: path.to_owned(), file, size, max_bytes, keep })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let numbered = |i: u32| {
            let mut s = self.path.clone().into_os_string();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for i in (1..self.keep).rev() {
                if numbered(i).exists() {
                    std::fs::rename(numbered(i), numbered(i + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl EventSink for JsonlLog {
    fn record(&mut self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.file.flush()?;
        self.size += line.len() as u64;
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// Events as JSON lines on stdout (`--json`, for a supervisor).
pub struct StdoutSink;

impl EventSink for StdoutSink {
    fn record(&mut self, event: &Event) -> io::Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, event).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// Writes to every sink; fails if any fails (after trying all).
pub struct Tee(pub Vec<Box<dyn EventSink>>);

impl EventSink for Tee {
    fn record(&mut self, event: &Event) -> io::Result<()> {
        let mut first_err = None;
        for s in &mut self.0 {
            if let Err(e) = s.record(event) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.sync())
    }
}

/// In-memory sink for tests, optionally failing.
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub struct MemorySink {
    /// Recorded events.
    pub events: Vec<Event>,
    /// When set, every `record` fails.
    pub fail: bool,
}

#[cfg(any(test, feature = "testing"))]
impl EventSink for MemorySink {
    fn record(&mut self, event: &Event) -> io::Result<()> {
        if self.fail {
            return Err(io::Error::other("memory sink set to fail"));
        }
        self.events.push(event.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_796_000_462_345);
        assert_eq!(rfc3339(t), "2026-11-30T01:01:02.345Z");
    }

    #[test]
    fn log_appends_lines_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = JsonlLog::open(&path, 4096, 2).unwrap();
        let ev = Event::now(EventKind::Decision).detail("x".repeat(900));
        for _ in 0..12 {
            log.record(&ev).unwrap();
        }
        let lines = |p: &Path| std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0);
        let current = lines(&path);
        let one = lines(&dir.path().join("events.jsonl.1"));
        let two = lines(&dir.path().join("events.jsonl.2"));
        assert!(current > 0 && one == 4 && two == 4, "{current} {one} {two}");
        assert!(!dir.path().join("events.jsonl.3").exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
        // Every line is one complete JSON object.
        for l in std::fs::read_to_string(&path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["event"], "decision");
        }
        // Reopening continues the same file.
        drop(log);
        let mut log = JsonlLog::open(&path, 4096, 2).unwrap();
        log.record(&Event::now(EventKind::Stop)).unwrap();
        assert_eq!(lines(&path), current + 1);
    }

    #[test]
    fn log_in_a_missing_folder_is_an_error() {
        assert!(JsonlLog::open(Path::new("/nonexistent-facegate/events.jsonl"), 4096, 1).is_err());
    }
}
