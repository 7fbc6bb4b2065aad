//! Seeded synthetic embeddings and encoder bindings for benchmarks, tests and `facegate bench search`.

use crate::{
    ChannelOrder, Embedding, EmbeddingDim, EmbeddingMatrix, EncoderBinding, Fingerprint, Preprocessing,
    ALIGNMENT_ARCFACE_5PT,
};

/// SplitMix64: a tiny seeded generator (not for cryptography).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n.max(1)
    }
}

/// A random direction on the unit sphere.
pub fn random_unit(rng: &mut SplitMix64, dim: EmbeddingDim) -> Embedding {
    loop {
        let v: Vec<f32> = (0..dim.get()).map(|_| rng.normal()).collect();
        if let Ok(e) = Embedding::new(v) {
            return e;
        }
    }
}

/// `n` random unit rows.
pub fn random_matrix(seed: u64, n: usize, dim: EmbeddingDim) -> EmbeddingMatrix {
    let mut rng = SplitMix64::new(seed);
    let mut m = EmbeddingMatrix::with_capacity(dim, n);
    for _ in 0..n {
        m.push(&random_unit(&mut rng, dim)).expect("same dim");
    }
    m
}

/// A binding for tests and benches: ONNX fingerprint = SHA-256 of `tag`, grey 64×64, mean and
/// std 127.5, `arcface-5pt` alignment, no extra inputs (the default encoder's preprocessing).
pub fn binding(tag: &[u8]) -> EncoderBinding {
    EncoderBinding {
        onnx: Fingerprint::of_bytes(tag),
        preprocessing: Preprocessing {
            width: 64,
            height: 64,
            channels: ChannelOrder::Grey,
            mean: vec![127.5],
            std: vec![127.5],
            alignment: ALIGNMENT_ARCFACE_5PT.into(),
            extra_inputs: Vec::new(),
        },
    }
}

/// Synthetic clustered identities for index tests and benchmarks: `identities` members, each a
/// random unit centre with `samples` enrolled embeddings `normalise(centre + noise · n)` where `n`
/// has per-component variance `1/dim` (so `|n| ≈ 1`); `noise = 0.5` puts same-identity
/// distances near 0.63 and different identities near √2. Returns the gallery (ids `m0`, `m1`, …,
/// every 10th member's membership suspended) and one held-out query per identity, in id order.
pub fn clustered_gallery(
    seed: u64,
    identities: usize,
    samples: usize,
    dim: EmbeddingDim,
    noise: f32,
) -> (crate::Gallery, Vec<Embedding>) {
    let mut rng = SplitMix64::new(seed);
    let threshold = crate::Threshold::new(1.0).expect("valid threshold");
    let mut g = crate::Gallery::new(binding(b"synthetic clustered identities"), dim, threshold);
    let scale = noise / (dim.get() as f32).sqrt();
    let mut queries = Vec::with_capacity(identities);
    for i in 0..identities {
        let c = random_unit(&mut rng, dim);
        let mut sample = || {
            let v: Vec<f32> = c.as_slice().iter().map(|x| x + scale * rng.normal()).collect();
            Embedding::new(v).expect("non-zero")
        };
        let embeddings: Vec<Embedding> = (0..samples).map(|_| sample()).collect();
        queries.push(sample());
        let validity = crate::Validity { active: i % 10 != 9, ..crate::Validity::OPEN };
        let id = crate::MemberId::new(&format!("m{i}")).expect("valid id");
        g.add(crate::Member { id, name: format!("Member {i}"), validity, enrolled_at: 0, embeddings })
            .expect("unique ids");
    }
    (g, queries)
}
