#!/usr/bin/env bash
# The size of the SDK's native library per ABI (x86-64, aarch64) and what its size profile
# costs in speed. Builds `libslowfast_ffi.so` as apps ship it (`--lib --no-default-features`)
# with the `sdk` profile (Cargo.toml: stripped, LTO, opt-level "s") and, for comparison, with
# `release` stripped afterwards; prints one line per ABI and profile, and with --bench the p50
# of a rerank of 100 candidates from both builds on this machine (bindings/examples/rerank.rs).
#   scripts/sdk-size.sh           sizes (four release builds: several minutes on 2 cores)
#   scripts/sdk-size.sh --bench   sizes, then the rerank p50 of both profiles (host only)
# Not part of scripts/test-all.sh: it is a measurement, and LTO builds are slow.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/install.sh

BUNDLE=${SLOWFAST_BUNDLE:-core/tests/data/bundle}
BENCH=$([ "${1:-}" = "--bench" ] && echo 1 || echo 0)
TARGET=$(cargo_target_dir)/sdk-size
HOST=x86_64-unknown-linux-gnu
ARM=aarch64-unknown-linux-gnu
apt_install gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu
rustup target list --installed | grep -qx "$ARM" || rustup target add "$ARM" >/dev/null

mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1048576 }'; }
for triple in "$HOST" "$ARM"; do
  strip_tool=strip
  [ "$triple" = "$ARM" ] && strip_tool=aarch64-linux-gnu-strip
  for profile in release sdk; do
    cargo build -p slowfast-ffi --lib --no-default-features --locked --quiet \
      --profile "$profile" --target "$triple" --target-dir "$TARGET"
    so=$TARGET/$triple/$profile/libslowfast_ffi.so
    stripped=$TARGET/$triple/$profile/libslowfast_ffi.stripped.so
    "$strip_tool" -o "$stripped" "$so"
    echo "$triple $profile: libslowfast_ffi.so $(mb "$(stat -c %s "$so")"), stripped $(mb "$(stat -c %s "$stripped")")"
  done
done

if [ $BENCH = 1 ]; then
  for profile in release sdk; do
    cargo build -p slowfast-ffi --example rerank --no-default-features --locked --quiet --profile "$profile" --target "$HOST" \
      --target-dir "$TARGET"
    echo -n "$profile: "
    "$TARGET/$HOST/$profile/examples/rerank" bench "$BUNDLE"
  done
fi
