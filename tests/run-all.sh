#!/usr/bin/env bash
# Runs every test of the project, as README.md says: formatting, lints, the whole workspace's
# tests (unit, property, end-to-end, browser), the no_std build of the protocol crate and the
# device core for the ESP32-C3's RISC-V target, and the board images for ESP32-C3 and C6
# (firmware/esp32/build.sh, which prints their sizes).
#
# It installs what it needs when missing (Debian packages; run as root or with sudo):
#   chromium                            browser tests (driven over the DevTools protocol)
#   rustc-web, cargo-web, rust-web-src,  the RISC-V no_std build (see ../shared/ESP32.md:
#   lld-22                               rustup's toolchains cannot build `core` for it here)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/bin/rustc ] && /usr/bin/rustc --version 2>/dev/null | grep -q '^rustc 1\.9[6-9]' || need+=(rustc-web)
[ -x /usr/bin/cargo ] || need+=(cargo-web)
[ -d /usr/lib/rustlib/src/rust/library ] || need+=(rust-web-src)
[ -x /usr/bin/ld.lld-22 ] || need+=(lld-22)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

say "format"
cargo fmt --all -- --check

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "tests"
cargo test --workspace --locked

say "no_std build of shared + firmware core for riscv32imc-unknown-none-elf (Debian rustc-web)"
# Debian's toolchain first in PATH, separate target dir: the two compilers never share artifacts.
PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/riscv \
  /usr/bin/cargo build --locked --release -p shared -p firmware --no-default-features \
  --target riscv32imc-unknown-none-elf -Zbuild-std=core,alloc

say "board images (ESP32-C3, ESP32-C6) and the board link's host tests"
firmware/esp32/build.sh

say "all tests passed"
