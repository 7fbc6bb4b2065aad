#!/usr/bin/env bash
# The matching service's benchmark: in-process exact vs PostgreSQL + pgvector (exact and HNSW),
# load / index / re-sync times, and `facegate serve` requests per second on loopback, on synthetic
# clustered identities with held-out queries. Release build; prints JSON per size.
#   scripts/matching_bench.sh [EMBEDDINGS ...]     (default: 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
export LIBTORCH_USE_PYTORCH=1
cargo build --release -q -p facegate-host --bin facegate
cargo build --release -q -p facegate-tests --example matching_bench
for n in "${@:-100000}"; do
  extra=()
  [ "$n" -gt 200000 ] && extra=(--no-http --no-resync)
  target/release/examples/matching_bench "$n" 5 1000 "${extra[@]}"
done
