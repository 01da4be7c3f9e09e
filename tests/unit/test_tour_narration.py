"""Every line the tour narrates exists in both languages: each title, say and check of
kubesvc/tour gets Korean (the notes' language) and English text, read from the source, so
a tour run in one language stands for the other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import kubesvc.tour

HANGUL = re.compile("[\uac00-\ud7a3]")
TOUR = Path(kubesvc.tour.__file__).parent
# method -> the positions of its Korean and English texts
NARRATION = {"title": (1, 2), "say": (0, 1), "check": (1, 2)}


def _text(node: ast.expr) -> str:
    """A string argument's literal parts (an f-string's holes left out)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.BinOp):
        return _text(node.left) + _text(node.right)
    raise AssertionError(f"line {node.lineno}: narration is not a string: {ast.dump(node)}")


def narration() -> list[tuple[str, int, str, str]]:
    out = []
    for path in sorted(TOUR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            where = NARRATION.get(node.func.attr)
            if where is None or len(node.args) <= where[1]:
                continue
            ko, en = (_text(node.args[i]) for i in where)
            out.append((path.name, node.lineno, ko, en))
    return out


def test_every_narrated_line_is_in_korean_and_in_english() -> None:
    lines = narration()
    assert len(lines) >= 40  # the eleven steps' titles, explanations and claims
    for name, line, ko, en in lines:
        assert ko.strip() and en.strip(), (name, line)
        assert HANGUL.search(ko), (name, line, ko)
        assert not HANGUL.search(en), (name, line, en)
    titles = [(ko, en) for _, _, ko, en in lines if ko and "서비스가 필요한 이유" in ko]
    assert titles and "Why Services exist" in titles[0][1]
