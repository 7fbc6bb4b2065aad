//! Enrolment photo quality: what is measured on one detected face, the limits a photo must meet,
//! and head pose from the five landmarks (the one copy, also for presentation-attack checks).
//!
//! Measurements, all on the detection and on a [`QUALITY_CROP`]×[`QUALITY_CROP`] aligned grey
//! crop (the ArcFace template, so every encoder's photos are judged alike):
//! - **eye distance** in source pixels (is the face large enough to carry detail);
//! - **sharpness**: variance of the 4-neighbour Laplacian of the crop divided by the variance of
//!   the crop itself, ×1000 (blur lowers it; dividing by the contrast keeps a dark or flat photo
//!   from reading as blurred);
//! - **brightness** (mean grey level, 0–255) and **contrast** (its standard deviation);
//! - **pose**: yaw, pitch and roll in degrees from the landmarks ([`HeadPose::from_landmarks`]);
//! - the **detector score**.
//!
//! Consistency across one member's photos is checked where the embeddings are:
//! [`inconsistent_photos`].

use facegate_shared::{Embedding, Threshold};

use crate::{align_face, AlignedFace, Detection, ARCFACE_TEMPLATE_112};

/// Side of the aligned crop quality is measured on (the ArcFace template's own size).
pub const QUALITY_CROP: u32 = 112;

/// Head pose in degrees. Positive yaw: the face turns towards the image's right; positive pitch:
/// the chin goes down (looking down); positive roll: the eye line rises towards the image's right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadPose {
    /// Left–right rotation.
    pub yaw: f32,
    /// Up–down rotation.
    pub pitch: f32,
    /// In-plane rotation of the eye line.
    pub roll: f32,
}

/// Nose-tip depth in front of the eye plane, as a fraction of the eye distance (anthropometric
/// average: about 32 mm for 63 mm between the pupils).
const NOSE_DEPTH_PER_EYE_DISTANCE: f32 = 0.5;
/// Nose-tip depth in front of the eye–mouth plane, as a fraction of the eye-to-mouth distance.
const NOSE_DEPTH_PER_EYE_MOUTH: f32 = 0.5;
/// Where YuNet puts the nose tip of a frontal face, below the ArcFace template's, as a fraction
/// of the eye-to-mouth distance. Measured: against the template alone the median pitch was 8.2°
/// on the 400 ORL photos and 9.3° on 22 real colour photos, i.e. a landmark convention, not a
/// head pose; 0.075 centres both (median after correction −0.3° and 2.0°).
pub const YUNET_NOSE_BIAS: f32 = 0.075;

impl HeadPose {
    /// Pose from the five landmarks (right eye, left eye, nose tip, right and left mouth
    /// corners) with a rigid-face model: turning by θ moves the nose tip, which stands in front of
    /// the eye and mouth planes, sideways by `depth·sin θ` while the eye distance shrinks by
    /// `cos θ`. The frontal reference is the ArcFace template. Approximate (a few degrees near
    /// frontal, coarser beyond 30°), which is enough to refuse strongly turned heads. The frontal
    /// reference is the ArcFace template with the nose where YuNet puts it ([`YUNET_NOSE_BIAS`]).
    pub fn from_landmarks(l: &[[f32; 2]; 5]) -> Self {
        let [re, le, nose, rm, lm] = *l;
        let roll = (-(le[1] - re[1])).atan2(le[0] - re[0]);
        // Undo the roll around the eye midpoint so yaw and pitch are measured upright.
        let mid = [(re[0] + le[0]) / 2.0, (re[1] + le[1]) / 2.0];
        let (s, c) = roll.sin_cos();
        let up = |p: [f32; 2]| {
            let (dx, dy) = (p[0] - mid[0], p[1] - mid[1]);
            [dx * c - dy * s, dx * s + dy * c]
        };
        let (re, le, nose, rm, lm) = (up(re), up(le), up(nose), up(rm), up(lm));
        let eye_dist = (le[0] - re[0]).hypot(le[1] - re[1]).max(1e-3);
        let mouth = [(rm[0] + lm[0]) / 2.0, (rm[1] + lm[1]) / 2.0];
        let eye_mouth = (mouth[1] - 0.0).max(1e-3); // eyes are at y = 0 after centring
        let t = ARCFACE_TEMPLATE_112;
        let t_eye_y = (t[0][1] + t[1][1]) / 2.0;
        let t_mouth_y = (t[3][1] + t[4][1]) / 2.0;
        let t_nose_ratio = (t[2][1] - t_eye_y) / (t_mouth_y - t_eye_y) + YUNET_NOSE_BIAS;
        let t_nose_x = (t[2][0] - (t[0][0] + t[1][0]) / 2.0) / (t[1][0] - t[0][0]);
        // Sideways nose offset relative to the (foreshortened) eye distance: d·sinθ / cosθ.
        let yaw = (((nose[0] / eye_dist) - t_nose_x) / NOSE_DEPTH_PER_EYE_DISTANCE).atan();
        let pitch = (((nose[1] / eye_mouth) - t_nose_ratio) / NOSE_DEPTH_PER_EYE_MOUTH).atan();
        Self { yaw: yaw.to_degrees(), pitch: pitch.to_degrees(), roll: roll.to_degrees() }
    }
}

