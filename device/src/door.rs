//! The door loop: frames in, decisions and lock actions out. Generic over the frame source, the
//! face embedder, the lock and the event sink, so every rule is tested with fakes.
//!
//! Rules:
//! - a decision needs `consecutive_frames` frames in a row with the same outcome (same member
//!   granted, or the same denial; unknown faces must also match each other); a different outcome
//!   restarts the count, and so does a face-less frame more than `face_gap` after the
//!   appearance's last face, or any face-less frame once a challenge was given (one within the
//!   gap, a detector missing a face for a moment, neither counts nor restarts: the appearance,
//!   its timeout and its latched deny cue go on, but the liveness test starts again on the frames
//!   after it, so nothing shown before the gap is evidence for what is shown after it);
//! - one continuous appearance gives one decision; a granted member is not granted again within
//!   the cooldown;
//! - the grant is written to the event log *before* the lock opens; if the log or the lock
//!   fails, the door stays locked;
//! - the lock is driven only through a [`LockSupervisor`], which secures it when the unlock
//!   period ends on the monotonic clock, whatever this loop is doing (blocked in a read, slow
//!   inference, a panic); the loop also secures it when the source fails, on stop and at exit;
//! - the threshold is the gallery's signed one, or a stricter local one (never looser);
//! - with liveness on, a grant also needs its pass: the passive 3-D test over the appearance's
//!   landmarks, and/or (challenge mode) the head turn to the side drawn for this appearance; a
//!   turn the other way denies it, and so does the timeout; so does, at once and for the rest of
//!   the appearance, a deny cue of the passive test (the image around the face, or a straight
//!   edge beside or above it, moving with the face);
//! - an appearance recognised as a member that ends while its liveness check is still waiting
//!   (the face left before the timeout) is logged as a `liveness` event with its measurement:
//!   no decision, the door stayed locked, but the attempt is on record;

use facegate_face::liveness::{
    ChallengeCheck, ChallengeVerdict, Deny, Followed, Landmarks, Liveness, PassiveCheck, Turn,
};
use facegate_face::parallax::FacePatch;
use facegate_face::{Encoder, FaceDetector, FaceError, FacePipeline};
use facegate_shared::{
    Date, Decision, DecisionPolicy, DenialReason, Embedding, LatencyHistogram, MemberId, Threshold, ThresholdError,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::challenge::{ChallengeSignal, Coin, OsCoin};
use crate::config::Mode;
use crate::events::{Event, EventKind, EventSink};
use crate::health::{DoorState, MetricsFile};
use crate::lock::Lock;
use crate::pull::{PullNotice, Puller};
use crate::source::{Frame, FrameSource, SourceError};
use crate::store::{GalleryStore, Reload};
use crate::supervisor::{LockSupervisor, Notice};

/// A face seen in a frame, as an embedding.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Unit embedding of the largest usable face.
    pub embedding: Embedding,
    /// Face box width in source pixels.
    pub face_px: f32,
    /// The face's five landmarks (right eye, left eye, nose, right and left mouth corner).
    pub landmarks: [[f32; 2]; 5],
    /// The grey image around the face, for the passive liveness test to follow the landmarks
    /// from frame to frame (`None`: no image; no frame pair with it counts).
    pub patch: Option<FacePatch>,
    /// Time spent embedding on another thread ([`crate::ahead`]); `None` when the embedder
    /// ran on the door's thread (the door then times it itself).
    pub embed_time: Option<Duration>,
}

/// The face-pipeline seam: largest usable face of a frame → embedding.
pub trait FaceEmbedder {
    /// `Ok(None)` when the frame has no usable face.
    fn embed(&mut self, frame: &Frame) -> Result<Option<Observation>, FaceError>;
}

/// The largest usable face of `frame` through `p`: what every door frame goes through (on the
/// door's thread, or on the threads of [`crate::ahead`]); with the grey image around it when
/// `patch` (only the passive liveness test on followed landmarks uses it).
pub fn observe<D: FaceDetector, E: Encoder>(
    p: &FacePipeline<D, E>,
    frame: &Frame,
    patch: bool,
) -> Result<Option<Observation>, FaceError> {
    Ok(p.embed_largest(&frame.image)?.map(|f| Observation {
        embedding: f.embedding,
        face_px: f.detection.bbox[2],
        landmarks: f.detection.landmarks,
        patch: if patch { FacePatch::cut(&frame.image, &f.detection.landmarks) } else { None },
        embed_time: None,
    }))
}

/// A face pipeline as the door's embedder, cutting the image around each face only when asked
/// ([`observe`]).
pub struct Observer<D, E> {
    /// The pipeline.
    pub pipeline: FacePipeline<D, E>,
    /// Whether observations carry the grey image around the face.
    pub patches: bool,
}

impl<D: FaceDetector, E: Encoder> FaceEmbedder for Observer<D, E> {
    fn embed(&mut self, frame: &Frame) -> Result<Option<Observation>, FaceError> {
        observe(&self.pipeline, frame, self.patches)
    }
}

impl<D: FaceDetector, E: Encoder> FaceEmbedder for FacePipeline<D, E> {
    fn embed(&mut self, frame: &Frame) -> Result<Option<Observation>, FaceError> {
        observe(self, frame, true)
    }
}

impl<T: FaceEmbedder + ?Sized> FaceEmbedder for Box<T> {
    fn embed(&mut self, frame: &Frame) -> Result<Option<Observation>, FaceError> {
        (**self).embed(frame)
    }
}

/// Test embedder: the frame label names the embedding (`None` = no face; missing label = error).
/// A label may end in `@head:DEG` or `@print:DEG` (the part before `@` names the embedding): the
/// face is then a model head turned DEG degrees, or a flat photo of one tilted DEG degrees
/// ([`facegate_face::parallax::model_view`]: its landmarks and the textured image around them);
/// otherwise a frontal head.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct LabelEmbedder(pub HashMap<String, Option<Embedding>>);

