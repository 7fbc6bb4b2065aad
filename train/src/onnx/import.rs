//! Reading an ONNX face encoder into a trainable tch model: the other half of the ONNX bridge.
//!
//! [`OnnxGraph::parse`] checks the graph once (operators, attributes, initialisers) and
//! [`OnnxNet::new`] turns its weights into VarStore variables, so an imported encoder trains,
//! averages, checkpoints and freezes like the built-in one. [`OnnxNet::to_onnx`] writes the same
//! graph back with the current weights: what was imported is exported unchanged except for them.
//!
//! Supported: Conv (grouped and depthwise), BatchNormalization, PRelu, Relu, Add, Sub, Mul, Div,
//! Max, Sqrt, ReduceSum, Flatten, Gemm, Dropout, GlobalAveragePool, MaxPool, Reshape, Identity —
//! what face encoders (SFace, and Facegate's own export) use. Anything else is an
//! [`ImportError::UnsupportedOperator`] naming the operator and the node.

use prost::Message;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tch::{nn, Device, Kind, Tensor};
use tract_onnx::pb::{tensor_proto::DataType, ModelProto, NodeProto, TensorProto};

/// Why an ONNX file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not an ONNX model: {reason}")]
    NotOnnx { path: String, reason: String },
    #[error("operator {op} (node '{node}') is not supported by the importer; supported: {}", SUPPORTED.join(", "))]
    UnsupportedOperator { op: String, node: String },
    #[error("node '{node}' reads '{name}', which is neither an initialiser nor computed before it")]
    MissingInitialiser { name: String, node: String },
    #[error("node '{node}' ({op}): {reason}")]
    BadNode { node: String, op: String, reason: String },
    #[error("initialiser '{name}': {reason}")]
    BadInitialiser { name: String, reason: String },
    #[error(
        "the graph needs exactly one image input and one output; it has inputs {inputs:?} and outputs {outputs:?}"
    )]
    Interface { inputs: Vec<String>, outputs: Vec<String> },
    #[error("{what}: the card says {card}, the graph has {graph}")]
    ShapeMismatch { what: &'static str, card: String, graph: String },
    #[error("running the imported graph failed: {0}")]
    Run(#[from] tch::TchError),
}

/// Operators the importer understands.
pub const SUPPORTED: &[&str] = &[
    "Conv",
    "BatchNormalization",
    "PRelu",
    "Relu",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Sqrt",
    "ReduceSum",
    "Flatten",
    "Gemm",
    "Dropout",
    "GlobalAveragePool",
    "MaxPool",
    "Reshape",
    "Identity",
];

/// One operation with its attributes decoded.
#[derive(Debug, Clone)]
enum Op {
    Conv { strides: [i64; 2], pads: [i64; 4], dilations: [i64; 2], group: i64 },
    BatchNorm { eps: f64, momentum: f64 },
    PRelu,
    Relu,
    Binary(BinaryOp),
    Sqrt,
    ReduceSum { axes: Option<Vec<i64>>, keepdims: bool },
    Flatten { axis: i64 },
    Gemm { alpha: f64, beta: f64, trans_a: bool, trans_b: bool },
    Dropout { ratio: f64 },
    GlobalAveragePool,
    MaxPool { kernel: [i64; 2], strides: [i64; 2], pads: [i64; 4], ceil: bool },
    Reshape,
    Identity,
}

#[derive(Debug, Clone, Copy)]
enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    op_type: String,
    op: Op,
    inputs: Vec<String>,
    output: String,
}

/// A decoded initialiser.
#[derive(Debug, Clone)]
enum Constant {
    F32 { dims: Vec<i64>, data: Vec<f32> },
    I64 { dims: Vec<i64>, data: Vec<i64> },
}

impl Constant {
    fn tensor(&self) -> Tensor {
        match self {
            Constant::F32 { dims, data } => Tensor::from_slice(data).view(dims.as_slice()),
            Constant::I64 { dims, data } => Tensor::from_slice(data).view(dims.as_slice()),
        }
    }
}

/// How an initialiser is used by the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A weight trained by gradient descent.
    Trainable,
    /// A batch-norm running statistic (updated in training mode, never by the optimiser).
    Buffer,
    /// A fixed operand (scalars, shapes, axes).
    Fixed,
}

/// A layer with parameters, in graph order (what `--freeze N` counts).
#[derive(Debug, Clone)]
pub struct Layer {
    /// The node name.
    pub node: String,
    /// The operator.
    pub op: String,
    /// VarStore names of its variables.
    pub variables: Vec<String>,
}

/// A checked ONNX encoder graph: nodes in order, decoded initialisers, and the original proto.
#[derive(Debug, Clone)]
pub struct OnnxGraph {
    proto: ModelProto,
    nodes: Vec<Node>,
    constants: HashMap<String, Constant>,
    roles: HashMap<String, Role>,
    /// Initialiser name → VarStore variable name.
    var_names: HashMap<String, String>,
    layers: Vec<Layer>,
    input: String,
    /// The declared input shape (0 where symbolic).
    pub input_dims: Vec<i64>,
    output: String,
    /// The opset of the default domain.
    pub opset: i64,
}

