#!/usr/bin/env bash
# Runs every test of the project and skips none: the product-text check, formatting, the whole
# workspace's test suites, the PostgreSQL tests against a throwaway server, clippy with warnings
# as errors, the README's demo, the sync API under schemathesis, the Kotlin/JVM and
# Swift-header checks and the aarch64 run under qemu. Installs
# what it needs itself (it is the README's test command and what .ci/run calls). Any failure,
# and an aarch64 run that does not finish, fails the run; the summary at the end has one line
# per check.
#
# Budget: a cold run (fresh clone, empty target/) must finish within 60 minutes on 2 cores.
# Every Rust build is one of three: the host test build (also what the demo, the API test and
# the Kotlin tests run), clippy's check build and the aarch64 cross build. The aarch64 run is stopped, and the run failed, at 55 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

# The pinned toolchain (rust-toolchain.toml) with rustfmt and clippy.
if command -v rustup >/dev/null 2>&1; then
  rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# No incremental cache: a fresh clone gains nothing from it, and it is about a GB of disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
mkdir -p target
SUMMARY=target/test-all-summary.txt
: > "$SUMMARY"
failed=0
# fail LINE [LOG]: records a failed check in the summary; the end of its LOG is printed after
# the summary (the end of the output is what a CI page shows first).
failed_logs=()
fail() {
  failed=1
  echo "$1" >> "$SUMMARY"
  if [ -n "${2:-}" ]; then failed_logs+=("$2"); fi
}

# A cold run writes about 9 GB (host build 6.5, cross build 1, clippy's check build 1.5); say
# so up front when the disk is short rather than fail on "No space left on device" halfway.
free_gb=$(df -Pk target | awk 'NR == 2 { print int($4 / 1048576) }')
if [ "${free_gb:-0}" -lt 11 ]; then
  echo "== warning: ${free_gb} GB free where target/ lives; a cold run needs about 9 GB"
fi

echo "== scripts/check-product-text.sh"
if scripts/check-product-text.sh > target/check-product-text.log 2>&1; then
  tail -n 1 target/check-product-text.log >> "$SUMMARY"
else
  cat target/check-product-text.log
  fail "$(tail -n 1 target/check-product-text.log)" target/check-product-text.log
fi
echo "== module cycles"
if python3 scripts/lib/test_module_cycles.py > target/module-cycles.log 2>&1 &&
  python3 scripts/lib/module_cycles.py >> target/module-cycles.log 2>&1; then
  echo "module cycles: none ($(grep -c 'no cycle' target/module-cycles.log) crates)" >> "$SUMMARY"
else
  cat target/module-cycles.log
  fail "module cycles: FOUND ($(grep -c 'module cycle' target/module-cycles.log))" target/module-cycles.log
fi
echo "== cargo fmt --check"
if cargo fmt --all -- --check; then echo "fmt: clean" >> "$SUMMARY"; else fail "fmt: FAILED"; fi

# The host build goes first, in the background: the installs below (network and disk bound:
# pip, apt, npm, rustup) then take no time of their own on a fresh machine.
echo "== cargo test --no-run (in the background, log: target/build.log)"
cargo test --workspace --locked --no-run > target/build.log 2>&1 &
build=$!

# onnx (the exported graphs' checker). ONNX Runtime, the library ort loads, is not installed:
# the first test that needs it downloads the pinned release into the user cache
# (trainer/ort/src/fetch.rs), as the README's first command does on a fresh machine.
echo "== python packages"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore onnx
scripts/test-api.sh --install # schemathesis, pinned
. scripts/postgres.sh # throwaway PostgreSQL for the sync server's tests (SLOWFAST_TEST_PG_URL)
scripts/test-kotlin.sh --install
# The aarch64 run (scripts/test-aarch64.sh: a cross build with a target directory of its own,
# the tests under qemu, the rerank parity) goes in the background at nice 10, beside the host
# build and tests: the core time those leave idle on 2 cores (the build's serial stretches,
# tests that do not keep both cores busy, the Kotlin compiler, clippy) goes to the cross build,
# and at nice 10 it yields a busy core to them. Side by side a cold run took 47 min on 2 cores,
# the cross build and its tests ending 44 min in, with the host's last checks. It must finish:
# a run still going 55 minutes after this script started is stopped and fails the run, like a
# run that finishes and fails.
ARM_DEADLINE=3300
scripts/test-aarch64.sh --install
arm_budget=$((ARM_DEADLINE - SECONDS))
echo "== scripts/test-aarch64.sh (in the background for at most $arm_budget s, log: target/test-aarch64.log)"
# timeout signals the whole process group (cargo, rustc, qemu) when the budget runs out.
nice -n 10 timeout "$arm_budget" scripts/test-aarch64.sh < /dev/null > target/test-aarch64.log 2>&1 &
arm=$!

