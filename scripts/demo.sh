#!/usr/bin/env bash
# The main job, end to end. Until every part exists it says what it will do.
set -euo pipefail
cd "$(dirname "$0")/.."
cat <<'TXT'
Facegate demo (work in progress). When complete, `make demo` will:
  1. train the small encoder on the ORL training people (FAST=1 reuses models/facegate-default.onnx)
  2. export it to ONNX with the tch/tract parity check
  3. evaluate it and SFace on the held-out ORL people (ROC, EER, TAR@FAR, plots)
  4. enrol the held-out people from 3 photos each into a signed gallery
  5. run facegate-door on a replay of their other photos plus people never enrolled (dry-run lock)
  6. print granted/denied counts, false accepts/rejects, median latency, and where the outputs are
TXT
echo "Assets are in place: $(find data/orl -name '*.pgm' | wc -l) ORL images, models: $(ls models/*.onnx | xargs -n1 basename | tr '\n' ' ')"
