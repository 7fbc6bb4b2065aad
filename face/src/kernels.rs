//! Three tract operators of our own, put in at load time between tract's declutter and its code
//! generation (`GraphPrep::Rewritten`; the graph as shipped never has them), each computing
//! exactly the floats of the nodes it replaces on x86-64 (see [`Depthwise3x3`] for aarch64). A
//! node a pass cannot replace exactly (another layout, padding, dilation, size) is left to tract.
//!
//! **PReLU as one in-place pass.**
//! The ONNX rewrite ([`crate::rewrite`]) turns `PRelu(x, a)` into `Max(x, Mul(x, a))`. tract then
//! runs two passes: the multiplication cannot work in `x`'s buffer (the `Max` still reads `x`), so
//! it copies `x` into a fresh tensor first and multiplies there, and the `Max` reads both
//! (SFace: 3.3 + 1.25 ms of its 16.6 ms in the per-node profile, most of it the copy and the
//! fresh buffer's first touch). [`ChannelPrelu`] computes the same `x.max(x * a_c)`, channel by
//! channel, in `x`'s own buffer when the plan hands the tensor over (it does when this node is
//! its last reader): one read and one write, no allocation.
//!
//! The pass looks for exactly that pattern in the decluttered typed model: a `Max` of an f32
//! tensor `x` and of `Mul(x, k)` where `k` is a constant holding one slope per index of one axis
//! of `x` (the channels) or one for all, the `Mul` read by nothing else. The floats are the same:
//! each output is `max(x, x·a)` with the same two IEEE operations as tract's kernels (parity
//! tests: the small net in [`crate::rewrite`]'s tests and the shipped models in
//! `face/tests/orl.rs`, difference 0).
//!
//! **2×2 max-pooling in one pass.** tract's `MaxPool` walks its four taps per output through a
//! generic window iterator (YuNet at 640×480: 4.2–4.5 ms for its four pools). [`MaxPool2x2`]
//! reads each pair of input rows once and writes the output row: `max` of the four, which is the
//! same float whatever the order. It replaces a `MaxPool` of kernel 2×2, stride 2, no padding, no
//! dilation, channels first (`NCHW` or `CHW`), over a contiguous f32 tensor of known size; odd
//! sizes drop the last row or column as the valid pool does.
//!
//! **3×3 depthwise convolutions over whole planes** ([`Depthwise3x3`], stride 1 or 2): each tap is
//! one contiguous run of tract's own vectorised depthwise loop over a zero-padded copy of the
//! plane, instead of tract's walk row by row (rows of 7–14 values in SFace's last layers; stride
//! 2 scalar). The batch normalisation, PReLU and ReLU that alone read its output are folded in
//! ([`absorb_post_ops`]).

use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec};
use tract_onnx::tract_core::ops::math::{Add, Max, Mul};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// `y = max(x, a_c · x)` over an f32 tensor, `a_c` the slope of channel `c`, the channels along
/// `axis` (tract's declutter drops the batch axis of a 1-image model, so the channels are not
/// always axis 1); one slope serves every element when only one is given.
#[derive(Debug, Clone)]
pub struct ChannelPrelu {
    slopes: Arc<[f32]>,
    axis: usize,
}

impl PartialEq for ChannelPrelu {
    fn eq(&self, other: &Self) -> bool {
        self.axis == other.axis && bits(&self.slopes) == bits(&other.slopes)
    }
}
impl Eq for ChannelPrelu {}

impl ChannelPrelu {
    /// Applies the slopes to `data`, laid out `outer × channels × plane`, in place.
    fn apply(&self, data: &mut [f32], channels: usize, plane: usize) {
        if plane == 0 {
            return;
        }
        for (i, chunk) in data.chunks_exact_mut(plane).enumerate() {
            let a = if self.slopes.len() == 1 { self.slopes[0] } else { self.slopes[i % channels] };
            for v in chunk {
                *v = v.max(*v * a);
            }
        }
    }
}

