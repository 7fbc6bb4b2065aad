//! Gallery pulling at gym-chain size: a door (`facegate-door run`, SFace) pulls a signed gallery of
//! N members (default 10,000, one 128-d embedding each) from a local HTTP server, then a second
//! revision; prints JSON with the fetch + verify + write time the door logged, the time from the
//! download to the installed gallery (read, verify, replay check, installed copy, index).
//!
//! `cargo run --release -p facegate-tests --example pull_bench [MEMBERS]` (after `cargo build
//! --release -p facegate-device`; the debug door works too with `cargo run -p ...`).

use facegate_face::{paths, Encoder, TractEncoder};
use facegate_shared::synthetic::clustered_gallery;
use facegate_shared::{gallery_file, keys, EmbeddingDim, Gallery};
use facegate_tests::door::events;
use facegate_tests::http::FileServer;
use facegate_tests::{orl_photo, root};
use serde_json::json;
use std::time::{Duration, Instant};

fn main() {
    let members: usize = std::env::args().nth(1).map_or(10_000, |a| a.parse().unwrap());
    let sface = TractEncoder::load(&root().join("models").join(paths::SFACE)).unwrap();
    let threshold = sface.card().threshold.as_ref().unwrap().distance;
    let (g0, _) = clustered_gallery(5, members, 1, EmbeddingDim::new(128).unwrap(), 0.5);
    let mut g = Gallery::new(sface.card().binding(), g0.dim, threshold);
    for m in g0.members() {
        g.add(m.clone()).unwrap();
    }
    g.revision = 1;
    let key = keys::generate_signing_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = (dir.path().join("k.secret"), dir.path().join("k.pub"));
    keys::write_key_pair(&key, &secret, &public).unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let bytes = gallery_file::encode(&g, Some(&key)).unwrap();
    std::fs::write(site.join("gallery.fgg"), &bytes).unwrap();
    let server = FileServer::start(&site);
    std::fs::create_dir(dir.path().join("inbox")).unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let config = format!(
        "[model]\nencoder = \"models/{}\"\n\
         [gallery]\ninbox = {:?}\nstate_dir = {:?}\ntrusted_keys = [{:?}]\nreload_interval_ms = 100\n\
         url = {:?}\nfetch_interval_ms = 1000\n\
         [source]\nuri = \"image:{}\"\nfps = 5\nrepeat = 100000\n\
         [lock]\nkind = \"dry-run\"\n[log]\npath = {:?}\n",
        paths::SFACE,
        p("inbox/gallery.fgg"),
        p("state"),
        public.display().to_string(),
        server.url("gallery.fgg"),
        orl_photo("s1", 1).display(),
        p("events.jsonl"),
    );
    std::fs::write(p("door.toml"), config).unwrap();
    let mut door = std::process::Command::new(facegate_tests::bin("facegate-door"))
        .current_dir(root())
        .args(["run", "--config", &p("door.toml")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = dir.path().join("events.jsonl");
    let wait = |what: &str| {
        let t = Instant::now();
        loop {
            if log.exists() && events(&log).iter().any(|e| e["detail"].as_str().unwrap_or("").contains(what)) {
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("installed revision 1");
    // revision 2: one member fewer
    let gone = g.members()[0].id.clone();
    g.remove(&gone).unwrap();
    g.revision = 2;
    std::thread::sleep(Duration::from_millis(2500));
    let before = server.counts();
    let bytes2 = gallery_file::encode(&g, Some(&key)).unwrap();
    std::fs::write(site.join("gallery.fgg"), &bytes2).unwrap();
    wait("installed revision 2");
    let _ = std::process::Command::new("kill").args(["-TERM", &door.id().to_string()]).status();
    let _ = door.wait();
    let ev = events(&log);
    let time_ms = |e: &serde_json::Value| -> f64 {
        let s = e["time"].as_str().unwrap();
        let (_, t) = s.trim_end_matches('Z').split_once('T').unwrap();
        let v: Vec<f64> = t.split(':').map(|x| x.parse().unwrap()).collect();
        (v[0] * 3600.0 + v[1] * 60.0 + v[2]) * 1e3
    };
    let mut out = Vec::new();
    for rev in [1, 2] {
        let installed = ev
            .iter()
            .position(|e| e["detail"].as_str().unwrap_or("").starts_with(&format!("installed revision {rev}")))
            .unwrap();
        // the download that led to it (for the first gallery it may be logged just after)
        let downloaded = ev[..installed]
            .iter()
            .rposition(|e| e["reason"] == "downloaded")
            .or_else(|| ev.iter().position(|e| e["reason"] == "downloaded"))
            .unwrap();
        out.push(json!({
            "revision": rev,
            "download": ev[downloaded]["detail"],
            "downloaded_to_installed_ms": time_ms(&ev[installed]) - time_ms(&ev[downloaded]),
        }));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "members": members,
            "gallery_bytes": bytes.len(),
            "revisions": out,
            "idle_polls_answered_304": before.not_modified,
        }))
        .unwrap()
    );
}
