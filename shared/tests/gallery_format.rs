//! The gallery file format: golden bytes, exact round trips, and one typed error per kind of
//! malformed input. The fixture `fixtures/gallery_v2.bin` (and its copy in the fuzz corpus,
//! `fuzz_corpus/gallery_v2.bin`) is produced by `fixture_gallery()` below; regenerate both only for
//! a new format version: `FACEGATE_REGENERATE=1 cargo test -p facegate-shared --test gallery_format`.
//! `fixtures/gallery_v1.bin` is the last version-1 file, kept to show that it is refused.

use facegate_shared::gallery_file::{
    self, decode, decode_trusted, encode, GALLERY_FORMAT_VERSION, MAX_GALLERY_FILE_BYTES,
};
use facegate_shared::{
    ChannelOrder, ConstInput, Date, Embedding, EmbeddingDim, EncoderBinding, Fingerprint, Gallery, GalleryError,
    Member, MemberId, Preprocessing, SigningKey, Threshold, Validity, ALIGNMENT_ARCFACE_5PT,
};

mod common;
use common::{seal, seal_with};

fn fixture_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// An SFace-like binding that uses every field: 112×112 RGB, three means and stds, one constant
/// extra input. Every float is exactly representable.
fn fixture_binding() -> EncoderBinding {
    EncoderBinding {
        onnx: Fingerprint::of_bytes(b"fixture-encoder"),
        preprocessing: Preprocessing {
            width: 112,
            height: 112,
            channels: ChannelOrder::Rgb,
            mean: vec![127.5; 3],
            std: vec![128.0; 3],
            alignment: ALIGNMENT_ARCFACE_5PT.into(),
            extra_inputs: vec![ConstInput { name: "scalar_op1".into(), shape: vec![1], values: vec![0.5] }],
        },
    }
}

/// Two members, 4-d embeddings with exactly representable components, fixed dates.
fn fixture_gallery() -> Gallery {
    let dim = EmbeddingDim::new(4).unwrap();
    let mut g = Gallery::new(fixture_binding(), dim, Threshold::new(0.75).unwrap());
    g.revision = 3;
    g.add(Member {
        id: MemberId::new("17").unwrap(),
        name: "Anna Kowalska".into(),
        validity: Validity {
            from: Some(Date::parse("2026-01-01").unwrap()),
            until: Some(Date::parse("2026-12-31").unwrap()),
            active: true,
        },
        enrolled_at: 1_767_225_600,
        embeddings: vec![
            Embedding::new(vec![1.0, 0.0, 0.0, 0.0]).unwrap(),
            Embedding::new(vec![0.0, 0.6, 0.8, 0.0]).unwrap(),
        ],
    })
    .unwrap();
    g.add(Member {
        id: MemberId::new("s2").unwrap(),
        name: "Ben".into(),
        validity: Validity { from: None, until: None, active: false },
        enrolled_at: 0,
        embeddings: vec![Embedding::new(vec![0.0, 0.0, 0.0, -1.0]).unwrap()],
    })
    .unwrap();
    g
}

