//! The gallery file: a versioned, checksummed, optionally signed envelope around a postcard payload.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"FGGALRY\n"
//! 8       2     format version, u16 little-endian (currently 2)
//! 10      4     payload length n, u32 little-endian (at most MAX_PAYLOAD_BYTES)
//! 14      n     payload (below)
//! 14+n    4     CRC-32 (IEEE) of bytes 0..14+n, u32 little-endian
//! 18+n    1     signature tag: 0 = unsigned, 1 = ed25519
//! 19+n    96    (tag 1 only) public key (32) + signature (64) over bytes 0..18+n
//! ```
//!
//! The payload is postcard: `varint` is LEB128 (u32, u64 and lengths), `f32` is 4 bytes
//! little-endian, `str` is a varint byte length then UTF-8, `list` is a varint count then the items.
//! It starts with a header that carries the whole [`EncoderBinding`]:
//!
//! ```text
//! field           encoding                                   limit (checked before allocating)
//! onnx            32 bytes: SHA-256 of the encoder ONNX
//! width, height   varint, varint: encoder input in pixels
//! channels        u8 (1 byte): 0 = grey, 1 = rgb, 2 = bgr
//! mean, std       list of f32, list of f32 (0–255 scale)     MAX_NORM_VALUES each
//! alignment       str                                        MAX_ALIGNMENT_BYTES
//! extra_inputs    list of {name: str,                        MAX_EXTRA_INPUTS; MAX_EXTRA_INPUT_NAME_BYTES
//!                          shape: list of varint,            MAX_EXTRA_INPUT_DIMS
//!                          values: list of f32}              MAX_EXTRA_INPUT_VALUES
//! dim             varint                                     MAX_EMBEDDING_DIM
//! threshold       f32
//! revision        varint
//! member_count    varint                                     MAX_MEMBERS
//! ```
//!
//! then each member as `{id: str, name: str, valid_from: Option<i32>, valid_until: Option<i32>,
//! active: bool, enrolled_at: i64, embedding_count: varint}` followed by `embedding_count × dim`
//! raw little-endian f32. Every count is checked against its limit and against the bytes that
//! remain before anything is allocated, so decoding allocates at most a small multiple of the
//! input's length (`tests/decoder_fuzz.rs` measures it).
//!
//! Version history: version 1 bound only the ONNX fingerprint, so a card edited after enrolment
//! went unnoticed. This build refuses it with [`GalleryError::UnsupportedVersion`]; re-enrol.
//!
//! Trust comes before parsing: [`decode_trusted`] and [`load_trusted`] check the signer against
//! the trusted keys before a single payload byte is decoded. [`decode`] and [`load`] parse first
//! and leave trust to [`SignedGallery::trusted`]; use them only for inspection.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

use crate::gallery::{MAX_EMBEDDINGS_PER_MEMBER, MAX_MEMBERS};
use crate::{
    ChannelOrder, ConstInput, Date, Embedding, EmbeddingDim, EncoderBinding, Fingerprint, Gallery, GalleryError,
    Member, MemberId, Preprocessing, Threshold, Validity,
};

/// First eight bytes of every gallery file.
pub const GALLERY_MAGIC: [u8; 8] = *b"FGGALRY\n";
/// The format version this build writes and the only one it reads.
pub const GALLERY_FORMAT_VERSION: u16 = 2;
/// Largest payload accepted (1 GiB: about 2 million members with 1 photo of 128-d).
pub const MAX_PAYLOAD_BYTES: u32 = 1 << 30;
/// Largest gallery file: the 14-byte envelope header, the largest payload, the CRC (4), the
/// signature tag (1) and an ed25519 key and signature (96). [`load`] and [`load_trusted`] refuse a
/// larger file from its size alone, before reading it.
pub const MAX_GALLERY_FILE_BYTES: u64 = HEADER_LEN as u64 + MAX_PAYLOAD_BYTES as u64 + 4 + 1 + SIG_LEN as u64;
/// Most per-channel mean (or std) values a binding may hold (channels are 1 or 3).
pub const MAX_NORM_VALUES: usize = 4;
/// Longest alignment template name, in bytes.
pub const MAX_ALIGNMENT_BYTES: usize = 64;
/// Most constant extra encoder inputs.
pub const MAX_EXTRA_INPUTS: usize = 4;
/// Longest extra input name, in bytes.
pub const MAX_EXTRA_INPUT_NAME_BYTES: usize = 256;
/// Most dimensions of one extra input's shape.
pub const MAX_EXTRA_INPUT_DIMS: usize = 8;
/// Most values of one extra input (the model card's own limit).
pub const MAX_EXTRA_INPUT_VALUES: usize = 1 << 16;

