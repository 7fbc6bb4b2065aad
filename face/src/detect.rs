//! Face detection: the [`FaceDetector`] seam, YuNet run by tract, and a fixed fake for tests.
//!
//! YuNet (2023mar) is run on a fixed canvas, 640×480 by default (any multiple of 32 that its
//! Reshape nodes accept; 640×640 also works, 320×240 does not): the image is scaled to fit (small images such
//! as ORL's 92×112 are upscaled, at most [`MAX_UPSCALE`]×) and padded at the right and bottom.
//! Its outputs per stride s ∈ {8, 16, 32} are, for each grid cell (row r, column c), a class score
//! and an objectness score (score = √(cls·obj)), a box `(dx, dy, log w, log h)` with centre
//! `((c + dx)·s, (r + dy)·s)` and size `(e^lw·s, e^lh·s)`, and five landmarks `((c + lx)·s, (r + ly)·s)`.

use image::RgbImage;
use std::path::Path;
use tract_onnx::prelude::*;

use crate::{FaceError, GraphPrep};

/// Default canvas width the detector runs at.
pub const CANVAS_WIDTH: u32 = 640;
/// Default canvas height the detector runs at.
pub const CANVAS_HEIGHT: u32 = 480;
/// Largest upscaling of small images (ORL's 92×112 faces are found at 3×).
pub const MAX_UPSCALE: f32 = 3.0;
/// Default minimum score for a detection.
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.6;
/// Overlap above which the weaker of two boxes is dropped.
pub const NMS_IOU: f32 = 0.3;
const STRIDES: [u32; 3] = [8, 16, 32];

