//! `facegate-door`: the door unit binary.
//!
//! Exit codes: 0 success (run ended cleanly / unit ready); 1 the unit is not ready (`check`) or the
//! frame source failed fatally (`run`); 2 configuration or start-up error (nothing was opened).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use facegate_device::ahead::embed_ahead;
use facegate_device::challenge::CommandSignal;
use facegate_device::config::{LivenessMode, LockKind, Mode, SourceUri};
use facegate_device::door::{observe, ClaimInput, FaceEmbedder, LineClaims, Observer};
use facegate_device::events::{Event, EventKind, EventSink, JsonlLog, StdoutSink, Tee};
use facegate_device::health::MetricsFile;
use facegate_device::lock::{CommandLock, DryRunLock, GpioLock, Lock};
use facegate_device::pull::Puller;
use facegate_device::source::{self, FrameSource};
use facegate_device::store::{Access, GalleryStore, StoreError};
use facegate_device::{Door, DoorConfig, DoorSettings};
use facegate_face::liveness::{Followed, Landmarks, MAX_FRAMES};
use facegate_face::parallax::FacePatch;
use facegate_face::{DetectPath, Encoder, FaceError, FacePipeline, RoiDetector, TractEncoder};
use facegate_shared::install::InstallRules;
use facegate_shared::{keys, peak_rss_bytes, percentile, VerifyingKey};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Facegate door unit: watches the camera, recognises enrolled members and opens the lock.
/// The door stays locked on any failure.
#[derive(Parser, Debug)]
#[command(name = "facegate-door", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the door: frames → face → decision → lock, every decision logged.
    Run {
        #[command(flatten)]
        common: Common,
        /// Also print every event as a JSON line on stdout (for a supervisor).
        #[arg(long)]
        json: bool,
    },
    /// Check that the unit is ready: cameras, model, gallery signature and fingerprint, lock, log.
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// Drive the configured lock to its secured state and exit (the unit's `ExecStopPost`, which
    /// systemd runs after any exit of `run`, even SIGKILL). Exit 0 secured, 1 failed.
    Secure {
        #[command(flatten)]
        common: Common,
    },
    /// What the running door is doing, for a person: gallery revision, camera, decisions, uptime,
    /// from the metrics file it writes (`[metrics] path`). Exit 0 running, 1 not running or stuck.
    Status {
        /// The unit's configuration (TOML).
        #[arg(long, short, default_value = "/etc/facegate/door.toml")]
        config: PathBuf,
    },
    /// Measure detection, alignment, encoding, matching and end-to-end frame latency.
    Bench {
        #[command(flatten)]
        common: Common,
        /// Frames to measure (read from the source, cycled if it has fewer).
        #[arg(long, default_value_t = 50)]
        frames: usize,
        /// Also measure the throughput of a stream of frames on this many threads sharing one
        /// pipeline (each frame: detect, align, encode, match), against one thread in the same run;
        /// the passive liveness test's pairs of each frame are measured on this many threads.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        threads: u16,
        /// Print JSON only.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The unit's configuration (TOML).
    #[arg(long, short, default_value = "/etc/facegate/door.toml")]
    config: PathBuf,
    /// Frame source instead of the configured one: camera:INDEX, camera:NAME, dir:PATH, image:PATH.
    #[arg(long)]
    source: Option<String>,
    /// Replay files as fast as they are processed (frame times still follow the configured fps).
    #[arg(long)]
    no_pace: bool,
}

impl Common {
    fn load(&self) -> Result<DoorConfig> {
        let mut c = DoorConfig::load(&self.config)?;
        if let Some(s) = &self.source {
            c.source.uri = s.parse()?;
        }
        if self.no_pace {
            c.source.pace = false;
        }
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run { common, json } => run(&common, json),
        Cmd::Check { common } => check(&common),
        Cmd::Secure { common } => secure(&common),
        Cmd::Status { config } => status(&config),
        Cmd::Bench { common, frames, threads, json } => bench(&common, frames, threads.into(), json),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("facegate-door: error: {}", facegate_shared::error_chain(&*e));
            ExitCode::from(2)
        }
    }
}