const HEADER_LEN: usize = 14;
const SIG_TAG_NONE: u8 = 0;
const SIG_TAG_ED25519: u8 = 1;
const SIG_LEN: usize = 32 + 64;

/// The payload header as written; [`decode_header`] reads the same fields in the same order.
#[derive(Serialize)]
struct HeaderWire<'a> {
    onnx: [u8; 32],
    width: u32,
    height: u32,
    channels: u8,
    mean: &'a [f32],
    std: &'a [f32],
    alignment: &'a str,
    extra_inputs: Vec<ExtraInputWire<'a>>,
    dim: u32,
    threshold: f32,
    revision: u64,
    member_count: u32,
}

#[derive(Serialize)]
struct ExtraInputWire<'a> {
    name: &'a str,
    shape: &'a [usize],
    values: &'a [f32],
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
/// Smallest possible encoded extra input: empty name, shape and values.
const MIN_EXTRA_INPUT_BYTES: usize = 3;

fn channel_tag(c: ChannelOrder) -> u8 {
    match c {
        ChannelOrder::Grey => 0,
        ChannelOrder::Rgb => 1,
        ChannelOrder::Bgr => 2,
    }
}

fn channel_from_tag(tag: u8) -> Result<ChannelOrder, GalleryError> {
    match tag {
        0 => Ok(ChannelOrder::Grey),
        1 => Ok(ChannelOrder::Rgb),
        2 => Ok(ChannelOrder::Bgr),
        other => Err(GalleryError::Malformed(format!("unknown channel order tag {other}"))),
    }
}

/// Refuses `count` above `max` with [`GalleryError::AbsurdCount`].
fn limit(what: &'static str, count: usize, max: usize) -> Result<(), GalleryError> {
    if count > max {
        return Err(GalleryError::AbsurdCount { what, count: count as u64, max: max as u64 });
    }
    Ok(())
}

/// Checks that a binding fits the format's limits, so that no file is written that readers refuse.
fn check_binding(b: &EncoderBinding) -> Result<(), GalleryError> {
    let p = &b.preprocessing;
    limit("mean values", p.mean.len(), MAX_NORM_VALUES)?;
    limit("std values", p.std.len(), MAX_NORM_VALUES)?;
    limit("alignment bytes", p.alignment.len(), MAX_ALIGNMENT_BYTES)?;
    limit("extra inputs", p.extra_inputs.len(), MAX_EXTRA_INPUTS)?;
    for x in &p.extra_inputs {
        limit("extra input name bytes", x.name.len(), MAX_EXTRA_INPUT_NAME_BYTES)?;
        limit("extra input dimensions", x.shape.len(), MAX_EXTRA_INPUT_DIMS)?;
        limit("extra input values", x.values.len(), MAX_EXTRA_INPUT_VALUES)?;
    }
    Ok(())
}

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
        check_trust(self.signer.as_ref(), trusted).map(|()| self.gallery)
    }
}

/// The one trust rule: signed, and by a key in `trusted`.
fn check_trust(signer: Option<&VerifyingKey>, trusted: &[VerifyingKey]) -> Result<(), GalleryError> {
    match signer {
        None => Err(GalleryError::Unsigned),
        Some(k) if trusted.contains(k) => Ok(()),
        Some(k) => Err(GalleryError::UntrustedKey { key: hex::encode(k.as_bytes()) }),
    }
}