/// The payload header of `fixture_gallery()`, byte by byte, as the table in `gallery_file` says.
fn fixture_header() -> Vec<u8> {
    let f32s = |n: u8, x: f32| {
        let mut v = vec![n];
        (0..n).for_each(|_| v.extend_from_slice(&x.to_le_bytes()));
        v
    };
    [
        Fingerprint::of_bytes(b"fixture-encoder").0.to_vec(), // onnx
        vec![112, 112],                                       // width, height (varints)
        vec![1],                                              // channels: rgb
        f32s(3, 127.5),                                       // mean
        f32s(3, 128.0),                                       // std
        [&[11u8][..], b"arcface-5pt"].concat(),               // alignment
        vec![1],                                              // one extra input:
        [&[10u8][..], b"scalar_op1"].concat(),                //   name
        vec![1, 1],                                           //   shape [1]
        f32s(1, 0.5),                                         //   values [0.5]
        vec![4],                                              // dim
        0.75f32.to_le_bytes().to_vec(),                       // threshold
        vec![3],                                              // revision
        vec![2],                                              // member count
    ]
    .concat()
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gallery_v2.bin");
const FIXTURE_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gallery_v1.bin");
const CORPUS_COPY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz_corpus/gallery_v2.bin");

#[test]
fn golden_v2_fixture_reads_and_writes_exactly() {
    let bytes = encode(&fixture_gallery(), Some(&fixture_key())).unwrap();
    if std::env::var_os("FACEGATE_REGENERATE").is_some() {
        std::fs::write(FIXTURE, &bytes).unwrap();
        std::fs::write(CORPUS_COPY, &bytes).unwrap();
    }
    let golden = std::fs::read(FIXTURE).expect("fixture present");
    assert_eq!(bytes, golden, "encoder output changed: a format change needs a new version");
    assert_eq!(std::fs::read(CORPUS_COPY).expect("corpus copy present"), golden, "fuzz corpus is the fixture");
    let read = decode(&golden).unwrap();
    assert_eq!(read.gallery, fixture_gallery());
    assert_eq!(read.signer, Some(fixture_key().verifying_key()));
    assert_eq!(&golden[..8], b"FGGALRY\n");
    assert_eq!(u16::from_le_bytes([golden[8], golden[9]]), 2);
    let header = fixture_header();
    assert_eq!(payload_of(&golden)[..header.len()], header[..], "payload header");
    assert_eq!(golden.len(), 14 + payload_of(&golden).len() + 4 + 1 + 96);
}

#[test]
fn version_1_is_refused_not_misread() {
    let v1 = std::fs::read(FIXTURE_V1).expect("v1 fixture present");
    assert_eq!(u16::from_le_bytes([v1[8], v1[9]]), 1);
    assert!(matches!(decode(&v1), Err(GalleryError::UnsupportedVersion { found: 1, supported: 2 })));
    let key = [fixture_key().verifying_key()];
    assert!(matches!(decode_trusted(&v1, &key), Err(GalleryError::UnsupportedVersion { found: 1, supported: 2 })));
    assert!(matches!(
        gallery_file::load_trusted(FIXTURE_V1.as_ref(), &key),
        Err(GalleryError::UnsupportedVersion { found: 1, supported: 2 })
    ));
}

#[test]
fn round_trip_is_byte_exact() {
    let bytes = encode(&fixture_gallery(), None).unwrap();
    let again = encode(&decode(&bytes).unwrap().gallery, None).unwrap();
    assert_eq!(bytes, again);
    assert_eq!(*bytes.last().unwrap(), 0, "unsigned tag");
    // every channel order and an empty extra-input list survive too
    for channels in [ChannelOrder::Grey, ChannelOrder::Rgb, ChannelOrder::Bgr] {
        let mut g = fixture_gallery();
        g.encoder.preprocessing.channels = channels;
        g.encoder.preprocessing.extra_inputs.clear();
        assert_eq!(decode(&encode(&g, None).unwrap()).unwrap().gallery, g);
    }
}

#[test]
fn envelope_errors_are_typed() {
    let good = encode(&fixture_gallery(), Some(&fixture_key())).unwrap();
    assert!(matches!(decode(&[]), Err(GalleryError::Truncated { needed: 8, available: 0 })));
    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(decode(&b), Err(GalleryError::BadMagic)));
    let mut b = good.clone();
    b[8..10].copy_from_slice(&(GALLERY_FORMAT_VERSION + 1).to_le_bytes());
    assert!(matches!(
        decode(&b),
        Err(GalleryError::UnsupportedVersion { found: 3, supported: GALLERY_FORMAT_VERSION })
    ));
    assert!(matches!(decode(&good[..good.len() - 10]), Err(GalleryError::Truncated { .. })));
    assert!(matches!(decode(&good[..20]), Err(GalleryError::Truncated { .. })));
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(decode(&b), Err(GalleryError::TrailingBytes(1))));
    let mut b = good.clone();
    b[30] ^= 1; // inside the payload
    assert!(matches!(decode(&b), Err(GalleryError::Checksum { .. })));
    let mut b = good.clone();
    b[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode(&b), Err(GalleryError::AbsurdCount { what: "payload bytes", .. })));
}

