//! Passive 3-D test for presentation attacks: is the face in front of the camera flat?
//!
//! A printed photo or a screen is a plane. Between two views of a plane, the image positions of
//! its points are related by a homography. The eyes and mouth corners of a face are nearly
//! coplanar; the nose tip stands about half an eye distance in front of them. So: fit the
//! homography that takes the four eye and mouth landmarks of one frame to those of another, and
//! see where it sends the nose. On a photo the nose lands where the homography predicts (up to
//! landmark noise), however the photo is tilted or moved; on a real head that turned between the
//! frames, the nose is off by a clear fraction of the inter-ocular distance (IOD).
//!
//! [`nose_residual`] is that measurement for one pair of frames; [`PassiveCheck`] decides over
//! the frames of one appearance, and only with enough evidence: a face too small for the
//! landmarks to be precise, or frames too alike, leave the appearance unconfirmed. Beside it,
//! two deny cues ([`Liveness::Rigid`]): the image around the face ([`crate::ring`]) or a straight
//! edge beside or above it ([`crate::border`]) moving with the face's plane denies the appearance
//! whatever the nose says. The threshold
//! comes from measured landmark noise (`facegate pad-eval`), not from this module.

use crate::border::{border_votes, find_edges, BorderVotes, Edges};
use crate::parallax::{follow, FacePatch};
use crate::ring::{ring_votes, RingVotes};

/// Landmark indices (YuNet's order): right eye, left eye, nose tip, right and left mouth corner.
const PLANE: [usize; 4] = [0, 1, 3, 4];
const NOSE: usize = 2;

/// A 3×3 homography, row-major, `h[8] = 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography(pub [f64; 9]);

impl Homography {
    /// The homography taking the four points `from` exactly to `to` (direct linear transform on
    /// coordinates normalised around their centroid); `None` when three of them are collinear.
    pub fn fit4(from: &[[f32; 2]; 4], to: &[[f32; 2]; 4]) -> Option<Self> {
        let (nf, tf) = normaliser(from)?;
        let (nt, tt) = normaliser(to)?;
        // 8 equations, unknowns h0..h7 (h8 = 1)
        let mut a = [[0.0f64; 9]; 8];
        for i in 0..4 {
            let [x, y] = nf[i];
            let [u, v] = nt[i];
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        let h = solve8(a)?;
        let hn = [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], 1.0];
        // undo the normalisations: H = Tt⁻¹ · Hn · Tf
        let m = mul(&mul(&inverse_similarity(&tt), &hn), &tf);
        (m[8].abs() > 1e-12).then(|| Self(m.map(|v| v / m[8])))
    }

    /// Where the homography sends `p`; `None` at infinity.
    pub fn apply(&self, [x, y]: [f32; 2]) -> Option<[f32; 2]> {
        let h = &self.0;
        let (x, y) = (f64::from(x), f64::from(y));
        let w = h[6] * x + h[7] * y + h[8];
        (w.abs() > 1e-12)
            .then(|| [((h[0] * x + h[1] * y + h[2]) / w) as f32, ((h[3] * x + h[4] * y + h[5]) / w) as f32])
    }
}

/// Points translated to their centroid and scaled to mean distance √2; the similarity used.
fn normaliser(p: &[[f32; 2]; 4]) -> Option<([[f64; 2]; 4], [f64; 9])> {
    let c = p.iter().fold([0.0f64; 2], |a, q| [a[0] + f64::from(q[0]) / 4.0, a[1] + f64::from(q[1]) / 4.0]);
    let mean = p.iter().map(|q| (f64::from(q[0]) - c[0]).hypot(f64::from(q[1]) - c[1])).sum::<f64>() / 4.0;
    if mean < 1e-9 {
        return None;
    }
    let s = std::f64::consts::SQRT_2 / mean;
    let n = p.map(|q| [(f64::from(q[0]) - c[0]) * s, (f64::from(q[1]) - c[1]) * s]);
    Some((n, [s, 0.0, -s * c[0], 0.0, s, -s * c[1], 0.0, 0.0, 1.0]))
}

fn inverse_similarity(t: &[f64; 9]) -> [f64; 9] {
    let s = t[0];
    [1.0 / s, 0.0, -t[2] / s, 0.0, 1.0 / s, -t[5] / s, 0.0, 0.0, 1.0]
}

fn mul(a: &[f64; 9], b: &[f64; 9]) -> [f64; 9] {
    std::array::from_fn(|k| {
        let (r, c) = (k / 3, k % 3);
        (0..3).map(|i| a[r * 3 + i] * b[i * 3 + c]).sum()
    })
}