/// Encodes a gallery, signing it when a key is given. Fails with [`GalleryError::AbsurdCount`]
/// when the binding or the payload exceeds what readers accept (nothing is written then).
pub fn encode(gallery: &Gallery, key: Option<&SigningKey>) -> Result<Vec<u8>, GalleryError> {
    check_binding(&gallery.encoder)?;
    let dim = gallery.dim.get();
    let p = &gallery.encoder.preprocessing;
    let header = HeaderWire {
        onnx: gallery.encoder.onnx.0,
        width: p.width,
        height: p.height,
        channels: channel_tag(p.channels),
        mean: &p.mean,
        std: &p.std,
        alignment: &p.alignment,
        extra_inputs: p
            .extra_inputs
            .iter()
            .map(|x| ExtraInputWire { name: &x.name, shape: &x.shape, values: &x.values })
            .collect(),
        dim: dim as u32,
        threshold: gallery.threshold.get(),
        revision: gallery.revision,
        member_count: gallery.members().len() as u32,
    };
    let mut out =
        Vec::with_capacity(HEADER_LEN + 128 + gallery.embedding_count() * dim * 4 + 64 * gallery.members().len());
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

/// A checked envelope: its payload bytes (not yet parsed) and the key whose signature verified.
struct Envelope<'a> {
    payload: &'a [u8],
    signer: Option<VerifyingKey>,
}

/// Checks magic, version, length, checksum and signature (against the embedded key) without
/// looking inside the payload.
fn open_envelope(bytes: &[u8]) -> Result<Envelope<'_>, GalleryError> {
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
    Ok(Envelope { payload: &bytes[HEADER_LEN..body_end], signer })
}

/// Decodes and checks a gallery file: magic, version, length, checksum, signature (against the
/// embedded key), then the payload's counts, dimensions and duplicate ids. Every failure is a
/// typed error. The payload is parsed whoever signed it: a reader that acts on the gallery wants
/// [`decode_trusted`], which refuses untrusted bytes before parsing them.
pub fn decode(bytes: &[u8]) -> Result<SignedGallery, GalleryError> {
    let e = open_envelope(bytes)?;
    Ok(SignedGallery { gallery: decode_payload(e.payload)?, signer: e.signer })
}

/// Decodes a gallery only if a key in `trusted` signed it. The envelope is checked as in
/// [`decode`], then the signer ([`GalleryError::Unsigned`] or [`GalleryError::UntrustedKey`],
/// exactly as [`SignedGallery::trusted`] reports them), and only then is the payload parsed: bytes
/// nobody trusted never reach the payload decoder.
pub fn decode_trusted(bytes: &[u8], trusted: &[VerifyingKey]) -> Result<Gallery, GalleryError> {
    let e = open_envelope(bytes)?;
    check_trust(e.signer.as_ref(), trusted)?;
    decode_payload(e.payload)
}

fn trailing(bytes: &[u8], end: usize) -> Result<(), GalleryError> {
    if bytes.len() > end {
        return Err(GalleryError::TrailingBytes(bytes.len() - end));
    }
    Ok(())
}

fn malformed(e: postcard::Error) -> GalleryError {
    GalleryError::Malformed(e.to_string())
}

/// Reads postcard values one at a time from the payload, checking every count before allocating.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take<T: Deserialize<'a>>(&mut self) -> Result<T, GalleryError> {
        let (v, rest) = postcard::take_from_bytes(self.rest).map_err(malformed)?;
        self.rest = rest;
        Ok(v)
    }

    /// A list length: at most `max`, and small enough that `count × min_item_bytes` still fits in
    /// the bytes that remain.
    fn count(&mut self, what: &'static str, max: usize, min_item_bytes: usize) -> Result<usize, GalleryError> {
        let n: u64 = self.take()?;
        let fits = self.rest.len() / min_item_bytes.max(1);
        if n > max as u64 || n > fits as u64 {
            return Err(GalleryError::AbsurdCount { what, count: n, max: max.min(fits) as u64 });
        }
        Ok(n as usize)
    }

    /// A borrowed string of at most `max` bytes (borrowing allocates nothing).
    fn str(&mut self, what: &'static str, max: usize) -> Result<&'a str, GalleryError> {
        let s: &'a str = self.take()?;
        limit(what, s.len(), max)?;
        Ok(s)
    }

    fn floats(&mut self, what: &'static str, max: usize) -> Result<Vec<f32>, GalleryError> {
        let n = self.count(what, max, 4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.take()?);
        }
        Ok(v)
    }
}