#[cfg(any(test, feature = "testing"))]
impl FaceEmbedder for LabelEmbedder {
    fn embed(&mut self, frame: &Frame) -> Result<Option<Observation>, FaceError> {
        let (key, pose) = frame.label.split_once('@').unwrap_or((&frame.label, "head:0"));
        let (deg, nose_depth) = match pose.split_once(':') {
            Some(("head", d)) => (d.parse().unwrap_or(0.0), 0.5),
            Some(("print", d)) => (d.parse().unwrap_or(0.0), 0.0),
            _ => return Err(FaceError::NoFace),
        };
        let Some(e) = self.0.get(key) else { return Err(FaceError::NoFace) };
        let Some(embedding) = e.clone() else { return Ok(None) };
        // rendering a view takes a few milliseconds: once per pose
        type Views = HashMap<String, ([[f32; 2]; 5], Option<FacePatch>)>;
        thread_local! {
            static VIEWS: std::cell::RefCell<Views> = std::cell::RefCell::new(HashMap::new());
        }
        let (landmarks, patch) = VIEWS.with(|v| {
            v.borrow_mut()
                .entry(pose.to_owned())
                .or_insert_with(|| {
                    let (img, l) = facegate_face::parallax::model_view(deg, nose_depth);
                    (l, FacePatch::cut(&img, &l))
                })
                .clone()
        });
        Ok(Some(Observation { embedding, face_px: 100.0, landmarks, patch, embed_time: None }))
    }
}

/// Where claimed ids come from (QR/card scanner typing like a keyboard, PIN pad, stdin).
pub trait ClaimInput {
    /// A claimed id that arrived by frame time `at`, if any.
    fn poll(&mut self, at: Duration) -> Option<String>;
}

/// Claimed ids read line by line from any reader on a background thread.
pub struct LineClaims(std::sync::mpsc::Receiver<String>);

impl LineClaims {
    /// Reads lines from `reader` (stdin, a FIFO, the scanner's tty).
    pub fn spawn<R: std::io::BufRead + Send + 'static>(reader: R) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let id = line.trim().to_owned();
                if !id.is_empty() && tx.send(id).is_err() {
                    break;
                }
            }
        });
        Self(rx)
    }
}

impl ClaimInput for LineClaims {
    fn poll(&mut self, _at: Duration) -> Option<String> {
        self.0.try_recv().ok()
    }
}

/// Test claims: `(frame time, id)`, delivered once the frame clock reaches them.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct ScriptedClaims(pub std::collections::VecDeque<(Duration, String)>);

#[cfg(any(test, feature = "testing"))]
impl ClaimInput for ScriptedClaims {
    fn poll(&mut self, at: Duration) -> Option<String> {
        if self.0.front().is_some_and(|(t, _)| *t <= at) {
            return self.0.pop_front().map(|(_, id)| id);
        }
        None
    }
}

/// Door behaviour (from `[decision]`, `[lock]`, `[gallery]`).
#[derive(Debug, Clone)]
pub struct DoorSettings {
    /// Identify or claim.
    pub mode: Mode,
    /// Agreeing frames needed.
    pub consecutive_frames: u32,
    /// How long an appearance may go without a face before a face-less frame ends it (zero:
    /// every face-less frame does).
    pub face_gap: Duration,
    /// No second grant of one member within this.
    pub cooldown: Duration,
    /// How long the lock stays open.
    pub unlock: Duration,
    /// Ambiguity margin.
    pub ambiguity_margin: f32,
    /// A stricter local threshold (else the gallery's signed one); never looser.
    pub threshold: Option<Threshold>,
    /// Claim window.
    pub claim_timeout: Duration,
    /// Gallery file check interval (wall clock).
    pub reload_interval: Duration,
    /// First retry delay after the source fails; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Save deciding frames here (off by default: no face images stored).
    pub faces_dir: Option<PathBuf>,
    /// What a grant also needs (`None`: liveness off).
    pub liveness: Option<LivenessRule>,
}

/// The liveness checks a grant needs, and how long an appearance may stay unconfirmed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LivenessRule {
    /// The passive 3-D test over the appearance's frames.
    pub passive: Option<PassiveCheck>,
    /// The active challenge: a head turn to a random side, shown through
    /// [`Door::challenge_signal`].
    pub challenge: Option<ChallengeCheck>,
    /// Passive only: from the appearance's first frame; with a challenge: from the challenge.
    pub timeout: Duration,
    /// Challenge retry limit: after this many failed challenges of one member within
    /// `lockout`, that member gets no new challenge (denied, `liveness_locked`) until the oldest
    /// failure is `lockout` old. A recording that guesses the side wins half its tries; this
    /// bounds how many tries it gets.
    pub max_failures: u32,
    pub lockout: Duration,
    /// Threads measuring a new frame against the kept ones for the passive test
    /// ([`Followed::push_on`]; `model.threads`): the same verdicts on any number, sooner on more.
    pub threads: usize,
}

impl LivenessRule {
    /// The rule a config asks for (`None` when liveness is off), its passive test measured on
    /// `threads` threads.
    pub fn from_config(l: &crate::config::LivenessSettings, threads: usize) -> Option<Self> {
        use crate::config::LivenessMode;
        match l.mode {
            LivenessMode::Off => None,
            LivenessMode::Passive => Some(Self {
                passive: Some(l.check),
                challenge: None,
                timeout: l.timeout,
                max_failures: l.challenge_max_failures,
                lockout: l.challenge_lockout,
                threads,
            }),
            LivenessMode::Challenge => Some(Self {
                passive: l.challenge_passive.then_some(l.check),
                challenge: Some(l.challenge),
                timeout: l.timeout,
                max_failures: l.challenge_max_failures,
                lockout: l.challenge_lockout,
                threads,
            }),
        }
    }
}

impl DoorSettings {
    /// Settings from a validated config.
    pub fn from_config(c: &crate::config::DoorConfig) -> Self {
        Self {
            mode: c.decision.mode,
            consecutive_frames: c.decision.consecutive_frames,
            face_gap: c.decision.face_gap,
            cooldown: c.decision.cooldown,
            unlock: c.lock.unlock,
            ambiguity_margin: c.decision.ambiguity_margin,
            threshold: c.decision.threshold,
            claim_timeout: c.decision.claim_timeout,
            reload_interval: c.gallery.reload_interval,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            faces_dir: c.log.store_faces.then(|| c.log.path.with_file_name("faces")),
            liveness: LivenessRule::from_config(&c.liveness, c.model.threads),
        }
    }

