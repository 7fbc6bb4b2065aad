//! Detection in a window around the last face found (the door's `model.roi_refresh`).
//!
//! A door sees one face at a time, large and moving little from one frame to the next, yet
//! detection on the whole canvas costs most of a frame. [`RoiDetector`] runs YuNet on the whole
//! canvas when it has no face to follow, and then on a square window of that same canvas around
//! the face it found last. The window holds exactly the whole canvas's pixels there (same scale,
//! same filter, its corner on YuNet's 32-pixel grid), at a fraction of the cost. The detections
//! are close to the whole canvas's but not identical: YuNet's deeper layers see far enough to
//! notice the window's edges. Measured (`examples/window_gap.rs`): landmarks move by as much as
//! the whole canvas's own move when the frame shifts by one pixel. It goes back to the whole
//! canvas:
//! - when the window finds no face, or any face within [`EDGE_PX`] of a window edge that has
//!   image beyond it (the face may be leaving, or another face may be cut by the window);
//! - at least once every `refresh` frames, so a face elsewhere in the frame (a second person, a
//!   larger face) is seen within `refresh` frames;
//! - when the face is too large for the largest window worth running, and when the frame size
//!   changes.
//!
//! `refresh` 0 (or 1): the whole canvas on every frame; no window plans are prepared.
//! Several threads may share one detector (its state is behind a lock held only between
//! inferences), but then which frame a window comes from depends on timing; the door refuses
//! windows with more than one embedding thread.

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
        Ok(Self::from_parts(whole, windows, refresh))
    }

    /// A detector from already loaded parts (windows: side and a detector on that square canvas).
    pub fn from_parts(whole: YuNet, mut windows: Vec<(u32, YuNet)>, refresh: u32) -> Self {
        windows.sort_by_key(|(s, _)| *s);
        let threshold = whole.score_threshold();
        let windows = windows.into_iter().map(|(s, d)| (s, d.with_score_threshold(threshold))).collect();
        let state = Follow { dims: (0, 0), last: None, windows_since_whole: 0, path: DetectPath::Whole };
        Self { whole, windows, refresh, state: Mutex::new(state), counts: DetectCounts::default() }
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

    /// The smallest prepared window holding `bbox` (image pixels) with its margin, and its
    /// top-left corner on the canvas.
    fn window_for(&self, bbox: [f32; 4], lb: Letterbox) -> Option<(usize, (u32, u32))> {
        let (cw, ch) = self.whole.canvas();
        let [x, y, w, h] = bbox.map(|v| v * lb.scale);
        let m = MARGIN * w.max(h);
        let (lo_x, hi_x) = ((x - m).max(0.0), (x + w + m).min(cw as f32));
        let (lo_y, hi_y) = ((y - m).max(0.0), (y + h + m).min(ch as f32));
        let corner = |lo: f32, side: u32, canvas: u32| ((lo / GRID as f32).floor() as u32 * GRID).min(canvas - side);
        self.windows.iter().enumerate().find_map(|(i, &(s, _))| {
            let (ox, oy) = (corner(lo_x, s, cw), corner(lo_y, s, ch));
            ((ox + s) as f32 >= hi_x && (oy + s) as f32 >= hi_y).then_some((i, (ox, oy)))
        })
    }

    /// Whether a window's faces are the whole canvas's: none near an edge with image beyond it.
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
                    self.window_for(bbox, lb).map(|w| (w, st.windows_since_whole))
                }
                _ => None,
            }
        };
        if let Some(((i, origin), since)) = follow {
            let (side, det) = &self.windows[i];
            // an error here is the frame's error, as on the whole canvas: nothing is retried
            let dets = det.detect_window(img, lb, origin)?;
            if !dets.is_empty() && Self::clear_of_edges(&dets, lb, origin, *side) {
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