/// What was measured on one face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityReport {
    /// Distance between the eye landmarks in source pixels.
    pub eye_distance_px: f32,
    /// 1000 × variance of the Laplacian / variance of the aligned grey crop.
    pub sharpness: f32,
    /// Mean grey level of the aligned crop (0–255).
    pub brightness: f32,
    /// Standard deviation of the grey level of the aligned crop.
    pub contrast: f32,
    /// Head pose.
    pub pose: HeadPose,
    /// Detector confidence.
    pub score: f32,
}

/// Limits an enrolment photo must meet. Chosen from measurements (see the issue note and
/// `face/tests/quality.rs`): [`QualityLimits::ENROLMENT`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityLimits {
    /// Smallest eye distance in source pixels.
    pub min_eye_distance_px: f32,
    /// Smallest contrast-normalised Laplacian variance of the aligned crop.
    pub min_sharpness: f32,
    /// Darkest mean grey level.
    pub min_brightness: f32,
    /// Brightest mean grey level.
    pub max_brightness: f32,
    /// Smallest grey-level standard deviation.
    pub min_contrast: f32,
    /// Largest |yaw| in degrees.
    pub max_yaw: f32,
    /// Largest |pitch| in degrees.
    pub max_pitch: f32,
    /// Largest |roll| in degrees.
    pub max_roll: f32,
    /// Smallest detector score.
    pub min_score: f32,
}

impl QualityLimits {
    /// The enrolment gate's limits.
    ///
    /// Measured on the 400 ORL photos (small grey faces) and 22 real colour photos: eye distance
    /// ORL 28–44 px, real 69–137 px; sharpness ORL ≥ 19.7 (upscaled 3×), real ≥ 183, a Gaussian blur of 6 % of the eye distance 2.5; brightness ORL 56–150, real
    /// 39–148; contrast ≥ 34 in both (made-to-fail: 11 flat, 17 dark); |yaw| up to 28° on ORL (5 photos above 25°), pitch within
    /// ±12°, |roll| ≤ 14°; detector score ≥ 0.87. The limits sit below what usable photos
    /// show and above what the made-to-fail photos of `face/tests/quality.rs` show; at ORL's
    /// scale they refuse the 5 most turned ORL heads and nothing else.
    pub const ENROLMENT: Self = Self {
        min_eye_distance_px: 24.0,
        min_sharpness: 8.0,
        min_brightness: 30.0,
        max_brightness: 215.0,
        min_contrast: 12.0,
        max_yaw: 25.0,
        max_pitch: 25.0,
        max_roll: 25.0,
        min_score: 0.75,
    };
}

/// One check a photo failed, with the measured value and the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityProblem {
    /// Short name: `eye-distance`, `sharpness`, `dark`, `bright`, `contrast`, `yaw`, `pitch`,
    /// `roll`, `score`.
    pub check: &'static str,
    /// The measured value.
    pub value: f32,
    /// The limit it broke.
    pub limit: f32,
    /// A sentence for a person: "face 18 px between the eyes, needs ≥ 24".
    pub message: String,
}

impl QualityReport {
    /// Measures one detected face of `img`.
    pub fn measure(img: &image::RgbImage, d: &Detection) -> Self {
        let [re, le, ..] = d.landmarks;
        let eye_distance_px = (le[0] - re[0]).hypot(le[1] - re[1]);
        let (sharpness, brightness, contrast) = match align_face(img, &d.landmarks, QUALITY_CROP, QUALITY_CROP) {
            Some(a) => crop_stats(&a),
            None => (0.0, 0.0, 0.0),
        };
        Self {
            eye_distance_px,
            sharpness,
            brightness,
            contrast,
            pose: HeadPose::from_landmarks(&d.landmarks),
            score: d.score,
        }
    }

