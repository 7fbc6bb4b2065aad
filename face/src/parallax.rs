//! Landmarks followed from one frame to the next by their texture, for the passive 3-D test.
//!
//! YuNet places its five landmarks a few pixels apart from one frame to the next even on a
//! still photo: at door sizes that noise is as large as the nose's parallax in a 10–15° head
//! turn, so [`nose_residual`](crate::liveness::nose_residual) on detector landmarks alone cannot
//! tell a small turn from a tilted print (`facegate pad-eval` measured it). What the test needs
//! is not where the eye corner *is* but where the *same skin* went, and that is measurable far
//! more precisely: the texture around each landmark of one frame is looked up in the other
//! (normalised cross-correlation, the template warped by the plane's homography so a tilted
//! print still matches, sub-pixel peak). The five followed points then go through the same
//! homography-and-nose measurement as before.
//!
//! On a photo every followed point lies on one plane, so the nose residual is the matching
//! noise (hundredths of an eye distance); on a head that moved, the nose leaves the plane of the
//! eyes and mouth. A point that cannot be followed (no texture, the match is poor, the template
//! leaves the crop) makes the pair unusable: it never counts for or against the face.

use crate::liveness::iod;
use crate::liveness::Homography;
use image::RgbImage;

/// Landmark indices forming the face's plane (eyes, mouth corners); the nose is the fifth.
const PLANE: [usize; 4] = [0, 1, 3, 4];

/// How far a patch reaches around the landmarks' box, in inter-ocular distances (IOD): enough
/// for the templates and the search around every landmark. [`FacePatch::cut`] cuts more beside
/// and above the face, for the ring and border tests ([`crate::ring::REACH_IOD`],
/// [`crate::border::REACH_IOD`]).
pub const MARGIN_IOD: f32 = 0.6;
/// Template half-size in samples: (2·T+1)² samples per landmark.
const T: i32 = 6;
/// Template sample spacing, in IODs of the frame it is taken from (so the template covers
/// ±0.15 IOD: an eye corner with its lid, the nose tip with its nostrils).
const STEP_IOD: f32 = 0.025;
/// Search radius around the other frame's detector landmark, in its IODs: several times
/// YuNet's landmark noise.
pub const SEARCH_IOD: f32 = 0.15;
/// A point is followed only when its best match correlates at least this well (normalised
/// cross-correlation); the passive test sets its own, higher, bar
/// ([`PassiveCheck::min_ncc`](crate::liveness::PassiveCheck::min_ncc)).
pub const NCC_FLOOR: f32 = 0.4;
/// A template flatter than this (standard deviation, grey levels) has nothing to follow.
const MIN_TEXTURE: f32 = 2.0;