/// The header fields that follow the binding.
struct Header {
    encoder: EncoderBinding,
    dim: EmbeddingDim,
    threshold: Threshold,
    revision: u64,
    member_count: usize,
}

/// Reads the header in the order [`HeaderWire`] writes it.
fn decode_header(c: &mut Cursor<'_>) -> Result<Header, GalleryError> {
    let onnx = Fingerprint(c.take()?);
    let width = c.take()?;
    let height = c.take()?;
    let channels = channel_from_tag(c.take()?)?;
    let mean = c.floats("mean values", MAX_NORM_VALUES)?;
    let std = c.floats("std values", MAX_NORM_VALUES)?;
    let alignment = c.str("alignment bytes", MAX_ALIGNMENT_BYTES)?.to_owned();
    let n = c.count("extra inputs", MAX_EXTRA_INPUTS, MIN_EXTRA_INPUT_BYTES)?;
    let mut extra_inputs = Vec::with_capacity(n);
    for _ in 0..n {
        let name = c.str("extra input name bytes", MAX_EXTRA_INPUT_NAME_BYTES)?.to_owned();
        let dims = c.count("extra input dimensions", MAX_EXTRA_INPUT_DIMS, 1)?;
        let mut shape = Vec::with_capacity(dims);
        for _ in 0..dims {
            let d: u64 = c.take()?;
            shape.push(usize::try_from(d).map_err(|_| GalleryError::Malformed(format!("extra input dimension {d}")))?);
        }
        let values = c.floats("extra input values", MAX_EXTRA_INPUT_VALUES)?;
        extra_inputs.push(ConstInput { name, shape, values });
    }
    let dim: u32 = c.take()?;
    let dim = EmbeddingDim::new(dim as usize).map_err(|_| GalleryError::AbsurdCount {
        what: "embedding dimensions",
        count: dim.into(),
        max: crate::MAX_EMBEDDING_DIM as u64,
    })?;
    let threshold = Threshold::new(c.take()?)?;
    let revision = c.take()?;
    let member_count = c.count("members", MAX_MEMBERS, MIN_MEMBER_BYTES + 4 * dim.get())?;
    let preprocessing = Preprocessing { width, height, channels, mean, std, alignment, extra_inputs };
    Ok(Header { encoder: EncoderBinding { onnx, preprocessing }, dim, threshold, revision, member_count })
}

