//! Two tract operators of our own, put in at load time between tract's declutter and its code
//! generation (`GraphPrep::Rewritten`; the graph as shipped never has them), each computing
//! exactly the floats of the nodes it replaces.
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

use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{MaxPool, PaddingSpec};
use tract_onnx::tract_core::ops::math::{Max, Mul};
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
        self.axis == other.axis
            && self.slopes.len() == other.slopes.len()
            && self.slopes.iter().zip(other.slopes.iter()).all(|(a, b)| a.to_bits() == b.to_bits())
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
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    fn axes_mapping(&self, inputs: &[&TypedFact], outputs: &[&TypedFact]) -> TractResult<AxesMapping> {
        // element-wise: each axis of the output is the same axis of the input
        AxesMapping::natural(inputs, outputs)
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
    let v = k.to_plain_array_view::<f32>().ok()?.iter().copied().collect::<Vec<f32>>();
    (v.len() == 1 || v.len() == x[axis]).then_some((v, axis))
}

/// Replaces every `Max(x, Mul(x, slopes))` of `model` (see the module's doc) by one
/// [`ChannelPrelu`] node; returns how many. The replaced nodes are left unreachable for the next
/// declutter to remove.
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
            if xf.datum_type != f32::datum_type() || shape.is_empty() || model.outlet_fact(id.into())?.shape != xf.shape
            {
                continue;
            }
            let Some(konst) = model.outlet_fact(k)?.konst.clone() else { continue };
            if let Some(slopes) = channel_slopes(&konst, shape) {
                found = Some((x, slopes));
                break;
            }
        }
        let Some((x, (slopes, axis))) = found else { continue };
        let mut patch = TypedModelPatch::default();
        let tapped = patch.tap_model(model, x)?;
        let name = format!("{}.channel_prelu", model.node(id).name);
        let out = patch.wire_node(name, ChannelPrelu { slopes: slopes.into(), axis }, &[tapped])?[0];
        patch.shunt_outside(model, id.into(), out)?;
        patch.apply(model)?;
        fused += 1;
    }
    Ok(fused)
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
                    *o = a[0].max(a[1]).max(b[0].max(b[1]));
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
        let x = args_1!(inputs);
        let shape = x.shape().to_vec();
        ensure!(x.strides() == &*Tensor::natural_strides(&shape), "MaxPool2x2 needs a contiguous tensor");
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
        let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|d| *d == 1));
        let plain = pool.with_index_outputs.is_none()
            && matches!(p.data_format, DataFormat::NCHW | DataFormat::CHW)
            && *p.kernel_shape == [2, 2]
            && p.strides.as_deref() == Some(&[2, 2][..])
            && ones(&p.dilations)
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
        let mut patch = TypedModelPatch::default();
        let tapped = patch.tap_model(model, x)?;
        let out = patch.wire_node(format!("{}.2x2", node.name), MaxPool2x2, &[tapped])?[0];
        if patch.outlet_fact(out)?.shape != model.outlet_fact(id.into())?.shape {
            continue;
        }
        patch.shunt_outside(model, id.into(), out)?;
        patch.apply(model)?;
        fused += 1;
    }
    Ok(fused)
}

/// How many nodes of `plan` run tract operator `op`.
pub(crate) fn operator_count(plan: &TypedSimplePlan, op: &str) -> usize {
    plan.model().nodes().iter().filter(|n| n.op().name() == op).count()
}

/// The optimised model for `model`: with [`fuse_prelu`] and [`fuse_maxpool`] between tract's
/// declutter and its code generation when `fuse` is set, as tract's `into_optimized` alone
/// otherwise.
pub fn optimized(model: InferenceModel, fuse: bool) -> TractResult<TypedModel> {
    if !fuse {
        return model.into_optimized();
    }
    let mut typed = model.into_typed()?.into_decluttered()?;
    fuse_prelu(&mut typed)?;
    fuse_maxpool(&mut typed)?;
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
