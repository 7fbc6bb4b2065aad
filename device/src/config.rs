//! `door.toml`: parsed once into typed settings. Unknown keys are rejected, every setting has a
//! documented default, and values are checked before the door starts.
//!
//! ```toml
//! [model]
//! encoder = "models/face_recognition_sface_2021dec.onnx"  # ONNX + NAME.card.json; default SFace
//! detector = "models/face_detection_yunet_2023mar.onnx"
//! min_face_px = 40                            # 8 to 4096: faces narrower than this are ignored
//! canvas = [640, 480]      # detector input, width and height: multiples of 32, 32 to 2048.
//!                          # [320, 256] detects in about a third of the time and finds faces from
//!                          # about 55 px wide in a 640x480 frame (BENCHMARKS.md); faces come out
//!                          # slightly differently aligned, so recheck a gallery's decisions with it
//! threads = 1              # 1 to 16: frames embedded in parallel, decided in order (a Pi 4: 4);
//!                          # also the threads of the passive liveness test's pairs (same verdicts)
//! roi_refresh = 0          # 0 to 30: 0 detects on the whole canvas every frame; N >= 2 detects in a
//!                          # window of the canvas around the last face and on the whole canvas at least
//!                          # every N frames and whenever the window loses the face (liveness off;
//!                          # with threads = T each thread follows every T-th frame)
//!
//! [gallery]
//! inbox = "/var/lib/facegate/inbox/gallery.fgg"  # where signed galleries are dropped (door reads only)
//! state_dir = "/var/lib/facegate/state"          # installed copy + replay guard; door's user only
//! trusted_keys = ["/etc/facegate/facegate.pub"]  # 1 to 16 public key files
//! reload_interval_ms = 2000                      # 100 ms to 1 hour: how often the inbox is checked
//! max_bytes = 67108864                           # 4 KiB to 1 GiB: larger gallery files are refused unread
//! # url = "https://gym.example/doors/gallery.fgg" # pull signed galleries (http:// or https://) into the inbox
//! fetch_interval_ms = 30000                      # 1 s to 1 hour between fetches (conditional GET)
//! fetch_timeout_ms = 20000                       # 500 ms to 10 min for one fetch, connection to last byte
//! # ca_file = "/etc/facegate/ca.pem"             # https: trust only this CA (default: the web PKI roots)
//!
//! [source]
//! uri = "camera:0"         # camera:INDEX | camera:NAME | dir:PATH | image:PATH | pipe:COMMAND ARGS... (MJPEG on stdout)
//! width = 640              # 16 to 8192
//! height = 480             # 16 to 8192
//! fps = 15                 # 0.1 to 240: camera rate, and the replay rate of dir:/image: sources
//! pace = true              # replay in real time (false: as fast as frames are processed)
//! repeat = 1               # 1 to 100000: image: sources, how many frames to produce
//!
//! [decision]
//! mode = "identify"        # identify (1:N) | claim (id first, then 1:1)
//! consecutive_frames = 3   # 1 to 30: frames that must agree before a grant or a logged denial
//! face_gap_ms = 300        # 0 to 500: frames without a face within this of the last face
//!                          # (a detector miss, a head turned far) do not end the appearance
//!                          # (the liveness test starts again after them; after a challenge any
//!                          # face-less frame ends it); 0: every face-less frame ends it
//! cooldown_ms = 5000       # 0 to 1 hour: no second grant of the same member within this
//! ambiguity_margin = 0.05  # 0 to 1 (distance units)
//! # threshold = 0.7        # default: the gallery's signed threshold; may only be lower (stricter)
//! claim_input = "stdin"    # claim mode: "stdin" or a path (FIFO, tty of a keyboard-wedge scanner)
//! claim_timeout_ms = 10000 # 100 ms to 10 minutes
//!
//! [lock]
//! kind = "dry-run"         # dry-run | gpio | command
//! unlock_ms = 3000         # 100 to 60000: how long the lock stays open (relocked by a timer)
//! gpio_chip = "/dev/gpiochip0"
//! gpio_line = 17           # 0 to 1023
//! active_low = false
//! command = ["/usr/local/bin/door-relay"]   # called as CMD... unlock MS / CMD... lock
//! command_timeout_ms = 2000                 # 100 to 10000
//!
//! [liveness]
//! mode = "off"             # off | passive (experimental): a grant also needs a 3-D face (head turn)
//!                          # | challenge: the door asks for a head turn to a random side first
//! threshold = 0.005        # median nose residual, in eye distances, that counts as 3-D; followed
//!                          # landmarks: 0.004 to 1, default 0.005; detector: 0.02 to 1, default 0.124
//! min_iod_px = 30          # 8 to 4096: faces with eyes closer than this are not used
//! min_change = 0.03        # 0 to 1: frame pairs whose landmarks moved less are not used
//! min_pairs = 2            # 1 to 100: frame pairs needed
//! landmarks = "followed"   # followed: each frame's landmarks followed into the others by
//!                          # texture | detector: each frame's own (noisy; the rule before)
//! min_ncc = 0.5            # 0.5 to 0.99: followed: a frame pair counts only when each landmark
//!                          # followed from one frame into the other matches at least this well
//! ring_deny = 25           # 0 to 40: followed: deny the appearance (latched, "liveness_denied")
//!                          # when this many of the 40 points around the face move with it
//!                          # between two frames (a hand-held photo or screen); 0 = cue off;
//!                          # a live head moves up to 27 with it (hair, ears; a plain wall
//!                          # behind it gives the other points nothing to test)
//! border_deny = 2          # 0 to 3: followed: deny the appearance (latched, "liveness_denied")
//!                          # when this many of the straight edges found beside and above the
//!                          # face (a print's or a phone's border) follow the face's tilt
//!                          # between two frames; 0 = cue off; higher is laxer. A yaw tests
//!                          # only the side edges, a pitch only the top one, so at 2 a print
//!                          # only pitched is left to the ring and the nose test. Both cues
//!                          # are part of the passive test: off with challenge_passive = false
//! timeout_ms = 6000        # 500 to 60000: then the appearance is denied, "liveness_unconfirmed"
//! challenge_command = ["/usr/local/bin/door-arrow"]  # challenge: run as CMD... left|right (the
//!                          # member's own side) to show the turn: an LED arrow, a buzzer, a display
//! challenge_turn_deg = 15  # 5 to 60: yaw change (degrees) that counts as the asked turn; the same
//!                          # change the other way denies the appearance ("liveness_challenge_failed")
//! challenge_passive = true # challenge: also require the passive 3-D test over the same frames
//! challenge_max_failures = 3     # 1 to 10: failed challenges of one member within the lockout
//! challenge_lockout_ms = 600000  # 1 min to 24 h: ... before that member gets no new challenge
//!                          # ("liveness_locked") until the oldest failure is this old (a
//!                          # recording that guesses the side wins half its tries; this bounds
//!                          # them). A challenge counts as failed from when it is given until it is
//!                          # passed: turning the other way, not turning, or leaving all count; a
//!                          # failing challenge command or the nose test refusing do not (the
//!                          # ring and border deny cues do)
//!
//! [log]
//! path = "/var/log/facegate/events.jsonl"
//! max_bytes = 10485760     # 4 KiB to 1 GiB: rotate when the file would grow beyond this
//! keep = 5                 # 0 to 1000 rotated files kept: events.jsonl.1 .. .5
//! store_faces = false      # save the deciding frame beside the log (off: no images stored)
//!
//! [metrics]                # optional: health in the Prometheus text format, for people and monitoring
//! path = "/run/facegate/door.prom"  # rewritten atomically; `facegate-door status` and node_exporter read it
//! interval_ms = 10000      # 500 ms to 1 hour
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, with the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    /// A value is out of its allowed range.
    #[error("config: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, problem: problem.into() }
}

