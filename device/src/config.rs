//! `door.toml`: parsed once into typed settings. Unknown keys are rejected, every setting has a
//! documented default, and values are checked before the door starts.
//!
//! ```toml
//! [model]
//! encoder = "models/facegate-default.onnx"   # ONNX with NAME.card.json beside it
//! detector = "models/face_detection_yunet_2023mar.onnx"
//! min_face_px = 40                            # faces narrower than this are ignored
//!
//! [gallery]
//! path = "/var/lib/facegate/gallery.fgg"
//! trusted_keys = ["/etc/facegate/facegate.pub"]
//! state = "/var/lib/facegate/door.state"      # highest installed revision (replay guard)
//! reload_interval_ms = 2000                   # how often the gallery file is checked
//!
//! [source]
//! uri = "camera:0"         # camera:INDEX | camera:NAME | dir:PATH | image:PATH
//! width = 640
//! height = 480
//! fps = 15                 # camera rate, and the replay rate of dir:/image: sources
//! pace = true              # replay in real time (false: as fast as frames are processed)
//! repeat = 1               # image: sources, how many frames to produce
//!
//! [decision]
//! mode = "identify"        # identify (1:N) | claim (id first, then 1:1)
//! consecutive_frames = 3   # frames that must agree before a grant or a logged denial
//! cooldown_ms = 5000       # after a decision, the same member/reason is not decided again
//! ambiguity_margin = 0.05
//! # threshold = 0.9        # default: the gallery's calibrated threshold
//! claim_input = "stdin"    # claim mode: "stdin" or a path (FIFO, tty of a keyboard-wedge scanner)
//! claim_timeout_ms = 10000
//!
//! [lock]
//! kind = "dry-run"         # dry-run | gpio | command
//! unlock_ms = 3000
//! gpio_chip = "/dev/gpiochip0"
//! gpio_line = 17
//! active_low = false
//! command = ["/usr/local/bin/door-relay"]   # called as CMD... unlock MS / CMD... lock
//! command_timeout_ms = 2000
//!
//! [log]
//! path = "/var/log/facegate/events.jsonl"
//! max_bytes = 10485760     # rotate when the file would grow beyond this
//! keep = 5                 # rotated files kept: events.jsonl.1 .. .5
//! store_faces = false      # save the deciding frame beside the log (off: no images stored)
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

/// Where frames come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceUri {
    /// A camera by index (`camera:0`).
    CameraIndex(u32),
    /// A camera by (part of) its name (`camera:USB Camera`).
    CameraName(String),
    /// Every image in a folder, in file-name order (`dir:PATH`).
    Dir(PathBuf),
    /// One image, repeated (`image:PATH`).
    Image(PathBuf),
}

impl std::str::FromStr for SourceUri {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = || invalid("source.uri", format!("{s:?} is not camera:INDEX, camera:NAME, dir:PATH or image:PATH"));
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        Ok(match kind {
            "camera" => match rest.parse::<u32>() {
                Ok(i) => SourceUri::CameraIndex(i),
                Err(_) => SourceUri::CameraName(rest.to_owned()),
            },
            "dir" => SourceUri::Dir(rest.into()),
            "image" => SourceUri::Image(rest.into()),
            _ => return Err(bad()),
        })
    }
}

impl std::fmt::Display for SourceUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceUri::CameraIndex(i) => write!(f, "camera:{i}"),
            SourceUri::CameraName(n) => write!(f, "camera:{n}"),
            SourceUri::Dir(p) => write!(f, "dir:{}", p.display()),
            SourceUri::Image(p) => write!(f, "image:{}", p.display()),
        }
    }
}

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
    log: RawLog,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawModel {
    encoder: PathBuf,
    detector: PathBuf,
    min_face_px: f32,
}

impl Default for RawModel {
    fn default() -> Self {
        Self {
            encoder: "models/facegate-default.onnx".into(),
            detector: "models/face_detection_yunet_2023mar.onnx".into(),
            min_face_px: 40.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGallery {
    path: PathBuf,
    trusted_keys: Vec<PathBuf>,
    state: Option<PathBuf>,
    #[serde(default = "default_reload_ms")]
    reload_interval_ms: u64,
}

fn default_reload_ms() -> u64 {
    2000
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
}

/// Gallery settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GallerySettings {
    /// The signed gallery file.
    pub path: PathBuf,
    /// Public keys whose signatures are accepted.
    pub trusted_keys: Vec<PathBuf>,
    /// Where the highest installed revision is remembered (replay guard). Default: `PATH.state`.
    pub state: PathBuf,
    /// How often the gallery file is checked for a new version.
    pub reload_interval: Duration,
}

/// Frame source settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSettings {
    /// Which source.
    pub uri: SourceUri,
    /// Requested camera width.
    pub width: u32,
    /// Requested camera height.
    pub height: u32,
    /// Camera frame rate; replay rate for files.
    pub fps: f32,
    /// Replay in real time.
    pub pace: bool,
    /// Frames produced by an `image:` source.
    pub repeat: u32,
}

/// Decision settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionSettings {
    /// Identify or claim.
    pub mode: Mode,
    /// Agreeing frames before a decision.
    pub consecutive_frames: u32,
    /// Quiet period after a decision for the same member or reason.
    pub cooldown: Duration,
    /// Ambiguity margin of the 1:N rule.
    pub ambiguity_margin: f32,
    /// Threshold override; `None` uses the gallery's.
    pub threshold: Option<f32>,
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
    /// Event log.
    pub log: LogSettings,
}

