//! The ring test, a deny cue of the passive liveness check: does the image around the face move
//! with the face?
//!
//! A photo or a phone held in front of the camera is one rigid plane: whatever of it lies around
//! the face (the print's margin and edges, the scene the photo was taken in, the phone's frame)
//! moves exactly as the face's own plane moves. Behind a real person there is a wall, which does
//! not move at all when the head does. So between two frames, each point of a ring beside and
//! above the face (never below: shoulders move with a person) is tested against two hypotheses:
//! it stayed where it was (a wall), or it went where the homography of the face's plane (eyes and
//! mouth corners, followed by texture) sends it (the same sheet as the face). The texture around
//! the point in the first frame is looked for at both places in the second; the point votes for
//! the hypothesis that matches clearly better, and only when the two places are far enough apart
//! to tell, and the point has texture. Many points moving with the face is a deny cue that latches
//! for the appearance: no amount of nose parallax outvotes it.
//!
//! What it cannot see: a print or a screen cut to the head's outline (its ring is the wall), and
//! a still one (nothing moves, nothing is decided). The parallax test still judges those.

use crate::liveness::{iod, Homography};
use crate::parallax::{FacePatch, Template};

/// The ring's points, in eye distances (IODs) from the eye midpoint: `[across, down]` along the
/// eye axis and perpendicular to it. Beside the head (1.3–1.7 IOD out, past the ears, from one
/// IOD above the eye line to one below it, about mouth level) and above it (1.7 and 1.95 IOD
/// above the eyes: about the crown, where hair may reach); none below the mouth.
pub const RING: [[f32; 2]; 40] = {
    let mut out = [[0.0f32; 2]; 40];
    let across = [1.3f32, 1.5, 1.7];
    let down = [-1.0f32, -0.5, 0.0, 0.5, 1.0];
    let mut k = 0;
    let mut side = 0;
    while side < 2 {
        let sign = if side == 0 { -1.0 } else { 1.0 };
        let mut i = 0;
        while i < across.len() {
            let mut j = 0;
            while j < down.len() {
                out[k] = [sign * across[i], down[j]];
                k += 1;
                j += 1;
            }
            i += 1;
        }
        side += 1;
    }
    let above = [-1.7f32, -1.95];
    let spread = [-1.0f32, -0.5, 0.0, 0.5, 1.0];
    let mut i = 0;
    while i < above.len() {
        let mut j = 0;
        while j < spread.len() {
            out[k] = [spread[j], above[i]];
            k += 1;
            j += 1;
        }
        i += 1;
    }
    out
};

/// How far the ring reaches past the landmarks' box, in IODs: `[each side, above, below]`,
/// template and search included. [`FacePatch::cut`] cuts this much.
pub const REACH_IOD: [f32; 3] = [1.5, 2.25, 0.6];

/// Template sample spacing (IODs): the template covers ±0.24 IOD around each ring point.
const STEP_IOD: f32 = 0.04;
/// A point votes only when its two candidate places are at least this far apart (pixels) …
pub const MIN_SHIFT_PX: f32 = 3.0;
/// … and at least this far in IODs (a small face moving a few pixels is not evidence).
const MIN_SHIFT_IOD: f32 = 0.05;
/// Search radius around each candidate place (pixels): the face's plane is followed to a pixel
/// or so, a wall does not move at all.
const SEARCH_PX: i32 = 1;
/// A vote needs its best match at least this good (normalised cross-correlation) …
pub const MATCH_NCC: f32 = 0.7;
/// … and this much better than the other hypothesis.
pub const MARGIN_NCC: f32 = 0.1;

/// The door's default `liveness.ring_deny`: ring points moving with the face in one frame pair
/// that deny the appearance. `facegate pad-eval` tunes it on genuine appearances: the most of
/// the tuning half plus 2, 23 + 2 since its real videos joined the ORL photos (a live head close
/// to the camera moves its own hair and ears with the face, and a plain wall gives the points
/// beyond them no texture to test: up to 27 points moved with a live face in the report half's
/// videos; at 13, the previous default, the real door refused 6 of 24 real-video windows).
pub const RING_DENY_DEFAULT: u8 = 25;

/// What the ring test saw between two frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingVotes {
    /// Ring points that moved with the face's plane.
    pub with_face: u8,
    /// Ring points that stayed where they were.
    pub still: u8,
    /// Ring points inside both crops with texture whose candidate places were far enough apart
    /// to tell (the votes above, and those that matched neither clearly).
    pub tested: u8,
}

