//! The door unit's Debian package (`make package`), built by cargo-deb from the debug build that
//! `make test` already has (a package build never enables the test fakes): its control data,
//! files and conffiles for amd64 and arm64, lintian, and a real install in a throwaway Debian
//! bookworm root (mmdebstrap, cached outside the clone in `~/.cache/facegate/`): `dpkg -i`, the
//! user and folders of the layout table, `facegate-door check` and `run` there with a signed
//! gallery, an upgrade that keeps an edited `door.toml`, `dpkg -r` and `dpkg -P`.
//!
//! Needs root (chroot), `cargo-deb`, `lintian`, `mmdebstrap` and Debian's mirror once for the
//! root: `make setup` installs the tools; a missing one fails the test, never skips it.

use facegate_tests::{ok, orl_photo, root, run, split};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// Runs a program, failing the test with a clear message when it is missing.
fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not be started ({e}); `make setup` installs it"))
}

/// `cargo deb` for the door crate (dev profile, fast compression) into `out`; the .deb's path.
fn cargo_deb(out: &Path, extra: &[&str]) -> PathBuf {
    let t = Instant::now();
    let o = Command::new("cargo-deb")
        .current_dir(root())
        .args(["-p", "facegate-device", "--profile", "dev", "--fast", "-o"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("cargo-deb could not be started ({e}); `make setup` installs it"));
    let stdout = ok(&o);
    let deb = root().join(stdout.lines().last().expect("cargo-deb prints the package path").trim());
    assert!(deb.is_file(), "{}", deb.display());
    eprintln!(
        "built {} ({} bytes) in {:.1} s",
        deb.display(),
        deb.metadata().unwrap().len(),
        t.elapsed().as_secs_f64()
    );
    deb
}

/// The amd64 package, built once for this test binary (under target/, replaced on each run).
fn amd64_deb() -> &'static PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| cargo_deb(&root().join("target/debian-test"), &[]))
}

fn field(deb: &Path, name: &str) -> String {
    ok(&tool("dpkg-deb", &["-f", deb.to_str().unwrap(), name])).trim().to_owned()
}

/// The regular files in the package, without the leading `.`.
fn files(deb: &Path) -> Vec<String> {
    let list = ok(&tool("dpkg-deb", &["--contents", deb.to_str().unwrap()]));
    let mut v: Vec<String> = list
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split_whitespace().last().unwrap().trim_start_matches('.').to_owned())
        .collect();
    v.sort();
    v
}

