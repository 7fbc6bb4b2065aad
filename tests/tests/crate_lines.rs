//! Crate lines follow what each binary must not link: the front-desk `facegate` and the door unit
//! never link libtorch, the trainer never links the camera, and the door never links the
//! comparator indexes or the test fakes. Checked on the dependency graph (`cargo tree -e normal`)
//! and on the built binaries (`ldd`).

use facegate_tests::{bin, root};
use std::process::Command;

/// `cargo tree -e normal -p PACKAGE` (normal dependencies only, no dev/build), offline.
fn tree(package: &str, features: &[&str]) -> String {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut c = Command::new(cargo);
    c.current_dir(root()).args(["tree", "--offline", "-e", "normal", "--prefix", "none", "-p", package]);
    for f in features {
        c.args(["--features", f]);
    }
    let o = c.output().expect("cargo runs");
    assert!(o.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn crates(tree: &str) -> Vec<&str> {
    tree.lines().filter_map(|l| l.split_whitespace().next()).collect()
}

#[test]
fn facegate_and_the_door_never_link_libtorch() {
    for package in ["facegate-host", "facegate-device", "facegate-face", "facegate-shared"] {
        let t = tree(package, &[]);
        let c = crates(&t);
        assert!(c.contains(&package), "{package}: {t}");
        for banned in ["tch", "torch-sys"] {
            assert!(!c.contains(&banned), "{package} depends on {banned}:\n{t}");
        }
    }
    // ...while the training tool does (so the check above can see it when it is there).
    assert!(crates(&tree("facegate-train", &[])).contains(&"tch"));
    assert!(crates(&tree("facegate-host", &[])).contains(&"facegate-serve"), "facegate serve is in facegate");
}

#[test]
fn the_camera_reaches_facegate_and_the_door_but_never_the_trainer() {
    for package in ["facegate-host", "facegate-device"] {
        assert!(crates(&tree(package, &[])).contains(&"nokhwa"), "{package} has no camera");
    }
    // facegate-train shares the host helpers through facegate-hostkit and depends on neither
    // facegate nor the frame sources, so no feature unification can bring the camera in.
    let t = tree("facegate-train", &[]);
    for banned in ["nokhwa", "facegate-frames", "facegate-host", "facegate-device"] {
        assert!(!crates(&t).contains(&banned), "facegate-train depends on {banned}:\n{t}");
    }
    assert!(crates(&t).contains(&"facegate-hostkit"), "{t}");
}

#[test]
fn the_door_links_neither_the_comparator_indexes_nor_the_service_nor_the_test_fakes() {
    let t = tree("facegate-device", &[]);
    for banned in ["linfa-nn", "linfa", "ndarray-stats", "facegate-serve", "axum", "hyper"] {
        assert!(!crates(&t).contains(&banned), "the door depends on {banned}:\n{t}");
    }
    // The package's own enabled features, as the door binary is built (`-p facegate-device`).
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let o = Command::new(cargo)
        .current_dir(root())
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none", "--depth", "0", "-f", "{p} [{f}]"])
        .args(["-p", "facegate-device"])
        .output()
        .expect("cargo runs");
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    // The feature list is the last bracket (the path before it may contain any word).
    let features = line.trim_end().rsplit_once('[').map(|(_, f)| f.trim_end_matches(']')).unwrap_or("");
    assert!(line.starts_with("facegate-device"), "{line}");
    let features: Vec<&str> = features.split(',').collect();
    assert!(features.contains(&"camera"), "{line}");
    assert!(!features.contains(&"testing"), "the door is built with its test fakes: {line}");
}

#[test]
fn the_built_facegate_binary_does_not_load_libtorch() {
    for (name, links) in [("facegate", false), ("facegate-door", false), ("facegate-train", true)] {
        let o = Command::new("ldd").arg(bin(name)).output().expect("ldd runs");
        let libs = String::from_utf8_lossy(&o.stdout);
        assert_eq!(libs.contains("libtorch"), links, "{name}:\n{libs}");
    }
}
