//! Bounded fuzzing in the normal test suite (cargo-fuzz needs nightly, which CI does not have):
//! the gallery decoder and the model-card parser get random and mutated inputs, seeded from the
//! committed corpus in `tests/fuzz_corpus/`. Each must return a value or a typed error: no panic,
//! no allocation beyond what the input's length allows (counts are checked against the bytes
//! left before anything is allocated, so a run finishing quickly under the default allocator is
//! the check). Any crash found becomes a file in the corpus and a case below.

use facegate_shared::{gallery_file, ModelCard};
use proptest::prelude::*;

mod common;
use common::seal;

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus").join(name)).unwrap()
}

#[test]
fn corpus_inputs_decode() {
    assert!(gallery_file::decode(&corpus("gallery_v1.bin")).is_ok());
    for c in ["card_default.json", "card_sface.json"] {
        ModelCard::from_json(std::str::from_utf8(&corpus(c)).unwrap()).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = gallery_file::decode(&bytes);
        let mut with_magic = b"FGGALRY\n\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = gallery_file::decode(&with_magic);
    }

    #[test]
    fn mutated_payloads_are_typed_errors(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                         cut in any::<usize>()) {
        let good = corpus("gallery_v1.bin");
        let n = u32::from_le_bytes(good[10..14].try_into().unwrap()) as usize;
        let mut payload = good[14..14 + n].to_vec();
        for (i, b) in flips {
            let i = i % payload.len();
            payload[i] = b;
        }
        let _ = gallery_file::decode(&seal(&payload));
        payload.truncate(cut % (payload.len() + 1));
        let _ = gallery_file::decode(&seal(&payload));
    }

    #[test]
    fn mutated_files_are_rejected_not_panicking(i in any::<usize>(), b in any::<u8>(), cut in any::<usize>()) {
        let mut f = corpus("gallery_v1.bin");
        let idx = i % f.len();
        let changed = f[idx] != b;
        f[idx] = b;
        let r = gallery_file::decode(&f);
        // The CRC or the signature covers every byte: any change is caught.
        if changed { prop_assert!(r.is_err() || r.unwrap().signer.is_none()); }
        f.truncate(cut % (f.len() + 1));
        let _ = gallery_file::decode(&f);
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
