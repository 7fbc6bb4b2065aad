//! End-to-end: the real `facegate` binary trains on a few ORL people, resumes an interrupted run
//! to the same weights, and exports ONNX that tract runs like tch. Needs `make setup`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A data folder linking 8 ORL people.
fn small_orl(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 1..=8 {
        let src = root().join(format!("data/orl/s{i}"));
        assert!(src.exists(), "{} missing: run `make setup`", src.display());
        std::os::unix::fs::symlink(&src, data.join(format!("s{i}"))).unwrap();
    }
    data
}

fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_facegate-train"))
        .current_dir(root())
        .args(["train", "--data"])
        .arg(data)
        .arg("-o")
        .arg(out)
        .args(["--val-people", "2", "--test-people", "2", "--people-per-batch", "4", "--images-per-person", "4"])
        .args(["--pretrain-steps", "6", "--steps", "12", "--epoch-steps", "6", "--device", "cpu", "--seed", "11"])
        .arg("--cache")
        .arg(root().join(".cache"))
        .args(extra)
        .output()
        .unwrap()
}

/// `facegate export CKPT -o OUT`: succeeds, and its own tch/tract parity check passed; the summary.
fn export(checkpoint: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_facegate-train"))
        .arg("export")
        .arg(checkpoint)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(summary["parity_max_abs_diff"].as_f64().unwrap() <= 1e-4);
    summary
}

