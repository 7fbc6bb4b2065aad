//! Gallery encode/decode (save/load without the disk) at 100,000 members × 1 embedding × 128-d.
//! Run: `cargo bench -p facegate-shared --bench gallery`.

use criterion::{criterion_group, criterion_main, Criterion};
use facegate_shared::synthetic::{binding, random_unit, SplitMix64};
use facegate_shared::{gallery_file, EmbeddingDim, Gallery, Member, MemberId, SigningKey, Threshold, Validity};
use std::time::Duration;

fn big_gallery(n: usize) -> Gallery {
    let dim = EmbeddingDim::new(128).unwrap();
    let mut g = Gallery::new(binding(b"bench"), dim, Threshold::new(0.9).unwrap());
    let mut rng = SplitMix64::new(1);
    for i in 0..n {
        g.add(Member {
            id: MemberId::new(&format!("m{i}")).unwrap(),
            name: format!("Member {i}"),
            validity: Validity::OPEN,
            enrolled_at: 1_700_000_000,
            embeddings: vec![random_unit(&mut rng, dim)],
        })
        .unwrap();
    }
    g
}

fn gallery(c: &mut Criterion) {
    let g = big_gallery(100_000);
    let key = SigningKey::from_bytes(&[1; 32]);
    let bytes = gallery_file::encode(&g, Some(&key)).unwrap();
    eprintln!("gallery of 100000 members: {} bytes, {:.1} bytes/member", bytes.len(), bytes.len() as f64 / 1e5);
    let mut grp = c.benchmark_group("gallery_100k");
    grp.sample_size(10).measurement_time(Duration::from_secs(5));
    grp.bench_function("encode_signed", |b| b.iter(|| gallery_file::encode(&g, Some(&key)).unwrap()));
    grp.bench_function("decode_verify", |b| b.iter(|| gallery_file::decode(&bytes).unwrap()));
    let trusted = [key.verifying_key()];
    grp.bench_function("decode_trusted", |b| b.iter(|| gallery_file::decode_trusted(&bytes, &trusted).unwrap()));
    grp.finish();
}

criterion_group!(benches, gallery);
criterion_main!(benches);