/// Largest config file read (a real one is about 1 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

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
        if !(r.model.min_face_px.is_finite() && (8.0..=4096.0).contains(&r.model.min_face_px)) {
            return Err(invalid("model.min_face_px", "must be between 8 and 4096 pixels"));
        }
        if r.gallery.trusted_keys.is_empty() {
            return Err(invalid("gallery.trusted_keys", "must name at least one public key file"));
        }
        if r.gallery.reload_interval_ms > 3_600_000 {
            return Err(invalid("gallery.reload_interval_ms", "must be at most one hour"));
        }
        let uri: SourceUri = r.source.uri.parse()?;
        if !(16..=8192).contains(&r.source.width) || !(16..=8192).contains(&r.source.height) {
            return Err(invalid("source.width/height", "must be between 16 and 8192"));
        }
        if !(r.source.fps.is_finite() && r.source.fps > 0.0 && r.source.fps <= 240.0) {
            return Err(invalid("source.fps", "must be in (0, 240]"));
        }
        if r.source.repeat == 0 {
            return Err(invalid("source.repeat", "must be at least 1"));
        }
        let d = &r.decision;
        if !(1..=30).contains(&d.consecutive_frames) {
            return Err(invalid("decision.consecutive_frames", "must be between 1 and 30"));
        }
        if !(d.ambiguity_margin.is_finite() && (0.0..1.0).contains(&d.ambiguity_margin)) {
            return Err(invalid("decision.ambiguity_margin", "must be in [0, 1)"));
        }
        if let Some(t) = d.threshold {
            facegate_shared::Threshold::new(t).map_err(|e| invalid("decision.threshold", e.to_string()))?;
        }
        if d.claim_timeout_ms == 0 {
            return Err(invalid("decision.claim_timeout_ms", "must be positive"));
        }
        let l = &r.lock;
        if !(100..=60_000).contains(&l.unlock_ms) {
            return Err(invalid("lock.unlock_ms", "must be between 100 and 60000"));
        }
        if l.kind == LockKind::Command && l.command.is_empty() {
            return Err(invalid("lock.command", "is required when lock.kind = \"command\""));
        }
        if l.command_timeout_ms == 0 {
            return Err(invalid("lock.command_timeout_ms", "must be positive"));
        }
        if r.log.max_bytes < 4096 {
            return Err(invalid("log.max_bytes", "must be at least 4096"));
        }
        if r.log.keep > 1000 {
            return Err(invalid("log.keep", "must be at most 1000"));
        }
        let state = r.gallery.state.unwrap_or_else(|| {
            let mut s = r.gallery.path.clone().into_os_string();
            s.push(".state");
            s.into()
        });
        Ok(DoorConfig {
            model: ModelSettings {
                encoder: r.model.encoder,
                detector: r.model.detector,
                min_face_px: r.model.min_face_px,
            },
            gallery: GallerySettings {
                path: r.gallery.path,
                trusted_keys: r.gallery.trusted_keys,
                state,
                reload_interval: Duration::from_millis(r.gallery.reload_interval_ms),
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
                cooldown: Duration::from_millis(d.cooldown_ms),
                ambiguity_margin: d.ambiguity_margin,
                threshold: d.threshold,
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
            log: LogSettings {
                path: r.log.path,
                max_bytes: r.log.max_bytes,
                keep: r.log.keep,
                store_faces: r.log.store_faces,
            },
        })
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

    const MINIMAL: &str = "[gallery]\npath = \"g.fgg\"\ntrusted_keys = [\"k.pub\"]\n[log]\npath = \"events.jsonl\"\n";

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = DoorConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.source.uri, SourceUri::CameraIndex(0));
        assert_eq!(c.decision.mode, Mode::Identify);
        assert_eq!(c.decision.consecutive_frames, 3);
        assert_eq!(c.decision.cooldown, Duration::from_secs(5));
        assert_eq!(c.lock.kind, LockKind::DryRun);
        assert_eq!(c.lock.unlock, Duration::from_secs(3));
        assert_eq!(c.gallery.state, PathBuf::from("g.fgg.state"));
        assert_eq!(c.log.max_bytes, 10 * 1024 * 1024);
        assert!(!c.log.store_faces);
        assert_eq!(c.model.min_face_px, 40.0);
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
            ("[source]\nuri = \"usb0\"\n", "source.uri"),
            ("[source]\nfps = 0\n", "source.fps"),
            ("[lock]\nkind = \"command\"\n", "lock.command"),
            ("[lock]\nunlock_ms = 5\n", "lock.unlock_ms"),
            ("[model]\nmin_face_px = -1\n", "model.min_face_px"),
        ] {
            let e = DoorConfig::parse(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert!(e.to_string().contains(key), "{extra}: {e}");
        }
        let e = DoorConfig::parse("[gallery]\npath = \"g\"\ntrusted_keys = []\n[log]\npath = \"l\"\n").unwrap_err();
        assert!(e.to_string().contains("gallery.trusted_keys"), "{e}");
        let e = DoorConfig::parse("[log]\npath = \"l\"\n").unwrap_err();
        assert!(e.to_string().contains("gallery"), "{e}");
    }

    #[test]
    fn source_uris_round_trip() {
        for s in ["camera:0", "camera:USB Camera", "dir:/tmp/frames", "image:a.jpg"] {
            let u: SourceUri = s.parse().unwrap();
            assert_eq!(u.to_string(), s);
        }
        assert!("camera:".parse::<SourceUri>().is_err());
        assert!("http://x".parse::<SourceUri>().is_err());
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
    }
}
