//! The in-memory gallery: enrolled members, the encoder (ONNX bytes and preprocessing) that made
//! their embeddings, and the threshold calibrated for it. The file format lives in [`crate::gallery_file`].

use crate::{EmbeddingDim, EmbeddingError, EncoderBinding, Member, MemberError, MemberId, Threshold, ThresholdError};

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
    /// The ONNX bytes match but a card field that changes embeddings does not (`field` is one of
    /// [`crate::Preprocessing::FIELDS`]); the values are written for a person.
    #[error(
        "the encoder card's {field} is {model} but the gallery was enrolled with {gallery}: \
         the card was edited after enrolment; restore the card or re-enrol"
    )]
    PreprocessingMismatch { field: &'static str, gallery: String, model: String },
    /// A signed gallery older than the one already installed (replay).
    #[error("gallery revision {offered} is older than the installed revision {installed} (replayed file?)")]
    Rollback { installed: u64, offered: u64 },
    /// The file is larger than any gallery file can be ([`crate::gallery_file::MAX_GALLERY_FILE_BYTES`]);
    /// nothing beyond `max + 1` bytes was read. `bytes` is the size found (at least `max + 1`).
    #[error("{path}: {bytes} bytes is larger than any gallery file ({max} bytes)")]
    TooLarge { path: String, bytes: u64, max: u64 },
    /// Reading or writing the file failed. (`error` is part of the message rather than a chained
    /// source, so an error chain prints it once.)
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
}

/// Enrolled members plus the encoder binding, dimension and threshold they were made for.
#[derive(Debug, Clone, PartialEq)]
pub struct Gallery {
    /// The encoder ONNX fingerprint and the preprocessing that produced every embedding here.
    pub encoder: EncoderBinding,
    /// Dimension of every embedding.
    pub dim: EmbeddingDim,
    /// Calibrated distance threshold for this encoder.
    pub threshold: Threshold,
    /// Incremented on every save; readers refuse to go back to an older revision.
    pub revision: u64,
    members: Vec<Member>,
    /// Position of each member in `members`: look-ups and the duplicate check in O(1), so a
    /// 100,000-member import does not take quadratic time.
    by_id: std::collections::HashMap<MemberId, usize>,
}

impl Gallery {
    /// An empty gallery for one encoder.
    pub fn new(encoder: EncoderBinding, dim: EmbeddingDim, threshold: Threshold) -> Self {
        Self { encoder, dim, threshold, revision: 0, members: Vec::new(), by_id: std::collections::HashMap::new() }
    }