/// A detected face in the coordinates of the image passed to the detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Left, top, width, height in pixels.
    pub bbox: [f32; 4],
    /// Confidence in `[0, 1]`.
    pub score: f32,
    /// Right eye, left eye, nose tip, right and left mouth corners (the subject's right on the
    /// image's left), in pixels.
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    /// Box area in pixels².
    pub fn area(&self) -> f32 {
        self.bbox[2].max(0.0) * self.bbox[3].max(0.0)
    }
    /// Intersection over union with another box.
    pub fn iou(&self, o: &Detection) -> f32 {
        let [ax, ay, aw, ah] = self.bbox;
        let [bx, by, bw, bh] = o.bbox;
        let iw = ((ax + aw).min(bx + bw) - ax.max(bx)).max(0.0);
        let ih = ((ay + ah).min(by + bh) - ay.max(by)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + o.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// Finds faces in an image. Implementations: [`YuNet`] and [`FixedDetector`].
pub trait FaceDetector {
    /// All faces above the detector's threshold, best score first.
    fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>, FaceError>;
}

/// Greedy non-maximum suppression; returns the kept detections, best score first.
pub fn non_max_suppression(mut dets: Vec<Detection>, iou: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::with_capacity(dets.len().min(16));
    for d in dets {
        if keep.iter().all(|k| k.iou(&d) <= iou) {
            keep.push(d);
        }
    }
    keep
}

type Plan = std::sync::Arc<TypedSimplePlan>;

/// The YuNet detector run by tract. Clones share the plan.
#[derive(Clone)]
pub struct YuNet {
    plan: Plan,
    canvas: (u32, u32),
    score_threshold: f32,
}

impl YuNet {
    /// Loads `face_detection_yunet_2023mar.onnx`, ignoring its stored 640×640 value info, and
    /// prepares it for the default 640×480 canvas.
    pub fn load(path: &Path) -> Result<Self, FaceError> {
        Self::load_with_canvas(path, CANVAS_WIDTH, CANVAS_HEIGHT)
    }

    /// Loads YuNet for a `width × height` canvas (both multiples of 32).
    pub fn load_with_canvas(path: &Path, width: u32, height: u32) -> Result<Self, FaceError> {
        Self::load_with(path, width, height, GraphPrep::Rewritten)
    }

    /// Loads YuNet for a `width × height` canvas, the graph prepared as `prep` says (the parity
    /// test compares both).
    pub fn load_with(path: &Path, width: u32, height: u32, prep: GraphPrep) -> Result<Self, FaceError> {
        if width == 0 || height == 0 || !width.is_multiple_of(32) || !height.is_multiple_of(32) {
            return Err(FaceError::Model {
                path: path.display().to_string(),
                reason: format!("canvas {width}x{height} must be non-zero multiples of 32"),
            });
        }
        let err = |e: TractError| FaceError::Model { path: path.display().to_string(), reason: format!("{e:#}") };
        let bytes = std::fs::read(path).map_err(|source| FaceError::Io { path: path.display().to_string(), source })?;
        let rewritten = match prep {
            GraphPrep::Rewritten => crate::rewrite::rewritten_bytes(&bytes).map(|(b, _)| b),
            GraphPrep::AsShipped => None,
        };
        let model = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .model_for_read(&mut rewritten.as_deref().unwrap_or(&bytes))
            .map_err(err)?
            .with_input_fact(0, f32::fact([1, 3, height as usize, width as usize]).into())
            .map_err(err)?;
        let plan = crate::kernels::optimized(model, prep == GraphPrep::Rewritten)
            .map_err(err)?
            .into_runnable()
            .map_err(err)?;
        Ok(Self { plan, canvas: (width, height), score_threshold: DEFAULT_SCORE_THRESHOLD })
    }

    /// How many nodes of the optimised plan run tract operator `op` (e.g. `MaxPool2x2`, the
    /// load-time pool of [`crate::kernels`]).
    pub fn operator_count(&self, op: &str) -> usize {
        crate::kernels::operator_count(&self.plan, op)
    }

    /// Per-node timing of the detector on `img` (placed on the canvas as [`FaceDetector::detect`]
    /// does).
    pub fn profile(&self, img: &RgbImage, runs: u32) -> Result<crate::profile::Profile, FaceError> {
        let lb = Letterbox::fit(img.width(), img.height(), self.canvas);
        crate::profile::profile_plan(&self.plan, canvas_tensor(img, lb, (0, 0), self.canvas), runs)
    }

    /// The canvas width and height this detector runs at.
    pub fn canvas(&self) -> (u32, u32) {
        self.canvas
    }

    /// The minimum score.
    pub fn score_threshold(&self) -> f32 {
        self.score_threshold
    }

    /// Faces in a window of a larger canvas: `img` placed by `lb` on that canvas (as the larger
    /// detector would place it), and this detector run on the part of it whose top-left corner is
    /// `origin` (canvas pixels): the same canvas pixels, at a fraction of the cost; the faces are
    /// close to the larger canvas's, not identical (YuNet's deeper layers see the window's
    /// edges). Detections are in `img`'s coordinates, best score first.
    pub fn detect_window(
        &self,
        img: &RgbImage,
        lb: Letterbox,
        origin: (u32, u32),
    ) -> Result<Vec<Detection>, FaceError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(FaceError::EmptyImage { width: w, height: h });
        }
        if lb.width == 0 || lb.height == 0 || lb.scale.is_nan() || lb.scale <= 0.0 {
            return Err(FaceError::Inference(format!("bad placement on the canvas: {lb:?}")));
        }
        let outputs = self
            .plan
            .run(tvec!(canvas_tensor(img, lb, origin, self.canvas).into()))
            .map_err(|e| FaceError::Inference(format!("{e:#}")))?;
        let arrays = outputs
            .iter()
            .map(|o| o.to_plain_array_view::<f32>())
            .collect::<TractResult<Vec<_>>>()
            .map_err(|e| FaceError::Inference(format!("{e:#}")))?;
        let views = arrays
            .iter()
            .map(|a| a.as_slice().ok_or_else(|| FaceError::Inference("non-contiguous YuNet output".into())))
            .collect::<Result<Vec<&[f32]>, _>>()?;
        let dets = decode_yunet(&views, self.canvas, self.score_threshold)?;
        let inv = 1.0 / lb.scale;
        let (ox, oy) = (origin.0 as f32, origin.1 as f32);
        let mapped = dets
            .into_iter()
            .map(|d| Detection {
                bbox: [(d.bbox[0] + ox) * inv, (d.bbox[1] + oy) * inv, d.bbox[2] * inv, d.bbox[3] * inv],
                score: d.score,
                landmarks: d.landmarks.map(|[x, y]| [(x + ox) * inv, (y + oy) * inv]),
            })
            .filter(|d| d.bbox[0] < w as f32 && d.bbox[1] < h as f32)
            .collect();
        Ok(non_max_suppression(mapped, NMS_IOU))
    }

    /// Sets the minimum score.
    pub fn with_score_threshold(mut self, t: f32) -> Self {
        self.score_threshold = t;
        self
    }
}

/// How an image was placed on the detector canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Canvas pixels per image pixel.
    pub scale: f32,
    /// Scaled width and height on the canvas.
    pub width: u32,
    pub height: u32,
}

