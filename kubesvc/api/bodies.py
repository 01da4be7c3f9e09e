"""Request bodies parsed as upstream's decoders parse them, within upstream's limits.

JSON follows Go's encoding/json: NaN and Infinity are syntax errors, numbers that do not fit a
float64 are refused, invalid UTF-8 and lone surrogate escapes inside strings become U+FFFD,
nesting deeper than 10,000 is "exceeded max depth", and error texts use Go's wording.
Duplicate keys are kept (the last wins, as in Go) and reported, so strict field validation can
refuse them. YAML is converted to JSON as sigs.k8s.io/yaml does: timestamps stay strings,
integral floats become integers, NaN and Infinity are refused, and alias expansion is bounded
by go-yaml's ratio rule (a "billion laughs" document fails after a few thousand nodes).

Everything here is pure and CPU-bound; the server runs large bodies in a worker thread.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_DEPTH = 10_000  # encoding/json's maxNestingDepth
DEEP_STACK = 512 << 20  # the stack of the thread that parses bodies nested beyond ~900 levels


class BodyError(ValueError):
    """A body that cannot be decoded; the message is upstream's wording without a prefix."""


@dataclass
class Parsed:
    value: Any
    # id(dict) -> keys that appeared more than once in that JSON object
    duplicates: dict[int, list[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    raise _Constant(name)


class _Constant(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BodyError(f"json: cannot unmarshal number {text} into Go value of type float64")
    return value


def parse_json(raw: bytes | str) -> Parsed:
    """Parse a JSON body; BodyError carries Go's message (e.g. "invalid character 'N' ...")."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
    duplicates: dict[int, list[str]] = {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            dups = duplicates.setdefault(id(obj), [])
            for k, _ in items:
                if k in seen and k not in dups:
                    dups.append(k)
                seen.add(k)
        return obj

    def load() -> Any:
        return json.loads(
            text,
            object_pairs_hook=pairs,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
        )

    try:
        try:
            value = load()
        except RecursionError:
            value = _load_deep(text, load)
    except _Constant as e:
        raise BodyError(_constant_message(text, e.name)) from None
    except json.JSONDecodeError as e:
        raise BodyError(_go_syntax_error(e)) from None
    except BodyError:
        raise
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise BodyError(f"json: cannot unmarshal number: {_one_line(e)}") from None
    if _SURROGATE_ESCAPE.search(text):
        value = _replace_surrogates(value)
    return Parsed(value, duplicates)


_deep_lock = threading.Lock()
_deep_pool: ThreadPoolExecutor | None = None


def _load_deep(text: str, load: Any) -> Any:
    """Nesting beyond what Python's recursion limit allows, up to Go's 10,000 levels: parse in
    a thread with a large stack and a raised limit. Deeper input is a syntax error."""
    if max_depth(text) > MAX_DEPTH:
        raise BodyError(_exceeded_depth(text))
    try:
        return _run_deep(load)
    except RecursionError:  # an interpreter whose C recursion limit is fixed
        raise BodyError(_exceeded_depth(text)) from None


def _run_deep(fn: Any) -> Any:
    """fn() in a thread with a large stack and a recursion limit for 10,000 levels."""
    global _deep_pool
    with _deep_lock:
        if _deep_pool is None:
            previous = threading.stack_size(DEEP_STACK)
            try:
                _deep_pool = ThreadPoolExecutor(1, thread_name_prefix="deep-parse")
                _deep_pool.submit(lambda: None).result()  # start the thread at this size
            finally:
                threading.stack_size(previous)
        pool = _deep_pool

    def run() -> Any:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 3 * MAX_DEPTH))
        try:
            return fn()
        finally:
            sys.setrecursionlimit(limit)

    return pool.submit(run).result()


_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_NOT_BRACKETS = re.compile(_STRING + r'|[^\[\]{}"]+|"', re.S)
_BRACKETS = re.compile(_STRING + r"|[\[\]{}]", re.S)
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def max_depth(text: str) -> int:
    """The deepest nesting of arrays and objects, outside strings (C-speed passes only)."""
    brackets = _NOT_BRACKETS.sub("", text)
    if not brackets:
        return 0
    return max(itertools.accumulate(_DEPTH_STEP[ord(c)] for c in brackets))


def _exceeded_depth(text: str) -> str:
    depth = 0
    for m in _BRACKETS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return f"invalid character {_quote_char(c)} exceeded max depth"
        elif c in "]}":
            depth -= 1
    return "exceeded max depth"


def _constant_message(text: str, name: str) -> str:
    # Go's scanner fails at the first character of NaN/Infinity, or inside "-Infinity"
    if name == "-Infinity":
        return "invalid character 'I' in numeric literal"
    return f"invalid character {_quote_char(name[0])} looking for beginning of value"


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(value: Any) -> Any:
    """Lone surrogate escapes decode to U+FFFD in Go; Python keeps them (and cannot encode
    them as UTF-8 later)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def _quote_char(c: str) -> str:
    """Go's quoteChar: 'x', '\\'', '"' or a Go-escaped rune."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    quoted = json.dumps(c, ensure_ascii=False)[1:-1] if c.isprintable() else _go_escape(c)
    return f"'{quoted}'"


def _go_escape(c: str) -> str:
    code = ord(c)
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f", "\x00": "\\x00"}
    if c in named:
        return named[c]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _go_syntax_error(e: json.JSONDecodeError) -> str:
    doc, pos, msg = e.doc, e.pos, e.msg
    if msg.startswith("Unterminated string") or pos >= len(doc):
        return "unexpected end of JSON input"
    c = _quote_char(doc[pos])
    if msg.startswith("Expecting value"):
        return f"invalid character {c} looking for beginning of value"
    if msg.startswith("Expecting property name"):
        return f"invalid character {c} looking for beginning of object key string"
    if msg.startswith("Expecting ':'"):
        return f"invalid character {c} after object key"
    if msg.startswith("Expecting ','"):
        inside = _innermost_open(doc, pos)
        where = "object key:value pair" if inside == "{" else "array element"
        return f"invalid character {c} after {where}"
    if msg.startswith("Extra data"):
        return f"invalid character {c} after top-level value"
    if msg.startswith("Invalid control character"):
        return f"invalid character {c} in string literal"
    if msg.startswith("Invalid \\escape") or msg.startswith("Invalid \\u"):
        return f"invalid character {c} in string escape code"
    if msg.startswith("Unexpected UTF-8 BOM"):
        return "invalid character 'ï' looking for beginning of value"
    return f"invalid character {c} looking for beginning of value"


def _innermost_open(doc: str, pos: int) -> str:
    depth: list[str] = []
    for m in _BRACKETS.finditer(doc[:pos]):
        c = m.group()
        if c in "[{":
            depth.append(c)
        elif c in "]}" and depth:
            depth.pop()
    return depth[-1] if depth else ""


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


# --------------------------------------------------------------------------- YAML

_YAML = "error converting YAML to JSON: "
# go-yaml v2's bounds on alias expansion (decode.go: allowedAliasRatio)
_ALIAS_LOW, _ALIAS_HIGH = 400_000, 4_000_000


def _allowed_alias_ratio(decodes: int) -> float:
    if decodes <= _ALIAS_LOW:
        return 0.99
    if decodes >= _ALIAS_HIGH:
        return 0.10
    return 0.99 - 0.89 * ((decodes - _ALIAS_LOW) / (_ALIAS_HIGH - _ALIAS_LOW))


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """Safe loading without timestamp resolution (go-yaml keeps them as strings)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}


def parse_yaml(raw: bytes | str) -> Any:
    """One YAML document converted to JSON values, or BodyError."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")

    def load() -> Any:
        docs = list(yaml.load_all(text, Loader=_Loader))
        return _YamlToJson().convert(docs[0] if docs else None)

    try:
        try:
            return load()
        except RecursionError:  # libyaml nests up to 1,000 levels; Python's stack may not
            return _run_deep(load)
    except yaml.YAMLError as e:
        raise BodyError(f"error converting YAML to JSON: yaml: {_one_line(e)}") from None
    except RecursionError:
        raise BodyError("error converting YAML to JSON: yaml: exceeded max depth") from None


class _YamlToJson:
    """Values as JSON sees them, counting decodes the way go-yaml does: nodes reached again
    through an alias count as alias expansions, and too high a share of those is refused."""

    def __init__(self) -> None:
        self.decodes = 0
        self.aliased = 0
        self.alias_depth = 0
        self.seen: set[int] = set()
        self.path: set[int] = set()

    def _count(self) -> None:
        self.decodes += 1
        if self.alias_depth:
            self.aliased += 1
        if (
            self.aliased > 100
            and self.decodes > 1000
            and self.aliased / self.decodes > _allowed_alias_ratio(self.decodes)
        ):
            raise BodyError(
                "error converting YAML to JSON: yaml: document contains excessive aliasing"
            )

    def convert(self, value: Any) -> Any:
        self._count()
        if isinstance(value, dict | list):
            key = id(value)
            if key in self.path:
                raise BodyError("error converting YAML to JSON: yaml: anchor value contains itself")
            alias = key in self.seen
            self.seen.add(key)
            self.path.add(key)
            self.alias_depth += alias
            try:
                if isinstance(value, list):
                    return [self.convert(v) for v in value]
                return {self._key(k): self.convert(v) for k, v in value.items()}
            finally:
                self.alias_depth -= alias
                self.path.discard(key)
        return _scalar(value)

    def _key(self, key: Any) -> str:
        if isinstance(key, str):
            return key
        if isinstance(key, bool):
            return "true" if key else "false"
        if key is None:
            return "null"
        if isinstance(key, float):
            return _float_text(key)
        if isinstance(key, int):
            return str(key)
        raise BodyError(
            f"error converting YAML to JSON: json: unsupported type: map[interface {{}}]interface {{}} key {key!r}"  # noqa: E501
        )


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            raise BodyError("error converting YAML to JSON: json: unsupported value: NaN")
        if math.isinf(value):
            sign = "+" if value > 0 else "-"
            raise BodyError(f"error converting YAML to JSON: json: unsupported value: {sign}Inf")
        # sigs.k8s.io/yaml writes floats with strconv 'g': 2.0 becomes 2
        if value.is_integer() and abs(value) < 1e21:
            return int(value)
        return value
    if isinstance(value, bytes):  # !!binary
        return base64.b64encode(value).decode()
    if isinstance(value, set):
        return {str(v): None for v in value}
    return str(value)


def _float_text(value: float) -> str:
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)
