//! Writing the trained encoder as ONNX (opset 13) from Rust, with the prost types tract ships.
//!
//! Batch-norm is folded into the preceding convolution or fully connected layer; dropout is
//! dropped; the L2 normalisation is part of the graph, so the output is already a unit vector.

use anyhow::Result;
use prost::Message;
use tch::{nn, Device, Tensor};
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

use crate::model::{ConvBnPRelu, EmbeddingNet, PRelu, ResBlock};

/// The ONNX opset written.
pub const OPSET: i64 = 13;
/// tch's default batch-norm epsilon (the model builds every BatchNorm with the default config).
pub const BN_EPS: f64 = 1e-5;
/// Name of the graph input and output.
pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "embedding";

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(&t.detach().to_device(Device::Cpu).contiguous().view([-1]))?)
}

pub(crate) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
}
pub(crate) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
}

/// Name of the symbolic batch dimension of the dynamic-batch variant.
pub const BATCH_DIM: &str = "N";

/// A float tensor's name and shape; a dimension of 0 is the symbolic batch [`BATCH_DIM`].
fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tract_onnx::pb::tensor_shape_proto::Dimension {
            value: Some(if d == 0 {
                dimension::Value::DimParam(BATCH_DIM.into())
            } else {
                dimension::Value::DimValue(d)
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Accumulates nodes and initialisers with unique names.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Graph {
    fn init(&mut self, name: &str, dims: &[i64], data: Vec<f32>) -> String {
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            raw_data: raw,
            ..Default::default()
        });
        name.into()
    }
    fn init_i64(&mut self, name: &str, data: &[i64]) -> String {
        self.inits.push(TensorProto {
            name: name.into(),
            dims: vec![data.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name.into()
    }
    fn node(&mut self, name: &str, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = format!("{name}_out");
        self.nodes.push(NodeProto {
            name: name.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    /// Conv with the following BatchNorm folded in: `W' = W·s`, `b' = β − μ·s`, `s = γ/√(σ²+ε)`.
    fn conv_bn(&mut self, name: &str, x: &str, conv: &nn::Conv2D, bn: &nn::BatchNorm, stride: i64) -> Result<String> {
        let w = &conv.ws;
        let size = w.size();
        let (o, k) = (size[0], size[2]);
        let s = bn_scale(bn)?;
        let shift = bn_shift(bn, &s)?;
        let wv = values(w)?;
        let per = wv.len() / o as usize;
        let folded: Vec<f32> = wv.iter().enumerate().map(|(i, v)| v * s[i / per]).collect();
        let wn = self.init(&format!("{name}.weight"), &size, folded);
        let bn_ = self.init(&format!("{name}.bias"), &[o], shift);
        let p = k / 2;
        Ok(self.node(
            name,
            "Conv",
            &[x, &wn, &bn_],
            vec![
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("strides", &[stride, stride]),
                attr_ints("pads", &[p, p, p, p]),
            ],
        ))
    }

    fn prelu(&mut self, name: &str, x: &str, a: &PRelu) -> Result<String> {
        let v = values(&a.weight)?;
        let slope = self.init(&format!("{name}.slope"), &[v.len() as i64, 1, 1], v);
        Ok(self.node(name, "PRelu", &[x, &slope], vec![]))
    }

    fn cbp(&mut self, name: &str, x: &str, m: &ConvBnPRelu, stride: i64) -> Result<String> {
        let y = self.conv_bn(&format!("{name}.conv"), x, &m.conv, &m.bn, stride)?;
        self.prelu(&format!("{name}.act"), &y, &m.act)
    }

    fn res(&mut self, name: &str, x: &str, b: &ResBlock) -> Result<String> {
        let y = self.cbp(&format!("{name}.c1"), x, &b.conv1, 2)?;
        let y = self.conv_bn(&format!("{name}.conv2"), &y, &b.conv2, &b.bn2, 1)?;
        let s = match &b.shortcut {
            Some((c, bn)) => self.conv_bn(&format!("{name}.down"), x, c, bn, 2)?,
            None => x.to_owned(),
        };
        let sum = self.node(&format!("{name}.add"), "Add", &[&y, &s], vec![]);
        self.prelu(&format!("{name}.act"), &sum, &b.act)
    }
}

fn bn_scale(bn: &nn::BatchNorm) -> Result<Vec<f32>> {
    let var = values(&bn.running_var)?;
    let gamma = match &bn.ws {
        Some(w) => values(w)?,
        None => vec![1.0; var.len()],
    };
    Ok(var.iter().zip(&gamma).map(|(v, g)| g / (f64::from(*v) + BN_EPS).sqrt() as f32).collect())
}

fn bn_shift(bn: &nn::BatchNorm, scale: &[f32]) -> Result<Vec<f32>> {
    let mean = values(&bn.running_mean)?;
    let beta = match &bn.bs {
        Some(b) => values(b)?,
        None => vec![0.0; mean.len()],
    };
    Ok(mean.iter().zip(&beta).zip(scale).map(|((m, b), s)| b - m * s).collect())
}

/// The encoder as ONNX bytes, with `metadata` in `metadata_props`: a fixed batch of 1, or with
/// `dynamic_batch` a symbolic batch dimension (every node is batch-agnostic: Flatten keeps axis 0,
/// the normalisation reduces over axis 1).
pub fn encoder_to_onnx(net: &EmbeddingNet, metadata: &[(String, String)], dynamic_batch: bool) -> Result<Vec<u8>> {
    let batch = if dynamic_batch { 0 } else { 1 };
    let cfg = &net.config;
    let mut g = Graph::default();
    let x = g.cbp("stem", INPUT_NAME, &net.stem, 1)?;
    let mut y = x;
    for (i, b) in net.blocks.iter().enumerate() {
        y = g.res(&format!("block{}", i + 1), &y, b)?;
    }
    let y = g.cbp("head.reduce", &y, &net.head.reduce, 1)?;
    let y = g.node("head.flatten", "Flatten", &[&y], vec![attr_int("axis", 1)]);
    // FC with BatchNorm1d folded: W' = diag(s)·W, b' = (b − μ)·s + β
    let fc = &net.head.fc;
    let s = bn_scale(&net.head.bn)?;
    let shift = bn_shift(&net.head.bn, &s)?;
    let w = values(&fc.ws)?;
    let wsize = fc.ws.size();
    let per = wsize[1] as usize;
    let wf: Vec<f32> = w.iter().enumerate().map(|(i, v)| v * s[i / per]).collect();
    let b = match &fc.bs {
        Some(b) => values(b)?,
        None => vec![0.0; s.len()],
    };
    let bf: Vec<f32> = b.iter().zip(&s).zip(&shift).map(|((b, s), t)| b * s + t).collect();
    let wn = g.init("head.fc.weight", &wsize, wf);
    let bn = g.init("head.fc.bias", &[wsize[0]], bf);
    let y = g.node("head.fc", "Gemm", &[&y, &wn, &bn], vec![attr_int("transB", 1)]);
    // L2 normalisation: y / max(sqrt(sum(y²)), 1e-12)
    let sq = g.node("norm.square", "Mul", &[&y, &y], vec![]);
    let axes = g.init_i64("norm.axes", &[1]);
    let sum = g.node("norm.sum", "ReduceSum", &[&sq, &axes], vec![attr_int("keepdims", 1)]);
    let root = g.node("norm.sqrt", "Sqrt", &[&sum], vec![]);
    let eps = g.init("norm.eps", &[], vec![1e-12]);
    let den = g.node("norm.clamp", "Max", &[&root, &eps], vec![]);
    let out = g.node("norm.div", "Div", &[&y, &den], vec![]);
    // rename the last output to the public name
    if let Some(last) = g.nodes.last_mut() {
        last.output = vec![OUTPUT_NAME.into()];
    }
    let _ = out;
    let model = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "facegate".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            name: "facegate-encoder".into(),
            node: g.nodes,
            initializer: g.inits,
            input: vec![value_info(INPUT_NAME, &[batch, cfg.in_channels, cfg.input_size, cfg.input_size])],
            output: vec![value_info(OUTPUT_NAME, &[batch, cfg.embedding_dim])],
            ..Default::default()
        }),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto { key: k.clone(), value: v.clone() })
            .collect(),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}
