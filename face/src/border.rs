//! The border test, a deny cue of the passive liveness check: a straight edge beside or above
//! the face (a print's or a phone's border) that moves with the face.
//!
//! A photo or a screen held up to the camera has straight edges around the face: the print's
//! cut, the phone's bezel. On its own a straight edge proves nothing (door frames, tiles and
//! shelves are straight too), but a door frame stays where it is when the head moves, while a
//! print's edge moves exactly as the face's plane moves. So in each frame the strongest straight
//! edge is looked for on three sides of the face (left, right, above: never below, where
//! shoulders and collars move with a person), and between two frames each found edge is looked
//! for at three places, as the ring test tests its points ([`crate::ring`]): where it was (a
//! wall, a door frame), where the homography of the face's plane sends it (a sheet), and where
//! the head's motion as a whole sends it (the similarity fitted to the same four points: the
//! outline of a head or of straight hair moves so when a person steps aside). A side votes
//! "with the face" only when the plane's place is far enough from both others across the edge
//! (motion along an edge is invisible; a sheet that only slides gives no vote, and the nose test
//! holds it), and the edge is found clearly there and not at the others: only a sheet follows
//! the plane's tilt.
//!
//! Unlike the ring's scattered points, an edge is tested over its whole length and wherever it
//! lies within its band, so it sees a print with a plain margin and a phone's plain bezel, which
//! give the ring nothing to match. What it cannot see: a print cut to the head's outline, an
//! edge outside the image or outside the bands, an edge with little contrast against the wall
//! behind it, and a still print (nothing moves, nothing is decided).

use crate::align::Similarity;
use crate::liveness::{iod, Homography};
use crate::parallax::FacePatch;

/// Distances from the eye midpoint (IODs) searched for a side edge, across the eye axis: from
/// about the head's outline out to a hand-held print's or phone's edge.
pub const SIDE_BAND: [f32; 2] = [1.15, 2.6];
/// Distances above the eye line (IODs) searched for a top edge: above the crown.
pub const TOP_BAND: [f32; 2] = [1.4, 3.0];
/// How far the test reaches past the landmarks' box, in IODs: `[each side, above, below]`
/// (the bands, the tilt and the search included). [`FacePatch::cut`] cuts at least this much.
pub const REACH_IOD: [f32; 3] = [2.4, 3.25, 0.6];

/// Band step (IODs) and the tilts tried (degrees from the face's axes).
const STEP_IOD: f32 = 0.05;
const TILTS_DEG: [f32; 5] = [-8.0, -4.0, 0.0, 4.0, 8.0];
/// Samples along an edge, over [`LENGTH_IOD`] centred beside (or above) the eyes.
const SAMPLES: usize = 21;
const LENGTH_IOD: f32 = 1.6;
/// Half the distance (pixels) across which an edge's contrast is measured.
const ACROSS_PX: f32 = 1.5;
/// A sample is on the edge when the grey level changes by at least this much across it (either
/// way: a print's margin against a patterned wall is lighter than some of it, darker than the
/// rest).
pub const MIN_STEP: f32 = 14.0;
/// An edge is found when at least this share of its samples inside the image are on it, and at
/// least [`MIN_INSIDE`] of its samples are inside the image.
pub const MIN_COVER: f32 = 0.75;
const MIN_INSIDE: f32 = 0.8;
/// One hypothesis must cover at least this much more of the edge than the other.
pub const MARGIN_COVER: f32 = 0.3;
/// Search across the edge around each hypothesis's place (pixels).
const SEARCH_PX: [f32; 5] = [-1.5, -0.75, 0.0, 0.75, 1.5];
/// A side votes only when its two places are at least this far apart across the edge (pixels,
/// mean over the samples) and this far in IODs.
pub const MIN_SHIFT_PX: f32 = 3.0;
const MIN_SHIFT_IOD: f32 = 0.05;

/// The door's default `liveness.border_deny`: sides whose edge moved with the face in one frame
/// pair that deny the appearance (`facegate pad-eval` measures it against genuine head motion).
pub const BORDER_DENY_DEFAULT: u8 = 2;

/// A straight edge found in one frame: its samples (frame pixels) and the unit normal pointing
/// away from the face.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    points: [[f32; 2]; SAMPLES],
    normal: [f32; 2],
    /// The share of its samples on the edge.
    pub cover: f32,
}