    /// Members in enrolment order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with `id`.
    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.by_id.get(id).map(|&i| &self.members[i])
    }

    /// Mutable access to the member with `id`.
    /// (Changing the id through it is not supported: remove the member and add it again.)
    pub fn member_mut(&mut self, id: &MemberId) -> Result<&mut Member, GalleryError> {
        let i = *self.by_id.get(id).ok_or_else(|| GalleryError::UnknownMember(id.to_string()))?;
        Ok(&mut self.members[i])
    }

    /// Adds a member; fails on a duplicate id, no embeddings, too many, or a wrong dimension.
    /// On failure the gallery is unchanged.
    pub fn add(&mut self, member: Member) -> Result<(), GalleryError> {
        self.check_member(&member)?;
        if self.member(&member.id).is_some() {
            return Err(GalleryError::DuplicateMember(member.id.to_string()));
        }
        self.push_unchecked(member);
        Ok(())
    }

    /// Removes a member and all their embeddings (the right to be forgotten).
    pub fn remove(&mut self, id: &MemberId) -> Result<Member, GalleryError> {
        let pos = *self.by_id.get(id).ok_or_else(|| GalleryError::UnknownMember(id.to_string()))?;
        let m = self.members.remove(pos);
        self.by_id.remove(id);
        for (i, later) in self.members.iter().enumerate().skip(pos) {
            self.by_id.insert(later.id.clone(), i);
        }
        Ok(m)
    }

    /// Total number of stored embeddings.
    pub fn embedding_count(&self) -> usize {
        self.members.iter().map(|m| m.embeddings.len()).sum()
    }

    /// Largest number of embeddings any one member has.
    pub fn max_embeddings_per_member(&self) -> usize {
        self.members.iter().map(|m| m.embeddings.len()).max().unwrap_or(0)
    }

    /// Refuses a gallery made with another encoder: [`GalleryError::EncoderMismatch`] when the
    /// ONNX fingerprints differ, otherwise [`GalleryError::PreprocessingMismatch`] naming the first
    /// differing field of [`crate::Preprocessing::FIELDS`]. On failure the door must not use the
    /// gallery: its distances would be meaningless.
    pub fn check_encoder(&self, model: &EncoderBinding) -> Result<(), GalleryError> {
        if self.encoder.onnx != model.onnx {
            return Err(GalleryError::EncoderMismatch {
                gallery: self.encoder.onnx.to_string(),
                model: model.onnx.to_string(),
            });
        }
        if let Some((field, gallery, model)) = self.encoder.preprocessing.first_difference(&model.preprocessing) {
            return Err(GalleryError::PreprocessingMismatch { field, gallery, model });
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
        self.by_id.insert(m.id.clone(), self.members.len());
        self.members.push(m);
    }

    /// Room for `n` more members (readers reserve exactly what the file declares, already bounded
    /// by its length, so that the list never doubles while decoding).
    pub(crate) fn reserve_exact_members(&mut self, n: usize) {
        self.members.reserve_exact(n);
        self.by_id.reserve(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::binding;
    use crate::{ChannelOrder, ConstInput, Fingerprint, Preprocessing};

    fn gallery() -> Gallery {
        Gallery::new(binding(b"enc"), EmbeddingDim::new(4).unwrap(), Threshold::new(0.8).unwrap())
    }

    /// A card edit and the field it changes.
    type Edit = (&'static str, fn(&mut Preprocessing));

    /// One edit per field of [`Preprocessing::FIELDS`], in that order.
    fn edits() -> [Edit; 7] {
        [
            ("input.width", |p| p.width = 112),
            ("input.height", |p| p.height = 63),
            ("input.channels", |p| p.channels = ChannelOrder::Rgb),
            ("input.mean", |p| p.mean = vec![128.0]),
            ("input.std", |p| p.std = vec![-127.5]),
            ("alignment", |p| p.alignment = "arcface-5pt-v2".into()),
            ("extra_inputs", |p| {
                p.extra_inputs = vec![ConstInput { name: "scalar_op1".into(), shape: vec![1], values: vec![1.0] }]
            }),
        ]
    }

    #[test]
    fn identical_binding_is_accepted() {
        assert!(gallery().check_encoder(&binding(b"enc")).is_ok());
    }

    #[test]
    fn another_onnx_is_an_encoder_mismatch_before_any_field() {
        let mut model = binding(b"other");
        model.preprocessing.width = 1;
        match gallery().check_encoder(&model) {
            Err(GalleryError::EncoderMismatch { gallery, model }) => {
                assert_eq!(gallery, Fingerprint::of_bytes(b"enc").to_string());
                assert_eq!(model, Fingerprint::of_bytes(b"other").to_string());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_edited_field_is_refused_by_name() {
        let names: Vec<_> = edits().iter().map(|(f, _)| *f).collect();
        assert_eq!(names, Preprocessing::FIELDS);
        let g = gallery();
        for (field, edit) in edits() {
            let mut model = binding(b"enc");
            edit(&mut model.preprocessing);
            match g.check_encoder(&model) {
                Err(e @ GalleryError::PreprocessingMismatch { field: f, .. }) => {
                    assert_eq!(f, field);
                    let text = e.to_string();
                    assert!(text.starts_with(&format!("the encoder card's {field} is ")), "{text}");
                    assert!(text.ends_with("restore the card or re-enrol"), "{text}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // the values are reported the right way round
        let mut model = binding(b"enc");
        model.preprocessing.width = 112;
        assert!(matches!(
            g.check_encoder(&model),
            Err(GalleryError::PreprocessingMismatch { field: "input.width", gallery, model })
                if gallery == "64" && model == "112"
        ));
    }
}