/// Gaussian elimination with partial pivoting on an 8×9 augmented matrix.
fn solve8(mut a: [[f64; 9]; 8]) -> Option<[f64; 8]> {
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-10 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (row, r) in a.iter_mut().enumerate() {
            if row != col {
                let f = r[col] / pivot_row[col];
                for (x, p) in r.iter_mut().zip(pivot_row.iter()).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    Some(std::array::from_fn(|i| a[i][8] / a[i][i]))
}

/// Inter-ocular distance of a face's landmarks, in pixels.
pub fn iod(l: &[[f32; 2]; 5]) -> f32 {
    (l[0][0] - l[1][0]).hypot(l[0][1] - l[1][1])
}

/// How far the nose tip of view `b` is from where a plane through the eyes and mouth corners of
/// view `a` would put it, in inter-ocular distances of `b`. About the landmark noise for a photo
/// or a screen; larger for a real head that turned between the views. `None` when the four plane
/// landmarks are degenerate.
pub fn nose_residual(a: &[[f32; 2]; 5], b: &[[f32; 2]; 5]) -> Option<f32> {
    let pick = |l: &[[f32; 2]; 5]| PLANE.map(|i| l[i]);
    let h = Homography::fit4(&pick(a), &pick(b))?;
    let predicted = h.apply(a[NOSE])?;
    let d = (predicted[0] - b[NOSE][0]).hypot(predicted[1] - b[NOSE][1]);
    Some(d / iod(b).max(1e-3))
}

/// What the passive check says about one appearance so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Liveness {
    /// Enough frame pairs show the nose off the plane: a 3-D face.
    Live {
        /// Mean residual of the qualifying pairs (IODs).
        residual: f32,
        /// Qualifying pairs.
        pairs: usize,
    },
    /// Not enough evidence yet (faces too small, too few frames, or frames too alike); keep
    /// collecting frames, and deny when the appearance times out.
    Unconfirmed {
        /// Mean residual of the qualifying pairs so far (0 when none).
        residual: f32,
        /// Qualifying pairs so far.
        pairs: usize,
    },
    /// A deny cue: between two frames, the image around the face ([`crate::ring`]) or a
    /// straight edge beside or above it ([`crate::border`]) moved with the face's plane: a
    /// hand-held photo or screen. It latches: the appearance is denied whatever the nose
    /// residual says.
    Rigid(Deny),
}

/// Which deny cue fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cue {
    /// The ring of points around the face ([`crate::ring`]).
    Ring,
    /// The straight edges beside and above the face ([`crate::border`]).
    Border,
}

/// A deny cue that fired between two frames, with that pair's votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deny {
    /// Which cue.
    pub cue: Cue,
    /// Ring points, or sides, that moved with the face.
    pub with_face: u8,
    /// Those that stayed still.
    pub still: u8,
    /// Those that could be tested.
    pub tested: u8,
    /// The cue's setting it reached ([`PassiveCheck::ring_deny`] or
    /// [`PassiveCheck::border_deny`]).
    pub at: u8,
}

impl std::fmt::Display for Deny {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { cue, with_face, still, tested, at } = *self;
        match cue {
            Cue::Ring => write!(
                f,
                "the image around the face moved with it (a hand-held photo or screen): {with_face} of {tested} ring points moved with the face, {still} stayed still (denies at {at})"
            ),
            Cue::Border => write!(
                f,
                "a straight edge beside or above the face moved with it (a photo's or a screen's border): {with_face} of {tested} border edges moved with the face, {still} stayed still (denies at {at})"
            ),
        }
    }
}

/// The passive 3-D test over the frames of one appearance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassiveCheck {
    /// Faces with a smaller IOD (pixels) are not used: their landmarks are too coarse.
    pub min_iod_px: f32,
    /// Frame pairs whose landmarks barely moved relative to each other are not used: the
    /// largest landmark displacement after aligning the eye midpoints, in IODs.
    pub min_change: f32,
    /// Mean nose residual (IODs) at or above which the face is live.
    pub threshold: f32,
    /// Qualifying frame pairs needed for a verdict.
    pub min_pairs: usize,
    /// With followed landmarks ([`Self::judge_followed`]): a pair counts only when every point
    /// was found again at least this well (normalised cross-correlation, both directions).
    pub min_ncc: f32,
    /// Which landmarks [`Self::judge_appearance`] measures.
    pub landmarks: Landmarks,
    /// With followed landmarks: the appearance is denied ([`Liveness::Rigid`]) as soon as one
    /// frame pair (followed at least `min_ncc` well) has this many ring points moving with the
    /// face ([`crate::ring`]); 0 turns the cue off.
    pub ring_deny: u8,
    /// With followed landmarks: the appearance is denied ([`Liveness::Rigid`]) as soon as one
    /// frame pair (followed at least `min_ncc` well) has this many of the three border edges
    /// moving with the face ([`crate::border`]); 0 turns the cue off.
    pub border_deny: u8,
}

/// Which landmarks the passive test measures the nose residual on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Landmarks {
    /// Each frame's landmarks followed into the other frames by texture
    /// ([`crate::parallax::follow`]): far less noise (hundredths of an eye distance on a print);
    /// a pair counts only when its points were followed well.
    #[default]
    Followed,
    /// Each frame's own detector landmarks: noisy by a few pixels, as large as the parallax of
    /// a 10–15° head turn.
    Detector,
}

impl Landmarks {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Followed => "followed",
            Self::Detector => "detector",
        }
    }
}

/// Frames of an appearance the check looks at (the newest): bounds its cost (the leave-one-out
/// rule below is cubic in the frames).
pub const MAX_FRAMES: usize = 16;

/// The most kept frames a new frame is measured against ([`Followed::push`]): with more kept
/// (with their image), this many spread evenly from the oldest to the newest. Following is most
/// of the door's liveness cost per frame, so this bounds it at 9 pairs instead of 15. The first
/// 10 frames of an appearance are measured against every earlier one, as before; from the 11th
/// on, fewer pairs are measured, so a deny cue has fewer pairs to fire on and the nose test's
/// median is over fewer pairs. `facegate pad-eval`'s passive appearances have at most 10 frames
/// (identical figures by construction); its challenge appearances, up to 13, gave identical
/// figures too (measured).
pub const MAX_PARTNERS: usize = 9;