type Pipeline = FacePipeline<RoiDetector, TractEncoder>;

/// A pipeline for one of `threads` embedding threads, on `p`'s plans: its own window detector,
/// which sees every `threads`-th frame and so detects on the whole canvas at least every
/// ⌈roi_refresh / threads⌉ of its frames (at least every 2nd with windows on): a second face is
/// still seen within about `roi_refresh` frames of the stream.
fn worker_pipeline(p: &Pipeline, threads: usize) -> Pipeline {
    let refresh = match p.finder.detector.refresh() {
        r if r < 2 => r,
        r => r.div_ceil(threads.max(1) as u32).max(2),
    };
    let mut w = FacePipeline::new(p.finder.detector.follower(refresh), p.encoder.clone());
    w.finder.min_face_px = p.finder.min_face_px;
    w
}

fn pipeline(c: &DoorConfig) -> Result<Pipeline> {
    let det = RoiDetector::load(&c.model.detector, c.model.canvas, c.model.roi_refresh)
        .with_context(|| format!("detector {}", c.model.detector.display()))?;
    let enc = TractEncoder::load(&c.model.encoder).with_context(|| format!("encoder {}", c.model.encoder.display()))?;
    let mut p = FacePipeline::new(det, enc);
    p.finder.min_face_px = c.model.min_face_px;
    Ok(p)
}

fn trusted_keys(c: &DoorConfig) -> Result<Vec<VerifyingKey>> {
    c.gallery
        .trusted_keys
        .iter()
        .map(|p| keys::read_verifying_key(p).with_context(|| format!("trusted key {}", p.display())))
        .collect()
}

fn rules(c: &DoorConfig, p: &Pipeline) -> Result<InstallRules> {
    Ok(InstallRules::new(trusted_keys(c)?, p.encoder.card().binding()).with_max_file_bytes(c.gallery.max_bytes))
}

fn store(c: &DoorConfig, p: &Pipeline, access: Access) -> Result<GalleryStore> {
    Ok(GalleryStore::open(&c.gallery.paths, rules(c, p)?, access)?)
}