/// A grey crop of a frame around one face, in the frame's pixel coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacePatch {
    x0: i32,
    y0: i32,
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl FacePatch {
    /// The region of `img` around the landmarks `l` (their box grown by [`MARGIN_IOD`] below and
    /// by the ring and border tests' reach, [`crate::ring::REACH_IOD`] and
    /// [`crate::border::REACH_IOD`], beside and above), as BT.601 luma.
    /// `None` for a degenerate face or one wholly outside the image.
    pub fn cut(img: &RgbImage, l: &[[f32; 2]; 5]) -> Option<Self> {
        let s = iod(l);
        if !(s.is_finite() && s >= 1.0) || l.iter().flatten().any(|v| !v.is_finite()) {
            return None;
        }
        let (ring, border) = (crate::ring::REACH_IOD, crate::border::REACH_IOD);
        let [side, above, below] = [0, 1, 2].map(|k| ring[k].max(border[k]).max(MARGIN_IOD) * s);
        let lo = |k: usize| l.iter().map(|p| p[k]).fold(f32::INFINITY, f32::min) - [side, above][k];
        let hi = |k: usize| l.iter().map(|p| p[k]).fold(f32::NEG_INFINITY, f32::max) + [side, below][k];
        let (iw, ih) = (img.width() as f32, img.height() as f32);
        let x0 = lo(0).floor().clamp(0.0, iw) as i32;
        let y0 = lo(1).floor().clamp(0.0, ih) as i32;
        let x1 = hi(0).ceil().clamp(0.0, iw) as i32;
        let y1 = hi(1).ceil().clamp(0.0, ih) as i32;
        let (w, h) = ((x1 - x0).max(0) as usize, (y1 - y0).max(0) as usize);
        if w < 2 || h < 2 {
            return None;
        }
        let mut px = Vec::with_capacity(w * h);
        for y in y0..y1 {
            for x in x0..x1 {
                let p = img.get_pixel(x as u32, y as u32);
                let luma = 77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]) + 128;
                px.push((luma >> 8) as u8);
            }
        }
        Some(Self { x0, y0, w, h, px })
    }

    /// A grey patch from raw values (row-major, `w × h`, its top-left pixel at `(x0, y0)` of the
    /// frame). `None` when the sizes disagree.
    pub fn from_grey(x0: i32, y0: i32, w: usize, h: usize, px: Vec<u8>) -> Option<Self> {
        (w >= 2 && h >= 2 && px.len() == w * h).then_some(Self { x0, y0, w, h, px })
    }

    /// Whether [`Self::at`] can sample every point of the box from `lo` to `hi` (frame
    /// coordinates): then [`Self::at_inside`] gives the same values without the checks.
    fn holds(&self, lo: [f32; 2], hi: [f32; 2]) -> bool {
        let (fx0, fy0) = (lo[0] - self.x0 as f32, lo[1] - self.y0 as f32);
        let (fx1, fy1) = (hi[0] - self.x0 as f32, hi[1] - self.y0 as f32);
        fx0 >= 0.0 && fy0 >= 0.0 && fx1.is_finite() && fy1.is_finite() && {
            (fx1 as usize) + 1 < self.w && (fy1 as usize) + 1 < self.h
        }
    }

    /// The bilinear grey value at a point [`Self::at`] has checked, or inside a box
    /// [`Self::holds`] vouched for (rounding is monotonic, so every point between the box's
    /// corners, computed the same way, lies inside too).
    #[inline]
    fn at_inside(&self, x: f32, y: f32) -> f32 {
        let (fx, fy) = (x - self.x0 as f32, y - self.y0 as f32);
        let (ix, iy) = (fx as usize, fy as usize);
        let (dx, dy) = (fx - ix as f32, fy - iy as f32);
        let row = &self.px[iy * self.w + ix..];
        let below = &self.px[(iy + 1) * self.w + ix..];
        let g = |r: &[u8], k: usize| f32::from(r[k]);
        let top = g(row, 0) + (g(row, 1) - g(row, 0)) * dx;
        let bottom = g(below, 0) + (g(below, 1) - g(below, 0)) * dx;
        top + (bottom - top) * dy
    }

    /// Bilinear grey value at frame coordinates `(x, y)`; `None` outside the patch.
    pub(crate) fn at(&self, x: f32, y: f32) -> Option<f32> {
        let (fx, fy) = (x - self.x0 as f32, y - self.y0 as f32);
        if !(fx >= 0.0 && fy >= 0.0) {
            return None;
        }
        let (ix, iy) = (fx as usize, fy as usize);
        if ix + 1 >= self.w || iy + 1 >= self.h {
            return None;
        }
        Some(self.at_inside(x, y))
    }
}

/// The template of one landmark: zero-mean, unit-norm samples and where each lies relative to
/// the landmark in the other frame (the plane's local linear map applied to its offset).
pub(crate) struct Template {
    values: Vec<f32>,
    offsets: Vec<[f32; 2]>,
    /// The offsets' box: its lowest and highest x and y.
    lo: [f32; 2],
    hi: [f32; 2],
}