pub use facegate_frames::{SourceSettings, SourceUri};

/// 1:N against everyone, or a presented id checked 1:1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// 1:N identification (small galleries).
    Identify,
    /// Claim-then-verify (large galleries).
    Claim,
}

/// Which lock driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockKind {
    /// Log only; nothing is actuated.
    DryRun,
    /// A Linux GPIO character-device line driving the relay.
    Gpio,
    /// An external command.
    Command,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    model: RawModel,
    gallery: RawGallery,
    #[serde(default)]
    source: RawSource,
    #[serde(default)]
    decision: RawDecision,
    #[serde(default)]
    lock: RawLock,
    #[serde(default)]
    liveness: RawLiveness,
    log: RawLog,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    path: PathBuf,
    #[serde(default = "default_metrics_ms")]
    interval_ms: u64,
}

fn default_metrics_ms() -> u64 {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLiveness {
    mode: LivenessMode,
    threshold: Option<f32>,
    min_iod_px: f32,
    min_change: f32,
    min_pairs: u32,
    min_ncc: f32,
    ring_deny: u32,
    border_deny: u32,
    landmarks: LandmarksKind,
    timeout_ms: u64,
    challenge_command: Vec<String>,
    challenge_turn_deg: f32,
    challenge_passive: bool,
    challenge_max_failures: u32,
    challenge_lockout_ms: u64,
}

impl Default for RawLiveness {
    fn default() -> Self {
        // the threshold's default depends on the landmarks (`PASSIVE_THRESHOLD_*`)
        Self {
            mode: LivenessMode::Off,
            threshold: None,
            min_iod_px: 30.0,
            min_change: 0.03,
            min_pairs: 2,
            min_ncc: MIN_NCC_DEFAULT,
            ring_deny: u32::from(facegate_face::ring::RING_DENY_DEFAULT),
            border_deny: u32::from(facegate_face::border::BORDER_DENY_DEFAULT),
            landmarks: LandmarksKind::Followed,
            timeout_ms: 6000,
            challenge_command: Vec::new(),
            // frozen before `facegate pad-eval` measured anything: well above the apparent
            // turn of a photo turned in the hand (1–2° on the model head, perspective only)
            challenge_turn_deg: 15.0,
            challenge_passive: true,
            // a recording that guesses the side wins half its tries: 3 tries per 10 minutes
            challenge_max_failures: 3,
            challenge_lockout_ms: 600_000,
        }
    }
}

/// `liveness.landmarks`: which landmarks the passive test measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum LandmarksKind {
    Followed,
    Detector,
}

/// Whether a grant also needs the passive 3-D test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LivenessMode {
    /// Today's behaviour: identity only.
    Off,
    /// The frames of the appearance must show a 3-D face (the nose off the plane of the eyes
    /// and mouth: a head turn); otherwise the appearance is denied when it times out.
    Passive,
    /// Once the face is recognised the door asks (through `challenge_command`) for a head turn
    /// to a side drawn at random, and grants only when the landmarks show that turn (and, with
    /// `challenge_passive`, a 3-D face); a turn the other way denies the appearance.
    Challenge,
}

/// Liveness settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LivenessSettings {
    /// Off, passive or challenge.
    pub mode: LivenessMode,
    /// The passive check's thresholds.
    pub check: facegate_face::liveness::PassiveCheck,
    /// How long an appearance may stay unconfirmed (passive: from its first frame; challenge:
    /// from the challenge) before it is denied.
    pub timeout: Duration,
    /// The challenge's thresholds.
    pub challenge: facegate_face::liveness::ChallengeCheck,
    /// The command that shows the asked turn (`challenge` mode).
    pub challenge_command: Vec<String>,
    /// Whether `challenge` mode also requires the passive 3-D test.
    pub challenge_passive: bool,
    /// Retry limit: failed challenges of one member within `challenge_lockout` before that
    /// member gets no new challenge.
    pub challenge_max_failures: u32,
    pub challenge_lockout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawModel {
    encoder: PathBuf,
    detector: PathBuf,
    min_face_px: f32,
    canvas: Vec<u32>,
    threads: u32,
    roi_refresh: u32,
}