/// Which of `n` kept frames (oldest first) a new frame is measured against: all of them up to
/// [`MAX_PARTNERS`], else that many spread evenly, the oldest and the newest included.
pub fn partners(n: usize) -> Vec<usize> {
    if n <= MAX_PARTNERS {
        return (0..n).collect();
    }
    let last = MAX_PARTNERS - 1;
    (0..MAX_PARTNERS).map(|k| (k * (n - 1) + last / 2) / last).collect()
}

impl PassiveCheck {
    /// How different two views are: the largest displacement of an eye or mouth-corner landmark
    /// relative to the eye midpoint, in IODs (scale-normalised). The nose is left out, so noise
    /// on the nose alone never makes a pair count. A photo moved without tilting gives ~0; a
    /// tilt or a head turn gives more.
    pub fn change(a: &[[f32; 2]; 5], b: &[[f32; 2]; 5]) -> f32 {
        let norm = |l: &[[f32; 2]; 5]| {
            let m = [(l[0][0] + l[1][0]) / 2.0, (l[0][1] + l[1][1]) / 2.0];
            let s = iod(l).max(1e-3);
            PLANE.map(|i| [(l[i][0] - m[0]) / s, (l[i][1] - m[1]) / s])
        };
        let (a, b) = (norm(a), norm(b));
        a.iter().zip(&b).map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1])).fold(0.0, f32::max)
    }

    /// The verdict over `frames` (each face's five landmarks, in frame order; the newest
    /// [`MAX_FRAMES`] with a large enough face are used). Every pair of frames that changed
    /// enough is measured (the symmetric nose residual); the appearance is live when the
    /// **median** over at least `min_pairs` pairs reaches the threshold **and still does with
    /// any one frame left out**, so that one frame with a misplaced landmark cannot make a photo
    /// live.
    pub fn judge(&self, frames: &[[[f32; 2]; 5]]) -> Liveness {
        self.judge_scored(frames).0
    }

    fn judge_scored(&self, frames: &[[[f32; 2]; 5]]) -> (Liveness, Option<f32>) {
        let usable: Vec<&[[f32; 2]; 5]> = frames.iter().filter(|l| iod(l) >= self.min_iod_px).collect();
        let usable = &usable[usable.len().saturating_sub(MAX_FRAMES)..];
        let mut pairs: Vec<(usize, usize, f32)> = Vec::new();
        for (i, a) in usable.iter().enumerate() {
            for (j, b) in usable.iter().enumerate().skip(i + 1) {
                if Self::change(a, b) >= self.min_change {
                    // symmetric: the plane of either view predicting the other
                    if let (Some(x), Some(y)) = (nose_residual(a, b), nose_residual(b, a)) {
                        pairs.push((i, j, (x + y) / 2.0));
                    }
                }
            }
        }
        self.decide(usable.len(), &pairs)
    }

    /// The verdict over the first `upto` frames of `f` (the newest [`MAX_FRAMES`] of them with a
    /// large enough face), from the landmarks **followed by texture** between each pair
    /// ([`crate::parallax::follow`]) instead of the detector's landmarks of each frame: the same
    /// rule as [`Self::judge`] (median over the pairs that changed enough, and with any one frame
    /// left out). Pairs whose points could not be followed do not count.
    pub fn judge_followed(&self, f: &Followed, upto: usize) -> Liveness {
        self.judge_followed_scored(f, upto).0
    }

    /// The verdict over the first `upto` frames of `f` on the landmarks [`Self::landmarks`]
    /// names: [`Self::judge_followed`] or [`Self::judge`] on the detector's landmarks.
    pub fn judge_appearance(&self, f: &Followed, upto: usize) -> Liveness {
        self.appearance_scored(f, upto).0
    }

    fn appearance_scored(&self, f: &Followed, upto: usize) -> (Liveness, Option<f32>) {
        match self.landmarks {
            Landmarks::Followed => self.judge_followed_scored(f, upto),
            Landmarks::Detector => self.judge_scored(&f.landmarks[..upto.min(f.len())]),
        }
    }

    /// What the door does with the frames of `f` judged from the `first`-th on, with
    /// [`Self::judge_appearance`]: the largest threshold at which some prefix is Live before any
    /// prefix is [`Liveness::Rigid`] (`None`: never enough evidence, or denied first).
    pub fn door_score_appearance(&self, f: &Followed, first: usize) -> Option<f32> {
        let mut best: Option<f32> = None;
        for k in first.max(1)..=f.len() {
            let (verdict, score) = self.appearance_scored(f, k);
            if matches!(verdict, Liveness::Rigid(_)) {
                break;
            }
            if let Some(sc) = score {
                best = Some(best.map_or(sc, |b: f32| b.max(sc)));
            }
        }
        best
    }

    /// The first of the first `upto` frames of `f` whose pair with an earlier frame fires a deny
    /// cue ([`Liveness::Rigid`]: the ring or a border edge moving with the face), with that
    /// pair's votes (the ring's when both fire); `None` when none does or both cues are off.
    pub fn rigid_pair(&self, f: &Followed, upto: usize) -> Option<Deny> {
        if (self.ring_deny == 0 && self.border_deny == 0) || self.landmarks != Landmarks::Followed {
            return None;
        }
        let upto = upto.min(f.len());
        let big = |k: usize| iod(&f.landmarks[k]) >= self.min_iod_px;
        let fires = |m: &PairMeasure| -> Option<Deny> {
            let (r, b) = (m.ring, m.border);
            let ring = (self.ring_deny > 0 && r.with_face >= self.ring_deny).then_some(Deny {
                cue: Cue::Ring,
                with_face: r.with_face,
                still: r.still,
                tested: r.tested,
                at: self.ring_deny,
            });
            ring.or((self.border_deny > 0 && b.with_face >= self.border_deny).then_some(Deny {
                cue: Cue::Border,
                with_face: b.with_face,
                still: b.still,
                tested: b.tested,
                at: self.border_deny,
            }))
        };
        (0..upto).filter(|&j| big(j)).find_map(|j| {
            (0..j)
                .filter(|&i| big(i))
                .filter_map(|i| f.pairs[j][i])
                .filter(|m| m.ncc >= self.min_ncc)
                .find_map(|m| fires(&m))
        })
    }

    fn judge_followed_scored(&self, f: &Followed, upto: usize) -> (Liveness, Option<f32>) {
        let upto = upto.min(f.len());
        if let Some(deny) = self.rigid_pair(f, upto) {
            return (Liveness::Rigid(deny), None);
        }
        let usable: Vec<usize> = (0..upto).filter(|&k| iod(&f.landmarks[k]) >= self.min_iod_px).collect();
        let usable = &usable[usable.len().saturating_sub(MAX_FRAMES)..];
        let mut pairs: Vec<(usize, usize, f32)> = Vec::new();
        for (i, &a) in usable.iter().enumerate() {
            for (j, &b) in usable.iter().enumerate().skip(i + 1) {
                if let Some(m) = f.pairs[b][a] {
                    if m.change >= self.min_change && m.ncc >= self.min_ncc {
                        pairs.push((i, j, m.residual));
                    }
                }
            }
        }
        self.decide(usable.len(), &pairs)
    }

    /// The verdict from the measured pairs `(i, j, residual)` of `n` usable frames.
    fn decide(&self, n_frames: usize, pairs: &[(usize, usize, f32)]) -> (Liveness, Option<f32>) {
        let median_without = |skip: Option<usize>| -> (f32, usize) {
            let mut r: Vec<f32> =
                pairs.iter().filter(|(i, j, _)| Some(*i) != skip && Some(*j) != skip).map(|p| p.2).collect();
            r.sort_by(f32::total_cmp);
            let m = match r.len() {
                0 => 0.0,
                n if n % 2 == 1 => r[n / 2],
                n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
            };
            (m, r.len())
        };
        let (residual, n) = median_without(None);
        // the largest threshold at which this is live: the full median and every leave-one-out
        // median, each over enough pairs
        let score = (n >= self.min_pairs)
            .then(|| {
                (0..n_frames)
                    .map(|k| median_without(Some(k)))
                    .try_fold(residual, |lo, (m, c)| (c >= self.min_pairs).then_some(lo.min(m)))
            })
            .flatten();
        let verdict = match score {
            Some(sc) if sc >= self.threshold => Liveness::Live { residual, pairs: n },
            _ => Liveness::Unconfirmed { residual, pairs: n },
        };
        (verdict, score)
    }

    /// What the door does with an appearance: it judges again on every frame from the
    /// `first`-th on (the frames of its decision streak), and grants on the first Live verdict.
    /// True when some prefix of `frames` at least `first` long is Live.
    pub fn live_at_some_frame(&self, frames: &[[[f32; 2]; 5]], first: usize) -> bool {
        self.door_score(frames, first).is_some_and(|s| s >= self.threshold)
    }

    /// The largest threshold at which [`Self::live_at_some_frame`] would be true (`None`: never
    /// enough evidence): what `facegate pad-eval` tunes the threshold on.
    pub fn door_score(&self, frames: &[[[f32; 2]; 5]], first: usize) -> Option<f32> {
        (first.max(1)..=frames.len()).filter_map(|k| self.score(&frames[..k])).reduce(f32::max)
    }

    /// The largest threshold at which [`Self::judge`] would say Live (`None`: too few pairs).
    pub fn score(&self, frames: &[[[f32; 2]; 5]]) -> Option<f32> {
        self.judge_scored(frames).1
    }
}