impl Op for ChannelPrelu {
    fn name(&self) -> StaticName {
        "ChannelPrelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelPrelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        // a copy only when another node still reads x
        let mut t = x.into_tensor();
        let shape = t.shape().to_vec();
        ensure!(self.axis < shape.len(), "ChannelPrelu on axis {} of a tensor {shape:?}", self.axis);
        let channels = shape[self.axis];
        ensure!(
            self.slopes.len() == 1 || self.slopes.len() == channels,
            "{} slopes for {channels} channels",
            self.slopes.len()
        );
        let plane: usize = shape[self.axis + 1..].iter().product();
        let natural = t.strides() == &*Tensor::natural_strides(&shape);
        ensure!(natural, "ChannelPrelu needs a contiguous tensor");
        self.apply(t.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?, channels, plane);
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for ChannelPrelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(self.axis < shape.len(), "ChannelPrelu on axis {} of {shape:?}", self.axis);
        if let (Ok(c), true) = (shape[self.axis].to_usize(), self.slopes.len() > 1) {
            ensure!(c == self.slopes.len(), "{} slopes for {c} channels", self.slopes.len());
        }
        Ok(tvec!(inputs[0].datum_type.fact(shape.clone())))
    }

    fn axes_mapping(&self, inputs: &[&TypedFact], outputs: &[&TypedFact]) -> TractResult<AxesMapping> {
        if self.slopes.len() == 1 {
            // element-wise with one slope: each axis of the output is the same axis of the input
            AxesMapping::natural(inputs, outputs)
        } else {
            // the slopes are tied to one axis: nothing may be moved, sliced or downsampled through
            AxesMapping::disconnected(inputs, outputs)
        }
    }

    as_op!();
}

/// The slopes of `k` and their axis if `k`, broadcast against a tensor of shape `x` (padded on
/// the left to its rank), holds one slope per index of a single axis of `x`, or a single slope
/// (axis 0 then).
fn channel_slopes(k: &Tensor, x: &[usize]) -> Option<(Vec<f32>, usize)> {
    if k.datum_type() != f32::datum_type() || k.rank() > x.len() {
        return None;
    }
    let mut shape = vec![1; x.len() - k.rank()];
    shape.extend_from_slice(k.shape());
    let axes: Vec<usize> = (0..shape.len()).filter(|&i| shape[i] != 1).collect();
    let axis = match axes[..] {
        [] => 0,
        [a] if shape[a] == x[a] => a,
        _ => return None,
    };
    let v = floats(k)?;
    (v.len() == 1 || v.len() == x[axis]).then_some((v, axis))
}

/// The values of an f32 tensor.
fn floats(t: &Tensor) -> Option<Vec<f32>> {
    if t.datum_type() != f32::datum_type() {
        return None;
    }
    Some(t.to_plain_array_view::<f32>().ok()?.iter().copied().collect())
}

/// Whether a pool's or convolution's dilations are all 1 (or not given).
fn undilated(d: &Option<TVec<usize>>) -> bool {
    d.as_ref().is_none_or(|d| d.iter().all(|v| *v == 1))
}

/// Bit patterns, to compare constants exactly (`Eq` on the operators).
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Replaces every `Max(x, Mul(x, slopes))` of `model` (see the module's doc) by one
/// [`ChannelPrelu`] node; returns how many.
pub fn fuse_prelu(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        if !node.op_as::<TypedBinOp>().is_some_and(|b| b.0.is::<Max>()) || node.inputs.len() != 2 {
            continue;
        }
        let mut found = None;
        for (xi, mi) in [(0, 1), (1, 0)] {
            let (x, m) = (node.inputs[xi], node.inputs[mi]);
            let mul = model.node(m.node);
            if !mul.op_as::<TypedBinOp>().is_some_and(|b| b.0.is::<Mul>()) || mul.inputs.len() != 2 {
                continue;
            }
            if model.outlet_successors(m).len() != 1 {
                continue;
            }
            let k = match (mul.inputs[0] == x, mul.inputs[1] == x) {
                (true, false) => mul.inputs[1],
                (false, true) => mul.inputs[0],
                _ => continue,
            };
            let xf = model.outlet_fact(x)?;
            let Some(shape) = xf.shape.as_concrete() else { continue };
            if xf.datum_type != f32::datum_type() || shape.is_empty() {
                continue;
            }
            let Some(konst) = model.outlet_fact(k)?.konst.clone() else { continue };
            if let Some(slopes) = channel_slopes(&konst, shape) {
                found = Some((x, slopes));
                break;
            }
        }
        let Some((x, (slopes, axis))) = found else { continue };
        let name = format!("{}.channel_prelu", model.node(id).name);
        fused += usize::from(replace(model, x, id.into(), name, ChannelPrelu { slopes: slopes.into(), axis })?);
    }
    Ok(fused)
}

