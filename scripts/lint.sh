#!/usr/bin/env bash
# Lints every crate and target of the workspace (warnings are errors) and checks formatting.
# Run before every commit; `scripts/test-all.sh` (CI) checks formatting only, see there why.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "lint: clean"
