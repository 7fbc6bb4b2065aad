//! Several doors: two real `facegate-door` processes pull signed galleries from a real HTTP server
//! on loopback (`gallery.url`, 2 s fetch interval). They start without a gallery (lock secured, nothing
//! published yet) and install the first one published; a member removed and the gallery republished is denied
//! by both; the server answers 304 while nothing changes; a stopped server is logged once and
//! recovered from while the doors keep deciding; a truncated download, a file over the size cap,
//! a file signed by another key, an older revision and a slow server are each refused and logged,
//! the last good gallery kept and no partial file installed. The metrics file agrees with the
//! event log, and `facegate-door status` reads it.

use facegate_tests::door::{events, set_up_people};
use facegate_tests::http::{Behaviour, FileServer};
use facegate_tests::{ok, orl_photo, run, split};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FETCH_MS: u64 = 2000;

/// One door's folder and process.
struct DoorUnit {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl DoorUnit {
    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
    fn log(&self) -> Vec<serde_json::Value> {
        let p = self.dir.path().join("events.jsonl");
        if p.exists() {
            events(&p)
        } else {
            Vec::new()
        }
    }
    fn gallery_events(&self) -> Vec<String> {
        self.log()
            .iter()
            .filter(|e| e["event"] == "gallery")
            .map(|e| format!("{} {}", e["reason"].as_str().unwrap_or("-"), e["detail"].as_str().unwrap_or("")))
            .collect()
    }
    fn stop(&mut self) -> String {
        let c = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "door exit: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for DoorUnit {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A door replaying one photo of `face` forever at 10 frames/s, pulling from `url`.
fn start_door(url: &str, public: &str, face: &Path) -> DoorUnit {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("inbox")).unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let config = format!(
        "[model]\nencoder = \"models/facegate-default.onnx\"\n\
         [gallery]\ninbox = {:?}\nstate_dir = {:?}\ntrusted_keys = [{public:?}]\nreload_interval_ms = 200\n\
         max_bytes = 1048576\nurl = {url:?}\nfetch_interval_ms = {FETCH_MS}\nfetch_timeout_ms = 1500\n\
         [source]\nuri = \"image:{}\"\nfps = 10\nrepeat = 100000\n\
         [decision]\nconsecutive_frames = 2\ncooldown_ms = 1000\n\
         [lock]\nkind = \"dry-run\"\n\
         [log]\npath = {:?}\n\
         [metrics]\npath = {:?}\ninterval_ms = 500\n",
        p("inbox/gallery.fgg"),
        p("state"),
        face.display(),
        p("events.jsonl"),
        p("door.prom"),
    );
    std::fs::write(dir.path().join("door.toml"), config).unwrap();
    let child = Command::new(facegate_tests::bin("facegate-door"))
        .current_dir(facegate_tests::root())
        .args(["run", "--config", &p("door.toml")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("facegate-door starts");
    DoorUnit { dir, child: Some(child) }
}

/// Waits until `cond` holds for every door (checked every 100 ms), up to `limit`.
fn wait_for(doors: &[&DoorUnit], limit: Duration, what: &str, cond: impl Fn(&DoorUnit) -> bool) -> Duration {
    let t = Instant::now();
    loop {
        if doors.iter().all(|d| cond(d)) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}\n{}",
            doors.iter().map(|d| d.gallery_events().join("\n")).collect::<Vec<_>>().join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has_gallery_event(d: &DoorUnit, reason: &str, detail: &str) -> bool {
    d.gallery_events().iter().any(|l| l.starts_with(reason) && l.contains(detail))
}

fn count_gallery_events(d: &DoorUnit, reason: &str) -> usize {
    d.gallery_events().iter().filter(|l| l.starts_with(reason)).count()
}

/// Decisions about `member` logged after `since` (Unix ms): (decision, event time ms).
fn decisions_after(d: &DoorUnit, since_ms: u128) -> Vec<(String, String, u128)> {
    d.log()
        .iter()
        .filter(|e| e["event"] == "decision")
        .map(|e| {
            (
                e["decision"].as_str().unwrap().to_owned(),
                e["member"].as_str().unwrap_or("").to_owned(),
                rfc3339_ms(e["time"].as_str().unwrap()),
            )
        })
        .filter(|(_, _, t)| *t >= since_ms)
        .collect()
}

/// `2026-11-30T10:00:00.123Z` → Unix ms.
fn rfc3339_ms(s: &str) -> u128 {
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, ms) = time.split_once('.').unwrap();
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // days from civil (Howard Hinnant's algorithm)
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000 + ms.parse::<i64>().unwrap()) as u128
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

fn revision(d: &DoorUnit) -> Option<u64> {
    let text = std::fs::read_to_string(d.path("door.prom")).ok()?;
    let m = facegate_shared::prometheus::parse(&text).ok()?;
    facegate_shared::prometheus::value_of(&m, "facegate_door_gallery_revision", &[]).map(|v| v as u64)
}

fn metric(d: &DoorUnit, name: &str) -> f64 {
    let text = std::fs::read_to_string(d.path("door.prom")).unwrap();
    let m = facegate_shared::prometheus::parse(&text).unwrap();
    facegate_shared::prometheus::value_of(&m, name, &[]).unwrap_or_else(|| panic!("{name} in {text}"))
}

#[test]
fn two_doors_pull_galleries_deny_a_removed_member_and_survive_a_bad_server() {
    let people = split("test");
    let (members, strangers) = (people[..3].to_vec(), people[3..4].to_vec());
    // Keys and a gallery of three members (ORL-trained encoder), from the door fixture.
    let u = set_up_people(&members, &strangers);
    let (secret, public, gallery) = (u.path("k.secret"), u.path("k.pub"), u.path("inbox/gym.fgg"));
    let site = tempfile::tempdir().unwrap();
    let publish =
        || ok(&run("facegate", &["gallery", "publish", &gallery, site.path().to_str().unwrap(), "--trust", &public]));
    let server = FileServer::start(site.path());
    let url = server.url("gallery.fgg");

    // Two doors start with empty inboxes and nothing published yet (404): locked, waiting, the
    // failed fetch logged, metrics saying revision 0. The face in front of both is member 0.
    let face = orl_photo(&members[0], 4);
    let doors = [start_door(&url, &public, &face), start_door(&url, &public, &face)];
    let d = [&doors[0], &doors[1]];
    wait_for(&d, Duration::from_secs(30), "waiting, fetch failed, metrics written", |x| {
        has_gallery_event(x, "waiting", "door locked")
            && has_gallery_event(x, "fetch_failed", "404")
            && revision(x) == Some(0)
    });
    assert!(d.iter().all(|x| x.log().iter().all(|e| e["event"] != "decision")), "no decision without a gallery");
    publish();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(site.path().join("gallery.json")).unwrap()).unwrap();
    let rev1 = manifest["revision"].as_u64().unwrap();
    assert_eq!(manifest["members"], 3);
    wait_for(&d, Duration::from_secs(30), "first gallery installed", |x| {
        has_gallery_event(x, "-", &format!("installed revision {rev1}"))
    });
    wait_for(&d, Duration::from_secs(30), "member 0 let in", |x| {
        decisions_after(x, 0).iter().any(|(dec, m, _)| dec == "granted" && *m == members[0])
    });

    // Nothing changes: conditional GETs answered 304.
    std::thread::sleep(Duration::from_millis(2 * FETCH_MS + 500));
    let c = server.counts();
    assert!(c.not_modified >= 2, "the doors ask conditionally: {c:?}");
    assert_eq!(c.ok, 2, "one download per door: {c:?}");

    // Revocation: remove member 0, publish; both doors deny them.
    let t0 = now_ms();
    let started = Instant::now();
    ok(&run("facegate", &["members", "--gallery", &gallery, "--key", &secret, "remove", &members[0]]));
    publish();
    let rev2 = rev1 + 1;
    wait_for(&d, Duration::from_secs(20), "member 0 denied after removal", |x| {
        decisions_after(x, t0).iter().any(|(dec, _, _)| dec == "denied")
    });
    let latency: Vec<u128> =
        d.iter().map(|x| decisions_after(x, t0).iter().find(|(dec, _, _)| dec == "denied").unwrap().2 - t0).collect();
    eprintln!(
        "revocation: members remove + publish + fetch + install + denial: {latency:?} ms (fetch interval {FETCH_MS} ms; waited {:?})",
        started.elapsed()
    );
    for x in d {
        assert!(has_gallery_event(x, "-", &format!("installed revision {rev2}")), "{:?}", x.gallery_events());
        let after = decisions_after(x, t0);
        let first_denial = after.iter().position(|(dec, _, _)| dec == "denied").unwrap();
        assert!(
            after[first_denial..].iter().all(|(dec, _, _)| dec == "denied"),
            "no grant after the first denial: {after:?}"
        );
    }
    let bytes_before = server.counts().bytes;
    let polls_before = server.counts().not_modified;
    std::thread::sleep(Duration::from_millis(2 * FETCH_MS + 500));
    let c = server.counts();
    let idle_polls = c.not_modified - polls_before;
    assert!(idle_polls >= 2, "{c:?}");
    eprintln!("bytes per poll with nothing new: {}", (c.bytes - bytes_before) / idle_polls);

    // The server goes away: each door logs the outage once, keeps its gallery and keeps deciding.
    let port = server.port();
    server.stop();
    // (the first outage was the 404 before anything was published)
    wait_for(&d, Duration::from_secs(15), "outage logged", |x| count_gallery_events(x, "fetch_failed") == 2);
    let frames_then: Vec<f64> = d.iter().map(|x| metric(x, "facegate_door_frames_total")).collect();
    std::thread::sleep(Duration::from_millis(3 * FETCH_MS));
    for (x, then) in d.iter().zip(frames_then) {
        assert_eq!(count_gallery_events(x, "fetch_failed"), 2, "logged once: {:?}", x.gallery_events());
        assert!(metric(x, "facegate_door_frames_total") > then + 10.0, "still processing frames");
        assert_eq!(revision(x), Some(rev2));
    }
    let server = FileServer::start_on(site.path(), port);
    wait_for(&d, Duration::from_secs(20), "recovery logged", |x| count_gallery_events(x, "fetch_recovered") == 2);

    // A truncated download: refused (a failed fetch), nothing written to the inbox.
    let inbox_before: Vec<Vec<u8>> = d.iter().map(|x| std::fs::read(x.path("inbox/gallery.fgg")).unwrap()).collect();
    ok(&run("facegate", &["members", "--gallery", &gallery, "--key", &secret, "rename", &members[1], "Renamed"]));
    server.set(Behaviour::Truncate);
    publish();
    wait_for(&d, Duration::from_secs(20), "truncated download refused", |x| {
        has_gallery_event(x, "fetch_failed", "truncated")
    });
    for (x, before) in d.iter().zip(&inbox_before) {
        assert_eq!(&std::fs::read(x.path("inbox/gallery.fgg")).unwrap(), before, "no partial file in the inbox");
        assert_eq!(revision(x), Some(rev2));
    }
    // Served whole again: revision 3 is installed.
    server.set(Behaviour::Normal);
    let rev3 = rev2 + 1;
    wait_for(&d, Duration::from_secs(20), "revision 3 installed", |x| {
        has_gallery_event(x, "-", &format!("installed revision {rev3}"))
    });

    // A slow server (over the 1.5 s timeout): a failed fetch, logged once; frames go on.
    server.set(Behaviour::Slow(Duration::from_millis(2500)));
    wait_for(&d, Duration::from_secs(20), "slow server logged", |x| count_gallery_events(x, "fetch_failed") == 4);
    let frames_then: Vec<f64> = d.iter().map(|x| metric(x, "facegate_door_frames_total")).collect();
    std::thread::sleep(Duration::from_millis(FETCH_MS));
    for (x, then) in d.iter().zip(frames_then) {
        assert!(metric(x, "facegate_door_frames_total") > then + 5.0, "frames processed while the fetch hangs");
    }
    server.set(Behaviour::Normal);
    wait_for(&d, Duration::from_secs(30), "recovered from the slow server", |x| {
        count_gallery_events(x, "fetch_recovered") == 4
    });

    // Bad files on the server: each refused and logged, revision 3 kept.
    let served = site.path().join("gallery.fgg");
    let good = std::fs::read(&served).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = {
        // over the 1 MiB cap
        let big = vec![0u8; 2 << 20];
        // signed by another key
        let other = u.dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let (os, op) = (other.join("o.secret"), other.join("o.pub"));
        ok(&run("facegate", &["keys", "init", "--secret", os.to_str().unwrap(), "--public", op.to_str().unwrap()]));
        let og = other.join("g.fgg");
        // a gallery of the stranger, signed by a key the doors do not trust
        facegate_tests::door::enroll_orl(
            og.to_str().unwrap(),
            os.to_str().unwrap(),
            &strangers[0],
            Some("models/facegate-default.onnx"),
        );
        // an older revision (revision 2, which the doors' inboxes held before)
        vec![
            ("fetch_refused", big, "over gallery.max_bytes"),
            ("fetch_refused", std::fs::read(&og).unwrap(), "sign"),
            ("rejected", inbox_before[0].clone(), "older than the installed revision"),
        ]
    };
    for (reason, bytes, detail) in cases {
        let before: Vec<usize> = d.iter().map(|x| count_gallery_events(x, reason)).collect();
        std::fs::write(&served, &bytes).unwrap();
        wait_for(&d, Duration::from_secs(20), &format!("{reason} {detail}"), |x| has_gallery_event(x, reason, detail));
        std::thread::sleep(Duration::from_millis(2 * FETCH_MS));
        for (x, n) in d.iter().zip(&before) {
            assert_eq!(count_gallery_events(x, reason), n + 1, "{reason} {detail}: logged once");
            assert_eq!(revision(x), Some(rev3), "{reason} {detail}");
        }
    }
    std::fs::write(&served, &good).unwrap();

    // The door tells a person what it is doing.
    let status = ok(&run("facegate-door", &["status", "--config", &doors[0].path("door.toml")]));
    assert!(status.contains("running"), "{status}");
    assert!(status.contains(&format!("revision {rev3}")), "{status}");

    // Stopped: the metrics file agrees with the event log.
    let mut doors = doors;
    for x in doors.iter_mut() {
        x.stop();
        let log = x.log();
        let text = std::fs::read_to_string(x.path("door.prom")).unwrap();
        let m = facegate_shared::prometheus::parse(&text).unwrap();
        let v = |name: &str, labels: &[(&str, &str)]| facegate_shared::prometheus::value_of(&m, name, labels);
        let granted = log.iter().filter(|e| e["decision"] == "granted").count() as f64;
        let denied_unknown =
            log.iter().filter(|e| e["decision"] == "denied" && e["reason"] == "unknown").count() as f64;
        let denied = log.iter().filter(|e| e["decision"] == "denied").count() as f64;
        assert_eq!(v("facegate_door_decisions_total", &[("decision", "granted")]), Some(granted));
        assert_eq!(
            v("facegate_door_decisions_total", &[("decision", "denied"), ("reason", "unknown")]),
            Some(denied_unknown)
        );
        let denied_sum: f64 = m
            .iter()
            .filter(|s| {
                s.name == "facegate_door_decisions_total"
                    && s.labels.iter().any(|(k, v)| k == "decision" && v == "denied")
            })
            .map(|s| s.value)
            .sum();
        assert_eq!(denied_sum, denied);
        // installs while running: after the start event (the first gallery is installed before it)
        let start = log.iter().position(|e| e["event"] == "start").unwrap();
        let installs = log[start..]
            .iter()
            .filter(|e| e["event"] == "gallery" && e["detail"].as_str().unwrap_or("").starts_with("installed revision"))
            .count() as f64;
        assert_eq!(v("facegate_door_gallery_installs_total", &[]), Some(installs));
        assert!(v("facegate_door_gallery_fetch_failures_total", &[]).unwrap() >= 4.0);
        assert!(v("facegate_door_gallery_fetch_not_modified_total", &[]).unwrap() >= 2.0);
        assert_eq!(v("facegate_door_gallery_revision", &[]), Some(rev3 as f64));
        let stop = log.last().unwrap();
        assert_eq!(stop["event"], "stop");
        let frames = v("facegate_door_frames_total", &[]).unwrap();
        assert!(stop["detail"].as_str().unwrap().contains(&format!("{frames} frames")), "{stop} vs {frames}");
    }
}