impl Template {
    pub(crate) fn take(a: &FacePatch, p: [f32; 2], step: f32, h: &Homography) -> Option<Self> {
        // the homography's Jacobian at p, by central differences
        let q = |x: f32, y: f32| h.apply([x, y]);
        let (xp, xm) = (q(p[0] + step, p[1])?, q(p[0] - step, p[1])?);
        let (yp, ym) = (q(p[0], p[1] + step)?, q(p[0], p[1] - step)?);
        let jx = [(xp[0] - xm[0]) / 2.0, (xp[1] - xm[1]) / 2.0];
        let jy = [(yp[0] - ym[0]) / 2.0, (yp[1] - ym[1]) / 2.0];
        let n = ((2 * T + 1) * (2 * T + 1)) as usize;
        let (mut values, mut offsets) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for v in -T..=T {
            for u in -T..=T {
                let (u, v) = (u as f32, v as f32);
                values.push(a.at(p[0] + u * step, p[1] + v * step)?);
                offsets.push([jx[0] * u + jy[0] * v, jx[1] * u + jy[1] * v]);
            }
        }
        let mean = values.iter().sum::<f32>() / n as f32;
        values.iter_mut().for_each(|v| *v -= mean);
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm < MIN_TEXTURE * (n as f32).sqrt() {
            return None;
        }
        values.iter_mut().for_each(|v| *v /= norm);
        let edge = |k: usize, f: fn(f32, f32) -> f32, from: f32| offsets.iter().fold(from, |m, o| f(m, o[k]));
        let lo = [edge(0, f32::min, f32::INFINITY), edge(1, f32::min, f32::INFINITY)];
        let hi = [edge(0, f32::max, f32::NEG_INFINITY), edge(1, f32::max, f32::NEG_INFINITY)];
        Some(Self { values, offsets, lo, hi })
    }

    /// Normalised cross-correlation with `b` around `c`; `None` when a sample leaves the patch or
    /// `b` is flat there.
    pub(crate) fn ncc(&self, b: &FacePatch, c: [f32; 2]) -> Option<f32> {
        let (mut s, mut s2, mut st) = (0.0f32, 0.0f32, 0.0f32);
        let (lo, hi) = ([c[0] + self.lo[0], c[1] + self.lo[1]], [c[0] + self.hi[0], c[1] + self.hi[1]]);
        if b.holds(lo, hi) {
            // the door's usual case: every sample inside, no check per sample
            for (t, o) in self.values.iter().zip(&self.offsets) {
                let v = b.at_inside(c[0] + o[0], c[1] + o[1]);
                s += v;
                s2 += v * v;
                st += v * t;
            }
        } else {
            for (t, o) in self.values.iter().zip(&self.offsets) {
                let v = b.at(c[0] + o[0], c[1] + o[1])?;
                s += v;
                s2 += v * v;
                st += v * t;
            }
        }
        let n = self.values.len() as f32;
        // Σ(v − mean)·t = Σv·t since Σt = 0
        let var = s2 - s * s / n;
        (var > 1e-6).then(|| st / var.sqrt())
    }
}

/// Where the landmarks `la` of frame `a` went in frame `b` (whose detector landmarks are `lb`),
/// followed by their texture, with the weakest of the five matches (normalised
/// cross-correlation). `None` when any of the five cannot be followed: no texture, a template
/// leaving a patch, or a match below [`NCC_FLOOR`].
///
/// Two passes: the templates are first shaped by the homography between the detector's plane
/// landmarks (noisy by a few pixels, so the shapes are a little off) and searched for around
/// `lb`; then shaped again by the homography between `la` and the first pass's plane points,
/// and searched for within [`REFINE_PX`] of the first pass's matches. (On a synthetic tilted
/// print with ±3 px of landmark noise the second pass takes the nose residual from about 0.01
/// to 0.002 IOD.)
pub fn follow(a: &FacePatch, la: &[[f32; 2]; 5], b: &FacePatch, lb: &[[f32; 2]; 5]) -> Option<([[f32; 2]; 5], f32)> {
    let h = Homography::fit4(&PLANE.map(|i| la[i]), &PLANE.map(|i| lb[i]))?;
    let mut found = follow_with(a, la, b, &h, lb, (SEARCH_IOD * iod(lb)).ceil().max(2.0) as i32)?;
    for _ in 0..REFINE_PASSES {
        let h = Homography::fit4(&PLANE.map(|i| la[i]), &PLANE.map(|i| found.0[i]))?;
        let centres = found.0.map(|p| p.map(f32::round));
        found = follow_with(a, la, b, &h, &centres, REFINE_PX)?;
    }
    Some(found)
}