/// The strongest straight edge of each side (left of the image, right, above), where found.
pub type Edges = [Option<Edge>; 3];

/// What the border test saw between two frames, in sides (0 to 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BorderVotes {
    /// Sides whose edge moved with the face's plane.
    pub with_face: u8,
    /// Sides whose edge stayed where it was.
    pub still: u8,
    /// Sides with an edge whose two candidate places were far enough apart to tell.
    pub tested: u8,
}

/// The share of `points` on an edge across `normal` in `p`, shifted by `shift` pixels along the
/// normal; `None` when too few samples lie inside the patch.
fn cover(p: &FacePatch, points: &[[f32; 2]], normal: [f32; 2], shift: f32) -> Option<f32> {
    let (mut inside, mut on) = (0usize, 0usize);
    for q in points {
        let c = [q[0] + shift * normal[0], q[1] + shift * normal[1]];
        let out = p.at(c[0] + ACROSS_PX * normal[0], c[1] + ACROSS_PX * normal[1]);
        let inn = p.at(c[0] - ACROSS_PX * normal[0], c[1] - ACROSS_PX * normal[1]);
        let (Some(o), Some(i)) = (out, inn) else { continue };
        inside += 1;
        if (o - i).abs() >= MIN_STEP {
            on += 1;
        }
    }
    ((inside as f32) >= MIN_INSIDE * points.len() as f32).then(|| on as f32 / inside as f32)
}

/// The strongest straight edge on each side of the face with landmarks `l` in `p` (see
/// [`Edges`]); a side has none when no line in its band reaches [`MIN_COVER`].
pub fn find_edges(p: &FacePatch, l: &[[f32; 2]; 5]) -> Edges {
    let s = iod(l);
    if !(s.is_finite() && s >= 1.0) {
        return [None, None, None];
    }
    let mid = [(l[0][0] + l[1][0]) / 2.0, (l[0][1] + l[1][1]) / 2.0];
    let axis = [(l[1][0] - l[0][0]) / s, (l[1][1] - l[0][1]) / s];
    let down = [-axis[1], axis[0]];
    let at = |u: f32, v: f32| [mid[0] + s * (u * axis[0] + v * down[0]), mid[1] + s * (u * axis[1] + v * down[1])];
    let mut out: Edges = [None, None, None];
    // each side: (the outward direction in face coordinates, the band)
    let sides: [([f32; 2], [f32; 2]); 3] = [([-1.0, 0.0], SIDE_BAND), ([1.0, 0.0], SIDE_BAND), ([0.0, -1.0], TOP_BAND)];
    for (k, (dir, band)) in sides.iter().enumerate() {
        let steps = ((band[1] - band[0]) / STEP_IOD).round() as usize;
        let mut best: Option<Edge> = None;
        for i in 0..=steps {
            let d = band[0] + i as f32 * STEP_IOD;
            for tilt in TILTS_DEG {
                let (sn, cs) = tilt.to_radians().sin_cos();
                // the normal (face coordinates) tilted; the edge runs perpendicular to it
                let n = [dir[0] * cs - dir[1] * sn, dir[0] * sn + dir[1] * cs];
                let t = [-n[1], n[0]];
                let centre = [dir[0] * d, dir[1] * d];
                let points: [[f32; 2]; SAMPLES] = std::array::from_fn(|j| {
                    let a = (j as f32 / (SAMPLES - 1) as f32 - 0.5) * LENGTH_IOD;
                    at(centre[0] + a * t[0], centre[1] + a * t[1])
                });
                let normal = [n[0] * axis[0] + n[1] * down[0], n[0] * axis[1] + n[1] * down[1]];
                let Some(c) = cover(p, &points, normal, 0.0) else { continue };
                if c >= MIN_COVER && best.as_ref().is_none_or(|b| c > b.cover) {
                    best = Some(Edge { points, normal, cover: c });
                }
            }
        }
        out[k] = best;
    }
    out
}

/// The least-squares similarity (rotation, scale, translation) taking `from` to `to`, the one
/// alignment uses ([`Similarity::estimate`]), as a homography: how the head moved as a whole.
/// `None` for coincident points.
fn similarity(from: &[[f32; 2]; 4], to: &[[f32; 2]; 4]) -> Option<Homography> {
    let Similarity { a, b, tx, ty } = Similarity::estimate(from, to)?;
    Some(Homography([a, -b, tx, b, a, ty, 0.0, 0.0, 1.0].map(f64::from)))
}

