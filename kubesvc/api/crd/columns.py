"""Table columns of custom resources: NAME, then the version's additionalPrinterColumns
(by default AGE), evaluated as upstream's apiextensions table convertor does."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any

from kubesvc.api.crd import jsonpath
from kubesvc.api.tables import NAME_DESC, human_duration

_DESCRIPTION = "Custom resource definition column (in JSONPath format): {}"


def column_definitions(columns: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": NAME_DESC,
            "priority": 0,
        }
    ]
    for c in columns:
        out.append(
            {
                "name": c.get("name") or "",
                "type": c.get("type") or "string",
                "format": c.get("format") or "",
                "description": c.get("description") or _DESCRIPTION.format(c.get("jsonPath")),
                "priority": c.get("priority") if isinstance(c.get("priority"), int) else 0,
            }
        )
    return out


@functools.lru_cache(maxsize=1024)
def _steps(path: str) -> tuple[jsonpath.Step, ...] | None:
    try:
        return jsonpath.parse(path)
    except jsonpath.JsonPathError:
        return None


def row_cells(columns: tuple[dict[str, Any], ...], obj: dict[str, Any], now: datetime) -> list[Any]:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    cells: list[Any] = [name if isinstance(name, str) else ""]
    for c in columns:
        steps = _steps(str(c.get("jsonPath") or ""))
        found = jsonpath.find(steps, obj) if steps is not None else []
        if not found:
            cells.append(None)
        elif len(found) == 1 and c.get("type") != "string":
            cells.append(_typed_cell(str(c.get("type")), found[0], now))
        else:
            cells.append(" ".join(_text(v) for v in found))
    return cells


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _typed_cell(type_: str, value: Any, now: datetime) -> Any:
    if value is None:
        return None
    if type_ == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if type_ == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if type_ == "boolean" and isinstance(value, bool):
        return value
    if type_ == "date" and isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return human_duration((now - when).total_seconds())
    return None