/// Passes after the first.
const REFINE_PASSES: usize = 2;

/// Search radius of [`follow`]'s second pass (pixels).
const REFINE_PX: i32 = 2;

/// One pass of [`follow`]: each template shaped by `h`, searched for within `radius` pixels of
/// its centre in `centres`.
fn follow_with(
    a: &FacePatch,
    la: &[[f32; 2]; 5],
    b: &FacePatch,
    h: &Homography,
    centres: &[[f32; 2]; 5],
    radius: i32,
) -> Option<([[f32; 2]; 5], f32)> {
    let step = STEP_IOD * iod(la);
    let mut out = [[0.0f32; 2]; 5];
    let mut weakest = f32::INFINITY;
    for i in 0..5 {
        let t = Template::take(a, la[i], step, h)?;
        let c = centres[i];
        let score = |dx: i32, dy: i32| t.ncc(b, [c[0] + dx as f32, c[1] + dy as f32]);
        // coarse (every other pixel), then every pixel around the best, then a parabola
        let mut best: Option<(f32, i32, i32)> = None;
        let consider = |dx: i32, dy: i32, best: &mut Option<(f32, i32, i32)>| {
            if let Some(s) = score(dx, dy) {
                if best.is_none_or(|b| s > b.0) {
                    *best = Some((s, dx, dy));
                }
            }
        };
        for dy in (-radius..=radius).step_by(2) {
            for dx in (-radius..=radius).step_by(2) {
                consider(dx, dy, &mut best);
            }
        }
        let (_, cx, cy) = best?;
        for dy in cy - 1..=cy + 1 {
            for dx in cx - 1..=cx + 1 {
                consider(dx, dy, &mut best);
            }
        }
        let (peak, bx, by) = best?;
        if peak < NCC_FLOOR || bx.abs() > radius || by.abs() > radius {
            return None;
        }
        weakest = weakest.min(peak);
        // sub-pixel: a parabola through the peak and its neighbours on each axis
        let vertex = |m: Option<f32>, p: Option<f32>| -> f32 {
            match (m, p) {
                (Some(m), Some(p)) => {
                    let d = m - 2.0 * peak + p;
                    if d < -1e-6 {
                        ((m - p) / (2.0 * d)).clamp(-0.5, 0.5)
                    } else {
                        0.0
                    }
                }
                _ => 0.0,
            }
        };
        let sx = vertex(score(bx - 1, by), score(bx + 1, by));
        let sy = vertex(score(bx, by - 1), score(bx, by + 1));
        out[i] = [c[0] + bx as f32 + sx, c[1] + by as f32 + sy];
    }
    Some((out, weakest))
}