/// The store, once there is a gallery: a door without one (a new unit, or one pulling from
/// `gallery.url` for the first time) starts with the lock secured, logs that it waits (and each
/// different refusal of a file that arrives meanwhile, once), writes its metrics (revision 0),
/// and checks the inbox every `reload_interval_ms` (logging what the puller reports) until a
/// valid gallery arrives. A SIGTERM while waiting ends the process; the lock was secured first.
fn first_gallery(
    c: &DoorConfig,
    p: &Pipeline,
    lock: &mut dyn Lock,
    sinks: &mut Tee,
    puller: Option<&Puller>,
    mut metrics: Option<&mut MetricsFile>,
) -> Result<GalleryStore> {
    let mut waiting = false;
    let mut last_refusal = String::new();
    let started = facegate_device::health::unix_now();
    loop {
        // What the puller did first, so its download is logged before the install it leads to.
        for n in puller.map(Puller::notices).unwrap_or_default() {
            let (reason, detail) = n.describe(0);
            let mut ev = Event::now(EventKind::Gallery).detail(detail);
            ev.reason = Some(reason.into());
            record(sinks, ev);
        }
        match GalleryStore::open(&c.gallery.paths, rules(c, p)?, Access::ReadWrite) {
            Ok(s) => {
                if waiting {
                    let g = s.matcher().gallery();
                    record(
                        sinks,
                        Event::now(EventKind::Gallery).detail(format!(
                            "installed revision {} ({} members)",
                            g.revision,
                            g.members().len()
                        )),
                    );
                }
                return Ok(s);
            }
            // A refused file with nothing installed, at start: a start-up error, as before (the
            // unit's check says why); once waiting, refusals are logged and the door keeps waiting.
            Err(e @ StoreError::Install { .. }) if !waiting => return Err(e.into()),
            Err(e @ (StoreError::NoGallery(_) | StoreError::Install { .. })) => {
                if !waiting {
                    waiting = true;
                    lock.secure().context("securing the lock while waiting for a gallery")?;
                    let mut ev = Event::now(EventKind::Gallery).detail(format!(
                        "no usable gallery yet, door locked, waiting for one{}",
                        if puller.is_some() { " (pulling from gallery.url)" } else { "" }
                    ));
                    ev.reason = Some("waiting".into());
                    record(sinks, ev);
                    eprintln!("facegate-door: waiting for a first gallery: {e}");
                }
                // Each different refusal once (a file left in the inbox is not logged every poll).
                let text = e.to_string();
                if matches!(e, StoreError::Install { .. }) && text != last_refusal {
                    let mut ev = Event::now(EventKind::Gallery).detail(format!("still waiting: {text}"));
                    ev.reason = Some("rejected".into());
                    record(sinks, ev);
                }
                last_refusal = text;
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(m) = metrics.as_deref_mut().filter(|m| m.due()) {
            let state = facegate_device::health::DoorState { started, ..Default::default() };
            let text = facegate_device::health::render(&Default::default(), &state, puller.map(Puller::counts));
            if let Some(problem) = m.write(&text) {
                eprintln!("facegate-door: {problem}");
            }
        }
        std::thread::sleep(c.gallery.reload_interval);
    }
}

/// Records a start-up event; a failed write is reported and the door goes on (still locked).
fn record(sinks: &mut Tee, ev: Event) {
    if let Err(e) = sinks.record(&ev) {
        eprintln!("facegate-door: event log write failed ({e})");
    }
}

/// `facegate-door status`.
fn status(config: &std::path::Path) -> Result<ExitCode> {
    let c = DoorConfig::load(config)?;
    let Some(m) = &c.metrics else {
        anyhow::bail!("{}: no [metrics] path: status reads the metrics file the running door writes", config.display());
    };
    match facegate_device::health::status(&m.path, m.interval) {
        Ok(text) => {
            print!("{text}");
            Ok(if text.starts_with("door           running") { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Err(e) => {
            println!("door           NOT RUNNING (or never started): {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn open_lock(c: &DoorConfig) -> Result<Box<dyn Lock + Send>> {
    Ok(match c.lock.kind {
        LockKind::DryRun => Box::new(DryRunLock::default()),
        LockKind::Gpio => Box::new(GpioLock::open(&c.lock.gpio_chip, c.lock.gpio_line, c.lock.active_low)?),
        LockKind::Command => Box::new(CommandLock::new(c.lock.command.clone(), c.lock.command_timeout)),
    })
}

fn run(common: &Common, json: bool) -> Result<ExitCode> {
    let c = common.load()?;
    let mut sinks = Tee(vec![Box::new(
        JsonlLog::open(&c.log.path, c.log.max_bytes, c.log.keep)
            .with_context(|| format!("event log {} (is the folder there and writable?)", c.log.path.display()))?,
    ) as Box<dyn EventSink>]);
    if json {
        sinks.0.push(Box::new(StdoutSink));
    }
    let p = pipeline(&c)?;
    let mut lock = open_lock(&c)?;
    let puller = match &c.gallery.pull {
        Some(settings) => Some(Puller::spawn(settings.clone(), c.gallery.paths.inbox.clone(), rules(&c, &p)?)?),
        None => None,
    };
    let mut metrics = c.metrics.as_ref().map(|m| MetricsFile::new(m.path.clone(), m.interval));
    let store = first_gallery(&c, &p, lock.as_mut(), &mut sinks, puller.as_ref(), metrics.as_mut())?;
    let src = source::open(&c.source)?;
    let settings = DoorSettings::from_config(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let detections = p.finder.detector.counts();
    // the image around each face: only the passive test on followed landmarks looks at it
    let patches = settings.liveness.and_then(|l| l.passive).is_some_and(|p| p.landmarks == Landmarks::Followed);
    let (src, embedder): (Box<dyn FrameSource>, Box<dyn FaceEmbedder>) = if c.model.threads > 1 {
        let pipes: Vec<Pipeline> = (0..c.model.threads).map(|_| worker_pipeline(&p, c.model.threads)).collect();
        let (src, embedder) = embed_ahead(src, c.model.threads, move |w, f| observe(&pipes[w], f, patches));
        (Box::new(src), Box::new(embedder))
    } else {
        (src, Box::new(Observer { pipeline: p, patches }))
    };
    let mut door = Door::new(src, embedder, lock, sinks, store, settings)?;
    door.puller = puller;
    door.metrics = metrics;
    if c.liveness.mode == LivenessMode::Challenge {
        // the arrow may stay on while the member turns: until the challenge times out
        door.challenge_signal =
            Some(Box::new(CommandSignal::new(c.liveness.challenge_command.clone(), c.liveness.timeout)));
    }
    // How long an emergency secure may take: one lock command, plus a retry.
    let wait = c.lock.command_timeout + facegate_device::supervisor::SECURE_RETRY;
    {
        // SIGTERM/SIGINT secure the lock at once (the loop may be blocked in a camera read),
        // then ask the loop to stop.
        let stop = stop.clone();
        let emergency = door.lock.emergency();
        ctrlc::set_handler(move || {
            // Stop first, so a frame being processed cannot open the lock again after this secure.
            stop.store(true, Ordering::SeqCst);
            emergency.secure_now(wait);
        })
        .context("installing the signal handler")?;
    }
    // A panic anywhere (this thread or another) secures the lock, and waits for it, before
    // unwinding starts; the supervisor's drop during unwinding secures it again, and its timer
    // relocks regardless.
    let emergency = door.lock.emergency();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        emergency.secure_now(wait);
        default_hook(info);
    }));
    if c.decision.mode == Mode::Claim {
        let claims: Box<dyn ClaimInput> = match &c.decision.claim_input {
            None => Box::new(LineClaims::spawn(std::io::BufReader::new(std::io::stdin()))),
            Some(path) => {
                let f = std::fs::File::open(path).with_context(|| format!("claim input {}", path.display()))?;
                Box::new(LineClaims::spawn(std::io::BufReader::new(f)))
            }
        };
        door.claims = Some(claims);
    }
    let result = door.run(&stop);
    let s = &door.summary;
    let (med, p99) = s.latency_median_p99().unwrap_or((f64::NAN, f64::NAN));
    eprintln!(
        "facegate-door: {} frames, {} faces, {} granted, {} denied, {} lock failures, {} bad frames, \
         {} source outages; frame latency median {med:.1} ms, p99 {p99:.1} ms; peak RSS {:.1} MB; \
         detection: {} on the whole canvas, {} in windows ({} windows lost the face)",
        s.frames,
        s.faces,
        s.granted,
        s.denied,
        s.lock_failures,
        s.bad_frames,
        s.source_outages,
        peak_rss_bytes().unwrap_or(0) as f64 / 1e6,
        detections.whole(),
        detections.windows(),
        detections.windows_lost()
    );
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("facegate-door: stopped: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// How `check` describes a deny cue's setting: `at` of `all` `what`, or why it is off.
fn cue_setting(at: u8, landmarks: Landmarks, all: usize, what: &str) -> String {
    match (at, landmarks) {
        (0, _) => "off".to_string(),
        (_, Landmarks::Detector) => "off (needs followed landmarks)".to_string(),
        (k, _) => format!("at {k} of {all} {what}"),
    }
}

/// Where `cmd` would be run from: itself when it names a path, else the first match on `PATH`.
fn which(cmd: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(cmd);
    if cmd.contains('/') {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join(cmd)).find(|c| c.is_file()))
}

fn check(common: &Common) -> Result<ExitCode> {
    let c = common.load()?;
    let mut ok = true;
    let mut line = |good: bool, what: &str, detail: String| {
        ok &= good;
        println!("{} {what:<10} {detail}", if good { "ok  " } else { "FAIL" });
    };
    match source::list_cameras() {
        Ok(cams) => line(true, "cameras", if cams.is_empty() { "none found".into() } else { cams.join("; ") }),
        Err(e) => line(false, "cameras", e.to_string()),
    }
    let src = source::open(&c.source);
    line(src.is_ok(), "source", src.as_ref().map(|s| s.describe()).unwrap_or_else(|e| e.to_string()));
    drop(src);
    match pipeline(&c) {
        Ok(p) => {
            let card = p.encoder.card();
            line(
                true,
                "model",
                format!("{} ({}-d, fingerprint {})", card.name, card.embedding_dim.get(), card.fingerprint),
            );
            let (w, h) = c.model.canvas;
            let sides = p.finder.detector.window_sides();
            line(
                true,
                "detector",
                match sides.last() {
                    Some(_) => format!(
                        "YuNet on {w}x{h}; windows of {} px around the last face, the whole canvas at least every {} frames",
                        sides.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("/"),
                        c.model.roi_refresh
                    ),
                    None => format!("YuNet on {w}x{h}, the whole canvas every frame"),
                },
            );
            match store(&c, &p, Access::ReadOnly) {
                Ok(mut s) => {
                    let g = s.matcher().gallery();
                    line(
                        true,
                        "gallery",
                        format!(
                            "revision {}, {} members, signed by a trusted key, same encoder and preprocessing",
                            g.revision,
                            g.members().len()
                        ),
                    );
                    let policy = DoorSettings::from_config(&c).policy(g.threshold);
                    line(
                        policy.is_ok(),
                        "threshold",
                        match policy {
                            Ok(p) => format!("{} (signed {})", p.threshold().get(), g.threshold.get()),
                            Err(e) => format!("config `decision.threshold`: {e}"),
                        },
                    );
                    for note in s.take_notes() {
                        println!("WARN {:<10} {note}", "gallery");
                    }
                }
                Err(e) => match e.downcast_ref::<StoreError>() {
                    // Not a fault: `run` starts with the lock secured and waits for one.
                    Some(StoreError::NoGallery(why)) => line(
                        true,
                        "gallery",
                        format!(
                            "none yet ({why}): the door starts locked and waits for a signed gallery{}",
                            if c.gallery.pull.is_some() { " from gallery.url" } else { " in the inbox" }
                        ),
                    ),
                    _ => line(false, "gallery", facegate_shared::error_chain(&*e)),
                },
            }
        }
        Err(e) => line(false, "model", facegate_shared::error_chain(&*e)),
    }
    if c.lock.kind == LockKind::Command {
        // Never run the relay command from `check`: it may be shared with a running door.
        line(true, "lock", format!("command {} (not run by check)", c.lock.command.join(" ")));
    } else {
        match open_lock(&c) {
            Ok(mut l) => {
                let r = l.secure();
                line(r.is_ok(), "lock", format!("{} (secured, not opened)", l.describe()));
            }
            Err(e) => line(false, "lock", e.to_string()),
        }
    }
    match c.liveness.mode {
        LivenessMode::Off => line(true, "liveness", "off".into()),
        LivenessMode::Passive => line(
            true,
            "liveness",
            format!(
                "passive 3-D test (experimental) on {} landmarks, threshold {} eye distances; ring deny cue {}; border deny cue {}",
                c.liveness.check.landmarks.name(),
                c.liveness.check.threshold,
                cue_setting(c.liveness.check.ring_deny, c.liveness.check.landmarks, facegate_face::ring::RING.len(), "points"),
                cue_setting(c.liveness.check.border_deny, c.liveness.check.landmarks, 3, "edges"),
            ),
        ),
        LivenessMode::Challenge => {
            // not run by check either (it would show an arrow to nobody); it must be there
            let cmd = &c.liveness.challenge_command[0];
            let found = which(cmd);
            line(
                found.is_some(),
                "liveness",
                match found {
                    Some(p) => format!(
                        "challenge through {} left|right (not run by check); {} failed challenges within {} s lock a member out",
                        p.display(),
                        c.liveness.challenge_max_failures,
                        c.liveness.challenge_lockout.as_secs()
                    ),
                    None => format!("challenge command {cmd} not found"),
                },
            );
        }
    }
    let dir = c.log.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let writable = tempfile_in(dir);
    line(writable.is_ok(), "log", format!("{}: {}", c.log.path.display(), writable.err().unwrap_or("writable".into())));
    println!("{}", if ok { "ready" } else { "NOT READY" });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn secure(common: &Common) -> Result<ExitCode> {
    let c = common.load()?;
    let mut lock = open_lock(&c)?;
    match lock.secure() {
        Ok(()) => {
            println!("secured: {}", lock.describe());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("facegate-door: securing the lock failed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn tempfile_in(dir: &std::path::Path) -> std::result::Result<(), String> {
    let probe = dir.join(format!(".facegate-door-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("not writable: {e}"))?;
    std::fs::remove_file(&probe).map_err(|e| e.to_string())
}

fn stats(mut v: Vec<f64>) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    v.sort_by(f64::total_cmp);
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    serde_json::json!({
        "median_ms": r(percentile(&v, 0.5)),
        "p99_ms": r(percentile(&v, 0.99)),
        "n": v.len(),
    })
}

/// Frames per second over `frames` frames (cycling `images`) on `threads` threads sharing `p`'s
/// plans (each thread its own window detector): each frame detected, aligned, encoded and
/// matched, as the door does.
fn stream_fps(
    p: &Pipeline,
    st: &GalleryStore,
    policy: &facegate_shared::DecisionPolicy,
    images: &[source::Frame],
    frames: usize,
    threads: usize,
) -> Result<f64> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let today = facegate_shared::Date::today();
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let p = worker_pipeline(p, threads);
                let next = &next;
                s.spawn(move || -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= frames {
                            return Ok(());
                        }
                        match p.embed_largest(&images[i % images.len()].image) {
                            Ok(Some(face)) => {
                                st.matcher().identify(&face.embedding, policy, today)?;
                            }
                            Ok(None) | Err(FaceError::NoFace) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow::anyhow!("a bench thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(frames as f64 / started.elapsed().as_secs_f64())
}

fn bench(common: &Common, frames: usize, threads: usize, json: bool) -> Result<ExitCode> {
    let mut c = common.load()?;
    c.source.pace = false;
    if matches!(c.source.uri, SourceUri::Image(_)) {
        c.source.repeat = 1;
    }
    let p = pipeline(&c)?;
    let st = store(&c, &p, Access::ReadOnly)?;
    let mut src = source::open(&c.source)?;
    let mut images = Vec::new();
    // Gives up on a source that stops delivering: a missing camera, or nothing but bad frames.
    const MAX_CONSECUTIVE_ERRORS: u32 = 20;
    let mut errors = 0;
    while images.len() < frames.min(500) {
        match src.next_frame() {
            Ok(Some(f)) => {
                errors = 0;
                images.push(f)
            }
            Ok(None) => break,
            Err(e @ source::SourceError::Fatal(_)) => anyhow::bail!("frame source: {e}"),
            Err(e) => {
                errors += 1;
                eprintln!("skipping: {e}");
                anyhow::ensure!(
                    errors < MAX_CONSECUTIVE_ERRORS,
                    "the source failed {errors} times in a row, giving up (last: {e})"
                );
                if matches!(e, source::SourceError::Unavailable(_)) {
                    std::thread::sleep(Duration::from_millis(100));
                    let _ = src.reconnect();
                }
            }
        }
    }
    anyhow::ensure!(!images.is_empty(), "the source gave no frames to measure");
    let policy = DoorSettings::from_config(&c).policy(st.matcher().gallery().threshold)?;
    let today = facegate_shared::Date::today();
    let (mut det, mut ali, mut enc, mut mat, mut total) = (vec![], vec![], vec![], vec![], vec![]);
    // detection split by where it ran: the whole canvas, or a window around the last face
    let (mut det_whole, mut det_window) = (vec![], vec![]);
    // the passive liveness test on followed landmarks, when the config turns it on: per frame,
    // the image around the face cut, followed into each kept frame and back (with the ring and
    // border tests), and the verdict; timed on its own as well as inside the frame's total
    let passive =
        DoorSettings::from_config(&c).liveness.and_then(|l| l.passive).filter(|p| p.landmarks == Landmarks::Followed);
    let (mut followed, mut live) = (Followed::default(), vec![]);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    p.finder.detector.reset();
    for i in 0..frames {
        let f = &images[i % images.len()];
        // The door's own path (`FaceEmbedder::embed` calls `embed_largest`, which is this
        // method without the timings), then the match, timed as a whole and per stage.
        let t = Instant::now();
        let (face, stages) = match p.embed_largest_timed(&f.image) {
            // the largest face could not be aligned (degenerate landmarks): not measured
            Err(FaceError::NoFace) => continue,
            r => r?,
        };
        det.push(ms(stages.detect));
        match p.finder.detector.last_path() {
            DetectPath::Whole => det_whole.push(ms(stages.detect)),
            DetectPath::Window(_) => det_window.push(ms(stages.detect)),
        }
        if let Some(face) = face {
            ali.extend(stages.align.map(ms));
            enc.extend(stages.encode.map(ms));
            let tm = Instant::now();
            st.matcher().identify(&face.embedding, &policy, today)?;
            mat.push(ms(tm.elapsed()));
            if let Some(check) = passive {
                let tl = Instant::now();
                let l = face.detection.landmarks;
                followed.push_on(l, FacePatch::cut(&f.image, &l), threads);
                std::hint::black_box(check.judge_appearance(&followed, usize::MAX));
                live.push(ms(tl.elapsed()));
            }
        }
        total.push(ms(t.elapsed()));
    }
    anyhow::ensure!(!total.is_empty(), "no frame could be measured (every face failed to align)");
    let med_total = {
        let mut v = total.clone();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    // throughput: one thread, then `threads`, back to back on the same frames
    let one = stream_fps(&p, &st, &policy, &images, frames, 1)?;
    let many = if threads > 1 { stream_fps(&p, &st, &policy, &images, frames, threads)? } else { one };
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    let out = serde_json::json!({
        "frames": frames,
        "distinct_frames": images.len(),
        "faces": enc.len(),
        "gallery_members": st.matcher().gallery().members().len(),
        "frame_size": [images[0].image.width(), images[0].image.height()],
        "arch": std::env::consts::ARCH,
        "canvas": [c.model.canvas.0, c.model.canvas.1],
        "threads": 1,
        "detect": stats(det),
        "roi_refresh": c.model.roi_refresh,
        "window_sides": p.finder.detector.window_sides(),
        "detect_whole": stats(det_whole),
        "detect_window": stats(det_window),
        "align": stats(ali),
        "encode": stats(enc),
        "match": stats(mat),
        "frame_to_decision": stats(total),
        // part of frame_to_decision (the door pays it on every frame of an appearance): the
        // passive test's own cost per frame, against up to `liveness_pairs_per_frame` of the
        // (up to `liveness_kept_frames` − 1) kept frames (null: the config has it off)
        "liveness_per_frame": passive.map(|_| stats(live)),
        "liveness_kept_frames": MAX_FRAMES,
        "liveness_pairs_per_frame": facegate_face::liveness::MAX_PARTNERS,
        // the pairs of a new frame measured on this many threads (the door: `model.threads`)
        "liveness_threads": threads.clamp(1, facegate_face::liveness::MAX_PARTNERS),
        "fps": round2(1000.0 / med_total),
        "stream": {
            "threads": threads,
            "fps_1_thread": round2(one),
            "fps": round2(many),
            "speedup": round2(many / one),
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        "peak_rss_mb": (peak_rss_bytes().unwrap_or(0) as f64 / 1e5).round() / 10.0,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for k in [
            "detect",
            "detect_whole",
            "detect_window",
            "align",
            "encode",
            "match",
            "frame_to_decision",
            "liveness_per_frame",
        ] {
            let v = &out[k];
            if v.is_null() {
                continue;
            }
            println!("{k:<18} median {:>9} ms   p99 {:>9} ms   (n={})", v["median_ms"], v["p99_ms"], v["n"]);
        }
        println!("{:<18} {} frames/s end to end; peak RSS {} MB", "throughput", out["fps"], out["peak_rss_mb"]);
        let st = &out["stream"];
        println!(
            "{:<18} {} frames/s on 1 thread, {} on {} ({}x; {} cores); canvas {}x{}",
            "stream",
            st["fps_1_thread"],
            st["fps"],
            threads,
            st["speedup"],
            st["cores"],
            c.model.canvas.0,
            c.model.canvas.1
        );
    }
    Ok(ExitCode::SUCCESS)
}
