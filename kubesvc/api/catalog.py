"""Every kind the server serves, built-in or custom: the one lookup routing, discovery,
OpenAPI, tables, storage and garbage collection ask.

The built-in kinds are kinds.KINDS and the CustomResourceDefinition kind; custom kinds come
and go with CustomResourceDefinitions (kubesvc/apiserver/crds.py replaces them whenever a CRD
changes, on the event loop).
"""

from __future__ import annotations

from kubesvc.api.crd.kinds import CRD_KIND, CustomKind, version_priority
from kubesvc.api.kinds import KINDS, Kind

# the built-in kinds: kinds.KINDS and the CustomResourceDefinition kind
BUILTIN: tuple[Kind, ...] = (*KINDS, CRD_KIND)
BY_PLURAL: dict[tuple[str, str], Kind] = {(k.group, k.plural): k for k in BUILTIN}
BY_KIND: dict[str, Kind] = {k.kind: k for k in BUILTIN}
_BUILTIN_RESOURCES: dict[str, Kind] = {k.group_resource: k for k in BUILTIN}

_custom: dict[tuple[str, str, str], CustomKind] = {}  # (group, version, plural)
_storage: dict[str, CustomKind] = {}  # group_resource -> the storage version's kind
_groups: dict[str, dict[str, list[Kind]]] = {}
_by_resource_any: dict[tuple[str, str], CustomKind] = {}


def set_custom(kinds: list[CustomKind]) -> None:
    """Replace the custom kinds (all served versions of all established CRDs)."""
    global _groups
    _custom.clear()
    _storage.clear()
    _by_resource_any.clear()
    for k in kinds:
        if (k.group, k.plural) in BY_PLURAL:
            continue  # a built-in resource is never shadowed
        _custom[(k.group, k.version, k.plural)] = k
        _by_resource_any.setdefault((k.group, k.plural), k)
        if k.version == k.storage_version or k.group_resource not in _storage:
            _storage[k.group_resource] = k
    _groups = _build_groups()


def custom_kinds() -> list[CustomKind]:
    return list(_custom.values())


def lookup(group: str, version: str, plural: str) -> Kind | None:
    """The kind served at /apis/GROUP/VERSION/PLURAL (or /api/v1/PLURAL)."""
    kind = BY_PLURAL.get((group, plural))
    if kind is not None:
        return kind if kind.version == version else None
    return _custom.get((group, version, plural))


def is_resource(group: str, plural: str) -> bool:
    """Whether PLURAL names a resource of GROUP in some version (for namespaced paths)."""
    return (group, plural) in BY_PLURAL or (group, plural) in _by_resource_any


def namespaced(group: str, plural: str) -> bool:
    kind = BY_PLURAL.get((group, plural)) or _by_resource_any.get((group, plural))
    return bool(kind and kind.namespaced)


def storage_kind(group_resource: str) -> Kind | None:
    """The kind whose version objects of a resource are stored in."""
    return _BUILTIN_RESOURCES.get(group_resource) or _storage.get(group_resource)


def stored_kinds() -> list[Kind]:
    """One kind per stored resource: the built-in ones and each custom resource's storage
    version (what garbage collection walks)."""
    return [*BUILTIN, *_storage.values()]


def served_kinds() -> list[Kind]:
    return [*BUILTIN, *_custom.values()]


def groups() -> dict[str, dict[str, list[Kind]]]:
    """Group -> version -> kinds; core first, the preferred version first in each group."""
    return _groups


def _build_groups() -> dict[str, dict[str, list[Kind]]]:
    out: dict[str, dict[str, list[Kind]]] = {}
    for k in BUILTIN:
        out.setdefault(k.group, {}).setdefault(k.version, []).append(k)
    custom: dict[str, dict[str, list[Kind]]] = {}
    for ck in sorted(_custom.values(), key=lambda c: (c.group, c.plural)):
        if ck.group in out:
            if ck.version in out[ck.group]:
                out[ck.group][ck.version].append(ck)
            continue  # a custom resource in a built-in group's other versions: not served
        custom.setdefault(ck.group, {}).setdefault(ck.version, []).append(ck)
    for group in sorted(custom):
        versions = custom[group]
        out[group] = {v: versions[v] for v in sorted(versions, key=version_priority)}
    return out


_groups = _build_groups()
