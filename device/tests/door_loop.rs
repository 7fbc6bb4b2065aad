//! The door loop with fakes: scripted frames, label-keyed embeddings, a fake lock and an
//! in-memory event log, against real signed gallery files in a temporary folder.

use facegate_device::config::Mode;
use facegate_device::door::{LabelEmbedder, ScriptedClaims};
use facegate_device::events::{Event, EventKind, MemorySink};
use facegate_device::lock::FakeLock;
use facegate_device::source::{Frame, ScriptedSource, SourceErrorKind};
use facegate_device::store::{GalleryStore, StoreError};
use facegate_device::{Door, DoorSettings};
use facegate_shared::{
    gallery_file, Date, Embedding, EmbeddingDim, Fingerprint, Gallery, GalleryError, Member, MemberId, SigningKey,
    Threshold, Validity,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const DIM: usize = 8;
const ENCODER: Fingerprint = Fingerprint([7; 32]);

fn unit(i: usize) -> Embedding {
    let mut v = vec![0.0; DIM];
    v[i] = 1.0;
    Embedding::new(v).unwrap()
}

fn member(id: &str, axis: usize, validity: Validity) -> Member {
    Member {
        id: MemberId::new(id).unwrap(),
        name: format!("Member {id}"),
        validity,
        enrolled_at: 0,
        embeddings: vec![unit(axis)],
    }
}

fn gallery(revision: u64, members: &[(&str, usize)]) -> Gallery {
    let mut g = Gallery::new(ENCODER, EmbeddingDim::new(DIM).unwrap(), Threshold::new(0.5).unwrap());
    g.revision = revision;
    for (id, axis) in members {
        let validity = if *id == "E" {
            Validity { from: None, until: Some(Date::parse("2000-01-01").unwrap()), active: true }
        } else {
            Validity::OPEN
        };
        g.add(member(id, *axis, validity)).unwrap();
    }
    g
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

struct Fixture {
    _dir: tempfile::TempDir,
    gallery: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new(g: &Gallery) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { gallery: dir.path().join("gallery.fgg"), state: dir.path().join("door.state"), _dir: dir };
        f.write(g, &key(1));
        f
    }
    fn write(&self, g: &Gallery, k: &SigningKey) {
        gallery_file::save(&self.gallery, g, Some(k)).unwrap();
    }
    fn store(&self) -> Result<GalleryStore, StoreError> {
        GalleryStore::open(&self.gallery, &self.state, vec![key(1).verifying_key()], ENCODER)
    }
}

fn embedder() -> LabelEmbedder {
    let mut m = std::collections::HashMap::new();
    for (label, axis) in [("a", 0), ("b", 1), ("e", 4), ("x", 7), ("y", 6)] {
        m.insert(label.to_owned(), Some(unit(axis)));
    }
    m.insert("none".into(), None);
    LabelEmbedder(m)
}

fn settings() -> DoorSettings {
    DoorSettings {
        mode: Mode::Identify,
        consecutive_frames: 3,
        cooldown: Duration::from_secs(2),
        unlock: Duration::from_secs(1),
        ambiguity_margin: 0.05,
        threshold: None,
        claim_timeout: Duration::from_secs(1),
        reload_interval: Duration::ZERO,
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        faces_dir: None,
    }
}

type TestDoor = Door<ScriptedSource, LabelEmbedder, FakeLock, MemorySink>;

fn door(f: &Fixture) -> TestDoor {
    let mut d = Door::new(
        ScriptedSource::default(),
        embedder(),
        FakeLock::default(),
        MemorySink::default(),
        f.store().unwrap(),
        settings(),
    );
    d.sleep = Box::new(|_| {});
    d
}

/// Appends frames named by `labels`, 100 ms apart, continuing the frame clock from `start`.
fn feed(d: &mut TestDoor, start_ms: u64, labels: &[&str]) {
    for (i, l) in labels.iter().enumerate() {
        d.source.steps.push_back(Ok(Frame {
            image: image::RgbImage::new(1, 1),
            at: Duration::from_millis(start_ms + 100 * i as u64),
            label: (*l).to_owned(),
        }));
    }
}

fn run(d: &mut TestDoor) {
    d.run(&AtomicBool::new(false)).unwrap();
}

fn decisions(d: &TestDoor) -> Vec<(String, Option<String>, Option<String>)> {
    d.sink
        .events
        .iter()
        .filter(|e| e.event == EventKind::Decision)
        .map(|e| (e.decision.unwrap().to_owned(), e.member.clone(), e.reason.clone()))
        .collect()
}

fn kinds(d: &TestDoor, k: EventKind) -> Vec<&Event> {
    d.sink.events.iter().filter(|e| e.event == k).collect()
}

fn granted(id: &str) -> (String, Option<String>, Option<String>) {
    ("granted".into(), Some(id.into()), None)
}

#[test]
fn grant_needs_n_agreeing_frames_and_happens_once_per_appearance() {
    let f = Fixture::new(&gallery(1, &[("A", 0), ("B", 1)]));
    let mut d = door(&f);
    feed(&mut d, 0, &["a", "a"]);
    run(&mut d);
    assert_eq!(d.lock.unlocks, 0, "two frames are not enough");
    assert!(decisions(&d).is_empty());

    let mut d = door(&f);
    feed(&mut d, 0, &["a", "a", "a", "a", "a", "a"]);
    run(&mut d);
    assert_eq!(d.lock.unlocks, 1);
    assert_eq!(decisions(&d), vec![granted("A")]);
    let ev = kinds(&d, EventKind::Decision)[0];
    assert_eq!(ev.frame.as_deref(), Some("a"));
    assert!(ev.distance.unwrap() < 1e-6 && ev.latency_ms.is_some());
    assert!(!d.lock.open, "the lock is secured at the end of the run");
    assert_eq!(d.summary.faces, 6);
}

#[test]
fn alternating_members_never_open_the_door() {
    let f = Fixture::new(&gallery(1, &[("A", 0), ("B", 1)]));
    let mut d = door(&f);
    feed(&mut d, 0, &["a", "b", "a", "b", "a", "b", "a", "none", "a", "a"]);
    run(&mut d);
    assert_eq!(d.lock.unlocks, 0);
    assert!(decisions(&d).is_empty(), "{:?}", decisions(&d));
}

#[test]
fn strangers_and_expired_members_are_denied_with_their_reason() {
    let f = Fixture::new(&gallery(1, &[("A", 0), ("E", 4)]));
    let mut d = door(&f);
    feed(&mut d, 0, &["x", "x", "x", "x", "none", "e", "e", "e"]);
    run(&mut d);
    assert_eq!(d.lock.unlocks, 0);
    assert_eq!(
        decisions(&d),
        vec![
            ("denied".into(), None, Some("unknown".into())),
            ("denied".into(), Some("E".into()), Some("expired".into())),
        ]
    );
    assert_eq!(d.summary.denied, 2);
}

#[test]
fn two_strangers_in_a_row_get_a_denial_each() {
    let f = Fixture::new(&gallery(1, &[("A", 0)]));
    let mut d = door(&f);
    feed(&mut d, 0, &["x", "x", "x", "y", "y", "y", "x", "y", "x"]);
    run(&mut d);
    let unknown = ("denied".to_owned(), None, Some("unknown".to_owned()));
    assert_eq!(decisions(&d), vec![unknown.clone(), unknown]);
}

#[test]
fn ambiguous_faces_are_denied() {
    let mut g = gallery(1, &[("A", 0)]);
    let twin = Embedding::new(vec![0.999, 0.04, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
    g.add(Member { embeddings: vec![twin], ..member("T", 0, Validity::OPEN) }).unwrap();
    let f = Fixture::new(&g);
    let mut d = door(&f);
    feed(&mut d, 0, &["a", "a", "a"]);
    run(&mut d);
    assert_eq!(d.lock.unlocks, 0);
    assert_eq!(decisions(&d)[0].2.as_deref(), Some("ambiguous"));
}

#[test]
fn a_member_is_not_granted_again_within_the_cooldown() {
    let f = Fixture::new(&gallery(1, &[("A", 0)]));
    let mut d = door(&f);
    feed(&mut d, 0, &["a", "a", "a", "none"]); // grant at 0.2 s, cooldown to 2.2 s
    feed(&mut d, 400, &["a", "a", "a", "none"]); // 0.4–0.6 s: inside the cooldown
    feed(&mut d, 2500, &["a", "a", "a"]); // after it
    run(&mut d);
    assert_eq!(d.lock.unlocks, 2);
    assert_eq!(decisions(&d), vec![granted("A"), granted("A")]);
}

#[test]
fn the_lock_is_secured_when_the_unlock_period_ends() {
    let f = Fixture::new(&gallery(1, &[("A", 0)]));
    let mut d = door(&f);
    feed(&mut d, 0, &["a", "a", "a"]); // open at 0.2 s for 1 s
    feed(&mut d, 300, &["none", "none"]);
    d.run(&AtomicBool::new(false)).unwrap();
    let secures_while_open = d.lock.secures;
    // Run again with a frame after the unlock period: a secure happens before the end-of-run one.
    let mut d2 = door(&f);
    feed(&mut d2, 0, &["a", "a", "a"]);
    feed(&mut d2, 1300, &["none"]);
    d2.run(&AtomicBool::new(false)).unwrap();
    assert_eq!(d2.lock.secures, secures_while_open + 1);
}

#[test]
fn lock_failure_keeps_the_door_locked_and_is_logged() {
    let f = Fixture::new(&gallery(1, &[("A", 0)]));
    let mut d = door(&f);
    d.lock.fail_unlock = true;
    feed(&mut d, 0, &["a", "a", "a"]);
    run(&mut d);
    assert!(!d.lock.open);
    assert_eq!(d.summary.granted, 0);
    assert_eq!(d.summary.lock_failures, 1);
    let lock_events = kinds(&d, EventKind::Lock);
    assert_eq!(lock_events.len(), 1);
    assert_eq!(lock_events[0].reason.as_deref(), Some("lock_failed"));
    assert_eq!(lock_events[0].member.as_deref(), Some("A"));
}

#[test]
fn a_grant_that_cannot_be_logged_does_not_open_the_door() {
    let f = Fixture::new(&gallery(1, &[("A", 0)]));
    let mut d = door(&f);
    d.sink.fail = true;
    feed(&mut d, 0, &["a", "a", "a"]);
    run(&mut d);
    assert_eq!(d.lock.unlocks, 0);
    assert!(d.summary.log_failures >= 1);
}

#[test]
fn camera_failure_locks_backs_off_and_recovers() {
    let f = Fixture::new(&gallery(1, &[("A", 0)]));
    let mut d = door(&f);
    let slept = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let s2 = slept.clone();
    d.sleep = Box::new(move |t| s2.borrow_mut().push(t));
    feed(&mut d, 0, &["a", "a"]);
    for _ in 0..4 {
        d.source.steps.push_back(Err(SourceErrorKind::Unavailable));
    }
    d.source.steps.push_back(Err(SourceErrorKind::BadFrame));
    feed(&mut d, 5000, &["a", "a", "a"]);
    d.source.reconnect_failures = 2;
    let secures_before = d.lock.secures;
    run(&mut d);
    // Two frames before the outage do not count towards the three after it.
    assert_eq!(d.lock.unlocks, 1);
    assert_eq!(d.summary.source_outages, 1);
    assert_eq!(d.summary.bad_frames, 1);
    assert_eq!(d.source.reconnects, 4);
    let waits: Vec<u128> = slept.borrow().iter().map(|t| t.as_millis()).collect();
    assert_eq!(waits, vec![1, 2, 4, 4], "exponential back-off, capped");
    assert!(d.lock.secures > secures_before + 2, "secured at start, during the outage and at exit");
    let src: Vec<String> = kinds(&d, EventKind::Source).iter().map(|e| e.detail.clone().unwrap()).collect();
    assert_eq!(src.len(), 3, "{src:?}");
    assert!(src[0].contains("unavailable") && src[1].contains("bad frame") && src[2].contains("recovered"), "{src:?}");
}

#[test]
fn hot_reload_installs_a_newer_gallery_and_rejects_bad_ones() {
    let f = Fixture::new(&gallery(1, &[("A", 0)]));
    let mut d = door(&f);
    d.settings.cooldown = Duration::from_millis(500);
    feed(&mut d, 0, &["b", "b", "b", "none"]);
    run(&mut d);
    assert_eq!(decisions(&d), vec![("denied".into(), None, Some("unknown".into()))]);

    // A newer signed gallery with B appears: installed without a restart.
    f.write(&gallery(2, &[("A", 0), ("B", 1)]), &key(1));
    feed(&mut d, 1000, &["b", "b", "b", "none"]);
    run(&mut d);
    assert_eq!(d.store.revision(), 2);
    assert_eq!(d.summary.gallery_reloads, 1);
    assert_eq!(decisions(&d).last().unwrap(), &granted("B"));
    assert_eq!(std::fs::read_to_string(&f.state).unwrap(), "facegate-door state v1\nrevision 2\n");

    // Tampered, untrusted, replayed-older and wrong-encoder files are all rejected; B still gets in.
    let good = std::fs::read(&f.gallery).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 0x40;
    let old = gallery_file::encode(&gallery(1, &[("A", 0)]), Some(&key(1))).unwrap();
    let mut other = gallery(3, &[("A", 0), ("B", 1)]);
    other.encoder = Fingerprint([9; 32]);
    let wrong_encoder = gallery_file::encode(&other, Some(&key(1))).unwrap();
    let untrusted = gallery_file::encode(&gallery(5, &[("X", 7), ("Y", 6)]), Some(&key(2))).unwrap();
    let cases: [(&[u8], &str); 4] =
        [(&bad, "checksum"), (&untrusted, "untrusted"), (&old, "older"), (&wrong_encoder, "encoder")];
    for (i, (bytes, why)) in cases.into_iter().enumerate() {
        gallery_file::write_atomic(&f.gallery, bytes).unwrap();
        let t = 2000 + 1000 * i as u64;
        feed(&mut d, t, &["b", "b", "b", "none"]);
        let before = d.summary.gallery_rejections;
        run(&mut d);
        assert_eq!(d.summary.gallery_rejections, before + 1, "{why}");
        let last = kinds(&d, EventKind::Gallery).last().unwrap().detail.clone().unwrap();
        assert!(last.to_lowercase().contains(why), "{why}: {last}");
        assert_eq!(d.store.revision(), 2);
    }
    assert_eq!(d.lock.unlocks, 5, "B is granted once per appearance with the last good gallery");
}

#[test]
fn claim_mode_checks_only_the_claimed_member() {
    let f = Fixture::new(&gallery(1, &[("A", 0), ("B", 1)]));
    let mut d = door(&f);
    d.settings.mode = Mode::Claim;
    d.claims = Some(Box::new(ScriptedClaims(
        [
            (Duration::from_millis(0), "A".to_owned()),
            (Duration::from_millis(1000), "B".to_owned()),
            (Duration::from_millis(3000), "nobody".to_owned()),
        ]
        .into(),
    )));
    feed(&mut d, 0, &["a", "a", "a"]); // claim A, face A: granted
    feed(&mut d, 500, &["a", "a", "a"]); // no claim: faces ignored
    feed(&mut d, 1000, &["a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a"]); // claim B, face A: times out at 2 s
    feed(&mut d, 3000, &["a"]);
    run(&mut d);
    assert_eq!(d.lock.unlocks, 1);
    assert_eq!(
        decisions(&d),
        vec![
            granted("A"),
            ("denied".into(), Some("B".into()), Some("unknown".into())),
            ("denied".into(), Some("B".into()), Some("timeout".into())),
            ("denied".into(), None, Some("unknown_id".into())),
        ]
    );
    assert_eq!(d.summary.faces, 3 + 10, "frames without an active claim are not processed");
}

#[test]
fn the_door_refuses_to_start_without_a_trusted_current_gallery() {
    let g = gallery(3, &[("A", 0)]);
    let f = Fixture::new(&g);
    assert!(f.store().is_ok());
    let expect = |r: Result<GalleryStore, StoreError>, want: fn(&GalleryError) -> bool| match r {
        Err(StoreError::Gallery { source, .. }) => assert!(want(&source), "{source}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    };
    // Older than what this unit installed (state says 3).
    f.write(&gallery(2, &[("A", 0)]), &key(1));
    expect(f.store(), |e| matches!(e, GalleryError::Rollback { installed: 3, offered: 2 }));
    gallery_file::save(&f.gallery, &g, None).unwrap();
    expect(f.store(), |e| matches!(e, GalleryError::Unsigned));
    f.write(&g, &key(2));
    expect(f.store(), |e| matches!(e, GalleryError::UntrustedKey { .. }));
    f.write(&g, &key(1));
    let r = GalleryStore::open(&f.gallery, &f.state, vec![key(1).verifying_key()], Fingerprint([1; 32]));
    expect(r, |e| matches!(e, GalleryError::EncoderMismatch { .. }));
    std::fs::remove_file(&f.gallery).unwrap();
    expect(f.store(), |e| matches!(e, GalleryError::Io { .. }));
    assert!(Path::new(&f.state).exists());
}

#[test]
fn stop_request_secures_the_lock_and_logs_the_stop() {
    let f = Fixture::new(&gallery(1, &[("A", 0)]));
    let mut d = door(&f);
    feed(&mut d, 0, &["a", "a", "a"]);
    let s = d.run(&AtomicBool::new(true)).unwrap();
    assert_eq!(s.frames, 0);
    assert!(!d.lock.open);
    let stop = kinds(&d, EventKind::Stop);
    assert!(stop[0].detail.as_deref().unwrap().starts_with("stop requested; 0 frames"), "{stop:?}");
}