fn attr_i(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}
fn attr_f(n: &NodeProto, name: &str) -> Option<f64> {
    n.attribute.iter().find(|a| a.name == name).map(|a| f64::from(a.f))
}
fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
}
fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    n.attribute.iter().find(|a| a.name == name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

fn decode_tensor(t: &TensorProto) -> Result<Constant, ImportError> {
    let bad = |reason: String| ImportError::BadInitialiser { name: t.name.clone(), reason };
    if t.data_location == Some(1) {
        return Err(bad("stored as external data, which the importer does not read".into()));
    }
    let count: i64 = t.dims.iter().product();
    if t.dims.iter().any(|&d| d < 0) || count > 1 << 28 {
        return Err(bad(format!("implausible dimensions {:?}", t.dims)));
    }
    let count = count as usize;
    let c = if t.data_type == DataType::Float as i32 {
        let data: Vec<f32> = if !t.raw_data.is_empty() {
            if t.raw_data.len() != count * 4 {
                return Err(bad(format!("{} raw bytes for {count} floats", t.raw_data.len())));
            }
            t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        } else {
            t.float_data.clone()
        };
        if data.len() != count {
            return Err(bad(format!("{} values for dimensions {:?}", data.len(), t.dims)));
        }
        Constant::F32 { dims: t.dims.clone(), data }
    } else if t.data_type == DataType::Int64 as i32 {
        let data: Vec<i64> = if !t.raw_data.is_empty() {
            if t.raw_data.len() != count * 8 {
                return Err(bad(format!("{} raw bytes for {count} int64 values", t.raw_data.len())));
            }
            t.raw_data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect()
        } else {
            t.int64_data.clone()
        };
        if data.len() != count {
            return Err(bad(format!("{} values for dimensions {:?}", data.len(), t.dims)));
        }
        Constant::I64 { dims: t.dims.clone(), data }
    } else {
        return Err(bad(format!("element type {} is not float32 or int64", t.data_type)));
    };
    Ok(c)
}

fn two(v: &[i64], default: i64) -> [i64; 2] {
    match v {
        [a, b] => [*a, *b],
        _ => [default, default],
    }
}

impl OnnxGraph {
    /// Checks ONNX bytes; `label` names them in errors.
    pub fn parse(bytes: &[u8], label: &str) -> Result<Self, ImportError> {
        let not_onnx = |reason: String| ImportError::NotOnnx { path: label.to_owned(), reason };
        let proto = ModelProto::decode(bytes).map_err(|e| not_onnx(e.to_string()))?;
        let graph = proto.graph.as_ref().ok_or_else(|| not_onnx("no graph".into()))?;
        if graph.node.is_empty() {
            return Err(not_onnx("the graph has no nodes".into()));
        }
        let opset = proto.opset_import.iter().find(|o| o.domain.is_empty()).map(|o| o.version).unwrap_or(0);
        if opset == 0 {
            return Err(not_onnx("no opset for the default domain".into()));
        }
        let mut constants = HashMap::new();
        for t in &graph.initializer {
            constants.insert(t.name.clone(), decode_tensor(t)?);
        }
        let inputs: Vec<&tract_onnx::pb::ValueInfoProto> =
            graph.input.iter().filter(|i| !constants.contains_key(&i.name)).collect();
        if inputs.len() != 1 || graph.output.len() != 1 {
            return Err(ImportError::Interface {
                inputs: inputs.iter().map(|i| i.name.clone()).collect(),
                outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
            });
        }
        let input = inputs[0].name.clone();
        let input_dims: Vec<i64> = inputs[0]
            .r#type
            .as_ref()
            .and_then(|t| match &t.value {
                Some(tract_onnx::pb::type_proto::Value::TensorType(tt)) => tt.shape.as_ref(),
                _ => None,
            })
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(v)) => v,
                        _ => 0,
                    })
                    .collect()
            })
            .unwrap_or_default();

        let mut known: HashSet<String> = HashSet::from([input.clone()]);
        let mut nodes = Vec::with_capacity(graph.node.len());
        let mut roles: HashMap<String, Role> = HashMap::new();
        let mut layers = Vec::new();
        for (i, n) in graph.node.iter().enumerate() {
            let name = if n.name.is_empty() { format!("#{i}") } else { n.name.clone() };
            let bad = |reason: String| ImportError::BadNode { node: name.clone(), op: n.op_type.clone(), reason };
            if !n.domain.is_empty() && n.domain != "ai.onnx" {
                return Err(ImportError::UnsupportedOperator { op: format!("{}:{}", n.domain, n.op_type), node: name });
            }
            let pads = |n: &NodeProto| -> Result<[i64; 4], ImportError> {
                if let Some(a) = attr_s(n, "auto_pad") {
                    if a != "NOTSET" && !a.is_empty() {
                        return Err(bad(format!("auto_pad {a} is not supported; give explicit pads")));
                    }
                }
                Ok(match attr_ints(n, "pads").as_deref() {
                    None => [0; 4],
                    Some([t, l, b, r]) => [*t, *l, *b, *r],
                    Some(p) => return Err(bad(format!("pads {p:?}: only 2-D convolutions and pools are supported"))),
                })
            };
            let op = match n.op_type.as_str() {
                "Conv" => {
                    let k = attr_ints(n, "kernel_shape").unwrap_or_default();
                    if !k.is_empty() && k.len() != 2 {
                        return Err(bad(format!("kernel_shape {k:?}: only 2-D convolutions are supported")));
                    }
                    Op::Conv {
                        strides: two(&attr_ints(n, "strides").unwrap_or_default(), 1),
                        pads: pads(n)?,
                        dilations: two(&attr_ints(n, "dilations").unwrap_or_default(), 1),
                        group: attr_i(n, "group").unwrap_or(1),
                    }
                }
                "BatchNormalization" => Op::BatchNorm {
                    eps: attr_f(n, "epsilon").unwrap_or(1e-5),
                    momentum: 1.0 - attr_f(n, "momentum").unwrap_or(0.9),
                },
                "PRelu" => Op::PRelu,
                "Relu" => Op::Relu,
                "Add" => Op::Binary(BinaryOp::Add),
                "Sub" => Op::Binary(BinaryOp::Sub),
                "Mul" => Op::Binary(BinaryOp::Mul),
                "Div" => Op::Binary(BinaryOp::Div),
                "Max" if n.input.len() == 2 => Op::Binary(BinaryOp::Max),
                "Max" => return Err(bad(format!("{} inputs: only the two-input Max is supported", n.input.len()))),
                "Sqrt" => Op::Sqrt,
                "ReduceSum" => {
                    Op::ReduceSum { axes: attr_ints(n, "axes"), keepdims: attr_i(n, "keepdims").unwrap_or(1) != 0 }
                }
                "Flatten" => Op::Flatten { axis: attr_i(n, "axis").unwrap_or(1) },
                "Gemm" => Op::Gemm {
                    alpha: attr_f(n, "alpha").unwrap_or(1.0),
                    beta: attr_f(n, "beta").unwrap_or(1.0),
                    trans_a: attr_i(n, "transA").unwrap_or(0) != 0,
                    trans_b: attr_i(n, "transB").unwrap_or(0) != 0,
                },
                "Dropout" => Op::Dropout { ratio: attr_f(n, "ratio").unwrap_or(0.5) },
                "GlobalAveragePool" => Op::GlobalAveragePool,
                "MaxPool" => {
                    let kernel = attr_ints(n, "kernel_shape").unwrap_or_default();
                    if kernel.len() != 2 {
                        return Err(bad(format!("kernel_shape {kernel:?}: only 2-D pooling is supported")));
                    }
                    Op::MaxPool {
                        kernel: two(&kernel, 1),
                        strides: two(&attr_ints(n, "strides").unwrap_or_default(), 1),
                        pads: pads(n)?,
                        ceil: attr_i(n, "ceil_mode").unwrap_or(0) != 0,
                    }
                }
                "Reshape" => Op::Reshape,
                "Identity" => Op::Identity,
                other => return Err(ImportError::UnsupportedOperator { op: other.to_owned(), node: name }),
            };
            // every input exists; weights are initialisers
            let inputs: Vec<String> = n.input.clone();
            for inp in inputs.iter().filter(|s| !s.is_empty()) {
                if !known.contains(inp) && !constants.contains_key(inp) {
                    return Err(ImportError::MissingInitialiser { name: inp.clone(), node: name });
                }
            }
            let need_const = |idx: usize, role: Role, roles: &mut HashMap<String, Role>| -> Result<(), ImportError> {
                let Some(inp) = inputs.get(idx).filter(|s| !s.is_empty()) else { return Ok(()) };
                match constants.get(inp) {
                    Some(Constant::F32 { .. }) => {
                        roles.insert(inp.clone(), role);
                        Ok(())
                    }
                    Some(Constant::I64 { .. }) => Err(bad(format!("weight '{inp}' is int64, not float32"))),
                    None if known.contains(inp) => {
                        Err(bad(format!("weight '{inp}' is computed at run time; only initialisers are supported")))
                    }
                    None => Err(ImportError::MissingInitialiser { name: inp.clone(), node: name.clone() }),
                }
            };
            let arity = |lo: usize, hi: usize| -> Result<(), ImportError> {
                let k = inputs.len();
                if k < lo || k > hi || inputs[0].is_empty() {
                    return Err(bad(format!("{k} inputs, expected {lo} to {hi}")));
                }
                Ok(())
            };
            let mut weights: Vec<usize> = Vec::new();
            match &op {
                Op::Conv { .. } => {
                    arity(2, 3)?;
                    weights = vec![1, 2];
                }
                Op::BatchNorm { .. } => {
                    arity(5, 5)?;
                    weights = vec![1, 2];
                    need_const(3, Role::Buffer, &mut roles)?;
                    need_const(4, Role::Buffer, &mut roles)?;
                }
                Op::PRelu => {
                    arity(2, 2)?;
                    weights = vec![1];
                }
                Op::Gemm { .. } => {
                    arity(2, 3)?;
                    weights = vec![1, 2];
                }
                Op::Binary(_) => arity(2, 2)?,
                Op::Reshape => {
                    arity(2, 2)?;
                    if !matches!(constants.get(&inputs[1]), Some(Constant::I64 { .. })) {
                        return Err(bad("the target shape must be an int64 initialiser".into()));
                    }
                }
                Op::ReduceSum { axes, .. } => {
                    arity(1, 2)?;
                    if axes.is_none()
                        && inputs.len() == 2
                        && !matches!(constants.get(&inputs[1]), Some(Constant::I64 { .. }))
                    {
                        return Err(bad("the axes must be an int64 initialiser".into()));
                    }
                }
                Op::Dropout { .. } => arity(1, 3)?,
                _ => arity(1, 1)?,
            }
            for &w in &weights {
                need_const(w, Role::Trainable, &mut roles)?;
            }
            if !weights.is_empty() {
                layers.push(Layer {
                    node: name.clone(),
                    op: n.op_type.clone(),
                    variables: inputs
                        .iter()
                        .enumerate()
                        .filter(|(j, s)| *j > 0 && !s.is_empty() && constants.contains_key(*s))
                        .map(|(_, s)| s.clone())
                        .collect(),
                });
            }
            let output = n.output.first().cloned().filter(|s| !s.is_empty()).ok_or_else(|| bad("no output".into()))?;
            known.insert(output.clone());
            nodes.push(Node { name, op_type: n.op_type.clone(), op, inputs, output });
        }
        let output = graph.output[0].name.clone();
        if !known.contains(&output) {
            return Err(not_onnx(format!("the graph output '{output}' is not computed by any node")));
        }
        for name in constants.keys() {
            roles.entry(name.clone()).or_insert(Role::Fixed);
        }
        // VarStore names: unique, no '.', readable.
        let mut var_names = HashMap::new();
        let mut ordered: Vec<&String> = roles.iter().filter(|(_, r)| **r != Role::Fixed).map(|(n, _)| n).collect();
        ordered.sort_by_key(|n| graph.initializer.iter().position(|t| &t.name == *n));
        for (i, n) in ordered.into_iter().enumerate() {
            let clean: String = n.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            var_names.insert(n.clone(), format!("w{i:04}_{clean}"));
        }
        for l in &mut layers {
            l.variables = l.variables.iter().filter_map(|v| var_names.get(v).cloned()).collect();
        }
        Ok(Self { proto, nodes, constants, roles, var_names, layers, input, input_dims, output, opset })
    }

    /// The model as read.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// Layers with parameters, in graph order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Checks the graph against a card's input (`C × H × W`, name) where the graph declares them.
    pub fn check_input(&self, name: &str, c: i64, h: i64, w: i64) -> Result<(), ImportError> {
        if self.input != name {
            return Err(ImportError::ShapeMismatch {
                what: "input name",
                card: name.into(),
                graph: self.input.clone(),
            });
        }
        let want = [c, h, w];
        let dims = &self.input_dims;
        let ok = dims.len() == 4 && dims[1..].iter().zip(want).all(|(&g, c)| g == 0 || g == c);
        if !ok {
            return Err(ImportError::ShapeMismatch {
                what: "input shape",
                card: format!("[N, {c}, {h}, {w}]"),
                graph: format!("{dims:?}"),
            });
        }
        Ok(())
    }
}

