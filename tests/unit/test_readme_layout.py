"""The README's architecture layout names every module of the package."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_is_in_the_layout() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Architecture") : readme.index("Objects are kept")]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", layout))
    modules = [
        p.relative_to(ROOT).as_posix()
        for p in sorted((ROOT / "kubesvc").rglob("*.py"))
        if p.name != "__init__.py" and p.stem not in words
    ]
    assert modules == [], "modules missing from the README's layout"
