//! Grafting a new head onto the trunk of a pretrained ONNX encoder: transfer learning with a
//! smaller, faster network than the teacher.
//!
//! [`graft`] keeps the base graph's nodes up to a cut (their weights unchanged), drops the rest
//! (for SFace: the last stages and the 6.4 M-weight fully connected layer) and appends a head of
//! fresh layers written as ordinary ONNX nodes: optional depthwise-stride-2 and pointwise blocks,
//! then a global depthwise convolution (or average pool) and a fully connected embedding layer
//! with batch normalisation. The result is an ONNX encoder like any other: the importer trains it
//! (`--init-from X.onnx --freeze K` keeps the trunk fixed), `export` writes it back, and tract runs
//! it on the door. Head layers are named `head_*`.

use prost::Message;
use tch::{nn, Device, Kind, Tensor};
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto, AttributeProto,
    NodeProto, StringStringEntryProto, TensorProto,
};

use super::import::{ImportError, OnnxGraph, OnnxNet};
use super::write::{attr_int, attr_ints};

/// Why a graft could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GraftError {
    #[error("no node of the base graph outputs '{cut}'; cut points that give C×H×W maps: {candidates}")]
    UnknownCut { cut: String, candidates: String },
    #[error("--head '{spec}': {reason}")]
    BadHead { spec: String, reason: String },
    #[error("the cut '{cut}' gives shape {shape:?}; a head needs a 1×C×H×W feature map")]
    NotAMap { cut: String, shape: Vec<i64> },
    #[error(
        "the base graph already has '{name}': the new head's names (head_*) would clash; graft the original encoder"
    )]
    NameClash { name: String },
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// One step of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStep {
    /// Depthwise 3×3 convolution, stride 2, padding 1, + batch norm + PReLU (halves H and W).
    Depthwise2,
    /// 1×1 convolution to N channels + batch norm + PReLU.
    Pointwise(i64),
    /// Global depthwise convolution over the whole map + batch norm (MobileFaceNet's GDC).
    Gdc,
    /// Global average pooling.
    Gap,
}

/// Parses `dw2,pw256,gdc`: any number of `dw2` and `pwN`, ending in `gdc` or `gap`.
pub fn parse_head(spec: &str) -> Result<Vec<HeadStep>, GraftError> {
    let bad = |reason: String| GraftError::BadHead { spec: spec.to_owned(), reason };
    let mut steps = Vec::new();
    for tok in spec.split(',').map(str::trim) {
        let step = match tok {
            "dw2" => HeadStep::Depthwise2,
            "gdc" => HeadStep::Gdc,
            "gap" => HeadStep::Gap,
            t if t.starts_with("pw") => match t[2..].parse::<i64>() {
                Ok(n) if (1..=4096).contains(&n) => HeadStep::Pointwise(n),
                _ => return Err(bad(format!("'{t}': pwN needs N channels, 1 to 4096"))),
            },
            t => return Err(bad(format!("'{t}' is not dw2, pwN, gdc or gap"))),
        };
        steps.push(step);
    }
    match steps.iter().position(|s| matches!(s, HeadStep::Gdc | HeadStep::Gap)) {
        Some(i) if i + 1 == steps.len() => Ok(steps),
        _ => Err(bad("give dw2 and pwN steps, then end with exactly one gdc or gap".into())),
    }
}

/// A grafted encoder.
#[derive(Debug)]
pub struct Grafted {
    /// The ONNX bytes.
    pub bytes: Vec<u8>,
    /// Layers with weights kept from the base (what `--freeze` keeps fixed).
    pub trunk_layers: usize,
    /// The cut's feature map, C × H × W.
    pub cut_shape: [i64; 3],
    /// Weights of the new head.
    pub head_weights: i64,
    /// The grafted graph, parsed and checked.
    pub graph: OnnxGraph,
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: v, ..Default::default() }
}

/// Appends head nodes and their initialisers.
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    weights: i64,
    last: String,
    count: usize,
}

impl Builder {
    fn init(&mut self, name: &str, dims: &[i64], t: Tensor) -> String {
        let data = Vec::<f32>::try_from(&t.contiguous().view([-1])).expect("a float tensor");
        self.weights += data.len() as i64;
        self.inits.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.into()
    }

