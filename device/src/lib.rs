//! The door unit (`facegate-door`): frames from a camera or a replay, the shared face pipeline
//! and decision rules, a fail-secure lock and an append-only event log.
//!
//! Every seam is a trait with a real and a fake implementation: [`source::FrameSource`],
//! [`door::FaceEmbedder`], [`lock::Lock`], [`events::EventSink`], [`door::ClaimInput`],
//! [`challenge::Coin`], [`challenge::ChallengeSignal`]. Locks run
//! behind [`supervisor::LockSupervisor`], which owns the unlock deadline.
//!
//! The fakes (`LabelEmbedder`, `ScriptedClaims`, `FakeLock`, `ScriptedSource`, `MemorySink`,
//! `ScriptedCoin`, `RecordingSignal`)
//! exist only in this crate's own tests and with feature `testing`, which the `facegate-door`
//! binary never enables; this crate's integration tests and the `soak` example get it through a
//! dev-dependency on the crate itself.

pub mod ahead;
pub mod challenge;
pub mod config;
pub mod door;
pub mod events;
pub mod health;
pub mod lock;
pub mod pull;
pub mod store;
pub mod supervisor;

pub use config::{ConfigError, DoorConfig};
pub use door::{Door, DoorSettings, RunSummary};
/// Frame sources (the `facegate-frames` crate, shared with front-desk camera enrolment).
pub use facegate_frames as source;

/// A byte count from [`facegate_shared::rss_bytes`] for a log line (`12.3 MB`, or `?`).
fn mb(b: Option<u64>) -> String {
    b.map_or("?".into(), |b| format!("{:.1} MB", b as f64 / 1e6))
}
