//! The door unit (`facegate-door`): frames from a camera or a replay, the shared face pipeline
//! and decision rules, a fail-secure lock and an append-only event log.
//!
//! Every seam is a trait with a real and a fake implementation: [`source::FrameSource`],
//! [`door::FaceEmbedder`], [`lock::Lock`], [`events::EventSink`], [`door::ClaimInput`]. Locks run
//! behind [`supervisor::LockSupervisor`], which owns the unlock deadline.

pub mod config;
pub mod door;
pub mod events;
pub mod lock;
pub mod source;
pub mod store;
pub mod supervisor;

pub use config::{ConfigError, DoorConfig};
pub use door::{Door, DoorSettings, RunSummary};

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Current resident memory of this process in bytes (Linux `VmRSS`), if known.
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

fn status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mb(b: Option<u64>) -> String {
    b.map_or("?".into(), |b| format!("{:.1} MB", b as f64 / 1e6))
}