/// Where an imported encoder's frozen first layers end ([`OnnxNet::frozen_cut`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenCut {
    /// Index of the first node that trains.
    pub node: usize,
    /// The value the frozen layers hand on.
    pub value: String,
}

/// An imported encoder whose weights live in a VarStore.
#[derive(Debug)]
pub struct OnnxNet {
    graph: Arc<OnnxGraph>,
    vars: HashMap<String, Tensor>,
    fixed: HashMap<String, Tensor>,
}

impl OnnxNet {
    /// Creates the variables under `p` from the graph's initialisers.
    pub fn new(p: &nn::Path, graph: Arc<OnnxGraph>) -> Self {
        let device = p.device();
        let mut vars = HashMap::new();
        let mut fixed = HashMap::new();
        for (name, c) in &graph.constants {
            let t = c.tensor().to_device(device);
            match graph.roles.get(name).copied().unwrap_or(Role::Fixed) {
                Role::Trainable => {
                    let v = p.var_copy(&graph.var_names[name], &t);
                    vars.insert(name.clone(), v);
                }
                Role::Buffer => {
                    let mut v = p.zeros_no_train(&graph.var_names[name], &t.size());
                    tch::no_grad(|| v.copy_(&t));
                    vars.insert(name.clone(), v);
                }
                Role::Fixed => {
                    fixed.insert(name.clone(), t);
                }
            }
        }
        Self { graph, vars, fixed }
    }

