#!/usr/bin/env bash
# Runs every test of the project: formatting, the whole workspace's test suites, the Kotlin/JVM
# and Swift-header checks and the aarch64 run under qemu. Installs what it needs itself (it is
# the README's test command and what .ci/run calls). Clippy is `scripts/lint.sh`: it checks every
# dependency a second time (check mode shares no artifacts with the test build), which a cold
# CI run on 2 cores cannot afford next to the cross build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The pinned toolchain (rust-toolchain.toml) with rustfmt.
if command -v rustup >/dev/null 2>&1; then
  rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
  rustup component add rustfmt >/dev/null 2>&1 || true
fi

# ONNX Runtime (the library ort loads; see trainer/src/ort_env.rs) and onnx (its checker).
echo "== python packages"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  onnxruntime==1.31.1 onnx

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "== cargo fmt --check"
cargo fmt --all -- --check
. scripts/postgres.sh # throwaway PostgreSQL for the sync server's tests (SLOWFAST_TEST_PG_URL)
echo "== cargo test"
failed=0
mkdir -p target
cargo test --workspace --locked 2>&1 | tee target/test-all.log || failed=1
# One summary line over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "workspace: %d passed, %d failed, %d skipped\n", p, f, i }' \
  target/test-all.log > target/test-all-summary.txt
# The Kotlin/JVM tests, the sample app and the Swift header/C ABI checks on the host build just
# made (nothing recompiles). The device runtime cross-compiled to aarch64 under qemu
# (scripts/test-aarch64.sh) runs when SLOWFAST_TEST_AARCH64=1: its cold cross build (≈ 10 min on
# 2 cores) does not fit next to the host build (≈ 16 min cold) in CI's 30-minute budget.
# Each script prints its summary lines last; they are gathered below.
scripts=(test-kotlin)
if [ "${SLOWFAST_TEST_AARCH64:-0}" = 1 ]; then
  scripts+=(test-aarch64)
else
  echo "aarch64: not run (set SLOWFAST_TEST_AARCH64=1; see scripts/test-aarch64.sh)" >> target/test-all-summary.txt
fi
for script in "${scripts[@]}"; do
  echo "== scripts/$script.sh"
  scripts/$script.sh 2>&1 | tee "target/$script.log" || { failed=1; echo "scripts/$script.sh: FAILED" >> target/test-all-summary.txt; }
  grep -E '^(kotlin|swift|readme snippets|aarch64|rerank parity): ' "target/$script.log" >> target/test-all-summary.txt || true
done
echo "== summary"
cat target/test-all-summary.txt
exit $failed