/// One pair of frames measured by [`Followed`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairMeasure {
    /// How different the two views are ([`PassiveCheck::change`] of the followed points), mean
    /// of both directions.
    pub change: f32,
    /// Nose residual of the followed points (IODs), mean of both directions.
    pub residual: f32,
    /// The weakest match of the ten followed points (normalised cross-correlation).
    pub ncc: f32,
    /// The ring test from the earlier frame to the later ([`crate::ring`]).
    pub ring: RingVotes,
    /// The border test from the earlier frame to the later ([`crate::border`]).
    pub border: BorderVotes,
}

/// The frames of one appearance for the passive test: their landmarks, and for each pair the
/// landmarks of one followed into the other by texture ([`crate::parallax::follow`], both
/// ways). Each frame is measured against the kept ones once, when it is pushed (against at most
/// [`MAX_PARTNERS`] of them, see [`partners`]); the newest [`MAX_FRAMES`] are kept.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    landmarks: Vec<[[f32; 2]; 5]>,
    patches: Vec<Option<std::sync::Arc<FacePatch>>>,
    /// Each frame's straight edges around the face ([`crate::border::find_edges`]), found once.
    edges: Vec<Option<std::sync::Arc<Edges>>>,
    /// `pairs[j][i]` for `i < j`.
    pairs: Vec<Vec<Option<PairMeasure>>>,
    /// `tried[j][i]`: whether the pair was measured at all ([`partners`]).
    tried: Vec<Vec<bool>>,
}

