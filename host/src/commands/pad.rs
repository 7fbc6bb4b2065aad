//! `facegate pad-eval`: the passive 3-D liveness test ([`facegate_face::liveness`]) against
//! presentation attacks built from real photos and run through the real detector.
//!
//! Without a spoof data set, attacks are made from the ORL photos:
//! - **flat print / phone photo**: one photo of a person, enlarged to door size, as a rigid plane
//!   held in front of the camera and moved between frames (yaw and pitch up to ±30°, roll ±10°,
//!   distance ±20 %, a few centimetres sideways), composited over a textured background, with
//!   camera noise;
//! - **genuine, natural**: the same person's own photos (ORL's ten include head turns), ordered
//!   by their estimated yaw, four consecutive ones per appearance (small pose changes, like a
//!   person standing at the door), at the same size, on the same background, with the same noise;
//! - **genuine, turn**: all the person's photos in yaw order when the leftmost and rightmost are
//!   at least 20° of estimated yaw apart (a head turning from one side to the other).
//!
//! Each appearance is judged as the door judges it: again on every frame from the third on
//! (the default `consecutive_frames`), accepted at the first Live verdict.
//!
//! **Challenge mode** (the door asks for a head turn to a random side once the face is
//! recognised, after the third frame): made after the passive set, with its own random numbers,
//! so the passive figures do not move:
//! - **genuine, obeying**: the person's most frontal photo (three frames, the baseline) then their
//!   photos turned to the asked side, in order of yaw: a member following the instruction as far
//!   as ORL's photos allow (a person with no photo turned that way by the challenge's angle is
//!   refused, and counted as such);
//! - **print**: the print attacks above, asked a random side;
//! - **bent print** (made after everything above, with its own random numbers): one photo
//!   wrapped on a vertical cylinder of radius 35–100 mm (taking an ORL photo's 92 pixels as about
//!   18 cm of head, 2 mm a pixel), edges away from the camera, moved like the flat prints;
//!   reported against the flat-print threshold (nothing is tuned on it), in passive and in
//!   challenge mode;
//! - **phone** and **close-up on paper** (made after the bent prints, with their own random
//!   numbers), moved like the flat prints, the face as large: a phone is the photo with a
//!   near-black bezel and screen edge around it ([`BEZEL`]); a close-up is the photo cut to the
//!   head on white paper wide enough that the ring's points fall on the paper, just clear of the
//!   cut ([`close_up`]): little for the ring, the paper's edges for the border cue. Reported
//!   against the flat-print threshold (nothing is tuned on them), in passive and challenge mode;
//! - **screen replay**: the person's frontal photo, then their photos in yaw order towards one
//!   side (drawn once per attempt: the recording cannot know the side it will be asked), shown on
//!   a screen held fairly still (yaw and pitch ±10°), asked a random side. Passive geometry is
//!   expected to pass it; the challenge passes it only when the recording's side is the one asked.
//!
//! Every frame goes through YuNet on the 640×480 canvas; the check sees only its landmarks. The
//! threshold is tuned on the first half of the people (by person, never by photo) and the rates
//! are reported on the other half, each with its count and Clopper–Pearson 95 % upper bound.
//! This is not an ISO/IEC 30107-3 test: the attacks are simulated, and a screen replaying a
//! video of the member is not among them (passive geometry cannot tell it from a live face).

