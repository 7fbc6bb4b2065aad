//! Training data: a folder per person, content hashes, leakage-safe splits by person, and the
//! aligned-crop cache. Every image goes through the shared face pipeline once.

use facegate_face::{load_image, AlignedFace, FaceDetector, FaceFinder};
use facegate_shared::synthetic::SplitMix64;
use facegate_shared::{gallery_file::write_atomic, InputSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Version of detection + alignment; part of every cache key.
pub const PIPELINE_VERSION: u32 = 1;
/// File extensions read as images.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "pgm", "ppm", "bmp", "webp", "gif"];

/// Problems with a data folder, found before any training starts.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data folder {0} does not exist or is not a folder")]
    Missing(String),
    #[error("data folder {0} has no person folders with images (expected DATA/<person>/<image>)")]
    Empty(String),
    #[error("need at least {need} people with 2 or more usable images, found {found}")]
    TooFewPeople { need: usize, found: usize },
    /// A fold number outside `0..folds`, or fewer than two folds.
    #[error("fold {fold} of {folds}: folds are numbered 0 to folds − 1, and there must be at least 2")]
    BadFold { folds: usize, fold: usize },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// One image file and its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub person: String,
    pub path: PathBuf,
    pub sha256: String,
}

/// What scanning found besides the usable images.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ScanReport {
    /// Identical files under two or more people: all copies excluded.
    pub cross_person_duplicates: Vec<Vec<String>>,
    /// Identical files within one person: one copy kept.
    pub same_person_duplicates: usize,
    /// People left out because they have fewer than 2 images.
    pub too_few_images: Vec<String>,
}

/// All people and their images.
pub fn scan(dir: &Path) -> Result<(BTreeMap<String, Vec<ImageEntry>>, ScanReport), DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing(dir.display().to_string()));
    }
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| DataError::Io { path, source }
    };
    let mut all: Vec<ImageEntry> = Vec::new();
    let mut people: Vec<_> =
        std::fs::read_dir(dir).map_err(io(dir))?.collect::<Result<Vec<_>, _>>().map_err(io(dir))?;
    people.sort_by_key(|e| e.file_name());
    for p in people.into_iter().filter(|e| e.path().is_dir()) {
        let person = p.file_name().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(p.path())
            .map_err(io(&p.path()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                f.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_lowercase().as_str()))
            })
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).map_err(io(&f))?;
            all.push(ImageEntry { person: person.clone(), path: f, sha256: hex::encode(Sha256::digest(&bytes)) });
        }
    }
    if all.is_empty() {
        return Err(DataError::Empty(dir.display().to_string()));
    }
    let mut report = ScanReport::default();
    let mut by_hash: HashMap<&str, Vec<&ImageEntry>> = HashMap::new();
    for e in &all {
        by_hash.entry(&e.sha256).or_default().push(e);
    }
    let mut excluded = std::collections::HashSet::new();
    let mut groups: Vec<_> = by_hash.into_iter().filter(|(_, v)| v.len() > 1).collect();
    groups.sort_by(|a, b| a.0.cmp(b.0));
    for (hash, copies) in groups {
        let first = &copies[0].person;
        if copies.iter().any(|c| &c.person != first) {
            report.cross_person_duplicates.push(copies.iter().map(|c| c.path.display().to_string()).collect());
            excluded.insert(hash.to_owned());
        } else {
            report.same_person_duplicates += copies.len() - 1;
        }
    }
    let mut out: BTreeMap<String, Vec<ImageEntry>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for e in all {
        if excluded.contains(&e.sha256) || !seen.insert(e.sha256.clone()) {
            continue;
        }
        out.entry(e.person.clone()).or_default().push(e);
    }
    out.retain(|person, imgs| {
        let keep = imgs.len() >= 2;
        if !keep {
            report.too_few_images.push(person.clone());
        }
        keep
    });
    Ok((out, report))
}

/// Train / validation / test people. No person is in two splits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    pub seed: u64,
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

/// The people in name order, shuffled by `seed` (the order every split is cut from).
fn shuffled(people: &[String], seed: u64) -> Vec<String> {
    let mut order: Vec<String> = people.to_vec();
    order.sort();
    let mut rng = SplitMix64::new(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

impl Splits {
    /// Fold `fold` of `folds` person-disjoint folds: the seeded shuffle of the people dealt into
    /// `folds` folds in turn; the fold's people are the test people, `val` people of the others
    /// (the first in the shuffle) validate, the rest train. Over `fold = 0..folds` every person
    /// is a test person exactly once; the same seed gives the same folds.
    pub fn fold(people: &[String], seed: u64, folds: usize, fold: usize, val: usize) -> Result<Self, DataError> {
        if folds < 2 || fold >= folds {
            return Err(DataError::BadFold { folds, fold });
        }
        let order = shuffled(people, seed);
        let test: Vec<String> = order.iter().skip(fold).step_by(folds).cloned().collect();
        let rest: Vec<String> = order.iter().filter(|p| !test.contains(p)).cloned().collect();
        let need = val + 2;
        if test.is_empty() || rest.len() < need {
            return Err(DataError::TooFewPeople { need: need + folds, found: people.len() });
        }
        Ok(Self { seed, test: sorted(&test), val: sorted(&rest[..val]), train: sorted(&rest[val..]) })
    }

    /// Seeded shuffle of the people, then `val` and `test` people off the front.
    pub fn by_person(people: &[String], seed: u64, val: usize, test: usize) -> Result<Self, DataError> {
        let need = val + test + 2;
        if people.len() < need {
            return Err(DataError::TooFewPeople { need, found: people.len() });
        }
        let order = shuffled(people, seed);
        Ok(Self {
            seed,
            test: sorted(&order[..test]),
            val: sorted(&order[test..test + val]),
            train: sorted(&order[test + val..]),
        })
    }

    /// Writes the manifest (JSON) atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self).expect("serialises").as_bytes())
    }

    /// Reads a manifest.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }
}

/// An image that yielded no usable face.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rejected {
    pub path: String,
    pub reason: String,
}

