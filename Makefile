# Facegate: two commands for a fresh machine, `make demo` and `make test`.
# Both start with `make setup`, which installs what is missing and is a no-op afterwards.

SHELL := /bin/bash
VENV := $(CURDIR)/.venv
# tch builds against the libtorch inside the venv's torch wheel.
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(VENV)/bin:$(HOME)/.cargo/bin:$(PATH)
AARCH64 := aarch64-unknown-linux-gnu

.PHONY: setup setup-frontdesk frontdesk demo test test-host test-aarch64 cross package bench lint

setup:
	@scripts/setup.sh

# A front-desk PC or a server: `facegate` (enrolment, galleries, matching, evaluation) and the door
# unit, without the 4.7 GB torch venv; `facegate-train` is not built.
setup-frontdesk:
	@FRONTDESK=1 scripts/setup.sh

frontdesk: setup-frontdesk
	cargo build --release -p facegate-host
	cargo build --release -p facegate-device
	@ls -l target/release/facegate target/release/facegate-door

demo: setup
	@scripts/demo.sh

test: setup test-host test-aarch64

test-host:
	cargo test --workspace --all-targets

# The door unit's crates, built for aarch64 and run under qemu-aarch64 (runner in .cargo/config.toml).
# Without the camera feature (nokhwa's bindgen and mozjpeg builds add minutes and no tests run
# against a camera under qemu); `make cross` builds the camera in.
test-aarch64:
	cargo test --target $(AARCH64) -p facegate-shared -p facegate-face -p facegate-frames -p facegate-device --no-default-features

# The door unit for a Raspberry-Pi-class board; the stripped copy is what gets installed.
cross: setup
	cargo build --release --target $(AARCH64) -p facegate-device --bin facegate-door
	aarch64-linux-gnu-strip -o target/$(AARCH64)/release/facegate-door.stripped target/$(AARCH64)/release/facegate-door
	@ls -l target/$(AARCH64)/release/facegate-door target/$(AARCH64)/release/facegate-door.stripped

# Debian packages of the door unit (release builds, stripped, camera included) for a Raspberry Pi
# (arm64) and a PC (amd64), checked by lintian. Install: device/deploy/README.md.
package: setup
	cargo deb -p facegate-device -o target/packages/
	cargo deb -p facegate-device --target $(AARCH64) -o target/packages/
	lintian --fail-on error target/packages/facegate-door_*_amd64.deb target/packages/facegate-door_*_arm64.deb
	@ls -l target/packages/*.deb

bench: setup
	cargo bench --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
