#!/usr/bin/env python3
"""The OpenCV / onnxruntime peer of Facegate's benchmarks, on the same models and frame.

Run by scripts/peer_bench.sh (after Facegate's criterion bench, pinned to the same core) in a
throwaway venv (onnxruntime and opencv-python-headless are
never dependencies of the product). One thread everywhere. Prints JSON: medians and p99 in ms."""
import json, statistics, sys, time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50  # argv[2]: criterion's folder, to print ratios


def timed(fn, n=N):
    fn()
    fn()
    t = []
    for _ in range(n):
        s = time.perf_counter()
        fn()
        t.append((time.perf_counter() - s) * 1e3)
    t.sort()
    return {"median_ms": round(statistics.median(t), 3), "p99_ms": round(t[min(len(t) - 1, int(0.99 * len(t)))], 3), "n": n}


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.log_severity_level = 3  # quiet: SFace keeps its initialisers among the graph inputs
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def main():
    cv2.setNumThreads(1)
    rng = np.random.default_rng(7)
    out = {"onnxruntime": ort.__version__, "opencv": cv2.__version__, "threads": 1}

    # encoders on one preprocessed input, onnxruntime
    sface = session(MODELS / "face_recognition_sface_2021dec.onnx")
    feeds = {i.name: (rng.random([1, 3, 112, 112], dtype=np.float32) * 255 if i.name == "data" else np.zeros(i.shape, np.float32))
             for i in sface.get_inputs()}
    out["sface_encode_onnxruntime"] = timed(lambda: sface.run(None, feeds))
    default = session(MODELS / "facegate-default.onnx")
    # the trained encoder's own input (its card: since 2026-12-01 SFace's 1x3x112x112, pixels 0-255)
    i = default.get_inputs()[0]
    x = rng.random([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32) * 255
    out["default_encode_onnxruntime"] = timed(lambda: default.run(None, {i.name: x}))

    # the frame face/benches/pipeline.rs uses: ORL s1/1.pgm resized to 276x336 at (180, 70) on grey 110
    face = cv2.imread(str(ROOT / "data/orl/s1/1.pgm"), cv2.IMREAD_COLOR)
    face = cv2.resize(face, (276, 336), interpolation=cv2.INTER_LINEAR)
    frame = np.full((480, 640, 3), 110, np.uint8)
    frame[70:70 + 336, 180:180 + 276] = face
    det = cv2.FaceDetectorYN.create(str(MODELS / "face_detection_yunet_2023mar.onnx"), "", (640, 480), 0.6, 0.3, 5000)
    rec = cv2.FaceRecognizerSF.create(str(MODELS / "face_recognition_sface_2021dec.onnx"), "")
    _, faces = det.detect(frame)
    assert faces is not None and len(faces) >= 1, "YuNet found no face in the bench frame"
    out["yunet_detect_640x480_opencv"] = timed(lambda: det.detect(frame))
    out["align_112_opencv"] = timed(lambda: rec.alignCrop(frame, faces[0]))
    crop = rec.alignCrop(frame, faces[0])
    out["sface_encode_opencv"] = timed(lambda: rec.feature(crop))

    def whole():
        _, f = det.detect(frame)
        return rec.feature(rec.alignCrop(frame, f[0]))

    out["frame_detect_align_sface_opencv"] = timed(whole)

    # the same at the small canvas: the frame scaled to 320x240 (OpenCV pads it to 320x256 inside,
    # as Facegate's letterbox does), landmarks scaled back, alignment from the full frame
    det_small = cv2.FaceDetectorYN.create(str(MODELS / "face_detection_yunet_2023mar.onnx"), "", (320, 240), 0.6, 0.3, 5000)

    def detect_small():
        _, f = det_small.detect(cv2.resize(frame, (320, 240), interpolation=cv2.INTER_LINEAR))
        f = f.copy()
        f[:, :14] *= 2.0
        return f

    assert detect_small() is not None
    out["yunet_detect_320x256_opencv"] = timed(detect_small)

    def whole_small():
        f = detect_small()
        return rec.feature(rec.alignCrop(frame, f[0]))

    out["frame_320x256_detect_align_sface_opencv"] = timed(whole_small)
    print(json.dumps(out, indent=2))
    if len(sys.argv) > 2:
        ratios(out, Path(sys.argv[2]))


# Facegate's criterion benchmark (face/benches/pipeline.rs) against the peer step on the same input
PAIRS = [
    ("YuNet 640x480", "detect_yunet_640x480", "yunet_detect_640x480_opencv"),
    ("YuNet 320x256", "detect_yunet_320x256", "yunet_detect_320x256_opencv"),
    ("align 112x112", "align_112", "align_112_opencv"),
    ("SFace", "encode_sface", "sface_encode_opencv"),
    ("SFace vs onnxruntime", "encode_sface", "sface_encode_onnxruntime"),
    ("SFace as shipped (no PReLU rewrite)", "encode_sface_as_shipped", "sface_encode_opencv"),
    ("default encoder vs onnxruntime", "encode_default", "default_encode_onnxruntime"),
    ("frame 640x480 + SFace", "frame_640x480_detect_align_sface", "frame_detect_align_sface_opencv"),
    ("frame 320x256 + SFace", "frame_320x256_detect_align_sface", "frame_320x256_detect_align_sface_opencv"),
]


def ratios(peer, criterion_dir):
    """Prints Facegate / peer for each pair, from criterion's medians (estimates.json, ns)."""
    print(f"\n{'step':<38} {'Facegate':>10} {'peer':>10} {'ratio':>7}")
    for label, ours, theirs in PAIRS:
        est = criterion_dir / "face" / ours / "new" / "estimates.json"
        if not est.exists() or theirs not in peer:
            print(f"{label:<38} {'(not run)':>10}")
            continue
        f = json.loads(est.read_text())["median"]["point_estimate"] / 1e6
        o = peer[theirs]["median_ms"]
        print(f"{label:<38} {f:>8.2f}ms {o:>8.2f}ms {f / o:>6.2f}x")
    for label, ours in [("frame 320x256 + default encoder", "frame_320x256_detect_align_default"),
                        ("frame 640x480 + default encoder", "frame_640x480_detect_align_default")]:
        est = criterion_dir / "face" / ours / "new" / "estimates.json"
        if est.exists():
            f = json.loads(est.read_text())["median"]["point_estimate"] / 1e6
            print(f"{label:<38} {f:>8.2f}ms {'':>10} {'':>7}")


if __name__ == "__main__":
    main()