impl Default for RawModel {
    fn default() -> Self {
        Self {
            // SFace: the pretrained encoder that works on real colour photos, with its calibrated
            // threshold. The ORL-trained encoder of `make demo` is chosen explicitly.
            encoder: "models/face_recognition_sface_2021dec.onnx".into(),
            detector: "models/face_detection_yunet_2023mar.onnx".into(),
            min_face_px: 40.0,
            canvas: vec![640, 480],
            threads: 1,
            roi_refresh: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGallery {
    inbox: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    trusted_keys: Vec<PathBuf>,
    #[serde(default = "default_reload_ms")]
    reload_interval_ms: u64,
    #[serde(default = "default_gallery_max_bytes")]
    max_bytes: u64,
    /// Pull signed galleries from this URL into the inbox.
    url: Option<String>,
    #[serde(default = "default_fetch_ms")]
    fetch_interval_ms: u64,
    #[serde(default = "default_fetch_timeout_ms")]
    fetch_timeout_ms: u64,
    ca_file: Option<PathBuf>,
    /// Replaced by `inbox` + `state_dir`: named in a clear error.
    path: Option<PathBuf>,
    /// Replaced by `state_dir`: named in a clear error.
    state: Option<PathBuf>,
}

fn default_reload_ms() -> u64 {
    2000
}
fn default_fetch_ms() -> u64 {
    30_000
}
fn default_fetch_timeout_ms() -> u64 {
    20_000
}
/// 64 MiB: about 120,000 members with one 128-d photo each; a larger file is refused before it
/// is read (a Pi-class board must not run out of memory on a dropped file).
fn default_gallery_max_bytes() -> u64 {
    64 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSource {
    uri: String,
    width: u32,
    height: u32,
    fps: f32,
    pace: bool,
    repeat: u32,
}

impl Default for RawSource {
    fn default() -> Self {
        Self { uri: "camera:0".into(), width: 640, height: 480, fps: 15.0, pace: true, repeat: 1 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDecision {
    mode: Mode,
    consecutive_frames: u32,
    face_gap_ms: u64,
    cooldown_ms: u64,
    ambiguity_margin: f32,
    threshold: Option<f32>,
    claim_input: String,
    claim_timeout_ms: u64,
}

impl Default for RawDecision {
    fn default() -> Self {
        Self {
            mode: Mode::Identify,
            consecutive_frames: 3,
            face_gap_ms: 300,
            cooldown_ms: 5000,
            ambiguity_margin: facegate_shared::DEFAULT_AMBIGUITY_MARGIN,
            threshold: None,
            claim_input: "stdin".into(),
            claim_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLock {
    kind: LockKind,
    unlock_ms: u64,
    gpio_chip: PathBuf,
    gpio_line: u32,
    active_low: bool,
    command: Vec<String>,
    command_timeout_ms: u64,
}

impl Default for RawLock {
    fn default() -> Self {
        Self {
            kind: LockKind::DryRun,
            unlock_ms: 3000,
            gpio_chip: "/dev/gpiochip0".into(),
            gpio_line: 17,
            active_low: false,
            command: Vec::new(),
            command_timeout_ms: 2000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    path: PathBuf,
    #[serde(default = "default_max_bytes")]
    max_bytes: u64,
    #[serde(default = "default_keep")]
    keep: u32,
    #[serde(default)]
    store_faces: bool,
}

fn default_max_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_keep() -> u32 {
    5
}

/// Model settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// Encoder ONNX (card beside it).
    pub encoder: PathBuf,
    /// YuNet ONNX.
    pub detector: PathBuf,
    /// Smallest face width used, in source pixels.
    pub min_face_px: f32,
    /// The detector's input canvas, width × height (multiples of 32).
    pub canvas: (u32, u32),
    /// Frames embedded in parallel (decided in order); also the threads measuring the passive
    /// liveness test's frame pairs.
    pub threads: usize,
    /// Window detection: the whole canvas at least every this many frames (0: every frame).
    pub roi_refresh: u32,
}

/// Gallery settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GallerySettings {
    /// Inbox file and state directory.
    pub paths: crate::store::StorePaths,
    /// Public keys whose signatures are accepted.
    pub trusted_keys: Vec<PathBuf>,
    /// How often the inbox is checked for a new version.
    pub reload_interval: Duration,
    /// Gallery files larger than this are refused before reading.
    pub max_bytes: u64,
    /// Pulling from `gallery.url` (off without it).
    pub pull: Option<crate::pull::PullSettings>,
}

/// Where and how often the metrics file is written.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// The file (Prometheus text format).
    pub path: PathBuf,
    /// Rewrite interval.
    pub interval: Duration,
}

/// Decision settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionSettings {
    /// Identify or claim.
    pub mode: Mode,
    /// Agreeing frames before a decision.
    pub consecutive_frames: u32,
    /// How long after an appearance's last face a face-less frame ends it.
    pub face_gap: Duration,
    /// Quiet period after a decision for the same member or reason.
    pub cooldown: Duration,
    /// Ambiguity margin of the 1:N rule (checked by the shared policy's one range).
    pub ambiguity_margin: f32,
    /// A stricter threshold than the gallery's signed one; `None` uses the gallery's. A looser
    /// one is refused when the gallery is opened (the config may only tighten).
    pub threshold: Option<facegate_shared::Threshold>,
    /// Where claimed ids are read from: `None` = stdin.
    pub claim_input: Option<PathBuf>,
    /// How long a claim waits for a matching face.
    pub claim_timeout: Duration,
}

/// Lock settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LockSettings {
    /// Driver.
    pub kind: LockKind,
    /// How long the lock stays open after a grant.
    pub unlock: Duration,
    /// GPIO chip device.
    pub gpio_chip: PathBuf,
    /// GPIO line offset.
    pub gpio_line: u32,
    /// The relay is energised by a low level.
    pub active_low: bool,
    /// External command and leading arguments.
    pub command: Vec<String>,
    /// The command must finish within this.
    pub command_timeout: Duration,
}

/// Event log settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// JSON Lines file.
    pub path: PathBuf,
    /// Rotate beyond this size.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// Save deciding frames next to the log.
    pub store_faces: bool,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DoorConfig {
    /// Model.
    pub model: ModelSettings,
    /// Gallery.
    pub gallery: GallerySettings,
    /// Frame source.
    pub source: SourceSettings,
    /// Decision policy.
    pub decision: DecisionSettings,
    /// Lock.
    pub lock: LockSettings,
    /// Presentation-attack check.
    pub liveness: LivenessSettings,
    /// Event log.
    pub log: LogSettings,
    /// Metrics file (off without `[metrics]`).
    pub metrics: Option<MetricsSettings>,
}

/// Largest config file read (a real one is about 1 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// `liveness.threshold`'s default with `landmarks = "followed"`: `facegate pad-eval` (40 ORL
/// people, 10 print attacks of 8 frames each, seed 7, `--min-ncc 0.5`): the largest door score
/// of the 200 tuning attacks × 1.25.
pub const PASSIVE_THRESHOLD_FOLLOWED: f32 = 0.0050;
/// … with `landmarks = "detector"`: the same evaluation on each frame's detector landmarks.
pub const PASSIVE_THRESHOLD_DETECTOR: f32 = 0.124;

/// `liveness.min_ncc`'s default: how well every followed landmark of a frame pair must match
/// for the pair to count (`facegate pad-eval`'s `--min-ncc`, chosen on its tuning half).
pub const MIN_NCC_DEFAULT: f32 = 0.5;

impl DoorConfig {
    /// Reads and validates `path`. Relative paths inside are relative to the working directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let io = |source| ConfigError::Io { path: path.display().to_string(), source };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::Parse {
                path: path.display().to_string(),
                message: format!("{len} bytes is too large for a config file"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.display().to_string(), message },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<text>".into(),
            message: e.message().to_owned() + &span(text, &e),
        })?;
        Self::validate(raw)
    }

    fn validate(r: RawConfig) -> Result<Self, ConfigError> {
        let m = &r.model;
        within("model.min_face_px", m.min_face_px, 8.0, 4096.0, "pixels")?;
        within("model.threads", m.threads, 1, 16, "threads")?;
        // at most 30: a second, larger face elsewhere in the frame is seen within 2 s at 15 frames/s
        within("model.roi_refresh", m.roi_refresh, 0, 30, "frames")?;
        let canvas = match m.canvas[..] {
            [w, h] if [w, h].iter().all(|s| (32..=2048).contains(s) && s % 32 == 0) => (w, h),
            _ => {
                return Err(invalid(
                    "model.canvas",
                    format!("{:?} must be [WIDTH, HEIGHT], each a multiple of 32 from 32 to 2048", m.canvas),
                ))
            }
        };
        let g = &r.gallery;
        if g.path.is_some() || g.state.is_some() {
            return Err(invalid(
                if g.path.is_some() { "gallery.path" } else { "gallery.state" },
                "was replaced by `gallery.inbox` (where signed galleries are dropped) and `gallery.state_dir` \
                 (the door's own directory for the installed copy and the replay guard): see device/deploy/README.md",
            ));
        }
        within("gallery.fetch_interval_ms", g.fetch_interval_ms, 1000, 3_600_000, "ms")?;
        within("gallery.fetch_timeout_ms", g.fetch_timeout_ms, 500, 600_000, "ms")?;
        let pull = match &g.url {
            None => {
                if g.ca_file.is_some() {
                    return Err(invalid("gallery.ca_file", "is only used with gallery.url"));
                }
                None
            }
            Some(url) => {
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("https://") || lower.starts_with("http://")) || url.len() > 2048 {
                    return Err(invalid("gallery.url", "must be an http:// or https:// URL (at most 2048 characters)"));
                }
                if g.ca_file.is_some() && !lower.starts_with("https://") {
                    return Err(invalid("gallery.ca_file", "pins the CA of an https:// URL; gallery.url is http://"));
                }
                Some(crate::pull::PullSettings {
                    url: url.clone(),
                    interval: Duration::from_millis(g.fetch_interval_ms),
                    timeout: Duration::from_millis(g.fetch_timeout_ms),
                    max_bytes: g.max_bytes,
                    ca_file: g.ca_file.clone(),
                })
            }
        };
        let inbox = g.inbox.clone().ok_or_else(|| invalid("gallery.inbox", "is required"))?;
        let state_dir = g.state_dir.clone().ok_or_else(|| invalid("gallery.state_dir", "is required"))?;
        if inbox.file_name().is_none() {
            return Err(invalid("gallery.inbox", "must name a file"));
        }
        let inbox_dir = match inbox.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let (inbox_real, state_real) = (real_path(&inbox_dir), real_path(&state_dir));
        if same_dir(&inbox_dir, &state_dir)
            || inbox_real.starts_with(&state_real)
            || state_real.starts_with(&inbox_real)
        {
            return Err(invalid(
                "gallery.state_dir",
                format!(
                    "{} must be apart from the inbox {} (neither inside the other): whoever drops galleries \
                     must not be able to touch the replay guard",
                    state_dir.display(),
                    inbox.display()
                ),
            ));
        }
        if !(1..=16).contains(&g.trusted_keys.len()) {
            return Err(invalid("gallery.trusted_keys", "must name between 1 and 16 public key files"));
        }
        within("gallery.reload_interval_ms", g.reload_interval_ms, 100, 3_600_000, "ms")?;
        within("gallery.max_bytes", g.max_bytes, 4096, 1 << 30, "bytes")?;
        let uri: SourceUri =
            r.source.uri.parse().map_err(|e: facegate_frames::BadSourceUri| invalid("source.uri", e.to_string()))?;
        let s = &r.source;
        within("source.width", s.width, 16, 8192, "pixels")?;
        within("source.height", s.height, 16, 8192, "pixels")?;
        within("source.fps", s.fps, 0.1, 240.0, "frames per second")?;
        within("source.repeat", s.repeat, 1, 100_000, "frames")?;
        let d = &r.decision;
        within("decision.consecutive_frames", d.consecutive_frames, 1, 30, "frames")?;
        within("decision.cooldown_ms", d.cooldown_ms, 0, 3_600_000, "ms")?;
        // longer would let an appearance's liveness evidence outlast a swap of what is shown
        within("decision.face_gap_ms", d.face_gap_ms, 0, 500, "ms")?;
        facegate_shared::check_ambiguity_margin(d.ambiguity_margin)
            .map_err(|e| invalid("decision.ambiguity_margin", e.to_string()))?;
        let threshold = d
            .threshold
            .map(facegate_shared::Threshold::new)
            .transpose()
            .map_err(|e| invalid("decision.threshold", e.to_string()))?;
        within("decision.claim_timeout_ms", d.claim_timeout_ms, 100, 600_000, "ms")?;
        let l = &r.lock;
        within("lock.unlock_ms", l.unlock_ms, 100, 60_000, "ms")?;
        within("lock.gpio_line", l.gpio_line, 0, 1023, "")?;
        if l.kind == LockKind::Command && l.command.is_empty() {
            return Err(invalid("lock.command", "is required when lock.kind = \"command\""));
        }
        within("lock.command_timeout_ms", l.command_timeout_ms, 100, 10_000, "ms")?;
        within("log.max_bytes", r.log.max_bytes, 4096, 1 << 30, "bytes")?;
        let lv = &r.liveness;
        // the lowest thresholds allowed sit at the largest print-attack scores measured
        let (passive_threshold, lowest) = match lv.landmarks {
            LandmarksKind::Followed => (lv.threshold.unwrap_or(PASSIVE_THRESHOLD_FOLLOWED), 0.004),
            LandmarksKind::Detector => (lv.threshold.unwrap_or(PASSIVE_THRESHOLD_DETECTOR), 0.02),
        };
        within("liveness.threshold", passive_threshold, lowest, 1.0, "eye distances")?;
        within("liveness.min_iod_px", lv.min_iod_px, 8.0, 4096.0, "pixels")?;
        within("liveness.min_change", lv.min_change, 0.0, 1.0, "eye distances")?;
        within("liveness.min_pairs", lv.min_pairs, 1, 100, "pairs")?;
        within("liveness.min_ncc", lv.min_ncc, 0.5, 0.99, "(normalised cross-correlation)")?;
        within("liveness.ring_deny", lv.ring_deny, 0, facegate_face::ring::RING.len() as u32, "ring points")?;
        within("liveness.border_deny", lv.border_deny, 0, 3, "border edges")?;
        within("liveness.timeout_ms", lv.timeout_ms, 500, 60_000, "ms")?;
        within("liveness.challenge_turn_deg", lv.challenge_turn_deg, 5.0, 60.0, "degrees")?;
        within("liveness.challenge_max_failures", lv.challenge_max_failures, 1, 10, "failures")?;
        within("liveness.challenge_lockout_ms", lv.challenge_lockout_ms, 60_000, 86_400_000, "ms")?;
        if lv.mode != LivenessMode::Off && canvas != (640, 480) {
            return Err(invalid(
                "liveness.mode",
                format!(
                    "liveness was calibrated with the detector on the 640x480 canvas; model.canvas is {canvas:?} (landmarks from a smaller canvas are coarser): use [640, 480]"
                ),
            ));
        }
        if lv.mode != LivenessMode::Off && r.model.roi_refresh > 1 {
            return Err(invalid(
                "model.roi_refresh",
                "liveness was calibrated with detection on the whole canvas; windows move the landmarks by a few pixels: use roi_refresh = 0 with liveness on".to_owned(),
            ));
        }
        if lv.mode == LivenessMode::Challenge && lv.challenge_command.first().is_none_or(|c| c.is_empty()) {
            return Err(invalid(
                "liveness.challenge_command",
                "is required when liveness.mode = \"challenge\": the member must be shown which way to turn",
            ));
        }
        let liveness = LivenessSettings {
            mode: lv.mode,
            check: facegate_face::liveness::PassiveCheck {
                min_iod_px: lv.min_iod_px,
                min_change: lv.min_change,
                threshold: passive_threshold,
                min_pairs: lv.min_pairs as usize,
                min_ncc: lv.min_ncc,
                ring_deny: lv.ring_deny as u8,
                border_deny: lv.border_deny as u8,
                landmarks: match lv.landmarks {
                    LandmarksKind::Followed => facegate_face::liveness::Landmarks::Followed,
                    LandmarksKind::Detector => facegate_face::liveness::Landmarks::Detector,
                },
            },
            timeout: Duration::from_millis(lv.timeout_ms),
            challenge: facegate_face::liveness::ChallengeCheck {
                min_turn_deg: lv.challenge_turn_deg,
                min_iod_px: lv.min_iod_px,
                confirm_frames: 2,
            },
            challenge_command: lv.challenge_command.clone(),
            challenge_passive: lv.challenge_passive,
            challenge_max_failures: lv.challenge_max_failures,
            challenge_lockout: Duration::from_millis(lv.challenge_lockout_ms),
        };
        within("log.keep", r.log.keep, 0, 1000, "files")?;
        let metrics = match r.metrics {
            None => None,
            Some(m) => {
                within("metrics.interval_ms", m.interval_ms, 500, 3_600_000, "ms")?;
                Some(MetricsSettings { path: m.path, interval: Duration::from_millis(m.interval_ms) })
            }
        };
        Ok(DoorConfig {
            model: ModelSettings {
                encoder: r.model.encoder,
                detector: r.model.detector,
                min_face_px: r.model.min_face_px,
                canvas,
                threads: r.model.threads as usize,
                roi_refresh: r.model.roi_refresh,
            },
            gallery: GallerySettings {
                paths: crate::store::StorePaths { inbox, state_dir },
                trusted_keys: r.gallery.trusted_keys,
                reload_interval: Duration::from_millis(r.gallery.reload_interval_ms),
                max_bytes: r.gallery.max_bytes,
                pull,
            },
            source: SourceSettings {
                uri,
                width: r.source.width,
                height: r.source.height,
                fps: r.source.fps,
                pace: r.source.pace,
                repeat: r.source.repeat,
            },
            decision: DecisionSettings {
                mode: d.mode,
                consecutive_frames: d.consecutive_frames,
                face_gap: Duration::from_millis(d.face_gap_ms),
                cooldown: Duration::from_millis(d.cooldown_ms),
                ambiguity_margin: d.ambiguity_margin,
                threshold,
                claim_input: (d.claim_input != "stdin").then(|| PathBuf::from(&d.claim_input)),
                claim_timeout: Duration::from_millis(d.claim_timeout_ms),
            },
            lock: LockSettings {
                kind: l.kind,
                unlock: Duration::from_millis(l.unlock_ms),
                gpio_chip: l.gpio_chip.clone(),
                gpio_line: l.gpio_line,
                active_low: l.active_low,
                command: l.command.clone(),
                command_timeout: Duration::from_millis(l.command_timeout_ms),
            },
            liveness,
            log: LogSettings {
                path: r.log.path,
                max_bytes: r.log.max_bytes,
                keep: r.log.keep,
                store_faces: r.log.store_faces,
            },
            metrics,
        })
    }
}

/// `value` must lie in `[lo, hi]` (and be a number): the one range check every setting uses.
fn within<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    value: T,
    lo: T,
    hi: T,
    unit: &str,
) -> Result<T, ConfigError> {
    // `!(lo <= v && v <= hi)` also refuses NaN.
    if !(lo <= value && value <= hi) {
        let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
        return Err(invalid(key, format!("is {value}; it must be between {lo} and {hi}{unit}")));
    }
    Ok(value)
}

/// The path with `.` and `..` resolved and symbolic links followed where it exists (as much of
/// it as exists), for comparing locations.
fn real_path(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() { p.to_owned() } else { std::env::current_dir().unwrap_or_default().join(p) };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    // Follow links on the longest existing prefix.
    let mut existing = out.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name().map(|n| n.to_owned()), existing.parent().map(Path::to_owned)) {
            (Some(n), Some(parent)) => {
                rest.push(n);
                existing = parent;
            }
            _ => break,
        }
    }
    let mut real = std::fs::canonicalize(&existing).unwrap_or(existing);
    real.extend(rest.iter().rev());
    real
}