/// Aligned crops for `spec`, from the cache when present. Returns crops in input order
/// (`None` for rejected images) and the rejects.
pub fn aligned_crops<D: FaceDetector>(
    finder: &FaceFinder<D>,
    images: &[ImageEntry],
    spec: &InputSpec,
    cache_dir: &Path,
    progress: &indicatif::ProgressBar,
) -> (Vec<Option<AlignedFace>>, Vec<Rejected>) {
    let key = format!("v{PIPELINE_VERSION}-{}x{}", spec.width, spec.height);
    let dir = cache_dir.join("crops").join(key);
    let _ = std::fs::create_dir_all(&dir);
    let mut rejected = Vec::new();
    let crops = images
        .iter()
        .map(|e| {
            progress.inc(1);
            let cached = dir.join(format!("{}.f32", e.sha256));
            if let Ok(bytes) = std::fs::read(&cached) {
                if bytes.len() == (spec.width * spec.height * 3 * 4) as usize {
                    let rgb = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                    return Some(AlignedFace { width: spec.width, height: spec.height, rgb });
                }
            }
            let found = load_image(&e.path).and_then(|img| finder.find_one(&img, spec));
            match found {
                Ok(f) => {
                    let bytes: Vec<u8> = f.aligned.rgb.iter().flat_map(|x| x.to_le_bytes()).collect();
                    let _ = write_atomic(&cached, &bytes);
                    Some(f.aligned)
                }
                Err(err) => {
                    rejected.push(Rejected { path: e.path.display().to_string(), reason: err.to_string() });
                    None
                }
            }
        })
        .collect();
    (crops, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn splits_are_by_person_disjoint_and_seeded() {
        let people: Vec<String> = (1..=40).map(|i| format!("s{i}")).collect();
        let a = Splits::by_person(&people, 7, 4, 8).unwrap();
        assert_eq!((a.train.len(), a.val.len(), a.test.len()), (28, 4, 8));
        let mut all: Vec<&String> = a.train.iter().chain(&a.val).chain(&a.test).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 40, "no person in two splits");
        assert_eq!(Splits::by_person(&people, 7, 4, 8).unwrap(), a);
        assert_ne!(Splits::by_person(&people, 8, 4, 8).unwrap(), a);
        assert!(matches!(Splits::by_person(&people[..5], 7, 4, 8), Err(DataError::TooFewPeople { .. })));
    }

    #[test]
    fn person_folds_test_everyone_once_and_never_mix_splits() {
        let people: Vec<String> = (1..=40).map(|i| format!("s{i}")).collect();
        let mut tested = Vec::new();
        for f in 0..5 {
            let s = Splits::fold(&people, 7, 5, f, 4).unwrap();
            assert_eq!((s.test.len(), s.val.len(), s.train.len()), (8, 4, 28), "fold {f}");
            for p in &s.test {
                assert!(!s.val.contains(p) && !s.train.contains(p), "{p} in two splits of fold {f}");
            }
            assert!(s.val.iter().all(|p| !s.train.contains(p)));
            assert_eq!(s, Splits::fold(&people, 7, 5, f, 4).unwrap(), "not reproducible");
            tested.extend(s.test);
        }
        tested.sort();
        let mut all = people.clone();
        all.sort();
        assert_eq!(tested, all, "every person a test person exactly once");
        assert_ne!(Splits::fold(&people, 8, 5, 0, 4).unwrap().test, Splits::fold(&people, 7, 5, 0, 4).unwrap().test);
        assert!(matches!(Splits::fold(&people, 7, 5, 5, 4), Err(DataError::BadFold { .. })));
        assert!(matches!(Splits::fold(&people, 7, 1, 0, 4), Err(DataError::BadFold { .. })));
        assert!(matches!(Splits::fold(&people[..6], 7, 5, 0, 4), Err(DataError::TooFewPeople { .. })));
    }

    #[test]
    fn duplicates_across_people_are_excluded_and_reported() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("a/1.pgm"), b"one");
        write(&d.path().join("a/2.pgm"), b"two");
        write(&d.path().join("a/3.pgm"), b"two"); // same person duplicate: one kept
        write(&d.path().join("b/1.pgm"), b"three");
        write(&d.path().join("b/2.pgm"), b"one"); // also under a: both excluded
        write(&d.path().join("b/3.pgm"), b"four");
        write(&d.path().join("b/target.txt"), b"not an image");
        write(&d.path().join("c/1.pgm"), b"five"); // only one image: left out
        let (people, report) = scan(d.path()).unwrap();
        assert_eq!(report.cross_person_duplicates.len(), 1);
        assert_eq!(report.cross_person_duplicates[0].len(), 2);
        assert_eq!(report.same_person_duplicates, 1);
        assert_eq!(report.too_few_images, ["a", "c"]);
        assert_eq!(people.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(
            people["b"].iter().map(|e| e.path.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(),
            ["1.pgm", "3.pgm"]
        );
        assert!(matches!(scan(&d.path().join("nope")), Err(DataError::Missing(_))));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(scan(empty.path()), Err(DataError::Empty(_))));
    }
}
