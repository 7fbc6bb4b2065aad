//! Window detection ([`RoiDetector`]) against YuNet on the whole canvas, frame by frame, on a
//! moving face: the same faces, within the measured gap of where the whole canvas finds them; the
//! whole canvas when the face is lost or another face appears, within `refresh` frames. Needs
//! `make setup`.

use facegate_face::{load_image, paths, DetectPath, Detection, FaceDetector, RoiDetector, YuNet};
use image::{imageops, Rgb, RgbImage};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn face(person: u32, side: u32) -> RgbImage {
    let img = load_image(&root().join(format!("data/orl/s{person}/1.pgm"))).expect("run `make setup` first");
    imageops::resize(&img, side * 92 / 112, side, imageops::FilterType::Triangle)
}

/// A 640×480 camera frame: grey, with each face at its top-left corner.
fn frame(faces: &[(&RgbImage, i64, i64)]) -> RgbImage {
    let mut f = RgbImage::from_pixel(640, 480, Rgb([110, 110, 110]));
    for (img, x, y) in faces {
        imageops::overlay(&mut f, *img, *x, *y);
    }
    f
}

fn yunet() -> PathBuf {
    root().join("models").join(paths::YUNET)
}

/// Largest difference between two detections' box corners and landmarks, in pixels.
fn gap(a: &Detection, b: &Detection) -> f32 {
    let boxes = a.bbox.iter().zip(&b.bbox).map(|(p, q)| (p - q).abs());
    let marks = a.landmarks.iter().flatten().zip(b.landmarks.iter().flatten()).map(|(p, q)| (p - q).abs());
    boxes.chain(marks).fold(0.0, f32::max)
}

// Measured (x86-64, tract 0.23.9): over the 12 frames below, window and whole-canvas detections
// differ by at most 3.49 px (a box corner; landmarks 2.62 px) and 0.00167 in score. YuNet's own
// landmarks move by as much when the whole frame moves by one pixel (examples/window_gap.rs).
/// Largest difference measured, in image pixels (640×480 canvas, so canvas pixels too).
const MEASURED_GAP: f32 = 3.49;
/// Allowed: the measured gap plus half a pixel (other CPUs' kernels sum in other orders).
const GAP_ALLOWED: f32 = MEASURED_GAP + 0.5;
/// Largest score difference measured.
const MEASURED_SCORE_GAP: f32 = 0.00167;
/// Allowed: the measured difference plus 0.001.
const SCORE_ALLOWED: f32 = MEASURED_SCORE_GAP + 0.001;

#[test]
fn windows_find_the_moving_face_where_the_whole_canvas_does() {
    let whole = YuNet::load(&yunet()).unwrap();
    let roi = RoiDetector::load(&yunet(), (640, 480), 5).unwrap();
    // 640×480: windows up to 60 % of the canvas (384 px is 48 %)
    assert_eq!(roi.window_sides(), [128, 160, 192, 256, 320, 384]);
    let s1 = face(1, 180);
    let mut paths = Vec::new();
    let (mut worst, mut worst_score): (f32, f32) = (0.0, 0.0);
    for i in 0..12 {
        let f = frame(&[(&s1, 150 + 9 * i, 120 + 4 * i)]);
        let (w, r) = (whole.detect(&f).unwrap(), roi.detect(&f).unwrap());
        assert_eq!((w.len(), r.len()), (1, 1), "frame {i}: {w:?} vs {r:?}");
        worst = worst.max(gap(&w[0], &r[0]));
        worst_score = worst_score.max((w[0].score - r[0].score).abs());
        paths.push(roi.last_path());
    }
    eprintln!("largest window/whole gap {worst} px, score {worst_score}; paths {paths:?}");
    assert!(worst_score <= SCORE_ALLOWED, "window scores moved {worst_score} from the whole canvas's");
    assert!(worst <= GAP_ALLOWED, "window detections moved {worst} px from the whole canvas's");
    // the whole canvas on the first frame and then every 5th; a window (the face's box is about
    // 150 px high; with its margins and the 32-px grid it needs 320 px) in between
    for (i, p) in paths.iter().enumerate() {
        let expected = if i % 5 == 0 { DetectPath::Whole } else { DetectPath::Window(320) };
        assert_eq!(*p, expected, "frame {i}: {paths:?}");
    }
}

