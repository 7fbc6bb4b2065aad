//! Memory of a long-running door: 100,000 frames (or `--frames N`) through the real door loop,
//! lock supervisor, gallery store and rotating JSON Lines log, with a fake source and embedder so
//! the run takes seconds instead of hours of face inference. Prints JSON with the resident memory
//! at start and after every 10% of the frames: with bounded statistics it stays flat.
//!
//! `cargo run --release -p facegate-device --example soak -- --frames 100000`

use facegate_device::door::LabelEmbedder;
use facegate_device::events::JsonlLog;
use facegate_device::lock::DryRunLock;
use facegate_device::source::{Frame, FrameSource, SourceError};
use facegate_device::store::{Access, GalleryStore, StorePaths};
use facegate_device::{Door, DoorSettings};
use facegate_shared::install::InstallRules;
use facegate_shared::{
    gallery_file, rss_bytes, synthetic, Embedding, EmbeddingDim, Gallery, Member, MemberId, SigningKey, Threshold,
    Validity,
};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Frames cycling through a member, a stranger and an empty frame, with a growing frame clock.
struct Cycle {
    n: u64,
    total: u64,
    checkpoints: Vec<(u64, u64)>,
}

impl FrameSource for Cycle {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.n == self.total {
            return Ok(None);
        }
        self.n += 1;
        if self.n.is_multiple_of((self.total / 10).max(1)) {
            self.checkpoints.push((self.n, rss_bytes().unwrap_or(0)));
        }
        let label = ["a", "a", "a", "x", "x", "x", "none"][(self.n % 7) as usize];
        Ok(Some(Frame {
            image: image::RgbImage::new(1, 1),
            at: Duration::from_millis(100 * self.n),
            label: label.into(),
        }))
    }
    fn describe(&self) -> String {
        "cycle".into()
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 =
        args.iter().position(|a| a == "--frames").and_then(|i| args.get(i + 1)).map_or(Ok(100_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let dim = EmbeddingDim::new(128)?;
    let axis = |i: usize| {
        let mut v = vec![0.0; 128];
        v[i] = 1.0;
        Embedding::new(v)
    };
    let encoder = synthetic::binding(b"soak");
    let mut g = Gallery::new(encoder.clone(), dim, Threshold::new(0.5)?);
    g.revision = 1;
    g.add(Member {
        id: MemberId::new("A")?,
        name: "A".into(),
        validity: Validity::OPEN,
        enrolled_at: 0,
        embeddings: vec![axis(0)?],
    })?;
    let key = SigningKey::from_bytes(&[1; 32]);
    std::fs::create_dir(dir.path().join("inbox"))?;
    let paths = StorePaths { inbox: dir.path().join("inbox/g.fgg"), state_dir: dir.path().join("state") };
    gallery_file::save(&paths.inbox, &g, Some(&key))?;
    let store = GalleryStore::open(&paths, InstallRules::new(vec![key.verifying_key()], encoder), Access::ReadWrite)?;
    let embedder = LabelEmbedder(HashMap::from([
        ("a".to_owned(), Some(axis(0)?)),
        ("x".to_owned(), Some(axis(5)?)),
        ("none".to_owned(), None),
    ]));
    let settings = DoorSettings {
        mode: facegate_device::config::Mode::Identify,
        consecutive_frames: 3,
        face_gap: Duration::from_millis(300),
        cooldown: Duration::from_secs(1),
        unlock: Duration::from_millis(100),
        ambiguity_margin: 0.05,
        threshold: None,
        claim_timeout: Duration::from_secs(10),
        reload_interval: Duration::from_millis(100),
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(5),
        faces_dir: None,
        liveness: None,
    };
    let log = JsonlLog::open(&dir.path().join("events.jsonl"), 1 << 20, 2)?;
    let start_rss = rss_bytes().unwrap_or(0);
    let source = Cycle { n: 0, total, checkpoints: Vec::new() };
    let mut door = Door::new(source, embedder, DryRunLock::default(), log, store, settings)?;
    let t = Instant::now();
    let s = door.run(&AtomicBool::new(false))?;
    let (median, p99) = s.latency_median_p99().unwrap_or((f64::NAN, f64::NAN));
    let mb = |b: u64| (b as f64 / 1e5).round() / 10.0;
    println!(
        "{}",
        serde_json::json!({
            "frames": s.frames,
            "faces": s.faces,
            "granted": s.granted,
            "denied": s.denied,
            "seconds": (t.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "rss_mb_start": mb(start_rss),
            "rss_mb_checkpoints": door.source.checkpoints.iter().map(|(n, b)| serde_json::json!([n, mb(*b)])).collect::<Vec<_>>(),
            "rss_mb_end": mb(rss_bytes().unwrap_or(0)),
            "latency_histogram_bytes": s.latencies.memory_bytes(),
            "latency_median_ms": median,
            "latency_p99_ms": p99,
        })
    );
    Ok(())
}
