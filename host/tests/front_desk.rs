//! End-to-end: the real `facegate` binary enrols ORL people into a signed gallery with the
//! committed trained encoder (chosen with --model; later commands find it from the gallery),
//! identifies their other photos and strangers, removes a member, and refuses tampered, unsigned
//! and foreign-key galleries. Needs `make setup`.
//!
//! Members are enrolled through the enrolment gate (with the trained encoder, photos 1-3 of each
//! of the 40 ORL people pass it: checked one by one on 2026-12-01); only the import of
//! deliberately mixed folders uses --allow-low-quality.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn fg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facegate")).current_dir(root()).args(args).output().unwrap()
}

fn photo(person: u32, n: u32) -> String {
    root().join(format!("data/orl/s{person}/{n}.pgm")).display().to_string()
}

/// The encoder `make demo` trains on ORL (the default for new galleries is SFace).
const ORL_MODEL: &str = "models/facegate-default.onnx";

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A front desk in a temporary folder: a fresh key pair and the path of a gallery not yet made
/// (secret key, public key, gallery).
fn desk() -> (tempfile::TempDir, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).display().to_string();
    let (secret, public, gallery) = (d("k.secret"), d("k.pub"), d("gym.fg"));
    ok(&fg(&["keys", "init", "--secret", &secret, "--public", &public]));
    (dir, secret, public, gallery)
}

