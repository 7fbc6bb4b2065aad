//! # facegate-train
//!
//! Training the Siamese encoder with tch (libtorch; CUDA when present, CPU otherwise), exporting
//! it to ONNX for the door unit, and importing ONNX encoders (SFace) for fine-tuning. The only
//! crate that links libtorch. Modules:
//! - [`model`]: the residual CNN encoder (twin branches share it), and [`net`]: the built-in or an
//!   imported encoder behind one interface;
//! - [`losses`]: contrastive and triplet losses with mining; [`optim`]: Adam/SGD with schedules;
//! - [`trainer`]: the training loop (person splits, softmax pre-training, metric learning,
//!   weight averaging, early stopping, resume); [`curves`]: metrics.csv, learning curves and the
//!   under/overfitting diagnosis; [`cv`]: person-k-fold cross-validation; [`distill`]:
//!   distillation from a frozen pretrained teacher;
//! - [`onnx`]: writing an encoder as ONNX ([`onnx::write`]) and reading one into tch
//!   ([`onnx::import`]); [`export`]: checkpoint → ONNX + card + golden pair, parity-checked.

pub mod curves;
pub mod cv;
pub mod distill;
pub mod export;
pub mod losses;
pub mod model;
pub mod net;
pub mod onnx;
pub mod optim;
pub mod trainer;