    /// The decision policy for a gallery's signed threshold: the local threshold may only
    /// tighten it ([`ThresholdError::Looser`] otherwise).
    pub fn policy(&self, signed: Threshold) -> Result<DecisionPolicy, ThresholdError> {
        DecisionPolicy::tightened(signed, self.threshold, self.ambiguity_margin)
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Frames read.
    pub frames: u64,
    /// Frames with a usable face.
    pub faces: u64,
    /// Grants that opened the lock.
    pub granted: u64,
    /// Logged denials.
    pub denied: u64,
    /// Grants the lock failed to carry out (door stayed locked).
    pub lock_failures: u64,
    /// Events that could not be written.
    pub log_failures: u64,
    /// Frames that could not be decoded or processed.
    pub bad_frames: u64,
    /// Times the source went away.
    pub source_outages: u64,
    /// Galleries installed while running.
    pub gallery_reloads: u64,
    /// Rejected gallery files.
    pub gallery_rejections: u64,
    /// Times the supervisor relocked at the end of an unlock period.
    pub relocks: u64,
    /// Grants written to the event log (a grant the lock then failed to carry out included).
    pub grants_logged: u64,
    /// Denials written to the event log, by reason code.
    pub denials: BTreeMap<String, u64>,
    /// Per-frame processing times (ms) of frames with a face: a fixed-size histogram, so a door
    /// that runs for months does not grow.
    #[serde(skip)]
    pub latencies: LatencyHistogram,
}

impl RunSummary {
    /// Median and 99th percentile of the per-frame latency (within the histogram's resolution).
    pub fn latency_median_p99(&self) -> Option<(f64, f64)> {
        self.latencies.median_p99()
    }
}

/// A failure that stops the door (after securing the lock).
#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    /// The source cannot work at all.
    #[error(transparent)]
    Source(SourceError),
    /// The local threshold is looser than the gallery's signed one.
    #[error("config `decision.threshold`: {0}")]
    Policy(#[from] ThresholdError),
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Granted(MemberId),
    Denied(&'static str, Option<MemberId>),
}

#[derive(Debug, Default)]
struct Streak {
    outcome: Option<Outcome>,
    count: u32,
    decided: bool,
    /// The previous frame's face: unknown faces agree only if they look alike.
    last: Option<Embedding>,
    /// The landmarks of the streak's frames (the newest [`MAX_STREAK_LANDMARKS`]), for the
    /// challenge.
    landmarks: Vec<[[f32; 2]; 5]>,
    /// The streak's frames with their pairs measured on landmarks followed by texture, for the
    /// passive test (only with it on).
    followed: Followed,
    /// A deny cue, latched: the first frame pair of the streak whose ring or border edges moved
    /// with the face (checked as each frame is added, so no frame dropped from `followed` loses
    /// it).
    rigid: Option<Deny>,
    /// The frame at which [`Self::rigid`] latched.
    rigid_frame: Option<String>,
    /// [`Self::rigid`] was logged with the appearance's decision; one that was not is logged
    /// when the appearance ends ([`Door::end_appearance`]).
    rigid_logged: bool,
    /// Frame time of the streak's first frame.
    since: Option<Duration>,
    /// Frame time of the streak's newest frame with a face.
    face_at: Option<Duration>,
    /// The liveness check was waiting for more frames of this (recognised, undecided)
    /// appearance: logged if it ends before the check decides ([`Door::end_appearance`]).
    waiting: Option<Waiting>,
    /// The challenge given to this appearance, with the frames seen since.
    challenge: Option<Issued>,
}

/// A liveness check still waiting on an appearance recognised as `member`.
#[derive(Debug)]
struct Waiting {
    member: MemberId,
    /// The newest frame it waited at, and its frame time.
    frame: String,
    at: Duration,
    /// What the check has measured so far.
    detail: String,
}

/// A challenge given to an appearance.
#[derive(Debug)]
struct Issued {
    turn: Turn,
    /// Yaw (degrees) of the appearance's frames before the challenge.
    baseline: f32,
    /// Frame time it was given.
    at: Duration,
    /// Landmarks of the frames since (the newest [`MAX_STREAK_LANDMARKS`]).
    frames: Vec<[[f32; 2]; 5]>,
}

/// What the liveness checks say about the appearance at this frame.
enum Gate {
    /// Passed: the measurement for the grant's log line.
    Pass(String),
    /// Not decided: more frames of this appearance may pass; what was measured so far.
    Wait(String),
    /// Denied with this reason code and measurement.
    Deny(&'static str, String),
    /// Denied because the face failed the challenge it was given (turned the other way, or did
    /// not turn), or a deny cue of the passive test fired (the image around the face, or a
    /// straight edge beside or above it, moved with it: a photo or a screen in the hand). The
    /// failure, counted when the challenge was given, stands (retry limit); a `Pass` or a `Deny`
    /// after a challenge takes it back (the member passed, or the door or the passive test
    /// failed, not the member).
    Failed(&'static str, String),
}

/// Frames of one appearance the liveness check looks at (the newest).
const MAX_STREAK_LANDMARKS: usize = 48;

impl Streak {
    fn push(&mut self, o: Outcome) -> u32 {
        if self.outcome.as_ref() == Some(&o) {
            self.count += 1;
        } else {
            *self = Streak { outcome: Some(o), count: 1, ..Streak::default() };
        }
        self.count
    }
    fn reset(&mut self) {
        *self = Streak::default();
    }
}

struct Claim {
    id: MemberId,
    until: Duration,
}

/// The door unit.
pub struct Door<S, E, K> {
    /// Frames.
    pub source: S,
    /// Face pipeline.
    pub embedder: E,
    /// The lock, behind its supervisor (which owns the unlock deadline).
    pub lock: LockSupervisor,
    /// Event log.
    pub sink: K,
    /// Installed gallery.
    pub store: GalleryStore,
    /// Behaviour.
    pub settings: DoorSettings,
    /// Claimed ids (claim mode).
    pub claims: Option<Box<dyn ClaimInput>>,
    /// Sleeps between retries (tests replace it).
    pub sleep: Box<dyn FnMut(Duration)>,
    /// What happened so far.
    pub summary: RunSummary,
    /// Pulls galleries from `gallery.url` into the inbox (its notices are logged here).
    pub puller: Option<Puller>,
    /// The metrics file, rewritten every interval and at stop.
    pub metrics: Option<MetricsFile>,
    /// Draws the side of each liveness challenge (the system's random numbers).
    pub coin: Box<dyn Coin>,
    /// Shows the member the side to turn to (challenge mode; without one every challenge is
    /// denied: the member could not be told).
    pub challenge_signal: Option<Box<dyn ChallengeSignal>>,
    /// Gallery, source and last decision, for the metrics file.
    pub state: DoorState,
    poll_now: bool,
    policy: DecisionPolicy,
    streak: Streak,
    cooldown_until: HashMap<MemberId, Duration>,
    /// Frame times of each member's failed challenges within the lockout window.
    challenge_failures: HashMap<MemberId, std::collections::VecDeque<Duration>>,
    claim: Option<Claim>,
    last_poll: Instant,
    last_at: Duration,
}

impl<S: FrameSource, E: FaceEmbedder, K: EventSink> Door<S, E, K> {
    /// A door; call [`Door::run`]. The lock driver moves onto the supervisor thread and is
    /// secured at once. Fails (lock secured) when the local threshold is looser than the
    /// gallery's signed one.
    pub fn new<L: Lock + Send + 'static>(
        source: S,
        embedder: E,
        lock: L,
        sink: K,
        store: GalleryStore,
        settings: DoorSettings,
    ) -> Result<Self, DoorError> {
        let lock = LockSupervisor::start(lock);
        let policy = settings.policy(store.matcher().gallery().threshold)?;
        let now = crate::health::unix_now();
        let state = DoorState {
            started: now,
            source_up: true,
            revision: store.revision(),
            members: store.matcher().gallery().members().len(),
            installed: now,
            last_decision: None,
            stopped: false,
        };
        Ok(Self {
            source,
            embedder,
            lock,
            policy,
            sink,
            store,
            settings,
            claims: None,
            sleep: Box::new(std::thread::sleep),
            summary: RunSummary::default(),
            puller: None,
            metrics: None,
            coin: Box::new(OsCoin),
            challenge_signal: None,
            state,
            poll_now: false,
            streak: Streak::default(),
            cooldown_until: HashMap::new(),
            challenge_failures: HashMap::new(),
            claim: None,
            last_poll: Instant::now(),
            last_at: Duration::ZERO,
        })
    }

    /// The decision policy in use.
    pub fn policy(&self) -> DecisionPolicy {
        self.policy
    }

    /// Runs until the source ends or `stop` is set. The lock is secured on every way out.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<RunSummary, DoorError> {
        let g = self.store.matcher().gallery();
        let detail = format!(
            "source {}, lock {}, gallery revision {} with {} members, mode {:?}, RSS {}",
            self.source.describe(),
            self.lock.describe(),
            g.revision,
            g.members().len(),
            self.settings.mode,
            crate::mb(facegate_shared::rss_bytes())
        );
        self.secure();
        self.log(Event::now(EventKind::Start).detail(detail));
        for note in self.store.take_notes() {
            let mut ev = Event::now(EventKind::Gallery).detail(note);
            ev.reason = Some("attention".into());
            self.log(ev);
        }
        let result = self.run_frames(stop);
        self.secure();
        self.drain_lock_notices();
        self.drain_pull_notices();
        let why = match &result {
            Ok(()) if stop.load(Ordering::SeqCst) => "stop requested".to_owned(),
            Ok(()) => "end of frames".to_owned(),
            Err(e) => format!("fatal: {e}"),
        };
        let why = format!(
            "{why}; {} frames, {} granted, {} denied; RSS {}, peak {}",
            self.summary.frames,
            self.summary.granted,
            self.summary.denied,
            crate::mb(facegate_shared::rss_bytes()),
            crate::mb(facegate_shared::peak_rss_bytes())
        );
        self.end_appearance();
        self.log(Event::now(EventKind::Stop).detail(why));
        self.state.stopped = true;
        self.write_metrics();
        if let Err(e) = self.sink.sync() {
            eprintln!("facegate-door: event log sync failed: {e}");
        }
        result.map(|()| self.summary.clone())
    }

    fn run_frames(&mut self, stop: &AtomicBool) -> Result<(), DoorError> {
        let mut backoff = self.settings.backoff_initial;
        let mut down = false;
        while !stop.load(Ordering::SeqCst) {
            self.drain_lock_notices();
            self.drain_pull_notices();
            self.poll_gallery();
            self.state.source_up = !down;
            if self.metrics.as_ref().is_some_and(MetricsFile::due) {
                self.write_metrics();
            }
            match self.source.next_frame() {
                Ok(None) => return Ok(()),
                Ok(Some(frame)) => {
                    if down {
                        down = false;
                        backoff = self.settings.backoff_initial;
                        self.log(Event::now(EventKind::Source).detail(format!("{} recovered", self.source.describe())));
                    }
                    self.on_frame(&frame);
                }
                Err(SourceError::BadFrame { label, reason }) => {
                    self.summary.bad_frames += 1;
                    self.end_appearance();
                    let mut ev = Event::now(EventKind::Source).detail(format!("bad frame: {reason}"));
                    ev.frame = Some(label);
                    self.log(ev);
                }
                Err(SourceError::Unavailable(reason)) => {
                    self.secure();
                    self.end_appearance();
                    if !down {
                        down = true;
                        self.summary.source_outages += 1;
                        self.log(
                            Event::now(EventKind::Source)
                                .detail(format!("unavailable, door locked, retrying: {reason}")),
                        );
                    }
                    (self.sleep)(backoff);
                    backoff = (backoff * 2).min(self.settings.backoff_max);
                    let _ = self.source.reconnect();
                }
                Err(e @ SourceError::Fatal(_)) => {
                    self.log(Event::now(EventKind::Source).detail(e.to_string()));
                    return Err(DoorError::Source(e));
                }
            }
        }
        Ok(())
    }

    fn poll_gallery(&mut self) {
        if !self.poll_now && self.last_poll.elapsed() < self.settings.reload_interval {
            return;
        }
        self.poll_now = false;
        self.last_poll = Instant::now();
        match self.store.poll() {
            Reload::Unchanged => {}
            Reload::Installed { revision, members } => {
                self.summary.gallery_reloads += 1;
                (self.state.revision, self.state.members) = (revision, members);
                self.state.installed = crate::health::unix_now();
                self.end_appearance();
                let signed = self.store.matcher().gallery().threshold;
                let mut detail = format!("installed revision {revision} ({members} members)");
                self.policy = match self.settings.policy(signed) {
                    Ok(p) => p,
                    Err(e) => {
                        // The new gallery is stricter than the local setting: the signed value wins.
                        detail += &format!("; {e}: using the signed threshold {}", signed.get());
                        self.policy.with_threshold(signed)
                    }
                };
                self.log(Event::now(EventKind::Gallery).detail(detail));
            }
            Reload::Deferred { error, first } => {
                if first {
                    let mut ev = Event::now(EventKind::Gallery).detail(format!(
                        "install failed, retrying on every poll, keeping revision {}: {error}",
                        self.store.revision()
                    ));
                    ev.reason = Some("retrying".into());
                    self.log(ev);
                }
            }
            Reload::Rejected(e) => {
                self.summary.gallery_rejections += 1;
                let mut ev = Event::now(EventKind::Gallery)
                    .detail(format!("rejected, keeping revision {}: {e}", self.store.revision()));
                ev.reason = Some("rejected".into());
                self.log(ev);
            }
        }
    }

    fn on_frame(&mut self, frame: &Frame) {
        self.summary.frames += 1;
        self.last_at = frame.at;
        if self.settings.mode == Mode::Claim && !self.update_claim(frame.at) {
            return;
        }
        let t0 = Instant::now();
        let obs = match self.embedder.embed(frame) {
            Ok(Some(o)) => o,
            Ok(None) => {
                // a face missed for a moment (a detector miss, a head turned far) does not end the
                // appearance (its streak, timeout, decision and latched cue go on); a longer
                // absence does, and so does any absence once a challenge was given (a recording
                // swapped for another must draw, and use up, a new challenge)
                let gap = self.settings.face_gap;
                if gap.is_zero()
                    || self.streak.challenge.is_some()
                    || self.streak.face_at.is_none_or(|t| frame.at.saturating_sub(t) > gap)
                {
                    self.end_appearance();
                } else {
                    // what was shown before the gap is not evidence for what is shown after it:
                    // the liveness test starts again on the frames after the gap
                    self.streak.followed.clear();
                    self.streak.landmarks.clear();
                }
                return;
            }
            Err(e) => {
                self.summary.bad_frames += 1;
                self.end_appearance();
                let mut ev = Event::now(EventKind::Source).detail(format!("frame not processed: {e}"));
                ev.frame = Some(frame.label.clone());
                self.log(ev);
                return;
            }
        };
        self.summary.faces += 1;
        let decision = match self.decide(&obs.embedding) {
            Ok(d) => d,
            Err(e) => {
                self.summary.bad_frames += 1;
                self.log(Event::now(EventKind::Source).detail(format!("matching failed: {e}")));
                return;
            }
        };
        // frame processing: detection to decision, wherever the embedding ran
        let latency_ms = (t0.elapsed() + obs.embed_time.unwrap_or_default()).as_secs_f64() * 1e3;
        self.summary.latencies.record(latency_ms);
        let outcome = match &decision {
            Decision::Granted { member, .. } => Outcome::Granted(member.clone()),
            Decision::Denied(r) => Outcome::Denied(
                r.code(),
                match r {
                    DenialReason::Unknown { .. } => None,
                    DenialReason::Expired { member, .. } => Some(member.clone()),
                    DenialReason::Ambiguous { first, .. } => Some(first.clone()),
                },
            ),
        };
        // A new appearance starts when the outcome changes. Two strangers in a row are both
        // "unknown": they are one appearance only if their faces match each other.
        let other_stranger = matches!(outcome, Outcome::Denied("unknown", None)) && {
            let threshold = self.policy.threshold();
            !self.streak.last.as_ref().is_none_or(|l| l.distance(&obs.embedding).is_ok_and(|d| threshold.accepts(d)))
        };
        if other_stranger || self.streak.outcome.as_ref() != Some(&outcome) {
            self.end_appearance();
        }
        let count = self.streak.push(outcome);
        self.streak.last = Some(obs.embedding);
        self.streak.since.get_or_insert(frame.at);
        self.streak.face_at = Some(frame.at);
        if self.streak.landmarks.len() == MAX_STREAK_LANDMARKS {
            self.streak.landmarks.remove(0);
        }
        self.streak.landmarks.push(obs.landmarks);
        let threads = self.settings.liveness.map_or(1, |r| r.threads);
        match self.settings.liveness.and_then(|r| r.passive) {
            Some(p) if p.landmarks == Landmarks::Followed => {
                self.streak.followed.push_on(obs.landmarks, obs.patch, threads);
                // latched until the decision, and after a denial (a stranger's photo): never after
                // a grant or a liveness denial, whose lines already stand
                let open = !self.streak.decided || matches!(self.streak.outcome, Some(Outcome::Denied(..)));
                if self.streak.rigid.is_none() && open {
                    self.streak.rigid = p.rigid_pair(&self.streak.followed, usize::MAX);
                    if self.streak.rigid.is_some() {
                        self.streak.rigid_frame = Some(frame.label.clone());
                    }
                }
            }
            // detector landmarks only: nothing to follow, nothing to measure
            Some(_) => self.streak.followed.push(obs.landmarks, None),
            None => {}
        }
        if let Some(c) = &mut self.streak.challenge {
            if c.frames.len() == MAX_STREAK_LANDMARKS {
                c.frames.remove(0);
            }
            c.frames.push(obs.landmarks);
        }
        if count < self.settings.consecutive_frames || self.streak.decided {
            return;
        }
        let mut liveness = None;
        if let (Some(rule), Decision::Granted { member, distance }) = (self.settings.liveness, &decision) {
            let gate = self.liveness_gate(rule, member, frame);
            if let (Gate::Pass(_) | Gate::Deny(..), Some(issued)) = (&gate, &self.streak.challenge) {
                // counted when given (so a challenge left unfinished counts); the member is not at fault
                let given = issued.at;
                if let Some(f) = self.challenge_failures.get_mut(member) {
                    if let Some(i) = f.iter().position(|&t| t == given) {
                        f.remove(i);
                    }
                }
            }
            match gate {
                Gate::Pass(detail) => liveness = Some(detail),
                Gate::Wait(detail) => {
                    // not decided: more frames of this appearance may pass
                    let (frame, at) = (frame.label.clone(), frame.at);
                    self.streak.waiting = Some(Waiting { member: member.clone(), frame, at, detail });
                    return;
                }
                Gate::Deny(reason, detail) | Gate::Failed(reason, detail) => {
                    self.streak.decided = true;
                    // the latched cue, if any, is in this line (a deny cue outranks every other
                    // liveness verdict)
                    self.streak.rigid_logged |= self.streak.rigid.is_some();
                    let mut ev = Event::now(EventKind::Decision);
                    ev.frame = Some(frame.label.clone());
                    ev.decision = Some("denied");
                    ev.member = Some(member.to_string());
                    ev.distance = Some(*distance);
                    ev.reason = Some(reason.into());
                    ev.latency_ms = Some((latency_ms * 100.0).round() / 100.0);
                    ev.detail = Some(detail);
                    self.summary.denied += 1;
                    self.log(ev);
                    return;
                }
            }
        }
        self.streak.decided = true;
        self.act(decision, frame, latency_ms, liveness);
    }

    /// The liveness checks for an appearance recognised as `member` at `frame`: the passive 3-D
    /// test over the appearance's landmarks, and the challenge (given here, once per appearance,
    /// when the appearance is first recognised).
    fn liveness_gate(&mut self, rule: LivenessRule, member: &MemberId, frame: &Frame) -> Gate {
        let passive = rule.passive.map(|p| (p, p.judge_appearance(&self.streak.followed, usize::MAX)));
        let passive_ok = passive.is_none_or(|(_, v)| matches!(v, Liveness::Live { .. }));
        let passive_text = || {
            match passive {
            None => String::new(),
            Some((p, Liveness::Live { residual, pairs })) => format!(
                "3-D face, {} nose residual {residual:.4} eye distances over {pairs} frame pairs (threshold {:.4})",
                p.landmarks.name(),
                p.threshold
            ),
            Some((p, Liveness::Unconfirmed { residual, pairs })) => format!(
                "no 3-D face: {} nose residual {residual:.4} eye distances over {pairs} frame pairs, needs {:.4} over {}",
                p.landmarks.name(),
                p.threshold,
                p.min_pairs
            ),
            Some((_, Liveness::Rigid(deny))) => deny.to_string(),
        }
        };
        // a deny cue latches for the appearance: nothing after it (a nose residual, a challenge
        // passed) outvotes it. Counted as a failed challenge when one was given (an attack).
        if let (Some(_), Some(deny)) = (passive, self.streak.rigid) {
            return Gate::Failed("liveness_denied", deny.to_string());
        }
        if let Some((_, Liveness::Rigid(deny))) = passive {
            return Gate::Failed("liveness_denied", deny.to_string());
        }
        let since = self.streak.since.unwrap_or(frame.at);
        // how long since `from`, once that is the timeout or more
        let timed_out = |from: Duration| Some(frame.at.saturating_sub(from)).filter(|w| *w >= rule.timeout);
        let Some(check) = rule.challenge else {
            let Some((p, verdict)) = passive else {
                // liveness on with no check at all: not built by `from_config`; never a grant
                return Gate::Deny("liveness_unconfirmed", "liveness is on but no check is configured".into());
            };
            let (residual, pairs) = match verdict {
                Liveness::Live { .. } => return Gate::Pass(format!("liveness: {}", passive_text())),
                Liveness::Unconfirmed { residual, pairs } => (residual, pairs),
                Liveness::Rigid(deny) => return Gate::Failed("liveness_denied", deny.to_string()),
            };
            let Some(waited) = timed_out(since) else { return Gate::Wait(passive_text()) };
            return Gate::Deny(
                "liveness_unconfirmed",
                format!(
                    "no 3-D face within {} ms: {} nose residual {residual:.4} eye distances over {pairs} frame pairs, needs {:.4} over {} (a photo or a screen, or a head held still)",
                    waited.as_millis(),
                    p.landmarks.name(),
                    p.threshold,
                    p.min_pairs
                ),
            );
        };
        let Some(issued) = &self.streak.challenge else {
            if let Some((failures, free_in)) = self.challenge_lock(member, frame.at, rule) {
                return Gate::Deny(
                    "liveness_locked",
                    format!(
                        "{member} failed {failures} challenges within {} s (limit {}): no new challenge for {} s",
                        rule.lockout.as_secs(),
                        rule.max_failures,
                        free_in.as_millis().div_ceil(1000).max(1)
                    ),
                );
            }
            let Some(baseline) = check.baseline(&self.streak.landmarks) else {
                // faces too small to measure a turn on: wait for a closer face, up to the timeout
                let Some(waited) = timed_out(since) else {
                    return Gate::Wait(format!(
                        "no face with eyes {} px apart yet to give the challenge to",
                        check.min_iod_px
                    ));
                };
                return Gate::Deny(
                    "liveness_unconfirmed",
                    format!(
                        "no face with eyes {} px apart within {} ms to give the challenge to",
                        check.min_iod_px,
                        waited.as_millis()
                    ),
                );
            };
            let turn = match self.coin.flip() {
                Ok(t) => t,
                Err(e) => return Gate::Deny("liveness_challenge_failed", format!("no challenge side: {e}")),
            };
            let shown = match self.challenge_signal.as_mut() {
                Some(s) => s.show(turn),
                None => Err("no challenge output configured".into()),
            };
            if let Err(e) = shown {
                return Gate::Deny("liveness_challenge_failed", format!("could not show the challenge: {e}"));
            }
            self.streak.challenge = Some(Issued { turn, baseline, at: frame.at, frames: Vec::new() });
            // counted as failed until it is passed: an attacker who hides the face when the side
            // is wrong, to draw again, uses up a try all the same
            self.challenge_failures.entry(member.clone()).or_default().push_back(frame.at);
            let mut ev = Event::now(EventKind::Challenge).detail(format!(
                "asked {member} to turn {} (their own side) by {:.0}° within {} ms; yaw now {baseline:.1}°",
                turn.name(),
                check.min_turn_deg,
                rule.timeout.as_millis()
            ));
            ev.frame = Some(frame.label.clone());
            ev.member = Some(member.to_string());
            self.log(ev);
            return Gate::Wait(format!(
                "asked to turn {} by {:.0}°; yaw {baseline:.1}°",
                turn.name(),
                check.min_turn_deg
            ));
        };
        let waited = frame.at.saturating_sub(issued.at);
        let asked = issued.turn.name();
        if let Some(Err(why)) = self.challenge_signal.as_mut().map(|s| s.status()) {
            return Gate::Deny(
                "liveness_challenge_failed",
                format!("the challenge output failed, the member may not have been told: {why}"),
            );
        }
        let verdict = check.judge(issued.turn, issued.baseline, &issued.frames);
        match verdict {
            ChallengeVerdict::WrongWay { turn_deg } => Gate::Failed(
                "liveness_challenge_failed",
                format!("asked to turn {asked}, turned the other way by {turn_deg:.1}° (a recording cannot know the side)"),
            ),
            ChallengeVerdict::Passed { turn_deg } if passive_ok => {
                let extra = passive.map_or(String::new(), |_| format!("; {}", passive_text()));
                Gate::Pass(format!(
                    "liveness: turned {asked} by {turn_deg:.1}° as asked (needs {:.1}°) after {} ms{extra}",
                    check.min_turn_deg,
                    waited.as_millis()
                ))
            }
            ChallengeVerdict::Passed { turn_deg } if waited < rule.timeout => {
                Gate::Wait(format!("turned {asked} by {turn_deg:.1}° as asked, but {}", passive_text()))
            }
            ChallengeVerdict::Pending { turn_deg } if waited < rule.timeout => Gate::Wait(format!(
                "asked to turn {asked} by {:.1}°, turned {turn_deg:.1}° so far",
                check.min_turn_deg
            )),
            // the member did as asked; the passive test refused: not counted against them
            ChallengeVerdict::Passed { turn_deg } => Gate::Deny(
                "liveness_unconfirmed",
                format!("turned {asked} by {turn_deg:.1}° as asked, but {} within {} ms", passive_text(), waited.as_millis()),
            ),
            ChallengeVerdict::Pending { turn_deg } => Gate::Failed(
                "liveness_unconfirmed",
                format!(
                    "asked to turn {asked} by {:.1}° within {} ms, turned {turn_deg:.1}° (a photo does not turn its printed face)",
                    check.min_turn_deg,
                    waited.as_millis()
                ),
            ),
        }
    }

    /// `Some((failures, time until the next challenge))` when `member` has failed
    /// `rule.max_failures` challenges within `rule.lockout` before `at`; forgets older failures.
    fn challenge_lock(&mut self, member: &MemberId, at: Duration, rule: LivenessRule) -> Option<(usize, Duration)> {
        let failures = self.challenge_failures.get_mut(member)?;
        while failures.front().is_some_and(|&t| at.saturating_sub(t) >= rule.lockout) {
            failures.pop_front();
        }
        if failures.is_empty() {
            self.challenge_failures.remove(member);
            return None;
        }
        let n = failures.len();
        (n >= rule.max_failures as usize)
            .then(|| (n, (failures[n - rule.max_failures as usize] + rule.lockout).saturating_sub(at)))
    }

    /// Claim mode: reads new claims and expires old ones. True when a claim is active.
    fn update_claim(&mut self, at: Duration) -> bool {
        let claimed = self.claims.as_mut().and_then(|c| c.poll(at));
        if let Some(raw) = claimed {
            self.end_appearance();
            let mut ev = Event::now(EventKind::Claim);
            match MemberId::new(&raw) {
                Ok(id) if self.store.matcher().gallery().member(&id).is_some() => {
                    ev.member = Some(id.to_string());
                    self.log(ev);
                    self.claim = Some(Claim { id, until: at + self.settings.claim_timeout });
                }
                _ => {
                    self.claim = None;
                    ev.event = EventKind::Decision;
                    ev.decision = Some("denied");
                    ev.reason = Some("unknown_id".into());
                    ev.detail = Some(format!("no member with id {raw:?}"));
                    self.summary.denied += 1;
                    self.log(ev);
                }
            }
        }
        if let Some(c) = self.claim.take_if(|c| at >= c.until) {
            // the claim's denial is the appearance's decision: no second line for it
            self.streak.waiting = None;
            self.end_appearance();
            let mut ev = Event::now(EventKind::Decision);
            ev.decision = Some("denied");
            ev.member = Some(c.id.to_string());
            ev.reason = Some("timeout".into());
            ev.detail = Some("no matching face before the claim timed out".into());
            self.summary.denied += 1;
            self.log(ev);
        }
        self.claim.is_some()
    }

    fn decide(&self, e: &Embedding) -> Result<Decision, facegate_shared::IndexError> {
        let m = self.store.matcher();
        let today = Date::today();
        match &self.claim {
            Some(c) => m.claim(&c.id, e, self.policy.threshold(), today),
            None => m.identify(e, &self.policy, today),
        }
    }

    /// Carries out a decision; `liveness` is the passed check's measurement for a grant.
    fn act(&mut self, decision: Decision, frame: &Frame, latency_ms: f64, liveness: Option<String>) {
        let passed = liveness.is_some();
        let mut ev = Event::now(EventKind::Decision);
        ev.detail = liveness;
        ev.frame = Some(frame.label.clone());
        ev.latency_ms = Some((latency_ms * 100.0).round() / 100.0);
        match decision {
            Decision::Granted { member, distance } => {
                if self.cooldown_until.get(&member).is_some_and(|t| frame.at < *t) {
                    return;
                }
                if self.settings.liveness.is_some() && !passed {
                    // unreachable through `on_frame`; a grant without the check never opens
                    eprintln!("facegate-door: grant of {member} without a liveness pass refused");
                    return;
                }
                ev.decision = Some("granted");
                ev.member = Some(member.to_string());
                ev.distance = Some(distance);
                self.claim = None;
                self.save_face(frame, &ev);
                // Log first: a grant that cannot be recorded does not open the door.
                if let Err(e) = self.sink.record(&ev) {
                    self.summary.log_failures += 1;
                    eprintln!("facegate-door: cannot record grant of {member}, door stays locked: {e}");
                    return;
                }
                self.count_decision(&ev);
                match self.lock.unlock(self.settings.unlock) {
                    Ok(()) => {
                        self.summary.granted += 1;
                        self.cooldown_until.insert(member, frame.at + self.settings.cooldown);
                    }
                    Err(e) => {
                        self.summary.lock_failures += 1;
                        self.secure();
                        let mut lev = Event::now(EventKind::Lock).detail(format!("unlock failed, door locked: {e}"));
                        lev.member = Some(member.to_string());
                        lev.reason = Some("lock_failed".into());
                        self.log(lev);
                    }
                }
            }
            Decision::Denied(r) => {
                ev.decision = Some("denied");
                ev.reason = Some(r.code().into());
                match r {
                    DenialReason::Unknown { nearest } => {
                        ev.distance = nearest;
                        ev.member = self.claim.as_ref().map(|c| c.id.to_string());
                    }
                    DenialReason::Expired { member, distance } => {
                        ev.member = Some(member.to_string());
                        ev.distance = Some(distance);
                        self.claim = None;
                    }
                    DenialReason::Ambiguous { first, first_distance, second, second_distance } => {
                        ev.member = Some(first.to_string());
                        ev.distance = Some(first_distance);
                        ev.detail = Some(format!("also matches {second} at {second_distance:.4}"));
                    }
                }
                self.summary.denied += 1;
                self.save_face(frame, &ev);
                self.log(ev);
            }
        }
    }

    fn save_face(&mut self, frame: &Frame, ev: &Event) {
        let Some(dir) = &self.settings.faces_dir else { return };
        let name = format!("{}-{}.png", ev.time.replace(':', ""), ev.decision.unwrap_or("event"));
        let r =
            std::fs::create_dir_all(dir).and_then(|()| frame.image.save(dir.join(name)).map_err(std::io::Error::other));
        if let Err(e) = r {
            eprintln!("facegate-door: cannot store face image: {e}");
        }
    }

    /// Logs what the lock supervisor did on its own (relocks at the deadline, failures).
    fn drain_lock_notices(&mut self) {
        for n in self.lock.notices() {
            match n {
                Notice::Relocked { open_for } => {
                    self.summary.relocks += 1;
                    self.log(Event::now(EventKind::Lock).detail(format!(
                        "secured at the end of the unlock period ({} ms after the unlock)",
                        open_for.as_millis()
                    )));
                }
                Notice::SecureFailed(e) => {
                    self.summary.lock_failures += 1;
                    let mut ev = Event::now(EventKind::Lock).detail(format!("securing the lock failed, retrying: {e}"));
                    ev.reason = Some("lock_failed".into());
                    self.log(ev);
                }
                Notice::Emergency => {
                    self.log(Event::now(EventKind::Lock).detail("secured by the emergency path"));
                }
            }
        }
    }

    fn secure(&mut self) {
        if let Err(e) = self.lock.secure() {
            self.summary.lock_failures += 1;
            let mut ev = Event::now(EventKind::Lock).detail(format!("securing the lock failed: {e}"));
            ev.reason = Some("lock_failed".into());
            self.log(ev);
        }
    }

    /// Ends the current appearance. A deny cue that latched on it and is in no decision line
    /// (the face left, or changed, before the door decided; or the door had denied it as a
    /// stranger's, an expired member's or an ambiguous face) is logged now, so that every deny
    /// cue is on record with its measurement. Otherwise, an appearance recognised as a member
    /// whose liveness check was still waiting (no decision yet) is logged as unconfirmed with
    /// what the check had measured. The door stayed locked for it either way.
    fn end_appearance(&mut self) {
        if let (Some(deny), false) = (self.streak.rigid, self.streak.rigid_logged) {
            let when = match (&self.streak.outcome, self.streak.decided) {
                (Some(Outcome::Denied(code, _)), true) => format!("after the door had denied it ({code})"),
                _ => "before the door decided it".to_owned(),
            };
            let mut ev = Event::now(EventKind::Liveness).detail(format!("{deny}; the appearance ended {when}"));
            ev.frame = self.streak.rigid_frame.clone();
            ev.member = match &self.streak.outcome {
                Some(Outcome::Granted(m)) => Some(m.to_string()),
                Some(Outcome::Denied(_, m)) => m.as_ref().map(ToString::to_string),
                None => None,
            };
            ev.reason = Some("liveness_denied".into());
            self.log(ev);
        } else if let (Some(w), false) = (self.streak.waiting.take(), self.streak.decided) {
            let since = self.streak.since.unwrap_or(w.at);
            let timeout = self.settings.liveness.map_or(Duration::ZERO, |r| r.timeout);
            let mut ev = Event::now(EventKind::Liveness).detail(format!(
                "no decision: the appearance ended {} ms after its first frame, before the liveness check \
                 decided (timeout {} ms); {}",
                self.streak.face_at.unwrap_or(w.at).saturating_sub(since).as_millis(),
                timeout.as_millis(),
                w.detail
            ));
            ev.frame = Some(w.frame);
            ev.member = Some(w.member.to_string());
            ev.reason = Some("liveness_unconfirmed".into());
            self.log(ev);
        }
        self.streak.reset();
    }

    fn log(&mut self, ev: Event) {
        match self.sink.record(&ev) {
            Ok(()) => self.count_decision(&ev),
            Err(e) => {
                self.summary.log_failures += 1;
                eprintln!(
                    "facegate-door: event log write failed ({e}): {}",
                    serde_json::to_string(&ev).unwrap_or_default()
                );
            }
        }
    }

    /// Decisions are counted where they are logged, so the metrics agree with the event log.
    fn count_decision(&mut self, ev: &Event) {
        if ev.event != EventKind::Decision {
            return;
        }
        match ev.decision {
            Some("granted") => self.summary.grants_logged += 1,
            Some(_) => *self.summary.denials.entry(ev.reason.clone().unwrap_or_default()).or_default() += 1,
            None => return,
        }
        self.state.last_decision =
            Some((crate::health::unix_now(), ev.decision.unwrap_or_default().to_owned(), ev.member.clone()));
    }

    /// Logs what the gallery puller reported; a new download is installed at the next poll.
    fn drain_pull_notices(&mut self) {
        let Some(p) = &self.puller else { return };
        for n in p.notices() {
            let revision = self.store.revision();
            if matches!(n, PullNotice::Downloaded { .. }) {
                // installed at the next poll, not after the reload interval
                self.poll_now = true;
            }
            let (reason, detail) = n.describe(revision);
            let mut ev = Event::now(EventKind::Gallery).detail(detail);
            ev.reason = Some(reason.into());
            self.log(ev);
        }
    }

    /// Rewrites the metrics file (a failure is logged once; the door goes on).
    fn write_metrics(&mut self) {
        let Some(m) = &mut self.metrics else { return };
        let text = crate::health::render(&self.summary, &self.state, self.puller.as_ref().map(Puller::counts));
        if let Some(problem) = m.write(&text) {
            let mut ev = Event::now(EventKind::Source).detail(problem);
            ev.reason = Some("metrics_failed".into());
            self.log(ev);
        }
    }

    /// Frame time of the last frame seen.
    pub fn last_frame_time(&self) -> Duration {
        self.last_at
    }
}
