//! Bounded fuzzing in the normal test suite (cargo-fuzz needs nightly, which CI does not have):
//! the gallery decoder and the model-card parser get random and mutated inputs, seeded from the
//! committed corpus in `tests/fuzz_corpus/` (`gallery_v2.bin` is a copy of the golden fixture,
//! signed by `SigningKey::from_bytes(&[42; 32])`, written by `tests/gallery_format.rs`). Each must return a value or a typed error: no panic.
//!
//! Allocation is measured, not assumed: this test binary's global allocator counts the bytes live
//! on the thread being measured, and every gallery decode below must peak at no more than
//! `ALLOC_PER_INPUT_BYTE × input length + ALLOC_SLACK` bytes. Counts are checked against the bytes
//! left before anything is allocated, so a few bytes can never claim gigabytes. The largest ratio
//! seen is printed (`cargo test -p facegate-shared --test decoder_fuzz -- --nocapture`). Any crash
//! found becomes a file in the corpus and a case below.

use facegate_shared::{
    gallery_file, EmbeddingDim, GalleryError, Member, MemberId, ModelCard, SigningKey, Threshold, Validity,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering::SeqCst};
use std::sync::Mutex;

mod common;
use common::seal;

/// A decode may allocate at most this many bytes per input byte...
const ALLOC_PER_INPUT_BYTE: usize = 16;
/// ...plus this much whatever the input (error messages, small fixed buffers). Measured: at most
/// about 0.5 KiB over the per-byte part for the small mutated inputs.
const ALLOC_SLACK: usize = 4 << 10;

/// Counts the bytes allocated by the thread inside [`peak_during`]; other threads and other
/// times pass straight through to the system allocator uncounted.
struct Counting;

/// Bytes live in measured allocations (signed: a measured thread may free older memory).
static CURRENT: AtomicIsize = AtomicIsize::new(0);
/// Highest `CURRENT` since the last reset.
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// One measurement at a time (tests run on parallel threads).
static MEASURING: Mutex<()> = Mutex::new(());

