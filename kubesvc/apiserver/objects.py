"""Small helpers over API objects kept as plain JSON dicts."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

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
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


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