    /// The graph this network was built from.
    pub fn graph(&self) -> &OnnxGraph {
        &self.graph
    }

    fn value<'a>(&'a self, env: &'a HashMap<String, Tensor>, name: &str) -> &'a Tensor {
        env.get(name).or_else(|| self.vars.get(name)).or_else(|| self.fixed.get(name)).expect("checked at import")
    }

    /// Runs the graph; errors are shape or type problems tch reports.
    pub fn run(&self, x: &Tensor, train: bool) -> Result<Tensor, ImportError> {
        self.run_span(&self.graph.input, x, 0..self.graph.nodes.len(), &self.graph.output, train)
    }

    /// Runs nodes `nodes` with the value `from` set to `x` and returns the value `to`.
    fn run_span(
        &self,
        from: &str,
        x: &Tensor,
        nodes: std::ops::Range<usize>,
        to: &str,
        train: bool,
    ) -> Result<Tensor, ImportError> {
        let mut env: HashMap<String, Tensor> = HashMap::from([(from.to_owned(), x.shallow_clone())]);
        for n in &self.graph.nodes[nodes] {
            let y = self.step(n, &env, train).map_err(|e| ImportError::BadNode {
                node: n.name.clone(),
                op: n.op_type.clone(),
                reason: e.to_string(),
            })?;
            env.insert(n.output.clone(), y);
        }
        env.remove(to).ok_or_else(|| ImportError::BadNode {
            node: to.to_owned(),
            op: "cut".into(),
            reason: "the value is not computed by these nodes".into(),
        })
    }

    /// Where the frozen first layers end: the first node that uses a variable not in `frozen`
    /// (VarStore names), and the one value computed before it that it and every later node read.
    /// `None` when nothing is frozen, when everything is, or when a later node reads anything else
    /// computed before the cut (a skip connection across it), or when dropout comes before the
    /// cut (it is random in training, a cache would drop it): then the frozen part cannot be run
    /// once and cached.
    pub fn frozen_cut(&self, frozen: &HashSet<String>) -> Option<FrozenCut> {
        let g = &self.graph;
        let trains = |name: &String| {
            g.roles.get(name) == Some(&Role::Trainable) && g.var_names.get(name).is_some_and(|v| !frozen.contains(v))
        };
        let first = g.nodes.iter().position(|n| n.inputs.iter().any(trains))?;
        if g.nodes[..first].iter().any(|n| matches!(n.op, Op::Dropout { ratio } if ratio > 0.0)) {
            return None;
        }
        let before: HashSet<&String> = g.nodes[..first].iter().map(|n| &n.output).chain([&g.input]).collect();
        let read: HashSet<&String> =
            g.nodes[first..].iter().flat_map(|n| n.inputs.iter()).filter(|i| before.contains(i)).collect();
        match read.into_iter().collect::<Vec<_>>()[..] {
            [cut] if *cut != g.input => Some(FrozenCut { node: first, value: cut.clone() }),
            _ => None,
        }
    }

    /// The frozen first layers' output (evaluation mode: batch norm uses its running statistics,
    /// dropout is off).
    pub fn run_frozen(&self, cut: &FrozenCut, x: &Tensor) -> Result<Tensor, ImportError> {
        self.run_span(&self.graph.input, x, 0..cut.node, &cut.value, false)
    }

    /// The rest of the network from the frozen layers' output.
    pub fn run_rest(&self, cut: &FrozenCut, maps: &Tensor, train: bool) -> Result<Tensor, ImportError> {
        self.run_span(&cut.value, maps, cut.node..self.graph.nodes.len(), &self.graph.output, train)
    }

