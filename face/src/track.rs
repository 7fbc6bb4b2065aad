//! Detection in a window around the last face found (the door's `model.roi_refresh`).
//!
//! A door sees one face at a time, large and moving little from one frame to the next, yet
//! detection on the whole canvas costs most of a frame. [`RoiDetector`] runs YuNet on the whole
//! canvas when it has no face to follow, and then on a square window of that same canvas around
//! the face it found last. The window holds exactly the whole canvas's pixels there (same scale,
//! same filter, its corner on YuNet's 32-pixel grid); YuNet's time falls with the window's area
//! (building the canvas does not when the frame is shrunk more than 2×: the whole frame is
//! resized first, as for the whole canvas). The detections are close to the whole canvas's but
//! not identical: YuNet's deeper layers see far enough to notice the window's edges. Measured
//! (`examples/window_gap.rs`): landmarks about 1.4× as far from the whole canvas's as the whole
//! canvas's own move when the frame shifts by one pixel. It goes back to the whole canvas:
//! - when the window finds no face (or fails), or any face within [`EDGE_PX`] of a window edge
//!   that has image beyond it (the face may be leaving, or another face may be cut by the window);
//! - at least once every `refresh` frames, so a face elsewhere in the frame (a second person, a
//!   larger face) is seen within `refresh` frames;
//! - when the face is too large for the largest window worth running, and when the frame size
//!   changes.
//!
//! `refresh` 0 (or 1): the whole canvas on every frame; no window plans are prepared.
//! Several threads may share one detector (its state is behind a lock held only between
//! inferences), but then which frame a window comes from depends on timing. The door gives each
//! embedding thread its own [`RoiDetector::follower`] and each thread every N-th frame, so each
//! follows a fixed sequence of frames and the decisions do not depend on timing.

use image::RgbImage;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Detection, FaceDetector, FaceError, Letterbox, YuNet};

/// Window sides (canvas pixels) prepared, smallest first; those larger than the canvas, or over
/// [`MAX_AREA_FRACTION`] of its area, are left out.
pub const WINDOW_SIDES: [u32; 6] = [128, 160, 192, 256, 320, 384];
/// Margin around the last face's box, as a fraction of its larger side, that the window must hold
/// (how far the face may move between two frames and still be found whole).
pub const MARGIN: f32 = 0.3;
/// A face this close (canvas pixels) to a window edge with image beyond it sends the detector
/// back to the whole canvas.
pub const EDGE_PX: f32 = 8.0;
/// Windows larger than this fraction of the canvas's area save too little to be prepared.
pub const MAX_AREA_FRACTION: f32 = 0.6;
/// YuNet's largest stride: window corners sit on its grid, so the window's cells are the whole
/// canvas's cells.
const GRID: u32 = 32;

/// Where the last detection ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectPath {
    /// The whole canvas.
    Whole,
    /// A window of this side (canvas pixels).
    Window(u32),
}

#[derive(Debug)]
struct Follow {
    dims: (u32, u32),
    /// The largest face of the last frame, left, top, width, height in image pixels.
    last: Option<[f32; 4]>,
    /// Window detections since the last whole-canvas one.
    windows_since_whole: u32,
    path: DetectPath,
}

/// How many detections ran where, shared with whoever reports them (the door's summary).
#[derive(Debug, Clone, Default)]
pub struct DetectCounts(Arc<[AtomicU64; 3]>);

