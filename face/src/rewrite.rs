//! Graph rewrites done once at load time, on the ONNX protobuf, after the file's fingerprint is
//! checked (the card and the gallery binding still name the file as shipped).
//!
//! **PReLU as Max.** tract expands `PRelu(x, a)` into a multiplication, a comparison and a
//! select (three passes over the tensor and a boolean tensor). For slopes `a ≤ 1` the same
//! function is `max(x, a·x)`: for `x ≥ 0`, `a·x ≤ x`; for `x < 0`, `a·x ≥ x`. That is two
//! passes (`Mul`, `Max`) that tract runs as plain element-wise kernels. A PReLU with a slope
//! above 1, or slopes that are not a float initializer, is left as it is.

use prost::Message;
use tract_onnx::pb;

/// What [`prelu_as_max`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// PReLU nodes now `Mul` + `Max`.
    pub prelu: usize,
    /// PReLU nodes left alone (a slope above 1, or slopes not found as a float initializer).
    pub kept: usize,
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

/// Rewrites every PReLU whose slopes are all ≤ 1 as `Max(x, Mul(x, slope))`, in place.
pub fn prelu_as_max(model: &mut pb::ModelProto) -> Rewritten {
    let Some(graph) = model.graph.as_mut() else { return Rewritten::default() };
    let mut out = Rewritten::default();
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
        if slopes.iter().any(|&a| a.is_nan() || a > 1.0) {
            out.kept += 1;
            nodes.push(node);
            continue;
        }
        let scaled = format!("{}__prelu_scaled", node.output[0]);
        nodes.push(pb::NodeProto {
            name: format!("{}__mul", node.name),
            op_type: "Mul".into(),
            input: node.input.clone(),
            output: vec![scaled.clone()],
            ..Default::default()
        });
        nodes.push(pb::NodeProto {
            name: format!("{}__max", node.name),
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

/// Decodes ONNX bytes, applies [`prelu_as_max`] and encodes them again; `None` when nothing
/// changed or the bytes are not a model (the caller then loads the original and reports its
/// errors).
pub fn rewritten_bytes(onnx: &[u8]) -> Option<(Vec<u8>, Rewritten)> {
    let mut model = pb::ModelProto::decode(onnx).ok()?;
    let r = prelu_as_max(&mut model);
    (r.prelu > 0).then(|| (model.encode_to_vec(), r))
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
        assert_eq!(prelu_as_max(&mut m), Rewritten { prelu: 1, kept: 0 });
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
            assert_eq!(prelu_as_max(&mut m), Rewritten { prelu: 0, kept: 1 });
            assert_eq!(m.graph.unwrap().node[0].op_type, "PRelu");
        }
    }
}