/// The model face of [`model_landmarks`](crate::liveness::model_landmarks) as a camera would
/// see it: a textured surface (smooth grey value noise, about 5 px per cell) whose nose stands
/// `nose_depth` eye distances in front of the eyes and mouth (a smooth bump; 0 = a flat photo),
/// turned `yaw_deg` about the vertical axis through the eye midpoint, drawn by forward projection
/// onto a 640×480 frame (grey in all three channels) over a black background. Returns the frame
/// and the five landmarks (those of `model_landmarks`). Self-occlusion is ignored (the bump is
/// gentle enough to have none at the angles the tests use). For tests and simulations.
pub fn model_view(yaw_deg: f32, nose_depth: f32) -> (RgbImage, [[f32; 2]; 5]) {
    const NOSE: [f32; 2] = [0.0, 0.6];
    let depth = |u: f32, v: f32| {
        let d2 = u * u + (v - NOSE[1]) * (v - NOSE[1]);
        nose_depth * (-d2 / (2.0 * 0.25 * 0.25)).exp()
    };
    let (s, c) = yaw_deg.to_radians().sin_cos();
    // the projection of `model_landmarks`: surface point (u, v) at z = −depth, 8 IODs away
    let project = |u: f32, v: f32| {
        let z = -depth(u, v);
        let (x, z) = (u * c + z * s, -u * s + z * c);
        let f = 800.0 / (8.0 + z);
        [320.0 + x * f, 200.0 + v * f]
    };
    let (w, h) = (640usize, 480usize);
    let (mut sum, mut count) = (vec![0.0f32; w * h], vec![0u32; w * h]);
    // three samples per pixel each way at the frontal scale (100 px per IOD)
    const STEP: f32 = 1.0 / 300.0;
    for vi in 0..(2.8 / STEP) as i32 {
        let v = -0.8 + vi as f32 * STEP;
        for ui in 0..(2.4 / STEP) as i32 {
            let u = -1.2 + ui as f32 * STEP;
            let [x, y] = project(u, v);
            if x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < h {
                let k = y as usize * w + x as usize;
                sum[k] += value_noise(u / 0.05, v / 0.05);
                count[k] += 1;
            }
        }
    }
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let k = y as usize * w + x as usize;
        let g = if count[k] == 0 { 0 } else { (sum[k] / count[k] as f32).round() as u8 };
        image::Rgb([g, g, g])
    });
    (img, crate::liveness::model_landmarks(yaw_deg, nose_depth))
}

