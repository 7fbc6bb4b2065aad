#!/usr/bin/env bash
# The OpenCV/onnxruntime peer figures for BENCHMARKS.md, in a throwaway venv under .cache/ (never a
# dependency of the product). Usage: scripts/peer_bench.sh [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/peer-venv
if ! "$VENV/bin/python" -c "import cv2, onnxruntime" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q onnxruntime==1.31.1 opencv-python-headless==5.0.0.93 numpy
fi
"$VENV/bin/python" scripts/peer_bench.py "${1:-50}"
