//! The matching service's benchmark (issue: PostgreSQL + pgvector): synthetic clustered
//! identities with held-out queries, in-process exact search vs PostgreSQL exact vs HNSW at
//! several `ef_search`, load and index build times, re-sync, and `facegate serve` requests per
//! second on loopback. Prints one JSON object. Run through `scripts/matching_bench.sh` (release
//! build); PostgreSQL 16 + pgvector is started by the tests' harness as an unprivileged user.
//!
//! `matching_bench [EMBEDDINGS] [SAMPLES_PER_IDENTITY] [QUERIES] [--no-http] [--no-resync]`

use facegate_face::{paths, Encoder, TractEncoder};
use facegate_serve::pg::{self, HnswBuild, SearchMode};
use facegate_shared::synthetic::clustered_gallery;
use facegate_shared::{gallery_file, keys, Date, Embedding, EmbeddingDim, Gallery, Matcher};
use facegate_tests::pg::PgServer;
use facegate_tests::root;
use facegate_tests::serve::Server;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn lat(v: &mut [f64]) -> Value {
    json!({"n": v.len(), "p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99)})
}

/// Runs `work(client, query_index)` from `clients` threads over `n` queries; latencies in ms.
fn concurrent<F: Fn(usize, usize) + Sync>(clients: usize, n: usize, work: F) -> (Vec<f64>, f64) {
    let t = Instant::now();
    let lats: Vec<Vec<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|c| {
                let work = &work;
                s.spawn(move || {
                    (c..n)
                        .step_by(clients)
                        .map(|i| {
                            let t = Instant::now();
                            work(c, i);
                            t.elapsed().as_secs_f64() * 1e3
                        })
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (lats.concat(), n as f64 / t.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let http = !std::env::args().any(|a| a == "--no-http");
    let resync = !std::env::args().any(|a| a == "--no-resync");
    let embeddings: usize = args.first().map_or(100_000, |a| a.parse().unwrap());
    let samples: usize = args.get(1).map_or(5, |a| a.parse().unwrap());
    let nq: usize = args.get(2).map_or(1000, |a| a.parse().unwrap());
    let identities = embeddings / samples;
    let sface = TractEncoder::load(&root().join("models").join(paths::SFACE)).unwrap();
    let threshold = sface.card().threshold.as_ref().unwrap().distance;
    let t = Instant::now();
    let (g0, queries) = clustered_gallery(11, identities, samples, EmbeddingDim::new(128).unwrap(), 0.5);
    // the same members, bound to SFace (so `facegate serve` loads a real encoder) at SFace's threshold
    let mut g = Gallery::new(sface.card().binding(), g0.dim, threshold);
    for m in g0.members() {
        g.add(m.clone()).unwrap();
    }
    g.revision = 1;
    let queries: Vec<Embedding> = queries.into_iter().take(nq).collect();
    eprintln!(
        "{identities} identities x {samples} = {embeddings} embeddings generated in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut out = json!({"embeddings": embeddings, "identities": identities, "samples": samples, "queries": queries.len(),
                         "dim": 128, "threshold": threshold.get()});

    // in-process exact (the service's embedded index)
    let t = Instant::now();
    let matcher = Matcher::fastest(g.clone()).unwrap();
    out["memory_build_ms"] = json!(t.elapsed().as_secs_f64() * 1e3);
    let exact: Vec<Vec<(String, f32)>> = queries
        .iter()
        .map(|q| matcher.rank(q, 10).unwrap().into_iter().map(|r| (r.member.as_str().to_owned(), r.distance)).collect())
        .collect();
    for clients in [1, 2] {
        let (mut l, qps) = concurrent(clients, queries.len(), |_, i| {
            std::hint::black_box(matcher.rank(&queries[i], 10).unwrap());
        });
        out[format!("memory_exact_{clients}_clients")] = json!({"latency": lat(&mut l), "qps": qps});
    }

    // PostgreSQL
    let server = PgServer::start();
    let url = server.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = keys::generate_signing_key().unwrap();
    let bytes = gallery_file::encode(&g, Some(&key)).unwrap();
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    let mut c = rt.block_on(pg::connect(&url)).unwrap();
    let r = rt.block_on(pg::sync(&mut c, &g, sha, HnswBuild::default(), false)).unwrap();
    out["pg_sync"] = json!(format!("{r:?}"));
    if resync {
        let mut g2 = g.clone();
        g2.revision = 2;
        let bytes2 = gallery_file::encode(&g2, Some(&key)).unwrap();
        let r2 =
            rt.block_on(pg::sync(&mut c, &g2, Sha256::digest(&bytes2).into(), HnswBuild::default(), false)).unwrap();
        out["pg_resync"] = json!(format!("{r2:?}"));
    }
    let meta = rt.block_on(pg::loaded(&c)).unwrap().unwrap();
    let today = Date::today();
    let mut modes = vec![("exact".to_owned(), SearchMode::Exact)];
    for ef in [20, 40, 100, 200] {
        modes.push((format!("hnsw_ef{ef}"), SearchMode::Hnsw { ef_search: ef }));
    }
    for (name, mode) in modes {
        let qn = if mode == SearchMode::Exact { queries.len().min(200) } else { queries.len() };
        let mut hits = Vec::with_capacity(qn);
        let mut l1 = Vec::with_capacity(qn);
        for q in &queries[..qn] {
            let t = Instant::now();
            hits.push(rt.block_on(pg::search(&mut c, &meta, q, 10, false, today, mode)).unwrap().1);
            l1.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (mut r1, mut r10, mut agree) = (0usize, 0usize, 0usize);
        for (h, e) in hits.iter().zip(&exact) {
            r1 += usize::from(h.first().map(|x| &x.member) == e.first().map(|x| &x.0));
            r10 += h.iter().filter(|x| e.iter().any(|(m, _)| m == &x.member)).count();
            let dec = |m: Option<(&String, f32)>| m.filter(|(_, d)| threshold.accepts(*d)).map(|(m, _)| m.clone());
            agree +=
                usize::from(dec(h.first().map(|x| (&x.member, x.distance))) == dec(e.first().map(|x| (&x.0, x.1))));
        }
        // two clients, each on its own connection
        let url2 = url.clone();
        let (mut l2, qps2) = {
            let conns: Vec<_> =
                (0..2).map(|_| std::sync::Mutex::new(rt.block_on(pg::connect(&url2)).unwrap())).collect();
            concurrent(2, qn, |cl, i| {
                let mut cc = conns[cl].lock().unwrap();
                std::hint::black_box(
                    rt.block_on(pg::search(&mut cc, &meta, &queries[i], 10, false, today, mode)).unwrap(),
                );
            })
        };
        out[format!("pg_{name}")] = json!({
            "latency_1_client": lat(&mut l1), "latency_2_clients": lat(&mut l2), "qps_2_clients": qps2,
            "recall_at_1": r1 as f64 / qn as f64, "recall_at_10": r10 as f64 / (10 * qn) as f64,
            "decision_agreement": agree as f64 / qn as f64, "queries": qn,
        });
        eprintln!("{name}: {}", out[format!("pg_{name}")]);
    }
    drop(c);
    drop(server);

    if http {
        let dir = tempfile::tempdir().unwrap();
        let gpath = dir.path().join("g.fgg");
        std::fs::write(&gpath, &bytes).unwrap();
        let pubk = dir.path().join("k.pub");
        keys::write_key_pair(&key, &dir.path().join("k.secret"), &pubk).unwrap();
        let srv = Server::start(&[
            "--gallery",
            gpath.to_str().unwrap(),
            "--trust",
            pubk.to_str().unwrap(),
            "--no-auth",
            "--quiet",
        ]);
        let fp = sface.card().binding().onnx.to_string();
        let bodies: Arc<Vec<String>> = Arc::new(
            queries
                .iter()
                .map(|q| json!({"embedding": q.as_slice(), "encoder": fp, "top_k": 10}).to_string())
                .collect(),
        );
        let photo = json!({"photo": base64_photo(), "top_k": 5}).to_string();
        let url = srv.url("/v1/search");
        for clients in [1, 2] {
            let agents: Vec<ureq::Agent> = (0..clients).map(|_| ureq::Agent::new()).collect();
            let (mut l, qps) = concurrent(clients, bodies.len(), |c, i| {
                let r = agents[c].post(&url).set("Content-Type", "application/json").send_string(&bodies[i]).unwrap();
                std::hint::black_box(r.into_string().unwrap());
            });
            out[format!("http_embedding_{clients}_clients")] = json!({"latency": lat(&mut l), "rps": qps});
            let n = 40;
            let (mut l, qps) = concurrent(clients, n, |c, _| {
                let r = agents[c].post(&url).set("Content-Type", "application/json").send_string(&photo).unwrap();
                std::hint::black_box(r.into_string().unwrap());
            });
            out[format!("http_photo_{clients}_clients")] = json!({"latency": lat(&mut l), "rps": qps});
        }
        srv.stop();
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

fn base64_photo() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(facegate_tests::orl_photo("s2", 5)).unwrap())
}