/// Smooth value noise: grey levels 40–215 on an integer grid, smoothstep-interpolated.
fn value_noise(x: f32, y: f32) -> f32 {
    let lattice = |i: i32, j: i32| {
        let mut k = (i as u32).wrapping_mul(0x9e37_79b1) ^ (j as u32).wrapping_mul(0x85eb_ca77);
        k ^= k >> 15;
        k = k.wrapping_mul(0x2c1b_3c6d);
        k ^= k >> 12;
        40.0 + (k % 176) as f32
    };
    let (x0, y0) = (x.floor(), y.floor());
    let (i, j) = (x0 as i32, y0 as i32);
    let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (smooth(x - x0), smooth(y - y0));
    let top = lattice(i, j) + (lattice(i + 1, j) - lattice(i, j)) * sx;
    let bottom = lattice(i, j + 1) + (lattice(i + 1, j + 1) - lattice(i, j + 1)) * sx;
    top + (bottom - top) * sy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::nose_residual;

    fn view(deg: f32, nose_depth: f32) -> (FacePatch, [[f32; 2]; 5]) {
        let (img, l) = model_view(deg, nose_depth);
        (FacePatch::cut(&img, &l).unwrap(), l)
    }

    fn jitter(l: [[f32; 2]; 5], seed: u32) -> [[f32; 2]; 5] {
        // detector-like noise: up to ±3 px per coordinate
        let mut k = seed;
        l.map(|p| {
            p.map(|x| {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                x + ((k >> 16) % 601) as f32 / 100.0 - 3.0
            })
        })
    }

    #[test]
    fn a_tilted_print_followed_by_texture_lies_on_one_plane_despite_landmark_noise() {
        let (a, la) = view(0.0, 0.0);
        for (deg, seed) in [(12.0, 1), (-15.0, 2), (25.0, 3)] {
            let (b, lb) = view(deg, 0.0);
            let (la_n, lb_n) = (jitter(la, seed), jitter(lb, seed + 10));
            let (fb, _) = follow(&a, &la_n, &b, &lb_n).expect("followed");
            let tracked = nose_residual(&la_n, &fb).unwrap();
            let detected = nose_residual(&la_n, &lb_n).unwrap();
            assert!(tracked < 0.01, "{deg}°: followed residual {tracked} (detector {detected})");
        }
    }

    #[test]
    fn a_head_turning_moves_the_followed_nose_off_the_plane() {
        let (a, la) = view(0.0, 0.5);
        for (deg, seed) in [(8.0, 4), (-12.0, 5), (20.0, 6)] {
            let (b, lb) = view(deg, 0.5);
            let la_n = jitter(la, seed);
            let (fb, ncc) = follow(&a, &la_n, &b, &jitter(lb, seed + 10)).expect("followed");
            // measured: 0.95, 0.92, 0.83 at 8°, 12°, 20°
            assert!(ncc > 0.8, "{deg}°: weakest match {ncc}");
            let r = nose_residual(&la_n, &fb).unwrap();
            // measured: 0.060, 0.091, 0.163
            assert!(r > 0.045, "{deg}°: followed residual {r}");
        }
    }

    #[test]
    fn a_point_without_texture_or_outside_the_patch_is_not_followed() {
        let (a, la) = view(0.0, 0.0);
        let (b, lb) = view(10.0, 0.0);
        let blank = FacePatch::from_grey(0, 0, 640, 480, vec![90; 640 * 480]).unwrap();
        assert!(follow(&blank, &la, &b, &lb).is_none());
        assert!(follow(&a, &la, &blank, &lb).is_none());
        let small = FacePatch::from_grey(300, 200, 20, 20, vec![90; 400]).unwrap();
        assert!(follow(&small, &la, &b, &lb).is_none());
        assert!(FacePatch::from_grey(0, 0, 3, 3, vec![0; 8]).is_none());
    }

    /// The unchecked sampler gives `at`'s values bit for bit wherever `holds` vouches for a box,
    /// and `holds` refuses a box that reaches past the last sampleable pixel or before the first.
    #[test]
    fn sampling_inside_a_vouched_box_matches_the_checked_sampler_exactly() {
        let px: Vec<u8> = (0..40 * 30u32).map(|k| (k.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let p = FacePatch::from_grey(100, 50, 40, 30, px).unwrap();
        assert!(p.holds([100.0, 50.0], [138.99, 78.99]));
        assert!(!p.holds([100.0, 50.0], [139.0, 70.0]), "x0 + 39 has no right neighbour");
        assert!(!p.holds([99.99, 50.0], [120.0, 70.0]));
        assert!(!p.holds([100.0, 50.0], [f32::NAN, 70.0]));
        for k in 0..500u32 {
            let (x, y) = (100.0 + (k % 97) as f32 * 0.3917, 50.0 + (k % 89) as f32 * 0.3251);
            if p.holds([x, y], [x, y]) {
                assert_eq!(p.at(x, y).unwrap().to_bits(), p.at_inside(x, y).to_bits(), "({x}, {y})");
            }
        }
    }
}
#[cfg(test)]
mod judged {
    use super::*;
    use crate::liveness::{Followed, Landmarks, Liveness, PassiveCheck};

    /// Frames of the model turning (or tilting, as a print) from 0° to 30° in 5° steps.
    fn sequence(nose_depth: f32, with_images: bool) -> Followed {
        let mut f = Followed::default();
        for k in 0..=6 {
            let (img, l) = model_view(k as f32 * 5.0, nose_depth);
            f.push(l, FacePatch::cut(&img, &l).filter(|_| with_images));
        }
        f
    }

    #[test]
    fn followed_landmarks_pass_a_turning_head_and_never_a_tilting_print() {
        let check = PassiveCheck {
            min_iod_px: 30.0,
            min_change: 0.03,
            threshold: 0.005,
            min_pairs: 2,
            min_ncc: 0.8,
            landmarks: Landmarks::Followed,
            ring_deny: crate::ring::RING_DENY_DEFAULT,
            // the model head is a textured plane with a nose bump: its outline is a sheet's edge
            // and follows the plane when it turns, so the border cue rightly takes it for a print
            border_deny: 0,
        };
        let head = sequence(0.5, true);
        let first_live = (3..=head.len()).find(|&k| matches!(check.judge_appearance(&head, k), Liveness::Live { .. }));
        let print = sequence(0.0, true);
        let print_score = check.door_score_appearance(&print, 3);
        // measured: live from the fifth frame (20° turned), door score 0.087; the print 0.00056
        assert_eq!(first_live, Some(5));
        assert!(check.door_score_appearance(&head, 3).is_some_and(|s| s > 0.05));
        assert!(print_score.is_some_and(|s| s < 0.002), "{print_score:?}");
        // without images no pair counts
        assert!(check.door_score_appearance(&sequence(0.5, false), 3).is_none());
    }
}
