//! `demo/report.html`: the summary script computes its figures from an event log, and the page it
//! writes renders in headless Chromium (Debian `chromium`, installed by `make setup`) with every
//! plot decoded.

use facegate_tests::root;
use std::path::Path;
use std::process::Command;

fn png(path: &Path, seed: u8) {
    let img = image::RgbImage::from_fn(240, 120, |x, y| image::Rgb([(x as u8).wrapping_add(seed), y as u8, 90]));
    img.save(path).unwrap();
}

fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Debian chromium is missing: run `make setup`");
    Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
        .arg("--virtual-time-budget=5000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium starts")
}

#[test]
fn report_figures_come_from_the_log_and_the_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("frames")).unwrap();
    // s1 and s2 enrolled; s3 and s4 strangers. s1 granted, s2 never; s3 granted as s1 (a false
    // accept), s4 denied.
    for f in ["0001-s1-4.pgm", "0002-s1-5.pgm", "0003-s2-4.pgm", "0004-s3-1.pgm", "0005-s4-1.pgm", "0006-s4-2.pgm"] {
        std::fs::write(d.join("frames").join(f), b"").unwrap();
    }
    std::fs::write(d.join("members.txt"), "s1\ns2\n").unwrap();
    let ev = |frame: &str, decision: &str, member: &str, ms: f64| {
        format!(
            r#"{{"time":"2026-11-29T10:00:00Z","event":"decision","decision":"{decision}","member":"{member}","distance":0.5,"reason":"unknown","latency_ms":{ms},"frame":"{frame}"}}"#
        )
    };
    let log = [
        r#"{"time":"2026-11-29T10:00:00Z","event":"gallery","members":2}"#.to_owned(),
        ev("0002-s1-5.pgm", "granted", "s1", 100.0),
        ev("0003-s2-4.pgm", "denied", "", 300.0),
        ev("0004-s3-1.pgm", "granted", "s1", 200.0),
        ev("0006-s4-2.pgm", "denied", "", 400.0),
    ]
    .join("\n");
    std::fs::write(d.join("events.jsonl"), log + "\n").unwrap();
    let (roc, hist) = (d.join("roc.png"), d.join("distances.png"));
    png(&roc, 0);
    png(&hist, 90);
    let report = d.join("report.html");
    let out = Command::new("python3")
        .arg(root().join("scripts/demo_summary.py"))
        .args([d.join("events.jsonl"), d.join("members.txt"), d.to_path_buf(), report.clone(), roc, hist])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "frames replayed",
        "enrolled people let in                        1 of 2",
        "false rejects (enrolled, never let in)        1 ['s2']",
        "false accepts (let in as someone else)        1 ['s3']",
        "strangers denied                              1 of 2",
        "median decision latency (ms, deciding frame)  250.0",
    ] {
        assert!(text.contains(want), "missing '{want}' in:\n{text}");
    }

    let url = format!("file://{}", report.display());
    let dom = chromium(&d.join("profile"), &["--dump-dom", &url]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    assert!(dom_text.contains(r#"data-plots="2/2""#), "both plots decode in the browser:\n{dom_text}");
    assert!(dom_text.contains("Door replay") && dom_text.contains("0004-s3-1.pgm"));

    let shot = d.join("shot.png");
    let out =
        chromium(&d.join("profile"), &[&format!("--screenshot={}", shot.display()), "--window-size=1000,1400", &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1000, 1400));
    let coloured = img.pixels().filter(|p| (85..=95).contains(&p[2]) && p[0].abs_diff(p[1]) > 8).count();
    assert!(coloured > 10_000, "the embedded plots are painted ({coloured} plot pixels)");
}
