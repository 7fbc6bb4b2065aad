//! The encoder the trainer trains: the built-in residual CNN, or an ONNX encoder imported for
//! transfer learning. Both give the last hidden layer and the unit embedding, both keep every
//! weight in one VarStore (so the twin branches share it), and both freeze by layer.

use anyhow::{bail, Context, Result};
use facegate_face::card_path_for;
use facegate_shared::{Fingerprint, InputSpec, ModelCard};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{nn, Tensor};

use crate::model::{l2_normalise, ArchConfig, EmbeddingNet};
use crate::onnx::import::{ImportError, OnnxGraph, OnnxNet};

/// Which layers `--freeze` keeps fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freeze {
    /// The first N stages: for the built-in encoder the stem and N residual blocks, for an
    /// imported one its first N layers with weights.
    Layers(usize),
    /// Nothing: every layer trains.
    #[default]
    None,
    /// Everything before the embedding layer (the last fully connected layer).
    Backbone,
}

impl std::str::FromStr for Freeze {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "backbone" => Ok(Freeze::Backbone),
            "0" | "none" => Ok(Freeze::None),
            n => n
                .parse::<usize>()
                .map(Freeze::Layers)
                .map_err(|_| format!("'{n}': give a number of layers, 'none' or 'backbone'")),
        }
    }
}

impl std::fmt::Display for Freeze {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Freeze::Layers(n) => write!(f, "{n}"),
            Freeze::None => write!(f, "none"),
            Freeze::Backbone => write!(f, "backbone"),
        }
    }
}

impl Serialize for Freeze {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Freeze::Layers(n) => s.serialize_u64(*n as u64),
            Freeze::None => s.serialize_u64(0),
            Freeze::Backbone => s.serialize_str("backbone"),
        }
    }
}