    fn step(&self, n: &Node, env: &HashMap<String, Tensor>, train: bool) -> Result<Tensor, tch::TchError> {
        {
            let arg = |i: usize| self.value(env, &n.inputs[i]);
            let opt = |i: usize| n.inputs.get(i).filter(|s| !s.is_empty()).map(|s| self.value(env, s));
            let y = match &n.op {
                Op::Conv { strides, pads, dilations, group } => {
                    let mut x = arg(0).shallow_clone();
                    let [t, l, b, r] = *pads;
                    let padding = if t == b && l == r {
                        [t, l]
                    } else {
                        x = x.f_constant_pad_nd([l, r, t, b])?;
                        [0, 0]
                    };
                    x.f_conv2d(arg(1), opt(2), *strides, padding, *dilations, *group)?
                }
                Op::BatchNorm { eps, momentum } => {
                    let scale = arg(1);
                    // a frozen layer keeps its statistics: evaluation mode
                    let train_bn = train && scale.requires_grad();
                    arg(0).f_batch_norm(Some(scale), opt(2), opt(3), opt(4), train_bn, *momentum, *eps, false)?
                }
                Op::PRelu => {
                    let x = arg(0);
                    x.f_clamp_min(0.0)?.f_add(&arg(1).f_mul(&x.f_clamp_max(0.0)?)?)?
                }
                Op::Relu => arg(0).f_relu()?,
                Op::Binary(b) => {
                    let (a, c) = (arg(0), arg(1));
                    match b {
                        BinaryOp::Add => a.f_add(c)?,
                        BinaryOp::Sub => a.f_sub(c)?,
                        BinaryOp::Mul => a.f_mul(c)?,
                        BinaryOp::Div => a.f_div(c)?,
                        BinaryOp::Max => a.f_maximum(c)?,
                    }
                }
                Op::Sqrt => arg(0).f_sqrt()?,
                Op::ReduceSum { axes, keepdims } => {
                    let axes: Vec<i64> = match (axes, opt(1)) {
                        (Some(a), _) => a.clone(),
                        (None, Some(t)) => Vec::<i64>::try_from(t)?,
                        (None, None) => (0..arg(0).dim() as i64).collect(),
                    };
                    arg(0).f_sum_dim_intlist(axes.as_slice(), *keepdims, Kind::Float)?
                }
                Op::Flatten { axis } => {
                    let x = arg(0);
                    let size = x.size();
                    let axis = if *axis < 0 { axis + size.len() as i64 } else { *axis } as usize;
                    let outer: i64 = size[..axis.min(size.len())].iter().product();
                    x.f_reshape([outer, -1])?
                }
                Op::Gemm { alpha, beta, trans_a, trans_b } => {
                    let a = if *trans_a { arg(0).f_tr()? } else { arg(0).shallow_clone() };
                    let b = if *trans_b { arg(1).f_tr()? } else { arg(1).shallow_clone() };
                    let mut y = a.f_matmul(&b)?;
                    if *alpha != 1.0 {
                        y = y.f_mul_scalar(*alpha)?;
                    }
                    match opt(2) {
                        Some(c) if *beta != 1.0 => y.f_add(&c.f_mul_scalar(*beta)?)?,
                        Some(c) => y.f_add(c)?,
                        None => y,
                    }
                }
                Op::Dropout { ratio } => {
                    if train {
                        arg(0).f_dropout(*ratio, true)?
                    } else {
                        arg(0).shallow_clone()
                    }
                }
                Op::GlobalAveragePool => arg(0).f_mean_dim([2i64, 3].as_slice(), true, Kind::Float)?,
                Op::MaxPool { kernel, strides, pads, ceil } => {
                    let [t, l, b, r] = *pads;
                    let (x, padding) = if t == b && l == r {
                        (arg(0).shallow_clone(), [t, l])
                    } else {
                        (arg(0).f_pad([l, r, t, b], "constant", f64::NEG_INFINITY)?, [0, 0])
                    };
                    x.f_max_pool2d(*kernel, *strides, padding, [1, 1], *ceil)?
                }
                Op::Reshape => {
                    let x = arg(0);
                    let size = x.size();
                    let shape: Vec<i64> = Vec::<i64>::try_from(arg(1))?
                        .iter()
                        .enumerate()
                        .map(|(i, &d)| if d == 0 { size.get(i).copied().unwrap_or(0) } else { d })
                        .collect();
                    x.f_reshape(shape.as_slice())?
                }
                Op::Identity => arg(0).shallow_clone(),
            };
            Ok(y)
        }
    }