    fn node(&mut self, op: &str, kind: &str, mut inputs: Vec<String>, attribute: Vec<AttributeProto>) {
        self.count += 1;
        let name = format!("head_{}_{kind}", self.count);
        inputs.insert(0, std::mem::take(&mut self.last));
        self.nodes.push(NodeProto {
            name: name.clone(),
            op_type: op.into(),
            input: inputs,
            output: vec![name.clone()],
            attribute,
            ..Default::default()
        });
        self.last = name;
    }

    /// A convolution with He-normal weights and no bias (a batch norm follows).
    fn conv(&mut self, out: i64, per_group: i64, k: [i64; 2], stride: i64, pad: i64, group: i64) {
        let name = format!("head_{}_conv_weight", self.count + 1);
        let fan_in = (per_group * k[0] * k[1]) as f64;
        let dims = [out, per_group, k[0], k[1]];
        let w = Tensor::randn(dims, (Kind::Float, Device::Cpu)) * (2.0 / fan_in).sqrt();
        let w = self.init(&name, &dims, w);
        let attrs = vec![
            attr_ints("kernel_shape", &k),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &[pad, pad, pad, pad]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", group),
        ];
        self.node("Conv", "conv", vec![w], attrs);
    }

    fn batch_norm(&mut self, c: i64) {
        let p = format!("head_{}_bn", self.count + 1);
        let ones = || Tensor::ones([c], (Kind::Float, Device::Cpu));
        let zeros = || Tensor::zeros([c], (Kind::Float, Device::Cpu));
        let inputs = vec![
            self.init(&format!("{p}_gamma"), &[c], ones()),
            self.init(&format!("{p}_beta"), &[c], zeros()),
            self.init(&format!("{p}_mean"), &[c], zeros()),
            self.init(&format!("{p}_var"), &[c], ones()),
        ];
        self.weights -= 2 * c; // running statistics are not weights
        self.node("BatchNormalization", "bn", inputs, vec![attr_float("epsilon", 1e-5), attr_float("momentum", 0.9)]);
    }

    fn prelu(&mut self, c: i64) {
        let name = format!("head_{}_prelu_slope", self.count + 1);
        let s = self.init(&name, &[c, 1, 1], Tensor::full([c, 1, 1], 0.25, (Kind::Float, Device::Cpu)));
        self.node("PRelu", "prelu", vec![s], vec![]);
    }
}