#[test]
fn train_resume_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_orl(dir.path());

    let full = dir.path().join("full");
    let out = train(&data, &full, &[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("split by person 4 train / 2 val / 2 test"), "{log}");
    assert!(log.contains("diagnosis:"), "{log}");
    let metrics = std::fs::read_to_string(full.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 3, "header + 3 epochs:\n{metrics}");
    assert!(full.join("learning_curves.png").exists());
    let splits: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("splits.json")).unwrap()).unwrap();
    let people =
        |k: &str| splits[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let (tr, va, te) = (people("train"), people("val"), people("test"));
    assert!(
        tr.iter().all(|p| !va.contains(p) && !te.contains(p)) && va.iter().all(|p| !te.contains(p)),
        "no person in two splits"
    );

    // interrupted after 9 steps, then resumed: the same final weights as the uninterrupted run
    let resumed = dir.path().join("resumed");
    let out = train(&data, &resumed, &["--stop-after", "9"]);
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    // resuming with another recipe is refused, naming the flag, and changes nothing
    let before = std::fs::read(resumed.join("last/state.json")).unwrap();
    let out = train(&data, &resumed, &["--resume", "--lr", "0.005"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--lr: 0.002 at the start, 0.005 now"), "{err}");
    assert_eq!(std::fs::read(resumed.join("last/state.json")).unwrap(), before);
    let out = train(&data, &resumed, &["--resume"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["last/encoder.safetensors", "last/ema.safetensors", "best.safetensors"] {
        assert_eq!(
            std::fs::read(full.join(f)).unwrap(),
            std::fs::read(resumed.join(f)).unwrap(),
            "{f} differs after resume"
        );
    }
    assert_eq!(metrics, std::fs::read_to_string(resumed.join("metrics.csv")).unwrap());

    // export: parity between tch and tract is checked by the command itself
    let onnx = dir.path().join("enc.onnx");
    let summary = export(&full.join("best.safetensors"), &onnx, &["--dynamic-batch"]);
    let card = facegate_shared::ModelCard::load(&onnx.with_extension("card.json")).unwrap();
    assert!(card.check_fingerprint(&std::fs::read(&onnx).unwrap()).is_ok());
    assert!(card.normalised_in_graph);
    assert!(onnx.with_extension("golden.json").exists());
    assert_eq!(
        summary["dynamic_batch"].as_str().map(std::path::PathBuf::from),
        Some(onnx.with_extension("dynamic.onnx"))
    );
    assert!(onnx.with_extension("dynamic.onnx").exists());

    // transfer learning: import the exported ONNX into tch, fine-tune only the embedding layer,
    // export again. The frozen layers' weights come back bit for bit; the embedding layer moved.
    let tuned = dir.path().join("tuned");
    let init = onnx.display().to_string();
    let out = train(&data, &tuned, &["--init-from", &init, "--freeze", "backbone"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("imported ONNX encoder 1x64x64 -> 128-d"), "{log}");
    let onnx2 = dir.path().join("tuned.onnx");
    export(&tuned.join("best.safetensors"), &onnx2, &[]);
    let card2 = facegate_shared::ModelCard::load(&onnx2.with_extension("card.json")).unwrap();
    assert!(card2.training.as_deref().unwrap().contains("fine-tuned (--freeze backbone)"), "{:?}", card2.training);
    assert_ne!(card2.fingerprint, card.fingerprint);
    let weights = |p: &Path| -> std::collections::HashMap<String, Vec<u8>> {
        use prost::Message;
        let m = tract_onnx::pb::ModelProto::decode(std::fs::read(p).unwrap().as_slice()).unwrap();
        m.graph.unwrap().initializer.into_iter().map(|t| (t.name, t.raw_data)).collect()
    };
    let (w1, w2) = (weights(&onnx), weights(&onnx2));
    assert_eq!(w1.len(), w2.len());
    for (name, v) in &w1 {
        if name.starts_with("head.fc.") {
            assert_ne!(v, &w2[name], "{name}: the embedding layer trains");
        } else {
            assert_eq!(v, &w2[name], "{name}: frozen layers stay as imported");
        }
    }
    // an ONNX base without its card is refused before any work
    let bare = dir.path().join("bare.onnx");
    std::fs::copy(&onnx, &bare).unwrap();
    let out = train(&data, &dir.path().join("x"), &["--init-from", &bare.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs its card"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_data_folders_fail_before_work_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(&dir.path().join("missing"), &dir.path().join("o"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = train(&dir.path().join("missing"), &dir.path().join("o"), &["--margin", "3"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("[0, 2]"));
    let one = dir.path().join("one");
    std::fs::create_dir_all(one.join("a")).unwrap();
    std::fs::copy(root().join("data/orl/s1/1.pgm"), one.join("a/1.pgm")).unwrap();
    std::fs::copy(root().join("data/orl/s1/2.pgm"), one.join("a/2.pgm")).unwrap();
    let out = train(&one, &dir.path().join("o"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("need at least"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `facegate-train cv --k 4` on 8 ORL people (tiny runs): every person is a test person exactly
/// once across the folds' `splits.json`, never trained or validated on in their own fold; the
/// report's mean test EER is the mean of the folds'.
#[test]
fn cross_validation_tests_every_person_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_orl(dir.path());
    let out = dir.path().join("cv");
    let o = Command::new(env!("CARGO_BIN_EXE_facegate-train"))
        .current_dir(root())
        .args(["cv", "--k", "4", "--data"])
        .arg(&data)
        .arg("-o")
        .arg(&out)
        .args(["--val-people", "2", "--people-per-batch", "4", "--images-per-person", "4"])
        .args(["--pretrain-steps", "6", "--steps", "12", "--epoch-steps", "6", "--device", "cpu", "--seed", "11"])
        .arg("--cache")
        .arg(root().join(".cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: PathBuf| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let cv = read(out.join("cv.json"));
    let folds = cv["finished"].as_array().unwrap();
    assert_eq!(folds.len(), 4, "{cv}");
    let mut tested = Vec::new();
    for (f, fold) in folds.iter().enumerate() {
        let s = read(out.join(format!("fold-{f}/splits.json")));
        let names = |k: &str| -> Vec<String> {
            s[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        let (test, val, train) = (names("test"), names("val"), names("train"));
        assert_eq!((test.len(), val.len(), train.len()), (2, 2, 4), "fold {f}: {s}");
        assert!(test.iter().all(|p| !val.contains(p) && !train.contains(p)), "fold {f}: {s}");
        assert_eq!(fold["test"]["people"], 2);
        tested.extend(test);
    }
    tested.sort();
    let mut all: Vec<String> = (1..=8).map(|i| format!("s{i}")).collect();
    all.sort();
    assert_eq!(tested, all, "every person a test person exactly once");
    let eers: Vec<f64> = folds.iter().map(|f| f["test"]["eer"].as_f64().unwrap()).collect();
    assert!(eers.iter().all(|e| (0.0..=1.0).contains(e)), "{eers:?}");
    let mean = eers.iter().sum::<f64>() / 4.0;
    assert!((cv["test_eer"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{cv}");
    assert!(std::fs::read_to_string(out.join("cv.md")).unwrap().contains("mean ± sd"));
}

/// SHA-256 of a file, hex.
fn sha256_hex(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn distillation_shows_the_teacher_training_faces_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_orl(dir.path());
    let cache = dir.path().join("cache");
    let sface = root().join("models/face_recognition_sface_2021dec.onnx");
    assert!(sface.exists(), "{} missing: run `make setup`", sface.display());
    let run = |out: &Path, weight: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_facegate-train"));
        c.current_dir(root()).args(["train", "--data"]).arg(&data).arg("-o").arg(out);
        c.args(["--val-people", "2", "--test-people", "2", "--people-per-batch", "4", "--images-per-person", "4"]);
        c.args(["--pretrain-steps", "6", "--steps", "6", "--epoch-steps", "6", "--device", "cpu", "--seed", "11"]);
        c.arg("--cache").arg(&cache);
        c.arg("--teacher").arg(&sface).args(["--distill-weight", weight, "--distill-blends", "16"]);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let taught = dir.path().join("taught");
    let log = run(&taught, "4");
    assert!(log.contains("teacher:") && log.contains("embedded"), "{log}");
    assert!(log.contains("embedded 16 blends of two training people"), "{log}");

    // the teacher's cache holds exactly the training people's images: nothing of the
    // validation or test people was given to it
    let splits: serde_json::Value =
        serde_json::from_slice(&std::fs::read(taught.join("splits.json")).unwrap()).unwrap();
    let people =
        |k: &str| -> Vec<String> { splits[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect() };
    let shas_of = |names: &[String]| -> std::collections::BTreeSet<String> {
        names
            .iter()
            .flat_map(|p| std::fs::read_dir(data.join(p)).unwrap().map(|e| sha256_hex(&e.unwrap().path())))
            .collect()
    };
    let teacher_dirs: Vec<_> = std::fs::read_dir(cache.join("teacher")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(teacher_dirs.len(), 1, "{teacher_dirs:?}");
    let cached: std::collections::BTreeSet<String> = std::fs::read_dir(&teacher_dirs[0])
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached, shas_of(&people("train")), "teacher saw exactly the training images");
    let held_out: Vec<String> = people("val").into_iter().chain(people("test")).collect();
    assert!(cached.is_disjoint(&shas_of(&held_out)));
    for f in std::fs::read_dir(&teacher_dirs[0]).unwrap() {
        assert_eq!(std::fs::metadata(f.unwrap().path()).unwrap().len(), 128 * 4, "SFace: 128 floats per image");
    }

    // the distillation term is in the loss: the same run with weight 0 (same batches, blends and
    // batch-norm statistics) has a lower training loss at the first epoch
    let first_loss = |out: &Path| -> f64 {
        let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == "train_loss").unwrap();
        csv.lines().nth(1).unwrap().split(',').nth(col).unwrap().parse().unwrap()
    };
    let weightless = dir.path().join("weightless");
    run(&weightless, "0");
    let (a, b) = (first_loss(&weightless), first_loss(&taught));
    assert!(b > a + 1e-3, "softmax loss {a} with weight 0, {b} with weight 4 (the term adds a positive amount)");
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(taught.join("best.json")).unwrap()).unwrap();
    assert!(info["args"]["teacher"].as_str().unwrap().ends_with("face_recognition_sface_2021dec.onnx"), "{info}");

    // a second run reads the teacher's embeddings from the cache
    let again = run(&dir.path().join("again"), "4");
    assert!(again.contains(&format!("from the cache {}", teacher_dirs[0].display())), "{again}");
}

/// Transfer learning onto a smaller network: `graft` keeps SFace to its 28×28 stage and adds a
/// fresh head; training with `--freeze K --trunk-views 2` runs the kept layers once per view and
/// trains only the head; the export keeps SFace's layers bit for bit and passes its tch/tract
/// parity check.
#[test]
fn graft_then_train_only_the_head_on_cached_trunk_maps() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_orl(dir.path());
    let sface = root().join("models/face_recognition_sface_2021dec.onnx");
    assert!(sface.exists(), "{} missing: run `make setup`", sface.display());
    let grafted = dir.path().join("g.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_facegate-train"))
        .arg("graft")
        .arg("--from")
        .arg(&sface)
        .args(["--cut", "conv_5_relu", "--head", "dw2,pw32,gdc", "--dim", "16", "-o"])
        .arg(&grafted)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(g["cut_shape"], serde_json::json!([256, 28, 28]));
    let k = g["trunk_layers"].as_u64().unwrap().to_string();
    assert_eq!(k, "27", "stem + 4 depthwise/pointwise pairs, 3 layers each");
    let card = facegate_shared::ModelCard::load(&grafted.with_extension("card.json")).unwrap();
    assert_eq!((card.embedding_dim.get(), card.threshold.is_none()), (16, true));

    // the cache needs frozen layers to cache
    let out = dir.path().join("nofreeze");
    let o = train(&data, &out, &["--init-from", grafted.to_str().unwrap(), "--trunk-views", "2"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--freeze"));

    let out = dir.path().join("head");
    let o = train(&data, &out, &["--init-from", grafted.to_str().unwrap(), "--freeze", &k, "--trunk-views", "2"]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    // 4 training people x 10 photos, 2 views each
    assert!(log.contains("trunk: frozen layers to 'conv_5_relu' run once on 2 views of 40 faces"), "{log}");
    let onnx = dir.path().join("head.onnx");
    export(&out.join("best.safetensors"), &onnx, &[]);
    // the values, whether stored as raw bytes (Facegate's export) or as floats (SFace)
    let init = |p: &Path| -> std::collections::HashMap<String, Vec<u32>> {
        use prost::Message;
        let m = tract_onnx::pb::ModelProto::decode(std::fs::read(p).unwrap().as_slice()).unwrap();
        let bits = |t: &tract_onnx::pb::TensorProto| -> Vec<u32> {
            if t.raw_data.is_empty() {
                t.float_data.iter().map(|f| f.to_bits()).collect()
            } else {
                t.raw_data.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
        };
        m.graph.unwrap().initializer.iter().map(|t| (t.name.clone(), bits(t))).collect()
    };
    let (before, after) = (init(&grafted), init(&onnx));
    assert_eq!(before.keys().collect::<std::collections::BTreeSet<_>>(), after.keys().collect());
    for (name, values) in &before {
        if name.starts_with("head_") {
            continue;
        }
        assert!(!values.is_empty() && after[name] == *values, "trunk weight {name} changed");
    }
    let moved = before.iter().filter(|(n, b)| n.starts_with("head_") && after[*n] != **b).count();
    assert!(moved >= 8, "only {moved} head tensors trained");
}
