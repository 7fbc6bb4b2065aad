//! The gallery file: a versioned, checksummed, optionally signed envelope around a postcard payload.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"FGGALRY\n"
//! 8       2     format version, u16 little-endian (currently 1)
//! 10      4     payload length n, u32 little-endian
//! 14      n     payload (below)
//! 14+n    4     CRC-32 (IEEE) of bytes 0..14+n, u32 little-endian
//! 18+n    1     signature tag: 0 = unsigned, 1 = ed25519
//! 19+n    96    (tag 1 only) public key (32) + signature (64) over bytes 0..18+n
//! ```
//!
//! Payload (postcard): a header `{encoder: [u8; 32], dim: varint, threshold: f32, revision: varint,
//! member_count: varint}`, then each member as `{id, name, valid_from: Option<i32>,
//! valid_until: Option<i32>, active, enrolled_at: i64, embedding_count: varint}` followed by
//! `embedding_count × dim` raw little-endian f32. Counts are checked against the bytes that remain
//! before anything is allocated.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

use crate::gallery::{MAX_EMBEDDINGS_PER_MEMBER, MAX_MEMBERS};
use crate::{Date, Embedding, EmbeddingDim, Fingerprint, Gallery, GalleryError, Member, MemberId, Threshold, Validity};

/// First eight bytes of every gallery file.
pub const GALLERY_MAGIC: [u8; 8] = *b"FGGALRY\n";
/// The format version this build writes and the newest it reads.
pub const GALLERY_FORMAT_VERSION: u16 = 1;
/// Largest payload accepted (1 GiB: about 2 million members with 1 photo of 128-d).
pub const MAX_PAYLOAD_BYTES: u32 = 1 << 30;

const HEADER_LEN: usize = 14;
const SIG_TAG_NONE: u8 = 0;
const SIG_TAG_ED25519: u8 = 1;
const SIG_LEN: usize = 32 + 64;

#[derive(Serialize, Deserialize)]
struct HeaderWire {
    encoder: [u8; 32],
    dim: u32,
    threshold: f32,
    revision: u64,
    member_count: u32,
}

#[derive(Serialize, Deserialize)]
struct MemberWire<'a> {
    id: &'a str,
    name: &'a str,
    valid_from: Option<i32>,
    valid_until: Option<i32>,
    active: bool,
    enrolled_at: i64,
    embedding_count: u32,
}

/// Smallest possible encoded member apart from its embeddings (1-byte strings and varints).
const MIN_MEMBER_BYTES: usize = 2 + 2 + 1 + 1 + 1 + 1 + 1;

/// A decoded gallery and who signed it (the signature has already been checked against the
/// embedded key; whether that key is trusted is for [`SignedGallery::trusted`]).
#[derive(Debug, Clone)]
pub struct SignedGallery {
    /// The gallery.
    pub gallery: Gallery,
    /// The key whose valid signature the file carries, or `None` if unsigned.
    pub signer: Option<VerifyingKey>,
}

impl SignedGallery {
    /// Returns the gallery only if a key in `trusted` signed it.
    /// Fails with [`GalleryError::Unsigned`] or [`GalleryError::UntrustedKey`] otherwise.
    pub fn trusted(self, trusted: &[VerifyingKey]) -> Result<Gallery, GalleryError> {
        match self.signer {
            None => Err(GalleryError::Unsigned),
            Some(k) if trusted.contains(&k) => Ok(self.gallery),
            Some(k) => Err(GalleryError::UntrustedKey { key: hex::encode(k.as_bytes()) }),
        }
    }
}

