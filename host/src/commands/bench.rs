//! `facegate bench search`: the nearest-neighbour index on synthetic unit vectors.

use anyhow::{bail, Context, Result};
use facegate_shared::synthetic::{random_matrix, random_unit, SplitMix64};
use facegate_shared::{Embedding, EmbeddingDim, IndexKind};
use std::process::ExitCode;

/// `facegate bench search`: build time, per-query latency and memory on synthetic unit vectors.
pub fn bench_search(members: usize, queries: usize, dim: usize, index: &str, k: usize) -> Result<ExitCode> {
    let kind = IndexKind::from_name(index).with_context(|| {
        format!("unknown index {index}; use brute, flat, sq8, linfa-linear, linfa-kdtree or linfa-balltree")
    })?;
    if members == 0 || queries == 0 {
        bail!("--members and --queries must be positive");
    }
    let d = EmbeddingDim::new(dim)?;
    let rows = random_matrix(42, members, d);
    let matrix_bytes = rows.heap_bytes();
    let rss_kib = || facegate_shared::rss_bytes().map(|b| b / 1024);
    let rss0 = rss_kib();
    let t = std::time::Instant::now();
    let idx = kind.build(rows)?;
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss1 = rss_kib();
    let mut rng = SplitMix64::new(7);
    let qs: Vec<Embedding> = (0..queries).map(|_| random_unit(&mut rng, d)).collect();
    let mut lat = Vec::with_capacity(queries);
    for q in &qs {
        let t = std::time::Instant::now();
        std::hint::black_box(idx.search(q, k)?);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| facegate_shared::percentile(&lat, q);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "index": kind.name(), "members": members, "dim": dim, "queries": queries, "k": k,
            "build_ms": build_ms, "query_median_ms": pct(0.5), "query_p99_ms": pct(0.99),
            "input_matrix_bytes": matrix_bytes,
            "index_rss_growth_kib": rss1.zip(rss0).map(|(a, b)| a.saturating_sub(b)),
            "peak_rss_kib": facegate_shared::peak_rss_bytes().map(|b| b / 1024),
            "threads": 1,
        }))?
    );
    Ok(ExitCode::SUCCESS)
}