impl Letterbox {
    /// Fits `w × h` into a `cw × ch` canvas, upscaling at most [`MAX_UPSCALE`]×.
    pub fn fit(w: u32, h: u32, (cw, ch): (u32, u32)) -> Self {
        let scale = (cw as f32 / w as f32).min(ch as f32 / h as f32).min(MAX_UPSCALE);
        let width = ((w as f32 * scale).round() as u32).clamp(1, cw);
        let height = ((h as f32 * scale).round() as u32).clamp(1, ch);
        Self { scale, width, height }
    }
}

/// The canvas tensor: BGR planes, 0–255, the image scaled by `lb` at the top left, zero padding;
/// of that whole canvas, the `canvas`-sized part from `origin` (canvas pixels; `(0, 0)` and the
/// whole canvas for a plain detection).
///
/// A shrink by up to 2× (a 640×480 camera frame on a 320×256 canvas) is bilinear (pixel centres
/// aligned, edges clamped, as OpenCV's `INTER_LINEAR`) in the same pass that fills the planes:
/// 0.3 ms instead of 5 ms for the image crate's triangle filter plus a copy. Larger shrinks
/// (where 2×2 taps would alias) and enlargements (small photos; the golden numbers were measured
/// on them) keep the triangle filter.
fn canvas_tensor(img: &RgbImage, lb: Letterbox, origin: (u32, u32), canvas: (u32, u32)) -> Tensor {
    let shrink = img.width() as f32 / lb.width as f32;
    if (lb.width, lb.height) != img.dimensions() && !(shrink > 1.0 && shrink <= 2.0) {
        let scaled = image::imageops::resize(img, lb.width, lb.height, image::imageops::FilterType::Triangle);
        return bilinear_canvas(&scaled, lb, origin, canvas);
    }
    bilinear_canvas(img, lb, origin, canvas)
}

/// [`canvas_tensor`]'s bilinear pass (an exact copy when `lb` is the image's own size). Written
/// straight into tract's own (aligned, zeroed) tensor: building an ndarray and converting it
/// copied the 3.7 MB of a 640×480 canvas once more per frame. A window (`origin` ≠ 0, or a
/// `canvas` smaller than the placed image) holds exactly the values the whole canvas has there.
fn bilinear_canvas(img: &RgbImage, lb: Letterbox, origin: (u32, u32), canvas: (u32, u32)) -> Tensor {
    bilinear_pass(img, lb, origin, canvas, true)
}