    /// Every limit this face breaks (empty: it passes).
    pub fn problems(&self, l: &QualityLimits) -> Vec<QualityProblem> {
        let mut out = Vec::new();
        let mut fail = |check, value: f32, limit: f32, message: String| {
            out.push(QualityProblem { check, value, limit, message });
        };
        let (e, sh, br, co) = (self.eye_distance_px, self.sharpness, self.brightness, self.contrast);
        let min = |check, value, limit, message| (check, value, limit, at_least(value, limit), message);
        let checks = [
            min(
                "eye-distance",
                e,
                l.min_eye_distance_px,
                format!("face {e:.0} px between the eyes, needs ≥ {:.0} (move closer)", l.min_eye_distance_px),
            ),
            min(
                "sharpness",
                sh,
                l.min_sharpness,
                format!("blurred: sharpness {sh:.0}, needs ≥ {:.0}", l.min_sharpness),
            ),
            min(
                "dark",
                br,
                l.min_brightness,
                format!("too dark: brightness {br:.0} of 255, needs ≥ {:.0}", l.min_brightness),
            ),
            (
                "bright",
                br,
                l.max_brightness,
                at_least(l.max_brightness, br),
                format!("overexposed: brightness {br:.0} of 255, needs ≤ {:.0}", l.max_brightness),
            ),
            min("contrast", co, l.min_contrast, format!("low contrast: {co:.0}, needs ≥ {:.0}", l.min_contrast)),
        ];
        for (check, value, limit, ok, message) in checks {
            if !ok {
                fail(check, value, limit, message);
            }
        }
        let p = self.pose;
        for (check, v, max, what) in [
            ("yaw", p.yaw, l.max_yaw, "turned sideways"),
            ("pitch", p.pitch, l.max_pitch, "looking up or down"),
            ("roll", p.roll, l.max_roll, "head tilted"),
        ] {
            if !at_least(max, v.abs()) {
                fail(check, v, max, format!("{what}: {check} {v:.0}°, needs within ±{max:.0}°"));
            }
        }
        if !at_least(self.score, l.min_score) {
            fail(
                "score",
                self.score,
                l.min_score,
                format!("unclear face: detector score {:.2}, needs ≥ {:.2}", self.score, l.min_score),
            );
        }
        out
    }
}

/// `value >= min`, false for NaN (a value that cannot be measured fails).
fn at_least(value: f32, min: f32) -> bool {
    value >= min
}

/// Contrast-normalised Laplacian variance (×1000), mean and standard deviation of the grey crop.
fn crop_stats(a: &AlignedFace) -> (f32, f32, f32) {
    let (w, h) = (a.width as usize, a.height as usize);
    let grey: Vec<f32> = a
        .rgb
        .chunks_exact(3)
        .map(|p| crate::LUMA_WEIGHTS[0] * p[0] + crate::LUMA_WEIGHTS[1] * p[1] + crate::LUMA_WEIGHTS[2] * p[2])
        .collect();
    let n = grey.len().max(1) as f64;
    let mean = grey.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = grey.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let mut lap = Vec::with_capacity((w.saturating_sub(2)) * (h.saturating_sub(2)));
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let c = grey[y * w + x];
            lap.push(f64::from(
                grey[y * w + x - 1] + grey[y * w + x + 1] + grey[(y - 1) * w + x] + grey[(y + 1) * w + x] - 4.0 * c,
            ));
        }
    }
    let m = lap.len().max(1) as f64;
    let lmean = lap.iter().sum::<f64>() / m;
    let lvar = lap.iter().map(|v| (v - lmean).powi(2)).sum::<f64>() / m;
    let sharpness = if var > 1e-9 { 1000.0 * lvar / var } else { 0.0 };
    (sharpness as f32, mean as f32, var.sqrt() as f32)
}

