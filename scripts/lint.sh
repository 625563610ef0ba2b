#!/usr/bin/env bash
# The quick checks before a commit: the product text, module cycles, formatting, and clippy over every crate
# and target of the workspace with warnings as errors. scripts/test-all.sh (CI) runs the same
# three checks beside the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
scripts/check-product-text.sh
python3 scripts/lib/test_module_cycles.py
python3 scripts/lib/module_cycles.py
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "lint: clean"