/// `points` moved by `h`, with the mean distance they moved across `normal`, and the moved
/// line's unit normal (on the side `normal` points to). `None` at infinity or for a collapsed
/// line.
fn carry(
    h: &Homography,
    points: &[[f32; 2]; SAMPLES],
    normal: [f32; 2],
) -> Option<([[f32; 2]; SAMPLES], f32, [f32; 2])> {
    let mut moved = [[0.0f32; 2]; SAMPLES];
    let mut across = 0.0f32;
    for (m, p) in moved.iter_mut().zip(points) {
        *m = h.apply(*p)?;
        across += ((m[0] - p[0]) * normal[0] + (m[1] - p[1]) * normal[1]).abs();
    }
    let (first, last) = (moved[0], moved[SAMPLES - 1]);
    let len = (last[0] - first[0]).hypot(last[1] - first[1]);
    // (NaN too)
    if len.is_nan() || len <= 1.0 {
        return None;
    }
    let mut n = [-(last[1] - first[1]) / len, (last[0] - first[0]) / len];
    if n[0] * normal[0] + n[1] * normal[1] < 0.0 {
        n = [-n[0], -n[1]];
    }
    Some((moved, across / SAMPLES as f32, n))
}

/// The border test between frame `a` (whose edges `ea` were found by [`find_edges`], landmarks
/// `la`) and frame `b`, where `la`'s points were followed to `fb` (see
/// [`crate::parallax::follow`]). Each edge is looked for at three places in `b`: where it was
/// (a wall, a door frame), where the homography of the face's plane (eyes and mouth corners)
/// sends it (a print's or a screen's edge), and where the head's motion as a whole (the
/// similarity fitted to the same four points) sends it (the outline of a head or its hair, which
/// moves with a person who steps sideways). An edge votes "with the face" only when the plane's
/// place is far enough from both others and the edge is clearly there and not at them: only a
/// sheet follows the plane's tilt. `None` when the homography or the similarity does not exist
/// or the face is degenerate.
pub fn border_votes(ea: &Edges, la: &[[f32; 2]; 5], b: &FacePatch, fb: &[[f32; 2]; 5]) -> Option<BorderVotes> {
    const PLANE: [usize; 4] = [0, 1, 3, 4];
    let (from, to) = (PLANE.map(|i| la[i]), PLANE.map(|i| fb[i]));
    let h = Homography::fit4(&from, &to)?;
    let head = similarity(&from, &to)?;
    let s = iod(la);
    if !(s.is_finite() && s >= 1.0) {
        return None;
    }
    let min_shift = MIN_SHIFT_PX.max(MIN_SHIFT_IOD * s);
    let best = |points: &[[f32; 2]], normal: [f32; 2]| -> Option<f32> {
        SEARCH_PX.iter().filter_map(|&t| cover(b, points, normal, t)).reduce(f32::max)
    };
    let mut votes = BorderVotes::default();
    for e in ea.iter().flatten() {
        let (Some((plane, off_wall, n)), Some((whole, _, nw))) =
            (carry(&h, &e.points, e.normal), carry(&head, &e.points, e.normal))
        else {
            continue;
        };
        // how far the plane's place is from the head's, across the edge
        let off_head =
            plane.iter().zip(&whole).map(|(p, q)| ((p[0] - q[0]) * n[0] + (p[1] - q[1]) * n[1]).abs()).sum::<f32>()
                / SAMPLES as f32;
        if off_wall < min_shift || off_head < min_shift {
            continue;
        }
        let (Some(with_face), Some(stayed), Some(as_head)) =
            (best(&plane, n), best(&e.points, e.normal), best(&whole, nw))
        else {
            continue;
        };
        votes.tested += 1;
        if with_face >= MIN_COVER && with_face >= stayed.max(as_head) + MARGIN_COVER {
            votes.with_face += 1;
        } else if stayed >= MIN_COVER && stayed >= with_face + MARGIN_COVER {
            votes.still += 1;
        }
    }
    Some(votes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    const FACE: [[f32; 2]; 5] = [[290.0, 220.0], [350.0, 220.0], [320.0, 250.0], [298.0, 280.0], [342.0, 280.0]];
    /// The print: top-left corner, size (it reaches 2 IODs, 120 px, beside the eyes and 2 above).
    const SHEET: (f32, f32, f32, f32) = (200.0, 100.0, 240.0, 260.0);

    /// A wall of smooth grey noise (no long straight edges), seeded.
    fn wall(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let k = ((x / 5) * 7919 + (y / 5) * 104_729 + seed).wrapping_mul(2_654_435_761);
            let g = 100 + (k >> 27) as u8;
            Rgb([g, g, g])
        })
    }

    /// A grey value from a mixed hash of a 9-px cell: face texture with no two neighbourhoods
    /// alike.
    fn texture(u: i32, v: i32) -> u8 {
        let mut k = ((u / 9) as u32).wrapping_mul(0x9e37_79b9) ^ ((v / 9) as u32).wrapping_mul(0x85eb_ca6b);
        k ^= k >> 15;
        k = k.wrapping_mul(0x2c1b_3c6d);
        k ^= k >> 12;
        40 + (k >> 24) as u8 / 2
    }

    /// The print [`SHEET`] (a plain light margin around a textured face, whose texture is moved
    /// `face` pixels within it: a live head in a still frame) seen through `t` (sheet → frame),
    /// over `bg`.
    fn held(bg: &RgbImage, t: &Homography, face: (f32, f32)) -> RgbImage {
        held_with_margin(bg, t, face, 200)
    }

    /// [`held`] with a margin of this grey level.
    fn held_with_margin(bg: &RgbImage, t: &Homography, face: (f32, f32), margin: u8) -> RgbImage {
        let (x0, y0, w, h) = SHEET;
        let corners = [[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]];
        let back = Homography::fit4(&corners.map(|c| t.apply(c).unwrap()), &corners).unwrap();
        RgbImage::from_fn(bg.width(), bg.height(), |x, y| {
            let [u, v] = back.apply([x as f32 + 0.5, y as f32 + 0.5]).unwrap();
            if !(u >= x0 && u < x0 + w && v >= y0 && v < y0 + h) {
                return *bg.get_pixel(x, y);
            }
            // the face's texture (130 × 140 px, below the eyes' line by 50 px at rest)
            let (fu, fv) = (u - x0 - 55.0 - face.0, v - y0 - 70.0 - face.1);
            let g = if (0.0..130.0).contains(&fu) && (0.0..140.0).contains(&fv) {
                texture(fu as i32, fv as i32)
            } else {
                margin
            };
            Rgb([g, g, g])
        })
    }

    /// The sheet turned about a vertical axis through (320, 220) (perspective `g` per pixel: its
    /// left side nearer the camera for `g` > 0) and moved `(dx, dy)`.
    fn tilt(g: f32, dx: f32, dy: f32) -> Homography {
        let f = |[x, y]: [f32; 2]| {
            let w = 1.0 + g * (x - 320.0);
            [(x - 320.0) / w + 320.0 + dx, (y - 220.0) / w + 220.0 + dy]
        };
        let from = [[100.0, 50.0], [540.0, 50.0], [540.0, 420.0], [100.0, 420.0]];
        Homography::fit4(&from, &from.map(f)).unwrap()
    }

    fn carried(l: &[[f32; 2]; 5], t: &Homography) -> [[f32; 2]; 5] {
        l.map(|p| t.apply(p).unwrap())
    }

    const REST: Homography = Homography([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);

    #[test]
    fn a_print_edge_following_the_plane_is_seen_and_a_still_frame_is_not() {
        let bg = wall(640, 480, 1);
        let a_img = held(&bg, &REST, (0.0, 0.0));
        let ea = find_edges(&FacePatch::cut(&a_img, &FACE).unwrap(), &FACE);
        assert!(ea.iter().all(Option::is_some), "all three sides found: {ea:?}");
        // turned (its sides 7 px nearer and farther) and moved 8 px left, 5 down: its side
        // edges follow the face's plane, which no rigid motion of a head does; the top edge
        // moves no differently from a head moving as a whole, so it is not tested
        let t = tilt(0.0005, -8.0, 5.0);
        let fb = carried(&FACE, &t);
        let v = border_votes(&ea, &FACE, &FacePatch::cut(&held(&bg, &t, (0.0, 0.0)), &fb).unwrap(), &fb).unwrap();
        assert_eq!(v, BorderVotes { with_face: 2, still: 0, tested: 2 });
        // a live face turning in front of a still frame (a door frame around the head): the
        // edges stay where they were
        let v = border_votes(&ea, &FACE, &FacePatch::cut(&a_img, &fb).unwrap(), &fb).unwrap();
        assert_eq!(v, BorderVotes { with_face: 0, still: 2, tested: 2 });
        // an edge found where the head's motion as a whole puts it as well as where the plane
        // does (a second, darker sheet, moved only as a head moves, laid over the first: its
        // left edge lies inside the first one's, so both left edges show; its right edge covers
        // the first one's): the plane's place is not clearly better, so no vote (without the
        // head's place among the rivals, the left edge would vote with the face)
        let head = similarity(&[0, 1, 3, 4].map(|i| FACE[i]), &[0, 1, 3, 4].map(|i| fb[i])).unwrap();
        let both = held_with_margin(&held(&bg, &t, (0.0, 0.0)), &head, (0.0, 0.0), 150);
        let v = border_votes(&ea, &FACE, &FacePatch::cut(&both, &fb).unwrap(), &fb).unwrap();
        assert_eq!(v, BorderVotes { with_face: 0, still: 0, tested: 2 });
    }

    /// The cue in the passive check: a plain-margined print turned and moved with the face is
    /// denied by its border (the ring, off here, has nothing to match on a plain margin); a face
    /// moving sideways inside a still frame is not.
    #[test]
    fn the_passive_check_denies_a_print_whose_border_moves_with_the_face() {
        use crate::liveness::{Cue, Followed, Landmarks, Liveness, PassiveCheck};
        let bg = wall(640, 480, 4);
        let check = PassiveCheck {
            min_iod_px: 30.0,
            min_change: 0.03,
            threshold: 0.005,
            min_pairs: 2,
            min_ncc: 0.5,
            landmarks: Landmarks::Followed,
            ring_deny: 0,
            border_deny: BORDER_DENY_DEFAULT,
        };
        let (mut print, mut live) = (Followed::default(), Followed::default());
        for k in 0..4 {
            let t = tilt(0.0003 * k as f32, -6.0 * k as f32, 2.0 * k as f32);
            let l = carried(&FACE, &t);
            print.push(l, FacePatch::cut(&held(&bg, &t, (0.0, 0.0)), &l));
            let l = carried(&FACE, &tilt(0.0, -6.0 * k as f32, 2.0 * k as f32));
            live.push(l, FacePatch::cut(&held(&bg, &REST, (-6.0 * k as f32, 2.0 * k as f32)), &l));
        }
        assert!(print.pair(0, 1).is_some() && live.pair(0, 1).is_some(), "the faces are followed");
        let v = check.judge_appearance(&print, 4);
        assert!(matches!(v, Liveness::Rigid(d) if d.cue == Cue::Border && d.with_face >= 2), "{v:?}");
        let off = PassiveCheck { border_deny: 0, ..check };
        assert!(!matches!(off.judge_appearance(&print, 4), Liveness::Rigid(_)));
        assert!(!matches!(check.judge_appearance(&live, 4), Liveness::Rigid(_)));
        // (moving sideways, as here, the face's plane and the head move alike: not tested)
        assert!((1..4).filter_map(|j| live.pair(0, j)).all(|m| m.border == BorderVotes::default()));
    }

    #[test]
    fn no_edge_too_small_a_motion_or_a_rigid_one_decides_nothing() {
        let bg = wall(640, 480, 2);
        // a plain wall: no straight edge anywhere
        assert_eq!(find_edges(&FacePatch::cut(&bg, &FACE).unwrap(), &FACE), [None, None, None]);
        let ea = find_edges(&FacePatch::cut(&held(&bg, &REST, (0.0, 0.0)), &FACE).unwrap(), &FACE);
        let votes = |t: &Homography| {
            let fb = carried(&FACE, t);
            border_votes(&ea, &FACE, &FacePatch::cut(&held(&bg, t, (0.0, 0.0)), &fb).unwrap(), &fb).unwrap()
        };
        // turned too little to tell the plane from the head
        assert_eq!(votes(&tilt(0.0001, -8.0, 5.0)).tested, 0);
        // moved sideways and down, untilted: as a head (and its hair's outline) moves when a
        // person steps aside, so not evidence of a sheet
        assert_eq!(votes(&tilt(0.0, 14.0, 10.0)).tested, 0);
    }
}