/// Keeps `base` up to the node that outputs `cut` and appends `head`, ending in a `dim`-wide
/// embedding layer. New weights are drawn with `seed`.
pub fn graft(base: &OnnxGraph, cut: &str, head: &[HeadStep], dim: i64, seed: i64) -> Result<Grafted, GraftError> {
    let mut proto = base.proto().clone();
    if let Some(g) = proto.graph.as_ref() {
        let names =
            g.node.iter().flat_map(|n| n.output.iter().chain([&n.name])).chain(g.initializer.iter().map(|t| &t.name));
        if let Some(name) = names.into_iter().find(|n| n.starts_with("head_")) {
            return Err(GraftError::NameClash { name: name.clone() });
        }
    }
    let mut output = {
        let graph = proto.graph.as_mut().expect("checked at import");
        let Some(at) = graph.node.iter().position(|n| n.output.first().is_some_and(|o| o == cut)) else {
            let candidates: Vec<&str> = graph
                .node
                .iter()
                .filter(|n| matches!(n.op_type.as_str(), "PRelu" | "Relu"))
                .filter_map(|n| n.output.first().map(String::as_str))
                .collect();
            return Err(GraftError::UnknownCut { cut: cut.to_owned(), candidates: candidates.join(", ") });
        };
        graph.node.truncate(at + 1);
        let used: std::collections::HashSet<&String> = graph.node.iter().flat_map(|n| n.input.iter()).collect();
        let dropped: std::collections::HashSet<String> =
            graph.initializer.iter().filter(|t| !used.contains(&t.name)).map(|t| t.name.clone()).collect();
        graph.initializer.retain(|t| !dropped.contains(&t.name));
        // older files also list their initialisers as graph inputs
        graph.input.retain(|i| !dropped.contains(&i.name));
        let mut output = graph.output[0].clone();
        output.name = cut.to_owned();
        graph.output = vec![output.clone()];
        output
    };

    // the cut's shape, from running the trunk once
    let trunk = OnnxGraph::parse(&proto.encode_to_vec(), "trunk")?;
    let dims = &base.input_dims;
    if dims.len() != 4 || dims[1..].contains(&0) {
        return Err(GraftError::Import(ImportError::ShapeMismatch {
            what: "input shape",
            card: "a fixed C×H×W".into(),
            graph: format!("{dims:?}"),
        }));
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let y = tch::no_grad(|| {
        OnnxNet::new(&vs.root(), std::sync::Arc::new(trunk))
            .run(&Tensor::zeros([1, dims[1], dims[2], dims[3]], (Kind::Float, Device::Cpu)), false)
    })?;
    let shape = y.size();
    let [1, mut c, mut h, mut w] = shape[..] else {
        return Err(GraftError::NotAMap { cut: cut.to_owned(), shape });
    };
    let cut_shape = [c, h, w];

    tch::manual_seed(seed);
    let mut b = Builder { nodes: Vec::new(), inits: Vec::new(), weights: 0, last: cut.to_owned(), count: 0 };
    for step in head {
        match *step {
            HeadStep::Depthwise2 => {
                b.conv(c, 1, [3, 3], 2, 1, c);
                b.batch_norm(c);
                b.prelu(c);
                h = (h - 1) / 2 + 1;
                w = (w - 1) / 2 + 1;
            }
            HeadStep::Pointwise(n) => {
                b.conv(n, c, [1, 1], 1, 0, 1);
                b.batch_norm(n);
                b.prelu(n);
                c = n;
            }
            HeadStep::Gdc => {
                b.conv(c, 1, [h, w], 1, 0, c);
                b.batch_norm(c);
            }
            HeadStep::Gap => b.node("GlobalAveragePool", "gap", vec![], vec![]),
        }
    }
    b.node("Flatten", "flatten", vec![], vec![attr_int("axis", 1)]);
    let fc = format!("head_{}_fc", b.count + 1);
    let wt = Tensor::randn([dim, c], (Kind::Float, Device::Cpu)) * (1.0 / c as f64).sqrt();
    let wt = b.init(&format!("{fc}_weight"), &[dim, c], wt);
    let bias = b.init(&format!("{fc}_bias"), &[dim], Tensor::zeros([dim], (Kind::Float, Device::Cpu)));
    b.node("Gemm", "fc", vec![wt, bias], vec![attr_int("transB", 1)]);
    b.batch_norm(dim);

    let graph = proto.graph.as_mut().expect("checked at import");
    graph.node.extend(b.nodes);
    graph.initializer.extend(b.inits);
    output.name = b.last;
    if let Some(type_proto::Value::TensorType(t)) = output.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        let batch = t.shape.as_ref().and_then(|s| s.dim.first().cloned());
        let width = tract_onnx::pb::tensor_shape_proto::Dimension {
            value: Some(dimension::Value::DimValue(dim)),
            ..Default::default()
        };
        t.shape = Some(tract_onnx::pb::TensorShapeProto { dim: batch.into_iter().chain([width]).collect() });
    }
    graph.output = vec![output];
    let head_text: Vec<String> = head
        .iter()
        .map(|s| match s {
            HeadStep::Depthwise2 => "dw2".to_owned(),
            HeadStep::Pointwise(n) => format!("pw{n}"),
            HeadStep::Gdc => "gdc".to_owned(),
            HeadStep::Gap => "gap".to_owned(),
        })
        .collect();
    proto.metadata_props.retain(|e| e.key != "facegate.graft");
    proto.metadata_props.push(StringStringEntryProto {
        key: "facegate.graft".into(),
        value: format!(
            "trunk to '{cut}' ({c0}x{h0}x{w0}), head {} -> {dim}, seed {seed}",
            head_text.join(","),
            c0 = cut_shape[0],
            h0 = cut_shape[1],
            w0 = cut_shape[2]
        ),
    });
    proto.producer_name = "facegate".into();
    proto.producer_version = env!("CARGO_PKG_VERSION").into();
    let bytes = proto.encode_to_vec();
    let graph = OnnxGraph::parse(&bytes, "grafted")?;
    let trunk_layers = graph.layers().iter().take_while(|l| !l.node.starts_with("head_")).count();
    Ok(Grafted { bytes, trunk_layers, cut_shape, head_weights: b.weights, graph })
}

