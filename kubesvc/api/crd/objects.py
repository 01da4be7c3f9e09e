"""Custom objects through the write path, as upstream's customresource strategy handles them:
decoding (ObjectMeta typed, the rest pruned by the schema), defaulting, validation,
generation, status and scale, and the CRD object's own status on create and update."""

from __future__ import annotations

import copy
from typing import Any

from kubesvc.api import typed
from kubesvc.api.crd import schema
from kubesvc.api.crd.kinds import CLEANUP_FINALIZER, CustomKind
from kubesvc.api.crd.validation import object_meta, validate_crd_status
from kubesvc.api.errors import FieldError, invalid
from kubesvc.api.validation.meta import validate_object_meta_update

Obj = dict[str, Any]


def decode(kind: CustomKind, value: Any, duplicates: Any = None) -> tuple[Obj, list[str]]:
    """A body as a custom object and its strict-decoding errors (duplicate fields, unknown
    ones pruned by the schema); raises typed.TypeMismatch."""
    decoded = typed.decode_unstructured(value, duplicates)
    obj = decoded.obj
    unknown = list(decoded.unknown)
    if kind.schema is not None:
        unknown += schema.prune(kind.schema, obj)
    out = [f'duplicate field "{p}"' for p in decoded.duplicates]
    out += [f'unknown field "{p}"' for p in unknown]
    return obj, out[: typed.MAX_STRICT_ERRORS]


def read(kind: CustomKind, value: Any) -> tuple[Obj, list[str]]:
    """A stored object as served: malformed metadata left out, defaults of the current schema
    filled in (upstream defaults on read from storage)."""
    obj, dropped = typed.repair_unstructured(value)
    if not isinstance(obj, dict):
        return {}, dropped
    if kind.schema is not None:
        try:
            schema.default(kind.schema, obj)
        except RecursionError:  # pragma: no cover - depth is bounded on write
            dropped.append("(defaults): too deep")
    return obj, dropped


def prepare_for_create(kind: CustomKind, obj: Obj) -> None:
    obj["metadata"]["generation"] = 1
    if kind.has_status:
        obj.pop("status", None)


def bump_generation(kind: CustomKind, new: Obj, old: Obj) -> None:
    """Upstream: the generation grows when anything but metadata (and status, when it is a
    subresource) changes."""
    skip = {"metadata", "status"} if kind.has_status else {"metadata"}
    if {k: v for k, v in new.items() if k not in skip} != {
        k: v for k, v in old.items() if k not in skip
    }:
        new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1


def apply_defaults(kind: CustomKind, obj: Obj) -> None:
    if kind.schema is not None:
        schema.default(kind.schema, obj)


def validate(kind: CustomKind, obj: Obj, old: Obj | None = None) -> list[FieldError]:
    if old is None:
        errs = object_meta(obj, kind.namespaced)
    else:
        errs = validate_object_meta_update(obj, old)
    if kind.schema is not None:
        errs += schema.validate(kind.schema, obj)
    if kind.scale is not None:
        errs += _scale_errors(kind, obj)
    return errs


def _scale_errors(kind: CustomKind, obj: Obj) -> list[FieldError]:
    """The scale subresource's replicas field must be an int32 (upstream's ValidateScale)."""
    assert kind.scale is not None
    spec_path = kind.scale[0]
    value = get_path(obj, spec_path)
    field = spec_path.lstrip(".")
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return [invalid(field, value, "should be a non-negative integer")]
    if value > 2**31 - 1:
        return [invalid(field, value, "should be less than or equal to 2147483647")]
    return []


# --------------------------------------------------------------------------- scale


def get_path(obj: Any, path: str) -> Any:
    """The value at a simple `.a.b.c` path, None when absent."""
    cur = obj
    for part in path.lstrip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def set_path(obj: Obj, path: str, value: Any) -> None:
    parts = path.lstrip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = cur[part] = {}
        cur = nxt
    cur[parts[-1]] = value


def to_scale(kind: CustomKind, obj: Obj) -> Obj:
    """The autoscaling/v1 Scale of a custom object."""
    assert kind.scale is not None
    spec_path, status_path, selector_path = kind.scale
    m = obj["metadata"]
    spec_replicas = get_path(obj, spec_path)
    status_replicas = get_path(obj, status_path)
    status: Obj = {"replicas": status_replicas if isinstance(status_replicas, int) else 0}
    if selector_path:
        selector = get_path(obj, selector_path)
        if isinstance(selector, str) and selector:
            status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: m[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in m
        },
        "spec": {"replicas": spec_replicas if isinstance(spec_replicas, int) else 0},
        "status": status,
    }


# --------------------------------------------------------------------------- the CRD object


def crd_prepare_for_create(obj: Obj) -> None:
    """A new CRD: no conditions yet (the server sets them), its storage version recorded."""
    m = obj["metadata"]
    m["generation"] = 1
    if CLEANUP_FINALIZER not in (m.get("finalizers") or []):
        m["finalizers"] = [*(m.get("finalizers") or []), CLEANUP_FINALIZER]
    obj["status"] = {
        "conditions": [],
        "acceptedNames": {"plural": "", "kind": ""},
        "storedVersions": _storage_versions(obj, []),
    }


def crd_prepare_for_update(new: Obj, old: Obj) -> None:
    status = copy.deepcopy(old.get("status") or {})
    status["storedVersions"] = _storage_versions(new, list(status.get("storedVersions") or []))
    new["status"] = status


def _storage_versions(obj: Obj, stored: list[str]) -> list[str]:
    spec = obj.get("spec") or {}
    for v in spec.get("versions") or []:
        if isinstance(v, dict) and v.get("storage") is True and v.get("name") not in stored:
            stored.append(v.get("name"))
    return stored


__all__ = ["validate_crd_status"]
