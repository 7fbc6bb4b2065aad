//! # facegate-host
//!
//! The `facegate` command line for the front desk and servers, as a library: enrolment with the
//! quality gate (from photos, or from a camera through `facegate-frames`), members and galleries,
//! verify / identify / rank, model evaluation and calibration. Links tract (through
//! `facegate-face`) and `facegate-shared`, never libtorch: training, export and ONNX import live
//! in `facegate-train`, which shares [`data`], [`plots`], [`progress`] and [`cli`] with this
//! crate through `facegate-hostkit` and does not depend on it (so the camera stays out of it).

pub mod commands;
pub mod eval;

pub use facegate_hostkit::{cli, data, plots, progress};
