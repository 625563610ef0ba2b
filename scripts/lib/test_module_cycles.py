#!/usr/bin/env python3
"""module_cycles.py finds what it must: run by scripts/lint.sh and scripts/test-all.sh before the
check itself, so that a parser that stopped seeing imports cannot pass the tree silently."""

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def check(files):
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src"
        for name, text in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text)
        run = subprocess.run(
            [sys.executable, str(HERE / "module_cycles.py"), str(src)],
            capture_output=True,
            text=True,
        )
        return run.returncode, run.stdout


cases = [
    # Siblings through grouped, nested and inline paths, in a test module too.
    ({"lib.rs": "mod a; mod b;", "a.rs": "use crate::{b::{Thing}};",
      "b.rs": "#[cfg(test)] mod tests { use super::super::a::X; }"}, 1, "a, b"),
    # A loop of three through a directory module; `super` in a mod.rs.
    ({"lib.rs": "mod a; mod b; mod c;", "a/mod.rs": "mod x; fn f() { super::b::g(); }",
      "a/x.rs": "", "b.rs": "use crate::c::Y;", "c.rs": "pub use crate::a::x::Z;"}, 1, "a, b, c"),
    # Children of one parent that use the parent, and a doc comment or a string naming a
    # sibling, are no cycle.
    ({"lib.rs": "mod a; mod b; pub struct T;", "a.rs": "use super::T; /// [`crate::b`]\nconst S: &str = \"crate::b::x\";",
      "b.rs": "use crate::a;"}, 0, "no cycle"),
]
for files, code, says in cases:
    got, out = check(files)
    assert got == code and says in out, (files, got, out)
print("module cycles: the checker finds the planted cycles")
