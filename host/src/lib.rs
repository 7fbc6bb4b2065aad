//! # facegate-host
//!
//! The `facegate` command line for the front desk and servers, as a library: enrolment with the
//! quality gate, members and galleries, verify / identify / rank, model evaluation and
//! calibration. Links tract (through `facegate-face`) and `facegate-shared`, never libtorch:
//! training, export and ONNX import live in `facegate-train`, which uses [`data`], [`eval`],
//! [`plots`] and [`progress`] from here.

pub mod cli;
pub mod commands;
pub mod data;
pub mod eval;
pub mod plots;
pub mod progress;
