//! # facegate-shared
//!
//! The core every Facegate binary shares, free of tch, tract and camera code:
//! - [`Embedding`]: L2-normalised vectors on the unit sphere (distance in `[0, 2]`, `d² = 2 − 2·cos`);
//! - [`Gallery`] and [`gallery_file`]: enrolled members in a versioned, checksummed, signed,
//!   atomically written postcard file;
//! - [`Matcher`]: 1:1 verification, 1:N identification, claim-then-verify and top-k ranking,
//!   over a [`NearestNeighbourIndex`] chosen by [`IndexKind`];
//! - [`Scores`]: ROC, AUC, EER, TAR@FAR and threshold calibration, from genuine/impostor pairs
//!   ([`Scores::from_labelled`]);
//! - [`percentile`] (nearest rank) and [`LatencyHistogram`]: latency statistics;
//! - [`rss_bytes`] and [`peak_rss_bytes`]: this process's resident memory;
//! - [`ModelCard`]: what an encoder expects and how good it is;
//! - [`keys`]: ed25519 key files for gallery signing.
//!
//! Feature `linfa` (off by default; benchmark comparators only, never in the door): linfa-nn's
//! indexes as `IndexKind::Linfa`.

mod binding;
mod calibration;
mod card;
mod decision;
mod embedding;
mod error_text;
mod fingerprint;
mod gallery;
pub mod gallery_file;
mod histogram;
mod index;
pub mod install;
pub mod keys;
mod member;
mod memory;
pub mod prometheus;
mod stats;
pub mod synthetic;
mod threshold;

pub use binding::{EncoderBinding, Preprocessing};
pub use calibration::{normal_quantile, open_set_false_accept, CalibrationError, RocPoint, Scores};
pub use card::{
    CalibratedThreshold, CardError, CardMetrics, ChannelOrder, ConstInput, InputSpec, ModelCard, ALIGNMENT_ARCFACE_5PT,
    CARD_VERSION, METRIC_UNIT_SPHERE,
};
pub use decision::{decide, verify, Decision, DenialReason, Matcher, Ranked, Verification};
pub use embedding::{
    cosine_from_distance, distance_from_cosine, Embedding, EmbeddingDim, EmbeddingError, MAX_EMBEDDING_DIM,
};
pub use error_text::error_chain;
pub use fingerprint::{BadFingerprint, Fingerprint};
pub use gallery::{Gallery, GalleryError, MAX_EMBEDDINGS_PER_MEMBER, MAX_MEMBERS};
pub use gallery_file::SignedGallery;
pub use histogram::LatencyHistogram;
#[cfg(feature = "linfa")]
pub use index::LinfaAlgorithm;
pub use index::{EmbeddingMatrix, IndexError, IndexKind, NearestNeighbourIndex, Neighbour, DEFAULT_INDEX};
pub use member::{check_name, Date, Member, MemberError, MemberId, Validity};
pub use memory::{peak_rss_bytes, rss_bytes};
pub use stats::percentile;
pub use threshold::{
    check_ambiguity_margin, DecisionPolicy, Threshold, ThresholdError, AMBIGUITY_MARGIN_MAX, AMBIGUITY_MARGIN_MIN,
    DEFAULT_AMBIGUITY_MARGIN,
};

pub use ed25519_dalek::{SigningKey, VerifyingKey};