fn payload_of(bytes: &[u8]) -> Vec<u8> {
    let n = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize;
    bytes[14..14 + n].to_vec()
}

/// Offsets in the fixture payload: the binding, then dim, threshold, revision and member count.
const BINDING_LEN: usize = 32 + 2 + 1 + 13 + 13 + 12 + 1 + 11 + 2 + 5;
const DIM_AT: usize = BINDING_LEN;
const THRESHOLD_AT: usize = DIM_AT + 1;
const COUNT_AT: usize = THRESHOLD_AT + 4 + 1;

#[test]
fn payload_errors_are_typed_and_checked_before_allocating() {
    let payload = payload_of(&encode(&fixture_gallery(), None).unwrap());
    assert_eq!(fixture_header().len(), COUNT_AT + 1);
    assert_eq!((payload[DIM_AT], payload[COUNT_AT]), (4, 2));

    // a billion members in a few bytes: refused before any allocation
    let mut p = payload.clone();
    p.splice(COUNT_AT..COUNT_AT + 1, [0x80, 0x94, 0xeb, 0xdc, 0x03]);
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::AbsurdCount { what: "members", count: 1_000_000_000, .. })));

    // dimension 100000
    let mut p = payload.clone();
    p.splice(DIM_AT..DIM_AT + 1, [0xa0, 0x8d, 0x06]);
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::AbsurdCount { what: "embedding dimensions", .. })));

    // threshold 5.0 is not a distance on the unit sphere
    let mut p = payload.clone();
    p[THRESHOLD_AT..THRESHOLD_AT + 4].copy_from_slice(&5.0f32.to_le_bytes());
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::Threshold(_))));

    // member id collision: rename "s2" to "17"
    let mut p = payload.clone();
    let pos = p.windows(3).position(|w| w == [2, b's', b'2']).unwrap();
    p[pos + 1..pos + 3].copy_from_slice(b"17");
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::DuplicateMember(id)) if id == "17"));

    // an embedding that is not unit length (the first 1.0 after the header)
    let mut p = payload.clone();
    let one = 1.0f32.to_le_bytes();
    let pos = COUNT_AT + p[COUNT_AT..].windows(4).position(|w| w == one).unwrap();
    p[pos..pos + 4].copy_from_slice(&3.0f32.to_le_bytes());
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::Embedding(_))));

    // a missing tail
    assert!(matches!(decode(&seal(&payload[..payload.len() - 3])), Err(GalleryError::Malformed(_))));
    // an extra tail
    let mut p = payload.clone();
    p.push(0);
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::Malformed(_))));
}