/// Puts `op`, reading `x`, in place of what `model` computes at `out`, if `op` gives the same
/// output shape there; returns whether it did (an operator that cannot take `x` leaves the model
/// as it was).
fn replace(model: &mut TypedModel, x: OutletId, out: OutletId, name: String, op: impl TypedOp) -> TractResult<bool> {
    let mut patch = TypedModelPatch::default();
    let tapped = patch.tap_model(model, x)?;
    let Ok(wire) = patch.wire_node(name, op, &[tapped]) else { return Ok(false) };
    if patch.outlet_fact(wire[0])?.shape != model.outlet_fact(out)?.shape {
        return Ok(false);
    }
    patch.shunt_outside(model, out, wire[0])?;
    patch.apply(model)?;
    Ok(true)
}

/// The input of a single-input operator, checked to be laid out contiguously, and its shape.
fn contiguous_input(inputs: TVec<TValue>, op: &str) -> TractResult<(TValue, Vec<usize>)> {
    let x = args_1!(inputs);
    let shape = x.shape().to_vec();
    ensure!(x.strides() == &*Tensor::natural_strides(&shape), "{op} needs a contiguous tensor");
    Ok((x, shape))
}

/// `y = 2×2 max-pool of x`, stride 2, no padding, over an `… × H × W` f32 tensor (the leading
/// axes are planes: batch and channels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool2x2;

impl MaxPool2x2 {
    /// Pools `src` (planes of `h × w`) into `dst` (planes of `⌊h/2⌋ × ⌊w/2⌋`).
    fn apply(src: &[f32], dst: &mut [f32], h: usize, w: usize) {
        let (oh, ow) = (h / 2, w / 2);
        if oh == 0 || ow == 0 {
            return;
        }
        for (plane, out) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(oh * ow)) {
            for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
                let r0 = &plane[2 * oy * w..][..2 * ow];
                let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
                for ((o, a), b) in row.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                    // from f32::MIN, the taps in tract's order, as its pool does (an all -inf
                    // block gives f32::MIN there too)
                    *o = f32::MIN.max(a[0]).max(a[1]).max(b[0]).max(b[1]);
                }
            }
        }
    }

    fn output_shape<D: DimLike>(shape: &[D]) -> TractResult<TVec<D>> {
        ensure!(shape.len() >= 2, "MaxPool2x2 needs … × H × W, got {} axes", shape.len());
        let mut out: TVec<D> = shape.into();
        let r = out.len();
        out[r - 2] = out[r - 2].clone() / 2;
        out[r - 1] = out[r - 1].clone() / 2;
        Ok(out)
    }
}

impl Op for MaxPool2x2 {
    fn name(&self) -> StaticName {
        "MaxPool2x2".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2x2 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, shape) = contiguous_input(inputs, "MaxPool2x2")?;
        let out_shape = Self::output_shape(&shape)?;
        let (h, w) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        // SAFETY: `apply` writes every element of every output plane (none when a side is 0)
        let mut y = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        let src = x.try_as_plain_ram()?.as_slice::<f32>()?;
        Self::apply(src, y.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?, h, w);
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for MaxPool2x2 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(Self::output_shape(&inputs[0].shape)?)))
    }

    as_op!();
}

/// Replaces every `MaxPool` of `model` that [`MaxPool2x2`] computes exactly (see the module's
/// doc) by one; returns how many.
pub fn fuse_maxpool(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(pool) = node.op_as::<MaxPool>() else { continue };
        let p = &pool.pool_spec;
        let plain = pool.with_index_outputs.is_none()
            && matches!(p.data_format, DataFormat::NCHW | DataFormat::CHW)
            && *p.kernel_shape == [2, 2]
            && p.strides.as_deref() == Some(&[2, 2][..])
            && undilated(&p.dilations)
            && match &p.padding {
                PaddingSpec::Valid => true,
                PaddingSpec::Explicit(b, a) | PaddingSpec::ExplicitOnnxPool(b, a, false) => {
                    b.iter().chain(a.iter()).all(|d| *d == 0)
                }
                _ => false,
            };
        let x = node.inputs[0];
        let xf = model.outlet_fact(x)?;
        if !plain || xf.datum_type != f32::datum_type() || xf.shape.as_concrete().is_none() || node.outputs.len() != 1 {
            continue;
        }
        let name = format!("{}.2x2", node.name);
        fused += usize::from(replace(model, x, id.into(), name, MaxPool2x2)?);
    }
    Ok(fused)
}