use super::pad_video::{Outcome, VideoWindow, FACE_GAP_MS};
use anyhow::{bail, Context, Result};
use facegate_face::liveness::{
    iod, ChallengeCheck, ChallengeVerdict, Cue, Followed, Landmarks, Liveness, PairMeasure, PassiveCheck, Turn,
};
use facegate_face::parallax::FacePatch;
use facegate_face::{load_image, FaceDetector, FaceFinder, HeadPose, YuNet};
use facegate_shared::synthetic::SplitMix64;
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags of `facegate pad-eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct PadArgs {
    /// Face folders, one per person (ORL layout).
    #[arg(long, default_value = "data/orl")]
    pub data: PathBuf,
    /// YuNet detector model.
    #[arg(long, default_value = super::DEFAULT_DETECTOR)]
    pub detector: PathBuf,
    /// People used (the first N folders in natural order); half tune, half report.
    #[arg(long, default_value_t = 40)]
    pub people: usize,
    /// Print-attack attempts per person.
    #[arg(long, default_value_t = 10)]
    pub attacks: usize,
    /// Frames per attack attempt.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Seed of the attack motions and the camera noise.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// JSON only.
    #[arg(long)]
    pub json: bool,
    /// Minimum landmark change of a frame pair (eye distances), as the door's
    /// `liveness.min_change`.
    #[arg(long, default_value_t = MIN_CHANGE)]
    pub min_change: f32,
    /// With followed landmarks: the weakest match a frame pair may have to count (normalised
    /// cross-correlation), as the door's `liveness.min_ncc`.
    #[arg(long, default_value_t = MIN_NCC)]
    pub min_ncc: f32,
    /// With followed landmarks: ring points moving with the face in one frame pair that deny an
    /// appearance (the door's `liveness.ring_deny`; 0: the cue off). Default: tuned, the most
    /// of any genuine appearance of the tuning half plus [`RING_MARGIN`]. The nose threshold is
    /// tuned without the cue, so it alone must hold the prints the cue misses.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=40))]
    pub ring_deny: Option<u8>,
    /// With followed landmarks: border edges (of the three beside and above the face) moving
    /// with the face in one frame pair that deny an appearance (the door's
    /// `liveness.border_deny`; 0: the cue off). Default: tuned, the most of any genuine
    /// appearance of the tuning half plus [`BORDER_MARGIN`] (off when that exceeds 3).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub border_deny: Option<u8>,
    /// Also write each person's first print attack, first bent print, first phone and first
    /// print on paper, and their head-turn frames as PNG here (`PERSON-print-N.png`,
    /// `PERSON-bent-N.png`, `PERSON-phone-N.png`, `PERSON-closeup-N.png`,
    /// `PERSON-turn-N.png`), e.g. to replay them through `facegate-door`.
    #[arg(long, value_name = "DIR")]
    pub save_frames: Option<PathBuf>,
    /// Which landmarks the passive test measures: `followed` (each frame's landmarks followed
    /// into the others by texture, what the door does) or `detector` (each frame's own
    /// detector landmarks, the door's rule before followed landmarks).
    #[arg(long, value_enum, default_value_t = Method::Followed)]
    pub method: Method,
    /// Real face videos, `PERSON/FILE` (genuine: live people in front of a still camera; see
    /// `pad_video`): cut into windows of `--timeout-ms` at `--video-fps`, each judged as the
    /// door judges an appearance. The cues' counts are tuned on the first half of these people
    /// too (by name); the other half is reported. Needs `ffmpeg`.
    #[arg(long, default_value = "data/video")]
    pub videos: PathBuf,
    /// At most this many windows of each video (default: every whole window; 0: no videos).
    #[arg(long)]
    pub video_windows: Option<usize>,
    /// The door's frame rate for the videos.
    #[arg(long, default_value_t = 10.0)]
    pub video_fps: f32,
    /// The door's `liveness.timeout_ms`: a video window's length.
    #[arg(long, default_value_t = 6000)]
    pub timeout_ms: u64,
}

/// See [`PadArgs::method`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Landmarks followed by texture between frames.
    Followed,
    /// Each frame's detector landmarks.
    Detector,
}

impl From<Method> for Landmarks {
    fn from(m: Method) -> Self {
        match m {
            Method::Followed => Landmarks::Followed,
            Method::Detector => Landmarks::Detector,
        }
    }
}

/// Settings frozen before any tuning: what the check needs to decide at all.
pub const MIN_IOD_PX: f32 = 30.0;
/// Minimum landmark change between two frames (IODs) for the pair to count.
pub const MIN_CHANGE: f32 = 0.03;
/// Frame pairs needed for a verdict.
pub const MIN_PAIRS: usize = 2;
/// The weakest match of a frame pair's followed points for the pair to count.
pub const MIN_NCC: f32 = 0.5;
/// The threshold is the largest score of a tuning attack (the threshold at which the door would
/// have let it in at some frame) times this.
pub const THRESHOLD_MARGIN: f32 = 1.25;
/// The genuine kinds of appearance: a person at the door, not an attack.
pub const GENUINE: [&str; 3] = ["natural", "turn", "obey"];
/// The ring cue denies at the most ring points any genuine appearance of the tuning half moved
/// with its face in one frame pair, plus this.
pub const RING_MARGIN: u8 = 2;
/// The border cue denies at the most border edges any genuine appearance of the tuning half
/// moved with its face in one frame pair, plus this.
pub const BORDER_MARGIN: u8 = 1;
/// Estimated yaw spread of a `turn` appearance (degrees).
pub const TURN_DEG: f32 = 20.0;
/// The challenge's turn (degrees), frozen before any of these figures: the door's default
/// `liveness.challenge_turn_deg`.
pub const CHALLENGE_TURN_DEG: f32 = 15.0;
/// Consecutive frames past the turn (the door's).
pub const CHALLENGE_CONFIRM_FRAMES: usize = 2;

/// One appearance: a sequence of landmark sets (frames where a face was found).
#[derive(Debug, Clone)]
pub struct Appearance {
    /// Person folder name.
    pub person: String,
    /// `print` (attack), `natural` (genuine: four photos of neighbouring head poses), `turn`
    /// (genuine: all the person's photos in yaw order, spanning at least [`TURN_DEG`]),
    /// `obey` (genuine, challenge: baseline then the photos turned to `asked`), `replay` (attack:
    /// a screen showing a recorded turn), `bent` (attack: a print on a cylinder), `phone`
    /// (attack: the photo in a dark bezel), `closeup` (attack: the photo cut to the head on white
    /// paper).
    pub kind: &'static str,
    /// The side the challenge asks for (drawn per appearance; for `obey` the side the person
    /// turns to).
    pub asked: Turn,
    /// Landmarks per frame with a face.
    pub frames: Vec<[[f32; 2]; 5]>,
    /// The same frames with their pairs measured on landmarks followed by texture (images
    /// dropped).
    pub followed: Followed,
    /// Frames rendered.
    pub rendered: usize,
}

/// A 3×3 projective map (row-major).
type Mat3 = [f64; 9];

fn mat_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    std::array::from_fn(|k| (0..3).map(|i| a[k / 3 * 3 + i] * b[i * 3 + k % 3]).sum())
}

fn mat_inv(m: &Mat3) -> Option<Mat3> {
    let [a, b, c, d, e, f, g, h, i] = *m;
    let det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
    (det.abs() > 1e-12).then(|| {
        [
            (e * i - f * h) / det,
            (c * h - b * i) / det,
            (b * f - c * e) / det,
            (f * g - d * i) / det,
            (a * i - c * g) / det,
            (c * d - a * f) / det,
            (d * h - e * g) / det,
            (b * g - a * h) / det,
            (a * e - b * d) / det,
        ]
    })
}

/// R = Rz(roll) · Rx(pitch) · Ry(yaw), angles in degrees.
fn rotation(yaw: f64, pitch: f64, roll: f64) -> Mat3 {
    let (sy, cyw) = yaw.to_radians().sin_cos();
    let (sp, cp) = pitch.to_radians().sin_cos();
    let (sr, cr) = roll.to_radians().sin_cos();
    let ry = [cyw, 0.0, sy, 0.0, 1.0, 0.0, -sy, 0.0, cyw];
    let rx = [1.0, 0.0, 0.0, 0.0, cp, -sp, 0.0, sp, cp];
    let rz = [cr, -sr, 0.0, sr, cr, 0.0, 0.0, 0.0, 1.0];
    mat_mul(&rz, &mat_mul(&rx, &ry))
}

/// The homography from photo pixels to frame pixels of a photo `w × h` (pixels) held as a plane:
/// rotated by yaw, pitch, roll (degrees), its centre at `(cx, cy)` in the frame, seen by a
/// pinhole camera of focal length `focal` pixels from `distance` photo widths away.
#[allow(clippy::too_many_arguments)]
fn plane_homography(w: f64, h: f64, yaw: f64, pitch: f64, roll: f64, scale: f64, cx: f64, cy: f64) -> Mat3 {
    let r = rotation(yaw, pitch, roll);
    // camera: focal f, the plane centre `dist` in front; photo pixel (u, v) → plane point
    // ((u − w/2)·s, (v − h/2)·s, 0) with s chosen so the photo appears `scale` times its size
    let f = 800.0;
    let dist = 1000.0;
    let s = scale * dist / f;
    // H = K · [r1·s  r2·s  t] · T(−w/2, −h/2), K = [f 0 cx; 0 f cy; 0 0 1], t = (0, 0, dist)
    let k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0];
    let m = [r[0] * s, r[1] * s, 0.0, r[3] * s, r[4] * s, 0.0, r[6] * s, r[7] * s, dist];
    let t = [1.0, 0.0, -w / 2.0, 0.0, 1.0, -h / 2.0, 0.0, 0.0, 1.0];
    mat_mul(&k, &mat_mul(&m, &t))
}

/// Millimetres of head per ORL photo pixel (92 pixels ≈ 18 cm), for the bent prints' radius.
const MM_PER_PHOTO_PX: f64 = 2.0;

/// `photo` wrapped on a vertical cylinder of radius `radius_px` photo pixels (its edges bent away
/// from the camera), then held and moved as [`plane_homography`] holds a flat one, drawn into a
/// copy of `bg` by forward projection of a 4×4 grid of points per photo pixel, with noise.
fn render_bent(photo: &RgbImage, bg: &RgbImage, radius_px: f64, pose: &Pose, rng: &mut SplitMix64) -> RgbImage {
    let Pose { yaw, pitch, roll, scale, dx } = *pose;
    let mut frame = bg.clone();
    let (w, h) = (photo.width() as f64, photo.height() as f64);
    let r = rotation(yaw, pitch, roll);
    // the same camera and scale as `plane_homography`
    let (f, dist) = (800.0, 1000.0);
    let s = DRAWN_HEIGHT / h * scale * dist / f;
    let (cx, cy) = (320.0 + dx, 240.0);
    const SUB: u32 = 4;
    for vi in 0..photo.height() * SUB {
        for ui in 0..photo.width() * SUB {
            let (u, v) = ((ui as f64 + 0.5) / SUB as f64, (vi as f64 + 0.5) / SUB as f64);
            // arc length along the photo → angle on the cylinder
            let phi = (u - w / 2.0) / radius_px;
            let p = [radius_px * phi.sin() * s, (v - h / 2.0) * s, radius_px * (1.0 - phi.cos()) * s];
            let q = [
                r[0] * p[0] + r[1] * p[1] + r[2] * p[2],
                r[3] * p[0] + r[4] * p[1] + r[5] * p[2],
                r[6] * p[0] + r[7] * p[1] + r[8] * p[2] + dist,
            ];
            if q[2] <= 1.0 {
                continue;
            }
            let (x, y) = (f * q[0] / q[2] + cx, f * q[1] / q[2] + cy);
            if x < 0.0 || y < 0.0 || x >= frame.width() as f64 || y >= frame.height() as f64 {
                continue;
            }
            let src = photo.get_pixel((u as u32).min(photo.width() - 1), (v as u32).min(photo.height() - 1));
            frame.put_pixel(x as u32, y as u32, *src);
        }
    }
    add_noise(&mut frame, 3, rng);
    frame
}

/// A phone's border around the photo on its screen: a near-black bezel and screen edge, this
/// share of the photo's width on each side, and its grey level.
const BEZEL: (f64, u8) = (0.12, 18);
/// White paper's grey level.
const PAPER_GREY: u8 = 235;

/// `photo` with a plain border of `share` of its width on each side, in grey `level`.
fn framed(photo: &RgbImage, share: f64, level: u8) -> RgbImage {
    let m = (share * f64::from(photo.width())).round() as u32;
    let mut out = RgbImage::from_pixel(photo.width() + 2 * m, photo.height() + 2 * m, Rgb([level; 3]));
    image::imageops::overlay(&mut out, photo, i64::from(m), i64::from(m));
    out
}

/// A close-up printed on white paper: `photo` cut to the head (1.05 IOD each side of the eye
/// midpoint, from 1.2 IOD above the eyes to the photo's bottom) on paper reaching 2.35 IOD beside
/// and 2.6 IOD above the eyes (0.3 IOD below the cut). The ring's points (their templates 1.06–1.94
/// IOD beside, 1.46–2.19 above) lie on the paper, but only just clear of the cut: a tilt, a
/// roll or the detector's noise brings the cut's edge into some of them (the ring alone still
/// denies most close-ups: see the figures); the paper's outer edges lie in the border cue's
/// bands. `eyes`: the eye midpoint and the IOD in photo pixels.
fn close_up(photo: &RgbImage, eyes: ([f64; 2], f64)) -> RgbImage {
    let ([mx, my], d) = eyes;
    let (w, h) = (f64::from(photo.width()), f64::from(photo.height()));
    let x0 = (mx - 1.05 * d).clamp(0.0, w - 1.0) as u32;
    let x1 = (mx + 1.05 * d).clamp(f64::from(x0) + 1.0, w) as u32;
    let y0 = (my - 1.2 * d).clamp(0.0, h - 1.0) as u32;
    let head = image::imageops::crop_imm(photo, x0, y0, x1 - x0, photo.height() - y0).to_image();
    let px = |iod: f64| (iod * d).round() as u32;
    let (side, top, bottom) = (px(1.3), px(1.4), px(0.3));
    let mut out = RgbImage::from_pixel(head.width() + 2 * side, head.height() + top + bottom, Rgb([PAPER_GREY; 3]));
    image::imageops::overlay(&mut out, &head, i64::from(side), i64::from(top));
    out
}

/// A seeded background of grey blocks (a wall with some texture), `w × h`.
fn background(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = SplitMix64::new(seed);
    let blocks: Vec<u8> = (0..(w / 40 + 1) * (h / 40 + 1)).map(|_| 70 + (rng.next_u64() % 90) as u8).collect();
    RgbImage::from_fn(w, h, |x, y| {
        let v = blocks[((y / 40) * (w / 40 + 1) + x / 40) as usize];
        Rgb([v, v, v.saturating_add(8)])
    })
}

/// `photo` drawn into `frame` through `h` (photo → frame), bilinear.
fn draw_warped(frame: &mut RgbImage, photo: &RgbImage, h: &Mat3) {
    let Some(inv) = mat_inv(h) else { return };
    let (pw, ph) = (photo.width() as f64, photo.height() as f64);
    for (x, y, px) in frame.enumerate_pixels_mut() {
        let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
        let w = inv[6] * fx + inv[7] * fy + inv[8];
        if w <= 0.0 {
            continue;
        }
        let u = (inv[0] * fx + inv[1] * fy + inv[2]) / w - 0.5;
        let v = (inv[3] * fx + inv[4] * fy + inv[5]) / w - 0.5;
        if u < 0.0 || v < 0.0 || u > pw - 1.0 || v > ph - 1.0 {
            continue;
        }
        let (u0, v0) = (u.floor() as u32, v.floor() as u32);
        let (u1, v1) = ((u0 + 1).min(photo.width() - 1), (v0 + 1).min(photo.height() - 1));
        let (du, dv) = (u - u0 as f64, v - v0 as f64);
        for c in 0..3 {
            let g = |a: u32, b: u32| f64::from(photo.get_pixel(a, b)[c]);
            let top = g(u0, v0) * (1.0 - du) + g(u1, v0) * du;
            let bottom = g(u0, v1) * (1.0 - du) + g(u1, v1) * du;
            px[c] = (top * (1.0 - dv) + bottom * dv).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Camera noise: each channel ± up to `amp` levels.
fn add_noise(img: &mut RgbImage, amp: u64, rng: &mut SplitMix64) {
    for p in img.pixels_mut() {
        for c in 0..3 {
            let n = (rng.next_u64() % (2 * amp + 1)) as i32 - amp as i32;
            p[c] = (i32::from(p[c]) + n).clamp(0, 255) as u8;
        }
    }
}

/// How tall a photo is drawn at rest (pixels of the 640×480 frame): an ORL photo (112 px) enlarged
/// 3×, the size the benches use; any other photo is scaled to the same height.
const DRAWN_HEIGHT: f64 = 336.0;

/// How a photo is held in front of the camera: rotations in degrees, size relative to
/// [`DRAWN_HEIGHT`], horizontal offset from the frame's centre in pixels.
#[derive(Debug, Clone, Copy)]
struct Pose {
    yaw: f64,
    pitch: f64,
    roll: f64,
    scale: f64,
    dx: f64,
}

impl Pose {
    /// Facing the camera, centred, at the drawn height.
    const REST: Pose = Pose { yaw: 0.0, pitch: 0.0, roll: 0.0, scale: 1.0, dx: 0.0 };
}

/// A frame: `photo` scaled to [`DRAWN_HEIGHT`] and held as a plane at `pose`, on the background.
fn render(photo: &RgbImage, bg: &RgbImage, pose: &Pose, rng: &mut SplitMix64) -> RgbImage {
    let Pose { yaw, pitch, roll, scale, dx } = *pose;
    let mut frame = bg.clone();
    let h = plane_homography(
        photo.width() as f64,
        photo.height() as f64,
        yaw,
        pitch,
        roll,
        DRAWN_HEIGHT / photo.height() as f64 * scale,
        320.0 + dx,
        240.0,
    );
    draw_warped(&mut frame, photo, &h);
    add_noise(&mut frame, 3, rng);
    frame
}

/// How a hand moves a photo or a screen from frame to frame: the starting yaw and pitch (±,
/// degrees), their steps per frame (±) and limit (±), roll (±), scale (from, to) and sideways
/// offset (±, pixels) drawn anew each frame.
struct Motion {
    start: (f64, f64),
    step: (f64, f64),
    limit: f64,
    roll: f64,
    scale: (f64, f64),
    dx: f64,
}

/// A print or phone held in the hand: tilted up to ±30°, moved a few centimetres.
const HELD: Motion =
    Motion { start: (30.0, 20.0), step: (12.0, 8.0), limit: 30.0, roll: 10.0, scale: (0.8, 1.2), dx: 60.0 };
/// A screen held fairly still (the replays).
const STEADY: Motion =
    Motion { start: (10.0, 10.0), step: (3.0, 3.0), limit: 10.0, roll: 3.0, scale: (0.95, 1.05), dx: 20.0 };

/// A hand moving a photo by a [`Motion`]: one [`Pose`] per frame.
struct Hand {
    motion: &'static Motion,
    yaw: f64,
    pitch: f64,
}

impl Hand {
    fn new(motion: &'static Motion, rng: &mut SplitMix64) -> Self {
        let (y, p) = motion.start;
        Self { motion, yaw: uniform(rng, -y, y), pitch: uniform(rng, -p, p) }
    }

    fn next(&mut self, rng: &mut SplitMix64) -> Pose {
        let m = self.motion;
        self.yaw = (self.yaw + uniform(rng, -m.step.0, m.step.0)).clamp(-m.limit, m.limit);
        self.pitch = (self.pitch + uniform(rng, -m.step.1, m.step.1)).clamp(-m.limit, m.limit);
        let (roll, scale, dx) =
            (uniform(rng, -m.roll, m.roll), uniform(rng, m.scale.0, m.scale.1), uniform(rng, -m.dx, m.dx));
        Pose { yaw: self.yaw, pitch: self.pitch, roll, scale, dx }
    }
}

fn uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.next_f64()
}

/// The landmarks of the largest face of `frame` at least the finder's minimum size, as the door
/// takes them.
pub(super) fn landmarks(finder: &FaceFinder<YuNet>, frame: &RgbImage) -> Result<Option<[[f32; 2]; 5]>> {
    let d = finder.detector.detect(frame)?;
    Ok(d.into_iter()
        .filter(|d| d.bbox[2] >= finder.min_face_px)
        .max_by(|a, b| a.area().total_cmp(&b.area()))
        .map(|d| d.landmarks))
}

/// The frames of one appearance as the door sees them: landmarks, and pairs measured on
/// landmarks followed by texture.
#[derive(Default)]
struct Seen {
    frames: Vec<[[f32; 2]; 5]>,
    followed: Followed,
}

impl Seen {
    /// Detects the face of `frame` and adds it (nothing when there is none).
    fn see(&mut self, finder: &FaceFinder<YuNet>, frame: &RgbImage) -> Result<()> {
        if let Some(l) = landmarks(finder, frame)? {
            self.add(l, FacePatch::cut(frame, &l));
        }
        Ok(())
    }

    fn add(&mut self, l: [[f32; 2]; 5], patch: Option<FacePatch>) {
        self.frames.push(l);
        self.followed.push(l, patch);
    }

    fn appearance(mut self, person: &str, kind: &'static str, asked: Turn, rendered: usize) -> Appearance {
        self.followed.drop_patches();
        Appearance { person: person.to_string(), kind, asked, frames: self.frames, followed: self.followed, rendered }
    }
}

/// Person folders in natural order (s1, s2, …, s10, …).
fn people(data: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data)
        .with_context(|| format!("data folder {}", data.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    let key = |p: &PathBuf| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let digits: String = name.chars().filter(char::is_ascii_digit).collect();
        (digits.parse::<u64>().unwrap_or(u64::MAX), name)
    };
    dirs.sort_by_key(key);
    if dirs.len() < 2 {
        bail!("{} needs at least two person folders", data.display());
    }
    dirs.truncate(n.max(2));
    Ok(dirs)
}

fn photos(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Builds every appearance: per person, print attacks and genuine windows. People are made on
/// every core, each with its own detector; each person's random numbers are their own, so the
/// appearances (in person order) are the same on any number of cores.
pub fn appearances(a: &PadArgs) -> Result<Vec<Appearance>> {
    let dirs = people(&a.data, a.people)?;
    let bg = background(640, 480, a.seed);
    let made = on_every_core(&dirs, &a.detector, "rendering and detecting", |finder, pi, dir| {
        person_appearances(a, finder, &bg, pi, dir)
    })?;
    Ok(made.into_iter().flatten().collect())
}

/// Keeps glibc from holding on to the frames and face images a run frees (hundreds of MB per
/// person): by default its mmap threshold rises after the first large frees, later images land
/// in the heap and stay there, and a full run peaked at about 16 GB. Held at 128 KiB, every
/// image is its own mapping, given back when freed (4 people, 10 attacks each: 98 MB instead of
/// 1.58 GB; 178 MB at 512 KiB; 911 MB trimming the heap after each person instead). The same
/// run took 151 s instead of 84 s (not measured in one run: this VM varies up to 1.5×).
fn hold_the_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// `work` on each of `jobs` (with its index), spread over every core, each core with its own
/// detector (loaded from `detector`); the results in the jobs' order, whatever the cores.
pub(super) fn on_every_core<J: Sync, T: Send>(
    jobs: &[J],
    detector: &Path,
    what: &str,
    work: impl Fn(&FaceFinder<YuNet>, usize, &J) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let bar = crate::progress::bar(jobs.len() as u64, what);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len()).max(1);
    let done: Vec<Result<Vec<(usize, T)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (bar, work) = (&bar, &work);
                s.spawn(move || -> Result<Vec<(usize, T)>> {
                    let finder = FaceFinder::new(super::load_detector(detector)?);
                    let mut mine = Vec::new();
                    for ji in (t..jobs.len()).step_by(threads) {
                        mine.push((ji, work(&finder, ji, &jobs[ji])?));
                        bar.inc(1);
                    }
                    Ok(mine)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    bar.finish_and_clear();
    let mut all = Vec::new();
    for d in done {
        all.extend(d?);
    }
    all.sort_by_key(|(ji, _)| *ji);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// The appearances of the `pi`-th person (folder `dir`).
fn person_appearances(
    a: &PadArgs,
    finder: &FaceFinder<YuNet>,
    bg: &RgbImage,
    pi: usize,
    dir: &Path,
) -> Result<Vec<Appearance>> {
    let mut out = Vec::new();
    let person = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let files = photos(dir);
    if files.is_empty() {
        bail!("{} has no photos", dir.display());
    }
    let imgs = files.iter().map(|f| load_image(f)).collect::<Result<Vec<_>, _>>()?;
    let mut rng = SplitMix64::new(a.seed ^ (pi as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // genuine: the person's photos by estimated yaw, four consecutive per appearance, each
    // shown frontal (the head itself turned), at the attack's size and on its background
    let mut posed = Vec::new();
    let mut shown = Vec::new();
    for img in &imgs {
        let frame = render(img, bg, &Pose::REST, &mut rng);
        if let Some(l) = landmarks(finder, &frame)? {
            posed.push((HeadPose::from_landmarks(&l).yaw, l, FacePatch::cut(&frame, &l)));
            if a.save_frames.is_some() {
                shown.push((HeadPose::from_landmarks(&l).yaw, frame));
            }
        }
    }
    shown.sort_by(|x, y| x.0.total_cmp(&y.0));
    posed.sort_by(|x, y| x.0.total_cmp(&y.0));
    for w in posed.windows(4) {
        let mut seen = Seen::default();
        w.iter().for_each(|p| seen.add(p.1, p.2.clone()));
        out.push(seen.appearance(&person, "natural", Turn::Left, 4));
    }
    if let (Some(first), Some(last)) = (posed.first(), posed.last()) {
        if last.0 - first.0 >= TURN_DEG {
            let mut seen = Seen::default();
            posed.iter().for_each(|p| seen.add(p.1, p.2.clone()));
            out.push(seen.appearance(&person, "turn", Turn::Left, posed.len()));
            if let Some(dir) = &a.save_frames {
                for (n, f) in shown.iter().enumerate() {
                    save_png(&f.1, &dir.join(format!("{person}-turn-{:02}.png", n + 1)))?;
                }
            }
        }
    }
    // attacks: one photo held and moved like a print or a phone
    for k in 0..a.attacks {
        let photo = &imgs[k % imgs.len()];
        let mut hand = Hand::new(&HELD, &mut rng);
        let mut seen = Seen::default();
        for i in 0..a.frames {
            let frame = render(photo, bg, &hand.next(&mut rng), &mut rng);
            seen.see(finder, &frame)?;
            if let (Some(dir), 0) = (&a.save_frames, k) {
                save_png(&frame, &dir.join(format!("{person}-print-{:02}.png", i + 1)))?;
            }
        }
        out.push(seen.appearance(&person, "print", Turn::Left, a.frames));
    }
    // challenge mode: its own random numbers, so that everything above stays as it was
    let mut crng = SplitMix64::new(!a.seed ^ (pi as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03));
    // (`out` holds this person's appearances only)
    for ap in out.iter_mut().rev().filter(|ap| ap.kind == "print") {
        ap.asked = Turn::from_bit(crng.next_u64() & 1 == 1);
    }
    let by_yaw: Vec<(f32, &RgbImage)> = {
        let mut v: Vec<(f32, &RgbImage)> = Vec::new();
        for img in &imgs {
            let frame = render(img, bg, &Pose::REST, &mut crng);
            if let Some(l) = landmarks(finder, &frame)? {
                v.push((HeadPose::from_landmarks(&l).yaw, img));
            }
        }
        v.sort_by(|x, y| x.0.total_cmp(&y.0));
        v
    };
    let Some(front) = by_yaw.iter().min_by(|x, y| x.0.abs().total_cmp(&y.0.abs())).copied() else {
        return Ok(out);
    };
    // the photos turned to `side` from the frontal one, nearest first
    let towards = |side: Turn| -> Vec<&RgbImage> {
        let mut v: Vec<(f32, &RgbImage)> = by_yaw
            .iter()
            .map(|(y, i)| ((y - front.0) * if side == Turn::Left { 1.0 } else { -1.0 }, *i))
            .filter(|(d, _)| *d > 0.0)
            .collect();
        v.sort_by(|x, y| x.0.total_cmp(&y.0));
        v.into_iter().map(|(_, i)| i).collect()
    };
    for side in [Turn::Left, Turn::Right] {
        // genuine: baseline (3 frames of the frontal photo), then the turn, held for a frame
        let mut shown: Vec<&RgbImage> = vec![front.1; 3];
        shown.extend(towards(side));
        if let Some(last) = shown.last().copied() {
            shown.push(last);
        }
        let mut seen = Seen::default();
        for img in &shown {
            seen.see(finder, &render(img, bg, &Pose::REST, &mut crng))?;
        }
        out.push(seen.appearance(&person, "obey", side, shown.len()));
    }
    for _ in 0..a.attacks {
        // a recording of the member turning to one side, on a screen held fairly still
        let recorded = Turn::from_bit(crng.next_u64() & 1 == 1);
        let mut shown: Vec<&RgbImage> = vec![front.1; 3];
        shown.extend(towards(recorded));
        if let Some(last) = shown.last().copied() {
            shown.push(last);
        }
        let mut hand = Hand::new(&STEADY, &mut crng);
        let mut seen = Seen::default();
        for img in &shown {
            let pose = hand.next(&mut crng);
            seen.see(finder, &render(img, bg, &pose, &mut crng))?;
        }
        let asked = Turn::from_bit(crng.next_u64() & 1 == 1);
        out.push(seen.appearance(&person, "replay", asked, shown.len()));
    }
    // bent prints: their own random numbers again
    let mut brng = SplitMix64::new(a.seed.rotate_left(17) ^ (pi as u64 + 1).wrapping_mul(0x94d0_49bb_1331_11eb));
    for k in 0..a.attacks {
        let photo = &imgs[k % imgs.len()];
        let radius_px = uniform(&mut brng, 35.0, 100.0) / MM_PER_PHOTO_PX;
        let mut hand = Hand::new(&HELD, &mut brng);
        let mut seen = Seen::default();
        for i in 0..a.frames {
            let frame = render_bent(photo, bg, radius_px, &hand.next(&mut brng), &mut brng);
            seen.see(finder, &frame)?;
            if let (Some(dir), 0) = (&a.save_frames, k) {
                save_png(&frame, &dir.join(format!("{person}-bent-{:02}.png", i + 1)))?;
            }
        }
        let asked = Turn::from_bit(brng.next_u64() & 1 == 1);
        out.push(seen.appearance(&person, "bent", asked, a.frames));
    }
    // phones and close-ups on paper (plain borders): their own random numbers too
    let mut frng = SplitMix64::new(a.seed.rotate_left(29) ^ (pi as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    for kind in ["phone", "closeup"] {
        for k in 0..a.attacks {
            let photo = &imgs[k % imgs.len()];
            let shown = match kind {
                "phone" => framed(photo, BEZEL.0, BEZEL.1),
                _ => {
                    // where the eyes are in the photo: found in the photo shown at rest
                    let at_rest = render(photo, bg, &Pose::REST, &mut frng);
                    let l = landmarks(finder, &at_rest)?.with_context(|| {
                        format!(
                            "{person}: no face found in photo {} at rest, to cut a close-up from",
                            k % imgs.len() + 1
                        )
                    })?;
                    // at rest a photo pixel (u, v) is drawn at (320, 240) + s·(u − w/2, v − h/2)
                    let s = DRAWN_HEIGHT / f64::from(photo.height());
                    let mid = |k: usize| f64::from(l[0][k] + l[1][k]) / 2.0;
                    let eyes = [
                        (mid(0) - 320.0) / s + f64::from(photo.width()) / 2.0,
                        (mid(1) - 240.0) / s + f64::from(photo.height()) / 2.0,
                    ];
                    close_up(photo, (eyes, f64::from(iod(&l)) / s))
                }
            };
            // the face as large as on the flat prints: the bordered photo is drawn taller
            let grown = f64::from(shown.height()) / f64::from(photo.height());
            let mut hand = Hand::new(&HELD, &mut frng);
            let mut seen = Seen::default();
            for i in 0..a.frames {
                let pose = hand.next(&mut frng);
                let frame = render(&shown, bg, &Pose { scale: pose.scale * grown, ..pose }, &mut frng);
                seen.see(finder, &frame)?;
                if let (Some(dir), 0) = (&a.save_frames, k) {
                    save_png(&frame, &dir.join(format!("{person}-{kind}-{:02}.png", i + 1)))?;
                }
            }
            let asked = Turn::from_bit(frng.next_u64() & 1 == 1);
            out.push(seen.appearance(&person, kind, asked, a.frames));
        }
    }
    Ok(out)
}

fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("folder {}", dir.display()))?;
    }
    img.save(path).with_context(|| format!("frame {}", path.display()))
}

/// The door judges an appearance from this frame on (the default `consecutive_frames`).
pub const FIRST_JUDGED_FRAME: usize = 3;

/// The largest threshold at which the door would accept the appearance at some frame.
fn door_score(check: &PassiveCheck, ap: &Appearance) -> Option<f32> {
    check.door_score_appearance(&ap.followed, FIRST_JUDGED_FRAME)
}

/// Whether the door in challenge mode would grant the appearance: the challenge is given after
/// frame [`FIRST_JUDGED_FRAME`] (baseline: the frames before it), then judged on every frame;
/// a turn the wrong way ends it, the asked turn grants once `passive` (if any) is Live over the
/// frames so far. Returns the frames from the challenge to the
/// grant.
fn challenge_grants(check: &ChallengeCheck, passive: Option<&PassiveCheck>, ap: &Appearance) -> Option<usize> {
    let (asked, frames) = (ap.asked, &ap.frames);
    let first = FIRST_JUDGED_FRAME;
    let base = check.baseline(frames.get(..first)?)?;
    for k in first + 1..=frames.len() {
        match check.judge(asked, base, &frames[first..k]) {
            ChallengeVerdict::WrongWay { .. } => return None,
            ChallengeVerdict::Passed { .. }
                if passive.is_none_or(|p| matches!(p.judge_appearance(&ap.followed, k), Liveness::Live { .. })) =>
            {
                return Some(k - first)
            }
            _ => {}
        }
    }
    None
}

/// The upper end of the two-sided 95 % Clopper–Pearson interval for `k` successes in `n`.
pub fn clopper_pearson_upper(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    if k >= n {
        return 1.0;
    }
    // P(X ≤ k | p) = 0.025, solved for p by bisection
    let cdf = |p: f64| -> f64 {
        let mut term = (1.0 - p).powi(n as i32);
        let mut sum = term;
        for i in 0..k {
            term *= (n - i) as f64 / (i + 1) as f64 * p / (1.0 - p);
            sum += term;
        }
        sum
    };
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if cdf(mid) > 0.025 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// A rate with its count and upper bound.
fn rate(k: usize, n: usize) -> serde_json::Value {
    serde_json::json!({ "n": n, "errors": k, "rate": if n == 0 { 0.0 } else { k as f64 / n as f64 }, "upper_95": clopper_pearson_upper(k, n) })
}

/// `facegate pad-eval`.
pub fn pad_eval(a: &PadArgs) -> Result<ExitCode> {
    hold_the_mmap_threshold();
    let all = appearances(a)?;
    let names: Vec<String> =
        people(&a.data, a.people)?.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let tune_people = &names[..names.len() / 2];
    let (tune, report): (Vec<&Appearance>, Vec<&Appearance>) =
        all.iter().partition(|ap| tune_people.contains(&ap.person));
    let base = PassiveCheck {
        min_iod_px: MIN_IOD_PX,
        min_change: a.min_change,
        threshold: 0.0,
        min_pairs: MIN_PAIRS,
        min_ncc: a.min_ncc,
        landmarks: a.method.into(),
        ring_deny: 0,
        border_deny: 0,
    };
    let worst_attack =
        tune.iter().filter(|ap| ap.kind == "print").filter_map(|ap| door_score(&base, ap)).fold(0.0f32, f32::max);
    // the ring cue alone: per kind, the most ring points moving with the face in one frame pair
    // of an appearance (the pairs the door's rule looks at: both faces large enough, followed
    // well enough), and how many appearances it denies before the nose test lets them in
    // (the same for the border cue's edges)
    let cue_max = |ap: &Appearance, cue: Cue| -> u8 {
        let big = |k: usize| iod(&ap.followed.landmarks()[k]) >= MIN_IOD_PX;
        let votes = |p: &PairMeasure| match cue {
            Cue::Ring => p.ring.with_face,
            Cue::Border => p.border.with_face,
        };
        let mut m = 0;
        for j in (0..ap.followed.len()).filter(|&j| big(j)) {
            for i in (0..j).filter(|&i| big(i)) {
                if let Some(p) = ap.followed.pair(i, j).filter(|p| p.ncc >= a.min_ncc) {
                    m = m.max(votes(&p));
                }
            }
        }
        m
    };
    // real videos: windows of live people, the first half of the people (by name) tuning the cues
    let videos = match a.video_windows {
        Some(0) => Vec::new(),
        _ => {
            let list = super::pad_video::videos(&a.videos)?;
            super::pad_video::windows(&list, &a.detector, a.video_fps, a.timeout_ms, a.video_windows)?
        }
    };
    let mut video_people: Vec<&str> = videos.iter().map(|w| w.person.as_str()).collect();
    video_people.dedup();
    let video_tune_people = &video_people[..video_people.len() / 2];
    let (video_tune, video_report): (Vec<&VideoWindow>, Vec<&VideoWindow>) =
        videos.iter().partition(|w| video_tune_people.contains(&w.person.as_str()));
    let genuine_max = |cue: Cue| {
        let photos = tune.iter().filter(|ap| GENUINE.contains(&ap.kind)).map(|ap| cue_max(ap, cue));
        photos.chain(video_tune.iter().map(|w| w.cue_max(cue, a.min_ncc))).max().unwrap_or(0)
    };
    let (genuine_ring, genuine_border) = (genuine_max(Cue::Ring), genuine_max(Cue::Border));
    let ring_deny = match (a.method, a.ring_deny) {
        (Method::Detector, _) => 0,
        (_, Some(k)) => k,
        (_, None) => genuine_ring.saturating_add(RING_MARGIN).min(facegate_face::ring::RING.len() as u8),
    };
    let border_deny = match (a.method, a.border_deny) {
        (Method::Detector, _) => 0,
        (_, Some(k)) => k,
        // three edges are all there are: a genuine appearance moving all three leaves no setting
        (_, None) => Some(genuine_border + BORDER_MARGIN).filter(|&k| k <= 3).unwrap_or(0),
    };
    let check = PassiveCheck { threshold: worst_attack * THRESHOLD_MARGIN, ring_deny, border_deny, ..base };
    let mut rows = serde_json::Map::new();
    for (label, set) in [("tune", &tune), ("report", &report)] {
        let live = |ap: &Appearance| door_score(&check, ap).is_some_and(|s| s >= check.threshold);
        let of = |k: &str| -> Vec<&&Appearance> { set.iter().filter(|ap| ap.kind == k).collect() };
        let (attacks, genuine, turns) = (of("print"), of("natural"), of("turn"));
        // an attack kind's appearances the door would let in
        let accepted = |k: &str| rate(of(k).iter().filter(|ap| live(ap)).count(), of(k).len());
        // a genuine kind's appearances the door would refuse
        let refused = |k: &str| rate(of(k).iter().filter(|ap| !live(ap)).count(), of(k).len());
        let residuals = |v: &[&&Appearance]| {
            let mut r: Vec<f32> = v.iter().filter_map(|ap| door_score(&base, ap)).collect();
            r.sort_by(f32::total_cmp);
            r
        };
        let (ra, rg, rt) = (residuals(&attacks), residuals(&genuine), residuals(&turns));
        // why genuine appearances were refused, the first that applies: a deny cue fired on
        // some frame pair (perhaps after other reasons), else never enough frame pairs for the
        // nose test (too few followed, or too alike), else a nose residual below the threshold
        let refused_by = |v: &[&&Appearance]| {
            let (mut evidence, mut nose, mut cue) = (0usize, 0usize, 0usize);
            for ap in v.iter().filter(|ap| !live(ap)) {
                if check.rigid_pair(&ap.followed, usize::MAX).is_some() {
                    cue += 1;
                } else if door_score(&base, ap).is_none() {
                    evidence += 1;
                } else {
                    nose += 1;
                }
            }
            serde_json::json!({ "too_few_pairs": evidence, "nose_below_threshold": nose, "deny_cue": cue })
        };
        let pct = |r: &[f32], q: f64| {
            if r.is_empty() {
                return 0.0;
            }
            facegate_shared::percentile(&r.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), q)
        };
        // frame pairs of the genuine appearances: measured, too alike to count, not followed
        // (pairs never measured, see `liveness::partners`, are left out)
        let pair_counts = |v: &[&&Appearance]| {
            let (mut counted, mut alike, mut lost) = (0usize, 0usize, 0usize);
            for ap in v {
                for j in 0..ap.followed.len() {
                    for i in (0..j).filter(|&i| ap.followed.measured(i, j)) {
                        match ap.followed.pair(i, j) {
                            Some(m) if m.ncc < a.min_ncc => lost += 1,
                            Some(m) if m.change >= a.min_change => counted += 1,
                            Some(_) => alike += 1,
                            None => lost += 1,
                        }
                    }
                }
            }
            serde_json::json!({ "counted": counted, "too_alike": alike, "not_followed": lost })
        };
        let deny_cue = |kind: &str, cue: Cue| {
            let mut v: Vec<u8> = set.iter().filter(|ap| ap.kind == kind).map(|ap| cue_max(ap, cue)).collect();
            v.sort_unstable();
            let q = |f: f64| v.get(((v.len() as f64 - 1.0) * f).round() as usize).copied().unwrap_or(0);
            // as the door judges: from the first judged frame on, this cue firing (first of the
            // two) before the nose test passes
            let denied_by = |check: &PassiveCheck| {
                set.iter()
                    .filter(|ap| ap.kind == kind)
                    .filter(|ap| {
                        (FIRST_JUDGED_FRAME..=ap.followed.len()).find_map(|k| {
                            match check.judge_appearance(&ap.followed, k) {
                                Liveness::Rigid(d) => Some(d.cue == cue),
                                Liveness::Live { .. } => Some(false),
                                Liveness::Unconfirmed { .. } => None,
                            }
                        }) == Some(true)
                    })
                    .count()
            };
            let denied = denied_by(&check);
            // the same with the other cue off: what this cue holds on its own
            let alone = match cue {
                Cue::Ring => PassiveCheck { border_deny: 0, ..check },
                Cue::Border => PassiveCheck { ring_deny: 0, ..check },
            };
            let denied_alone = denied_by(&alone);
            // how many appearances had each most (0 to 40)
            let all = match cue {
                Cue::Ring => facegate_face::ring::RING.len(),
                Cue::Border => 3,
            };
            let mut counts = vec![0usize; all + 1];
            let top = counts.len() - 1;
            v.iter().for_each(|&m| counts[usize::from(m).min(top)] += 1);
            serde_json::json!({ "n": v.len(), "denied": denied, "denied_alone": denied_alone, "max_with_face_min": v.first().copied().unwrap_or(0), "max_with_face_median": q(0.5), "max_with_face_p90": q(0.9), "max_with_face_max": v.last().copied().unwrap_or(0), "max_with_face_counts": counts })
        };
        let per_kind = |cue: Cue| {
            let mut m = serde_json::Map::new();
            for kind in ["print", "phone", "closeup", "bent", "natural", "turn", "obey", "replay"] {
                m.insert(kind.into(), deny_cue(kind, cue));
            }
            m
        };
        let passive_set = || set.iter().filter(|ap| ["print", "natural", "turn"].contains(&ap.kind));
        let small = passive_set().flat_map(|ap| ap.frames.iter()).filter(|l| iod(l) < MIN_IOD_PX).count();
        rows.insert(
            label.into(),
            serde_json::json!({
                "people": if label == "tune" { tune_people.len() } else { names.len() - tune_people.len() },
                "flat_print_apcer": accepted("print"),
                "bent_print_apcer": accepted("bent"),
                "phone_apcer": accepted("phone"),
                "closeup_apcer": accepted("closeup"),
                "genuine_bpcer": refused("natural"),
                "genuine_refused_by": refused_by(&genuine),
                "turn_bpcer": refused("turn"),
                "turn_refused_by": refused_by(&turns),
                "turn_score_median": pct(&rt, 0.5), "turn_score_min": rt.first().copied().unwrap_or(0.0),
                "attack_score_median": pct(&ra, 0.5), "attack_score_max": ra.last().copied().unwrap_or(0.0),
                "genuine_score_median": pct(&rg, 0.5), "genuine_score_min": rg.first().copied().unwrap_or(0.0),
                "followed_pairs": { "natural": pair_counts(&genuine), "turn": pair_counts(&turns), "print": pair_counts(&attacks) },
                "ring": per_kind(Cue::Ring),
                "border": per_kind(Cue::Border),
                "frames_without_face": passive_set().map(|ap| ap.rendered - ap.frames.len()).sum::<usize>(),
                "faces_below_min_iod": small,
            }),
        );
    }
    // challenge mode, reported on the report half only (nothing of it is tuned)
    let challenge = ChallengeCheck {
        min_turn_deg: CHALLENGE_TURN_DEG,
        min_iod_px: MIN_IOD_PX,
        confirm_frames: CHALLENGE_CONFIRM_FRAMES,
    };
    let mut crow = serde_json::Map::new();
    for (label, passive) in [("challenge", None), ("challenge_and_passive", Some(&check))] {
        let of = |k: &str| -> Vec<&&Appearance> { report.iter().filter(|ap| ap.kind == k).collect() };
        let grants = |ap: &&&Appearance| challenge_grants(&challenge, passive, ap);
        let (obey, replays) = (of("obey"), of("replay"));
        let granted = |k: &str| rate(of(k).iter().filter(|ap| grants(ap).is_some()).count(), of(k).len());
        let mut to_grant: Vec<f64> = obey.iter().filter_map(grants).map(|n| n as f64).collect();
        to_grant.sort_by(f64::total_cmp);
        // a person with no photo turned far enough that way cannot pass: counted apart
        let reach = |ap: &&&Appearance| {
            challenge.baseline(&ap.frames[..FIRST_JUDGED_FRAME.min(ap.frames.len())]).is_some_and(|b| {
                ap.frames.iter().any(|l| {
                    (ChallengeCheck::yaw(l) - b) * if ap.asked == Turn::Left { 1.0 } else { -1.0 }
                        >= challenge.min_turn_deg
                })
            })
        };
        let replay_granted = replays.iter().filter(|ap| grants(ap).is_some()).count();
        // the replays that could pass at all: the recording turns far enough to the asked side
        let replays_reaching: Vec<_> = replays.iter().filter(|ap| reach(ap)).collect();
        crow.insert(
            label.into(),
            serde_json::json!({
                "genuine_bpcer": rate(obey.iter().filter(|ap| grants(ap).is_none()).count(), obey.len()),
                "genuine_without_a_photo_turned_far_enough": obey.iter().filter(|ap| !reach(ap)).count(),
                "genuine_bpcer_where_the_photos_turn_far_enough": rate(
                    obey.iter().filter(|ap| reach(ap) && grants(ap).is_none()).count(),
                    obey.iter().filter(|ap| reach(ap)).count()
                ),
                // ORL photos shown after the challenge until the grant (not camera frames)
                "photos_to_grant_median": (!to_grant.is_empty()).then(|| facegate_shared::percentile(&to_grant, 0.5)),
                "print_apcer": granted("print"),
                "replay_apcer": rate(replay_granted, replays.len()),
                "replay_apcer_where_the_recording_turns_to_the_asked_side": rate(
                    replays_reaching.iter().filter(|ap| grants(ap).is_some()).count(),
                    replays_reaching.len()
                ),
                "bent_print_apcer": granted("bent"),
                "phone_apcer": granted("phone"),
                "closeup_apcer": granted("closeup"),
            }),
        );
    }
    // the real videos, each half at the tuned check, and with both cues off (the nose test alone)
    let mut vrows = serde_json::Map::new();
    for (label, set) in [("tune", &video_tune), ("report", &video_report)] {
        let cues_off = PassiveCheck { ring_deny: 0, border_deny: 0, ..check };
        let outcomes: Vec<Outcome> = set.iter().map(|w| w.judge(&check, a.timeout_ms)).collect();
        let refused = |o: &Outcome| !matches!(o, Outcome::Granted(_));
        let count = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        let mut grant_ms: Vec<f64> =
            outcomes.iter().filter_map(|o| if let Outcome::Granted(t) = o { Some(*t as f64) } else { None }).collect();
        grant_ms.sort_by(f64::total_cmp);
        let mut people = serde_json::Map::new();
        for (w, o) in set.iter().zip(&outcomes) {
            let e = people.entry(w.person.clone()).or_insert_with(|| serde_json::json!({ "windows": 0, "refused": 0 }));
            e["windows"] = (e["windows"].as_u64().unwrap_or(0) + 1).into();
            e["refused"] = (e["refused"].as_u64().unwrap_or(0) + u64::from(refused(o))).into();
        }
        let mut cue_max: Vec<u8> = set.iter().map(|w| w.cue_max(Cue::Ring, a.min_ncc)).collect();
        cue_max.sort_unstable();
        vrows.insert(
            label.into(),
            serde_json::json!({
                "people": if label == "tune" { video_tune_people.to_vec() } else { video_people[video_tune_people.len()..].to_vec() },
                "bpcer": rate(count(&refused), set.len()),
                "refused_by": {
                    "ring": count(&|o| *o == Outcome::Denied(Cue::Ring)),
                    "border": count(&|o| *o == Outcome::Denied(Cue::Border)),
                    "unconfirmed": count(&|o| *o == Outcome::Unconfirmed),
                },
                "bpcer_cues_off": rate(set.iter().filter(|w| refused(&w.judge(&cues_off, a.timeout_ms))).count(), set.len()),
                "grant_ms_median": (!grant_ms.is_empty()).then(|| facegate_shared::percentile(&grant_ms, 0.5)),
                "grant_ms_max": grant_ms.last(),
                "ring_max_with_face": cue_max,
                "frames": set.iter().map(|w| w.frames).sum::<usize>(),
                "frames_with_a_face": set.iter().map(|w| w.faces).sum::<usize>(),
                "per_person": people,
            }),
        );
    }
    let out = serde_json::json!({
        "threshold": check.threshold, "ring_deny": check.ring_deny, "ring_genuine_tune_max": genuine_ring, "border_deny": check.border_deny, "border_genuine_tune_max": genuine_border, "min_iod_px": MIN_IOD_PX, "min_change": a.min_change, "min_pairs": MIN_PAIRS, "min_ncc": a.min_ncc, "method": format!("{:?}", a.method).to_lowercase(),
        "frames_per_attack": a.frames, "attacks_per_person": a.attacks, "seed": a.seed,
        "tuned_on": tune_people, "results": rows,
        "videos": { "fps": a.video_fps, "window_ms": a.timeout_ms, "face_gap_ms": FACE_GAP_MS, "results": vrows },
        "challenge": { "turn_deg": CHALLENGE_TURN_DEG, "confirm_frames": CHALLENGE_CONFIRM_FRAMES, "report": crow },
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("passive 3-D check: threshold {:.4} IOD (largest tuning-attack score {worst_attack:.4} × {THRESHOLD_MARGIN}), min IOD {MIN_IOD_PX} px, min change {} IOD, {MIN_PAIRS} pairs", check.threshold, a.min_change);
        println!("ring deny cue at {} of {} points moving with the face in one frame pair ({}; the most of a tuning-half genuine appearance: {genuine_ring})", check.ring_deny, facegate_face::ring::RING.len(), if a.ring_deny.is_some() { "as given" } else { "tuned" });
        println!("border deny cue at {} of 3 edges moving with the face in one frame pair (0: off; {}; the most of a tuning-half genuine appearance: {genuine_border})", check.border_deny, if a.border_deny.is_some() { "as given" } else { "tuned" });
        println!(
            "{:<8} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22}  score (door rule) print med/max, natural med/min, turn med/min",
            "half", "flat-print APCER", "phone APCER", "close-up APCER", "bent-print APCER", "natural BPCER", "20° turn BPCER"
        );
        let mut ring_lines = Vec::new();
        for (label, r) in &rows {
            let f = |v: &serde_json::Value| {
                format!("{}/{} (≤{:.1} %)", v["errors"], v["n"], 100.0 * v["upper_95"].as_f64().unwrap_or(1.0))
            };
            for (cue, what) in [("ring", "points"), ("border", "edges")] {
                let g = |k: &str| {
                    let v = &r[cue][k];
                    format!(
                        "{k} {}/{} ({} alone; most {what} moving with the face: median {}, 90th {}, max {})",
                        v["denied"],
                        v["n"],
                        v["denied_alone"],
                        v["max_with_face_median"],
                        v["max_with_face_p90"],
                        v["max_with_face_max"]
                    )
                };
                ring_lines.push(format!(
                    "{label:<8} denied by the {cue} cue: {}; {}; {}; {}; {}; {}; {}; {}",
                    g("print"),
                    g("phone"),
                    g("closeup"),
                    g("bent"),
                    g("natural"),
                    g("turn"),
                    g("obey"),
                    g("replay")
                ));
            }
            println!(
                "{label:<8} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22}  {:.3}/{:.3}, {:.3}/{:.3}, {:.3}/{:.3}",
                f(&r["flat_print_apcer"]),
                f(&r["phone_apcer"]),
                f(&r["closeup_apcer"]),
                f(&r["bent_print_apcer"]),
                f(&r["genuine_bpcer"]),
                f(&r["turn_bpcer"]),
                r["attack_score_median"].as_f64().unwrap_or(0.0),
                r["attack_score_max"].as_f64().unwrap_or(0.0),
                r["genuine_score_median"].as_f64().unwrap_or(0.0),
                r["genuine_score_min"].as_f64().unwrap_or(0.0),
                r["turn_score_median"].as_f64().unwrap_or(0.0),
                r["turn_score_min"].as_f64().unwrap_or(0.0)
            );
        }
        ring_lines.iter().for_each(|l| println!("{l}"));
        for (label, r) in &vrows {
            let f = |v: &serde_json::Value| {
                format!("{}/{} (≤{:.1} %)", v["errors"], v["n"], 100.0 * v["upper_95"].as_f64().unwrap_or(1.0))
            };
            println!(
                "{label:<8} real videos ({}): {} windows of {} ms refused {} (ring {}, border {}, unconfirmed {}); both cues off: {}; grant after {} ms (median)",
                r["people"],
                r["bpcer"]["n"],
                a.timeout_ms,
                f(&r["bpcer"]),
                r["refused_by"]["ring"],
                r["refused_by"]["border"],
                r["refused_by"]["unconfirmed"],
                f(&r["bpcer_cues_off"]),
                r["grant_ms_median"]
            );
        }
        for (label, r) in &rows {
            for kind in ["genuine", "turn"] {
                let v = &r[format!("{kind}_refused_by")];
                println!(
                    "{label:<8} {} refused: {} with too few frame pairs for the nose test, {} below the threshold, {} by a deny cue",
                    if kind == "genuine" { "natural" } else { "turn" },
                    v["too_few_pairs"],
                    v["nose_below_threshold"],
                    v["deny_cue"]
                );
            }
        }
        println!(
            "\nchallenge mode (turn {CHALLENGE_TURN_DEG}° to a random side, {CHALLENGE_CONFIRM_FRAMES} frames), report half:"
        );
        println!(
            "{:<22} {:>20} {:>26} {:>10} {:>20} {:>20} {:>20} {:>20} {:>20}",
            "checks",
            "genuine BPCER",
            "… where photos turn enough",
            "photos",
            "print APCER",
            "phone APCER",
            "close-up APCER",
            "bent-print APCER",
            "screen-replay APCER"
        );
        for (label, r) in &crow {
            let f = |v: &serde_json::Value| {
                format!("{}/{} (≤{:.1} %)", v["errors"], v["n"], 100.0 * v["upper_95"].as_f64().unwrap_or(1.0))
            };
            println!(
                "{label:<22} {:>20} {:>26} {:>10} {:>20} {:>20} {:>20} {:>20} {:>20}",
                f(&r["genuine_bpcer"]),
                f(&r["genuine_bpcer_where_the_photos_turn_far_enough"]),
                r["photos_to_grant_median"].as_f64().map_or("-".into(), |v| format!("{v:.0}")),
                f(&r["print_apcer"]),
                f(&r["phone_apcer"]),
                f(&r["closeup_apcer"]),
                f(&r["bent_print_apcer"]),
                f(&r["replay_apcer"])
            );
        }
        for (label, r) in &crow {
            let v = &r["replay_apcer_where_the_recording_turns_to_the_asked_side"];
            println!(
                "{label}: screen replays whose recording turns far enough to the asked side: {}/{} granted",
                v["errors"], v["n"]
            );
        }
        println!("Simulated attacks on the photos of {} through the real detector; not an ISO/IEC 30107-3 test. A screen replaying a recorded turn passes the passive check; the challenge stops it only when the recording turns the other way (about half the attempts).", a.data.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_matches_known_values() {
        // 0 of 200: 1 − 0.025^(1/200) = 0.01827
        assert!((clopper_pearson_upper(0, 200) - 0.018_27).abs() < 1e-4);
        // 1 of 20: 0.2487 (tables)
        assert!((clopper_pearson_upper(1, 20) - 0.2487).abs() < 1e-3, "{}", clopper_pearson_upper(1, 20));
        assert_eq!(clopper_pearson_upper(5, 5), 1.0);
    }

    #[test]
    fn a_plane_at_rest_maps_the_photo_centre_to_the_frame_centre_at_its_scale() {
        let h = plane_homography(92.0, 112.0, 0.0, 0.0, 0.0, 3.0, 320.0, 240.0);
        let map = |u: f64, v: f64| {
            let w = h[6] * u + h[7] * v + h[8];
            ((h[0] * u + h[1] * v + h[2]) / w, (h[3] * u + h[4] * v + h[5]) / w)
        };
        let (x, y) = map(46.0, 56.0);
        assert!((x - 320.0).abs() < 1e-9 && (y - 240.0).abs() < 1e-9);
        let (x2, _) = map(47.0, 56.0);
        assert!((x2 - x - 3.0).abs() < 1e-9, "3× enlargement: {}", x2 - x);
    }
}