impl Followed {
    /// Adds a frame (its landmarks and the grey patch around them; `None` when there is no
    /// image, so no pair with it counts), measuring it against the kept frames with an image
    /// that [`partners`] picks, on this thread.
    pub fn push(&mut self, landmarks: [[f32; 2]; 5], patch: Option<FacePatch>) {
        self.push_on(landmarks, patch, 1);
    }

    /// [`Self::push`] with the pairs measured on up to `threads` threads (0 counts as 1). Each
    /// pair is measured on its own, so what is kept is the same on any number of threads; only
    /// the time changes.
    pub fn push_on(&mut self, landmarks: [[f32; 2]; 5], patch: Option<FacePatch>, threads: usize) {
        if self.landmarks.len() == MAX_FRAMES {
            self.landmarks.remove(0);
            self.patches.remove(0);
            self.edges.remove(0);
            drop_oldest(&mut self.pairs);
            drop_oldest(&mut self.tried);
        }
        let edges = patch.as_ref().map(|p| std::sync::Arc::new(find_edges(p, &landmarks)));
        let patch = patch.map(std::sync::Arc::new);
        let mut row = vec![None; self.landmarks.len()];
        let mut tried = vec![false; self.landmarks.len()];
        if let Some(pb) = &patch {
            // the kept frames that can be measured at all (with their image), then the partners
            // among them
            let with_image: Vec<(usize, &FacePatch, &Edges)> = (0..self.landmarks.len())
                .filter_map(|i| match (&self.patches[i], &self.edges[i]) {
                    (Some(pa), Some(ea)) => Some((i, &**pa, &**ea)),
                    _ => None,
                })
                .collect();
            let jobs: Vec<(usize, &FacePatch, &Edges)> =
                partners(with_image.len()).into_iter().map(|k| with_image[k]).collect();
            let one =
                |&(i, pa, ea): &(usize, &FacePatch, &Edges)| (i, measure(pa, &self.landmarks[i], ea, pb, &landmarks));
            let threads = threads.clamp(1, jobs.len().max(1));
            let share = |t: usize| jobs.iter().skip(t).step_by(threads).map(one).collect::<Vec<_>>();
            let measured: Vec<(usize, Option<PairMeasure>)> = if threads == 1 {
                share(0)
            } else {
                std::thread::scope(|s| {
                    let share = &share;
                    // a share whose thread cannot be started is measured here
                    let workers: Vec<_> = (0..threads)
                        .map(|t| (t, std::thread::Builder::new().spawn_scoped(s, move || share(t)).ok()))
                        .collect();
                    // a panic in a worker is this thread's panic, as with one thread
                    workers
                        .into_iter()
                        .flat_map(|(t, w)| match w {
                            Some(w) => w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                            None => share(t),
                        })
                        .collect()
                })
            };
            for (i, m) in measured {
                row[i] = m;
                tried[i] = true;
            }
        }
        self.landmarks.push(landmarks);
        self.patches.push(patch);
        self.edges.push(edges);
        self.pairs.push(row);
        self.tried.push(tried);
    }

    /// Frames kept.
    pub fn len(&self) -> usize {
        self.landmarks.len()
    }

    /// No frame kept.
    pub fn is_empty(&self) -> bool {
        self.landmarks.is_empty()
    }

    /// The kept frames' landmarks, oldest first.
    pub fn landmarks(&self) -> &[[[f32; 2]; 5]] {
        &self.landmarks
    }

    /// What was measured between frames `i < j` (`None`: their points could not be followed, or
    /// the pair was not measured: see [`partners`]).
    pub fn pair(&self, i: usize, j: usize) -> Option<PairMeasure> {
        self.pairs.get(j).and_then(|row| row.get(i)).copied().flatten()
    }

    /// Whether frames `i < j` were measured at all (both with an image, and `i` one of the
    /// partners [`partners`] picked for `j`); [`Self::pair`] is `None` for a pair measured but
    /// not followed, and for one not measured.
    pub fn measured(&self, i: usize, j: usize) -> bool {
        self.tried.get(j).and_then(|row| row.get(i)).copied().unwrap_or(false)
    }

    /// Forgets every frame.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Drops the images, keeping what was measured (no further frame can be pushed usefully:
    /// pairs with the kept frames no longer count). For evaluations holding many appearances.
    pub fn drop_patches(&mut self) {
        self.patches.iter_mut().for_each(|p| *p = None);
        self.edges.iter_mut().for_each(|e| *e = None);
    }
}

/// Drops the oldest frame from a triangle of per-pair values (`rows[j][i]`, `i < j`): its row and
/// its column.
fn drop_oldest<T>(rows: &mut Vec<Vec<T>>) {
    rows.remove(0);
    rows.iter_mut().for_each(|row| {
        row.remove(0);
    });
}

/// Both directions of [`follow`] between two frames, and the deny cues' tests from the earlier
/// (`pa`, with its edges `ea`) to the later.
fn measure(pa: &FacePatch, la: &[[f32; 2]; 5], ea: &Edges, pb: &FacePatch, lb: &[[f32; 2]; 5]) -> Option<PairMeasure> {
    let (fb, nb) = follow(pa, la, pb, lb)?;
    let (fa, na) = follow(pb, lb, pa, la)?;
    let residual = (nose_residual(la, &fb)? + nose_residual(lb, &fa)?) / 2.0;
    let change = (PassiveCheck::change(la, &fb) + PassiveCheck::change(lb, &fa)) / 2.0;
    let ring = ring_votes(pa, la, pb, &fb).unwrap_or_default();
    let border = border_votes(ea, la, pb, &fb).unwrap_or_default();
    Some(PairMeasure { change, residual, ncc: na.min(nb), ring, border })
}

