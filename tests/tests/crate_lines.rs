//! Crate lines follow what each binary must not link: the front-desk `facegate` and the door unit
//! never link libtorch, the trainer never links the camera, and the door never links the
//! comparator indexes or the test fakes. Checked on the dependency graph (`cargo tree -e normal`)
//! and on the built binaries (`ldd`). And the door built alone (the package test) reuses the
//! workspace build's compiled dependencies.

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

/// `cargo tree` lines `name vX.Y.Z [features]` of `args`' graph: each crate from a registry with
/// every feature set it is built with (a crate built for build scripts and proc-macros as well
/// as for the binaries can have two).
fn feature_sets(args: &[&str]) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let o = Command::new(cargo)
        .current_dir(root())
        .args(["tree", "--offline", "--prefix", "none", "-f", "{p} [{f}]"])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(o.status.success(), "cargo tree {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    let mut sets = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let line = line.trim_end().trim_end_matches(" (*)");
        let Some((crate_version, features)) = line.rsplit_once(" [") else { continue };
        if crate_version.contains(" (/") {
            continue; // a workspace crate: built again for the package anyway (its features differ)
        }
        sets.entry(crate_version.to_owned()).or_default().insert(features.trim_end_matches(']').to_owned());
    }
    sets
}

/// The package test (`tests/tests/package.rs`) builds the door alone (`cargo deb -p
/// facegate-device`), where only the door's dependencies decide their features. With a feature
/// set the workspace's build never uses, a crate and all that depend on it (serde, syn: nearly
/// everything) are compiled a second time: 6.6 minutes of a cold `make test`. The feature pins in
/// `device/Cargo.toml` prevent it; this finds the next dependency that needs one.
#[test]
fn the_door_alone_uses_feature_sets_the_workspace_build_already_compiled() {
    let alone = feature_sets(&["-e", "normal,build", "-p", "facegate-device"]);
    let workspace = feature_sets(&["-e", "normal,build,dev", "--workspace"]);
    assert!(alone.keys().any(|k| k.starts_with("tract-onnx ")), "{alone:?}");
    let missing: Vec<String> = alone
        .iter()
        .flat_map(|(k, sets)| sets.iter().map(move |s| (k, s)))
        .filter(|(k, s)| !workspace.get(*k).is_some_and(|w| w.contains(*s)))
        .map(|(k, s)| format!("{k} [{s}] (the workspace builds it with {:?})", workspace.get(k)))
        .collect();
    assert!(missing.is_empty(), "pin these in device/Cargo.toml:\n{}", missing.join("\n"));
}