fn decode_payload(payload: &[u8]) -> Result<Gallery, GalleryError> {
    let mut c = Cursor { rest: payload };
    let h = decode_header(&mut c)?;
    let (dim, count) = (h.dim, h.member_count);
    let mut gallery = Gallery::new(h.encoder, dim, h.threshold);
    gallery.revision = h.revision;
    gallery.reserve_exact_members(count);
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut rest = c.rest;
    for _ in 0..count {
        let (w, after): (MemberWire, &[u8]) = postcard::take_from_bytes(rest).map_err(malformed)?;
        let id = MemberId::new(w.id)?;
        let n = w.embedding_count as usize;
        limit("embeddings for one member", n, MAX_EMBEDDINGS_PER_MEMBER)?;
        let floats = n * dim.get() * 4;
        if after.len() < floats {
            return Err(GalleryError::Malformed(format!(
                "member {id}: {n} embeddings need {floats} bytes, only {} remain",
                after.len()
            )));
        }
        let (raw, after) = after.split_at(floats);
        let mut embeddings = Vec::with_capacity(n);
        for chunk in raw.chunks_exact(dim.get() * 4) {
            let v = chunk.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
            embeddings.push(Embedding::from_unit(v)?);
        }
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

/// Reads and decodes a gallery file (see [`decode`]); a file larger than
/// [`MAX_GALLERY_FILE_BYTES`] is refused with [`GalleryError::TooLarge`] before it is read.
pub fn load(path: &Path) -> Result<SignedGallery, GalleryError> {
    decode(&read_capped(path)?)
}

/// Reads a gallery file and decodes it only if a key in `trusted` signed it (see
/// [`decode_trusted`]); a file larger than [`MAX_GALLERY_FILE_BYTES`] is refused with
/// [`GalleryError::TooLarge`] before it is read.
pub fn load_trusted(path: &Path, trusted: &[VerifyingKey]) -> Result<Gallery, GalleryError> {
    decode_trusted(&read_capped(path)?, trusted)
}

/// A gallery file's bytes, unparsed: refused with [`GalleryError::TooLarge`] when its size is over
/// [`MAX_GALLERY_FILE_BYTES`] before anything is read, and read through a cap of
/// `MAX_GALLERY_FILE_BYTES + 1` bytes so a file that grows after the size check is refused too.
/// For callers that need the bytes themselves (to hash them, say) before [`decode_trusted`].
pub fn read_capped(path: &Path) -> Result<Vec<u8>, GalleryError> {
    read_capped_to(path, MAX_GALLERY_FILE_BYTES)
}

/// [`read_capped`] with a smaller cap of the reader's own (a door unit with little memory);
/// `max` above [`MAX_GALLERY_FILE_BYTES`] is lowered to it.
pub fn read_capped_to(path: &Path, max: u64) -> Result<Vec<u8>, GalleryError> {
    let io = |error| GalleryError::Io { path: path.display().to_string(), error };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    read_limited(file, size, path, max.min(MAX_GALLERY_FILE_BYTES))
}

/// Reads at most `max + 1` bytes of `r`, whose size was `size` when last looked at.
fn read_limited(r: impl Read, size: u64, path: &Path, max: u64) -> Result<Vec<u8>, GalleryError> {
    let too_large = |bytes| GalleryError::TooLarge { path: path.display().to_string(), bytes, max };
    if size > max {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    r.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| GalleryError::Io { path: path.display().to_string(), error })?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Encodes and writes a gallery atomically (see [`write_atomic`]).
pub fn save(path: &Path, gallery: &Gallery, key: Option<&SigningKey>) -> Result<(), GalleryError> {
    let bytes = encode(gallery, key)?;
    write_atomic(path, &bytes).map_err(|error| GalleryError::Io { path: path.display().to_string(), error })
}
/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
/// the directory: after a power cut the file is either the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("path has no file name"))?;
    // A fresh name opened with O_CREAT|O_EXCL: a file or symbolic link planted under that name
    // (the inbox is group-writable) makes the write fail instead of being followed.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp-{}-{nanos:09}-{seq}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_grows_after_its_size_was_read_is_cut_off_at_the_cap() {
        let path = Path::new("growing.fgg");
        // the size said 4 bytes, but 20 arrive: reading stops at max + 1 = 11
        let r = read_limited(&[7u8; 20][..], 4, path, 10);
        assert!(matches!(r, Err(GalleryError::TooLarge { bytes: 11, max: 10, .. })), "{r:?}");
        assert_eq!(read_limited(&[7u8; 10][..], 4, path, 10).unwrap(), vec![7; 10]);
        assert!(matches!(read_limited(&[][..], 11, path, 10), Err(GalleryError::TooLarge { bytes: 11, max: 10, .. })));
    }

    #[test]
    fn the_file_cap_is_the_largest_envelope() {
        assert_eq!(MAX_GALLERY_FILE_BYTES, 14 + (1 << 30) + 4 + 1 + 96);
    }
}