#[test]
fn binding_counts_are_checked_before_allocating() {
    let payload = payload_of(&encode(&fixture_gallery(), None).unwrap());
    let decode_with = |at: usize, old_len: usize, new: &[u8]| {
        let mut p = payload.clone();
        p.splice(at..at + old_len, new.iter().copied());
        decode(&seal(&p))
    };
    let mean_at = 32 + 2 + 1;
    let std_at = mean_at + 13;
    let alignment_at = std_at + 13;
    let extra_at = alignment_at + 12;
    let values_at = extra_at + 1 + 11 + 2;
    let absurd = |r: Result<_, GalleryError>, what: &str, count: u64| match r {
        Err(GalleryError::AbsurdCount { what: w, count: c, .. }) => assert_eq!((w, c), (what, count)),
        other => panic!("{what}: {other:?}"),
    };
    // five means: over the limit, whatever follows
    absurd(decode_with(mean_at, 1, &[5]), "mean values", 5);
    absurd(decode_with(std_at, 1, &[5]), "std values", 5);
    // 2^32 − 1 stds in five bytes
    absurd(decode_with(std_at, 1, &[0xff, 0xff, 0xff, 0xff, 0x0f]), "std values", u32::MAX.into());
    // a 100-byte alignment name, and one claimed longer than the payload
    let long = [&[100u8][..], &[b'a'; 100]].concat();
    absurd(decode_with(alignment_at, 12, &long), "alignment bytes", 100);
    assert!(matches!(decode_with(alignment_at, 1, &[0x80, 0x80, 0x04]), Err(GalleryError::Malformed(_))));
    // five extra inputs
    absurd(decode_with(extra_at, 1, &[5]), "extra inputs", 5);
    // nine dimensions
    absurd(decode_with(extra_at + 1 + 11, 1, &[9]), "extra input dimensions", 9);
    // 65537 values (within the limit of the bytes that remain only if they were there)
    absurd(decode_with(values_at, 1, &[0x81, 0x80, 0x04]), "extra input values", 65_537);
    // 65536 values are allowed, but not when the payload cannot hold them
    absurd(decode_with(values_at, 1, &[0x80, 0x80, 0x04]), "extra input values", 65_536);
    // an unknown channel order and an alignment that is not UTF-8
    assert!(matches!(decode_with(mean_at - 1, 1, &[3]), Err(GalleryError::Malformed(m)) if m.contains("channel")));
    assert!(matches!(decode_with(alignment_at + 1, 1, &[0xff]), Err(GalleryError::Malformed(_))));

    // and the writer refuses what readers would refuse
    let mut g = fixture_gallery();
    g.encoder.preprocessing.mean = vec![0.0; 5];
    assert!(matches!(encode(&g, None), Err(GalleryError::AbsurdCount { what: "mean values", count: 5, max: 4 })));
    let mut g = fixture_gallery();
    g.encoder.preprocessing.extra_inputs[0].values = vec![0.0; 65_537];
    assert!(matches!(encode(&g, None), Err(GalleryError::AbsurdCount { what: "extra input values", .. })));
}

#[test]
fn signatures_and_trust() {
    let key = fixture_key();
    let other = SigningKey::from_bytes(&[9; 32]);
    let signed = encode(&fixture_gallery(), Some(&key)).unwrap();
    let g = decode(&signed).unwrap();
    assert_eq!(g.clone().trusted(&[key.verifying_key()]).unwrap(), fixture_gallery());
    assert!(matches!(g.trusted(&[other.verifying_key()]), Err(GalleryError::UntrustedKey { .. })));
    let unsigned = encode(&fixture_gallery(), None).unwrap();
    assert!(matches!(decode(&unsigned).unwrap().trusted(&[key.verifying_key()]), Err(GalleryError::Unsigned)));
    assert_eq!(decode_trusted(&signed, &[other.verifying_key(), key.verifying_key()]).unwrap(), fixture_gallery());

    // change a byte inside the payload and fix the CRC: only the signature catches it
    let n = signed.len();
    let body_end = n - 1 - 96 - 4;
    let mut t = signed.clone();
    t[40] ^= 0x01;
    let crc = crc32fast::hash(&t[..body_end]);
    t[body_end..body_end + 4].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(decode(&t), Err(GalleryError::BadSignature)));
    assert!(matches!(decode_trusted(&t, &[key.verifying_key()]), Err(GalleryError::BadSignature)));
    // swap in another key without re-signing
    let mut t = signed.clone();
    t[body_end + 5..body_end + 37].copy_from_slice(other.verifying_key().as_bytes());
    assert!(matches!(decode(&t), Err(GalleryError::BadSignature)));
}

#[test]
fn trust_is_checked_before_the_payload_is_parsed() {
    let trusted = SigningKey::from_bytes(&[1; 32]);
    let stranger = SigningKey::from_bytes(&[2; 32]);
    let garbage = b"\xff\xff\xff not a payload";
    // the envelope of each is valid: CRC and signature check out
    let by_stranger = seal_with(garbage, Some(&stranger));
    assert!(matches!(decode(&by_stranger), Err(GalleryError::Malformed(_))), "decode parses it");
    match decode_trusted(&by_stranger, &[trusted.verifying_key()]) {
        Err(GalleryError::UntrustedKey { key }) => assert_eq!(key, hex::encode(stranger.verifying_key().as_bytes())),
        other => panic!("{other:?}"),
    }
    assert!(matches!(decode_trusted(&seal(garbage), &[trusted.verifying_key()]), Err(GalleryError::Unsigned)));
    // no trusted key at all: nothing is trusted
    assert!(matches!(decode_trusted(&by_stranger, &[]), Err(GalleryError::UntrustedKey { .. })));
    // signed by a trusted key, the payload is parsed and its error reported
    let by_trusted = seal_with(garbage, Some(&trusted));
    assert!(matches!(decode_trusted(&by_trusted, &[trusted.verifying_key()]), Err(GalleryError::Malformed(_))));
}

