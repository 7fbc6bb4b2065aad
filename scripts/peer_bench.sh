#!/usr/bin/env bash
# Facegate's face-pipeline criterion bench and the OpenCV/onnxruntime peer on the same models and
# frame, one after the other on the same pinned core, then the ratios (Facegate / peer). The peer
# runs in a throwaway venv under .cache/ (never a dependency of the product).
# Usage: scripts/peer_bench.sh [ITERATIONS]   (CORE=1 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/peer-venv
if ! "$VENV/bin/python" -c "import cv2, onnxruntime" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q onnxruntime==1.31.1 opencv-python-headless==5.0.0.93 numpy
fi
CORE=${CORE:-1}
taskset -c "$CORE" cargo bench -p facegate-face --bench pipeline
taskset -c "$CORE" "$VENV/bin/python" scripts/peer_bench.py "${1:-50}" target/criterion
