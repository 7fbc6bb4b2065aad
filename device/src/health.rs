//! The door's health for people and monitoring: a Prometheus text file (`[metrics] path`),
//! rewritten atomically every `interval_ms` and at stop, for node_exporter's textfile collector
//! (the Raspberry Pi convention), and `facegate-door status`, which reads the same file.
//!
//! Counters count since the door started (Prometheus handles restarts through
//! `facegate_door_start_time_seconds`). Decisions and denials by reason are counted where they are
//! logged, so the file and the event log agree.

use crate::door::RunSummary;
use crate::pull::PullCounts;
use facegate_shared::prometheus::{self, Exposition, Kind, DEFAULT_BOUNDS_S};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the metrics file says beyond the run's counters.
#[derive(Debug, Clone, Default)]
pub struct DoorState {
    /// When the door started (Unix seconds).
    pub started: f64,
    /// Whether the frame source delivers.
    pub source_up: bool,
    /// Gallery in use.
    pub revision: u64,
    /// Its members.
    pub members: usize,
    /// When it was installed or loaded (Unix seconds).
    pub installed: f64,
    /// Last decision: Unix seconds, `granted`/`denied`, member.
    pub last_decision: Option<(f64, String, Option<String>)>,
    /// Set for the last write, when the door stops.
    pub stopped: bool,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The exposition text.
pub fn render(s: &RunSummary, d: &DoorState, pull: Option<&PullCounts>) -> String {
    let mut e = Exposition::new();
    e.gauge("facegate_door_start_time_seconds", "When the door started (Unix time).", d.started);
    e.gauge("facegate_door_metrics_time_seconds", "When this file was written (Unix time).", unix_now());
    e.gauge(
        "facegate_door_up",
        "1 while the door runs, 0 in the file written as it stops.",
        f64::from(u8::from(!d.stopped)),
    );
    e.counter("facegate_door_frames_total", "Frames read from the source.", s.frames);
    e.counter("facegate_door_faces_total", "Frames with a usable face.", s.faces);
    e.counter("facegate_door_bad_frames_total", "Frames that could not be decoded or processed.", s.bad_frames);
    e.family("facegate_door_decisions_total", Kind::Counter, "Logged decisions, by decision and denial reason.");
    e.sample("facegate_door_decisions_total", &[("decision", "granted"), ("reason", "")], s.grants_logged as f64);
    for (reason, n) in &s.denials {
        e.sample("facegate_door_decisions_total", &[("decision", "denied"), ("reason", reason)], *n as f64);
    }
    e.counter("facegate_door_lock_actuations_total", "Grants the lock carried out.", s.granted);
    e.counter(
        "facegate_door_lock_failures_total",
        "Lock actions that failed (the door stayed locked).",
        s.lock_failures,
    );
    e.counter("facegate_door_relocks_total", "Relocks at the end of an unlock period.", s.relocks);
    e.counter("facegate_door_source_outages_total", "Times the frame source went away.", s.source_outages);
    e.gauge(
        "facegate_door_source_up",
        "1 while the frame source delivers, 0 during an outage.",
        f64::from(u8::from(d.source_up)),
    );
    e.gauge("facegate_door_gallery_revision", "Signed revision of the gallery in use.", d.revision as f64);
    e.gauge("facegate_door_gallery_members", "Members in the gallery in use.", d.members as f64);
    e.gauge(
        "facegate_door_gallery_install_time_seconds",
        "When the gallery in use was installed or loaded (Unix time).",
        d.installed,
    );
    e.counter("facegate_door_gallery_installs_total", "Galleries installed while running.", s.gallery_reloads);
    e.counter(
        "facegate_door_gallery_rejections_total",
        "Gallery files refused by the install rules.",
        s.gallery_rejections,
    );
    if let Some(p) = pull {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        e.counter("facegate_door_gallery_fetches_total", "Requests to gallery.url.", get(&p.fetches));
        e.counter("facegate_door_gallery_fetch_not_modified_total", "304 answers (nothing new).", get(&p.not_modified));
        e.counter(
            "facegate_door_gallery_fetch_downloads_total",
            "New versions written into the inbox.",
            get(&p.downloads),
        );
        e.counter(
            "facegate_door_gallery_fetch_failures_total",
            "Failed fetches (unreachable, HTTP error, timeout, truncated).",
            get(&p.failures),
        );
        e.counter(
            "facegate_door_gallery_fetch_refused_total",
            "Complete downloads refused (size, signature, encoder).",
            get(&p.refused),
        );
        e.counter("facegate_door_gallery_fetch_bytes_total", "Body bytes received.", get(&p.bytes));
    }
    if let Some((t, _, _)) = &d.last_decision {
        e.gauge("facegate_door_last_decision_time_seconds", "When the last decision was logged (Unix time).", *t);
    }
    e.family(
        "facegate_door_frame_latency_seconds",
        Kind::Histogram,
        "Frame processing time (detect, align, encode, match) of frames with a face.",
    );
    e.histogram("facegate_door_frame_latency_seconds", &[], &s.latencies, &DEFAULT_BOUNDS_S);
    e.finish()
}

/// The metrics file and when it is next due.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    interval: Duration,
    last: Option<Instant>,
    failed: bool,
}

