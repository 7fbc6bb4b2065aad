//! The ONNX bridge: [`write`] turns the tch encoder into an ONNX graph (batch-norm folded, L2
//! normalisation inside); [`import`] reads an ONNX encoder back into trainable tch variables.

pub mod graft;
pub mod import;
pub mod write;