#[test]
fn a_lost_face_or_a_new_one_brings_back_the_whole_canvas() {
    let roi = RoiDetector::load(&yunet(), (640, 480), 8).unwrap();
    let (s1, s2) = (face(1, 150), face(2, 220));
    // followed at the left ...
    for _ in 0..3 {
        assert_eq!(roi.detect(&frame(&[(&s1, 40, 100)])).unwrap().len(), 1);
    }
    assert!(matches!(roi.last_path(), DetectPath::Window(_)));
    // ... jumps to the right between two frames: the window is empty, the same call runs the
    // whole canvas and finds it there
    let d = roi.detect(&frame(&[(&s1, 440, 100)])).unwrap();
    assert_eq!(roi.last_path(), DetectPath::Whole);
    assert_eq!(d.len(), 1);
    assert!(d[0].bbox[0] > 400.0, "{d:?}");
    // a second, larger face walks in at the other side: seen within the refresh (8 frames)
    let mut seen_after = None;
    for i in 0..8 {
        let d = roi.detect(&frame(&[(&s1, 440, 100), (&s2, 20, 150)])).unwrap();
        if d.len() == 2 {
            seen_after = Some(i);
            break;
        }
        assert!(matches!(roi.last_path(), DetectPath::Window(_)), "frame {i}");
    }
    let seen_after = seen_after.expect("the second face was not seen within 8 frames");
    assert_eq!(roi.last_path(), DetectPath::Whole);
    assert_eq!(seen_after, 7, "the refresh is the 8th frame after the last whole canvas");
    // the face moves out across the window's left edge (the window runs 384..640): cut or near
    // the edge, or not found at all, the same call runs the whole canvas
    roi.reset();
    let near = frame(&[(&s1, 440, 100)]);
    roi.detect(&near).unwrap();
    roi.detect(&near).unwrap();
    assert!(matches!(roi.last_path(), DetectPath::Window(_)));
    let d = roi.detect(&frame(&[(&s1, 360, 100)])).unwrap();
    assert_eq!((d.len(), roi.last_path()), (1, DetectPath::Whole), "{d:?}");
    // another frame size: the whole canvas
    roi.detect(&near).unwrap();
    let small = imageops::resize(&near, 320, 240, imageops::FilterType::Triangle);
    assert_eq!(roi.detect(&small).unwrap().len(), 1);
    assert_eq!(roi.last_path(), DetectPath::Whole);
    // nothing in the frame: the whole canvas, then the whole canvas again
    let empty = frame(&[]);
    assert!(roi.detect(&empty).unwrap().is_empty());
    assert!(roi.detect(&empty).unwrap().is_empty());
    assert_eq!(roi.last_path(), DetectPath::Whole);
}

#[test]
fn refresh_0_prepares_no_window_and_a_face_too_large_for_one_uses_the_whole_canvas() {
    let roi = RoiDetector::load(&yunet(), (640, 480), 0).unwrap();
    assert!(roi.window_sides().is_empty());
    let s1 = face(1, 180);
    for _ in 0..3 {
        roi.detect(&frame(&[(&s1, 150, 120)])).unwrap();
        assert_eq!(roi.last_path(), DetectPath::Whole);
    }
    // a 320×256 canvas: windows up to 192 (45 % of its area; 256² would be 80 %); a face
    // filling most of the frame fits none
    let roi = RoiDetector::load(&yunet(), (320, 256), 10).unwrap();
    assert_eq!(roi.window_sides(), [128, 160, 192]);
    let big = face(1, 420);
    for _ in 0..3 {
        assert_eq!(roi.detect(&frame(&[(&big, 150, 30)])).unwrap().len(), 1);
        assert_eq!(roi.last_path(), DetectPath::Whole);
    }
}