impl DetectCounts {
    /// Detections on the whole canvas.
    pub fn whole(&self) -> u64 {
        self.0[0].load(Ordering::Relaxed)
    }
    /// Window detections whose faces were used.
    pub fn windows(&self) -> u64 {
        self.0[1].load(Ordering::Relaxed)
    }
    /// Window detections that lost the face (followed by the whole canvas on the same frame).
    pub fn windows_lost(&self) -> u64 {
        self.0[2].load(Ordering::Relaxed)
    }
    fn add(&self, i: usize) {
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// YuNet on the whole canvas, then on windows around the face found; see the module
/// documentation.
pub struct RoiDetector {
    whole: YuNet,
    /// Window detectors, smallest side first.
    windows: Vec<(u32, YuNet)>,
    refresh: u32,
    state: Mutex<Follow>,
    counts: DetectCounts,
}

impl RoiDetector {
    /// YuNet from `path` on a `width × height` canvas, with windows when `refresh` ≥ 2.
    pub fn load(path: &Path, (width, height): (u32, u32), refresh: u32) -> Result<Self, FaceError> {
        let whole = YuNet::load_with_canvas(path, width, height)?;
        let windows = if refresh < 2 {
            Vec::new()
        } else {
            WINDOW_SIDES
                .iter()
                .filter(|&&s| {
                    s <= width && s <= height && (s * s) as f32 <= MAX_AREA_FRACTION * (width * height) as f32
                })
                .map(|&s| YuNet::load_with_canvas(path, s, s).map(|d| (s, d)))
                .collect::<Result<_, _>>()?
        };
        let state = Follow { dims: (0, 0), last: None, windows_since_whole: 0, path: DetectPath::Whole };
        Ok(Self { whole, windows, refresh, state: Mutex::new(state), counts: DetectCounts::default() })
    }

    /// Another detector on the same plans (nothing is loaded again) that follows its own faces
    /// from a fresh start, with its own `refresh`; its detections are counted with this one's.
    pub fn follower(&self, refresh: u32) -> Self {
        let state = Follow { dims: (0, 0), last: None, windows_since_whole: 0, path: DetectPath::Whole };
        Self {
            whole: self.whole.clone(),
            windows: self.windows.clone(),
            refresh,
            state: Mutex::new(state),
            counts: self.counts.clone(),
        }
    }

    /// Sets the minimum score, on the whole canvas and every window.
    pub fn with_score_threshold(self, t: f32) -> Self {
        let Self { whole, windows, refresh, state, counts } = self;
        let windows = windows.into_iter().map(|(s, d)| (s, d.with_score_threshold(t))).collect();
        Self { whole: whole.with_score_threshold(t), windows, refresh, state, counts }
    }

    /// The whole-canvas detector.
    pub fn whole(&self) -> &YuNet {
        &self.whole
    }

    /// The whole canvas at least every this many frames (below 2: every frame).
    pub fn refresh(&self) -> u32 {
        self.refresh
    }

    /// Window sides prepared (canvas pixels), smallest first.
    pub fn window_sides(&self) -> Vec<u32> {
        self.windows.iter().map(|(s, _)| *s).collect()
    }

    /// The counts of detections by where they ran (a handle: it follows later detections).
    pub fn counts(&self) -> DetectCounts {
        self.counts.clone()
    }

    /// Where the last call of [`FaceDetector::detect`] ran (its final pass).
    pub fn last_path(&self) -> DetectPath {
        self.state().path
    }

    /// Forgets the face followed: the next frame is detected on the whole canvas.
    pub fn reset(&self) {
        let mut st = self.state();
        st.last = None;
        st.path = DetectPath::Whole;
    }

    fn state(&self) -> MutexGuard<'_, Follow> {
        // the state is plain numbers, valid whatever a panicking holder did
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The first of `sides` (ascending, each at most the canvas's width and height) whose window
/// holds `bbox` (image pixels, placed on the `canvas` by `lb`) with its [`MARGIN`]s, and the
/// window's top-left corner on the canvas (on the [`GRID`], inside the canvas).
fn window_for(
    sides: impl IntoIterator<Item = u32>,
    (cw, ch): (u32, u32),
    bbox: [f32; 4],
    lb: Letterbox,
) -> Option<(usize, (u32, u32))> {
    let [x, y, w, h] = bbox.map(|v| v * lb.scale);
    let m = MARGIN * w.max(h);
    let (lo_x, hi_x) = ((x - m).max(0.0), (x + w + m).min(cw as f32));
    let (lo_y, hi_y) = ((y - m).max(0.0), (y + h + m).min(ch as f32));
    let corner =
        |lo: f32, side: u32, canvas: u32| ((lo / GRID as f32).floor() as u32 * GRID).min(canvas.saturating_sub(side));
    sides.into_iter().enumerate().find_map(|(i, s)| {
        if s > cw || s > ch {
            return None;
        }
        let (ox, oy) = (corner(lo_x, s, cw), corner(lo_y, s, ch));
        ((ox + s) as f32 >= hi_x && (oy + s) as f32 >= hi_y).then_some((i, (ox, oy)))
    })
}

/// Whether a window's faces are the whole canvas's: none within [`EDGE_PX`] of a window edge that
/// has image beyond it (on the canvas, the image fills `lb.width × lb.height` from the corner).
fn clear_of_edges(dets: &[Detection], lb: Letterbox, (ox, oy): (u32, u32), side: u32) -> bool {
    let (l, t) = (ox as f32, oy as f32);
    let (r, b) = ((ox + side) as f32, (oy + side) as f32);
    let (inner_left, inner_top) = (ox > 0, oy > 0);
    let (inner_right, inner_bottom) = (ox + side < lb.width, oy + side < lb.height);
    dets.iter().all(|d| {
        let [x, y, w, h] = d.bbox.map(|v| v * lb.scale);
        !(inner_left && x < l + EDGE_PX
            || inner_top && y < t + EDGE_PX
            || inner_right && x + w > r - EDGE_PX
            || inner_bottom && y + h > b - EDGE_PX)
    })
}

fn largest(dets: &[Detection]) -> Option<[f32; 4]> {
    dets.iter().max_by(|a, b| a.area().total_cmp(&b.area())).map(|d| d.bbox)
}

impl FaceDetector for RoiDetector {
    fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>, FaceError> {
        let dims = img.dimensions();
        if dims.0 == 0 || dims.1 == 0 {
            return Err(FaceError::EmptyImage { width: dims.0, height: dims.1 });
        }
        let lb = Letterbox::fit(dims.0, dims.1, self.whole.canvas());
        let follow = {
            let st = self.state();
            match st.last {
                Some(bbox) if st.dims == dims && st.windows_since_whole + 1 < self.refresh => {
                    let sides = self.windows.iter().map(|(s, _)| *s);
                    window_for(sides, self.whole.canvas(), bbox, lb).map(|w| (w, st.windows_since_whole))
                }
                _ => None,
            }
        };
        if let Some(((i, origin), since)) = follow {
            let (side, det) = &self.windows[i];
            // a window that fails is a window that lost the face: the whole canvas decides
            let dets = det.detect_window(img, lb, origin).unwrap_or_default();
            if !dets.is_empty() && clear_of_edges(&dets, lb, origin, *side) {
                self.counts.add(1);
                let mut st = self.state();
                *st = Follow {
                    dims,
                    last: largest(&dets),
                    windows_since_whole: since + 1,
                    path: DetectPath::Window(*side),
                };
                return Ok(dets);
            }
            self.counts.add(2);
        }
        self.counts.add(0);
        let dets = match self.whole.detect(img) {
            Ok(d) => d,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        let mut st = self.state();
        *st = Follow { dims, last: largest(&dets), windows_since_whole: 0, path: DetectPath::Whole };
        Ok(dets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f32; 4]) -> Detection {
        Detection { bbox, score: 0.9, landmarks: [[0.0; 2]; 5] }
    }

    const FULL: Letterbox = Letterbox { scale: 1.0, width: 640, height: 480 };

    #[test]
    fn the_window_is_the_smallest_that_holds_the_face_and_its_margins_on_the_grid() {
        let sides = [128, 160, 192, 256, 320, 384];
        // 100×120 face at (300, 200): margins 36 → 264..436 × 164..356, corners on the grid
        // (256, 160): a 192-px window reaches 448 × 352 (< 356), so 256 (to 512 × 416)
        assert_eq!(window_for(sides, (640, 480), [300.0, 200.0, 100.0, 120.0], FULL), Some((3, (256, 160))));
        // at the right and bottom edges the corner moves in so the window stays on the canvas
        assert_eq!(window_for(sides, (640, 480), [560.0, 400.0, 60.0, 60.0], FULL), Some((0, (512, 352))));
        // at the left and top edges it starts at 0
        assert_eq!(window_for(sides, (640, 480), [0.0, 0.0, 60.0, 60.0], FULL), Some((0, (0, 0))));
        // a face too large for 384 px with its margins: none
        assert_eq!(window_for(sides, (640, 480), [200.0, 100.0, 200.0, 260.0], FULL), None);
        // image pixels are scaled to canvas pixels: the same face on a half-size canvas needs less
        let half = Letterbox { scale: 0.5, width: 320, height: 240 };
        assert_eq!(window_for(sides, (320, 256), [300.0, 200.0, 100.0, 120.0], half), Some((0, (128, 64))));
        // sides larger than the canvas are never chosen
        assert_eq!(window_for([512], (320, 256), [10.0, 10.0, 10.0, 10.0], half), None);
    }

    #[test]
    fn a_face_near_an_inner_window_edge_sends_detection_back_to_the_whole_canvas() {
        let (o, side) = ((256, 160), 256);
        let inside = det([300.0, 200.0, 100.0, 120.0]);
        assert!(clear_of_edges(&[inside], FULL, o, side));
        // within 8 px of each edge in turn (the window is 256..512 × 160..416)
        for near in [
            [263.0, 200.0, 50.0, 50.0],
            [300.0, 167.0, 50.0, 50.0],
            [455.0, 200.0, 50.0, 50.0],
            [300.0, 360.0, 50.0, 50.0],
        ] {
            assert!(!clear_of_edges(&[inside, det(near)], FULL, o, side), "{near:?}");
        }
        // 9 px away: clear
        assert!(clear_of_edges(&[det([265.0, 169.0, 50.0, 50.0])], FULL, o, side));
        // an edge with no image beyond it (the canvas's corner, or past the image on the canvas)
        // does not count
        assert!(clear_of_edges(&[det([1.0, 1.0, 50.0, 50.0])], FULL, (0, 0), 128));
        // a face reaching 510 of a window ending at 512: cut when the image goes on (640 wide),
        // clear when the image ends before the window does (400 wide)
        let at_right = det([415.0, 200.0, 95.0, 95.0]);
        assert!(!clear_of_edges(&[at_right], FULL, o, side));
        let narrow = Letterbox { scale: 1.0, width: 400, height: 480 };
        assert!(clear_of_edges(&[at_right], narrow, o, side));
    }
}