/// Flags of `facegate-train graft`.
#[derive(Debug, Clone, clap::Args)]
pub struct GraftArgs {
    /// The pretrained ONNX encoder (its `.card.json` beside it).
    #[arg(long)]
    pub from: std::path::PathBuf,
    /// Output name of the last base node kept (e.g. `conv_7_relu` for SFace's 14×14 stage).
    #[arg(long)]
    pub cut: String,
    /// The new head: `dw2` (depthwise stride 2) and `pwN` (1×1 to N channels) steps, then `gdc`
    /// (global depthwise convolution) or `gap` (average pool); a fully connected embedding layer
    /// with batch normalisation follows.
    #[arg(long, default_value = "gdc")]
    pub head: String,
    /// Embedding width.
    #[arg(long, default_value_t = 128)]
    pub dim: i64,
    /// Seed of the head's initial weights.
    #[arg(long, default_value_t = 7)]
    pub seed: i64,
    /// Output ONNX path; its card (`.card.json`) goes beside it.
    #[arg(short = 'o', long)]
    pub out: std::path::PathBuf,
}

/// What `graft` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GraftSummary {
    pub onnx: std::path::PathBuf,
    pub card: std::path::PathBuf,
    pub bytes: usize,
    pub cut_shape: [i64; 3],
    pub head_weights: i64,
    /// Give this to `--freeze` to keep the trunk fixed.
    pub trunk_layers: usize,
}