    /// The graph's output (the encoder's last hidden layer), `N × D`.
    pub fn hidden_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.run(x, train).expect("the graph ran at import; shapes do not change")
    }

    /// Runs one zero input of `C × H × W` and returns the output width, proving the graph runs.
    pub fn probe(&self, c: i64, h: i64, w: i64) -> Result<i64, ImportError> {
        let x = Tensor::zeros([2, c, h, w], (Kind::Float, self.device()));
        let y = tch::no_grad(|| self.run(&x, false))?;
        let size = y.size();
        if size.len() != 2 || size[0] != 2 {
            return Err(ImportError::ShapeMismatch {
                what: "output shape",
                card: "[N, D]".into(),
                graph: format!("{size:?} for a batch of 2"),
            });
        }
        Ok(size[1])
    }

    fn device(&self) -> Device {
        self.vars.values().next().map(|t| t.device()).unwrap_or(Device::Cpu)
    }

    /// The VarStore names of the variables of the first `n` layers.
    pub fn first_layers_variables(&self, n: usize) -> Vec<String> {
        self.graph.layers.iter().take(n).flat_map(|l| l.variables.iter().cloned()).collect()
    }

    /// Index of the last Gemm layer (the embedding layer of a face encoder), if any.
    pub fn embedding_layer(&self) -> Option<usize> {
        self.graph.layers.iter().rposition(|l| l.op == "Gemm")
    }

    /// The graph as ONNX bytes with the current weights and statistics, and `metadata` added.
    pub fn to_onnx(&self, metadata: &[(String, String)]) -> Result<Vec<u8>, ImportError> {
        let mut proto = self.graph.proto.clone();
        if let Some(g) = proto.graph.as_mut() {
            for t in &mut g.initializer {
                if let Some(v) = self.vars.get(&t.name) {
                    let data = Vec::<f32>::try_from(&v.detach().to_device(Device::Cpu).contiguous().view([-1]))?;
                    t.raw_data = data.iter().flat_map(|x| x.to_le_bytes()).collect();
                    t.float_data.clear();
                }
            }
        }
        for (k, v) in metadata {
            proto.metadata_props.retain(|e| &e.key != k);
            proto.metadata_props.push(tract_onnx::pb::StringStringEntryProto { key: k.clone(), value: v.clone() });
        }
        proto.producer_name = "facegate".into();
        proto.producer_version = env!("CARGO_PKG_VERSION").into();
        Ok(proto.encode_to_vec())
    }

    /// Number of weights (trainable variables' elements).
    pub fn parameter_count(&self) -> i64 {
        self.graph
            .roles
            .iter()
            .filter(|(_, r)| **r == Role::Trainable)
            .filter_map(|(n, _)| self.vars.get(n))
            .map(|t| t.numel() as i64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ArchConfig, EmbeddingNet};
    use crate::onnx::write::encoder_to_onnx;
    use std::path::Path;

    fn models() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
    }

    /// A tiny built-in encoder with non-trivial batch-norm statistics, exported to ONNX.
    fn tiny_export() -> (nn::VarStore, EmbeddingNet, Vec<u8>) {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg =
            ArchConfig { in_channels: 1, input_size: 16, widths: [4, 6, 8, 8, 4], embedding_dim: 8, dropout: 0.1 };
        let net = EmbeddingNet::new(&vs.root(), cfg);
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name.ends_with("running_mean") {
                    t.copy_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.3));
                } else if name.ends_with("running_var") {
                    t.copy_(&(Tensor::rand(t.size(), (Kind::Float, Device::Cpu)) + 0.5));
                } else if name.ends_with("act.weight") || name.contains(".bn.weight") {
                    t.copy_(&(Tensor::rand(t.size(), (Kind::Float, Device::Cpu)) + 0.2));
                }
            }
        });
        let bytes = encoder_to_onnx(&net, &[], false).unwrap();
        (vs, net, bytes)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn import_of_export_computes_the_same_embeddings() {
        let (vs, net, bytes) = tiny_export();
        let graph = Arc::new(OnnxGraph::parse(&bytes, "tiny").unwrap());
        let ivs = nn::VarStore::new(Device::Cpu);
        let imported = OnnxNet::new(&ivs.root(), graph.clone());
        let x = Tensor::randn([5, 1, 16, 16], (Kind::Float, Device::Cpu));
        let want = tch::no_grad(|| net.embed_t(&x, false));
        let got = tch::no_grad(|| crate::model::l2_normalise(&imported.hidden_t(&x, false)));
        assert!(max_diff(&want, &got) < 1e-5, "diff {}", max_diff(&want, &got));
        // the randomly initialised export also runs in tract like tch
        {
            use facegate_face::Encoder;
            let mut card = facegate_face::sface::sface_card();
            card.fingerprint = facegate_shared::Fingerprint::of_bytes(&bytes);
            card.input = crate::trainer::default_input_spec(&net.config);
            card.embedding_dim = facegate_shared::EmbeddingDim::new(8).unwrap();
            card.normalised_in_graph = true;
            let tract = facegate_face::TractEncoder::from_bytes(&bytes, card, "tiny").unwrap();
            for i in 0..5 {
                let xi = Vec::<f32>::try_from(&x.get(i).view([-1])).unwrap();
                let t = tract.encode_tensor(&xi).unwrap();
                let w = Vec::<f32>::try_from(&want.get(i)).unwrap();
                let d = w.iter().zip(t.as_slice()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(d <= 1e-4, "tract vs tch {d}");
            }
        }
        // parameters where nothing was folded are carried over exactly: PReLU slopes
        let vars = ivs.variables();
        let slope = vars.iter().find(|(n, _)| n.ends_with("stem_act_slope")).expect("stem slope imported").1;
        assert!(slope.view([-1]).equal(&vs.variables()["stem.act.weight"]));
        // batch-norm was folded, so the imported graph has no BatchNormalization layer and no buffers
        assert!(graph.layers().iter().all(|l| l.op != "BatchNormalization"));
        assert_eq!(graph.layers().iter().filter(|l| l.op == "Gemm").count(), 1);
        // and exporting the imported network again gives a graph that computes the same
        let again = imported.to_onnx(&[("k".into(), "v".into())]).unwrap();
        let vs3 = nn::VarStore::new(Device::Cpu);
        let third = OnnxNet::new(&vs3.root(), Arc::new(OnnxGraph::parse(&again, "again").unwrap()));
        assert!(third.hidden_t(&x, false).equal(&imported.hidden_t(&x, false)));
    }

    /// Runs ONNX bytes in tract at a given input shape.
    fn tract_run(bytes: &[u8], input: Vec<f32>, shape: [usize; 4]) -> Vec<f32> {
        use tract_onnx::prelude::*;
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &*bytes)
            .unwrap()
            .with_input_fact(0, f32::fact(shape).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let t: Tensor = tract_ndarray::Array4::from_shape_vec(shape, input).unwrap().into();
        let out = plan.run(tvec!(t.into())).unwrap();
        out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
    }

    #[test]
    fn the_dynamic_batch_variant_runs_any_batch_in_tract_and_tch() {
        let (_, net, _) = tiny_export();
        let bytes = encoder_to_onnx(&net, &[], true).unwrap();
        let graph = OnnxGraph::parse(&bytes, "dynamic").unwrap();
        assert_eq!(graph.input_dims, vec![0, 1, 16, 16], "symbolic batch");
        let x = Tensor::randn([3, 1, 16, 16], (Kind::Float, Device::Cpu));
        let want = Vec::<f32>::try_from(&tch::no_grad(|| net.embed_t(&x, false)).view([-1])).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let imported = OnnxNet::new(&vs.root(), Arc::new(graph));
        let got = Vec::<f32>::try_from(&imported.hidden_t(&x, false).view([-1])).unwrap();
        let input = Vec::<f32>::try_from(&x.view([-1])).unwrap();
        let tract_out = tract_run(&bytes, input, [3, 1, 16, 16]);
        for other in [&got, &tract_out] {
            assert_eq!(other.len(), 3 * 8);
            let d = want.iter().zip(other.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(d <= 1e-4, "batch of 3 differs by {d}");
        }
    }

    #[test]
    fn training_moves_only_unfrozen_layers_and_frozen_batch_norm_keeps_its_statistics() {
        // a graph with real BatchNormalization nodes: written by hand from the tiny export's shapes
        let (_, _, bytes) = tiny_export();
        let mut proto = ModelProto::decode(bytes.as_slice()).unwrap();
        let g = proto.graph.as_mut().unwrap();
        // insert BN after the stem conv: stem.conv_out -> bn -> (what read stem.conv_out)
        let c = 4i64;
        for (name, v) in [("bn.s", 1.5f32), ("bn.b", 0.1), ("bn.m", 0.2), ("bn.v", 2.0)] {
            g.initializer.push(TensorProto {
                name: name.into(),
                dims: vec![c],
                data_type: DataType::Float as i32,
                float_data: vec![v; c as usize],
                ..Default::default()
            });
        }
        for n in g.node.iter_mut().skip(1) {
            for i in n.input.iter_mut().filter(|i| *i == "stem.conv_out") {
                *i = "bn_out".into();
            }
        }
        g.node.insert(
            1,
            NodeProto {
                name: "bn".into(),
                op_type: "BatchNormalization".into(),
                input: ["stem.conv_out", "bn.s", "bn.b", "bn.m", "bn.v"].map(String::from).to_vec(),
                output: vec!["bn_out".into()],
                ..Default::default()
            },
        );
        let graph = Arc::new(OnnxGraph::parse(&proto.encode_to_vec(), "bn").unwrap());
        assert_eq!(graph.layers()[1].op, "BatchNormalization");
        let vs = nn::VarStore::new(Device::Cpu);
        let net = OnnxNet::new(&vs.root(), graph);
        let frozen = net.first_layers_variables(2); // stem conv + the batch-norm
        let before: HashMap<String, Tensor> = vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
        for (n, t) in vs.variables() {
            if frozen.contains(&n) {
                let _ = t.set_requires_grad(false);
            }
        }
        let mut opt = nn::OptimizerConfig::build(nn::Sgd::default(), &vs, 0.05).unwrap();
        let x = Tensor::randn([8, 1, 16, 16], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 0, 1, 1, 2, 2, 3, 3]);
        let loss = |train: bool| {
            let e = crate::model::l2_normalise(&net.hidden_t(&x, train));
            crate::losses::triplet_loss(&e, &y, 0.4, crate::losses::Mining::BatchAll)
        };
        let loss0 = loss(false).double_value(&[]);
        for _ in 0..20 {
            opt.backward_step(&loss(true));
        }
        let loss1 = loss(false).double_value(&[]);
        assert!(loss1 < loss0, "training lowers the loss: {loss0} -> {loss1}");
        let after = vs.variables();
        for (n, t) in &before {
            let same = after[n].equal(t);
            if frozen.contains(n) {
                assert!(same, "frozen {n} changed");
            }
        }
        assert!(frozen.iter().any(|n| n.contains("bn_m")), "running mean belongs to the frozen layer");
        let moved = before.iter().filter(|(n, t)| !frozen.contains(n) && !after[*n].equal(t)).count();
        assert!(moved > 0, "unfrozen layers train");
    }

    #[test]
    fn the_committed_default_encoder_imports_with_its_golden_embedding() {
        let onnx = models().join("facegate-default.onnx");
        let golden: crate::export::Golden =
            serde_json::from_str(&std::fs::read_to_string(crate::export::golden_path_for(&onnx)).unwrap()).unwrap();
        let base = crate::net::ImportedBase::load(&onnx).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = OnnxNet::new(&vs.root(), base.graph.clone());
        let shape: Vec<i64> = golden.shape.iter().map(|&d| d as i64).collect();
        let mut e = tch::no_grad(|| net.hidden_t(&Tensor::from_slice(&golden.input).view(shape.as_slice()), false));
        // the golden embedding is the encoder's output: L2-normalised after the graph when the
        // card says the graph does not (the trained encoder keeps SFace's convention)
        if !base.card.normalised_in_graph {
            e = crate::model::l2_normalise(&e);
        }
        let e = Vec::<f32>::try_from(&e.view([-1])).unwrap();
        let diff = e.iter().zip(&golden.embedding).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff <= 1e-4, "golden embedding differs by {diff}");
    }

    #[test]
    fn sface_imports_and_matches_tract() {
        use facegate_face::Encoder;
        let onnx = models().join("face_recognition_sface_2021dec.onnx");
        assert!(onnx.exists(), "{} missing: run `make setup`", onnx.display());
        let base = crate::net::ImportedBase::load(&onnx).unwrap();
        assert_eq!(base.embedding_dim, 128);
        assert!(base.graph.layers().iter().any(|l| l.op == "PRelu"));
        let vs = nn::VarStore::new(Device::Cpu);
        let net = OnnxNet::new(&vs.root(), base.graph.clone());
        let tract = facegate_face::TractEncoder::load(&onnx).unwrap();
        let mut rng = facegate_shared::synthetic::SplitMix64::new(3);
        let input: Vec<f32> = (0..3 * 112 * 112).map(|_| (rng.next_f64() * 255.0) as f32).collect();
        let e = tch::no_grad(|| {
            crate::model::l2_normalise(&net.hidden_t(&Tensor::from_slice(&input).view([1, 3, 112, 112]), false))
        });
        let e = Vec::<f32>::try_from(&e.view([-1])).unwrap();
        let t = tract.encode_tensor(&input).unwrap();
        let diff = e.iter().zip(t.as_slice()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff <= 1e-4, "tch and tract differ by {diff}");
    }

    /// `--trunk-views`: the frozen first layers run once, the rest from their output gives the
    /// network's own output; a cut that a skip connection crosses is refused.
    #[test]
    fn a_frozen_prefix_and_the_rest_give_the_whole_network() {
        let (_, _, bytes) = tiny_export();
        let graph = Arc::new(OnnxGraph::parse(&bytes, "tiny").unwrap());
        let vs = nn::VarStore::new(Device::Cpu);
        let net = OnnxNet::new(&vs.root(), graph.clone());
        let frozen_first = |k: usize| net.first_layers_variables(k).into_iter().collect::<HashSet<String>>();
        let stem = graph.layers().iter().position(|l| l.node.starts_with("block1")).unwrap();
        assert!(stem > 0);
        let cut = net.frozen_cut(&frozen_first(stem)).expect("the stem's output is all block 1 reads");
        assert_eq!(cut.node, graph.nodes.iter().position(|n| n.name == graph.layers()[stem].node).unwrap());
        tch::manual_seed(2);
        let x = Tensor::randn([3, 1, 16, 16], (Kind::Float, Device::Cpu));
        let (whole, split) = tch::no_grad(|| {
            let maps = net.run_frozen(&cut, &x).unwrap();
            (net.run(&x, false).unwrap(), net.run_rest(&cut, &maps, false).unwrap())
        });
        assert_eq!(whole.size(), split.size());
        assert!(max_diff(&whole, &split) == 0.0, "{}", max_diff(&whole, &split));
        // inside block 1 the skip connection still reads the stem's output: no single cut
        assert_eq!(net.frozen_cut(&frozen_first(stem + 1)), None);
        // nothing frozen, or everything
        assert_eq!(net.frozen_cut(&HashSet::new()), None);
        assert_eq!(net.frozen_cut(&frozen_first(graph.layers().len())), None);
    }

    /// SFace's dropout comes before its fully connected layer: freezing everything before that
    /// layer leaves nothing a cache may stand in for; an earlier cut is fine.
    #[test]
    fn dropout_before_the_cut_is_not_cached() {
        let base = crate::net::ImportedBase::load(&models().join("face_recognition_sface_2021dec.onnx")).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = OnnxNet::new(&vs.root(), base.graph.clone());
        let frozen = |k: usize| net.first_layers_variables(k).into_iter().collect::<HashSet<String>>();
        assert_eq!(net.frozen_cut(&frozen(net.embedding_layer().unwrap())), None);
        assert_eq!(net.frozen_cut(&frozen(3)).map(|c| c.value), Some("conv_1_relu".to_owned()));
    }

    #[test]
    fn invalid_inputs_get_typed_errors() {
        let missing = crate::net::ImportedBase::load(Path::new("/nonexistent/model.onnx")).unwrap_err();
        assert!(matches!(missing.downcast_ref::<ImportError>(), Some(ImportError::Read { .. })), "{missing}");
        for junk in [&b""[..], b"not an onnx file at all", &[0xff; 64]] {
            let e = OnnxGraph::parse(junk, "junk").unwrap_err();
            assert!(matches!(e, ImportError::NotOnnx { .. }), "{e}");
        }
        let (_, _, bytes) = tiny_export();
        let proto = ModelProto::decode(bytes.as_slice()).unwrap();

        let mut p = proto.clone();
        p.graph.as_mut().unwrap().node[3].op_type = "Softmax".into();
        let node = p.graph.as_ref().unwrap().node[3].name.clone();
        let e = OnnxGraph::parse(&p.encode_to_vec(), "x").unwrap_err();
        assert!(matches!(&e, ImportError::UnsupportedOperator { op, node: n } if op == "Softmax" && *n == node), "{e}");
        assert!(e.to_string().contains("Softmax") && e.to_string().contains(&node), "{e}");

        let mut p = proto.clone();
        p.graph.as_mut().unwrap().initializer.retain(|t| t.name != "stem.conv.weight");
        let e = OnnxGraph::parse(&p.encode_to_vec(), "x").unwrap_err();
        assert!(
            matches!(&e, ImportError::MissingInitialiser { name, node } if name == "stem.conv.weight" && node == "stem.conv"),
            "{e}"
        );

        let mut p = proto.clone();
        let fc = p.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type == "Gemm").unwrap();
        fc.input[1] = "head.flatten_out".into();
        let e = OnnxGraph::parse(&p.encode_to_vec(), "x").unwrap_err();
        assert!(matches!(&e, ImportError::BadNode { reason, .. } if reason.contains("computed at run time")), "{e}");

        let mut p = proto.clone();
        p.graph.as_mut().unwrap().initializer[0].raw_data.truncate(3);
        assert!(matches!(OnnxGraph::parse(&p.encode_to_vec(), "x").unwrap_err(), ImportError::BadInitialiser { .. }));

        // card and graph disagree: input shape, input name, embedding dimension
        let graph = OnnxGraph::parse(&bytes, "tiny").unwrap();
        let e = graph.check_input("input", 3, 112, 112).unwrap_err();
        assert!(matches!(e, ImportError::ShapeMismatch { what: "input shape", .. }), "{e}");
        assert!(matches!(graph.check_input("data", 1, 16, 16).unwrap_err(), ImportError::ShapeMismatch { .. }));
        assert!(graph.check_input("input", 1, 16, 16).is_ok());
        let mut card = facegate_face::sface::sface_card();
        card.input = crate::trainer::default_input_spec(&ArchConfig { input_size: 16, ..ArchConfig::default() });
        let e = crate::net::ImportedBase::from_parts(Path::new("tiny.onnx"), card, graph).unwrap_err();
        let e = e.downcast::<ImportError>().unwrap();
        assert!(matches!(e, ImportError::ShapeMismatch { what: "embedding dimension", .. }), "{e}");
    }
}
