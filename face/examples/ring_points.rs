//! What the ring test's points say on real frames: a folder of one video's frames, or of
//! `facegate pad-eval --save-frames` attacks (grouped by name: `PERSON-KIND-NN.png`). Per point,
//! over every frame pair up to `GAP` frames apart, how often it moved with the face and how often
//! it stayed still, drawn where the point lies around the face; per sequence (of `WINDOW` frames
//! for a video), the frame pair with the most points moving with the face.
//! Run: `cargo run --release -p facegate-face --example ring_points -- FOLDER [GAP] [WINDOW]`
//! (needs `make setup`).

use facegate_face::parallax::{follow, FacePatch};
use facegate_face::ring::{ring_point_votes, PointVote, RING};
use facegate_face::{load_image, paths, FaceDetector, YuNet};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Seen = ([[f32; 2]; 5], FacePatch);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("FOLDER"));
    let gap: usize = args.get(2).map_or(3, |g| g.parse().expect("GAP"));
    let window: usize = args.get(3).map_or(usize::MAX, |g| g.parse().expect("WINDOW"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let det = YuNet::load(&root.join("models").join(paths::YUNET)).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    // sequences: by name before the last '-', cut into windows
    let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let key = stem.rsplit_once('-').map_or(String::new(), |(k, _)| k.to_owned());
        groups.entry(key).or_default().push(f);
    }
    let (mut with_face, mut still, mut pairs) = ([0u32; RING.len()], [0u32; RING.len()], 0u32);
    println!("sequence: frames with a face; the pair with most points with the face: with/still/tested");
    for (key, files) in &groups {
        for (w, chunk) in files.chunks(window.min(files.len()).max(1)).enumerate() {
            let frames: Vec<Seen> = chunk
                .iter()
                .filter_map(|f| {
                    let img = load_image(f).ok()?;
                    let d = det.detect(&img).ok()?.into_iter().max_by(|a, b| a.area().total_cmp(&b.area()))?;
                    Some((d.landmarks, FacePatch::cut(&img, &d.landmarks)?))
                })
                .collect();
            let mut most = (0usize, 0usize, 0usize);
            for j in 0..frames.len() {
                for i in j.saturating_sub(gap)..j {
                    let ((la, pa), (lb, pb)) = (&frames[i], &frames[j]);
                    let Some((fb, _)) = follow(pa, la, pb, lb) else { continue };
                    let Some(v) = ring_point_votes(pa, la, pb, &fb) else { continue };
                    pairs += 1;
                    let n = |x: PointVote| v.iter().filter(|&&y| y == x).count();
                    let (wf, st, tested) = (n(PointVote::WithFace), n(PointVote::Still), 40 - n(PointVote::Untested));
                    if wf > most.0 {
                        most = (wf, st, tested);
                    }
                    for (k, x) in v.iter().enumerate() {
                        with_face[k] += u32::from(*x == PointVote::WithFace);
                        still[k] += u32::from(*x == PointVote::Still);
                    }
                }
            }
            println!("{key}#{w}: {} {}/{}/{}", frames.len(), most.0, most.1, most.2);
        }
    }
    println!("{pairs} pairs up to {gap} apart");
    let cell = |k: usize| format!("{:>3}/{:<3}", with_face[k], still[k]);
    println!("above (with face / still), across -1.0 … 1.0 eye distances:");
    for row in 0..2 {
        let line: Vec<String> = (0..5).map(|c| cell(30 + row * 5 + c)).collect();
        println!("  {:.2} up: {}", [1.7, 1.95][row], line.join(" "));
    }
    println!(
        "beside, image left (1.7 1.5 1.3 out) | image right (1.3 1.5 1.7 out), rows from 1 above to 1 below the eyes:"
    );
    for (d, [_, down]) in RING.iter().take(5).enumerate() {
        let left: Vec<String> = (0..3).rev().map(|a| cell(a * 5 + d)).collect();
        let right: Vec<String> = (0..3).map(|a| cell(15 + a * 5 + d)).collect();
        println!("  {down:+.1}: {} | {}", left.join(" "), right.join(" "));
    }
}
