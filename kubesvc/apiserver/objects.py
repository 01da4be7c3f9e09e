"""Small helpers over API objects kept as plain JSON dicts."""

from __future__ import annotations

import json
import math
import re
import secrets
from datetime import UTC, datetime
from typing import Any

import orjson

# upstream's names.SimpleNameGenerator alphabet (no vowels, no confusable digits)
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def generate_name(prefix: str) -> str:
    # upstream truncates the prefix so the result stays within 63 characters
    prefix = prefix[: 63 - 5]
    return prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = obj["metadata"] = {}
    return m


def dumps(obj: Any) -> bytes:
    """Compact JSON, as upstream writes it. Never NaN/Infinity (not JSON) and never invalid
    UTF-8, whatever an old or hand-written stored object holds: those values become null and
    U+FFFD. orjson encodes 10-20x faster than the json module (a 2 MB object in 1.4 ms
    instead of 30 ms, which would otherwise hold the GIL); the json module handles what
    orjson refuses (integers beyond 64 bits, lone surrogates)."""
    try:
        # orjson's bytes keep the capacity of its working buffer (8 KB behind a 1 KB object);
        # the copy is exact, which matters for what the store and caches keep
        return bytes(memoryview(orjson.dumps(obj)))
    except TypeError:
        pass
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, UnicodeEncodeError):
        return json.dumps(
            _sanitized(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _sanitized(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_sanitized(k): _sanitized(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitized(v) for v in value]
    return value


def without_volatile(obj: dict[str, Any]) -> dict[str, Any]:
    """The object minus the fields every write changes, to detect no-op updates."""
    out = dict(obj)
    m = dict(out.get("metadata") or {})
    m.pop("resourceVersion", None)
    m.pop("managedFields", None)
    out["metadata"] = m
    return out


def owner_uids(obj: dict[str, Any]) -> list[str]:
    return [r.get("uid", "") for r in (obj.get("metadata") or {}).get("ownerReferences") or []]