impl MetricsFile {
    /// A file written every `interval`.
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        Self { path, interval, last: None, failed: false }
    }

    /// Whether a write is due.
    pub fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= self.interval)
    }

    /// Writes `text` atomically. `Some(error)` the first time writing fails after a success (to be
    /// logged once); the door goes on deciding either way.
    pub fn write(&mut self, text: &str) -> Option<String> {
        self.last = Some(Instant::now());
        // Readable by node_exporter and `status` whatever the unit's umask (0077).
        let written = facegate_shared::gallery_file::write_atomic(&self.path, text.as_bytes()).and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o644))
        });
        match written {
            Ok(()) => {
                self.failed = false;
                None
            }
            Err(e) if !self.failed => {
                self.failed = true;
                Some(format!("metrics file {}: {e}", self.path.display()))
            }
            Err(_) => None,
        }
    }
}

/// `facegate-door status`: the facts of the metrics file, for a person.
pub fn status(path: &Path, interval: Duration) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("metrics file {}: {e}", path.display()))?;
    let m = prometheus::parse(&text).map_err(|e| format!("metrics file {}: {e}", path.display()))?;
    let v = |name: &str| prometheus::value_of(&m, name, &[]);
    let now = unix_now();
    let written =
        v("facegate_door_metrics_time_seconds").ok_or("metrics file without facegate_door_metrics_time_seconds")?;
    let age = now - written;
    let mut out = String::new();
    let mut line = |k: &str, val: String| out.push_str(&format!("{k:<14} {val}\n"));
    // A running door rewrites the file every interval; three missed writes means it is not running.
    let running = age <= 3.0 * interval.as_secs_f64() + 1.0;
    line(
        "door",
        if v("facegate_door_up") == Some(0.0) {
            format!("STOPPED {} ago", ago(age))
        } else if running {
            format!("running (metrics written {age:.0} s ago)")
        } else {
            format!("NOT RUNNING or stuck: metrics last written {} ago", ago(age))
        },
    );
    if let Some(start) = v("facegate_door_start_time_seconds") {
        line("uptime", ago(written - start));
    }
    let revision = v("facegate_door_gallery_revision").unwrap_or(f64::NAN);
    let members = v("facegate_door_gallery_members").unwrap_or(f64::NAN);
    let installed =
        v("facegate_door_gallery_install_time_seconds").map(|t| format!(", installed {} ago", ago(now - t)));
    line("gallery", format!("revision {revision}, {members} members{}", installed.unwrap_or_default()));
    line(
        "camera",
        match v("facegate_door_source_up") {
            Some(x) if x >= 1.0 => "up".to_owned(),
            Some(_) => "DOWN (door locked, retrying)".to_owned(),
            None => "unknown".to_owned(),
        },
    );
    let sum = |decision: &str| -> f64 {
        m.iter()
            .filter(|s| {
                s.name == "facegate_door_decisions_total"
                    && s.labels.iter().any(|(k, v)| k == "decision" && v == decision)
            })
            .map(|s| s.value)
            // an empty f64 sum is -0.0, printed "-0"
            .fold(0.0, |a, b| a + b)
    };
    line("decisions", format!("{} granted, {} denied since start", sum("granted"), sum("denied")));
    if let Some(t) = v("facegate_door_last_decision_time_seconds") {
        line("last decision", format!("{} ago", ago(now - t)));
    }
    if let Some(f) = v("facegate_door_gallery_fetches_total") {
        let failures = v("facegate_door_gallery_fetch_failures_total").unwrap_or(0.0);
        line("gallery.url", format!("{f} fetches, {failures} failed"));
    }
    let lock_failures = v("facegate_door_lock_failures_total").unwrap_or(0.0);
    line(
        "lock",
        format!("{} actuations, {lock_failures} failures", v("facegate_door_lock_actuations_total").unwrap_or(0.0)),
    );
    Ok(out)
}