thread_local! {
    /// Whether this thread's allocations are counted (const-initialised, no destructor: reading
    /// it never allocates, so the allocator may).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

fn grow(bytes: usize) {
    let now = CURRENT.fetch_add(bytes as isize, SeqCst) + bytes as isize;
    PEAK.fetch_max(now, SeqCst);
}

fn shrink(bytes: usize) {
    CURRENT.fetch_sub(bytes as isize, SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counted() {
            grow(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && counted() {
            grow(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if counted() {
            shrink(layout.size());
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && counted() {
            // counted as a copy: old and new both live for a moment
            grow(new_size);
            shrink(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Turns counting off when dropped, also when the measured code panics.
struct CountingOn;
impl Drop for CountingOn {
    fn drop(&mut self) {
        COUNTED.with(|c| c.set(false));
    }
}

/// Runs `f` with this thread's allocations counted; returns its result and the most bytes that
/// were live at once during it, beyond what was live when it started. `f` should drop what it
/// allocated (return a verdict, not the decoded gallery).
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let start = CURRENT.load(SeqCst);
    PEAK.store(start, SeqCst);
    COUNTED.with(|c| c.set(true));
    let on = CountingOn;
    let out = f();
    drop(on);
    (out, (PEAK.load(SeqCst) - start).max(0) as usize)
}

/// The largest `peak / input length` a test saw, and the input length it was seen at.
#[derive(Default)]
struct Worst(Cell<(f64, usize)>);

impl Worst {
    fn note(&self, peak: usize, len: usize) {
        let ratio = peak as f64 / len.max(1) as f64;
        if ratio > self.0.get().0 {
            self.0.set((ratio, len));
        }
    }
    fn report(&self, what: &str) {
        let (ratio, len) = self.0.get();
        println!(
            "{what}: largest allocation {ratio:.2} bytes per input byte (at {len} bytes; bound \
             {ALLOC_PER_INPUT_BYTE} per byte + {ALLOC_SLACK})"
        );
    }
}

/// Decodes `bytes` with allocation measured; fails when the peak exceeds
/// `ALLOC_PER_INPUT_BYTE × bytes.len() + ALLOC_SLACK`. Returns `judge`'s verdict on the result,
/// judged inside the measurement so that the decoded gallery is dropped there.
fn decode_bounded(
    bytes: &[u8],
    worst: &Worst,
    judge: impl FnOnce(&Result<(), GalleryError>) -> bool,
) -> Result<bool, String> {
    let (verdict, peak) = peak_during(|| judge(&gallery_file::decode(bytes).map(drop)));
    worst.note(peak, bytes.len());
    let bound = ALLOC_PER_INPUT_BYTE * bytes.len() + ALLOC_SLACK;
    if peak > bound {
        return Err(format!("decoding {} bytes allocated {peak} bytes, more than the bound {bound}", bytes.len()));
    }
    Ok(verdict)
}

/// Whether `e` is an error of the payload decoder, the only kind a payload inside a valid
/// envelope may produce. Every variant is listed so that a new one needs a decision here.
fn is_payload_error(e: &GalleryError) -> bool {
    match e {
        GalleryError::Malformed(_)
        | GalleryError::AbsurdCount { .. }
        | GalleryError::Member(_)
        | GalleryError::Embedding(_)
        | GalleryError::Threshold(_)
        | GalleryError::DuplicateMember(_)
        | GalleryError::DimMismatch { .. } => true,
        // the envelope is valid (sealed), so none of its errors may appear
        GalleryError::BadMagic
        | GalleryError::UnsupportedVersion { .. }
        | GalleryError::Truncated { .. }
        | GalleryError::TrailingBytes(_)
        | GalleryError::Checksum { .. }
        | GalleryError::Unsigned
        | GalleryError::BadSignature
        | GalleryError::UntrustedKey { .. } => false,
        // decoding never compares encoders, edits a gallery or touches files
        GalleryError::UnknownMember(_)
        | GalleryError::EncoderMismatch { .. }
        | GalleryError::PreprocessingMismatch { .. }
        | GalleryError::Rollback { .. }
        | GalleryError::TooLarge { .. }
        | GalleryError::Io { .. } => false,
    }
}

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus").join(name)).unwrap()
}

fn payload(file: &[u8]) -> Vec<u8> {
    let n = u32::from_le_bytes(file[10..14].try_into().unwrap()) as usize;
    file[14..14 + n].to_vec()
}

#[test]
fn the_allocation_counter_counts() {
    let (_, peak) = peak_during(|| drop(std::hint::black_box(vec![1u8; 100_000])));
    assert!((100_000..100_000 + 1024).contains(&peak), "{peak}");
    // a reallocation counts old and new buffers, as a copy would hold them
    let (_, peak) = peak_during(|| {
        let mut v = std::hint::black_box(Vec::<u8>::with_capacity(1000));
        v.reserve_exact(3000);
        drop(std::hint::black_box(v));
    });
    assert_eq!(peak, 4000);
    assert_eq!(peak_during(|| ()).1, 0);
}

#[test]
fn corpus_inputs_decode() {
    assert!(gallery_file::decode(&corpus("gallery_v2.bin")).is_ok());
    for c in ["card_default.json", "card_sface.json"] {
        ModelCard::from_json(std::str::from_utf8(&corpus(c)).unwrap()).unwrap();
    }
}

fn runner() -> TestRunner {
    // no failure file: a failing input is printed, and becomes a corpus file and a case by hand
    TestRunner::new(Config { cases: 512, failure_persistence: None, ..Config::default() })
}

#[test]
fn random_bytes_never_panic() {
    let strategy = proptest::collection::vec(any::<u8>(), 0..512);
    let worst = Worst::default();
    runner()
        .run(&strategy, |bytes| {
            let mut with_magic = b"FGGALRY\n\x02\x00".to_vec();
            with_magic.extend_from_slice(&bytes);
            for input in [bytes.clone(), with_magic, seal(&bytes)] {
                decode_bounded(&input, &worst, |_| true).map_err(TestCaseError::fail)?;
            }
            Ok(())
        })
        .unwrap();
    worst.report("random bytes");
}

#[test]
fn mutated_payloads_are_typed_errors() {
    let good = payload(&corpus("gallery_v2.bin"));
    let strategy = (proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), any::<usize>());
    let worst = Worst::default();
    runner()
        .run(&strategy, |(flips, cut)| {
            let mut p = good.clone();
            for (i, b) in flips {
                let i = i % p.len();
                p[i] = b;
            }
            let cut = cut % (p.len() + 1);
            for input in [seal(&p), seal(&p[..cut])] {
                let typed = decode_bounded(&input, &worst, |r| r.as_ref().err().is_none_or(is_payload_error))
                    .map_err(TestCaseError::fail)?;
                prop_assert!(typed, "not a payload error: {:?}", gallery_file::decode(&input).err());
            }
            Ok(())
        })
        .unwrap();
    worst.report("mutated payloads");
}

/// The densest valid gallery (1-d embeddings, 1-byte names, short ids) allocates the most per
/// input byte; a file that declares as many members as fit and then breaks at the first one
/// allocates its reservations and nothing else. Both stay within the bound.
#[test]
fn densest_galleries_stay_within_the_allocation_bound() {
    let dim = EmbeddingDim::new(1).unwrap();
    let mut g =
        facegate_shared::Gallery::new(facegate_shared::synthetic::binding(b"dense"), dim, Threshold::new(0.5).unwrap());
    let unit = facegate_shared::Embedding::new(vec![1.0]).unwrap();
    // ids as short as they can be: 1 character for the first 65, 2 for the next 65², then 3
    const ID_CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.";
    let short_id = |mut i: usize| {
        let mut id = Vec::new();
        loop {
            id.push(ID_CHARS[i % ID_CHARS.len()]);
            i /= ID_CHARS.len();
            if i == 0 {
                break;
            }
            i -= 1;
        }
        String::from_utf8(id).unwrap()
    };
    for i in 0..20_000 {
        let id = MemberId::new(&short_id(i)).unwrap();
        let m =
            Member { id, name: "x".into(), validity: Validity::OPEN, enrolled_at: 0, embeddings: vec![unit.clone()] };
        g.add(m).unwrap();
    }
    let file = gallery_file::encode(&g, None).unwrap();
    let worst = Worst::default();
    assert!(decode_bounded(&file, &worst, |r| r.is_ok()).unwrap(), "valid dense gallery decodes");
    worst.report("densest valid gallery");
    // break the first member's id ("0" becomes "/"): the reservations are made, then it fails
    let mut p = payload(&file);
    let first = [1, b'0', 1, b'x', 0, 0, 1, 0, 1]; // id "0", name "x", open, enrolled 0, 1 embedding
    let at = p.windows(first.len()).position(|w| w == first).unwrap();
    p[at + 1] = b'/';
    let broken = seal(&p);
    let worst = Worst::default();
    assert!(decode_bounded(&broken, &worst, |r| matches!(r, Err(GalleryError::Member(_)))).unwrap());
    worst.report("densest gallery broken at its first member");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_are_rejected_not_panicking(i in any::<usize>(), b in any::<u8>(), cut in any::<usize>()) {
        let mut f = corpus("gallery_v2.bin");
        let idx = i % f.len();
        let changed = f[idx] != b;
        f[idx] = b;
        let r = gallery_file::decode(&f);
        // The CRC or the signature covers every byte: any change is caught.
        if changed { prop_assert!(r.is_err() || r.unwrap().signer.is_none()); }
        // and a reader that trusts the corpus's signer never accepts a changed file
        let trusted = [SigningKey::from_bytes(&[42; 32]).verifying_key()];
        prop_assert_eq!(gallery_file::decode_trusted(&f, &trusted).is_ok(), !changed);
        f.truncate(cut % (f.len() + 1));
        decode_bounded(&f, &Worst::default(), |_| true).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_cards_never_panic(i in any::<usize>(), b in 0x20u8..0x7f, cut in any::<usize>(), which in 0..2usize) {
        let mut c = corpus(["card_default.json", "card_sface.json"][which]);
        let idx = i % c.len();
        c[idx] = b;
        if let Ok(s) = std::str::from_utf8(&c) { let _ = ModelCard::from_json(s); }
        c.truncate(cut % (c.len() + 1));
        if let Ok(s) = std::str::from_utf8(&c) { let _ = ModelCard::from_json(s); }
    }

    #[test]
    fn random_text_cards_never_panic(s in "\\PC{0,400}") {
        let _ = ModelCard::from_json(&s);
    }
}
