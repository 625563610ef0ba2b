#!/usr/bin/env bash
# The device runtime on 64-bit ARM (docs/architecture.md §9): cross-compiles slowfast-core's tests and the
# bindings crate to aarch64-unknown-linux-gnu, runs them under qemu-aarch64 (the cargo runner
# of .cargo/config.toml), then checks that a rerank on the real fixture bundle scores the same
# on aarch64 as on x86-64 (max |Δ| ≤ 1e-5). Installs its toolchain when missing.
#   scripts/test-aarch64.sh            install, cross build, qemu tests, rerank parity
#   scripts/test-aarch64.sh --install  only the installs (Debian packages, rustup target)
#
# One cross build serves everything: `cargo test --no-run` builds the test binaries, the
# bindings' cdylib + staticlib and the rerank example, which then run directly under qemu.
# Without slowfast-ffi's default `cli` feature: the uniffi-bindgen binary is a host tool, and
# uniffi's code generators are not compiled for the device.
# The cross build has a target directory of its own ($TARGET/cross): scripts/test-all.sh runs
# this script in the background beside the host build and tests, and one target directory
# would serialise the two on cargo's lock. With nothing shared with the host build anyway, its
# profile is cheaper than the host's dev profile: no debug info (less to compile and link),
# no incremental cache (a one-off build), dependencies at opt-level 1 (the host's are at 2;
# not 0: the emulated tests run tract's inference, the crash test in 30 emulated children; with
# tract-core alone at 0 its build took 58 s instead of 251 s, but the qemu tests 166 s instead
# of 56 s, at the end of the run where nothing else is left to use the second core). Build
# scripts and proc macros keep the workspace's build-override, opt-level 0: with them at 1 the
# cold cross build took 8:20 wall and 16.2 CPU-min, at 0 6:50 and 13.3 (2 cores, alone).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/install.sh

TRIPLE=aarch64-unknown-linux-gnu
BUNDLE=${SLOWFAST_BUNDLE:-core/tests/data/bundle}
TOLERANCE=1e-5

apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user file
if ! rustup target list --installed | grep -qx "$TRIPLE"; then
  echo "== rustup target add $TRIPLE"
  rustup target add "$TRIPLE" >/dev/null
fi
[ "${1:-}" = "--install" ] && exit 0
# With the arm64 libc installed natively qemu finds the loader itself, and `-L` makes threads hang.
RUNNER=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
if dpkg-query -W -f='${Status}' libc6:arm64 2>/dev/null | grep -q "install ok installed"; then
  RUNNER=(qemu-aarch64)
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="${RUNNER[*]}"
# core/tests/crash.rs re-runs its own binary as the child it kills: through qemu here, and 30
# kills instead of the host run's 200 (each child starts an emulated process).
export SLOWFAST_TEST_RUNNER="${RUNNER[*]}" SLOWFAST_CRASH_KILLS=30
TARGET=$(cargo_target_dir)
CROSS_TARGET=$TARGET/cross
ARM=$CROSS_TARGET/$TRIPLE/debug
# cross_test ARGS...: `cargo test` of the cross build (profile and target directory above).
cross_test() {
  CARGO_TARGET_DIR=$CROSS_TARGET cargo test -p slowfast-core -p slowfast-ffi --no-default-features \
    --target "$TRIPLE" --locked --config profile.dev.debug=false --config profile.dev.incremental=false \
    --config profile.dev.opt-level=1 "$@"
}
LOG=$TARGET/aarch64-test.log
failed=0 tests_failed=0

echo "== cargo test --no-run -p slowfast-core -p slowfast-ffi --target $TRIPLE"
start=$SECONDS
cross_test --no-run
echo "aarch64 build: $((SECONDS - start)) s"
# The bindings' libraries, built as the examples' dependency (so left in deps/).
file -b "$ARM/deps/libslowfast_ffi.so" "$ARM/deps/libslowfast_ffi.a"

echo "== cargo test (qemu-aarch64)"
start=$SECONDS
cross_test 2>&1 | tee "$LOG" || tests_failed=1
echo "aarch64 tests under qemu: $((SECONDS - start)) s"

echo "== rerank parity on $BUNDLE: x86-64 vs aarch64"
cargo_host_build
"$TARGET/debug/examples/rerank" scores "$BUNDLE" > "$TARGET/scores-x86_64.txt"
"${RUNNER[@]}" "$ARM/examples/rerank" scores "$BUNDLE" > "$TARGET/scores-aarch64.txt"
python3 - "$TARGET/scores-x86_64.txt" "$TARGET/scores-aarch64.txt" "$TOLERANCE" <<'PY' || failed=1
import sys
def read(p):
    return dict((item, float(s)) for item, s in (line.split() for line in open(p)))
x86, arm, tol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
assert x86 and x86.keys() == arm.keys(), "the two runs scored different items"
diff = max(abs(x86[k] - arm[k]) for k in x86)
verdict = "ok" if diff <= tol else "FAILED"
print(f"rerank parity: {len(x86)} scores, max |x86-64 - aarch64| = {diff:.3g} (tolerance {tol:g}) {verdict}")
sys.exit(0 if diff <= tol else 1)
PY
# A test binary that crashed reports no result line: count it as one failure.
awk -v crashed=$tests_failed '/^test result:/ { p += $4; f += $6; i += $8 }
  END { if (crashed && !f) f = 1; printf "aarch64: %d passed, %d failed, %d skipped\n", p, f, i }' "$LOG"
exit $((failed | tests_failed))
