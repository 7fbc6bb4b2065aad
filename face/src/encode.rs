//! Encoders: the [`Encoder`] seam, the tract implementation for any ONNX encoder described by a
//! card, and a fixed fake for tests.

use facegate_shared::{Embedding, Fingerprint, ModelCard};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tract_onnx::prelude::*;

use crate::{preprocess, AlignedFace, FaceError};

/// Turns aligned faces into unit embeddings.
pub trait Encoder {
    /// The card describing the encoder's input and output.
    fn card(&self) -> &ModelCard;
    /// Encodes one aligned face (of the card's input size).
    fn encode(&self, face: &AlignedFace) -> Result<Embedding, FaceError>;
    /// Encodes an already preprocessed `C × H × W` tensor.
    fn encode_tensor(&self, input: &[f32]) -> Result<Embedding, FaceError>;
}

/// The card file that travels beside `model.onnx`: `model.card.json`.
pub fn card_path_for(onnx: &Path) -> PathBuf {
    onnx.with_extension("card.json")
}

/// How a model's graph is prepared at load time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GraphPrep {
    /// With the rewrites of [`crate::rewrite`] (PReLU as Max): what every command and the door
    /// run.
    #[default]
    Rewritten,
    /// The graph exactly as in the file.
    AsShipped,
}

/// An ONNX encoder run by tract (single-threaded), loaded once and optimised for batch 1. Clones
/// share the plan.
#[derive(Clone)]
pub struct TractEncoder {
    plan: std::sync::Arc<TypedSimplePlan>,
    card: ModelCard,
}

impl TractEncoder {
    /// Loads `onnx` and its card (`NAME.card.json` beside it), checks the fingerprint, and fixes
    /// the input to the card's `1 × C × H × W`.
    pub fn load(onnx: &Path) -> Result<Self, FaceError> {
        let card = ModelCard::load(&card_path_for(onnx))?;
        let bytes = std::fs::read(onnx).map_err(|source| FaceError::Io { path: onnx.display().to_string(), source })?;
        Self::from_bytes(&bytes, card, &onnx.display().to_string())
    }

    /// Builds from ONNX bytes and a card, with the load-time rewrites of [`crate::rewrite`].
    /// `label` names the model in errors.
    pub fn from_bytes(bytes: &[u8], card: ModelCard, label: &str) -> Result<Self, FaceError> {
        Self::from_bytes_with(bytes, card, label, GraphPrep::Rewritten)
    }

    /// Builds from ONNX bytes and a card, the graph prepared as `prep` says (the parity tests
    /// compare both).
    pub fn from_bytes_with(bytes: &[u8], card: ModelCard, label: &str, prep: GraphPrep) -> Result<Self, FaceError> {
        card.check_fingerprint(bytes)?;
        let rewritten = match prep {
            GraphPrep::Rewritten => crate::rewrite::rewritten_bytes(bytes).map(|(b, _)| b),
            GraphPrep::AsShipped => None,
        };
        let bytes = rewritten.as_deref().unwrap_or(bytes);
        let err = |e: TractError| FaceError::Model { path: label.to_owned(), reason: format!("{e:#}") };
        let spec = &card.input;
        let shape = [1, spec.channels.channels(), spec.height as usize, spec.width as usize];
        let model = tract_onnx::onnx().with_ignore_value_info(true).model_for_read(&mut &*bytes).map_err(err)?;
        let input_name = model.node(model.input_outlets().map_err(err)?[0].node).name.clone();
        if input_name != spec.name {
            return Err(FaceError::CardMismatch { what: "input name", card: spec.name.clone(), graph: input_name });
        }
        let model = model.with_input_fact(0, f32::fact(shape).into()).map_err(err)?;
        let typed = crate::kernels::optimized(model, prep == GraphPrep::Rewritten).map_err(|e| {
            FaceError::CardMismatch { what: "input shape", card: format!("{shape:?}"), graph: format!("{e:#}") }
        })?;
        let out_fact = typed.output_fact(0).map_err(err)?;
        let dims: Vec<usize> = out_fact.shape.as_concrete().map(|s| s.to_vec()).unwrap_or_default();
        let dim: usize = dims.iter().product();
        if dim != card.embedding_dim.get() {
            return Err(FaceError::CardMismatch {
                what: "embedding dimension",
                card: card.embedding_dim.get().to_string(),
                graph: format!("{dims:?}"),
            });
        }
        let plan = typed.into_runnable().map_err(err)?;
        Ok(Self { plan, card })
    }

