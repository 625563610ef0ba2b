#!/usr/bin/env bash
# The product speaks of itself only: no development history (stop, issue or session numbers,
# experiment branches) and no references to documents outside the repository. Greps every
# file of the tree outside .git and target/ and fails on any match but this script's own
# pattern. Prints one summary line. Called early by scripts/test-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PATTERN='stop [0-9]|stops [0-9]|issue [0-9]|this session|probe/|DESIGN\.md'
hits=$(grep -rniIE "$PATTERN" --exclude-dir=.git --exclude-dir=target . |
  grep -v "^\./scripts/check-product-text\.sh:" || true)
if [ -n "$hits" ]; then
  echo "$hits"
  echo "product text: $(echo "$hits" | wc -l) lines name development history or outside documents (FAILED)"
  exit 1
fi
echo "product text: clean"