/// Writes the grafted encoder and its card (the base card's input and alignment, no threshold).
pub fn graft_files(args: &GraftArgs) -> anyhow::Result<GraftSummary> {
    use anyhow::Context;
    use facegate_shared::gallery_file::write_atomic;
    if !(1..=4096).contains(&args.dim) {
        anyhow::bail!("--dim {}: give an embedding width of 1 to 4096", args.dim);
    }
    let head = parse_head(&args.head)?;
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(&args.out, &args.from) {
        anyhow::bail!("-o {} is the base encoder itself: write the grafted one elsewhere", args.out.display());
    }
    let base = crate::net::ImportedBase::load(&args.from)?;
    let g = graft(&base.graph, &args.cut, &head, args.dim, args.seed)?;
    let mut card = base.card.clone();
    let stem = args.out.file_stem().and_then(|s| s.to_str()).unwrap_or("grafted").to_owned();
    card.name = stem;
    card.fingerprint = facegate_shared::Fingerprint::of_bytes(&g.bytes);
    card.embedding_dim = facegate_shared::EmbeddingDim::new(args.dim as usize)?;
    card.threshold = None;
    card.metrics = Default::default();
    card.training = Some(format!(
        "untrained head: {}'s layers to '{}' ({}x{}x{}, weights unchanged) + head {} -> {} (seed {}); \
         train it with --init-from {} --freeze {}",
        base.card.name,
        args.cut,
        g.cut_shape[0],
        g.cut_shape[1],
        g.cut_shape[2],
        args.head,
        args.dim,
        args.seed,
        args.out.display(),
        g.trunk_layers
    ));
    // checks the card against the graph (input, output width) before anything is written
    crate::net::ImportedBase::from_parts(&args.out, card.clone(), g.graph)?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let card_path = facegate_face::card_path_for(&args.out);
    write_atomic(&args.out, &g.bytes)?;
    write_atomic(&card_path, (card.to_json() + "\n").as_bytes())?;
    Ok(GraftSummary {
        onnx: args.out.clone(),
        card: card_path,
        bytes: g.bytes.len(),
        cut_shape: g.cut_shape,
        head_weights: g.head_weights,
        trunk_layers: g.trunk_layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sface() -> std::path::PathBuf {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/face_recognition_sface_2021dec.onnx");
        assert!(p.exists(), "{} missing: run `make setup`", p.display());
        p
    }

    #[test]
    fn head_specs_parse_and_bad_ones_say_why() {
        assert_eq!(parse_head("gdc").unwrap(), vec![HeadStep::Gdc]);
        assert_eq!(
            parse_head("dw2, pw256,gap").unwrap(),
            vec![HeadStep::Depthwise2, HeadStep::Pointwise(256), HeadStep::Gap]
        );
        for bad in ["", "pw", "pw0", "pw99999", "dw2", "gdc,gdc", "gdc,pw8", "conv"] {
            assert!(matches!(parse_head(bad), Err(GraftError::BadHead { .. })), "{bad}");
        }
    }

    /// SFace cut at its 14×14 stage with a small head: the trunk's weights are SFace's, the
    /// head's shapes follow the map, tch and tract (the door's runtime) agree on the output.
    #[test]
    fn sface_trunk_with_a_new_head_runs_in_tch_and_tract() {
        use facegate_face::Encoder;
        let base = crate::net::ImportedBase::load(&sface()).unwrap();
        let head = parse_head("dw2,pw64,gdc").unwrap();
        let g = graft(&base.graph, "conv_7_relu", &head, 32, 3).unwrap();
        assert_eq!(g.cut_shape, [512, 14, 14]);
        // conv_1 .. conv_7: a stem (conv, bn, prelu) and six depthwise + pointwise pairs
        assert_eq!(g.trunk_layers, 3 + 6 * 6);
        // dw 512·9 + bn 2·512 + prelu 512; pw 64·512 + bn 2·64 + prelu 64; gdc 64·49 + bn 2·64;
        // fc 32·64 + 32; bn 2·32
        let want = 512 * 9 + 1024 + 512 + 64 * 512 + 128 + 64 + 64 * 49 + 128 + 32 * 64 + 32 + 64;
        assert_eq!(g.head_weights, want);
        let graph = OnnxGraph::parse(&g.bytes, "grafted").unwrap();
        let by_name = |p: &tract_onnx::pb::ModelProto, n: &str| {
            p.graph.as_ref().unwrap().initializer.iter().find(|t| t.name == n).cloned()
        };
        for name in ["conv_1_conv2d_weight", "conv_7_batchnorm_moving_var", "conv_7_relu_gamma"] {
            assert_eq!(by_name(graph.proto(), name), by_name(base.graph.proto(), name), "{name} changed");
        }
        assert!(by_name(graph.proto(), "conv_8_conv2d_weight").is_none(), "layers after the cut are dropped");
        assert!(by_name(graph.proto(), "pre_fc1_weight").is_none());

        let mut card = base.card.clone();
        card.embedding_dim = facegate_shared::EmbeddingDim::new(32).unwrap();
        card.fingerprint = facegate_shared::Fingerprint::of_bytes(&g.bytes);
        let imported = crate::net::ImportedBase::from_parts(Path::new("g.onnx"), card.clone(), graph).unwrap();
        assert_eq!(imported.embedding_dim, 32);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = OnnxNet::new(&vs.root(), imported.graph.clone());
        let mut rng = facegate_shared::synthetic::SplitMix64::new(4);
        let input: Vec<f32> = (0..3 * 112 * 112).map(|_| (rng.next_f64() * 255.0) as f32).collect();
        let e = tch::no_grad(|| {
            crate::model::l2_normalise(&net.hidden_t(&Tensor::from_slice(&input).view([1, 3, 112, 112]), false))
        });
        let e = Vec::<f32>::try_from(&e.view([-1])).unwrap();
        let tract = facegate_face::TractEncoder::from_bytes(&g.bytes, card, "grafted").unwrap();
        let t = tract.encode_tensor(&input).unwrap();
        assert_eq!(t.as_slice().len(), 32);
        let diff = e.iter().zip(t.as_slice()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff <= 1e-4, "tch and tract differ by {diff}");
        // a different seed gives a different head, the same trunk
        let g2 = graft(&base.graph, "conv_7_relu", &head, 32, 4).unwrap();
        assert_ne!(g.bytes, g2.bytes);
        assert_eq!(g2.trunk_layers, g.trunk_layers);
    }

    #[test]
    fn an_unknown_cut_lists_the_cut_points() {
        let base = crate::net::ImportedBase::load(&sface()).unwrap();
        let e = graft(&base.graph, "conv_99_relu", &[HeadStep::Gdc], 16, 1).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, GraftError::UnknownCut { .. }) && text.contains("conv_7_relu"), "{text}");
        // a cut after the flatten is not a feature map
        let e = graft(&base.graph, "pre_fc1", &[HeadStep::Gdc], 16, 1).unwrap_err();
        assert!(matches!(e, GraftError::NotAMap { .. }), "{e}");
        // a grafted encoder cannot be grafted again: its head's names would clash
        let g = graft(&base.graph, "conv_3_relu", &[HeadStep::Gap], 8, 1).unwrap();
        let again = OnnxGraph::parse(&g.bytes, "grafted").unwrap();
        let e = graft(&again, "conv_2_relu", &[HeadStep::Gap], 8, 1).unwrap_err();
        assert!(matches!(e, GraftError::NameClash { .. }), "{e}");
    }
}