#[test]
fn enrol_identify_remove_and_refuse_tampering() {
    let (dir, secret, public, gallery) = desk();
    let d = |f: &str| dir.path().join(f).display().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // the held-out test people of the trained encoder: members are the first four, strangers the rest
    let splits: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("models/facegate-default.splits.json")).unwrap())
            .unwrap();
    let test: Vec<u32> =
        splits["test"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()[1..].parse().unwrap()).collect();
    let (members, strangers) = test.split_at(4);
    for &p in members {
        let (a, b, c) = (photo(p, 1), photo(p, 2), photo(p, 3));
        let id = format!("s{p}");
        ok(&fg(&[
            "enroll",
            "--model",
            ORL_MODEL,
            "--gallery",
            &gallery,
            "--key",
            &secret,
            "--id",
            &id,
            "--name",
            &format!("Person {p}"),
            &a,
            &b,
            &c,
        ]));
    }
    let list = ok(&fg(&["members", "--gallery", &gallery, "--key", &secret, "list", "--json"]));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&list).unwrap().as_array().unwrap().len(), 4);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&fg(&["gallery", "inspect", &gallery, "--json"]))).unwrap();
    assert_eq!(
        (inspect["members"].as_u64(), inspect["embeddings"].as_u64(), inspect["revision"].as_u64()),
        (Some(4), Some(12), Some(4))
    );

    let identify = |img: &str| {
        let o = fg(&["identify", img, "--gallery", &gallery, "--trust", &public, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
        (o.status.code(), v)
    };
    let (mut right, mut wrong, mut denied) = (0, 0, 0);
    for &p in members {
        for n in 4..=10 {
            let (code, v) = identify(&photo(p, n));
            match (code, v["member"].as_str()) {
                (Some(0), Some(m)) if m == format!("s{p}") => right += 1,
                (Some(0), _) => wrong += 1,
                (Some(1), _) => denied += 1,
                other => panic!("unexpected identify result {other:?}"),
            }
        }
    }
    eprintln!("members' other photos: {right} granted correctly, {wrong} granted as someone else, {denied} denied");
    // `facegate eval` on the test people: rank-1 100 %, per-pair TAR 85.8 % at the card threshold
    // (best of 3 enrolled photos can only do better). Measured: 28 of 28; allowed: 2 fewer.
    assert_eq!(wrong, 0);
    assert!(right >= 26, "only {right} of 28 granted");
    let mut stranger_grants = 0;
    for &p in strangers {
        for n in 1..=10 {
            if identify(&photo(p, n)).0 == Some(0) {
                stranger_grants += 1;
            }
        }
    }
    eprintln!("strangers: {stranger_grants} of 40 photos granted");
    // per-pair FAR at the card threshold is 0.18 %; a stranger's photo meets 12 enrolled
    // embeddings, so about 1 − (1 − 0.0018)^12 ≈ 2.1 % of the 40 photos (≈ 0.9) are expected in.
    // Measured: 1; allowed: 2 more.
    assert!(stranger_grants <= 3, "{stranger_grants} of 40 stranger photos granted; eval predicts about 1");

    // the threshold measured on the gym's own members (4 members × 3 photos: 12 genuine pairs,
    // 54 impostor pairs): a dry run changes nothing, --write stores it and re-signs
    let before = std::fs::read(&gallery).unwrap();
    let report = ok(&fg(&["gallery", "calibrate", &gallery, "--key", &secret, "--far", "0.01"]));
    assert!(report.contains("members    4 (12 genuine pairs, 54 impostor pairs)"), "{report}");
    assert!(report.contains("not written"), "{report}");
    assert_eq!(std::fs::read(&gallery).unwrap(), before, "a dry run does not touch the gallery");
    let measured: f64 = report
        .lines()
        .find_map(|l| l.strip_prefix("measured   "))
        .and_then(|l| l.split(' ').next())
        .and_then(|t| t.trim_end_matches(':').parse().ok())
        .unwrap_or_else(|| panic!("no measured threshold in {report}"));
    assert!(measured > 0.0 && measured <= 2.0);
    ok(&fg(&["gallery", "calibrate", &gallery, "--key", &secret, "--far", "0.01", "--write"]));
    let after: serde_json::Value = serde_json::from_str(&ok(&fg(&["gallery", "inspect", &gallery, "--json"]))).unwrap();
    assert!((after["threshold"].as_f64().unwrap() - measured).abs() < 1e-4, "{after}");
    assert_eq!(after["revision"].as_u64(), Some(5));
    let o = fg(&["gallery", "calibrate", &gallery, "--key", &secret, "--far", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--far 0 must be in (0, 1)"));

    // removal: the member's photo is no longer granted as them
    let gone = members[0];
    ok(&fg(&["members", "--gallery", &gallery, "--key", &secret, "remove", &format!("s{gone}")]));
    let (_, v) = identify(&photo(gone, 5));
    assert_ne!(v["member"].as_str(), Some(format!("s{gone}").as_str()));

    // tampering: one flipped byte in the payload, or a copy signed by someone else, is refused
    let mut bytes = std::fs::read(&gallery).unwrap();
    bytes[40] ^= 1;
    let tampered = d("tampered.fg");
    std::fs::write(&tampered, &bytes).unwrap();
    let o = fg(&["identify", &photo(members[1], 5), "--gallery", &tampered, "--trust", &public]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("checksum"), "{}", String::from_utf8_lossy(&o.stderr));
    let (s2, p2) = (d("other.secret"), d("other.pub"));
    ok(&fg(&["keys", "init", "--secret", &s2, "--public", &p2]));
    let o = fg(&["identify", &photo(members[1], 5), "--gallery", &gallery, "--trust", &p2]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("untrusted key"), "{}", String::from_utf8_lossy(&o.stderr));
    // and enrolling into a gallery signed by another key is refused
    let o = fg(&["enroll", "--gallery", &gallery, "--key", &s2, "--id", "x", "--name", "X", &photo(1, 1)]);
    assert_eq!(o.status.code(), Some(2));

    // a photo without a face is a clear error naming the photo
    let blank = d("blank.png");
    image::RgbImage::from_pixel(200, 200, image::Rgb([128, 128, 128])).save(&blank).unwrap();
    let o = fg(&["enroll", "--gallery", &gallery, "--key", &secret, "--id", "y", "--name", "Y", &blank]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("blank.png") && err.contains("no face"), "{err}");
}

#[test]
fn verify_and_bench_search() {
    let same = fg(&["verify", &photo(1, 1), &photo(1, 2), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(same.status.code(), Some(0), "{v}");
    assert!(v["distance"].as_f64().unwrap() < v["threshold"].as_f64().unwrap());
    let b: serde_json::Value =
        serde_json::from_str(&ok(&fg(&["bench", "search", "--members", "2000", "--queries", "20"]))).unwrap();
    assert_eq!(b["members"].as_u64(), Some(2000));
    assert!(b["query_median_ms"].as_f64().unwrap() > 0.0);
    assert!(fg(&["bench", "search", "--index", "nope"]).status.code() == Some(2));
}

#[test]
fn import_dir_skips_bad_input_and_verify_checks_signature_and_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    let s = |p: PathBuf| p.display().to_string();
    for (folder, photos) in [("s31", vec![1, 2]), ("s32", vec![1, 2, 3]), ("bad id", vec![1]), ("empty", vec![])] {
        std::fs::create_dir_all(d("in").join(folder)).unwrap();
        for n in photos {
            std::fs::copy(photo(31 + n % 2, n), d("in").join(folder).join(format!("{n}.pgm"))).unwrap();
        }
    }
    std::fs::write(d("in/s31/broken.jpg"), b"not a jpeg").unwrap();
    ok(&fg(&["keys", "init", "--secret", &s(d("k.secret")), "--public", &s(d("k.pub"))]));
    let o = fg(&[
        "gallery",
        "import-dir",
        "--model",
        ORL_MODEL,
        "--allow-low-quality",
        &s(d("in")),
        "--gallery",
        &s(d("g.fgg")),
        "--key",
        &s(d("k.secret")),
        "--jobs",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(1), "something was skipped");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("skipped photo") && out.contains("broken.jpg"), "{out}");
    assert!(out.contains("skipped member bad id") && out.contains("skipped member empty"), "{out}");
    assert!(out.contains("imported 2 member(s)"), "{out}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&fg(&["gallery", "inspect", &s(d("g.fgg")), "--json"]))).unwrap();
    assert_eq!((inspect["members"].as_u64(), inspect["embeddings"].as_u64()), (Some(2), Some(5)));

    let verify = |model: &str| fg(&["gallery", "verify", &s(d("g.fgg")), "--trust", &s(d("k.pub")), "--model", model]);
    assert_eq!(verify("models/facegate-default.onnx").status.code(), Some(0));
    let o = verify("models/face_recognition_sface_2021dec.onnx");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("re-enrol"));
    let mut bytes = std::fs::read(d("g.fgg")).unwrap();
    let n = bytes.len();
    bytes[n / 3] ^= 4;
    std::fs::write(d("g.fgg"), bytes).unwrap();
    assert_eq!(verify("models/facegate-default.onnx").status.code(), Some(1));
}

/// Front-desk capture (`enroll --source`, the door's frame sources; `--camera` is the same code
/// with `camera:`): three shots that pass the gate and differ in pose, nothing written otherwise.
#[test]
fn enrol_from_a_frame_source_keeps_posed_shots_and_writes_nothing_on_failure() {
    let (dir, secret, public, gallery) = desk();
    let d = |f: &str| dir.path().join(f).display().to_string();
    let enrol = |gallery: &str, source: &str| {
        fg(&["enroll", "--gallery", gallery, "--key", &secret, "--id", "1", "--name", "Ann", "--source", source])
    };
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // ORL s1 in file-name order: 1.pgm (yaw 1°), 10.pgm (18°); 2.pgm (17°) and 3.pgm (1°) are
    // within 6° of a shot; 4.pgm (-18°) is the third.
    let s1 = root().join("data/orl/s1").display().to_string();
    let out = ok(&fg(&[
        "enroll",
        "--gallery",
        &gallery,
        "--key",
        &secret,
        "--id",
        "1",
        "--name",
        "Ann",
        "--source",
        &format!("dir:{s1}"),
        "--save-shots",
        &d("shots"),
    ]));
    for line in ["shot 1/3: 1.pgm", "shot 2/3: 10.pgm", "shot 3/3: 4.pgm", "captured 3 shot(s) from 5 frame(s)"] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    let mut saved: Vec<String> =
        std::fs::read_dir(d("shots")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    saved.sort();
    assert_eq!(saved, ["1-1.png", "1-2.png", "1-3.png"]);
    // the member is found from photos the capture did not take; a stranger is not
    let identify = |img: &str| {
        let o = fg(&["identify", img, "--gallery", &gallery, "--trust", &public, "--json"]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["member"].as_str().map(str::to_owned)
    };
    assert_eq!(identify(&photo(1, 7)).as_deref(), Some("1"));
    assert_eq!(identify(&photo(2, 1)), None);
    // enrolling the same id again is refused before any frame is captured
    let o = enrol(&gallery, &format!("dir:{s1}"));
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("member #1 is already in"), "{}", err(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("capturing"));

    // one pose only (the same frame five times): one shot, nothing written
    std::fs::create_dir(d("still")).unwrap();
    for i in 1..=5 {
        std::fs::copy(photo(1, 1), d(&format!("still/{i}.pgm"))).unwrap();
    }
    let o = enrol(&d("g2.fg"), &format!("dir:{}", d("still")));
    assert_eq!(o.status.code(), Some(2));
    let e = err(&o);
    assert!(
        e.contains("1 of 3 shots") && e.contains("pose within 6° of a shot: 4") && e.contains("nothing was written"),
        "{e}"
    );
    assert!(!Path::new(&d("g2.fg")).exists());

    // four people, each frame fine on its own: they match none of each other, nothing written
    std::fs::create_dir(d("mixed")).unwrap();
    for (i, (p, n)) in [(1, 1), (2, 9), (5, 6), (7, 4)].into_iter().enumerate() {
        std::fs::copy(photo(p, n), d(&format!("mixed/{i}.pgm"))).unwrap();
    }
    let o = enrol(&d("g2.fg"), &format!("dir:{}", d("mixed")));
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("matched none of the other shots: 3"), "{}", err(&o));
    assert!(!Path::new(&d("g2.fg")).exists());

    // a camera that is not there is a clear error; the existing gallery is untouched
    let before = std::fs::read(&gallery).unwrap();
    let o = fg(&[
        "enroll",
        "--gallery",
        &gallery,
        "--key",
        &secret,
        "--id",
        "2",
        "--name",
        "Bo",
        "--camera",
        "no such camera",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("no camera named \"no such camera\""), "{}", err(&o));
    assert_eq!(std::fs::read(&gallery).unwrap(), before);
    // photos and a capture are one or the other
    let o = fg(&["enroll", "--gallery", &gallery, "--id", "2", "--name", "Bo", "--camera", "0", &photo(2, 1)]);
    assert_eq!(o.status.code(), Some(2));
}

/// `facegate pad-eval` on a seeded small run (10 ORL people, 4 print attacks of 6 frames each),
/// on landmarks followed by texture (the default): the report half's print attacks stay below
/// the threshold tuned on the other half, and the figures come with their counts. Measured on
/// this run: threshold 0.00358, print scores at most 0.0034 (report) and 0.0029 (tune), 0 of 20
/// print attacks accepted on each half; head turns refused 0 of 4 on each half (each frame's
/// detector landmarks: 2 and 1), so a check that refuses every face fails this test; natural
/// small motion refused 24 of 35 (report) and 30 of 35 (tune). The ring deny cue, tuned at 8
/// points (the most of any tuning-half genuine appearance, 6, plus 2), denies 20 of 20 print
/// attacks on each half and no genuine appearance (natural, turn, obeying: at most 7 points).
/// The border cue, tuned at 1 edge (no tuning-half genuine appearance had one), fires first on
/// none of them, but alone denies 15 and 13 of the 20 prints and no genuine appearance. Bent
/// prints (a cylinder: 3-D) pass the passive test 5 and 6 of 20 times (14 and 13 with the border
/// cue alone; the ring denies 11 and 9 before the nose test lets them in, the border 0 and 1).
/// Phones (a dark bezel round the photo): 0 of 20 pass on each half, every one denied by the ring
/// cue, and the border cue alone denies all 20 too. Close-ups on white paper (every ring point on
/// plain paper): 0 of 20 pass; the border cue alone denies all 20 on each half. Every natural refusal is for too few
/// frame pairs (24 and 30), none for a residual below the threshold.
/// Challenge mode (report half, measured): 0 of 20 prints, phones, close-ups and bent prints pass; genuine people
/// obeying: 7 of 10 refused, of which 6 have no ORL photo turned 15° to the asked side (1 of the
/// 4 that have one refused); screen replays of a recorded turn: 4 of 20 pass the challenge alone,
/// exactly the 4 whose recording turns far enough to the asked side (a replayed head is 3-D),
/// and 0 of 20 with the passive test (the screen held in the hand moves the ring with the face).
#[test]
fn pad_eval_reports_counted_rates_with_the_threshold_tuned_on_other_people() {
    // the real videos have their own test below; here the cues are tuned on the photos alone
    let out =
        ok(&fg(&["pad-eval", "--people", "10", "--attacks", "4", "--frames", "6", "--video-windows", "0", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let t = v["threshold"].as_f64().unwrap();
    assert!((0.002..0.006).contains(&t), "{t}");
    assert_eq!(v["tuned_on"].as_array().unwrap().len(), 5);
    // the ring cue's count is tuned on the same half: its genuine appearances' most, plus 2
    assert_eq!(v["ring_deny"].as_u64().unwrap(), v["ring_genuine_tune_max"].as_u64().unwrap() + 2, "{v}");
    assert!((5..=12).contains(&v["ring_deny"].as_u64().unwrap()), "measured 8: {v}");
    // the border cue's likewise, plus 1: no genuine edge moved with the face (measured 0)
    assert_eq!(v["border_genuine_tune_max"], 0, "{v}");
    assert_eq!(v["border_deny"], 1, "{v}");
    for half in ["tune", "report"] {
        let r = &v["results"][half];
        assert_eq!(r["flat_print_apcer"]["n"], 20, "{half}: 5 people × 4 attacks");
        assert_eq!(r["flat_print_apcer"]["errors"], 0, "{half}: {r}");
        assert!(r["attack_score_max"].as_f64().unwrap() < t, "{half}: {r}");
        assert_eq!(r["turn_bpcer"]["n"], 4, "{half}: {r}");
        assert!(r["turn_bpcer"]["errors"].as_u64().unwrap() <= 1, "{half}: measured 0 and 0: {r}");
        assert_eq!(r["genuine_bpcer"]["n"], 35, "{half}: {r}");
        assert!(r["genuine_bpcer"]["errors"].as_u64().unwrap() <= 32, "{half}: measured 24 and 30: {r}");
        assert_eq!(r["bent_print_apcer"]["n"], 20, "{half}: {r}");
        // a cylinder is 3-D to the nose test (16 and 14 of 20 pass it alone, last measured); the
        // ring cue denies most of those (measured: 5 and 6 pass all three)
        assert!(r["bent_print_apcer"]["errors"].as_u64().unwrap() <= 10, "{half}: {r}");
        // the ring cue: every print denied by it, no genuine appearance (measured 20/20 and 0)
        let ring = &r["ring"];
        assert!(ring["print"]["denied"].as_u64().unwrap() >= 18, "{half}: {ring}");
        assert!(ring["bent"]["denied"].as_u64().unwrap() >= 5, "{half}: measured 11 and 9: {ring}");
        for genuine in ["natural", "turn", "obey"] {
            assert!(ring[genuine]["denied"].as_u64().unwrap() <= 1, "{half} {genuine}: {ring}");
        }
        // the border cue: the ring fires first on every print here, so alone (the ring off) it
        // denies most flat prints (measured 13 and 15 of 20) and no genuine appearance (no
        // genuine edge followed the face's tilt: most 0)
        let border = &r["border"];
        assert!(border["print"]["denied_alone"].as_u64().unwrap() >= 10, "{half}: {border}");
        for genuine in ["natural", "turn", "obey"] {
            assert_eq!(border[genuine]["denied_alone"], 0, "{half} {genuine}: {border}");
        }
        // a phone (the photo in a dark bezel): the ring sees the bezel's edges move with the face
        // (measured 20 of 20 denied, most points median 36 and 39), and so does the border cue
        // alone (20 of 20)
        assert_eq!(r["phone_apcer"]["n"], 20, "{half}: {r}");
        assert_eq!(r["phone_apcer"]["errors"], 0, "{half}: {r}");
        assert!(ring["phone"]["denied"].as_u64().unwrap() >= 19, "{half}: {ring}");
        assert!(border["phone"]["denied_alone"].as_u64().unwrap() >= 19, "{half}: {border}");
        // a close-up on white paper, the ring's points on the paper: the ring sees far fewer
        // points move (median 10, against 36 and 39 for the phone) though still enough to deny
        // most alone (17 and 18); the border cue alone denies every one (20 of 20 on each half)
        assert_eq!(r["closeup_apcer"]["n"], 20, "{half}: {r}");
        assert_eq!(r["closeup_apcer"]["errors"], 0, "{half}: {r}");
        assert!(border["closeup"]["denied_alone"].as_u64().unwrap() >= 19, "{half}: {border}");
        let median = |kind: &str| ring[kind]["max_with_face_median"].as_u64().unwrap();
        assert!(median("closeup") * 2 < median("phone"), "{half}: {ring}");
        // every refused genuine appearance has its reason counted: here all too few frame pairs
        // for the nose test (ORL's separate photos), none below the threshold or by a cue
        let why = &r["genuine_refused_by"];
        assert_eq!(why["too_few_pairs"], r["genuine_bpcer"]["errors"], "{half}: {r}");
        assert_eq!(why["nose_below_threshold"], 0, "{half}: {r}");
        let turn_why = &r["turn_refused_by"];
        let sum = ["too_few_pairs", "nose_below_threshold", "deny_cue"]
            .map(|k| turn_why[k].as_u64().unwrap())
            .iter()
            .sum::<u64>();
        assert_eq!(sum, r["turn_bpcer"]["errors"].as_u64().unwrap(), "{half}: {r}");
        let upper = r["flat_print_apcer"]["upper_95"].as_f64().unwrap();
        assert!((upper - 0.1684).abs() < 1e-3, "Clopper–Pearson for 0/20: {upper}");
    }
    let c = &v["challenge"]["report"];
    for checks in ["challenge", "challenge_and_passive"] {
        let r = &c[checks];
        assert_eq!(r["print_apcer"]["n"], 20, "{checks}: {r}");
        assert_eq!(r["print_apcer"]["errors"], 0, "{checks}: a print never turns: {r}");
        assert_eq!(r["genuine_bpcer"]["n"], 10, "{checks}: 5 people × 2 sides: {r}");
        assert_eq!(r["genuine_without_a_photo_turned_far_enough"], 6, "{checks}: {r}");
        assert_eq!(r["replay_apcer"]["n"], 20, "{checks}: {r}");
        assert_eq!(r["bent_print_apcer"]["n"], 20, "{checks}: {r}");
        assert_eq!(r["bent_print_apcer"]["errors"], 0, "{checks}: a bent print does not turn either: {r}");
        for kind in ["phone_apcer", "closeup_apcer"] {
            assert_eq!(r[kind]["n"], 20, "{checks}: {r}");
            assert_eq!(r[kind]["errors"], 0, "{checks}: {r}");
        }
    }
    let (alone, both) = (&c["challenge"], &c["challenge_and_passive"]);
    let errors = |r: &serde_json::Value, k: &str| r[k]["errors"].as_u64().unwrap();
    // obeying people whose photos turn far enough pass (measured: 1 of 4 refused, alone and with
    // the passive test)
    assert_eq!(alone["genuine_bpcer_where_the_photos_turn_far_enough"]["n"], 4, "{alone}");
    assert!(errors(alone, "genuine_bpcer_where_the_photos_turn_far_enough") <= 2, "{alone}");
    assert!(errors(both, "genuine_bpcer_where_the_photos_turn_far_enough") <= 2, "{both}");
    // replays pass only sometimes (measured 4 of 20 in both modes): exactly those whose recording
    // turns far enough to the asked side (the challenge's only defence against a replay is the
    // side it draws)
    let reaching = "replay_apcer_where_the_recording_turns_to_the_asked_side";
    assert_eq!(alone[reaching]["n"], 4, "{alone}");
    assert_eq!(alone[reaching]["errors"], 4, "{alone}");
    assert_eq!(errors(alone, "replay_apcer"), 4, "{alone}");
    // a replayed head is 3-D to the nose test, but the screen held in the hand moves the ring
    // with the face: measured 0 of 20 with the passive test
    assert!(errors(both, "replay_apcer") <= 1, "{both}");
}

/// A front-desk user who runs `facegate` from their own folder (not the Facegate folder): the
/// default encoder and detector are found beside the binary's build (`<folder>/target/…`), for
/// enrolment and for a later command that finds the encoder by the gallery's binding; an error
/// names the file once and says where else it was looked for.
#[test]
fn the_default_models_are_found_from_any_folder() {
    let (dir, secret, public, gallery) = desk();
    let here = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_facegate")).current_dir(dir.path()).args(args).output().unwrap()
    };
    let photos: Vec<String> = (1..=3).map(|n| photo(1, n)).collect();
    let mut args = vec!["enroll", "--gallery", &gallery, "--key", &secret, "--id", "s1", "--name", "s1"];
    args.extend(photos.iter().map(String::as_str));
    ok(&here(&args));
    let o = here(&["identify", &photo(1, 7), "--gallery", &gallery, "--trust", &public, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&ok_code(&o, 0)).unwrap();
    assert_eq!(v["member"], "s1", "{v}");
    // a path that is nowhere: one clear line
    let o = here(&["quality", "--detector", "models/nothing.onnx", &photo(1, 1)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("models/nothing.onnx (not in this folder, nor in "), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

fn ok_code(o: &Output, code: i32) -> Vec<u8> {
    assert_eq!(o.status.code(), Some(code), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout.clone()
}

/// `pad-eval` on the real face videos (`data/video`, one window of each video here): each window
/// is judged as the door judges an appearance of a recognised member; the people are split by
/// name, the cues' counts tuned on the first half with the photos' tuning half.
#[test]
fn pad_eval_judges_real_videos_by_person_and_tunes_the_cues_on_the_first_half() {
    let out =
        ok(&fg(&["pad-eval", "--people", "2", "--attacks", "1", "--frames", "6", "--video-windows", "1", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let videos = &v["videos"];
    assert_eq!((videos["fps"].as_f64(), videos["window_ms"].as_u64()), (Some(10.0), Some(6000)), "{videos}");
    let (tune, report) = (&videos["results"]["tune"], &videos["results"]["report"]);
    assert_eq!(tune["people"], serde_json::json!(["cap"]), "{tune}");
    assert_eq!(report["people"], serde_json::json!(["carphone", "franck"]), "{report}");
    // one window of each video: cap's two clips, 60 frames each; carphone is 4 s long (40 frames)
    assert_eq!(tune["per_person"]["cap"]["windows"], 2, "{tune}");
    assert_eq!((tune["frames"].as_u64(), report["frames"].as_u64()), (Some(120), Some(100)), "{videos}");
    assert_eq!(report["bpcer"]["n"], 2, "{report}");
    // the ring cue's count: the most of any tuning-half genuine appearance, photos or video
    // windows (measured: cap's 15), plus 2
    let tune_ring: Vec<u64> =
        tune["ring_max_with_face"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    let ring_deny = v["ring_deny"].as_u64().unwrap();
    assert!(ring_deny >= tune_ring.iter().max().unwrap() + 2, "{v}");
    assert_eq!(ring_deny, 17, "measured: cap's second clip, 15 points: {v}");
    assert_eq!(ring_deny, v["ring_genuine_tune_max"].as_u64().unwrap() + 2, "{v}");
    // measured: franck's window has a frame pair with 23 ring points moving with his face (his
    // hair and ears; the blue wall behind him has no texture to test), so the ring refuses it;
    // carphone (15) and both cap windows are granted; the nose test alone grants all four
    let refused = |r: &serde_json::Value| r["bpcer"]["errors"].as_u64().unwrap();
    assert_eq!((refused(tune), refused(report)), (0, 1), "{videos}");
    assert_eq!(report["refused_by"]["ring"], 1, "{report}");
    assert_eq!(report["per_person"]["franck"]["refused"], 1, "{report}");
    for r in [tune, report] {
        assert_eq!(r["bpcer_cues_off"]["errors"], 0, "{r}");
        // granted within a second of the window's start (measured: 400–600 ms)
        assert!(r["grant_ms_max"].as_f64().unwrap() <= 1000.0, "{r}");
    }
}