/// A 3×3 depthwise convolution (one filter per channel), stride 1 or 2, any padding, over an
/// `N × C × H × W` (or `C × H × W`) f32 tensor: `y = bias_c + Σ w_c[ky][kx] · x[s·oy + ky − pt][s·ox + kx − pl]`,
/// the nine products added to the bias one by one in the kernel's order, as tract's own
/// depthwise kernel adds them.
///
/// tract walks each output's taps through a zone iterator (and, with stride 2, scalar). Here
/// each channel is copied once into a zero-padded plane, split by the stride into its phase
/// planes (four for stride 2: even and odd rows × even and odd columns), so that every tap is one
/// contiguous multiply-add over the whole plane (vectorised): `acc[q] += w · phase[q + offset]`.
/// A padded tap adds `w · 0`, which leaves a sum unchanged (but for the sign of a zero sum), so
/// the floats are those of tract's kernel, which skips those taps. (On aarch64 tract's NEON loop
/// fuses each multiply and add into one rounding: last-bit differences from the plain sum, as
/// tract's own depthwise convolution has there.)
#[derive(Debug, Clone)]
pub struct Depthwise3x3 {
    /// `C × 9`, row-major per channel.
    weights: Arc<[f32]>,
    /// One per channel, or one for all.
    bias: Arc<[f32]>,
    stride: usize,
    /// (top, left, bottom, right).
    pads: [usize; 4],
    /// Element-wise steps done on each output plane once it is summed, in order (the nodes that
    /// followed the convolution in the graph; see [`absorb_post_ops`]).
    post: Vec<(PostOp, Arc<[f32]>)>,
}

/// An element-wise step after a [`Depthwise3x3`], with one constant per channel or one for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOp {
    /// `y = x · k` (a batch normalisation's scale).
    Mul,
    /// `y = x + k` (its shift).
    Add,
    /// `y = max(x, k)` (a ReLU: `k = 0`).
    Max,
    /// `y = max(x, x · k)` (a [`ChannelPrelu`]).
    Prelu,
}

impl PostOp {
    #[cfg(test)]
    fn one(self, v: f32, k: f32) -> f32 {
        match self {
            PostOp::Mul => v * k,
            PostOp::Add => v + k,
            PostOp::Max => v.max(k),
            PostOp::Prelu => v.max(v * k),
        }
    }

    fn run(self, plane: &mut [f32], k: f32) {
        match self {
            PostOp::Mul => plane.iter_mut().for_each(|v| *v *= k),
            PostOp::Add => plane.iter_mut().for_each(|v| *v += k),
            PostOp::Max => plane.iter_mut().for_each(|v| *v = v.max(k)),
            PostOp::Prelu => plane.iter_mut().for_each(|v| *v = v.max(*v * k)),
        }
    }
}

impl PartialEq for Depthwise3x3 {
    fn eq(&self, other: &Self) -> bool {
        self.stride == other.stride
            && self.pads == other.pads
            && bits(&self.weights) == bits(&other.weights)
            && bits(&self.bias) == bits(&other.bias)
            && self.post.len() == other.post.len()
            && self.post.iter().zip(&other.post).all(|((a, x), (b, y))| a == b && bits(x) == bits(y))
    }
}
impl Eq for Depthwise3x3 {}