# A failed build is reported by `cargo test` below, which compiles what is left.
wait $build || true
tail -n 1 target/build.log
# results LOG NAME: one summary line over every test binary's result lines in LOG.
results() {
  awk -v name="$2" '/^test result:/ { p += $4; f += $6; i += $8 }
    END { printf "%s: %d passed, %d failed, %d ignored\n", name, p, f, i }' "$1" >> "$SUMMARY"
}
echo "== cargo test"
cargo test --workspace --locked 2>&1 | tee target/test-all.log || fail "cargo test: FAILED" target/test-all.log
results target/test-all.log workspace
# The tests marked `#[ignore = "needs PostgreSQL"]` (each has `postgres` in its name), against
# the server scripts/postgres.sh started; none running is a failure too.
echo "== cargo test -- --ignored postgres (SLOWFAST_TEST_PG_URL)"
cargo test --workspace --locked --tests -- --ignored postgres 2>&1 | tee target/test-postgres.log ||
  fail "cargo test -- --ignored postgres: FAILED" target/test-postgres.log
results target/test-postgres.log postgresql
pg_passed=$(awk '/^test result:/ { p += $4 } END { print p + 0 }' target/test-postgres.log)
[ "$pg_passed" -gt 0 ] || fail "postgresql: no test ran"
echo "== cargo clippy --workspace --all-targets -- -D warnings"
if cargo clippy --workspace --all-targets --locked -- -D warnings 2>&1 | tee target/clippy.log; then
  echo "clippy: clean" >> "$SUMMARY"
else
  fail "clippy: FAILED" target/clippy.log
fi
# The README's first command as a new user runs it: no ONNX Runtime installed, ORT_DYLIB_PATH
# unset and an empty cache, so the pinned library is downloaded (trainer/ort/src/fetch.rs). It
# runs the `slowfast` binary the workspace tests just built (target/debug) for one seed: the
# release build alone took 19 of a cold run's 70 minutes on 2 cores and the three seeds 15 more.
# The code path is the one `cargo run --release` takes; the three-seed release tables are
# remade by hand (docs/results/demo.md gives the command).
echo "== slowfast demo --seeds 1 (the test build, fresh ONNX Runtime cache)"
rm -rf target/ci-ort-cache target/ci-demo
status=0
env -u ORT_DYLIB_PATH SLOWFAST_CACHE_DIR="$PWD/target/ci-ort-cache" \
  target/debug/slowfast demo --seeds 1 --out target/ci-demo 2>&1 | tee target/demo.log ||
  status=$?
if [ "$status" != 0 ]; then
  fail "readme demo: FAILED (exit status $status)" target/demo.log
elif [ ! -f target/ci-ort-cache/onnxruntime-1.31.1/libonnxruntime.so.1.31.1 ]; then
  fail "readme demo: FAILED (ONNX Runtime not in the fresh cache afterwards)" target/demo.log
elif ! grep -q "downloading it from" target/demo.log; then
  fail "readme demo: FAILED (ONNX Runtime was not downloaded: found elsewhere)" target/demo.log
else
  echo "readme demo: passed (ONNX Runtime downloaded; one seed, tables in target/ci-demo)" >> "$SUMMARY"
fi
# The sync API against its own OpenAPI document (schemathesis, a valid token, bounded cases per
# operation), on the same binary and the ONNX Runtime the demo just downloaded.
echo "== scripts/test-api.sh"
if SLOWFAST_BIN=target/debug/slowfast SLOWFAST_CACHE_DIR="$PWD/target/ci-ort-cache" \
  scripts/test-api.sh 2>&1 | tee target/test-api.log; then
  grep '^api: ' target/test-api.log | tail -n 1 >> "$SUMMARY"
else
  fail "$(grep '^api: ' target/test-api.log | tail -n 1 || echo 'api: FAILED')" target/test-api.log
fi
# Each script prints its summary lines last; summarize SCRIPT STATUS gathers them.
summarize() {
  [ "$2" = 0 ] || fail "scripts/$1.sh: FAILED (exit status $2)" "target/$1.log"
  grep -E '^(kotlin|swift|readme snippets|aarch64|rerank parity): ' "target/$1.log" >> "$SUMMARY" || true
}
# The Kotlin/JVM tests, the sample app and the Swift header/C ABI checks on the host build just
# made (nothing recompiles).
echo "== scripts/test-kotlin.sh"
status=0
scripts/test-kotlin.sh 2>&1 | tee target/test-kotlin.log || status=$?
summarize test-kotlin $status
echo "== scripts/test-aarch64.sh (waiting for the background run)"
status=0
wait $arm || status=$?
cat target/test-aarch64.log
if [ $status = 124 ]; then
  fail "aarch64: FAILED (not finished $ARM_DEADLINE s after the start; stopped)" target/test-aarch64.log
else
  summarize test-aarch64 $status
fi
echo "== summary"
cat "$SUMMARY"
for log in "${failed_logs[@]}"; do
  echo "== the end of $log"
  tail -n 40 "$log" | sed 's/\x1b\[[0-9;]*m//g'
done
exit $failed
