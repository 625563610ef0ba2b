#!/usr/bin/env python3
"""Checks that every README code block tagged `<!-- snippet: PATH -->` is, verbatim, the region
between the `// README: begin` and `// README: end` lines of the test source PATH (its common
indentation removed). Run by scripts/test-kotlin.sh; prints one summary line.

    check_snippets.py README.md
"""
import re
import sys
import textwrap
from pathlib import Path

TAG = re.compile(r"<!-- snippet: (\S+) -->\n```\w*\n(.*?)```", re.S)


def region(path: Path) -> str:
    lines = path.read_text().splitlines(keepends=True)
    begin = [i for i, l in enumerate(lines) if l.strip() == "// README: begin"]
    end = [i for i, l in enumerate(lines) if l.strip() == "// README: end"]
    if len(begin) != 1 or len(end) != 1 or end[0] < begin[0]:
        raise SystemExit(f"{path}: needs exactly one `// README: begin` … `// README: end` region")
    return textwrap.dedent("".join(lines[begin[0] + 1 : end[0]]))


def main() -> int:
    readme = Path(sys.argv[1])
    root = readme.parent
    blocks = TAG.findall(readme.read_text())
    if not blocks:
        print(f"readme snippets: none tagged in {readme}", file=sys.stderr)
        return 1
    bad = 0
    for path, block in blocks:
        if block != region(root / path):
            print(f"readme snippets: the block tagged {path} differs from its test's region", file=sys.stderr)
            bad += 1
    print(f"readme snippets: {len(blocks) - bad} of {len(blocks)} match their tests")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
