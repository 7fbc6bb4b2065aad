//! Helpers for the end-to-end tests: the real `facegate` and `facegate-door` binaries, the
//! repository's data and models.

pub mod door;
pub mod http;
pub mod pg;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A workspace binary built beside this test (`cargo test --workspace` builds them first).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let p = exe.parent().and_then(Path::parent).expect("target dir").join(name);
    assert!(p.is_file(), "{} is missing: build the workspace first (`cargo build --workspace`)", p.display());
    p
}

/// Runs a binary from the repository root.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name)).current_dir(root()).args(args).output().expect("binary starts")
}

/// Stdout of a successful run; panics with both streams otherwise.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `data/orl/sP/N.pgm`.
pub fn orl_photo(person: &str, n: u32) -> PathBuf {
    root().join(format!("data/orl/{person}/{n}.pgm"))
}

/// The people of one split of the trained encoder (`train`, `val`, `test`).
pub fn split(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join("models/facegate-default.splits.json")).expect("splits file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("splits JSON");
    v[name].as_array().expect("split list").iter().map(|p| p.as_str().expect("name").to_owned()).collect()
}
