"""The kinds a CustomResourceDefinition makes servable: one `CustomKind` per served version."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api.crd.schema import Node, compile_schema
from kubesvc.api.kinds import Kind

CRD_GROUP = "apiextensions.k8s.io"
# the CustomResourceDefinition kind itself (served with the built-in kinds, see api/catalog)
CRD_KIND = Kind(
    CRD_GROUP,
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
    "customresourcedefinition",
    False,
    ("crd", "crds"),
    (),
    ("status",),
)
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


@dataclass(frozen=True, eq=False)
class CustomKind(Kind):
    """A served version of a custom resource. Objects are stored in `storage_version`."""

    crd_name: str = ""
    crd_uid: str = ""
    storage_version: str = ""
    schema: Node | None = None
    columns: tuple[dict[str, Any], ...] = ()
    scale: tuple[str, str, str] | None = None  # spec/status replicas paths, selector path
    terminating: bool = False
    raw_schema: dict[str, Any] = field(default_factory=dict)

    @property
    def storage_api_version(self) -> str:
        return f"{self.group}/{self.storage_version}"


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key (ascending = preferred first) in upstream's kube-aware version order:
    GA before beta before alpha, higher numbers first, then other names alphabetically."""
    m = _VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, "")


def condition(crd: dict[str, Any], type_: str) -> str:
    """A status condition's status ("True", "False", "Unknown"), "" when absent."""
    status = crd.get("status")
    conds = status.get("conditions") if isinstance(status, dict) else None
    for c in conds if isinstance(conds, list) else []:
        if isinstance(c, dict) and c.get("type") == type_:
            return str(c.get("status") or "")
    return ""


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


DEFAULT_COLUMNS = ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},)


def kinds_for(crd: dict[str, Any]) -> list[CustomKind]:
    """The served versions of an accepted CRD (its spec is valid: the API validated it)."""
    spec = crd.get("spec")
    meta = crd.get("metadata") or {}
    if not isinstance(spec, dict):
        return []
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    storage = next((_str(v.get("name")) for v in versions if v.get("storage") is True), "")
    group, plural, kind = (
        _str(spec.get("group")),
        _str(names.get("plural")),
        _str(names.get("kind")),
    )
    if not (group and plural and kind and storage):
        return []
    out = []
    for v in versions:
        if v.get("served") is not True:
            continue
        subs = v.get("subresources") or {}
        subresources = tuple(s for s in ("status", "scale") if isinstance(subs.get(s), dict))
        scale = None
        if "scale" in subresources:
            sc = subs["scale"]
            scale = (
                _str(sc.get("specReplicasPath")),
                _str(sc.get("statusReplicasPath")),
                _str(sc.get("labelSelectorPath")),
            )
        raw = (v.get("schema") or {}).get("openAPIV3Schema")
        columns = tuple(c for c in v.get("additionalPrinterColumns") or [] if isinstance(c, dict))
        out.append(
            CustomKind(
                group,
                _str(v.get("name")),
                kind,
                plural,
                _str(names.get("singular")) or kind.lower(),
                spec.get("scope") == "Namespaced",
                _strs(names.get("shortNames")),
                _strs(names.get("categories")),
                subresources,
                crd_name=_str(meta.get("name")),
                crd_uid=_str(meta.get("uid")),
                storage_version=storage,
                schema=compile_schema(raw) if isinstance(raw, dict) else None,
                columns=columns or DEFAULT_COLUMNS,
                scale=scale,
                terminating=bool(meta.get("deletionTimestamp")),
                raw_schema=raw if isinstance(raw, dict) else {},
            )
        )
    out.sort(key=lambda k: version_priority(k.version))
    return out