    /// Per-node timing of the encoder on `input` (a preprocessed `C × H × W` tensor).
    pub fn profile(&self, input: &[f32], runs: u32) -> Result<crate::profile::Profile, FaceError> {
        let s = &self.card.input;
        let shape = (1, s.channels.channels(), s.height as usize, s.width as usize);
        let t: Tensor = tract_ndarray::Array4::from_shape_vec(shape, input.to_vec())
            .map_err(|e| FaceError::Inference(e.to_string()))?
            .into();
        crate::profile::profile_plan(&self.plan, t, runs)
    }

    /// How many nodes of the optimised plan run tract operator `op` (e.g. `ChannelPrelu`, the
    /// load-time PReLU of [`crate::kernels`]).
    pub fn operator_count(&self, op: &str) -> usize {
        crate::kernels::operator_count(&self.plan, op)
    }

    /// The model's fingerprint (from its verified card).
    pub fn fingerprint(&self) -> Fingerprint {
        self.card.fingerprint
    }
}

impl Encoder for TractEncoder {
    fn card(&self) -> &ModelCard {
        &self.card
    }

    fn encode(&self, face: &AlignedFace) -> Result<Embedding, FaceError> {
        self.encode_tensor(&preprocess(face, &self.card.input))
    }

    fn encode_tensor(&self, input: &[f32]) -> Result<Embedding, FaceError> {
        let s = &self.card.input;
        let shape = (1, s.channels.channels(), s.height as usize, s.width as usize);
        let t: Tensor = tract_ndarray::Array4::from_shape_vec(shape, input.to_vec())
            .map_err(|e| FaceError::Inference(e.to_string()))?
            .into();
        let out = self.plan.run(tvec!(t.into())).map_err(|e| FaceError::Inference(format!("{e:#}")))?;
        let v = out[0].to_plain_array_view::<f32>().map_err(|e| FaceError::Inference(format!("{e:#}")))?;
        Ok(Embedding::new(v.iter().copied().collect())?)
    }
}

/// A fake encoder returning queued embeddings in order (then repeating the last), for tests of
/// code that only needs *some* embedding per face.
pub struct FixedEncoder {
    card: ModelCard,
    queue: Mutex<(Vec<Embedding>, usize)>,
}

impl FixedEncoder {
    /// A fake with the given card and answers.
    pub fn new(card: ModelCard, answers: Vec<Embedding>) -> Self {
        Self { card, queue: Mutex::new((answers, 0)) }
    }
    fn next(&self) -> Result<Embedding, FaceError> {
        let mut q = self.queue.lock().map_err(|_| FaceError::Inference("fake encoder poisoned".into()))?;
        let (answers, i) = &mut *q;
        let e = answers.get((*i).min(answers.len().saturating_sub(1))).cloned();
        *i += 1;
        e.ok_or_else(|| FaceError::Inference("fake encoder has no answers".into()))
    }
}

impl Encoder for FixedEncoder {
    fn card(&self) -> &ModelCard {
        &self.card
    }
    fn encode(&self, _face: &AlignedFace) -> Result<Embedding, FaceError> {
        self.next()
    }
    fn encode_tensor(&self, _input: &[f32]) -> Result<Embedding, FaceError> {
        self.next()
    }
}
