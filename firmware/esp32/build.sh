#!/usr/bin/env bash
# Builds the board images for ESP32-C3 and ESP32-C6 with Debian's rustc-web (see README.md and
# ../../../shared/ESP32.md), prints each image's flash size and static RAM, and runs the host
# tests of the board's WebSocket link (link/: framing, handshake, SNTP, and wss against a rustls
# hub on 127.0.0.1).
#
#   firmware/esp32/build.sh                  # both chips, and the C3 deep-sleep variant
#   firmware/esp32/build.sh esp32c3          # one image: esp32c3, esp32c6, esp32c3-sleep or
#                                            # esp32c6-sleep (not in the default set: CI time)
#
# Each image is also copied to target/images/telemetry-board-<image> (the plain cargo path
# holds whichever was built last for that chip; the sleep variant is built first so the plain
# C3 path ends up with the always-on image).
#
# Installs what it needs when missing (Debian packages; as root or with sudo): rustc-web,
# cargo-web, rust-web-src, lld-22 (the build) and llvm-22 (llvm-size). Artifacts go to
# firmware/esp32/target (or $BOARD_TARGET_DIR). A cold run took 29 minutes on 2 cores shared
# with other builds (load average 5-6; crates are fetched from crates.io the first time); a
# warm one after a change to link/ about 3 minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chips=("${@:-esp32c3}")
[ $# -gt 0 ] || chips=(esp32c3-sleep esp32c3 esp32c6)

need=()
[ -x /usr/bin/rustc ] && /usr/bin/rustc --version 2>/dev/null | grep -q '^rustc 1\.9[6-9]' || need+=(rustc-web)
[ -x /usr/bin/cargo ] || need+=(cargo-web)
[ -d /usr/lib/rustlib/src/rust/library ] || need+=(rust-web-src)
[ -x /usr/bin/ld.lld-22 ] || need+=(lld-22)
command -v llvm-size-22 >/dev/null 2>&1 || need+=(llvm-22)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

target_dir="${BOARD_TARGET_DIR:-$here/target}"
report=()
for chip in "${chips[@]}"; do
  case "$chip" in
    esp32c3) triple=riscv32imc-unknown-none-elf features=esp32c3 ;;
    esp32c3-sleep) triple=riscv32imc-unknown-none-elf features=esp32c3,deep-sleep ;;
    esp32c6) triple=riscv32imac-unknown-none-elf features=esp32c6 ;;
    esp32c6-sleep) triple=riscv32imac-unknown-none-elf features=esp32c6,deep-sleep ;;
    *) echo "unknown image $chip (esp32c3, esp32c6, esp32c3-sleep or esp32c6-sleep)" >&2; exit 2 ;;
  esac
  echo "== building the $chip image ($triple)"
  start=$(date +%s)
  # Debian's toolchain first in PATH; cwd is the board project so its .cargo/config.toml applies.
  (cd "$here" && PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
    /usr/bin/cargo build --locked --release --no-default-features --features "$features" --target "$triple")
  mkdir -p "$target_dir/images"
  elf="$target_dir/images/telemetry-board-$chip"
  cp "$target_dir/$triple/release/telemetry-board" "$elf"
  # Flash: everything loaded from flash (code, read-only data, the RAM images' initial copies).
  # Static RAM: what is placed in SRAM before main runs (IRAM code, data, bss including the
  # Wi-Fi heap); the stack takes what is left. RTC: RTC fast memory (the panic marker, and the
  # deep-sleep backlog of the sleep variant; 8 KiB on the C3, 16 KiB LP memory on the C6).
  read -r flash ram heap rtc < <(llvm-size-22 -A "$elf" | awk '
    /^\.(text|rodata|rodata\.wifi|rwtext|rwtext\.wifi|trap|data|data\.wifi|flash\.appdesc) / { flash += $2 }
    /^\.(rwtext|rwtext\.wifi|trap|data|data\.wifi|bss|noinit) / { ram += $2 }
    /^\.stack / { stack = $2 }
    /^\.rtc_fast\.(text|data|bss|persistent) / { rtc += $2 }
    END { print flash, ram, stack, rtc + 0 }')
  report+=("$(printf '%-13s flash %7d B (%4.1f%% of 4 MiB)   static RAM %7d B   stack+free %7d B   RTC %5d B   built in %ds' \
    "$chip" "$flash" "$(echo "$flash" | awk '{print $1 * 100 / 4194304}')" "$ram" "$heap" "$rtc" "$(( $(date +%s) - start ))")")
  llvm-size-22 -A "$elf" | grep -E '^\.(text|rodata|rwtext|trap|data|bss|stack|rtc_fast\.persistent) ' | sed 's/^/    /'
done

echo "== host tests of the board's WebSocket link (firmware/esp32/link)"
# Line tables only: full debug info would take several hundred MB of target/ for these tests.
(cd "$repo" && CARGO_TARGET_DIR="$target_dir/host" CARGO_PROFILE_DEV_DEBUG=line-tables-only \
  cargo test --locked --manifest-path firmware/esp32/link/Cargo.toml)

echo "== board images"
printf '%s\n' "${report[@]}"
