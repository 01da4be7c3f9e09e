"""The JSONPath subset of additionalPrinterColumns, as client-go's jsonpath evaluates it:
fields (`.spec.replicas`, `['a.b']`), indexes and slices-by-index (`[0]`, `[-1]`),
wildcards (`[*]`, `.*`), and filters comparing a field with a literal
(`[?(@.type=="Ready")]`, `!=`, `<`, `>`, `<=`, `>=`, or just `[?(@.ready)]`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_PATH = 512  # characters in a column's path
MAX_RESULTS = 1000  # values one column collects from one object


class JsonPathError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    op: str  # "field", "index", "all", "filter"
    name: str = ""
    index: int = 0
    filter_path: tuple[str, ...] = ()
    filter_op: str = ""
    filter_value: Any = None


_NAME = re.compile(r"[A-Za-z0-9_\-/$]+")
_FILTER = re.compile(r"^\?\(@((?:\.[A-Za-z0-9_\-/]+)+)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*\)$")


def parse(text: str) -> tuple[Step, ...]:
    """Steps of a path; JsonPathError when it is not in the supported subset."""
    if len(text) > MAX_PATH:
        raise JsonPathError(f"longer than {MAX_PATH} characters")
    t = text.strip()
    if t.startswith("{") and t.endswith("}"):
        t = t[1:-1]
    if t.startswith("$"):
        t = t[1:]
    if not t.startswith((".", "[")):
        raise JsonPathError(f"unrecognized character in action: {t[:1]!r}")
    steps: list[Step] = []
    i = 0
    while i < len(t):
        c = t[i]
        if c == ".":
            if t.startswith("..", i):
                raise JsonPathError("recursive descent is not supported")
            i += 1
            if i < len(t) and t[i] == "*":
                steps.append(Step("all"))
                i += 1
                continue
            m = _NAME.match(t, i)
            if m is None:
                if i == len(t) and not steps:
                    return ()
                raise JsonPathError(f"invalid field name at {i}")
            steps.append(Step("field", m.group()))
            i = m.end()
        elif c == "[":
            end = _closing(t, i)
            inner = t[i + 1 : end].strip()
            steps.append(_bracket(inner))
            i = end + 1
        else:
            raise JsonPathError(f"unrecognized character {c!r} at {i}")
    return tuple(steps)


def _closing(t: str, start: int) -> int:
    depth, quote = 0, ""
    for j in range(start, len(t)):
        c = t[j]
        if quote:
            if c == quote:
                quote = ""
            continue
        if c in "'\"":
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return j
    raise JsonPathError("unterminated array")


def _bracket(inner: str) -> Step:
    if inner == "*":
        return Step("all")
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return Step("field", inner[1:-1])
    if re.fullmatch(r"-?\d+", inner):
        return Step("index", index=int(inner))
    m = _FILTER.match(inner)
    if m is None:
        raise JsonPathError(f"unsupported expression [{inner}]")
    path = tuple(p for p in m.group(1).split(".") if p)
    op, literal = m.group(2) or "", m.group(3)
    value: Any = None
    if op:
        value = _literal(literal or "")
    return Step("filter", filter_path=path, filter_op=op, filter_value=value)


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        raise JsonPathError(f"unsupported literal {text}") from None


def parse_error(text: str) -> str | None:
    try:
        parse(text)
    except JsonPathError as e:
        return str(e)
    return None


def find(steps: tuple[Step, ...], obj: Any) -> list[Any]:
    """The values a path selects in obj (empty when none)."""
    current = [obj]
    for step in steps:
        nxt: list[Any] = []
        for value in current:
            _apply(step, value, nxt)
            if len(nxt) > MAX_RESULTS:
                del nxt[MAX_RESULTS:]
                break
        current = nxt
        if not current:
            break
    return current


def _apply(step: Step, value: Any, out: list[Any]) -> None:
    if step.op == "field":
        if isinstance(value, dict) and step.name in value:
            out.append(value[step.name])
    elif step.op == "index":
        if isinstance(value, list) and -len(value) <= step.index < len(value):
            out.append(value[step.index])
    elif step.op == "all":
        if isinstance(value, list):
            out.extend(value)
        elif isinstance(value, dict):
            out.extend(value.values())
    elif isinstance(value, list):
        out.extend(item for item in value if _matches(step, item))


def _matches(step: Step, item: Any) -> bool:
    found: Any = item
    for name in step.filter_path:
        if not isinstance(found, dict) or name not in found:
            return False
        found = found[name]
    if not step.filter_op:
        return found is not None and found is not False
    want = step.filter_value
    if step.filter_op in ("==", "!="):
        equal = (found == want and type(found) is type(want)) or (
            isinstance(found, int | float)
            and isinstance(want, int | float)
            and not isinstance(found, bool)
            and found == want
        )
        return equal if step.filter_op == "==" else not equal
    if not (isinstance(found, int | float) and isinstance(want, int | float)):
        return False
    return {
        "<": found < want,
        ">": found > want,
        "<=": found <= want,
        ">=": found >= want,
    }[step.filter_op]
