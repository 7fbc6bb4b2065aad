//! Helpers shared by the gallery-format tests.

use ed25519_dalek::Signer;
use facegate_shared::gallery_file::{GALLERY_FORMAT_VERSION, GALLERY_MAGIC};
use facegate_shared::SigningKey;

/// The current envelope, unsigned, with a correct CRC around `payload`, so that mutated payloads
/// reach the payload decoder instead of failing the checksum.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    seal_with(payload, None)
}

/// The current envelope around `payload` with a correct CRC and, when `key` is given, a valid
/// ed25519 signature by it: whatever the payload holds, the envelope checks pass.
pub fn seal_with(payload: &[u8], key: Option<&SigningKey>) -> Vec<u8> {
    let mut out = GALLERY_MAGIC.to_vec();
    out.extend_from_slice(&GALLERY_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    match key {
        None => out.push(0),
        Some(k) => {
            let sig = k.sign(&out);
            out.push(1);
            out.extend_from_slice(k.verifying_key().as_bytes());
            out.extend_from_slice(&sig.to_bytes());
        }
    }
    out
}