impl Depthwise3x3 {
    fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let [pt, pl, pb, pr] = self.pads;
        let (hp, wp) = (h + pt + pb, w + pl + pr);
        (hp >= 3 && wp >= 3).then(|| ((hp - 3) / self.stride + 1, (wp - 3) / self.stride + 1))
    }

    /// Convolves `src` (planes of `h × w`, channel `i % channels` for plane `i`) into `dst`, with
    /// tract's depthwise inner loop for this host when it has one.
    fn apply(&self, src: &[f32], dst: &mut [f32], channels: usize, h: usize, w: usize) {
        let kernel = tract_onnx::tract_core::tract_linalg::routines::depthwise_w_f32();
        self.apply_with(src, dst, channels, h, w, kernel);
    }

    /// [`Self::apply`] with `kernel` (tract's inner loop: the same multiply and add per tap, in
    /// the same order, as the plain loop used without one).
    fn apply_with(
        &self,
        src: &[f32],
        dst: &mut [f32],
        channels: usize,
        h: usize,
        w: usize,
        kernel: Option<tract_onnx::tract_core::tract_linalg::routines::DepthwiseWF32>,
    ) {
        let Some((oh, ow)) = self.output_hw(h, w) else { return };
        let [pt, pl, pb, pr] = self.pads;
        let s = self.stride;
        let (hp, wp) = (h + pt + pb, w + pl + pr);
        // phase planes: rows and columns of the padded plane with the same remainder mod s; a
        // common row length and one spare row so every tap's slice stays inside
        let (rows, cols) = (hp.div_ceil(s) + 1, wp.div_ceil(s));
        let phase_len = rows * cols;
        let mut phases = vec![0.0f32; s * s * phase_len];
        let mut acc = vec![0.0f32; oh * cols];
        // where each tap's reads start in `phases`, in the kernel's order
        let mut offsets = [0isize; 9];
        for (t, o) in offsets.iter_mut().enumerate() {
            let (ky, kx) = (t / 3, t % 3);
            *o = (((ky % s) * s + kx % s) * phase_len + (ky / s) * cols + kx / s) as isize;
        }
        let fits = offsets.iter().all(|o| *o as usize + acc.len() <= phases.len());
        assert!(fits, "depthwise taps read past the phase planes");
        for (i, (plane, out)) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(oh * ow)).enumerate() {
            let c = i % channels;
            for (y, row) in plane.chunks_exact(w).enumerate() {
                let yy = y + pt;
                if s == 1 {
                    phases[yy * cols + pl..][..w].copy_from_slice(row);
                    continue;
                }
                // stride 2: padded column x + pl goes to phase (x + pl) % 2, index (x + pl) / 2;
                // pairs (x, x + 1) = (2m, 2m + 1) go to two phases, one index apart at most
                let (py, r) = (yy % 2, yy / 2);
                let row_at = |px: usize| (py * 2 + px) * phase_len + r * cols;
                let (ea, oa) = (row_at(pl % 2), row_at(1 - pl % 2));
                let (first, second) = (pl / 2, pl.div_ceil(2));
                let pairs = row.chunks_exact(2);
                if let [last] = pairs.remainder() {
                    let xx = w - 1 + pl;
                    phases[row_at(xx % 2) + xx / 2] = *last;
                }
                let (lo, hi) = phases.split_at_mut(oa.max(ea));
                let (a_dst, b_dst) = if ea < oa {
                    (&mut lo[ea + first..], &mut hi[second..])
                } else {
                    (&mut hi[first..], &mut lo[oa + second..])
                };
                for ((p, a), b) in pairs.zip(a_dst.iter_mut()).zip(b_dst.iter_mut()) {
                    *a = p[0];
                    *b = p[1];
                }
            }
            let bias = if self.bias.len() == 1 { self.bias[0] } else { self.bias[c] };
            let wc = &self.weights[9 * c..9 * c + 9];
            match kernel {
                // SAFETY: every tap reads `acc.len()` floats from its offset, inside `phases`
                // (checked with `fits` above); the CPU has the kernel's instructions (tract's
                // registry chose it for this host)
                Some(ker) => unsafe { ker(phases.as_ptr(), acc.as_mut_ptr(), wc, &offsets, bias, acc.len(), 1) },
                None => {
                    acc.fill(bias);
                    for (k, start) in wc.iter().zip(offsets) {
                        for (a, x) in acc.iter_mut().zip(&phases[start as usize..]) {
                            *a += k * *x;
                        }
                    }
                }
            }
            for (o, a) in out.chunks_exact_mut(ow).zip(acc.chunks_exact(cols)) {
                o.copy_from_slice(&a[..ow]);
            }
            for (op, k) in &self.post {
                op.run(out, if k.len() == 1 { k[0] } else { k[c] });
            }
        }
    }
}

impl Op for Depthwise3x3 {
    fn name(&self) -> StaticName {
        "Depthwise3x3".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Depthwise3x3 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, shape) = contiguous_input(inputs, "Depthwise3x3")?;
        let out_shape = self.output_shape(&shape)?;
        let r = shape.len();
        let channels = shape[r - 3];
        // (the fusing pass never puts this operator on an empty input)
        ensure!(shape[r - 2] > 0 && shape[r - 1] > 0, "Depthwise3x3 on an empty input {shape:?}");
        // SAFETY: `apply` writes every element of every output plane of a non-empty input
        let mut y = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        let src = x.try_as_plain_ram()?.as_slice::<f32>()?;
        self.apply(src, y.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?, channels, shape[r - 2], shape[r - 1]);
        Ok(tvec!(y.into_tvalue()))
    }
}

impl Depthwise3x3 {
    fn output_shape(&self, shape: &[usize]) -> TractResult<TVec<usize>> {
        let r = shape.len();
        ensure!(r >= 3, "Depthwise3x3 needs … × C × H × W, got {shape:?}");
        ensure!(self.weights.len() == 9 * shape[r - 3], "{} weights for {} channels", self.weights.len(), shape[r - 3]);
        let (oh, ow) = self.output_hw(shape[r - 2], shape[r - 1]).context("input smaller than the kernel")?;
        let mut out: TVec<usize> = shape.into();
        out[r - 2] = oh;
        out[r - 1] = ow;
        Ok(out)
    }
}

