//! Graph rewrites done once at load time, on the ONNX protobuf, after the file's fingerprint is
//! checked (the card and the gallery binding still name the file as shipped).
//!
//! **PReLU as Max.** tract expands `PRelu(x, a)` into a multiplication, a comparison and a
//! select (three passes over the tensor and a boolean tensor). For slopes `a ≤ 1` the same
//! function is `max(x, a·x)`: for `x ≥ 0`, `a·x ≤ x`; for `x < 0`, `a·x ≥ x`. That is two
//! passes (`Mul`, `Max`) that tract runs as plain element-wise kernels. A PReLU with a slope
//! above 1, or slopes that are not a float initializer, is left as it is.
//!
//! **PReLU with slopes above 1.** For `a > 1`, `PReLU(x) = min(x, a·x) = −max(−x, −a·x)`. Where
//! the PReLU's input comes from a `BatchNormalization` and its output goes only to convolutions,
//! the channels with `a > 1` are negated by the normalisation (its scale and shift times −1) and
//! negated back by the convolutions' weights on those channels, so `max(u, a·u)` serves every
//! channel. Negation is exact in floating point, so the result is bit for bit the same.
//!
//! Both rewrites are exact: the same floats are multiplied and compared (parity tests against
//! the graph as shipped, `face/tests/orl.rs`). The `Max(x, Mul(x, a))` they leave, 3×3
//! depthwise convolutions and 2×2 max-pools then become operators of our own in tract's typed
//! graph: [`crate::kernels`].

use prost::Message;
use tract_onnx::pb;

/// What the rewrites changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// PReLU nodes now `Mul` + `Max`.
    pub prelu: usize,
    /// PReLU nodes left alone (a slope above 1 that could not be folded, or slopes not found as
    /// a float initializer).
    pub kept: usize,
    /// Of `prelu`, those with slopes above 1 whose channels were negated around them (see
    /// [`fold_signs`]).
    pub sign_folded: usize,
}

impl Rewritten {
    fn any(&self) -> bool {
        self.prelu > 0
    }
}