/// [`bilinear_canvas`]; `halve` takes the integer path for an exact 2× shrink (the tests compare
/// it with the general pass).
fn bilinear_pass(img: &RgbImage, lb: Letterbox, (ox, oy): (u32, u32), (cw, ch): (u32, u32), halve: bool) -> Tensor {
    let (cw, ch) = (cw as usize, ch as usize);
    let (ox, oy) = (ox as usize, oy as usize);
    let plane = cw * ch;
    let mut tensor = Tensor::zero::<f32>(&[1, 3, ch, cw]).expect("canvas tensor");
    let mut view = tensor.try_as_plain_ram_mut().expect("plain canvas");
    let data = view.as_slice_mut::<f32>().expect("f32 canvas");
    // BGR planes: the image's R goes to plane 2
    let (b, rest) = data.split_at_mut(plane);
    let (g, r) = rest.split_at_mut(plane);
    let (sw, sh) = img.dimensions();
    let raw = img.as_raw();
    let stride = sw as usize * 3;
    // per output column / row: first source index and the weight of the next one
    let taps = |out: u32, src: u32| -> Vec<(usize, f32)> {
        let ratio = src as f32 / out as f32;
        (0..out)
            .map(|o| {
                let x = ((o as f32 + 0.5) * ratio - 0.5).clamp(0.0, (src - 1) as f32);
                let i = (x.floor() as usize).min(src as usize - 1);
                (i, x - i as f32)
            })
            .collect()
    };
    if (lb.width, lb.height) == (sw, sh) {
        // same size: a plain copy into the planes
        let cols = (sw as usize).saturating_sub(ox).min(cw);
        for (y, row) in raw.chunks_exact(stride).skip(oy).take(ch).enumerate() {
            let o = y * cw..y * cw + cols;
            let planes = b[o.clone()].iter_mut().zip(&mut g[o.clone()]).zip(&mut r[o]);
            for (p, ((bb, gg), rr)) in row.get(ox * 3..).unwrap_or_default().chunks_exact(3).zip(planes) {
                (*bb, *gg, *rr) = (f32::from(p[2]), f32::from(p[1]), f32::from(p[0]));
            }
        }
        return tensor;
    }
    if sw == 2 * lb.width && sh == 2 * lb.height && halve {
        // exactly half the size (a 640×480 camera frame on a 320×256 canvas): every tap is the
        // first pixel of a 2×2 block with weights ½, so the lerps below give its mean
        // (p + q + s + t) / 4 exactly (sums of bytes, halves and quarters are exact in f32), as
        // here from integer sums (rows added as bytes, contiguous; `halved_is_the_bilinear_pass`)
        let (cols, rows) = ((lb.width as usize).saturating_sub(ox).min(cw), (lb.height as usize).saturating_sub(oy));
        if cols == 0 {
            // a window right of the placed image: all padding
            return tensor;
        }
        let mut sums = vec![0u16; stride];
        for y in 0..rows.min(ch) {
            let top = 2 * (y + oy) * stride;
            let (row0, row1) = (&raw[top..][..stride], &raw[top + stride..][..stride]);
            for ((s, a), b) in sums.iter_mut().zip(row0).zip(row1) {
                *s = u16::from(*a) + u16::from(*b);
            }
            let o = y * cw..y * cw + cols;
            let planes = [&mut r[o.clone()], &mut g[o.clone()], &mut b[o]];
            for (c, out) in planes.into_iter().enumerate() {
                let pairs = sums[6 * ox + c..].chunks(6);
                for (v, p) in out.iter_mut().zip(pairs) {
                    *v = f32::from(p[0] + p[3]) * 0.25;
                }
            }
        }
        return tensor;
    }
    let (cols, rows) = (taps(lb.width, sw), taps(lb.height, sh));
    let last_col = sw as usize - 1;
    // per column of the window: byte offsets of the two source pixels, and the weight
    let cols: Vec<(usize, usize, f32)> =
        cols.iter().skip(ox).take(cw).map(|&(c0, wx)| (c0 * 3, (c0 + 1).min(last_col) * 3, wx)).collect();
    for (y, &(r0, wy)) in rows.iter().skip(oy).take(ch).enumerate() {
        let r1 = (r0 + 1).min(sh as usize - 1);
        let (row0, row1) = (&raw[r0 * stride..][..stride], &raw[r1 * stride..][..stride]);
        let o = y * cw..y * cw + cols.len();
        let planes = [&mut r[o.clone()], &mut g[o.clone()], &mut b[o]];
        for (c, out) in planes.into_iter().enumerate() {
            for (&(i0, i1, wx), v) in cols.iter().zip(out.iter_mut()) {
                let (p, q) = (f32::from(row0[i0 + c]), f32::from(row0[i1 + c]));
                let (s, t) = (f32::from(row1[i0 + c]), f32::from(row1[i1 + c]));
                let top = p + (q - p) * wx;
                let bottom = s + (t - s) * wx;
                *v = top + (bottom - top) * wy;
            }
        }
    }
    tensor
}

impl FaceDetector for YuNet {
    fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>, FaceError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(FaceError::EmptyImage { width: w, height: h });
        }
        self.detect_window(img, Letterbox::fit(w, h, self.canvas), (0, 0))
    }
}

/// Decodes YuNet's twelve outputs, in the graph's order `cls_8, cls_16, cls_32, obj_8, obj_16,
/// obj_32, bbox_8, bbox_16, bbox_32, kps_8, kps_16, kps_32`, into canvas coordinates.
pub fn decode_yunet(
    outputs: &[&[f32]],
    (cw, ch): (u32, u32),
    score_threshold: f32,
) -> Result<Vec<Detection>, FaceError> {
    if outputs.len() != 12 {
        return Err(FaceError::Inference(format!("YuNet gave {} outputs, expected 12", outputs.len())));
    }
    let mut dets = Vec::new();
    for (i, s) in STRIDES.into_iter().enumerate() {
        let n = ((cw / s) * (ch / s)) as usize;
        let cols = (cw / s) as usize;
        let (cls, obj, bbox, kps) = (outputs[i], outputs[3 + i], outputs[6 + i], outputs[9 + i]);
        if cls.len() != n || obj.len() != n || bbox.len() != 4 * n || kps.len() != 10 * n {
            return Err(FaceError::Inference(format!("unexpected YuNet output sizes for stride {s}")));
        }
        let sf = s as f32;
        for idx in 0..n {
            let score = (cls[idx].clamp(0.0, 1.0) * obj[idx].clamp(0.0, 1.0)).sqrt();
            if score < score_threshold {
                continue;
            }
            let (r, c) = ((idx / cols) as f32, (idx % cols) as f32);
            let b = &bbox[idx * 4..idx * 4 + 4];
            let (cx, cy) = ((c + b[0]) * sf, (r + b[1]) * sf);
            let (bw, bh) = (b[2].exp() * sf, b[3].exp() * sf);
            let k = &kps[idx * 10..idx * 10 + 10];
            let landmarks = std::array::from_fn(|j| [(c + k[2 * j]) * sf, (r + k[2 * j + 1]) * sf]);
            dets.push(Detection { bbox: [cx - bw / 2.0, cy - bh / 2.0, bw, bh], score, landmarks });
        }
    }
    Ok(dets)
}

