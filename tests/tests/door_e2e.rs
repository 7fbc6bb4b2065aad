//! End to end on ORL with the committed default encoder: `facegate` enrols held-out people into a
//! signed gallery, `facegate-door` replays a folder of frames (their other photos, and people
//! never enrolled) with the dry-run lock, and the event log is checked. Needs `make setup`.

use facegate_tests::{ok, orl_photo, run, split};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

struct Unit {
    dir: tempfile::TempDir,
    members: Vec<String>,
    strangers: Vec<String>,
}

impl Unit {
    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
}

/// Keys, a gallery of the first four test people (photos 1–3), a replay folder of their photos
/// 4–10 and all photos of the other test and validation people, and a door config.
fn set_up() -> Unit {
    let test = split("test");
    let (members, rest) = test.split_at(4);
    let strangers: Vec<String> = rest.iter().cloned().chain(split("val")).collect();
    let u = Unit { dir: tempfile::tempdir().unwrap(), members: members.to_vec(), strangers };
    let (secret, public, gallery) = (u.path("k.secret"), u.path("k.pub"), u.path("gym.fgg"));
    ok(&run("facegate", &["keys", "init", "--secret", &secret, "--public", &public]));
    for p in &u.members {
        let photos: Vec<String> = (1..=3).map(|n| orl_photo(p, n).display().to_string()).collect();
        let mut args = vec!["enroll", "--gallery", &gallery, "--key", &secret, "--id", p, "--name", p];
        args.extend(photos.iter().map(String::as_str));
        ok(&run("facegate", &args));
    }
    let frames = u.dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let mut seq = 0;
    let mut add = |person: &str, photos: std::ops::RangeInclusive<u32>| {
        for n in photos {
            seq += 1;
            std::fs::copy(orl_photo(person, n), frames.join(format!("{seq:04}-{person}-{n}.pgm"))).unwrap();
        }
    };
    // Alternate members and strangers so every appearance follows a different person.
    let longest = u.members.len().max(u.strangers.len());
    for i in 0..longest {
        if let Some(m) = u.members.get(i) {
            add(m, 4..=10);
        }
        if let Some(s) = u.strangers.get(i) {
            add(s, 1..=10);
        }
    }
    let config = format!(
        "[gallery]\npath = {gallery:?}\ntrusted_keys = [{public:?}]\n\
         [source]\nuri = \"dir:{}\"\nfps = 5\npace = false\n\
         [decision]\nconsecutive_frames = 2\ncooldown_ms = 3000\n\
         [lock]\nkind = \"dry-run\"\n\
         [log]\npath = {:?}\n",
        frames.display(),
        u.path("events.jsonl"),
    );
    std::fs::write(u.path("door.toml"), config).unwrap();
    u
}

fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
        .collect()
}

#[test]
fn door_grants_enrolled_people_and_denies_everyone_else() {
    let u = set_up();
    let config = u.path("door.toml");
    let check = ok(&run("facegate-door", &["check", "--config", &config]));
    assert!(check.trim_end().ends_with("ready"), "{check}");

    let out = run("facegate-door", &["run", "--config", &config, "--json"]);
    let stdout = ok(&out);
    let log = events(Path::new(&u.path("events.jsonl")));
    assert_eq!(log.first().unwrap()["event"], "start");
    assert_eq!(log.last().unwrap()["event"], "stop");
    assert_eq!(stdout.lines().count(), log.len(), "--json prints every logged event");

    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new(); // person in frame → members granted
    let mut denied: BTreeMap<String, usize> = BTreeMap::new();
    for e in log.iter().filter(|e| e["event"] == "decision") {
        let frame = e["frame"].as_str().unwrap();
        let person = frame.split('-').nth(1).unwrap().to_owned();
        assert!(e["latency_ms"].as_f64().unwrap() > 0.0);
        match e["decision"].as_str().unwrap() {
            "granted" => {
                granted.entry(person).or_default().insert(e["member"].as_str().unwrap().to_owned());
            }
            _ => *denied.entry(person).or_default() += 1,
        }
    }
    for m in &u.members {
        assert_eq!(granted.get(m), Some(&BTreeSet::from([m.clone()])), "member {m}: {granted:?}");
    }
    for s in &u.strangers {
        assert!(!granted.contains_key(s), "stranger {s} was let in: {granted:?}");
    }
    let strangers_denied = u.strangers.iter().filter(|s| denied.contains_key(*s)).count();
    assert!(strangers_denied * 2 >= u.strangers.len(), "most strangers get a logged denial: {denied:?}");
    let summary = String::from_utf8_lossy(&out.stderr);
    let n_granted = log.iter().filter(|e| e["decision"] == "granted").count();
    let n_denied = log.iter().filter(|e| e["decision"] == "denied").count();
    assert!(summary.contains(&format!("{n_granted} granted, {n_denied} denied")), "no decision lost: {summary}");
}

#[test]
fn door_refuses_to_start_on_a_tampered_gallery_or_an_unwritable_log() {
    let u = set_up();
    let config = u.path("door.toml");
    let gallery = u.path("gym.fgg");
    let mut bytes = std::fs::read(&gallery).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&gallery, &bytes).unwrap();
    let o = run("facegate-door", &["check", "--config", &config]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("NOT READY"));
    let o = run("facegate-door", &["run", "--config", &config]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("checksum"), "{err}");

    let text = std::fs::read_to_string(&config).unwrap();
    let bad_log = text.replace(&u.path("events.jsonl"), "/proc/facegate/events.jsonl");
    std::fs::write(&config, bad_log).unwrap();
    let o = run("facegate-door", &["run", "--config", &config]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("event log"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn sigterm_secures_the_lock_flushes_the_log_and_exits_cleanly() {
    let u = set_up();
    let config = u.path("door.toml");
    let paced = std::fs::read_to_string(&config).unwrap().replace("pace = false", "pace = true");
    std::fs::write(&config, paced).unwrap();
    let child = std::process::Command::new(facegate_tests::bin("facegate-door"))
        .current_dir(facegate_tests::root())
        .args(["run", "--config", &config])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let started = std::time::Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "stopped within one frame");
    let log = events(Path::new(&u.path("events.jsonl")));
    let last = log.last().unwrap();
    assert_eq!(last["event"], "stop");
    assert!(last["detail"].as_str().unwrap().starts_with("stop requested"), "{last}");
    let frames = log.iter().filter(|e| e["event"] == "decision").count();
    assert!(frames < 20, "the replay (68 frames at 5/s) was cut short: {frames} decisions");
}