/// What one ring point said between two frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PointVote {
    /// Not tested: outside a crop, without texture, or its two places too close to tell.
    #[default]
    Untested,
    /// Tested, neither place matched clearly better.
    Neither,
    /// It went where the face's plane sends it.
    WithFace,
    /// It stayed where it was.
    Still,
}

/// The ring test between frame `a` (landmarks `la`) and frame `b`, where `la`'s points were
/// followed to `fb` (see [`crate::parallax::follow`]): the face's plane is the homography from
/// `la`'s eyes and mouth corners to `fb`'s. `None` when that homography does not exist.
pub fn ring_votes(a: &FacePatch, la: &[[f32; 2]; 5], b: &FacePatch, fb: &[[f32; 2]; 5]) -> Option<RingVotes> {
    let mut votes = RingVotes::default();
    for v in ring_point_votes(a, la, b, fb)? {
        votes.tested += u8::from(v != PointVote::Untested);
        votes.with_face += u8::from(v == PointVote::WithFace);
        votes.still += u8::from(v == PointVote::Still);
    }
    Some(votes)
}

/// [`ring_votes`] point by point, in [`RING`]'s order.
pub fn ring_point_votes(
    a: &FacePatch,
    la: &[[f32; 2]; 5],
    b: &FacePatch,
    fb: &[[f32; 2]; 5],
) -> Option<[PointVote; RING.len()]> {
    const PLANE: [usize; 4] = [0, 1, 3, 4];
    let h = Homography::fit4(&PLANE.map(|i| la[i]), &PLANE.map(|i| fb[i]))?;
    let still = Homography([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let s = iod(la);
    if !(s.is_finite() && s >= 1.0) {
        return None;
    }
    let mid = [(la[0][0] + la[1][0]) / 2.0, (la[0][1] + la[1][1]) / 2.0];
    // the eye axis (unit) and its perpendicular pointing down the face
    let axis = [(la[1][0] - la[0][0]) / s, (la[1][1] - la[0][1]) / s];
    let down = [-axis[1], axis[0]];
    let min_shift = MIN_SHIFT_PX.max(MIN_SHIFT_IOD * s);
    let step = STEP_IOD * s;
    let best = |t: &Template, c: [f32; 2]| -> Option<f32> {
        let mut top: Option<f32> = None;
        for dy in -SEARCH_PX..=SEARCH_PX {
            for dx in -SEARCH_PX..=SEARCH_PX {
                if let Some(v) = t.ncc(b, [c[0] + dx as f32, c[1] + dy as f32]) {
                    top = Some(top.map_or(v, |t: f32| t.max(v)));
                }
            }
        }
        top
    };
    let mut votes = [PointVote::Untested; RING.len()];
    for (k, [u, v]) in RING.into_iter().enumerate() {
        let p = [mid[0] + s * (u * axis[0] + v * down[0]), mid[1] + s * (u * axis[1] + v * down[1])];
        let Some(moved) = h.apply(p) else { continue };
        if (moved[0] - p[0]).hypot(moved[1] - p[1]) < min_shift {
            continue;
        }
        // one template per hypothesis: shaped by the plane's motion, or not at all
        let (Some(tm), Some(ts)) = (Template::take(a, p, step, &h), Template::take(a, p, step, &still)) else {
            continue;
        };
        let (Some(with_face), Some(stayed)) = (best(&tm, moved), best(&ts, p)) else { continue };
        votes[k] = if with_face >= MATCH_NCC && with_face >= stayed + MARGIN_NCC {
            PointVote::WithFace
        } else if stayed >= MATCH_NCC && stayed >= with_face + MARGIN_NCC {
            PointVote::Still
        } else {
            PointVote::Neither
        };
    }
    Some(votes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    /// Smooth-edged grey blocks (a textured wall or print), `w × h`, seeded.
    fn blocks(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let k = ((x / 12) * 7919 + (y / 12) * 104_729 + seed).wrapping_mul(2_654_435_761);
            let g = 60 + (k >> 24) as u8 / 2;
            Rgb([g, g, g])
        })
    }

    const FACE: [[f32; 2]; 5] = [[280.0, 200.0], [360.0, 200.0], [320.0, 245.0], [290.0, 285.0], [350.0, 285.0]];

    fn shifted(l: &[[f32; 2]; 5], dx: f32, dy: f32) -> [[f32; 2]; 5] {
        l.map(|p| [p[0] + dx, p[1] + dy])
    }

    /// `img` translated by whole pixels, the uncovered part filled from `fill`.
    fn translate(img: &RgbImage, fill: &RgbImage, dx: i32, dy: i32) -> RgbImage {
        RgbImage::from_fn(img.width(), img.height(), |x, y| {
            let (sx, sy) = (x as i32 - dx, y as i32 - dy);
            if sx >= 0 && sy >= 0 && (sx as u32) < img.width() && (sy as u32) < img.height() {
                *img.get_pixel(sx as u32, sy as u32)
            } else {
                *fill.get_pixel(x, y)
            }
        })
    }

    #[test]
    fn a_sheet_moving_with_the_face_is_seen_and_a_still_wall_is_not() {
        let sheet = blocks(640, 480, 1);
        let wall = blocks(640, 480, 2);
        let a = FacePatch::cut(&sheet, &FACE).unwrap();
        // a print: everything moved 9 px right, 4 down, with the face
        let moved = translate(&sheet, &wall, 9, 4);
        let fb = shifted(&FACE, 9.0, 4.0);
        let b = FacePatch::cut(&moved, &fb).unwrap();
        let v = ring_votes(&a, &FACE, &b, &fb).unwrap();
        assert!(v.tested >= 30, "{v:?}");
        assert!(v.with_face as usize >= v.tested as usize * 9 / 10 && v.still == 0, "{v:?}");
        // a live face: the face moved, the ring (the wall) did not; here the face region is
        // pasted moved onto the unmoved image, the ring is untouched
        let mut live = sheet.clone();
        for y in 170..320u32 {
            for x in 250..390u32 {
                live.put_pixel(x + 9, y + 4, *sheet.get_pixel(x, y));
            }
        }
        let b = FacePatch::cut(&live, &fb).unwrap();
        let v = ring_votes(&a, &FACE, &b, &fb).unwrap();
        assert!(v.tested >= 30, "{v:?}");
        assert!(v.still as usize >= v.tested as usize * 9 / 10 && v.with_face == 0, "{v:?}");
    }

    /// The cue in the passive check: a sheet moved with the face is denied (latched, whatever
    /// the nose says), the same frames with the cue off are not, and a face moving in front of a
    /// still wall is never denied by it.
    #[test]
    fn the_passive_check_denies_a_sheet_moving_with_the_face() {
        use crate::liveness::{Followed, Landmarks, Liveness, PassiveCheck};
        let sheet = blocks(640, 480, 5);
        let wall = blocks(640, 480, 6);
        let check = PassiveCheck {
            min_iod_px: 30.0,
            min_change: 0.03,
            threshold: 0.005,
            min_pairs: 2,
            min_ncc: 0.5,
            landmarks: Landmarks::Followed,
            ring_deny: RING_DENY_DEFAULT,
            border_deny: 0,
        };
        let (mut print, mut live) = (Followed::default(), Followed::default());
        for k in 0..4 {
            let (dx, dy) = (6 * k, 2 * k);
            let l = shifted(&FACE, dx as f32, dy as f32);
            print.push(l, FacePatch::cut(&translate(&sheet, &wall, dx, dy), &l));
            let mut moved = wall.clone();
            for y in 170..320u32 {
                for x in 260..380u32 {
                    moved.put_pixel((x as i32 + dx) as u32, (y as i32 + dy) as u32, *sheet.get_pixel(x, y));
                }
            }
            live.push(l, FacePatch::cut(&moved, &l));
        }
        let v = check.judge_appearance(&print, 4);
        assert!(matches!(v, Liveness::Rigid(d) if d.with_face >= 30 && d.cue == crate::liveness::Cue::Ring), "{v:?}");
        assert!(check.rigid_pair(&print, 2).is_some(), "the first pair already");
        let off = PassiveCheck { ring_deny: 0, ..check };
        assert!(matches!(off.judge_appearance(&print, 4), Liveness::Unconfirmed { .. }));
        assert!(matches!(check.judge_appearance(&live, 4), Liveness::Unconfirmed { .. }));
        assert!(check.rigid_pair(&live, 4).is_none());
    }

    #[test]
    fn too_small_a_motion_or_no_texture_decides_nothing() {
        let sheet = blocks(640, 480, 3);
        let a = FacePatch::cut(&sheet, &FACE).unwrap();
        let fb = shifted(&FACE, 2.0, 0.0);
        let b = FacePatch::cut(&translate(&sheet, &sheet, 2, 0), &fb).unwrap();
        assert_eq!(ring_votes(&a, &FACE, &b, &fb).unwrap(), RingVotes::default());
        let flat = RgbImage::from_pixel(640, 480, Rgb([90, 90, 90]));
        let (a, fb) = (FacePatch::cut(&flat, &FACE).unwrap(), shifted(&FACE, 10.0, 0.0));
        let b = FacePatch::cut(&flat, &fb).unwrap();
        assert_eq!(ring_votes(&a, &FACE, &b, &fb).unwrap(), RingVotes::default());
    }
}