#[test]
fn atomic_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery.fg");
    gallery_file::save(&path, &fixture_gallery(), Some(&fixture_key())).unwrap();
    assert_eq!(gallery_file::load(&path).unwrap().gallery, fixture_gallery());
    assert_eq!(gallery_file::load_trusted(&path, &[fixture_key().verifying_key()]).unwrap(), fixture_gallery());
    let stranger = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(matches!(gallery_file::load_trusted(&path, &[stranger]), Err(GalleryError::UntrustedKey { .. })));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
    assert!(matches!(gallery_file::load(&dir.path().join("missing")), Err(GalleryError::Io { .. })));
    assert!(matches!(gallery_file::load_trusted(&dir.path().join("missing"), &[]), Err(GalleryError::Io { .. })));
}

#[test]
fn oversized_files_are_refused_before_reading() {
    assert_eq!(MAX_GALLERY_FILE_BYTES, 14 + (1u64 << 30) + 4 + 1 + 96);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.fg");
    // sparse: the size says a gigabyte, the disk holds nothing
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(MAX_GALLERY_FILE_BYTES + 1).unwrap();
    drop(f);
    let too_large = |r: Result<Gallery, GalleryError>| match r {
        Err(GalleryError::TooLarge { path: p, bytes, max }) => {
            assert_eq!((bytes, max), (MAX_GALLERY_FILE_BYTES + 1, MAX_GALLERY_FILE_BYTES));
            assert_eq!(p, path.display().to_string());
        }
        other => panic!("{other:?}"),
    };
    too_large(gallery_file::load(&path).map(|s| s.gallery));
    too_large(gallery_file::load_trusted(&path, &[fixture_key().verifying_key()]));
}

#[test]
fn gallery_editing_rules() {
    let mut g = fixture_gallery();
    let dup = g.members()[0].clone();
    assert!(matches!(g.add(dup), Err(GalleryError::DuplicateMember(_))));
    let mut wrong = g.members()[0].clone();
    wrong.id = MemberId::new("new").unwrap();
    wrong.embeddings = vec![Embedding::new(vec![1.0, 0.0]).unwrap()];
    assert!(matches!(g.add(wrong), Err(GalleryError::DimMismatch { expected: 4, got: 2, .. })));
    let removed = g.remove(&MemberId::new("17").unwrap()).unwrap();
    assert_eq!(removed.name, "Anna Kowalska");
    assert_eq!(g.members().len(), 1);
    // removal deletes the embeddings from the file, not just a flag
    let bytes = encode(&g, None).unwrap();
    assert!(!bytes.windows(13).any(|w| w == b"Anna Kowalska"));
    assert_eq!(decode(&bytes).unwrap().gallery.embedding_count(), 1);
    assert!(matches!(g.remove(&MemberId::new("17").unwrap()), Err(GalleryError::UnknownMember(_))));
    assert!(g.check_encoder(&fixture_binding()).is_ok());
    let mut other = fixture_binding();
    other.onnx = Fingerprint::of_bytes(b"x");
    assert!(matches!(g.check_encoder(&other), Err(GalleryError::EncoderMismatch { .. })));
    // a card edited after enrolment: same ONNX, another std
    let mut edited = fixture_binding();
    edited.preprocessing.std = vec![127.5; 3];
    assert!(matches!(
        g.check_encoder(&edited),
        Err(GalleryError::PreprocessingMismatch { field: "input.std", gallery, model })
            if gallery == "[128.0, 128.0, 128.0]" && model == "[127.5, 127.5, 127.5]"
    ));
}
