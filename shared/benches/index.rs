//! 1:N search at 1k / 10k / 100k members × 128-d, one query at a time, one thread, every index.
//! Seeded synthetic unit vectors. Run: `cargo bench -p facegate-shared --bench index`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use facegate_shared::synthetic::{random_matrix, random_unit, SplitMix64};
use facegate_shared::{EmbeddingDim, IndexKind, LinfaAlgorithm};
use std::time::Duration;

fn search(c: &mut Criterion) {
    let dim = EmbeddingDim::new(128).unwrap();
    let mut g = c.benchmark_group("search_top1");
    g.sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    for n in [1_000usize, 10_000, 100_000] {
        for &kind in IndexKind::ALL {
            // the trees take tens of seconds to build at 100k and are not competitive in 128-d
            if n == 100_000 && matches!(kind, IndexKind::Linfa(LinfaAlgorithm::KdTree | LinfaAlgorithm::BallTree)) {
                continue;
            }
            let index = kind.build(random_matrix(42, n, dim)).unwrap();
            let mut rng = SplitMix64::new(7);
            let queries: Vec<_> = (0..64).map(|_| random_unit(&mut rng, dim)).collect();
            let mut i = 0;
            g.bench_with_input(BenchmarkId::new(kind.name(), n), &n, |b, _| {
                b.iter(|| {
                    i = (i + 1) % queries.len();
                    index.search(&queries[i], 1).unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