impl TypedOp for Depthwise3x3 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0].shape.as_concrete().context("Depthwise3x3 needs a known input size")?;
        Ok(tvec!(inputs[0].datum_type.fact(self.output_shape(shape)?)))
    }

    as_op!();
}

/// Replaces every convolution of `model` that [`Depthwise3x3`] computes (a float, channels-first,
/// OIHW, 3×3, stride 1 or 2, undilated convolution with one group per channel, constant weights
/// and bias) by one; returns how many.
pub fn fuse_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else { continue };
        let p = &conv.pool_spec;
        let stride = match p.strides.as_deref() {
            None => 1,
            Some([a, b]) if a == b && (*a == 1 || *a == 2) => *a,
            _ => continue,
        };
        let shaped = conv.q_params.is_none()
            && matches!(p.data_format, DataFormat::NCHW | DataFormat::CHW)
            && matches!(conv.kernel_fmt, KernelFormat::OIHW)
            && *p.kernel_shape == [3, 3]
            && undilated(&p.dilations)
            && conv.group == p.input_channels
            && p.input_channels == p.output_channels
            && node.inputs.len() == 3
            && node.outputs.len() == 1;
        if !shaped {
            continue;
        }
        let x = node.inputs[0];
        let xf = model.outlet_fact(x)?;
        let Some(shape) = xf.shape.as_concrete() else { continue };
        let (kf, bf) = (model.outlet_fact(node.inputs[1])?, model.outlet_fact(node.inputs[2])?);
        let (Some(k), Some(b)) = (kf.konst.clone(), bf.konst.clone()) else { continue };
        let c = p.input_channels;
        let (Some(weights), Some(bias)) = (floats(&k), floats(&b)) else { continue };
        if xf.datum_type != f32::datum_type()
            || shape.len() < 3
            || shape[shape.len() - 3] != c
            || k.shape() != [c, 1, 3, 3]
            || !(bias.len() == 1 || bias.len() == c)
        {
            continue;
        }
        let hw = &shape[shape.len() - 2..];
        let padded = p.padding.compute(hw, &[3, 3], &[1, 1], &[stride, stride]);
        let pads = [padded[0].pad_before, padded[1].pad_before, padded[0].pad_after, padded[1].pad_after];
        let op = Depthwise3x3 { weights: weights.into(), bias: bias.into(), stride, pads, post: Vec::new() };
        // an empty input stays tract's (one smaller than the kernel too: `replace` finds no
        // output shape for it)
        if hw.contains(&0) {
            continue;
        }
        let name = format!("{}.dw3x3", node.name);
        fused += usize::from(replace(model, x, id.into(), name, op)?);
    }
    Ok(fused)
}

/// Folds into a [`Depthwise3x3`] the element-wise node that alone reads its output, when that
/// node is a `Mul`, `Add` or `Max` with a constant holding one value per channel or one for all,
/// or a [`ChannelPrelu`] on the channel axis; repeats until no node can be folded. Returns how
/// many were. Each step is the same float operation as the node it replaces.
pub fn absorb_post_ops(model: &mut TypedModel) -> TractResult<usize> {
    let mut absorbed = 0;
    'again: loop {
        for id in model.eval_order()? {
            let node = model.node(id);
            let Some(dw) = node.op_as::<Depthwise3x3>() else { continue };
            let out = OutletId::new(id, 0);
            let succ = model.outlet_successors(out);
            if succ.len() != 1 || model.output_outlets()?.contains(&out) {
                continue;
            }
            let next = model.node(succ[0].node);
            let fact = model.outlet_fact(out)?;
            let Some(shape) = fact.shape.as_concrete().map(|s| s.to_vec()) else { continue };
            if shape.len() < 3 || next.outputs.len() != 1 {
                continue;
            }
            let channel_axis = shape.len() - 3;
            let per_channel =
                |v: Vec<f32>, axis: usize| (v.len() == 1 || axis == channel_axis).then(|| Arc::<[f32]>::from(v));
            let step = if let Some(p) = next.op_as::<ChannelPrelu>() {
                per_channel(p.slopes.to_vec(), p.axis).map(|k| (PostOp::Prelu, k))
            } else if let Some(bin) = next.op_as::<TypedBinOp>() {
                let kind = [
                    (bin.0.is::<Mul>(), PostOp::Mul),
                    (bin.0.is::<Add>(), PostOp::Add),
                    (bin.0.is::<Max>(), PostOp::Max),
                ]
                .into_iter()
                .find_map(|(is, kind)| is.then_some(kind));
                let konst = match next.inputs.iter().find(|i| **i != out) {
                    Some(o) if next.inputs.len() == 2 => model.outlet_fact(*o)?.konst.clone(),
                    _ => None,
                };
                match (kind, konst) {
                    (Some(kind), Some(k)) => {
                        channel_slopes(&k, &shape).and_then(|(v, axis)| per_channel(v, axis)).map(|k| (kind, k))
                    }
                    _ => None,
                }
            } else {
                None
            };
            let Some(step) = step else { continue };
            let mut fused = dw.clone();
            fused.post.push(step);
            let name = format!("{}+{}", node.name, next.name);
            if replace(model, node.inputs[0], next.id.into(), name, fused)? {
                absorbed += 1;
                continue 'again;
            }
        }
        return Ok(absorbed);
    }
}