/// A fake detector that reports the same detections for every image.
#[derive(Debug, Clone, Default)]
pub struct FixedDetector(pub Vec<Detection>);

impl FaceDetector for FixedDetector {
    fn detect(&self, _img: &RgbImage) -> Result<Vec<Detection>, FaceError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, score: f32) -> Detection {
        Detection { bbox: [x, 0.0, 10.0, 10.0], score, landmarks: [[0.0; 2]; 5] }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let kept = non_max_suppression(vec![det(0.0, 0.7), det(1.0, 0.9), det(50.0, 0.8)], 0.3);
        assert_eq!(kept.iter().map(|d| d.score).collect::<Vec<_>>(), [0.9, 0.8]);
        assert!((det(0.0, 1.0).iou(&det(5.0, 1.0)) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn canvas_is_bgr_planes_scaled_bilinearly_with_zero_padding() {
        let img = RgbImage::from_fn(4, 2, |x, y| image::Rgb([(10 * x + y) as u8, 100, 200 + x as u8]));
        // same size: an exact copy, BGR, padding zero
        let t = canvas_tensor(&img, Letterbox { scale: 1.0, width: 4, height: 2 }, (0, 0), (6, 4));
        let v = t.to_plain_array_view::<f32>().unwrap();
        assert_eq!(v.shape(), &[1, 3, 4, 6]);
        assert_eq!((v[[0, 2, 1, 3]], v[[0, 1, 1, 3]], v[[0, 0, 1, 3]]), (31.0, 100.0, 203.0));
        assert_eq!((v[[0, 2, 0, 4]], v[[0, 0, 3, 0]]), (0.0, 0.0));
        // halved: each output pixel is the mean of a 2×2 block (centres aligned)
        let t = bilinear_canvas(&img, Letterbox { scale: 0.5, width: 2, height: 1 }, (0, 0), (2, 1));
        let v = t.to_plain_array_view::<f32>().unwrap();
        assert_eq!((v[[0, 2, 0, 0]], v[[0, 2, 0, 1]]), (5.5, 25.5));
        // doubled: edges clamp, inner pixels interpolate
        let t = bilinear_canvas(&img, Letterbox { scale: 2.0, width: 8, height: 4 }, (0, 0), (8, 4));
        let v = t.to_plain_array_view::<f32>().unwrap();
        assert_eq!((v[[0, 2, 0, 0]], v[[0, 2, 0, 1]], v[[0, 2, 0, 2]], v[[0, 2, 3, 7]]), (0.0, 2.5, 7.5, 31.0));
    }

    #[test]
    fn a_window_holds_exactly_the_whole_canvas_values_there() {
        let img =
            RgbImage::from_fn(100, 70, |x, y| image::Rgb([(3 * x + y) as u8, (x * y % 251) as u8, (7 * y) as u8]));
        // same size, halved (the bilinear pass), and enlarged (the triangle filter first)
        for (scale, canvas) in [(1.0, (100, 96)), (0.64, (64, 64)), (1.6, (160, 128))] {
            let lb = Letterbox::fit(100, 70, canvas);
            assert_eq!(lb.scale, scale);
            let whole = canvas_tensor(&img, lb, (0, 0), canvas);
            let whole = whole.to_plain_array_view::<f32>().unwrap();
            let mut compared = 0;
            // windows inside the image, crossing its right or bottom edge into the padding
            let windows = [
                ((32, 32), (64, 32)),
                ((0, 32), (32, 64)),
                ((96, 0), (32, 32)),
                ((32, 0), (32, 32)),
                ((0, 32), (64, 32)),
            ];
            for (origin, window) in windows {
                if origin.0 + window.0 > canvas.0 || origin.1 + window.1 > canvas.1 {
                    continue;
                }
                compared += 1;
                let part = canvas_tensor(&img, lb, origin, window);
                let part = part.to_plain_array_view::<f32>().unwrap();
                assert_eq!(part.shape(), &[1, 3, window.1 as usize, window.0 as usize]);
                for ((_, c, y, x), v) in part.indexed_iter().map(|(i, v)| ((i[0], i[1], i[2], i[3]), *v)) {
                    let w = whole[[0, c, y + origin.1 as usize, x + origin.0 as usize]];
                    assert_eq!(v, w, "scale {scale} origin {origin:?} at c{c} y{y} x{x}");
                }
            }
            assert!(compared >= 2, "scale {scale}: {compared} windows compared");
        }
    }

    #[test]
    fn halved_is_the_bilinear_pass() {
        // every byte value and pair sum occurs; odd and even window corners
        let img = RgbImage::from_fn(200, 134, |x, y| {
            image::Rgb([(3 * x + 5 * y) as u8, (x * y % 256) as u8, (255 - (7 * x + y) % 256) as u8])
        });
        // what Letterbox::fit gives a 200×134 image on a 100×67 canvas, placed on larger ones
        let lb = Letterbox { scale: 0.5, width: 100, height: 67 };
        assert_eq!(Letterbox::fit(200, 134, (100, 67)), lb);
        // (and windows right of or below the placed image: all padding, as the general pass gives)
        for (origin, canvas) in [
            ((0, 0), (128, 96)),
            ((0, 0), (64, 32)),
            ((33, 7), (64, 64)),
            ((80, 50), (32, 32)),
            ((100, 3), (32, 32)),
            ((7, 67), (32, 32)),
        ] {
            let fast = bilinear_pass(&img, lb, origin, canvas, true);
            let general = bilinear_pass(&img, lb, origin, canvas, false);
            let (f, g) = (fast.try_as_plain_ram().unwrap(), general.try_as_plain_ram().unwrap());
            let (f, g) = (f.as_slice::<f32>().unwrap(), g.as_slice::<f32>().unwrap());
            assert_eq!(f.len(), g.len());
            for (i, (a, b)) in f.iter().zip(g).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{origin:?} {canvas:?} at {i}: {a} vs {b}");
            }
            // not all padding, but where the window lies outside the image
            let inside = origin.0 < 100 && origin.1 < 67;
            assert_eq!(f.iter().filter(|v| **v != 0.0).count() > f.len() / 4, inside, "{origin:?}");
        }
    }

    #[test]
    fn letterbox_upscales_small_and_shrinks_large() {
        let c = (CANVAS_WIDTH, CANVAS_HEIGHT);
        assert_eq!(Letterbox::fit(92, 112, c), Letterbox { scale: 3.0, width: 276, height: 336 });
        assert_eq!(Letterbox::fit(640, 480, c).scale, 1.0);
        let big = Letterbox::fit(1920, 1080, c);
        assert_eq!((big.width, big.height), (640, 360));
    }

    #[test]
    fn decodes_one_cell() {
        // stride 8 only has a face: cell (row 2, col 3), centre offset (0.5, 0.5), size e^1 · 8
        let n = |s: u32| ((CANVAS_WIDTH / s) * (CANVAS_HEIGHT / s)) as usize;
        let mut outs: Vec<Vec<f32>> = Vec::new();
        for per in [1, 1, 4, 10] {
            for s in STRIDES {
                outs.push(vec![0.0; per * n(s)]);
            }
        }
        let idx = 2 * 80 + 3;
        outs[0][idx] = 0.81; // cls_8
        outs[3][idx] = 1.0; // obj_8
        outs[6][idx * 4..idx * 4 + 4].copy_from_slice(&[0.5, 0.5, 1.0, 1.0]); // bbox_8
        outs[9][idx * 10] = 0.25; // kps_8
        let views: Vec<&[f32]> = outs.iter().map(|v| v.as_slice()).collect();
        let d = decode_yunet(&views, (CANVAS_WIDTH, CANVAS_HEIGHT), 0.5).unwrap();
        assert_eq!(d.len(), 1);
        assert!((d[0].score - 0.9).abs() < 1e-6);
        let e8 = 1f32.exp() * 8.0;
        assert!((d[0].bbox[0] - (3.5 * 8.0 - e8 / 2.0)).abs() < 1e-4);
        assert_eq!(d[0].landmarks[0], [(3.0 + 0.25) * 8.0, 2.0 * 8.0]);
        assert!(decode_yunet(&views[..4], (CANVAS_WIDTH, CANVAS_HEIGHT), 0.5).is_err());
    }
}