/// Encodes a gallery, signing it when a key is given.
pub fn encode(gallery: &Gallery, key: Option<&SigningKey>) -> Result<Vec<u8>, GalleryError> {
    let dim = gallery.dim.get();
    let header = HeaderWire {
        encoder: gallery.encoder.0,
        dim: dim as u32,
        threshold: gallery.threshold.get(),
        revision: gallery.revision,
        member_count: gallery.members().len() as u32,
    };
    let mut out =
        Vec::with_capacity(HEADER_LEN + 64 + gallery.embedding_count() * dim * 4 + 64 * gallery.members().len());
    out.extend_from_slice(&GALLERY_MAGIC);
    out.extend_from_slice(&GALLERY_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let malformed = |e: postcard::Error| GalleryError::Malformed(e.to_string());
    out = postcard::to_extend(&header, out).map_err(malformed)?;
    for m in gallery.members() {
        gallery.check_member(m)?;
        let wire = MemberWire {
            id: m.id.as_str(),
            name: &m.name,
            valid_from: m.validity.from.map(|d| d.0),
            valid_until: m.validity.until.map(|d| d.0),
            active: m.validity.active,
            enrolled_at: m.enrolled_at,
            embedding_count: m.embeddings.len() as u32,
        };
        out = postcard::to_extend(&wire, out).map_err(malformed)?;
        for e in &m.embeddings {
            for x in e.as_slice() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    let payload_len = out.len() - HEADER_LEN;
    if payload_len > MAX_PAYLOAD_BYTES as usize {
        return Err(GalleryError::AbsurdCount {
            what: "payload bytes",
            count: payload_len as u64,
            max: MAX_PAYLOAD_BYTES.into(),
        });
    }
    out[10..14].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    match key {
        None => out.push(SIG_TAG_NONE),
        Some(k) => {
            let sig = k.sign(&out);
            out.push(SIG_TAG_ED25519);
            out.extend_from_slice(k.verifying_key().as_bytes());
            out.extend_from_slice(&sig.to_bytes());
        }
    }
    Ok(out)
}

fn need(bytes: &[u8], needed: usize) -> Result<(), GalleryError> {
    if bytes.len() < needed {
        return Err(GalleryError::Truncated { needed: needed as u64, available: bytes.len() as u64 });
    }
    Ok(())
}

/// Decodes and checks a gallery file: magic, version, length, checksum, signature (against the
/// embedded key), counts, dimensions and duplicate ids. Every failure is a typed error.
pub fn decode(bytes: &[u8]) -> Result<SignedGallery, GalleryError> {
    need(bytes, GALLERY_MAGIC.len())?;
    if bytes[..8] != GALLERY_MAGIC {
        return Err(GalleryError::BadMagic);
    }
    need(bytes, HEADER_LEN)?;
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != GALLERY_FORMAT_VERSION {
        return Err(GalleryError::UnsupportedVersion { found: version, supported: GALLERY_FORMAT_VERSION });
    }
    let payload_len = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]);
    if payload_len > MAX_PAYLOAD_BYTES {
        return Err(GalleryError::AbsurdCount {
            what: "payload bytes",
            count: payload_len.into(),
            max: MAX_PAYLOAD_BYTES.into(),
        });
    }
    let body_end = HEADER_LEN + payload_len as usize;
    need(bytes, body_end + 5)?;
    let stored = u32::from_le_bytes(bytes[body_end..body_end + 4].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&bytes[..body_end]);
    if stored != computed {
        return Err(GalleryError::Checksum { stored, computed });
    }
    let signed_end = body_end + 4;
    let signer = match bytes[signed_end] {
        SIG_TAG_NONE => {
            trailing(bytes, signed_end + 1)?;
            None
        }
        SIG_TAG_ED25519 => {
            let sig_start = signed_end + 1;
            need(bytes, sig_start + SIG_LEN)?;
            trailing(bytes, sig_start + SIG_LEN)?;
            let key_bytes: [u8; 32] = bytes[sig_start..sig_start + 32].try_into().expect("32 bytes");
            let sig_bytes: [u8; 64] = bytes[sig_start + 32..sig_start + SIG_LEN].try_into().expect("64 bytes");
            let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| GalleryError::BadSignature)?;
            key.verify(&bytes[..signed_end], &Signature::from_bytes(&sig_bytes))
                .map_err(|_| GalleryError::BadSignature)?;
            Some(key)
        }
        other => return Err(GalleryError::Malformed(format!("unknown signature tag {other}"))),
    };
    let gallery = decode_payload(&bytes[HEADER_LEN..body_end])?;
    Ok(SignedGallery { gallery, signer })
}