/// How many nodes of `plan` run tract operator `op`.
pub(crate) fn operator_count(plan: &TypedSimplePlan, op: &str) -> usize {
    plan.model().nodes().iter().filter(|n| n.op().name() == op).count()
}

/// The optimised model for `model`: with [`fuse_prelu`], [`fuse_maxpool`], [`fuse_depthwise`]
/// and [`absorb_post_ops`] between tract's declutter and its code generation when `fuse` is set,
/// as tract's `into_optimized` alone otherwise.
pub fn optimized(model: InferenceModel, fuse: bool) -> TractResult<TypedModel> {
    if !fuse {
        return model.into_optimized();
    }
    let mut typed = model.into_typed()?.into_decluttered()?;
    fuse_prelu(&mut typed)?;
    fuse_maxpool(&mut typed)?;
    fuse_depthwise(&mut typed)?;
    absorb_post_ops(&mut typed)?;
    typed.into_optimized()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_are_applied_per_channel_and_once_for_all() {
        let op = ChannelPrelu { slopes: vec![0.5, 0.25].into(), axis: 1 };
        // N = 2, C = 2, plane = 2
        let mut d = [-2.0, 2.0, -4.0, 4.0, -1.0, 1.0, -8.0, 0.0];
        op.apply(&mut d, 2, 2);
        assert_eq!(d, [-1.0, 2.0, -1.0, 4.0, -0.5, 1.0, -2.0, 0.0]);
        let one = ChannelPrelu { slopes: vec![0.1].into(), axis: 0 };
        let mut d = [-10.0, 3.0, -20.0];
        one.apply(&mut d, 3, 1);
        assert_eq!(d, [-1.0, 3.0, -2.0]);
    }

    #[test]
    fn the_pool_takes_the_largest_of_each_two_by_two_block() {
        // one plane 3 × 5: the last row and column are dropped
        let src = [1.0, 5.0, -1.0, -3.0, 9.0, 2.0, 0.0, -2.0, -4.0, 9.0, 8.0, 8.0, 8.0, 8.0, 8.0];
        let mut dst = [0.0; 2];
        MaxPool2x2::apply(&src, &mut dst, 3, 5);
        assert_eq!(dst, [5.0, -1.0]);
        // two planes 2 × 2
        let mut dst = [0.0; 2];
        MaxPool2x2::apply(&[-1.0, -2.0, -3.0, -0.5, 4.0, 3.0, 2.0, 1.0], &mut dst, 2, 2);
        assert_eq!(dst, [-0.5, 4.0]);
    }

    /// A 3×3 depthwise convolution output by output: the bias, then the products of the taps
    /// inside the image in the kernel's order (what tract's kernel computes).
    fn depthwise_reference(op: &Depthwise3x3, src: &[f32], channels: usize, h: usize, w: usize) -> Vec<f32> {
        let (oh, ow) = op.output_hw(h, w).unwrap();
        let [pt, pl, ..] = op.pads;
        let mut out = Vec::new();
        for (i, plane) in src.chunks_exact(h * w).enumerate() {
            let c = i % channels;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = if op.bias.len() == 1 { op.bias[0] } else { op.bias[c] };
                    for t in 0..9 {
                        let (y, x) = (
                            (op.stride * oy + t / 3) as isize - pt as isize,
                            (op.stride * ox + t % 3) as isize - pl as isize,
                        );
                        if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                            sum += op.weights[9 * c + t] * plane[y as usize * w + x as usize];
                        }
                    }
                    for (step, k) in &op.post {
                        sum = step.one(sum, if k.len() == 1 { k[0] } else { k[c] });
                    }
                    out.push(sum);
                }
            }
        }
        out
    }

    #[test]
    fn depthwise_gives_the_floats_of_the_tap_by_tap_sum() {
        let kernel = tract_onnx::tract_core::tract_linalg::routines::depthwise_w_f32();
        // x86-64 with AVX and aarch64 have tract's vectorised inner loop; the plain loop is
        // checked too
        #[cfg(target_arch = "x86_64")]
        assert_eq!(kernel.is_some(), std::arch::is_x86_feature_detected!("avx"));
        #[cfg(target_arch = "aarch64")]
        assert!(kernel.is_some(), "no depthwise kernel on this aarch64 host");
        let channels = 3;
        let weights: Vec<f32> = (0..27).map(|i| ((i as f32) * 1.37).sin()).collect();
        // sizes odd and even, wider than the kernel's 32-lane blocks and narrower than 8
        for (h, w) in [(12, 16), (13, 11), (7, 5), (9, 40), (3, 3)] {
            let src: Vec<f32> = (0..2 * channels * h * w).map(|i| ((i as f32) * 0.731).cos() * 3.0).collect();
            for stride in [1, 2] {
                for pads in [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 1, 0], [2, 1, 0, 2]] {
                    for bias in [vec![0.0], vec![0.5, -1.0, 2.0]] {
                        // with the steps folded in after it, or none
                        let post = if bias.len() == 1 {
                            Vec::new()
                        } else {
                            vec![
                                (PostOp::Mul, Arc::from(vec![1.5, -0.5, 2.0])),
                                (PostOp::Add, Arc::from(vec![0.25])),
                                (PostOp::Prelu, Arc::from(vec![0.1, 0.2, 0.3])),
                                (PostOp::Max, Arc::from(vec![-0.4])),
                            ]
                        };
                        let op =
                            Depthwise3x3 { weights: weights.clone().into(), bias: bias.into(), stride, pads, post };
                        let Some((oh, ow)) = op.output_hw(h, w) else { continue };
                        let expected = depthwise_reference(&op, &src, channels, h, w);
                        for k in [kernel, None] {
                            let mut out = vec![f32::NAN; 2 * channels * oh * ow];
                            op.apply_with(&src, &mut out, channels, h, w, k);
                            let what = format!("{h}x{w} stride {stride} pads {pads:?} kernel {}", k.is_some());
                            assert_eq!(out.len(), expected.len(), "{what}");
                            // x86-64 (AVX, or the plain loop): equal floats (a zero's sign may
                            // differ: a padded tap adds w·0). tract's aarch64 kernel fuses each
                            // multiply-add (one rounding, not two): last-bit differences,
                            // measured under qemu at most 2 ulp of the output
                            let fused = cfg!(target_arch = "aarch64") && k.is_some();
                            for (j, (a, b)) in out.iter().zip(&expected).enumerate() {
                                let close = (a - b).abs() <= 1e-5 * b.abs().max(1.0);
                                assert!(a == b || (fused && close), "{what} at {j}: {a} vs {b}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn only_per_channel_or_single_slopes_are_taken() {
        let t = |shape: &[usize], v: &[f32]| Tensor::from_shape(shape, v).unwrap();
        let x = [1, 2, 5, 6];
        assert_eq!(channel_slopes(&t(&[1, 2, 1, 1], &[0.1, 0.2]), &x), Some((vec![0.1, 0.2], 1)));
        assert_eq!(channel_slopes(&t(&[2, 1, 1], &[0.1, 0.2]), &x), Some((vec![0.1, 0.2], 1)));
        assert_eq!(channel_slopes(&t(&[1], &[0.3]), &x), Some((vec![0.3], 0)));
        // the batch axis dropped by tract: channels first
        assert_eq!(channel_slopes(&t(&[2, 1, 1], &[0.1, 0.2]), &[2, 5, 6]), Some((vec![0.1, 0.2], 0)));
        // along W
        assert_eq!(channel_slopes(&t(&[6], &[0.0; 6]), &x), Some((vec![0.0; 6], 3)));
        // two axes, another channel count, more axes than the tensor
        assert_eq!(channel_slopes(&t(&[2, 5, 1], &[0.0; 10]), &x), None);
        assert_eq!(channel_slopes(&t(&[1, 3, 1, 1], &[0.1, 0.2, 0.3]), &x), None);
        assert_eq!(channel_slopes(&t(&[1, 1, 2, 1, 1], &[0.1, 0.2]), &x), None);
    }
}
