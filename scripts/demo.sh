#!/usr/bin/env bash
# The main job, end to end, as far as it is built. FAST=1 reuses the committed trained encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
OUT=demo/out
mkdir -p "$OUT"
# the same build `make test` uses (one feature set, so neither rebuilds the other's dependencies)
cargo build -q --workspace --all-targets
DOOR=target/debug/facegate-door
FG=target/debug/facegate          # front desk: enrol, evaluate, calibrate (no libtorch)
FT=target/debug/facegate-train    # training and ONNX export (libtorch)

if [ "${FAST:-0}" = "1" ]; then
  echo "== 1-2. FAST=1: using the committed models/facegate-default.onnx"
  MODEL=models/facegate-default.onnx
  SPLITS=models/facegate-default.splits.json
else
  echo "== 1. transfer learning: SFace's layers up to conv_14_relu (frozen) + a fresh head trained on"
  echo "      the ORL training people, distilling SFace's embedding (several minutes on 2 cores)"
  SFACE=models/face_recognition_sface_2021dec.onnx
  # --freeze: the kept layers, as graft counts them (81); --trunk-views 8: the frozen layers run
  # once on 8 views of each training face and only the head trains on the cached maps
  TRUNK=$("$FT" graft --from "$SFACE" --cut conv_14_relu --head gdc -o "$OUT/sface-conv14-head.onnx" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["trunk_layers"])')
  "$FT" train --data data/orl -o "$OUT/train" --val-people 8 --test-people 8 \
    --init-from "$OUT/sface-conv14-head.onnx" --freeze "$TRUNK" --trunk-views 8 \
    --teacher "$SFACE" --distill embedding --distill-weight 4 --pretrain-steps 300 --steps 400
  echo "== 2. export to ONNX with the tch/tract parity check"
  "$FT" export "$OUT/train/best.safetensors" -o "$OUT/facegate-demo.onnx"
  MODEL="$OUT/facegate-demo.onnx"
  SPLITS="$OUT/train/splits.json"
  "$FG" calibrate --model "$MODEL" --data data/orl --splits "$SPLITS" --split val --far 1e-3
fi

echo "== 3. evaluate it and SFace on the held-out ORL test people"
"$FG" eval --model "$MODEL" --data data/orl --splits "$SPLITS" --split test --out "$OUT/eval-default"
# the card's held-out figure (measured by the trainer in tch) against this evaluation (tract)
python3 - "$MODEL" "$OUT/eval-default/eval.json" <<'PY'
import json, pathlib, sys
card = json.load(open(pathlib.Path(sys.argv[1]).with_suffix(".card.json")))
c, e = (card.get("metrics") or {}).get("test_eer"), json.load(open(sys.argv[2]))["eer"]
if c is None:
    print(f"  held-out test EER: this evaluation {e * 100:.2f} % (the card records none)")
else:
    same = "the same" if abs(c - e) <= 0.005 else "DIFFERENT (more than 0.5 pp apart)"
    print(f"  held-out test EER: card {c * 100:.2f} %, this evaluation {e * 100:.2f} %: {same}")
PY
"$FG" eval --model models/face_recognition_sface_2021dec.onnx --data data/orl --splits "$SPLITS" --split test --out "$OUT/eval-sface"

# Enrolled: the first half of the held-out test people; never enrolled: the other half. Neither
# half was seen in training or in threshold calibration.
mapfile -t TEST < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["test"]))' "$SPLITS")
HALF=$(( ${#TEST[@]} / 2 ))
MEMBERS=("${TEST[@]:0:$HALF}")
STRANGERS=("${TEST[@]:$HALF}")

echo "== 4. enrol ${MEMBERS[*]} from photos 1-3 each into a signed gallery"
rm -rf "$OUT/door" && mkdir -p "$OUT/door/frames" "$OUT/door/inbox"
"$FG" keys init --secret "$OUT/door/facegate.secret" --public "$OUT/door/facegate.pub" >/dev/null
for p in "${MEMBERS[@]}"; do
  "$FG" enroll --model "$MODEL" --gallery "$OUT/door/inbox/gallery.fgg" --key "$OUT/door/facegate.secret" \
    --id "$p" --name "Member $p" data/orl/"$p"/{1,2,3}.pgm
done
printf '%s\n' "${MEMBERS[@]}" > "$OUT/door/members.txt"
"$FG" gallery inspect "$OUT/door/inbox/gallery.fgg"

echo "== 5. facegate-door replays members' photos 4-10 and strangers' photos 1-10 (dry-run lock)"
n=0
for i in $(seq 0 $(( HALF - 1 ))); do
  for pair in "${MEMBERS[$i]}:4" "${STRANGERS[$i]:-}:1"; do
    p=${pair%%:*}; first=${pair##*:}
    [ -n "$p" ] || continue
    for k in $(seq "$first" 10); do n=$((n + 1)); cp "data/orl/$p/$k.pgm" "$(printf '%s/door/frames/%04d-%s-%s.pgm' "$OUT" "$n" "$p" "$k")"; done
  done
done
cat > "$OUT/door/door.toml" <<TOML
[model]
encoder = "$MODEL"
[gallery]
inbox = "$OUT/door/inbox/gallery.fgg"
state_dir = "$OUT/door/state"
trusted_keys = ["$OUT/door/facegate.pub"]
[source]
uri = "dir:$OUT/door/frames"
fps = 5
pace = false
[decision]
consecutive_frames = 2
[lock]
kind = "dry-run"
[log]
path = "$OUT/door/events.jsonl"
TOML
"$DOOR" check --config "$OUT/door/door.toml"
"$DOOR" run --config "$OUT/door/door.toml"

echo "== 5b. the same members and frames with SFace, the default encoder (no --model)"
S="$OUT/door-sface"
rm -rf "$S" && mkdir -p "$S/inbox" && ln -s "$PWD/$OUT/door/frames" "$S/frames"
for p in "${MEMBERS[@]}"; do
  "$FG" enroll --gallery "$S/inbox/gallery.fgg" --key "$OUT/door/facegate.secret" \
    --id "$p" --name "Member $p" data/orl/"$p"/{1,2,3}.pgm >/dev/null
done
sed -e "s|$OUT/door/inbox/gallery.fgg|$S/inbox/gallery.fgg|; s|$OUT/door/state|$S/state|; s|$OUT/door/events.jsonl|$S/events.jsonl|" \
    -e "/^\[model\]/,/^encoder/d" "$OUT/door/door.toml" > "$S/door.toml"
"$DOOR" run --config "$S/door.toml"

echo "== 6. summary (trained encoder, then SFace)"
PLOTS=("$OUT/train/learning_curves.png" "$OUT"/eval-default/*.png "$OUT"/eval-sface/*.png)
python3 scripts/demo_summary.py "$OUT/door/events.jsonl" "$OUT/door/members.txt" "$OUT/door" demo/report.html "${PLOTS[@]}" \
  "replay=SFace (default encoder):$S/events.jsonl:$S"
echo "  model $MODEL; gallery $OUT/door/inbox/gallery.fgg; event log $OUT/door/events.jsonl; evaluations $OUT/eval-*"
