//! The door unit's end-to-end fixture: a unit folder with an enrolled gallery, a replay folder and
//! a config, and the event log reader.

use std::path::Path;

use crate::{ok, orl_photo, run};

/// A door unit's folder: keys, an inbox with a signed gallery, a replay folder, a config.
pub struct Unit {
    /// The temporary folder.
    pub dir: tempfile::TempDir,
    /// Enrolled people.
    pub members: Vec<String>,
    /// People never enrolled.
    pub strangers: Vec<String>,
}

impl Unit {
    /// A path inside the unit's folder.
    pub fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
}

/// Keys, a gallery of `members` (photos 1–3, the ORL-trained encoder), a replay folder `frames/`
/// of their photos 4–10 and all photos of `strangers`, alternating, and a door config `door.toml`
/// (dir: source at 5 frames/s, 2 consecutive frames, 3 s cooldown, dry-run lock, `events.jsonl`,
/// metrics file `door.prom`).
pub fn set_up_people(members: &[String], strangers: &[String]) -> Unit {
    let u = Unit { dir: tempfile::tempdir().unwrap(), members: members.to_vec(), strangers: strangers.to_vec() };
    // The front desk drops galleries into the inbox; the door keeps its state apart.
    std::fs::create_dir(u.dir.path().join("inbox")).unwrap();
    let (secret, public, gallery) = (u.path("k.secret"), u.path("k.pub"), u.path("inbox/gym.fgg"));
    ok(&run("facegate", &["keys", "init", "--secret", &secret, "--public", &public]));
    for p in &u.members {
        // The trained encoder (SFace is the default for new galleries); every ORL member's
        // photos 1-3 pass the enrolment gate with it, checked here.
        enroll_orl(&gallery, &secret, p, Some("models/facegate-default.onnx"));
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
        "[model]\nencoder = \"models/facegate-default.onnx\"\n[gallery]\ninbox = {gallery:?}\nstate_dir = {:?}\ntrusted_keys = [{public:?}]\n\
         [source]\nuri = \"dir:{}\"\nfps = 5\npace = false\n\
         [decision]\nconsecutive_frames = 2\ncooldown_ms = 3000\n\
         [lock]\nkind = \"dry-run\"\n\
         [log]\npath = {:?}\n\
         [metrics]\npath = {:?}\n",
        u.path("state"),
        frames.display(),
        u.path("events.jsonl"),
        u.path("door.prom"),
    );
    std::fs::write(u.path("door.toml"), config).unwrap();
    u
}

/// `facegate enroll` of ORL `person` (id and name) from photos 1–3 into `gallery`, signed with
/// `secret`, through the enrolment gate; with `model`, that encoder, else the default (SFace).
pub fn enroll_orl(gallery: &str, secret: &str, person: &str, model: Option<&str>) {
    let photos: Vec<String> = (1..=3).map(|n| orl_photo(person, n).display().to_string()).collect();
    let mut args = vec!["enroll", "--gallery", gallery, "--key", secret, "--id", person, "--name", person];
    if let Some(m) = model {
        args.extend(["--model", m]);
    }
    args.extend(photos.iter().map(String::as_str));
    ok(&run("facegate", &args));
}

/// The event log's lines.
pub fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
        .collect()
}

/// Starts `facegate-door run --config CONFIG` from the repository root (stderr piped).
pub fn spawn_door(config: &str) -> std::process::Child {
    std::process::Command::new(crate::bin("facegate-door"))
        .current_dir(crate::root())
        .args(["run", "--config", config])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("facegate-door starts")
}
