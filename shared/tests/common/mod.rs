//! Helpers shared by the gallery-format tests.

/// The envelope (version 1, unsigned) with a correct CRC around `payload`, so that mutated
/// payloads reach the payload decoder instead of failing the checksum.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = b"FGGALRY\n".to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(0);
    out
}