fn trailing(bytes: &[u8], end: usize) -> Result<(), GalleryError> {
    if bytes.len() > end {
        return Err(GalleryError::TrailingBytes(bytes.len() - end));
    }
    Ok(())
}

fn decode_payload(payload: &[u8]) -> Result<Gallery, GalleryError> {
    let malformed = |e: postcard::Error| GalleryError::Malformed(e.to_string());
    let (h, mut rest): (HeaderWire, &[u8]) = postcard::take_from_bytes(payload).map_err(malformed)?;
    let dim = EmbeddingDim::new(h.dim as usize).map_err(|_| GalleryError::AbsurdCount {
        what: "embedding dimensions",
        count: h.dim.into(),
        max: crate::MAX_EMBEDDING_DIM as u64,
    })?;
    let count = h.member_count as usize;
    let min_member = MIN_MEMBER_BYTES + 4 * dim.get();
    if count > MAX_MEMBERS || count.saturating_mul(min_member) > rest.len() {
        return Err(GalleryError::AbsurdCount {
            what: "members",
            count: count as u64,
            max: (MAX_MEMBERS.min(rest.len() / min_member)) as u64,
        });
    }
    let mut gallery = Gallery::new(Fingerprint(h.encoder), dim, Threshold::new(h.threshold)?);
    gallery.revision = h.revision;
    let mut seen = std::collections::HashSet::with_capacity(count);
    for _ in 0..count {
        let (w, after): (MemberWire, &[u8]) = postcard::take_from_bytes(rest).map_err(malformed)?;
        let id = MemberId::new(w.id)?;
        let n = w.embedding_count as usize;
        if n > MAX_EMBEDDINGS_PER_MEMBER {
            return Err(GalleryError::AbsurdCount {
                what: "embeddings for one member",
                count: n as u64,
                max: MAX_EMBEDDINGS_PER_MEMBER as u64,
            });
        }
        let floats = n * dim.get() * 4;
        if after.len() < floats {
            return Err(GalleryError::Malformed(format!(
                "member {id}: {n} embeddings need {floats} bytes, only {} remain",
                after.len()
            )));
        }
        let (raw, after) = after.split_at(floats);
        let embeddings = raw
            .chunks_exact(dim.get() * 4)
            .map(|chunk| {
                let v = chunk.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
                Embedding::from_unit(v)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !seen.insert(w.id) {
            return Err(GalleryError::DuplicateMember(w.id.to_owned()));
        }
        let member = Member {
            id,
            name: w.name.to_owned(),
            validity: Validity { from: w.valid_from.map(Date), until: w.valid_until.map(Date), active: w.active },
            enrolled_at: w.enrolled_at,
            embeddings,
        };
        gallery.check_member(&member)?;
        gallery.push_unchecked(member);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(GalleryError::Malformed(format!("{} bytes left after the last member", rest.len())));
    }
    Ok(gallery)
}

/// Reads and decodes a gallery file (see [`decode`]).
pub fn load(path: &Path) -> Result<SignedGallery, GalleryError> {
    let io = |source| GalleryError::Io { path: path.display().to_string(), source };
    let bytes = std::fs::read(path).map_err(io)?;
    decode(&bytes)
}

/// Encodes and writes a gallery atomically (see [`write_atomic`]).
pub fn save(path: &Path, gallery: &Gallery, key: Option<&SigningKey>) -> Result<(), GalleryError> {
    let bytes = encode(gallery, key)?;
    write_atomic(path, &bytes).map_err(|source| GalleryError::Io { path: path.display().to_string(), source })
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
/// the directory: after a power cut the file is either the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
