"""Pure helpers for any object's metadata and the API's timestamps, shared by every
component: read defensively, since an object can come from anywhere."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def meta(obj: Any) -> Obj:
    """`obj.metadata` when both are objects, else an empty map (not attached to `obj`)."""
    m = obj.get("metadata") if obj.__class__ is dict else None
    return m if m.__class__ is dict else {}  # type: ignore[return-value]


def object_key(obj: Any) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects; "" when the object has no
    usable name."""
    m = meta(obj)
    name, ns = m.get("name"), m.get("namespace")
    if name.__class__ is not str or not name:
        return ""
    return f"{ns}/{name}" if ns and ns.__class__ is str else name  # type: ignore[return-value]


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, None when absent or unparsable."""
    if not value or not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # no zone written: UTC, as the API's


def format_time(when: datetime) -> str:
    """A metav1.Time: RFC 3339 in UTC to the second."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_time_nano(when: datetime) -> str:
    """RFC 3339 with the fraction trimmed, as Go's time.RFC3339Nano prints it."""
    when = when.astimezone(UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def now_utc() -> datetime:
    return datetime.now(UTC)


def now_text() -> str:
    """Now as a metav1.Time."""
    return format_time(now_utc())
