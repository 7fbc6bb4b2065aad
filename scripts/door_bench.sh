#!/usr/bin/env bash
# The door's own benchmark (`facegate-door bench --json`) on camera-sized frames: 640x480 frames
# of 8 ORL people (each photo enlarged 3x on grey, as the criterion bench and the OpenCV peer
# use), a signed gallery of 4 of them, for each encoder (SFace, the ORL-trained one) and each
# detection canvas (640x480, and the door's default 320x256); stages on one thread, then the
# stream throughput on 1 and 2 threads in the same run. Then, on a second set of frames (photos
# enlarged 2x, drifting 4 px right and 2 px down per frame: a face the window can follow), SFace
# on both canvases with and without window detection (model.roi_refresh = 10; reported apart,
# as OpenCV's pipeline has no windows). Needs `make setup`; builds release
# binaries; frames made with OpenCV from the peer venv of scripts/peer_bench.sh.
# Usage: scripts/door_bench.sh [FRAMES]     Output: .cache/door-bench/*.json and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
VENV=.cache/peer-venv
if ! "$VENV/bin/python" -c "import cv2" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q onnxruntime==1.31.1 opencv-python-headless==5.0.0.93 numpy
fi
cargo build --release -q -p facegate-host -p facegate-device
FG=target/release/facegate DOOR=target/release/facegate-door
W=.cache/door-bench
rm -rf "$W" && mkdir -p "$W/frames" "$W/frames2x"
"$VENV/bin/python" - "$W/frames" "$W/frames2x" <<'PY'
import sys, cv2, numpy as np
out, out2 = sys.argv[1], sys.argv[2]
i = 0
for p in range(1, 9):
    for k in (4, 5):
        photo = cv2.imread(f"data/orl/s{p}/{k}.pgm", cv2.IMREAD_COLOR)
        face = cv2.resize(photo, (276, 336), interpolation=cv2.INTER_LINEAR)
        frame = np.full((480, 640, 3), 110, np.uint8)
        frame[70:406, 180:456] = face
        cv2.imwrite(f"{out}/s{p}-{k}.png", frame)
        face = cv2.resize(photo, (184, 224), interpolation=cv2.INTER_LINEAR)
        frame = np.full((480, 640, 3), 110, np.uint8)
        x, y = 150 + 4 * i, 60 + 2 * i
        frame[y:y + 224, x:x + 184] = face
        cv2.imwrite(f"{out2}/s{p}-{k}.png", frame)
        i += 1
PY
"$FG" keys init --secret "$W/k.secret" --public "$W/k.pub" >/dev/null
for enc in sface orl; do
  model=models/face_recognition_sface_2021dec.onnx
  [ "$enc" = orl ] && model=models/facegate-default.onnx
  for p in 1 2 3 4; do
    "$FG" enroll --model "$model" --gallery "$W/$enc.fgg" --key "$W/k.secret" --id "s$p" --name "s$p" \
      data/orl/s$p/{1,2,3}.pgm >/dev/null
  done
  variants=("640, 480|0|frames" "320, 256|0|frames")
  [ "$enc" = sface ] && variants+=("640, 480|0|frames2x" "640, 480|10|frames2x" "320, 256|0|frames2x" "320, 256|10|frames2x")
  for v in "${variants[@]}"; do
    IFS='|' read -r canvas roi frames <<< "$v"
    tag="$enc-${canvas/, /x}"; [ "$frames" = frames2x ] && tag="$tag-2x-roi$roi"
    mkdir -p "$W/$tag/inbox" && cp "$W/$enc.fgg" "$W/$tag/inbox/gallery.fgg"
    cat > "$W/$tag.toml" <<TOML
[model]
encoder = "$model"
canvas = [$canvas]
roi_refresh = $roi
[gallery]
inbox = "$W/$tag/inbox/gallery.fgg"
state_dir = "$W/$tag/state"
trusted_keys = ["$W/k.pub"]
[source]
uri = "dir:$W/$frames"
pace = false
[lock]
kind = "dry-run"
[log]
path = "$W/$tag/events.jsonl"
TOML
    "$DOOR" check --config "$W/$tag.toml" >/dev/null
    "$DOOR" bench --config "$W/$tag.toml" --frames "$N" --threads 2 --json > "$W/$tag.json"
  done
done
python3 - "$W" <<'PY'
import json, sys, glob, os
print(f"{'encoder-canvas':<22} {'detect':>8} {'window':>8} {'align':>7} {'encode':>8} {'frame':>8} {'p99':>8} {'1 thr':>8} {'2 thr':>8} {'x':>5}")
for f in sorted(glob.glob(sys.argv[1] + "/*.json")):
    j = json.load(open(f)); s = j["stream"]
    win = j.get("detect_window") or {}
    win = f"{win['median_ms']:>6.2f}ms" if win else f"{'-':>8}"
    print(f"{os.path.basename(f)[:-5]:<22} {j['detect']['median_ms']:>6.2f}ms {win} {j['align']['median_ms']:>5.2f}ms {j['encode']['median_ms']:>6.2f}ms "
          f"{j['frame_to_decision']['median_ms']:>6.2f}ms {j['frame_to_decision']['p99_ms']:>6.2f}ms {s['fps_1_thread']:>6.1f}/s {s['fps']:>6.1f}/s {s['speedup']:>5.2f}")
PY