impl<'de> Deserialize<'de> for Freeze {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(0) => Ok(Freeze::None),
            Raw::N(n) => Ok(Freeze::Layers(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Where an imported encoder came from (saved in checkpoints, checked when they are loaded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseRef {
    pub path: PathBuf,
    pub fingerprint: String,
}

/// A pretrained ONNX encoder, checked against its card, ready to build networks from.
#[derive(Debug, Clone)]
pub struct ImportedBase {
    pub path: PathBuf,
    pub card: ModelCard,
    pub graph: Arc<OnnxGraph>,
    pub embedding_dim: i64,
}

impl ImportedBase {
    /// Reads `path` and the card beside it; checks fingerprint, input and output against the card.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|source| ImportError::Read { path: path.display().to_string(), source })?;
        let graph = OnnxGraph::parse(&bytes, &path.display().to_string())?;
        let card_path = card_path_for(path);
        let card = ModelCard::load(&card_path).with_context(|| {
            format!("{} needs its card {} (input size, order, scaling)", path.display(), card_path.display())
        })?;
        card.check_fingerprint(&bytes)?;
        Self::from_parts(path, card, graph)
    }

    /// Checks a parsed graph against a card.
    pub fn from_parts(path: &Path, card: ModelCard, graph: OnnxGraph) -> Result<Self> {
        let s = &card.input;
        let (c, h, w) = (s.channels.channels() as i64, i64::from(s.height), i64::from(s.width));
        graph.check_input(&s.name, c, h, w)?;
        let graph = Arc::new(graph);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let dim = OnnxNet::new(&vs.root(), graph.clone()).probe(c, h, w)?;
        if dim != card.embedding_dim.get() as i64 {
            return Err(ImportError::ShapeMismatch {
                what: "embedding dimension",
                card: card.embedding_dim.get().to_string(),
                graph: dim.to_string(),
            }
            .into());
        }
        Ok(Self { path: path.to_path_buf(), card, graph, embedding_dim: dim })
    }

    /// What a checkpoint records about it.
    pub fn reference(&self) -> BaseRef {
        BaseRef { path: self.path.clone(), fingerprint: self.card.fingerprint.to_string() }
    }

    /// Loads the base a checkpoint names and checks it is the same file.
    pub fn from_reference(r: &BaseRef) -> Result<Self> {
        let base = Self::load(&r.path)?;
        let want = Fingerprint::from_hex(&r.fingerprint).context("checkpoint: bad base fingerprint")?;
        if base.card.fingerprint != want {
            bail!(
                "the checkpoint was fine-tuned from {} with fingerprint {}, but that file now has {}",
                r.path.display(),
                want,
                base.card.fingerprint
            );
        }
        Ok(base)
    }
}

/// The network being trained.
#[derive(Debug)]
pub enum Net {
    Small(Box<EmbeddingNet>),
    Imported(OnnxNet, i64),
}

impl Net {
    /// Builds the built-in encoder, or the imported one when `base` is given, under `p`.
    pub fn new(p: &nn::Path, arch: &ArchConfig, base: Option<&ImportedBase>) -> Self {
        match base {
            Some(b) => Net::Imported(OnnxNet::new(p, b.graph.clone()), b.embedding_dim),
            None => Net::Small(Box::new(EmbeddingNet::new(p, arch.clone()))),
        }
    }

    /// The last hidden layer (before normalisation).
    pub fn hidden_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Net::Small(n) => n.hidden_t(x, train),
            Net::Imported(n, _) => n.hidden_t(x, train),
        }
    }

    /// Unit-length embeddings, `N × D`.
    pub fn embed_t(&self, x: &Tensor, train: bool) -> Tensor {
        l2_normalise(&self.hidden_t(x, train))
    }

    /// Embedding dimension.
    pub fn embedding_dim(&self) -> i64 {
        match self {
            Net::Small(n) => n.config.embedding_dim,
            Net::Imported(_, d) => *d,
        }
    }

    /// One line for the training log.
    pub fn describe(&self, input: &InputSpec) -> String {
        match self {
            Net::Small(n) => format!(
                "residual CNN {}x{}x{} -> {}-d, {:.1} M multiply-adds per image",
                n.config.in_channels,
                n.config.input_size,
                n.config.input_size,
                n.config.embedding_dim,
                n.macs() as f64 / 1e6
            ),
            Net::Imported(n, d) => format!(
                "imported ONNX encoder {}x{}x{} -> {d}-d: {} nodes, {} layers with weights, {:.2} M weights, embedding layer '{}'",
                input.channels.channels(),
                input.height,
                input.width,
                n.graph().node_count(),
                n.graph().layers().len(),
                n.parameter_count() as f64 / 1e6,
                n.embedding_layer().map(|i| n.graph().layers()[i].node.as_str()).unwrap_or("none")
            ),
        }
    }

    /// VarStore names of the variables `freeze` keeps fixed.
    pub fn frozen_variables(&self, vs: &nn::VarStore, freeze: Freeze) -> Result<Vec<String>> {
        match self {
            Net::Small(_) => {
                let stages = match freeze {
                    Freeze::None => 0,
                    Freeze::Layers(n) if n > 3 => bail!("--freeze {n} is more than the 3 residual blocks"),
                    Freeze::Layers(n) => n + 1,
                    Freeze::Backbone => 4,
                };
                let prefixes: Vec<String> =
                    ["stem", "block1", "block2", "block3"].iter().take(stages).map(|p| format!("{p}.")).collect();
                let mut names: Vec<String> =
                    vs.variables().into_keys().filter(|n| prefixes.iter().any(|p| n.starts_with(p))).collect();
                names.sort();
                Ok(names)
            }
            Net::Imported(n, _) => {
                let layers = n.graph().layers().len();
                let count = match freeze {
                    Freeze::None => 0,
                    Freeze::Layers(k) if k >= layers => {
                        bail!("--freeze {k} leaves nothing to train: the imported encoder has {layers} layers with weights")
                    }
                    Freeze::Layers(k) => k,
                    Freeze::Backbone => n
                        .embedding_layer()
                        .context("--freeze backbone: the imported encoder has no fully connected (Gemm) layer")?,
                };
                Ok(n.first_layers_variables(count))
            }
        }
    }
}

/// `--init-from` names an ONNX encoder (rather than a safetensors checkpoint).
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}
