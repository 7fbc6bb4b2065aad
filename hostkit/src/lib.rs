//! # facegate-hostkit
//!
//! The pieces both host binaries use: [`data`] (face data sets split by person, aligned-crop
//! caches), [`plots`], [`progress`] bars and the [`cli`] main wrapper. `facegate` (front desk,
//! links the camera) and `facegate-train` (links libtorch) both depend on this crate and not on
//! each other, so neither links what the other must not.

pub mod cli;
pub mod data;
pub mod plots;
pub mod progress;
