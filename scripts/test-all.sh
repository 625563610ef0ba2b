#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, and the whole workspace's test suites.
# Installs what it needs itself (it is the README's test command and what .ci/run calls).
set -euo pipefail
cd "$(dirname "$0")/.."

# The pinned toolchain (rust-toolchain.toml) with rustfmt and clippy.
if command -v rustup >/dev/null 2>&1; then
  rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# ONNX Runtime (the library ort loads; see trainer/src/ort_env.rs) and onnx (its checker).
echo "== python packages"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  onnxruntime==1.31.1 onnx

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
. scripts/postgres.sh # throwaway PostgreSQL for the sync server's tests (SLOWFAST_TEST_PG_URL)
echo "== cargo test"
cargo test --workspace --locked 2>&1 | tee target/test-all.log
# One closing summary line over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "workspace: %d passed, %d failed, %d skipped\n", p, f, i }' target/test-all.log
# The Kotlin/JVM and Swift-header checks (scripts/test-kotlin.sh) and the aarch64 run under qemu
# (scripts/test-aarch64.sh) are not called here yet: together they add a second full build and
# would push a cold CI run past its 30-minute budget; one engine test still fails under qemu.
# Run them by hand; see the README.
