//! Killing the writer at random points while it rewrites a large gallery: the file on disk is
//! always the old or the new valid, signed gallery. (`kill -9` of the real `facegate` process;
//! the page cache survives it, so this tests the write-to-temp / fsync / rename protocol, not
//! the storage hardware.)

use facegate_shared::synthetic::{binding, random_unit, SplitMix64};
use facegate_shared::{gallery_file, keys, EmbeddingDim, Gallery, Member, MemberId, Threshold, Validity};
use facegate_tests::{bin, ok, run};
use std::process::{Command, Stdio};
use std::time::Instant;

#[test]
fn gallery_on_disk_is_always_old_or_new_when_the_writer_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    ok(&run("facegate", &["keys", "init", "--secret", &p("k.secret"), "--public", &p("k.pub")]));
    let key = keys::read_signing_key(dir.path().join("k.secret").as_path()).unwrap();
    let dim = EmbeddingDim::new(128).unwrap();
    let mut g = Gallery::new(binding(b"power-cut"), dim, Threshold::new(0.8).unwrap());
    let mut rng = SplitMix64::new(11);
    for i in 0..30_000 {
        let id = MemberId::new(&format!("m{i}")).unwrap();
        let m = Member {
            id,
            name: format!("Member {i}"),
            validity: Validity::OPEN,
            enrolled_at: 0,
            embeddings: vec![random_unit(&mut rng, dim)],
        };
        g.add(m).unwrap();
    }
    g.revision = 1;
    let path = dir.path().join("gym.fgg");
    gallery_file::save(&path, &g, Some(&key)).unwrap();

    let renew = |day: u32| {
        Command::new(bin("facegate"))
            .args(["members", "--gallery", &p("gym.fgg"), "--key", &p("k.secret"), "renew", "m0"])
            .args(["--valid-until", &format!("2030-01-{:02}", day % 28 + 1)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let t = Instant::now();
    assert!(renew(0).wait().unwrap().success());
    let full = t.elapsed();
    let mut revision = 2;
    let (mut killed, mut finished) = (0, 0);
    for i in 1..=30u32 {
        let mut child = renew(i);
        let delay = full.mul_f64(rng.next_f64() * 1.3);
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(_) => finished += 1,
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                killed += 1;
            }
        }
        let on_disk = gallery_file::load_trusted(&path, &[key.verifying_key()])
            .unwrap_or_else(|e| panic!("after a kill at {delay:?} the gallery is unreadable: {e}"));
        assert!(
            on_disk.revision == revision || on_disk.revision == revision + 1,
            "revision {} after {revision}",
            on_disk.revision
        );
        assert_eq!(on_disk.members().len(), 30_000);
        revision = on_disk.revision;
    }
    eprintln!("full write {full:?}; {killed} writers killed, {finished} finished; final revision {revision}");
    assert!(killed > 0 && finished + (revision as usize - 2) > 0, "{killed} killed, {finished} finished");
}