/// Whether two directory paths name the same directory (by path, and by inode when both exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let norm = |p: &Path| p.components().collect::<PathBuf>();
    if norm(a) == norm(b) {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn span(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(s) => {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[gallery]\ninbox = \"inbox/g.fgg\"\nstate_dir = \"state\"\ntrusted_keys = [\"k.pub\"]\n\
                           [log]\npath = \"events.jsonl\"\n";

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = DoorConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.source.uri, SourceUri::CameraIndex(0));
        assert_eq!(c.decision.mode, Mode::Identify);
        assert_eq!(c.decision.consecutive_frames, 3);
        assert_eq!(c.decision.cooldown, Duration::from_secs(5));
        assert_eq!(c.decision.threshold, None);
        assert_eq!(c.lock.kind, LockKind::DryRun);
        assert_eq!(c.lock.unlock, Duration::from_secs(3));
        assert_eq!(c.gallery.paths.inbox, PathBuf::from("inbox/g.fgg"));
        assert_eq!(c.gallery.paths.installed(), PathBuf::from("state/gallery.fgg"));
        assert_eq!(c.gallery.paths.state(), PathBuf::from("state/install.state"));
        assert_eq!(c.log.max_bytes, 10 * 1024 * 1024);
        assert!(!c.log.store_faces);
        assert_eq!(c.model.min_face_px, 40.0);
        assert_eq!(c.model.canvas, (640, 480));
    }

    #[test]
    fn the_documented_example_parses() {
        let doc: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start().to_owned() + "\n")
            .collect();
        let c = DoorConfig::parse(&doc).unwrap();
        assert_eq!(c.gallery.reload_interval, Duration::from_secs(2));
        assert_eq!(c.lock.command, vec!["/usr/local/bin/door-relay".to_owned()]);
        assert_eq!(c.decision.claim_input, None);
        assert_eq!(c.log.keep, 5);
    }

    #[test]
    fn the_deploy_config_parses() {
        let c = DoorConfig::parse(include_str!("../deploy/door.toml")).unwrap();
        assert_eq!(c.gallery.paths.inbox, PathBuf::from("/var/lib/facegate/inbox/gallery.fgg"));
        assert_eq!(c.gallery.paths.state_dir, PathBuf::from("/var/lib/facegate/state"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = DoorConfig::parse(&format!("{MINIMAL}[lock]\nkind = \"gpio\"\nunlock_secs = 3\n")).unwrap_err();
        assert!(e.to_string().contains("unlock_secs"), "{e}");
        let e = DoorConfig::parse(&format!("{MINIMAL}[extra]\na = 1\n")).unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("[decision]\nconsecutive_frames = 0\n", "decision.consecutive_frames"),
            ("[decision]\nthreshold = 2.5\n", "decision.threshold"),
            ("[decision]\nambiguity_margin = 1.5\n", "decision.ambiguity_margin"),
            ("[source]\nuri = \"usb0\"\n", "source.uri"),
            ("[source]\nfps = 0\n", "source.fps"),
            ("[source]\nfps = 1e-30\n", "source.fps"),
            ("[source]\nrepeat = 4294967295\n", "source.repeat"),
            ("[lock]\nkind = \"command\"\n", "lock.command"),
            ("[lock]\nunlock_ms = 5\n", "lock.unlock_ms"),
            ("[lock]\ncommand_timeout_ms = 3600000\n", "lock.command_timeout_ms"),
            ("max_bytes = 1\n", "log.max_bytes"), // MINIMAL ends in [log]
            ("[model]\nmin_face_px = -1\n", "model.min_face_px"),
            ("[model]\ncanvas = [320, 240]\n", "model.canvas"),
            ("[model]\ncanvas = [0, 256]\n", "model.canvas"),
            ("[model]\ncanvas = [4096, 256]\n", "model.canvas"),
            ("[model]\ncanvas = [320]\n", "model.canvas"),
            ("[model]\nroi_refresh = 10\n[liveness]\nmode = \"passive\"\n", "model.roi_refresh"),
            ("[model]\ncanvas = [320, 256]\n[liveness]\nmode = \"passive\"\n", "liveness.mode"),
            ("[liveness]\nmode = \"challenge\"\n", "liveness.challenge_command"),
            ("[liveness]\nmode = \"challenge\"\nchallenge_command = [\"\"]\n", "liveness.challenge_command"),
            (
                "[model]\ncanvas = [320, 256]\n[liveness]\nmode = \"challenge\"\nchallenge_command = [\"a\"]\n",
                "liveness.mode",
            ),
        ] {
            let e = DoorConfig::parse(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert!(e.to_string().contains(key), "{extra}: {e}");
        }
        let e = DoorConfig::parse(
            "[gallery]\ninbox = \"i/g\"\nstate_dir = \"s\"\ntrusted_keys = []\n[log]\npath = \"l\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("gallery.trusted_keys"), "{e}");
        let e = DoorConfig::parse("[log]\npath = \"l\"\n").unwrap_err();
        assert!(e.to_string().contains("gallery"), "{e}");
    }

    #[test]
    fn the_replay_guard_cannot_share_the_drop_folder() {
        for (inbox, state) in [("/var/lib/f/g.fgg", "/var/lib/f"), ("/var/lib/f/g.fgg", "/var/lib/f/"), ("g.fgg", ".")]
        {
            let text = format!(
                "[gallery]\ninbox = {inbox:?}\nstate_dir = {state:?}\ntrusted_keys = [\"k\"]\n[log]\npath = \"l\"\n"
            );
            let e = DoorConfig::parse(&text).unwrap_err();
            assert!(e.to_string().contains("gallery.state_dir"), "{inbox} {state}: {e}");
        }
        let e = DoorConfig::parse(
            "[gallery]\ninbox = \"/s/in/g\"\nstate_dir = \"/s/in\"\ntrusted_keys = [\"k\"]\n[log]\npath = \"l\"\n",
        );
        assert!(e.is_err());
    }

    #[test]
    fn old_and_reserved_gallery_keys_say_what_to_do() {
        let e = DoorConfig::parse("[gallery]\npath = \"g.fgg\"\ntrusted_keys = [\"k\"]\n[log]\npath = \"l\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("gallery.inbox") && e.to_string().contains("state_dir"), "{e}");
        let e = DoorConfig::parse(&MINIMAL.replace("[log]", "url = \"ftp://x/g.fgg\"\n[log]")).unwrap_err();
        assert!(e.to_string().contains("gallery.url"), "{e}");
        let e = DoorConfig::parse(&MINIMAL.replace("[log]", "url = \"http://x/g.fgg\"\nca_file = \"ca.pem\"\n[log]"))
            .unwrap_err();
        assert!(e.to_string().contains("gallery.ca_file"), "{e}");
        let c = DoorConfig::parse(&MINIMAL.replace("[log]", "url = \"https://x/g.fgg\"\n[log]")).unwrap();
        let p = c.gallery.pull.unwrap();
        assert_eq!((p.url.as_str(), p.interval, p.max_bytes), ("https://x/g.fgg", Duration::from_secs(30), 64 << 20));
    }

    /// Every numeric setting with its documented range (inclusive).
    const NUMERIC: &[(&str, &str, f64, f64)] = &[
        ("model", "min_face_px", 8.0, 4096.0),
        ("model", "threads", 1.0, 16.0),
        ("model", "roi_refresh", 0.0, 30.0),
        ("gallery", "reload_interval_ms", 100.0, 3_600_000.0),
        ("gallery", "max_bytes", 4096.0, 1_073_741_824.0),
        ("gallery", "fetch_interval_ms", 1000.0, 3_600_000.0),
        ("gallery", "fetch_timeout_ms", 500.0, 600_000.0),
        ("source", "width", 16.0, 8192.0),
        ("source", "height", 16.0, 8192.0),
        ("source", "fps", 0.1, 240.0),
        ("source", "repeat", 1.0, 100_000.0),
        ("decision", "consecutive_frames", 1.0, 30.0),
        ("decision", "cooldown_ms", 0.0, 3_600_000.0),
        ("decision", "face_gap_ms", 0.0, 500.0),
        ("decision", "ambiguity_margin", 0.0, 1.0),
        ("decision", "threshold", 0.0, 2.0),
        ("decision", "claim_timeout_ms", 100.0, 600_000.0),
        ("lock", "unlock_ms", 100.0, 60_000.0),
        ("lock", "gpio_line", 0.0, 1023.0),
        ("lock", "command_timeout_ms", 100.0, 10_000.0),
        ("log", "max_bytes", 4096.0, 1_073_741_824.0),
        ("log", "keep", 0.0, 1000.0),
        ("liveness", "threshold", 0.004, 1.0),
        ("liveness", "min_iod_px", 8.0, 4096.0),
        ("liveness", "min_change", 0.0, 1.0),
        ("liveness", "min_pairs", 1.0, 100.0),
        ("liveness", "min_ncc", 0.5, 0.99),
        ("liveness", "ring_deny", 0.0, 40.0),
        ("liveness", "border_deny", 0.0, 3.0),
        ("liveness", "timeout_ms", 500.0, 60_000.0),
        ("liveness", "challenge_turn_deg", 5.0, 60.0),
        ("liveness", "challenge_max_failures", 1.0, 10.0),
        ("liveness", "challenge_lockout_ms", 60_000.0, 86_400_000.0),
    ];

    fn with_value(section: &str, key: &str, value: &str) -> String {
        let line = format!("{key} = {value}\n");
        match section {
            // fetch settings are read with a URL (checked with or without one)
            "gallery" if key.starts_with("fetch_") => {
                MINIMAL.replace("[log]", &format!("url = \"http://x/g.fgg\"\n{line}[log]"))
            }
            "gallery" => MINIMAL.replace("[log]", &format!("{line}[log]")),
            "log" => format!("{MINIMAL}{line}"),
            _ => format!("{MINIMAL}[{section}]\n{line}"),
        }
    }

    fn value_of(c: &DoorConfig, section: &str, key: &str) -> f64 {
        match (section, key) {
            (_, "min_face_px") => c.model.min_face_px.into(),
            (_, "threads") => c.model.threads as f64,
            (_, "roi_refresh") => c.model.roi_refresh.into(),
            (_, "reload_interval_ms") => c.gallery.reload_interval.as_millis() as f64,
            ("gallery", "max_bytes") => c.gallery.max_bytes as f64,
            (_, "fetch_interval_ms") => c.gallery.pull.as_ref().unwrap().interval.as_millis() as f64,
            (_, "fetch_timeout_ms") => c.gallery.pull.as_ref().unwrap().timeout.as_millis() as f64,
            (_, "width") => c.source.width.into(),
            (_, "height") => c.source.height.into(),
            (_, "fps") => c.source.fps.into(),
            (_, "repeat") => c.source.repeat.into(),
            (_, "consecutive_frames") => c.decision.consecutive_frames.into(),
            (_, "cooldown_ms") => c.decision.cooldown.as_millis() as f64,
            (_, "face_gap_ms") => c.decision.face_gap.as_millis() as f64,
            (_, "ambiguity_margin") => c.decision.ambiguity_margin.into(),
            ("decision", "threshold") => c.decision.threshold.map_or(f64::NAN, |t| t.get().into()),
            (_, "claim_timeout_ms") => c.decision.claim_timeout.as_millis() as f64,
            (_, "unlock_ms") => c.lock.unlock.as_millis() as f64,
            (_, "gpio_line") => c.lock.gpio_line.into(),
            (_, "command_timeout_ms") => c.lock.command_timeout.as_millis() as f64,
            ("log", "max_bytes") => c.log.max_bytes as f64,
            (_, "keep") => c.log.keep.into(),
            ("liveness", "threshold") => c.liveness.check.threshold.into(),
            (_, "min_iod_px") => c.liveness.check.min_iod_px.into(),
            (_, "min_change") => c.liveness.check.min_change.into(),
            (_, "min_pairs") => c.liveness.check.min_pairs as f64,
            (_, "min_ncc") => c.liveness.check.min_ncc.into(),
            (_, "ring_deny") => c.liveness.check.ring_deny.into(),
            (_, "border_deny") => c.liveness.check.border_deny.into(),
            (_, "timeout_ms") => c.liveness.timeout.as_millis() as f64,
            (_, "challenge_turn_deg") => c.liveness.challenge.min_turn_deg.into(),
            (_, "challenge_max_failures") => c.liveness.challenge_max_failures.into(),
            (_, "challenge_lockout_ms") => c.liveness.challenge_lockout.as_millis() as f64,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_passive_threshold_default_and_floor_follow_the_landmarks() {
        let followed = DoorConfig::parse(MINIMAL).unwrap();
        assert_eq!(followed.liveness.check.landmarks, facegate_face::liveness::Landmarks::Followed);
        assert_eq!(followed.liveness.check.threshold, PASSIVE_THRESHOLD_FOLLOWED);
        let detector = DoorConfig::parse(&format!("{MINIMAL}[liveness]\nlandmarks = \"detector\"\n")).unwrap();
        assert_eq!(detector.liveness.check.landmarks, facegate_face::liveness::Landmarks::Detector);
        assert_eq!(detector.liveness.check.threshold, PASSIVE_THRESHOLD_DETECTOR);
        // a followed-landmark threshold on detector landmarks would let every print in: refused
        let e = DoorConfig::parse(&format!("{MINIMAL}[liveness]\nlandmarks = \"detector\"\nthreshold = 0.005\n"))
            .unwrap_err();
        assert!(e.to_string().contains("liveness.threshold"), "{e}");
        assert!(DoorConfig::parse(&format!("{MINIMAL}[liveness]\nlandmarks = \"other\"\n")).is_err());
    }

    /// Settings written as TOML floats (the rest are integers).
    const FLOAT_KEYS: &[&str] =
        &["min_face_px", "fps", "ambiguity_margin", "threshold", "min_iod_px", "min_change", "min_ncc"];

    /// Each bound, just inside and just outside it: accepted exactly when inside the documented
    /// range, and refused naming the key otherwise.
    #[test]
    fn every_numeric_bound_is_where_it_is_documented() {
        for &(section, key, lo, hi) in NUMERIC {
            let float = FLOAT_KEYS.contains(&key);
            let step = if float { 1e-3 } else { 1.0 };
            // The decision threshold's lower end is open: (0, 2].
            let lo_ok = (section, key) != ("decision", "threshold");
            for (v, inside) in [(lo, lo_ok), (hi, true), (lo - step, false), (hi + step, false)] {
                let text = with_value(section, key, &if float { format!("{v:?}") } else { format!("{}", v as i64) });
                match DoorConfig::parse(&text) {
                    Ok(c) => {
                        assert!(inside, "{section}.{key} = {v} accepted outside [{lo}, {hi}]");
                        assert!((value_of(&c, section, key) - v).abs() <= 1e-3 * v.abs().max(1.0), "{key} = {v}");
                    }
                    Err(ConfigError::Invalid { key: k, .. }) => {
                        assert!(!inside, "{section}.{key} = {v} refused inside the range");
                        assert_eq!(k, format!("{section}.{key}"), "{v}");
                    }
                    // A negative number for an unsigned setting does not parse at all.
                    Err(ConfigError::Parse { .. }) => assert!(!inside && v < 0.0, "{section}.{key} = {v}"),
                    Err(e) => panic!("{section}.{key} = {v}: {e}"),
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
            let _ = DoorConfig::parse(&s);
        }
        #[test]
        fn mutated_config_never_panics(cut in 0usize..200, byte in 0u8..128) {
            let mut b = format!("{MINIMAL}[decision]\nmode = \"claim\"\n").into_bytes();
            let i = cut % b.len();
            b[i] = byte;
            if let Ok(s) = String::from_utf8(b) { let _ = DoorConfig::parse(&s); }
        }
        /// Absurd values for every numeric setting are config errors naming the key, never a
        /// panic; accepted values lie in the documented range and build door settings and a
        /// replay source without panicking.
        #[test]
        fn every_numeric_setting_is_bounded(which in 0..NUMERIC.len(), int in proptest::num::i64::ANY,
                                            float in proptest::num::f64::ANY, as_float in proptest::bool::ANY) {
            let (section, key, lo, hi) = NUMERIC[which];
            let text = if as_float {
                if !float.is_finite() { return Ok(()); } // TOML has inf/nan literals; tested below
                with_value(section, key, &format!("{float:e}"))
            } else {
                with_value(section, key, &int.to_string())
            };
            match DoorConfig::parse(&text) {
                Ok(c) => {
                    let v = value_of(&c, section, key);
                    proptest::prop_assert!(v >= lo && v <= hi, "{key} = {v} accepted outside [{lo}, {hi}]");
                    let d = crate::door::DoorSettings::from_config(&c);
                    proptest::prop_assert!(d.unlock >= Duration::from_millis(100));
                    let _ = Duration::from_secs_f32(1.0 / c.source.fps);
                }
                Err(ConfigError::Invalid { key: k, .. }) => proptest::prop_assert!(k.ends_with(key), "{k} vs {key}"),
                Err(ConfigError::Parse { .. }) => {} // wrong type (a float for an integer, a negative u64)
                Err(e) => proptest::prop_assert!(false, "{e}"),
            }
        }
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        for (section, key, _, _) in NUMERIC {
            for v in ["nan", "inf", "-inf"] {
                assert!(DoorConfig::parse(&with_value(section, key, v)).is_err(), "{key} = {v}");
            }
        }
    }
}