/// Which way the door asks the member to turn their head: their own left or right. The camera is
/// taken as not mirrored, so the member's left is the image's right: a positive change of
/// [`HeadPose`](crate::HeadPose) yaw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The member's left.
    Left,
    /// The member's right.
    Right,
}

impl Turn {
    /// `left` or `right`: the argument the challenge command gets, and the log's word.
    pub fn name(self) -> &'static str {
        match self {
            Turn::Left => "left",
            Turn::Right => "right",
        }
    }

    /// A turn from one random bit (the door draws it from the operating system per appearance).
    pub fn from_bit(bit: bool) -> Self {
        if bit {
            Turn::Left
        } else {
            Turn::Right
        }
    }

    /// The sign of the yaw change this turn makes.
    fn sign(self) -> f32 {
        match self {
            Turn::Left => 1.0,
            Turn::Right => -1.0,
        }
    }
}

/// What the active challenge says about the frames seen since it was given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChallengeVerdict {
    /// The asked turn, on enough consecutive frames.
    Passed {
        /// The turn reached (degrees of yaw from the baseline, in the asked direction).
        turn_deg: f32,
    },
    /// A turn of the same size the other way: whoever is in front of the camera did not follow
    /// the instruction (a recording cannot know it). Latches: the appearance is denied.
    WrongWay {
        /// How far the other way (degrees).
        turn_deg: f32,
    },
    /// Not yet (the largest turn in the asked direction so far; negative: the other way).
    Pending {
        /// Degrees.
        turn_deg: f32,
    },
}

/// The active challenge: the door asks for a head turn in a random direction (through a command
/// it runs: an LED arrow, a buzzer pattern, a display) and checks the direction and size of the
/// yaw change from the landmarks. A photo turned in the hand does not change the landmarks' yaw
/// (the nose stays where it is printed relative to the eyes); a recording of the member turning
/// cannot know which way it will be asked to turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChallengeCheck {
    /// Yaw change (degrees) from the baseline that counts as the turn, either way.
    pub min_turn_deg: f32,
    /// Faces with a smaller IOD (pixels) are not used.
    pub min_iod_px: f32,
    /// Consecutive usable frames past `min_turn_deg` needed (one noisy frame is not a turn).
    pub confirm_frames: usize,
}

impl ChallengeCheck {
    /// Yaw of the face (degrees), through the one head-pose estimate of the crate.
    pub fn yaw(l: &[[f32; 2]; 5]) -> f32 {
        crate::HeadPose::from_landmarks(l).yaw
    }

    /// The baseline yaw: the median over `before` (the frames of the appearance up to the
    /// challenge) of the usable faces; `None` when there are none.
    pub fn baseline(&self, before: &[[[f32; 2]; 5]]) -> Option<f32> {
        let mut y: Vec<f32> = before.iter().filter(|l| iod(l) >= self.min_iod_px).map(Self::yaw).collect();
        y.sort_by(f32::total_cmp);
        let n = y.len();
        (n > 0).then(|| if n % 2 == 1 { y[n / 2] } else { (y[n / 2 - 1] + y[n / 2]) / 2.0 })
    }

    /// The verdict on `since` (the frames after the challenge was given, in order) against the
    /// `baseline` yaw. The first `confirm_frames` consecutive usable frames past `min_turn_deg`
    /// one way or the other decide; until then it is pending.
    pub fn judge(&self, turn: Turn, baseline: f32, since: &[[[f32; 2]; 5]]) -> ChallengeVerdict {
        let need = self.confirm_frames.max(1);
        let (mut right_way, mut wrong_way) = (0usize, 0usize);
        let mut best = f32::NEG_INFINITY;
        for l in since.iter().filter(|l| iod(l) >= self.min_iod_px) {
            let d = (Self::yaw(l) - baseline) * turn.sign();
            best = best.max(d);
            right_way = if d >= self.min_turn_deg { right_way + 1 } else { 0 };
            wrong_way = if d <= -self.min_turn_deg { wrong_way + 1 } else { 0 };
            if right_way >= need {
                return ChallengeVerdict::Passed { turn_deg: d };
            }
            if wrong_way >= need {
                return ChallengeVerdict::WrongWay { turn_deg: -d };
            }
        }
        // `+ 0.0` turns −0.0 (a still face, the other side's zero) into 0.0 for the log
        ChallengeVerdict::Pending { turn_deg: if best.is_finite() { best + 0.0 } else { 0.0 } }
    }
}

