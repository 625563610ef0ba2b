#!/usr/bin/env bash
# The product speaks of itself only: no development history (stop, issue or session numbers,
# experiment branches) and no references to documents outside the repository. Greps every
# file of the tree outside .git and target/ and fails on any match but this script's own
# pattern. Prints one summary line. Called early by scripts/test-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# Case-insensitive: the history words. Case-sensitive: the outside design note, whose
# in-repository successor is docs/design.md.
HISTORY='stop [0-9]|stops [0-9]|issue [0-9]|this session|probe/'
OUTSIDE='DESIGN\.md'
hits=$( (grep -rniIE "$HISTORY" --exclude-dir=.git --exclude-dir=target . || true
  grep -rnIE "$OUTSIDE" --exclude-dir=.git --exclude-dir=target . || true) |
  grep -v "^\./scripts/check-product-text\.sh:" | sort -u || true)
if [ -n "$hits" ]; then
  echo "$hits"
  echo "product text: $(echo "$hits" | wc -l) lines name development history or outside documents (FAILED)"
  exit 1
fi
echo "product text: clean"