/// Control data, files, conffiles and lintian of one package.
fn check_package(deb: &Path, arch: &str) {
    assert_eq!(field(deb, "Package"), "facegate-door");
    assert_eq!(field(deb, "Architecture"), arch);
    assert_eq!(field(deb, "Version"), format!("{VERSION}-1"), "the package version is the workspace version");
    let depends = field(deb, "Depends");
    // Computed from the binary's dynamic section (dpkg-shlibdeps or cargo-deb's own reading): glibc
    // with a minimum version; adduser for the maintainer scripts.
    assert!(depends.contains("libc6") && depends.contains("(>= 2."), "{depends}");
    assert!(depends.contains("adduser"), "{depends}");
    let mut expected = vec![
        "/etc/facegate/door.toml",
        "/usr/bin/facegate-door",
        "/usr/lib/systemd/system/facegate-door.service",
        "/usr/share/doc/facegate-door/README.md",
        "/usr/share/doc/facegate-door/changelog.Debian.gz",
        "/usr/share/doc/facegate-door/copyright",
        "/usr/share/facegate/face_detection_yunet_2023mar.onnx",
        "/usr/share/facegate/face_recognition_sface_2021dec.card.json",
        "/usr/share/facegate/face_recognition_sface_2021dec.onnx",
        "/usr/share/lintian/overrides/facegate-door",
    ];
    expected.sort();
    assert_eq!(files(deb), expected);
    let conffiles = ok(&tool("dpkg-deb", &["-I", deb.to_str().unwrap(), "conffiles"]));
    assert_eq!(conffiles.trim(), "/etc/facegate/door.toml");
    // The packaged models are the repository's, byte for byte; the config and unit too.
    let x = tempfile::tempdir().unwrap();
    ok(&tool("dpkg-deb", &["-x", deb.to_str().unwrap(), x.path().to_str().unwrap()]));
    for (inside, repo) in [
        ("usr/share/facegate/face_recognition_sface_2021dec.onnx", "models/face_recognition_sface_2021dec.onnx"),
        (
            "usr/share/facegate/face_recognition_sface_2021dec.card.json",
            "models/face_recognition_sface_2021dec.card.json",
        ),
        ("usr/share/facegate/face_detection_yunet_2023mar.onnx", "models/face_detection_yunet_2023mar.onnx"),
        ("etc/facegate/door.toml", "device/deploy/door.toml"),
        ("usr/lib/systemd/system/facegate-door.service", "device/deploy/facegate-door.service"),
    ] {
        assert!(std::fs::read(x.path().join(inside)).unwrap() == std::fs::read(root().join(repo)).unwrap(), "{inside}");
    }
    // `facegate-door --version` and the package version come from the workspace version.
    if arch == "amd64" {
        let v = ok(&tool(x.path().join("usr/bin/facegate-door").to_str().unwrap(), &["--version"]));
        assert_eq!(v.trim(), format!("facegate-door {VERSION}"));
    }
    // Stripped: no debug sections left in the binary.
    let sections = ok(&tool("readelf", &["-S", "-W", x.path().join("usr/bin/facegate-door").to_str().unwrap()]));
    assert!(!sections.contains(".debug_info"), "the packaged binary is stripped");
    // The unit points at the packaged paths and is gated on a trusted key.
    let unit = std::fs::read_to_string(x.path().join("usr/lib/systemd/system/facegate-door.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/facegate-door run --config /etc/facegate/door.toml"), "{unit}");
    assert!(unit.contains("ConditionPathExists=/etc/facegate/facegate.pub"), "{unit}");
    // lintian: no errors (the one override, the statically linked JPEG decoder, is in the package).
    let lint = tool("lintian", &["--fail-on", "error", deb.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&lint.stdout).into_owned();
    eprintln!("lintian {arch}:\n{report}");
    assert!(lint.status.success() && !report.lines().any(|l| l.starts_with("E:")), "{report}");
}

#[test]
fn the_changelog_carries_the_workspace_version() {
    let log = std::fs::read_to_string(root().join("device/debian/changelog")).unwrap();
    let top = log.lines().next().unwrap();
    assert!(top.starts_with(&format!("facegate-door ({VERSION}-1) ")), "{top}");
}

#[test]
fn the_amd64_package_has_its_files_conffile_and_dependencies_and_passes_lintian() {
    check_package(amd64_deb(), "amd64");
}

#[test]
fn the_arm64_package_has_its_files_conffile_and_dependencies_and_passes_lintian() {
    // Built without the camera feature here: nokhwa's bindgen and mozjpeg for aarch64 would add
    // minutes to `make test`; `make package` builds the release package with the camera.
    let deb = cargo_deb(&root().join("target/debian-test"), &["--target", AARCH64, "--no-default-features"]);
    check_package(&deb, "arm64");
    let depends = field(&deb, "Depends");
    assert!(!depends.contains("amd64"), "{depends}");
}

/// A Debian bookworm root (minbase + adduser) as a tar, made once with mmdebstrap and cached
/// outside the clone; the cache is written under a temporary name and renamed when complete.
fn bookworm_tar() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    let dir = home.join(".cache/facegate");
    std::fs::create_dir_all(&dir).unwrap();
    let tar = dir.join("debian-bookworm-amd64-minbase.tar");
    if !tar.is_file() {
        let partial = dir.join(format!("debian-bookworm-amd64-minbase.tar.partial-{}", std::process::id()));
        let t = Instant::now();
        let o = tool(
            "mmdebstrap",
            &[
                "--quiet",
                "--variant=minbase",
                "--format=tar",
                "--include=adduser",
                "bookworm",
                partial.to_str().unwrap(),
                "http://deb.debian.org/debian",
            ],
        );
        assert!(
            o.status.success(),
            "mmdebstrap could not make a bookworm root: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::rename(&partial, &tar).unwrap();
        eprintln!("made the bookworm root in {:.1} s", t.elapsed().as_secs_f64());
    }
    tar
}

/// A throwaway Debian root: commands run in it through chroot.
struct Chroot {
    dir: tempfile::TempDir,
}

impl Chroot {
    fn new() -> Chroot {
        let dir = tempfile::tempdir().unwrap();
        ok(&tool("tar", &["-xf", bookworm_tar().to_str().unwrap(), "-C", dir.path().to_str().unwrap()]));
        Chroot { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p.trim_start_matches('/'))
    }
    fn sh(&self, cmd: &str) -> Output {
        Command::new("chroot")
            .arg(self.dir.path())
            .args(["/bin/sh", "-c", cmd])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("chroot starts")
    }
    fn ok(&self, cmd: &str) -> String {
        let o = self.sh(cmd);
        assert!(
            o.status.success(),
            "in the chroot: {cmd}\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }
    /// Copies a host file into the root.
    fn put(&self, host: &Path, inside: &str) {
        std::fs::copy(host, self.path(inside)).unwrap_or_else(|e| panic!("{} → {inside}: {e}", host.display()));
    }
}

#[test]
fn the_amd64_package_installs_runs_upgrades_and_is_removed_in_a_debian_root() {
    let uid = ok(&tool("id", &["-u"]));
    assert_eq!(uid.trim(), "0", "chroot and dpkg need root: run `make test` as root (CI does)");
    let deb = amd64_deb();
    let root_fs = Chroot::new();

    // A gym's keys and a gallery enrolled with the default encoder (SFace, which the package
    // ships), and replay frames: two members' other photos and a stranger.
    let people = split("test");
    let (members, stranger) = (&people[..2], &people[2]);
    let w = tempfile::tempdir().unwrap();
    let (secret, public, gallery) = (w.path().join("k.secret"), w.path().join("k.pub"), w.path().join("gallery.fgg"));
    ok(&run("facegate", &["keys", "init", "--secret", secret.to_str().unwrap(), "--public", public.to_str().unwrap()]));
    for m in members {
        facegate_tests::door::enroll_orl(gallery.to_str().unwrap(), secret.to_str().unwrap(), m, None);
    }

    // Install.
    root_fs.put(deb, "/tmp/facegate-door.deb");
    let t = Instant::now();
    let out = root_fs.ok("dpkg -i /tmp/facegate-door.deb");
    let install_s = t.elapsed().as_secs_f64();
    eprintln!("dpkg -i in the bookworm root: {install_s:.1} s\n{out}");
    assert!(root_fs.ok("getent passwd facegate").starts_with("facegate:"));
    assert!(root_fs.ok("getent group facegate-enrol").starts_with("facegate-enrol:"));
    // The door's user may write the inbox (galleries pulled from gallery.url).
    let groups = root_fs.ok("id -nG facegate");
    assert!(groups.split_whitespace().any(|g| g == "facegate-enrol"), "{groups}");
    let modes = root_fs.ok("stat -c '%n %U:%G %a' /var/lib/facegate/inbox /var/lib/facegate/state /var/log/facegate");
    assert_eq!(
        modes.lines().collect::<Vec<_>>(),
        [
            "/var/lib/facegate/inbox root:facegate-enrol 2775",
            "/var/lib/facegate/state facegate:facegate 700",
            "/var/log/facegate facegate:facegate 750"
        ]
    );
    // The unit's user and groups exist on a plain Debian system (a missing group fails the unit
    // with 216/GROUP), and systemd parses the unit without complaint.
    let unit = std::fs::read_to_string(root_fs.path("/usr/lib/systemd/system/facegate-door.service")).unwrap();
    for line in unit.lines() {
        if let Some((key, value)) = line.split_once('=') {
            let db = match key {
                "User" => "passwd",
                "Group" | "SupplementaryGroups" => "group",
                _ => continue,
            };
            for name in value.split_whitespace() {
                root_fs.ok(&format!("getent {db} {name}"));
            }
        }
    }
    let verify = tool(
        "systemd-analyze",
        &["verify", "--man=no", root_fs.path("/usr/lib/systemd/system/facegate-door.service").to_str().unwrap()],
    );
    let complaints: Vec<String> = String::from_utf8_lossy(&verify.stderr)
        .lines()
        .filter(|l| !l.contains("is not executable")) // the binary is inside the root, not on the host
        .map(str::to_owned)
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify: {complaints:?}");
    // Enabled (the symlink deb-systemd-helper makes), not started (no key, no gallery yet).
    let wants = root_fs.path("/etc/systemd/system/multi-user.target.wants/facegate-door.service");
    assert!(wants.symlink_metadata().is_ok(), "the unit is enabled");
    assert_eq!(root_fs.ok("facegate-door --version").trim(), format!("facegate-door {VERSION}"));
    // Without a trusted key the unit's check refuses (the unit is also gated on the key).
    let o = root_fs.sh("runuser -u facegate -- facegate-door check --config /etc/facegate/door.toml");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success() && said.contains("/etc/facegate/facegate.pub"), "check without a key: {said}");

    // The key, the gallery in the inbox (as the front desk would), replay frames, and an edited
    // door.toml: the frames instead of the camera (the packaged config is dry-run already).
    root_fs.put(&public, "/etc/facegate/facegate.pub");
    root_fs.put(&gallery, "/var/lib/facegate/inbox/gallery.fgg");
    std::fs::create_dir(root_fs.path("/var/lib/facegate/frames")).unwrap();
    let mut seq = 0;
    for (person, photos) in [(&members[0], 4..=10), (stranger, 1..=10), (&members[1], 4..=10)] {
        for n in photos {
            seq += 1;
            root_fs.put(&orl_photo(person, n), &format!("/var/lib/facegate/frames/{seq:04}-{person}-{n}.pgm"));
        }
    }
    let conf = root_fs.path("/etc/facegate/door.toml");
    let packaged = std::fs::read_to_string(&conf).unwrap();
    let edited = packaged.replace(
        "uri = \"camera:0\"",
        "uri = \"dir:/var/lib/facegate/frames\"   # edited on this unit\npace = false\n#",
    );
    assert_ne!(edited, packaged);
    std::fs::write(&conf, &edited).unwrap();
    let check = root_fs.ok("runuser -u facegate -- facegate-door check --config /etc/facegate/door.toml");
    assert!(check.contains("\nready"), "{check}");

    // The packaged door runs: the gallery is installed into its state folder, the members are
    // let in, the stranger is not. (/run/facegate is what the unit's RuntimeDirectory makes.)
    root_fs.ok("install -d -o facegate -g facegate -m 0755 /run/facegate");
    root_fs.ok("runuser -u facegate -- facegate-door run --config /etc/facegate/door.toml");
    let prom = root_fs.ok("stat -c '%U %a' /run/facegate/door.prom");
    assert_eq!(prom.trim(), "facegate 644", "the metrics file is readable by node_exporter");
    let status = root_fs.sh("facegate-door status --config /etc/facegate/door.toml");
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(!status.status.success() && status_text.starts_with("door           STOPPED"), "{status_text}");
    let granted_logged = facegate_tests::door::events(&root_fs.path("/var/log/facegate/events.jsonl"))
        .iter()
        .filter(|e| e["decision"] == "granted")
        .count();
    assert!(status_text.contains(&format!("{granted_logged} granted")), "{status_text}");
    let log = facegate_tests::door::events(&root_fs.path("/var/log/facegate/events.jsonl"));
    let granted: Vec<String> = log
        .iter()
        .filter(|e| e["event"] == "decision" && e["decision"] == "granted")
        .map(|e| e["frame"].as_str().unwrap().split('-').nth(1).unwrap().to_owned())
        .collect();
    for m in members {
        assert!(granted.contains(m), "member {m} let in: {granted:?}");
    }
    assert!(!granted.contains(stranger), "stranger {stranger} let in: {granted:?}");
    assert!(root_fs.path("/var/lib/facegate/state/gallery.fgg").is_file());

    // Upgrade to a rebuilt package (revision 2): the edited door.toml is kept, nothing beside it.
    let deb2 = cargo_deb(&root().join("target/debian-test/upgrade"), &["--deb-revision", "2"]);
    root_fs.put(&deb2, "/tmp/facegate-door-2.deb");
    root_fs.ok("dpkg -i /tmp/facegate-door-2.deb");
    assert_eq!(root_fs.ok("dpkg-query -W -f '${Version}' facegate-door"), format!("{VERSION}-2"));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited, "the edited door.toml survives the upgrade");
    let leftovers = root_fs.ok("ls /etc/facegate");
    assert_eq!(leftovers.split_whitespace().collect::<Vec<_>>(), ["door.toml", "facegate.pub"]);
    let check = root_fs.ok("runuser -u facegate -- facegate-door check --config /etc/facegate/door.toml");
    assert!(check.contains("\nready"), "{check}");

    // Remove: the binary and unit go; configuration, inbox, installed gallery and log stay. The
    // prerm drives the (dry-run) lock secured.
    let out = root_fs.ok("dpkg -r facegate-door");
    assert!(out.contains("secured: dry run"), "{out}");
    assert_eq!(root_fs.ok("dpkg-query -W -f '${Status}' facegate-door"), "deinstall ok config-files");
    assert!(!root_fs.path("/usr/bin/facegate-door").exists());
    assert!(!root_fs.path("/usr/lib/systemd/system/facegate-door.service").exists());
    assert!(!root_fs.path("/usr/share/facegate").exists());
    for kept in [
        "/etc/facegate/door.toml",
        "/var/lib/facegate/inbox/gallery.fgg",
        "/var/lib/facegate/state/gallery.fgg",
        "/var/lib/facegate/state/install.state",
        "/var/log/facegate/events.jsonl",
    ] {
        assert!(root_fs.path(kept).is_file(), "{kept} is kept by dpkg -r");
    }

    // Purge: configuration, state and logs go; the administrator's key and the user stay.
    root_fs.ok("dpkg -P facegate-door");
    assert!(!root_fs.sh("dpkg-query -W facegate-door").status.success(), "dpkg forgets the package");
    for gone in ["/etc/facegate/door.toml", "/var/lib/facegate", "/var/log/facegate"] {
        assert!(!root_fs.path(gone).exists(), "{gone} is removed by dpkg -P");
    }
    assert!(root_fs.path("/etc/facegate/facegate.pub").is_file(), "the administrator's key stays");
    assert!(root_fs.ok("getent passwd facegate").starts_with("facegate:"), "the system user stays");
    assert!(!root_fs.path("/etc/systemd/system/multi-user.target.wants/facegate-door.service").exists());
}
