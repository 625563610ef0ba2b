#!/usr/bin/env bash
# The device runtime on 64-bit ARM (DESIGN.md §9): cross-compiles slowfast-core's tests and the
# bindings crate to aarch64-unknown-linux-gnu and runs them under qemu-aarch64 (the cargo runner
# of .cargo/config.toml), then checks that a rerank on the real fixture bundle scores the same
# on aarch64 as on x86-64 (max |Δ| ≤ 1e-5). Installs its toolchain when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/install.sh

TRIPLE=aarch64-unknown-linux-gnu
BUNDLE=${SLOWFAST_BUNDLE:-core/tests/data/bundle}
TOLERANCE=1e-5

apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
if ! rustup target list --installed | grep -qx "$TRIPLE"; then
  echo "== rustup target add $TRIPLE"
  rustup target add "$TRIPLE" >/dev/null
fi
# With the arm64 libc installed natively qemu finds the loader itself, and `-L` makes threads hang.
if dpkg-query -W -f='${Status}' libc6:arm64 2>/dev/null | grep -q "install ok installed"; then
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
fi
TARGET=$(cargo_target_dir)
LOG=$TARGET/aarch64-test.log

echo "== cargo test -p slowfast-core -p slowfast-ffi --target $TRIPLE (qemu-aarch64)"
cargo test -p slowfast-core -p slowfast-ffi --target "$TRIPLE" --locked 2>&1 | tee "$LOG"
echo "== cargo build -p slowfast-ffi --target $TRIPLE (cdylib + staticlib)"
cargo build -p slowfast-ffi --target "$TRIPLE" --locked
file -b "$TARGET/$TRIPLE/debug/libslowfast_ffi.so"

echo "== rerank parity on $BUNDLE: x86-64 vs aarch64"
cargo run -q -p slowfast-ffi --locked --example rerank -- scores "$BUNDLE" > "$TARGET/scores-x86_64.txt"
cargo run -q -p slowfast-ffi --locked --target "$TRIPLE" --example rerank -- scores "$BUNDLE" \
  > "$TARGET/scores-aarch64.txt"
python3 - "$TARGET/scores-x86_64.txt" "$TARGET/scores-aarch64.txt" "$TOLERANCE" <<'PY'
import sys
def read(p):
    return dict((item, float(s)) for item, s in (line.split() for line in open(p)))
x86, arm, tol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
assert x86 and x86.keys() == arm.keys(), "the two runs scored different items"
diff = max(abs(x86[k] - arm[k]) for k in x86)
print(f"rerank parity: {len(x86)} scores, max |x86-64 - aarch64| = {diff:.3g} (tolerance {tol:g})")
sys.exit(0 if diff <= tol else 1)
PY
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "aarch64: %d passed, %d failed, %d skipped\n", p, f, i }' "$LOG"