/// `3 h 05 min`, `42 s`.
fn ago(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {:02} min", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_parses_and_status_reads_it_back() {
        let mut s = RunSummary { frames: 10, faces: 8, granted: 2, grants_logged: 2, ..Default::default() };
        s.denials.insert("unknown".into(), 3);
        s.denials.insert("liveness_unconfirmed".into(), 1);
        s.latencies.record(42.0);
        let d = DoorState {
            started: unix_now() - 100.0,
            source_up: true,
            revision: 7,
            members: 12,
            installed: unix_now() - 50.0,
            last_decision: Some((unix_now(), "granted".into(), Some("m1".into()))),
            stopped: false,
        };
        let text = render(&s, &d, None);
        let m = prometheus::parse(&text).unwrap();
        let denied = |r: &str| {
            prometheus::value_of(&m, "facegate_door_decisions_total", &[("decision", "denied"), ("reason", r)])
        };
        assert_eq!(denied("unknown"), Some(3.0));
        assert_eq!(denied("liveness_unconfirmed"), Some(1.0));
        assert_eq!(prometheus::value_of(&m, "facegate_door_gallery_revision", &[]), Some(7.0));
        assert_eq!(prometheus::value_of(&m, "facegate_door_frame_latency_seconds_count", &[]), Some(1.0));
        let dir = tempfile::tempdir().unwrap();
        let mut f = MetricsFile::new(dir.path().join("door.prom"), Duration::from_secs(10));
        assert!(f.due());
        assert_eq!(f.write(&text), None);
        assert!(!f.due());
        let st = status(&dir.path().join("door.prom"), Duration::from_secs(10)).unwrap();
        assert!(st.contains("running"), "{st}");
        assert!(st.contains("revision 7, 12 members"), "{st}");
        assert!(st.contains("2 granted, 4 denied"), "{st}");
        assert!(st.contains("camera         up"), "{st}");
        // the last write, as the door stops
        let text = render(&s, &DoorState { stopped: true, ..d }, None);
        assert_eq!(f.write(&text), None);
        let st = status(&dir.path().join("door.prom"), Duration::from_secs(10)).unwrap();
        assert!(st.starts_with("door           STOPPED"), "{st}");
    }

    #[test]
    fn a_stale_file_says_the_door_is_not_running() {
        let d = DoorState { started: unix_now() - 1000.0, ..Default::default() };
        let text = render(&RunSummary::default(), &d, None);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("door.prom");
        // Written 10 minutes ago.
        let old = text
            .lines()
            .map(|l| {
                if l.starts_with("facegate_door_metrics_time_seconds ") {
                    format!("facegate_door_metrics_time_seconds {}", unix_now() - 600.0)
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&p, old + "\n").unwrap();
        let st = status(&p, Duration::from_secs(10)).unwrap();
        assert!(st.contains("NOT RUNNING"), "{st}");
        assert!(st.contains("0 granted, 0 denied since start"), "no \"-0\": {st}");
    }
}
