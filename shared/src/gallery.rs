//! The in-memory gallery: enrolled members, the encoder that made their embeddings, and the
//! threshold calibrated for it. The file format lives in [`crate::gallery_file`].

use crate::{EmbeddingDim, EmbeddingError, Fingerprint, Member, MemberError, MemberId, Threshold, ThresholdError};

/// Most reference embeddings one member may have.
pub const MAX_EMBEDDINGS_PER_MEMBER: usize = 64;
/// Most members one gallery may hold (guards allocations on untrusted input).
pub const MAX_MEMBERS: usize = 10_000_000;

/// Everything that can go wrong building, reading, writing or trusting a gallery.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// The file does not start with the gallery magic bytes.
    #[error("not a Facegate gallery (bad magic bytes)")]
    BadMagic,
    /// The file was written by a newer (or unknown) format version.
    #[error("gallery format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    /// The file ends before the envelope or payload does.
    #[error("gallery file is truncated: needed {needed} bytes, found {available}")]
    Truncated { needed: u64, available: u64 },
    /// Bytes follow the end of the envelope.
    #[error("gallery file has {0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// The stored CRC-32 does not match the content.
    #[error("gallery checksum mismatch: stored {stored:08x}, computed {computed:08x} (file corrupt)")]
    Checksum { stored: u32, computed: u32 },
    /// A count or size in the file is beyond what any real gallery holds.
    #[error("gallery declares {count} {what}, more than the limit {max}")]
    AbsurdCount { what: &'static str, count: u64, max: u64 },
    /// An embedding does not have the gallery's dimension.
    #[error("member {member}: embedding dimension {got}, gallery dimension {expected}")]
    DimMismatch { member: String, expected: usize, got: usize },
    /// The payload does not decode.
    #[error("gallery payload is malformed: {0}")]
    Malformed(String),
    /// Two members share one id.
    #[error("member id {0} appears twice")]
    DuplicateMember(String),
    /// No member has this id.
    #[error("no member with id {0}")]
    UnknownMember(String),
    /// A member field is invalid.
    #[error(transparent)]
    Member(#[from] MemberError),
    /// A stored embedding is invalid.
    #[error("invalid embedding: {0}")]
    Embedding(#[from] EmbeddingError),
    /// The stored threshold is invalid.
    #[error("invalid threshold: {0}")]
    Threshold(#[from] ThresholdError),
    /// The gallery carries no signature but one is required.
    #[error("gallery is not signed; sign it with `facegate` using a key this unit trusts")]
    Unsigned,
    /// The signature does not verify: the file was changed after signing.
    #[error("gallery signature is invalid: the file was modified after it was signed")]
    BadSignature,
    /// The signature verifies but with a key this reader does not trust.
    #[error("gallery is signed by untrusted key {key}")]
    UntrustedKey { key: String },
    /// The gallery was made with another encoder than the one in use.
    #[error("gallery was enrolled with encoder {gallery}, but the model in use is {model}; re-enrol with this model")]
    EncoderMismatch { gallery: String, model: String },
    /// A signed gallery older than the one already installed (replay).
    #[error("gallery revision {offered} is older than the installed revision {installed} (replayed file?)")]
    Rollback { installed: u64, offered: u64 },
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Enrolled members plus the encoder fingerprint, dimension and threshold they were made for.
#[derive(Debug, Clone, PartialEq)]
pub struct Gallery {
    /// SHA-256 of the encoder ONNX that produced every embedding here.
    pub encoder: Fingerprint,
    /// Dimension of every embedding.
    pub dim: EmbeddingDim,
    /// Calibrated distance threshold for this encoder.
    pub threshold: Threshold,
    /// Incremented on every save; readers refuse to go back to an older revision.
    pub revision: u64,
    members: Vec<Member>,
}

impl Gallery {
    /// An empty gallery for one encoder.
    pub fn new(encoder: Fingerprint, dim: EmbeddingDim, threshold: Threshold) -> Self {
        Self { encoder, dim, threshold, revision: 0, members: Vec::new() }
    }

    /// Members in enrolment order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with `id`.
    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }

    /// Mutable access to the member with `id`.
    pub fn member_mut(&mut self, id: &MemberId) -> Result<&mut Member, GalleryError> {
        self.members.iter_mut().find(|m| &m.id == id).ok_or_else(|| GalleryError::UnknownMember(id.to_string()))
    }

    /// Adds a member; fails on a duplicate id, no embeddings, too many, or a wrong dimension.
    /// On failure the gallery is unchanged.
    pub fn add(&mut self, member: Member) -> Result<(), GalleryError> {
        self.check_member(&member)?;
        if self.member(&member.id).is_some() {
            return Err(GalleryError::DuplicateMember(member.id.to_string()));
        }
        self.members.push(member);
        Ok(())
    }

    /// Removes a member and all their embeddings (the right to be forgotten).
    pub fn remove(&mut self, id: &MemberId) -> Result<Member, GalleryError> {
        let pos =
            self.members.iter().position(|m| &m.id == id).ok_or_else(|| GalleryError::UnknownMember(id.to_string()))?;
        Ok(self.members.remove(pos))
    }

    /// Total number of stored embeddings.
    pub fn embedding_count(&self) -> usize {
        self.members.iter().map(|m| m.embeddings.len()).sum()
    }

    /// Largest number of embeddings any one member has.
    pub fn max_embeddings_per_member(&self) -> usize {
        self.members.iter().map(|m| m.embeddings.len()).max().unwrap_or(0)
    }

    /// Refuses a gallery made with another encoder.
    pub fn check_encoder(&self, model: &Fingerprint) -> Result<(), GalleryError> {
        if &self.encoder != model {
            return Err(GalleryError::EncoderMismatch { gallery: self.encoder.to_string(), model: model.to_string() });
        }
        Ok(())
    }

    pub(crate) fn check_member(&self, m: &Member) -> Result<(), GalleryError> {
        crate::member::check_name(&m.name)?;
        if m.embeddings.is_empty() {
            return Err(MemberError::NoEmbeddings(m.id.to_string()).into());
        }
        if m.embeddings.len() > MAX_EMBEDDINGS_PER_MEMBER {
            return Err(GalleryError::AbsurdCount {
                what: "embeddings for one member",
                count: m.embeddings.len() as u64,
                max: MAX_EMBEDDINGS_PER_MEMBER as u64,
            });
        }
        if let Some(e) = m.embeddings.iter().find(|e| e.dim() != self.dim.get()) {
            return Err(GalleryError::DimMismatch { member: m.id.to_string(), expected: self.dim.get(), got: e.dim() });
        }
        Ok(())
    }

    pub(crate) fn push_unchecked(&mut self, m: Member) {
        self.members.push(m);
    }
}
