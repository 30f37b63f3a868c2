#!/usr/bin/env bash
# Runs every test of the project, as README.md says: formatting, lints, the whole workspace's
# tests (unit, property, end-to-end, browser), and the board images for ESP32-C3 and C6
# (firmware/esp32/build.sh, which prints their sizes), which build the protocol crate and the
# device core without std for the RISC-V targets.
#
# It installs what it needs when missing (Debian packages; run as root or with sudo): chromium
# for the browser tests (driven over the DevTools protocol); firmware/esp32/build.sh installs
# Debian's rustc-web toolchain for the board builds (rustup's cannot build `core` for them).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# One build from a clean clone: incremental compilation would only add 1.2 GB to target/.
export CARGO_INCREMENTAL=0

# The builds below take about 3.1 GB (target/ 1.7 GB, firmware/esp32/target 1.4-1.5 GB) and the
# Debian packages some more: say so at once rather than fail half an hour in with "No space left".
free_mb=$(df -Pm . 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
if [ -n "$free_mb" ] && [ "$free_mb" -lt 4096 ]; then
  printf 'warning: %s MB free here; the test command needs about 4 GB for its builds\n' "$free_mb" >&2
fi

if ! command -v chromium >/dev/null 2>&1; then
  say "installing chromium"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

say "format"
cargo fmt --all -- --check

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "tests"
mkdir -p target
cargo test --workspace --locked 2>&1 | tee target/test-output.log

# The board images below build `shared` and the device core (`firmware`, no default features:
# no std) for riscv32imc-unknown-none-elf (ESP32-C3) and riscv32imac (C6): that is the no_std
# check of both crates, with the same Debian toolchain.
say "board images (ESP32-C3, ESP32-C6) and the board link's host tests"
firmware/esp32/build.sh

say "all tests passed"
# One closing line with the totals of every cargo test binary above.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' target/test-output.log
