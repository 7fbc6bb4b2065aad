//! The gallery file format: golden bytes, exact round trips, and one typed error per kind of
//! malformed input. The fixture `fixtures/gallery_v1.bin` is produced by `fixture_gallery()` below;
//! regenerate it only for a new format version: `FACEGATE_REGENERATE=1 cargo test -p facegate-shared --test gallery_format`.

use facegate_shared::gallery_file::{self, decode, encode, GALLERY_FORMAT_VERSION};
use facegate_shared::{
    Date, Embedding, EmbeddingDim, Fingerprint, Gallery, GalleryError, Member, MemberId, SigningKey, Threshold,
    Validity,
};

mod common;
use common::seal;

fn fixture_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// Two members, 4-d embeddings with exactly representable components, fixed dates.
fn fixture_gallery() -> Gallery {
    let dim = EmbeddingDim::new(4).unwrap();
    let mut g = Gallery::new(Fingerprint::of_bytes(b"fixture-encoder"), dim, Threshold::new(0.75).unwrap());
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

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gallery_v1.bin");

#[test]
fn golden_v1_fixture_reads_and_writes_exactly() {
    let bytes = encode(&fixture_gallery(), Some(&fixture_key())).unwrap();
    if std::env::var_os("FACEGATE_REGENERATE").is_some() {
        std::fs::write(FIXTURE, &bytes).unwrap();
    }
    let golden = std::fs::read(FIXTURE).expect("fixture present");
    assert_eq!(bytes, golden, "encoder output changed: a format change needs a new version");
    let read = decode(&golden).unwrap();
    assert_eq!(read.gallery, fixture_gallery());
    assert_eq!(read.signer, Some(fixture_key().verifying_key()));
    assert_eq!(&golden[..8], b"FGGALRY\n");
    assert_eq!(u16::from_le_bytes([golden[8], golden[9]]), 1);
}

#[test]
fn round_trip_is_byte_exact() {
    let bytes = encode(&fixture_gallery(), None).unwrap();
    let again = encode(&decode(&bytes).unwrap().gallery, None).unwrap();
    assert_eq!(bytes, again);
    assert_eq!(*bytes.last().unwrap(), 0, "unsigned tag");
}

#[test]
fn envelope_errors_are_typed() {
    let good = encode(&fixture_gallery(), Some(&fixture_key())).unwrap();
    assert!(matches!(decode(&[]), Err(GalleryError::Truncated { needed: 8, available: 0 })));
    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(decode(&b), Err(GalleryError::BadMagic)));
    let mut b = good.clone();
    b[8] = 2;
    assert!(matches!(
        decode(&b),
        Err(GalleryError::UnsupportedVersion { found: 2, supported: GALLERY_FORMAT_VERSION })
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

#[test]
fn payload_errors_are_typed_and_checked_before_allocating() {
    let payload = payload_of(&encode(&fixture_gallery(), None).unwrap());
    // header: 32 fingerprint bytes, dim varint (4), threshold f32, revision varint (3), count varint (2)
    assert_eq!(payload[32], 4);
    assert_eq!(payload[32 + 1 + 4], 3);
    let count_at = 32 + 1 + 4 + 1;
    assert_eq!(payload[count_at], 2);

    // a billion members in a few bytes: refused before any allocation
    let mut p = payload.clone();
    p.splice(count_at..count_at + 1, [0x80, 0x94, 0xeb, 0xdc, 0x03]);
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::AbsurdCount { what: "members", count: 1_000_000_000, .. })));

    // dimension 100000
    let mut p = payload.clone();
    p.splice(32..33, [0xa0, 0x8d, 0x06]);
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::AbsurdCount { what: "embedding dimensions", .. })));

    // threshold 5.0 is not a distance on the unit sphere
    let mut p = payload.clone();
    p[33..37].copy_from_slice(&5.0f32.to_le_bytes());
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::Threshold(_))));

    // member id collision: rename "s2" to "17"
    let mut p = payload.clone();
    let pos = p.windows(3).position(|w| w == [2, b's', b'2']).unwrap();
    p[pos + 1..pos + 3].copy_from_slice(b"17");
    assert!(matches!(decode(&seal(&p)), Err(GalleryError::DuplicateMember(id)) if id == "17"));

    // an embedding that is not unit length
    let mut p = payload.clone();
    let one = 1.0f32.to_le_bytes();
    let pos = p.windows(4).position(|w| w == one).unwrap();
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
fn signatures_and_trust() {
    let key = fixture_key();
    let other = SigningKey::from_bytes(&[9; 32]);
    let signed = encode(&fixture_gallery(), Some(&key)).unwrap();
    let g = decode(&signed).unwrap();
    assert_eq!(g.clone().trusted(&[key.verifying_key()]).unwrap(), fixture_gallery());
    assert!(matches!(g.trusted(&[other.verifying_key()]), Err(GalleryError::UntrustedKey { .. })));
    let unsigned = encode(&fixture_gallery(), None).unwrap();
    assert!(matches!(decode(&unsigned).unwrap().trusted(&[key.verifying_key()]), Err(GalleryError::Unsigned)));

    // change a byte inside the payload and fix the CRC: only the signature catches it
    let n = signed.len();
    let body_end = n - 1 - 96 - 4;
    let mut t = signed.clone();
    t[40] ^= 0x01;
    let crc = crc32fast::hash(&t[..body_end]);
    t[body_end..body_end + 4].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(decode(&t), Err(GalleryError::BadSignature)));
    // swap in another key without re-signing
    let mut t = signed.clone();
    t[body_end + 5..body_end + 37].copy_from_slice(other.verifying_key().as_bytes());
    assert!(matches!(decode(&t), Err(GalleryError::BadSignature)));
}

#[test]
fn atomic_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery.fg");
    gallery_file::save(&path, &fixture_gallery(), Some(&fixture_key())).unwrap();
    assert_eq!(gallery_file::load(&path).unwrap().gallery, fixture_gallery());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
    assert!(matches!(gallery_file::load(&dir.path().join("missing")), Err(GalleryError::Io { .. })));
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
    assert!(g.check_encoder(&Fingerprint::of_bytes(b"fixture-encoder")).is_ok());
    assert!(matches!(g.check_encoder(&Fingerprint::of_bytes(b"x")), Err(GalleryError::EncoderMismatch { .. })));
}