/// The float values of initializer `name`, if it is a float tensor.
fn float_initializer(graph: &pb::GraphProto, name: &str) -> Option<Vec<f32>> {
    let t = graph.initializer.iter().find(|t| t.name == name)?;
    if t.data_type != pb::tensor_proto::DataType::Float as i32 {
        return None;
    }
    if !t.float_data.is_empty() {
        return Some(t.float_data.clone());
    }
    if t.raw_data.len() % 4 != 0 {
        return None;
    }
    Some(t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Rewrites every PReLU whose slopes are all ≤ 1, or whose channels with larger slopes
/// [`fold_signs`] could negate, as `Max(x, Mul(x, slope))`, in place.
pub fn prelu_as_max(model: &mut pb::ModelProto) -> Rewritten {
    let folded = fold_signs(model);
    let Some(graph) = model.graph.as_mut() else { return Rewritten::default() };
    let mut out = Rewritten { sign_folded: folded.len(), ..Default::default() };
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let slopes = (node.op_type == "PRelu" && node.input.len() == 2 && node.output.len() == 1)
            .then(|| float_initializer(graph, &node.input[1]))
            .flatten()
            .filter(|a| !a.is_empty());
        let Some(slopes) = slopes else {
            out.kept += usize::from(node.op_type == "PRelu");
            nodes.push(node);
            continue;
        };
        if slopes.iter().any(|&a| a.is_nan() || (a > 1.0 && !folded.contains(&node.output[0]))) {
            out.kept += 1;
            nodes.push(node);
            continue;
        }
        let scaled = format!("{}__prelu_scaled", node.output[0]);
        nodes.push(pb::NodeProto {
            name: format!("{}__mul", node.output[0]),
            op_type: "Mul".into(),
            input: node.input.clone(),
            output: vec![scaled.clone()],
            ..Default::default()
        });
        nodes.push(pb::NodeProto {
            name: format!("{}__max", node.output[0]),
            op_type: "Max".into(),
            input: vec![node.input[0].clone(), scaled],
            output: node.output.clone(),
            ..Default::default()
        });
        out.prelu += 1;
    }
    graph.node = nodes;
    out
}

fn set_float_initializer(graph: &mut pb::GraphProto, name: &str, values: &[f32]) {
    if let Some(t) = graph.initializer.iter_mut().find(|t| t.name == name) {
        t.float_data.clear();
        t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
}

/// Negates, around each PReLU that has slopes above 1, the channels with such slopes (see the
/// module's documentation), so that [`prelu_as_max`] can rewrite it. Returns how many PReLU nodes
/// were prepared, by output name. A PReLU whose neighbourhood is not exactly `BatchNormalization → PRelu →
/// Conv…` (each tensor used only there, parameters not shared) is left alone.
pub fn fold_signs(model: &mut pb::ModelProto) -> std::collections::HashSet<String> {
    let mut folded = std::collections::HashSet::new();
    let Some(graph) = model.graph.as_mut() else { return folded };
    let uses = |graph: &pb::GraphProto, name: &str| {
        graph.node.iter().flat_map(|n| &n.input).filter(|i| *i == name).count()
            + graph.output.iter().filter(|o| o.name == name).count()
    };
    for p in 0..graph.node.len() {
        let prelu = &graph.node[p];
        if prelu.op_type != "PRelu" || prelu.input.len() != 2 || prelu.output.len() != 1 {
            continue;
        }
        let Some(slopes) = float_initializer(graph, &prelu.input[1]) else { continue };
        if !slopes.iter().any(|&a| a > 1.0) || slopes.iter().any(|a| !a.is_finite()) {
            continue;
        }
        let (x, y) = (prelu.input[0].clone(), prelu.output[0].clone());
        let Some(bn) =
            graph.node.iter().position(|n| n.op_type == "BatchNormalization" && n.output.first() == Some(&x))
        else {
            continue;
        };
        let bn_params = graph.node[bn].input.get(1..3).map(|v| v.to_vec()).unwrap_or_default();
        let consumers: Vec<usize> = (0..graph.node.len()).filter(|&i| graph.node[i].input.contains(&y)).collect();
        let channels = slopes.len();
        let flips: Vec<f32> = slopes.iter().map(|&a| if a > 1.0 { -1.0 } else { 1.0 }).collect();
        // every piece used once, and every consumer a convolution reading the PReLU as its data
        let convs_ok = !consumers.is_empty()
            && uses(graph, &y) == consumers.len()
            && consumers.iter().all(|&c| {
                let n = &graph.node[c];
                let w = n.input.get(1).and_then(|w| graph.initializer.iter().find(|t| &t.name == w));
                n.op_type == "Conv"
                    && n.input[0] == y
                    && n.input.iter().skip(1).all(|i| i != &y)
                    && n.input.get(1).is_some_and(|w| uses(graph, w) == 1)
                    && w.is_some_and(|w| {
                        let group = attr_int(n, "group", 1) as usize;
                        w.dims.len() == 4
                            && ((group == 1 && w.dims[1] as usize == channels)
                                || (group == channels && w.dims[0] as usize == channels && w.dims[1] == 1))
                    })
            });
        let bn_ok = uses(graph, &x) == 1
            && bn_params.len() == 2
            && bn_params
                .iter()
                .all(|t| uses(graph, t) == 1 && float_initializer(graph, t).is_some_and(|v| v.len() == channels));
        // one slope per channel, broadcast along C (not along W as a bare `[C]` would be)
        let slope_dims = graph.initializer.iter().find(|t| t.name == prelu.input[1]).map(|t| t.dims.clone());
        let per_channel =
            matches!(slope_dims.as_deref(), Some([c, 1, 1]) | Some([1, c, 1, 1]) if *c as usize == channels);
        if !convs_ok || !bn_ok || !per_channel {
            continue;
        }
        // every new value computed (and every tensor decoded, whole) before anything changes
        let mut updates: Vec<(String, Vec<f32>)> = Vec::new();
        for t in &bn_params {
            let v: Vec<f32> = float_initializer(graph, t).unwrap().iter().zip(&flips).map(|(v, f)| v * f).collect();
            updates.push((t.clone(), v));
        }
        let mut complete = true;
        for &c in &consumers {
            let name = graph.node[c].input[1].clone();
            let group = attr_int(&graph.node[c], "group", 1);
            let dims = graph.initializer.iter().find(|t| t.name == name).map(|t| t.dims.clone()).unwrap_or_default();
            let expected: i64 = dims.iter().product();
            let Some(mut w) = float_initializer(graph, &name)
                .filter(|w| dims.len() == 4 && w.len() as i64 == expected && expected > 0)
            else {
                complete = false;
                break;
            };
            let per_out = w.len() / dims[0] as usize; // Cin/g × kh × kw
            let per_in = per_out / dims[1] as usize; // kh × kw
            for (i, v) in w.iter_mut().enumerate() {
                let channel = if group == 1 { (i % per_out) / per_in } else { i / per_out };
                *v *= flips[channel];
            }
            updates.push((name, w));
        }
        if !complete {
            continue;
        }
        for (name, v) in updates {
            set_float_initializer(graph, &name, &v);
        }
        folded.insert(y);
    }
    folded
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_int(node: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map(|a| a.i).unwrap_or(default)
}

/// Decodes ONNX bytes, applies [`prelu_as_max`] and encodes them again; `None` when nothing
/// changed or the bytes are not a model (the caller then loads the original and reports its
/// errors).
pub fn rewritten_bytes(onnx: &[u8]) -> Option<(Vec<u8>, Rewritten)> {
    let mut model = pb::ModelProto::decode(onnx).ok()?;
    let r = prelu_as_max(&mut model);
    r.any().then(|| (model.encode_to_vec(), r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prelu_model(slopes: &[f32]) -> pb::ModelProto {
        let node = pb::NodeProto {
            name: "p".into(),
            op_type: "PRelu".into(),
            input: vec!["x".into(), "a".into()],
            output: vec!["y".into()],
            ..Default::default()
        };
        let a = pb::TensorProto {
            name: "a".into(),
            dims: vec![slopes.len() as i64],
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data: slopes.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        pb::ModelProto {
            graph: Some(pb::GraphProto { node: vec![node], initializer: vec![a], ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn prelu_with_slopes_up_to_one_becomes_mul_then_max() {
        let mut m = prelu_model(&[0.25, -0.5, 1.0]);
        assert_eq!(prelu_as_max(&mut m), Rewritten { prelu: 1, ..Default::default() });
        let g = m.graph.unwrap();
        let ops: Vec<(&str, &[String], &[String])> =
            g.node.iter().map(|n| (n.op_type.as_str(), n.input.as_slice(), n.output.as_slice())).collect();
        assert_eq!(ops[0], ("Mul", &["x".to_string(), "a".to_string()][..], &["y__prelu_scaled".to_string()][..]));
        assert_eq!(ops[1], ("Max", &["x".to_string(), "y__prelu_scaled".to_string()][..], &["y".to_string()][..]));
        // the identity it relies on, at the edges
        for a in [0.25f32, -0.5, 1.0, 0.0] {
            for x in [-3.0f32, -1e-30, 0.0, 2.0] {
                let prelu = if x >= 0.0 { x } else { a * x };
                assert_eq!(x.max(a * x), prelu, "a={a} x={x}");
            }
        }
    }

    #[test]
    fn a_slope_above_one_or_nan_is_left_alone() {
        for slopes in [[0.25, 1.5], [0.25, f32::NAN]] {
            let mut m = prelu_model(&slopes);
            assert_eq!(prelu_as_max(&mut m), Rewritten { kept: 1, ..Default::default() });
            assert_eq!(m.graph.unwrap().node[0].op_type, "PRelu");
        }
    }

    fn floats(name: &str, dims: &[i64], v: &[f32]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data: v.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str, attrs: &[(&str, &[i64])]) -> pb::NodeProto {
        pb::NodeProto {
            name: output.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs
                .iter()
                .map(|(name, v)| pb::AttributeProto {
                    name: name.to_string(),
                    r#type: if *name == "group" {
                        pb::attribute_proto::AttributeType::Int as i32
                    } else {
                        pb::attribute_proto::AttributeType::Ints as i32
                    },
                    i: if *name == "group" { v[0] } else { 0 },
                    ints: if *name == "group" { vec![] } else { v.to_vec() },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// `x [1, 4, 12, 16]` → BatchNormalization → PRelu (two slopes above 1) → stride-2
    /// depthwise 3×3 → BatchNormalization → PRelu (slopes ≤ 1) → Relu → dense 1×1 → 2×2
    /// max-pool; with `branch`, the first PReLU also feeds an `Add`.
    fn small_net(branch: bool) -> pb::ModelProto {
        let c = 4;
        let v = |n: usize, seed: f32| (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect::<Vec<f32>>();
        let mut nodes = vec![
            node("BatchNormalization", &["x", "g", "b", "m", "v"], "bn", &[]),
            node("PRelu", &["bn", "a"], "act", &[]),
            node(
                "Conv",
                &["act", "wd"],
                "dw",
                &[("group", &[4]), ("kernel_shape", &[3, 3]), ("pads", &[1, 1, 1, 1]), ("strides", &[2, 2])],
            ),
            node("BatchNormalization", &["dw", "g2", "b2", "m2", "v2"], "bn2", &[]),
            node("PRelu", &["bn2", "a2"], "act2", &[]),
            node("Relu", &["act2"], "r2", &[]),
            node("Conv", &["r2", "wp"], "pw", &[("kernel_shape", &[1, 1])]),
            node("MaxPool", &["pw"], "y", &[("kernel_shape", &[2, 2]), ("strides", &[2, 2])]),
        ];
        if branch {
            nodes.push(node("Add", &["act", "act"], "twice", &[]));
        }
        let mut output = vec![pb::ValueInfoProto { name: "y".into(), ..Default::default() }];
        if branch {
            output.push(pb::ValueInfoProto { name: "twice".into(), ..Default::default() });
        }
        pb::ModelProto {
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(pb::GraphProto {
                node: nodes,
                input: vec![pb::ValueInfoProto {
                    name: "x".into(),
                    r#type: Some(pb::TypeProto {
                        value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                            elem_type: pb::tensor_proto::DataType::Float as i32,
                            shape: None,
                        })),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                output,
                initializer: vec![
                    floats("g", &[c], &v(4, 1.0)),
                    floats("b", &[c], &v(4, 2.0)),
                    floats("m", &[c], &v(4, 3.0)),
                    floats("v", &[c], &[0.5, 1.0, 1.5, 2.0]),
                    floats("a", &[c, 1, 1], &[0.25, 1.5, -0.2, 1.12]),
                    floats("a2", &[c, 1, 1], &[0.25, 0.5, 0.1, 0.9]),
                    floats("g2", &[c], &v(4, 5.0)),
                    floats("b2", &[c], &v(4, 6.0)),
                    floats("m2", &[c], &v(4, 7.0)),
                    floats("v2", &[c], &[1.5, 0.5, 2.5, 1.0]),
                    floats("wd", &[c, 1, 3, 3], &v(36, 4.0)),
                    floats("wp", &[3, c, 1, 1], &v(12, 5.0)),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The net's outputs on `x`, and the names of the optimised plan's operators; `fuse` puts in
    /// the load-time [`crate::kernels::ChannelPrelu`] as the door does.
    fn run(model: &pb::ModelProto, x: &tract_onnx::prelude::Tensor, fuse: bool) -> (Vec<Vec<f32>>, Vec<String>) {
        use tract_onnx::prelude::*;
        let model = tract_onnx::onnx()
            .model_for_read(&mut &*model.encode_to_vec())
            .unwrap()
            .with_input_fact(0, f32::fact([1, 4, 12, 16]).into())
            .unwrap();
        let typed = crate::kernels::optimized(model, fuse).unwrap();
        let ops = typed.nodes().iter().map(|n| n.op().name().into_owned()).collect();
        let plan = typed.into_runnable().unwrap();
        let out = plan.run(tvec!(x.clone().into())).unwrap();
        (out.iter().map(|t| t.to_plain_array_view::<f32>().unwrap().iter().copied().collect()).collect(), ops)
    }

    #[test]
    fn the_rewrites_of_a_small_net_give_the_same_floats() {
        let x: Vec<f32> = (0..4 * 12 * 16).map(|i| ((i as f32) * 0.731).sin() * 3.0).collect();
        let x = tract_onnx::prelude::Tensor::from_shape(&[1, 4, 12, 16], &x).unwrap();
        let original = small_net(false);
        let (bytes, r) = rewritten_bytes(&original.encode_to_vec()).unwrap();
        assert_eq!(r, Rewritten { prelu: 2, kept: 0, sign_folded: 1 });
        let rewritten = pb::ModelProto::decode(&*bytes).unwrap();
        let ops: Vec<&str> = rewritten.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.as_str()).collect();
        assert!(!ops.contains(&"PRelu"), "{ops:?}");
        let ((a, plain_ops), (b, unfused_ops)) = (run(&original, &x, false), run(&rewritten, &x, false));
        let (c, fused_ops) = run(&rewritten, &x, true);
        assert_eq!(a[0].len(), 3 * 3 * 4);
        for op in ["ChannelPrelu", "MaxPool2x2", "Depthwise3x3"] {
            assert!(!plain_ops.iter().chain(&unfused_ops).any(|o| o == op), "{op}");
            assert_eq!(fused_ops.iter().filter(|o| *o == op).count(), 1, "{op}: {fused_ops:?}");
        }
        assert!(!fused_ops.iter().any(|o| o.contains("MaxPool") && o != "MaxPool2x2"), "{fused_ops:?}");
        // the normalisation, PReLU and ReLU after the depthwise convolution are folded into it
        // (the first normalisation, on the input, stays)
        let count = |ops: &[String], op: &str| ops.iter().filter(|o| *o == op).count();
        assert_eq!(count(&unfused_ops, "OptBinChain(Mul+Add)"), 2, "{unfused_ops:?}");
        assert_eq!(count(&fused_ops, "OptBinChain(Mul+Add)"), 1, "{fused_ops:?}");
        // nor any element-wise multiplication or maximum (the ReLU, the PReLUs' two passes)
        let elementwise = |ops: &[String]| {
            ops.iter().filter(|o| o.starts_with("OptMul") || o.starts_with("OptMax") || o.contains("(Max")).count()
        };
        assert!(elementwise(&unfused_ops) >= 3, "{unfused_ops:?}");
        assert_eq!(elementwise(&fused_ops), 0, "{fused_ops:?}");
        // the load-time operators compute the same floats on x86-64; on aarch64 the depthwise
        // convolution runs tract's NEON inner loop, which fuses each multiply-add: last bits
        if cfg!(target_arch = "x86_64") {
            assert_eq!(b, c, "the load-time operators compute other floats");
        } else {
            for (x, y) in b[0].iter().zip(&c[0]) {
                assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{x} vs {y}");
            }
        }
        if cfg!(target_arch = "x86_64") {
            assert_eq!(a, b, "the rewritten net computes other floats");
        } else {
            // aarch64's strided and dense depthwise kernels sum in other orders: last-bit
            // differences (measured under qemu: at most 2e-6 relative)
            for (x, y) in a[0].iter().zip(&b[0]) {
                assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{x} vs {y}");
            }
        }
        // not a trivial net: the output is not all zeros
        assert!(a[0].iter().any(|v| *v != 0.0));
    }

    #[test]
    fn what_the_kernels_cannot_replace_exactly_is_left_to_tract() {
        let x: Vec<f32> = (0..4 * 12 * 16).map(|i| ((i as f32) * 0.731).sin() * 3.0).collect();
        let x = tract_onnx::prelude::Tensor::from_shape(&[1, 4, 12, 16], &x).unwrap();
        let count = |ops: &[String], op: &str| ops.iter().filter(|o| *o == op).count();
        let ints = |name: &str, v: &[i64]| pb::AttributeProto {
            name: name.into(),
            r#type: pb::attribute_proto::AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        };
        let same = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            assert_eq!(a.len(), b.len());
            for (a, b) in a.iter().zip(b) {
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(b) {
                    // exact on x86-64; aarch64's NEON depthwise loop fuses multiply-adds
                    let ok =
                        if cfg!(target_arch = "x86_64") { x == y } else { (x - y).abs() <= 1e-5 * x.abs().max(1.0) };
                    assert!(ok, "{x} vs {y}");
                }
            }
        };
        // a padded pool and a dilated depthwise convolution stay tract's
        let mut m = small_net(false);
        let g = m.graph.as_mut().unwrap();
        assert_eq!((g.node[2].op_type.as_str(), g.node[7].op_type.as_str()), ("Conv", "MaxPool"));
        g.node[7].attribute.push(ints("pads", &[0, 0, 1, 1]));
        g.node[2].attribute.push(ints("dilations", &[2, 2]));
        let m = pb::ModelProto::decode(&*rewritten_bytes(&m.encode_to_vec()).unwrap().0).unwrap();
        let ((a, _), (b, fused)) = (run(&m, &x, false), run(&m, &x, true));
        assert_eq!((count(&fused, "MaxPool2x2"), count(&fused, "Depthwise3x3")), (0, 0), "{fused:?}");
        assert!(
            fused.iter().any(|o| o.contains("MaxPool")) && fused.iter().any(|o| o.contains("DepthWise")),
            "{fused:?}"
        );
        same(&a, &b);
        // the depthwise convolution's output also read elsewhere: it is replaced, but the
        // normalisation after it is not folded in
        let mut m = small_net(false);
        let g = m.graph.as_mut().unwrap();
        g.node.push(node("Add", &["dw", "dw"], "dw2", &[]));
        g.output.push(pb::ValueInfoProto { name: "dw2".into(), ..Default::default() });
        let m = pb::ModelProto::decode(&*rewritten_bytes(&m.encode_to_vec()).unwrap().0).unwrap();
        let ((a, unfused), (b, fused)) = (run(&m, &x, false), run(&m, &x, true));
        assert_eq!(count(&fused, "Depthwise3x3"), 1, "{fused:?}");
        assert_eq!(count(&unfused, "OptBinChain(Mul+Add)"), count(&fused, "OptBinChain(Mul+Add)"), "{fused:?}");
        assert_eq!(a.len(), 2);
        same(&a, &b);
    }

    #[test]
    fn a_prelu_whose_output_goes_elsewhere_than_convolutions_is_not_folded() {
        let mut m = small_net(true);
        let r = prelu_as_max(&mut m);
        // the first PReLU is kept; the second (slopes ≤ 1) needs no fold
        assert_eq!((r.prelu, r.kept, r.sign_folded), (1, 1, 0));
        // the normalisation was not touched either
        assert_eq!(
            float_initializer(m.graph.as_ref().unwrap(), "g"),
            Some(small_net(true).graph.as_ref().map(|g| float_initializer(g, "g").unwrap()).unwrap())
        );
    }

    #[test]
    fn what_the_fold_cannot_follow_is_left_as_it_is() {
        let graph = |m: &pb::ModelProto| m.graph.clone().unwrap();
        // slopes given as a bare [C] (broadcast along W, not C) and weights that do not decode
        // whole: no fold, and nothing touched
        for broken in ["slope", "weights"] {
            let mut m = small_net(false);
            let g = m.graph.as_mut().unwrap();
            if broken == "slope" {
                g.initializer.iter_mut().find(|t| t.name == "a").unwrap().dims = vec![4];
            } else {
                g.initializer.iter_mut().find(|t| t.name == "wd").unwrap().raw_data.truncate(8);
            }
            let before = graph(&m);
            assert!(fold_signs(&mut m).is_empty(), "{broken}");
            assert_eq!(graph(&m), before, "{broken}: the graph was changed");
        }
    }
}
