#!/usr/bin/env bash
# The product speaks of itself only: no development history (stop, issue or session numbers,
# experiment branches) and no references to documents outside the repository. Greps every
# file of the tree outside .git and target/ and fails on any match. Prints one summary line.
# Called early by scripts/test-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# Case-insensitive, as the words appear in prose: the history words and the outside design
# note (the design as built is docs/architecture.md). Each word has one letter in brackets, so
# the patterns do not match this file's own text.
PATTERNS='s[t]ops? [0-9]|i[s]sue [0-9]|t[h]is session|p[r]obe/|d[e]sign\.md'
hits=$(grep -rniIE "$PATTERNS" --exclude-dir=.git --exclude-dir=target . | sort -u || true)
if [ -n "$hits" ]; then
  echo "$hits"
  echo "product text: $(echo "$hits" | wc -l) lines name development history or outside documents (FAILED)"
  exit 1
fi
echo "product text: clean"