/// Photos of one member that match none of the member's other photos at `threshold`: probably
/// another person (or an unusable photo). With two photos that do not match each other, both are
/// returned (there is no majority to tell which one is wrong). Indexes into `embeddings`.
pub fn inconsistent_photos(embeddings: &[Embedding], threshold: Threshold) -> Vec<usize> {
    if embeddings.len() < 2 {
        return Vec::new();
    }
    (0..embeddings.len())
        .filter(|&i| {
            !embeddings
                .iter()
                .enumerate()
                .any(|(j, e)| j != i && e.distance(&embeddings[i]).is_ok_and(|d| threshold.accepts(d)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template with the nose where YuNet puts it on a frontal face.
    fn frontal() -> [[f32; 2]; 5] {
        let mut l = ARCFACE_TEMPLATE_112;
        l[2][1] += YUNET_NOSE_BIAS * 40.68;
        l
    }

    #[test]
    fn the_template_itself_is_frontal_and_a_rotated_one_has_its_roll() {
        let p = HeadPose::from_landmarks(&frontal());
        assert!(p.yaw.abs() < 0.5 && p.pitch.abs() < 0.5 && p.roll.abs() < 0.5, "{p:?}");
        // Rotate the template by 20° (counter-clockwise on screen) around its centre.
        let (s, c) = 20f32.to_radians().sin_cos();
        let rot = frontal().map(|[x, y]| {
            let (dx, dy) = (x - 56.0, y - 56.0);
            [56.0 + dx * c + dy * s, 56.0 - dx * s + dy * c]
        });
        let p = HeadPose::from_landmarks(&rot);
        assert!((p.roll - 20.0).abs() < 0.5 && p.yaw.abs() < 0.5 && p.pitch.abs() < 0.5, "{p:?}");
    }

    #[test]
    fn a_nose_moved_sideways_reads_as_yaw_and_down_as_pitch() {
        let mut l = frontal();
        l[2][0] += 0.5 * 35.2; // half an eye distance: atan(1) = 45°
        let p = HeadPose::from_landmarks(&l);
        assert!((p.yaw - 45.0).abs() < 1.5, "{p:?}");
        let mut l = frontal();
        l[2][1] += 0.5 * 40.7 * 0.36; // tan(20°) = 0.36 of half the eye–mouth distance
        let p = HeadPose::from_landmarks(&l);
        assert!((p.pitch - 20.0).abs() < 1.5, "{p:?}");
    }

    #[test]
    fn each_limit_names_its_check_with_value_and_limit() {
        let good = QualityReport {
            eye_distance_px: 60.0,
            sharpness: 200.0,
            brightness: 120.0,
            contrast: 50.0,
            pose: HeadPose { yaw: 0.0, pitch: 0.0, roll: 0.0 },
            score: 0.95,
        };
        let l = QualityLimits::ENROLMENT;
        assert!(good.problems(&l).is_empty());
        let cases: [(QualityReport, &str); 9] = [
            (QualityReport { eye_distance_px: 18.0, ..good }, "eye-distance"),
            (QualityReport { sharpness: 5.0, ..good }, "sharpness"),
            (QualityReport { brightness: 10.0, ..good }, "dark"),
            (QualityReport { brightness: 250.0, ..good }, "bright"),
            (QualityReport { contrast: 2.0, ..good }, "contrast"),
            (QualityReport { pose: HeadPose { yaw: -50.0, ..good.pose }, ..good }, "yaw"),
            (QualityReport { pose: HeadPose { pitch: 40.0, ..good.pose }, ..good }, "pitch"),
            (QualityReport { pose: HeadPose { roll: 45.0, ..good.pose }, ..good }, "roll"),
            (QualityReport { score: 0.5, ..good }, "score"),
        ];
        for (r, check) in cases {
            let p = r.problems(&l);
            assert_eq!(p.len(), 1, "{check}: {p:?}");
            assert_eq!(p[0].check, check);
        }
        let p = QualityReport { eye_distance_px: 18.0, ..good }.problems(&l);
        assert_eq!(p[0].message, "face 18 px between the eyes, needs ≥ 24 (move closer)");
        let nan = QualityReport { sharpness: f32::NAN, ..good }.problems(&l);
        assert_eq!(nan[0].check, "sharpness", "NaN fails, never passes");
    }

    #[test]
    fn a_photo_matching_none_of_the_others_is_inconsistent() {
        let e = |v: [f32; 3]| Embedding::new(v.to_vec()).unwrap();
        let t = Threshold::new(0.5).unwrap();
        let same = [e([1.0, 0.0, 0.0]), e([0.98, 0.2, 0.0]), e([0.97, 0.0, 0.24])];
        assert!(inconsistent_photos(&same, t).is_empty());
        let mut with_other = same.to_vec();
        with_other.insert(1, e([0.0, 1.0, 0.0]));
        assert_eq!(inconsistent_photos(&with_other, t), vec![1]);
        assert_eq!(inconsistent_photos(&[e([1.0, 0.0, 0.0]), e([0.0, 0.0, 1.0])], t), vec![0, 1]);
        assert!(inconsistent_photos(&same[..1], t).is_empty());
    }
}