/// The five landmarks (YuNet's order) of a model face seen by a pinhole camera 8 eye distances
/// away, 100 px between the eyes when frontal, after a yaw rotation of `yaw_deg` about the
/// vertical axis through the eye midpoint. `nose_depth` is how far (eye distances) the nose tip
/// stands in front of the eyes and mouth: about 0.5 for a head, 0 for a photo. For tests and
/// simulations.
pub fn model_landmarks(yaw_deg: f32, nose_depth: f32) -> [[f32; 2]; 5] {
    let pts: [[f32; 3]; 5] =
        [[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.6, -nose_depth], [-0.4, 1.2, 0.0], [0.4, 1.2, 0.0]];
    let (s, c) = yaw_deg.to_radians().sin_cos();
    pts.map(|[x, y, z]| {
        let (x, z) = (x * c + z * s, -x * s + z * c);
        let f = 800.0 / (8.0 + z);
        [320.0 + x * f, 200.0 + y * f]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_frame_is_measured_against_at_most_max_partners_kept_frames_spread_evenly() {
        assert_eq!(partners(0), Vec::<usize>::new());
        assert_eq!(partners(MAX_PARTNERS), (0..MAX_PARTNERS).collect::<Vec<_>>());
        assert_eq!(partners(10), vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
        assert_eq!(partners(MAX_FRAMES - 1), vec![0, 2, 4, 5, 7, 9, 11, 12, 14]);
        for n in MAX_PARTNERS..MAX_FRAMES {
            let p = partners(n);
            assert_eq!(p.len(), MAX_PARTNERS);
            assert!(p.windows(2).all(|w| w[0] < w[1]) && p[0] == 0 && p[MAX_PARTNERS - 1] == n - 1, "{n}: {p:?}");
        }
    }

    #[test]
    fn past_max_frames_the_oldest_frame_goes_and_frames_without_an_image_take_no_partner_slot() {
        let (mut one, mut two) = (Followed::default(), Followed::default());
        for k in 0..MAX_FRAMES + 3 {
            let (img, l) = crate::parallax::model_view((k % 7) as f32 * 5.0, 0.5);
            // every fourth frame without its image (a face the patch could not be cut for)
            let patch = (k % 4 != 1).then(|| FacePatch::cut(&img, &l)).flatten();
            one.push(l, patch.clone());
            two.push_on(l, patch, 2);
        }
        assert_eq!(one.len(), MAX_FRAMES);
        assert_eq!(one.pairs, two.pairs);
        // the newest frame: 11 of the 15 kept frames before it have an image (frames 3 to 17 of
        // 0 to 18, without 5, 9, 13, 17); 9 of those were measured
        let with_image: Vec<usize> = (0..MAX_FRAMES - 1).filter(|&i| one.patches[i].is_some()).collect();
        assert_eq!(with_image.len(), 11);
        let measured: Vec<usize> = (0..MAX_FRAMES - 1).filter(|&i| one.pairs[MAX_FRAMES - 1][i].is_some()).collect();
        let picked: Vec<usize> = partners(11).into_iter().map(|k| with_image[k]).collect();
        assert_eq!(picked.len(), MAX_PARTNERS);
        assert_eq!(measured, picked);
        let tried: Vec<usize> = (0..MAX_FRAMES - 1).filter(|&i| one.measured(i, MAX_FRAMES - 1)).collect();
        assert_eq!(tried, picked);
    }

    #[test]
    fn pairs_measured_on_several_threads_are_those_measured_on_one() {
        let (mut one, mut three, mut many) = (Followed::default(), Followed::default(), Followed::default());
        for k in 0..12 {
            let (img, l) = crate::parallax::model_view((k % 7) as f32 * 5.0, 0.5);
            one.push(l, FacePatch::cut(&img, &l));
            three.push_on(l, FacePatch::cut(&img, &l), 3);
            // more threads than pairs (and at most 9 pairs)
            many.push_on(l, FacePatch::cut(&img, &l), 16);
        }
        assert_eq!(one.pairs, three.pairs);
        assert_eq!(one.pairs, many.pairs);
        // the 12th frame against 9 of the 11 kept: the two left out are not measured
        let last = &one.pairs[11];
        let skipped: Vec<usize> = (0..11).filter(|i| !partners(11).contains(i)).collect();
        assert_eq!(skipped, vec![2, 7]);
        assert!(skipped.iter().all(|&i| last[i].is_none()));
        // the model head is textured all over: every measured pair was followed
        assert!(partners(11).iter().all(|&i| last[i].is_some()));
    }

    fn head(deg: f32, nose_depth: f32) -> [[f32; 2]; 5] {
        model_landmarks(deg, nose_depth)
    }

    fn challenge() -> ChallengeCheck {
        ChallengeCheck { min_turn_deg: 15.0, min_iod_px: 30.0, confirm_frames: 2 }
    }

    #[test]
    fn the_model_head_turning_to_its_left_raises_the_yaw() {
        // model_landmarks' positive angle moves the nose to the image's left: the member's right
        let (l, r) = (ChallengeCheck::yaw(&head(-20.0, 0.5)), ChallengeCheck::yaw(&head(20.0, 0.5)));
        assert!(l > 10.0 && r < -10.0, "{l} {r}");
        // a photo turned in the hand keeps its printed pose, up to perspective (measured: 1.4°
        // and 2.2° of apparent turn at ∓30°, the camera 8 eye distances away), far below a 15°
        // challenge
        let front = ChallengeCheck::yaw(&head(0.0, 0.0));
        for deg in [-30.0f32, 30.0] {
            let y = ChallengeCheck::yaw(&head(deg, 0.0)) - front;
            assert!(y.abs() < 3.0, "photo at {deg}°: apparent turn {y}");
        }
    }

    #[test]
    fn the_challenge_passes_the_asked_turn_and_latches_the_other_way() {
        let c = challenge();
        let base = c.baseline(&[head(0.0, 0.5), head(1.0, 0.5), head(-1.0, 0.5)]).unwrap();
        let turning = |to: f32| -> Vec<_> { (1..=6).map(|k| head(to * k as f32 / 6.0, 0.5)).collect() };
        // the member turns to their left (model angle negative)
        let left = turning(-35.0);
        assert!(matches!(c.judge(Turn::Left, base, &left), ChallengeVerdict::Passed { turn_deg } if turn_deg >= 15.0));
        assert!(matches!(c.judge(Turn::Right, base, &left), ChallengeVerdict::WrongWay { .. }));
        // not far enough yet: pending, with how far it got
        match c.judge(Turn::Left, base, &left[..2]) {
            ChallengeVerdict::Pending { turn_deg } => assert!((5.0..15.0).contains(&turn_deg), "{turn_deg}"),
            v => panic!("{v:?}"),
        }
        // one frame past the mark is not a turn
        let mut blip = vec![head(0.0, 0.5); 4];
        blip[1] = head(-35.0, 0.5);
        assert!(matches!(c.judge(Turn::Left, base, &blip), ChallengeVerdict::Pending { .. }));
        // a photo rotated either way never passes nor fails: it stays pending until the timeout
        let photo: Vec<_> = [0.0f32, 10.0, 20.0, 30.0, -30.0, -20.0].iter().map(|&d| head(d, 0.0)).collect();
        let pb = c.baseline(&photo[..1]).unwrap();
        for t in [Turn::Left, Turn::Right] {
            assert!(matches!(c.judge(t, pb, &photo), ChallengeVerdict::Pending { .. }), "{t:?}");
        }
        // faces too small are not used
        let tiny = ChallengeCheck { min_iod_px: 1000.0, ..c };
        assert_eq!(tiny.baseline(&left), None);
        assert!(matches!(tiny.judge(Turn::Left, base, &left), ChallengeVerdict::Pending { .. }));
    }

    #[test]
    fn a_homography_fitted_on_four_points_maps_them_and_is_exact_for_a_plane() {
        let from = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let to = [[5.0, 5.0], [30.0, 8.0], [4.0, 28.0], [26.0, 33.0]];
        let h = Homography::fit4(&from, &to).unwrap();
        for (f, t) in from.iter().zip(&to) {
            let p = h.apply(*f).unwrap();
            assert!((p[0] - t[0]).abs() < 1e-3 && (p[1] - t[1]).abs() < 1e-3, "{p:?} vs {t:?}");
        }
        assert!(Homography::fit4(&from, &[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]).is_none());
    }

    #[test]
    fn a_flat_face_has_no_residual_and_a_turned_head_has_one() {
        // a photo: the nose is on the plane (depth 0), any tilt
        for deg in [0.0f32, 10.0, 30.0] {
            let r = nose_residual(&head(0.0, 0.0), &head(deg, 0.0)).unwrap();
            assert!(r < 1e-3, "flat, {deg}°: {r}");
        }
        // a head: 10° of yaw moves the nose about 0.5 · sin 10° ≈ 0.09 IOD off the plane
        let r10 = nose_residual(&head(0.0, 0.5), &head(10.0, 0.5)).unwrap();
        let r20 = nose_residual(&head(0.0, 0.5), &head(20.0, 0.5)).unwrap();
        assert!((0.07..0.11).contains(&r10), "{r10}");
        assert!((0.15..0.21).contains(&r20), "{r20}");
    }

    /// The check on each frame's detector landmarks, as the unit tests use it.
    fn detector_check() -> PassiveCheck {
        PassiveCheck {
            min_iod_px: 30.0,
            min_change: 0.02,
            threshold: 0.05,
            min_pairs: 2,
            min_ncc: 0.0,
            landmarks: Landmarks::Detector,
            ring_deny: 0,
            border_deny: 0,
        }
    }

    #[test]
    fn the_check_needs_enough_pairs_big_faces_and_change() {
        let check = detector_check();
        let live: Vec<_> = [0.0, 8.0, 16.0, 24.0].iter().map(|&d| head(d, 0.5)).collect();
        assert!(matches!(check.judge(&live), Liveness::Live { pairs: 6, .. }), "{:?}", check.judge(&live));
        let photo: Vec<_> = [0.0, 10.0, 20.0, 30.0].iter().map(|&d| head(d, 0.0)).collect();
        assert!(matches!(check.judge(&photo), Liveness::Unconfirmed { pairs: 6, .. }), "{:?}", check.judge(&photo));
        // three frames: with any one left out a single pair remains, fewer than 2
        assert!(matches!(check.judge(&live[..3]), Liveness::Unconfirmed { pairs: 3, .. }));
        // identical frames are not evidence
        let still = vec![head(5.0, 0.5); 4];
        assert!(matches!(check.judge(&still), Liveness::Unconfirmed { pairs: 0, .. }));
        // faces too small to trust
        let tiny = PassiveCheck { min_iod_px: 1000.0, ..check };
        assert!(matches!(tiny.judge(&live), Liveness::Unconfirmed { pairs: 0, .. }));
    }

    #[test]
    fn one_frame_with_a_misplaced_nose_does_not_make_a_photo_live() {
        let check = detector_check();
        for glitch in [0, 2, 4] {
            let mut photo: Vec<_> = [0.0, 8.0, 16.0, 24.0, 30.0].iter().map(|&d| head(d, 0.0)).collect();
            photo[glitch][2][0] += 30.0; // the nose 0.3 IOD off in one frame
            assert!(!check.live_at_some_frame(&photo, 3), "glitch in frame {glitch}: {:?}", check.judge(&photo));
        }
        // noise on the nose alone does not make identical views count as changed
        let mut still = vec![head(0.0, 0.0); 5];
        still[1][2][1] += 20.0;
        assert!(matches!(check.judge(&still), Liveness::Unconfirmed { pairs: 0, .. }));
        // a head turning over the same frames is live from the fourth frame on
        let head_turn: Vec<_> = [0.0, 8.0, 16.0, 24.0, 30.0].iter().map(|&d| head(d, 0.5)).collect();
        assert!(check.live_at_some_frame(&head_turn, 3));
        assert!(!check.live_at_some_frame(&head_turn[..3], 3));
    }
}
