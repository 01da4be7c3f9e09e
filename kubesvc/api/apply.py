"""Server-side apply and managedFields, as structured-merge-diff and the apiserver fieldmanager do.

Field sets are Python sets of paths. A path is a tuple of path elements:

- `("f", "spec")`: a struct field or map key (`f:spec` in FieldsV1, `.spec` in messages);
- `("k", (("port", 80), ("protocol", "TCP")))`: an item of an associative list, by its keys
  sorted by name (`k:{"port":80,"protocol":"TCP"}`, `[port=80,protocol="TCP"]`);
- `("v", "foregroundDeletion")`: an item of a set list (`v:"foregroundDeletion"`, `[="..."]`);
- `("i", 0)`: an item of a list without keys (`i:0`, `[0]`).

A set holds members only: leaves (scalars, atomic lists and structs, empty maps), list items, and
(for Update operations) nodes that the write added. FieldsV1 marks a member that also has members
below it with `".":{}`.
"""

from __future__ import annotations

import copy
import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api import mergekeys
from kubesvc.api.kinds import BY_KIND
from kubesvc.api.mergekeys import FieldMeta
from kubesvc.api.patch import PatchError, dumps_go

PathElement = tuple[str, Any]
Path = tuple[PathElement, ...]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FIELD_MANAGER_MAX_LENGTH = 128
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"
CONFLICT_REASON = "FieldManagerConflict"

_MISSING: Any = object()
_LEAF = FieldMeta(atomic=True)


def _f(name: str) -> PathElement:
    return ("f", name)


# Fields never tracked (fieldmanager's DefaultStripFields): removed as exact paths.
_STRIPPED: frozenset[Path] = frozenset(
    {
        (_f("apiVersion"),),
        (_f("kind"),),
        (_f("metadata"),),
        *((_f("metadata"), _f(name)) for name in (
            "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
            "generation", "managedFields", "resourceVersion",
        )),
    }
)  # fmt: skip


# ----------------------------------------------------------------------------- path elements


def _freeze(value: Any) -> Any:
    if isinstance(value, dict | list):
        return ("json", json.dumps(value, sort_keys=True, separators=(",", ":")))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "json":
        return json.loads(value[1])
    return value


def _item_meta(list_meta: FieldMeta) -> FieldMeta:
    if list_meta.ssa_list_type == "map":
        return mergekeys.item_meta(list_meta)
    return _LEAF


def _item_pe(item: Any, list_meta: FieldMeta, index: int) -> PathElement:
    list_type = list_meta.ssa_list_type
    if list_type == "set":
        return ("v", _freeze(item))
    if list_type == "map" and isinstance(item, dict):
        keys = []
        for name in list_meta.ssa_keys:
            if name in item:
                keys.append((name, _freeze(item[name])))
            elif name in list_meta.key_defaults:
                keys.append((name, list_meta.key_defaults[name]))
        if keys:
            return ("k", tuple(sorted(keys)))
    return ("i", index)


def _go_scalar(value: Any) -> str:
    """structured-merge-diff value.ToString."""
    value = _thaw(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def path_string(path: Path) -> str:
    """fieldpath.Path.String(): `.spec.ports[port=80,protocol="TCP"].targetPort`."""
    out = []
    for kind, value in path:
        if kind == "f":
            out.append(f".{value}")
        elif kind == "k":
            out.append("[" + ",".join(f"{n}={_go_scalar(v)}" for n, v in value) + "]")
        elif kind == "v":
            out.append(f"[={_go_scalar(value)}]")
        else:
            out.append(f"[{value}]")
    return "".join(out)


def _pe_json(pe: PathElement) -> str:
    kind, value = pe
    if kind == "f":
        return f"f:{value}"
    if kind == "k":
        keys = {n: _thaw(v) for n, v in value}
        return "k:" + json.dumps(keys, separators=(",", ":"), ensure_ascii=False)
    if kind == "v":
        return "v:" + json.dumps(_thaw(value), separators=(",", ":"), ensure_ascii=False)
    return f"i:{value}"


def _parse_pe(text: str) -> PathElement:
    prefix, _, rest = text.partition(":")
    if prefix == "f":
        return ("f", rest)
    if prefix == "k":
        keys = json.loads(rest)
        if not isinstance(keys, dict):
            raise ValueError(text)
        return ("k", tuple(sorted((n, _freeze(v)) for n, v in keys.items())))
    if prefix == "v":
        return ("v", _freeze(json.loads(rest)))
    if prefix == "i":
        return ("i", int(rest))
    raise ValueError(text)


def _value_rank(value: Any) -> tuple:
    value = _thaw(value)
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    if value is None:
        return (3, 0)
    return (4, json.dumps(value, sort_keys=True))


def _pe_order(pe: PathElement) -> tuple:
    kind, value = pe
    if kind == "f":
        return (0, value)
    if kind == "k":
        return (1, tuple((n, _value_rank(v)) for n, v in value))
    if kind == "v":
        return (2, _value_rank(value))
    return (3, value)


# ----------------------------------------------------------------------------- FieldsV1


@dataclass
class _Node:
    member: bool = False
    children: dict[PathElement, _Node] = field(default_factory=dict)


def _tree(paths: Iterable[Path]) -> _Node:
    root = _Node()
    for path in paths:
        node = root
        for pe in path:
            node = node.children.setdefault(pe, _Node())
        node.member = True
    return root


_SORT_RUN = 4096


def _sorted_elements(elements: dict[PathElement, _Node]) -> list[PathElement]:
    """Path elements in FieldsV1 order. A map of 100,000 keys is sorted in runs merged in
    Python: one C-level sort of it holds the GIL for 200 ms, stalling the API server's event
    loop while this runs in its worker thread."""
    if len(elements) <= _SORT_RUN:
        return sorted(elements, key=_pe_order)
    items = list(elements)
    decorated = [(_pe_order(pe), i, pe) for i, pe in enumerate(items)]
    runs = [sorted(decorated[i : i + _SORT_RUN]) for i in range(0, len(decorated), _SORT_RUN)]
    return [pe for _, _, pe in heapq.merge(*runs)]


def encode_fields(paths: Iterable[Path]) -> dict:
    """A field set as FieldsV1 JSON."""

    def emit(node: _Node) -> dict:
        out: dict = {}
        if node.member and node.children:
            out["."] = {}
        for pe in _sorted_elements(node.children):
            out[_pe_json(pe)] = emit(node.children[pe])
        return out

    return emit(_tree(paths))


def decode_fields(fields: Any) -> set[Path]:
    """FieldsV1 JSON as a field set (ValueError when malformed)."""
    out: set[Path] = set()

    def walk(node: Any, prefix: Path) -> None:
        if not isinstance(node, dict):
            raise ValueError("fieldsV1 node is not an object")
        for key, child in node.items():
            if key == ".":
                out.add(prefix)
                continue
            path = (*prefix, _parse_pe(key))
            if child:
                walk(child, path)
            else:
                out.add(path)

    walk(fields or {}, ())
    return out


def iter_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """fieldpath.Set.Iterate order: at each level the members, then the subsets, sorted."""

    def walk(node: _Node, prefix: Path) -> Iterator[Path]:
        ordered = sorted(node.children, key=_pe_order)
        for pe in ordered:
            if node.children[pe].member:
                yield (*prefix, pe)
        for pe in ordered:
            if node.children[pe].children:
                yield from walk(node.children[pe], (*prefix, pe))

    yield from walk(_tree(paths), ())


# ----------------------------------------------------------------------------- typed walks


def field_set(kind: str, obj: dict) -> set[Path]:
    """typed.ToFieldSet: the fields an object (an apply configuration) sets."""
    out: set[Path] = set()
    _collect(obj, mergekeys.root(kind), (), out)
    return out


def _collect(value: Any, meta: FieldMeta, path: Path, out: set[Path]) -> None:
    if isinstance(value, dict):
        if path and (meta.atomic or not value):
            out.add(path)
            return
        for key, child in value.items():
            _collect(child, mergekeys.field_meta(meta.type_name, key), (*path, _f(key)), out)
        return
    if isinstance(value, list):
        if meta.ssa_list_type == "atomic":
            out.add(path)
            return
        item_meta = _item_meta(meta)
        for i, item in enumerate(value):
            item_path = (*path, _item_pe(item, meta, i))
            out.add(item_path)
            if isinstance(item, dict) and not item_meta.atomic:
                for key, child in item.items():
                    child_meta = mergekeys.field_meta(item_meta.type_name, key)
                    _collect(child, child_meta, (*item_path, _f(key)), out)
        return
    out.add(path)


@dataclass
class Comparison:
    added: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)

    def without(self, ignored: frozenset[Path]) -> Comparison:
        return Comparison(
            _drop_under(self.added, ignored),
            _drop_under(self.removed, ignored),
            _drop_under(self.modified, ignored),
        )


def compare(kind: str, old: dict, new: dict) -> Comparison:
    """typed.Compare: which fields a write added, removed or changed."""
    out = Comparison()
    _compare(old, new, mergekeys.root(kind), (), out)
    return out


def _granular(value: Any, meta: FieldMeta) -> bool:
    if isinstance(value, dict):
        return not meta.atomic
    return isinstance(value, list) and meta.ssa_list_type != "atomic"


def _compare(old: Any, new: Any, meta: FieldMeta, path: Path, out: Comparison) -> None:
    if old is _MISSING:
        _nodes(new, meta, path, out.added)
        return
    if new is _MISSING:
        _nodes(old, meta, path, out.removed)
        return
    if (old is None and _granular(new, meta)) or (new is None and _granular(old, meta)):
        # A null field (a nil slice or pointer Go still serializes) holds nothing of its own.
        target = out.added if old is None else out.removed
        present = new if old is None else old
        for child_path, (child_meta, child) in _children(present, meta, path).items():
            _nodes(child, child_meta, child_path, target)
        return
    same_shape = type(old) is type(new) and isinstance(old, dict | list)
    if same_shape and _granular(old, meta) and (old or new):
        olds, news = _children(old, meta, path), _children(new, meta, path)
        for child_path, (child_meta, value) in olds.items():
            _compare(value, news.get(child_path, (None, _MISSING))[1], child_meta, child_path, out)
        for child_path, (child_meta, value) in news.items():
            if child_path not in olds:
                _compare(_MISSING, value, child_meta, child_path, out)
        return
    if old != new or type(old) is not type(new):
        out.modified.add(path)


def _children(value: Any, meta: FieldMeta, path: Path) -> dict[Path, tuple[FieldMeta, Any]]:
    """The granular children of a map or non-atomic list, by path (first duplicate wins)."""
    out: dict[Path, tuple[FieldMeta, Any]] = {}
    if isinstance(value, dict):
        for key, child in value.items():
            out[(*path, _f(key))] = (mergekeys.field_meta(meta.type_name, key), child)
        return out
    item_meta = _item_meta(meta)
    for i, item in enumerate(value):
        out.setdefault((*path, _item_pe(item, meta, i)), (item_meta, item))
    return out


def _nodes(value: Any, meta: FieldMeta, path: Path, out: set[Path]) -> None:
    if path:
        out.add(path)
    if _granular(value, meta):
        for child_path, (child_meta, child) in _children(value, meta, path).items():
            _nodes(child, child_meta, child_path, out)


def _prefixes(paths: Iterable[Path]) -> set[Path]:
    return {path[:i] for path in paths for i in range(len(path))}


def remove_fields(kind: str, obj: dict, paths: set[Path]) -> dict:
    """typed.RemoveItems: drop the given members (whole subtrees) and maps or lists left empty."""
    result = _remove(obj, mergekeys.root(kind), (), paths, _prefixes(paths))
    return {} if result is _MISSING else result


def _remove(value: Any, meta: FieldMeta, path: Path, paths: set[Path], prefixes: set[Path]) -> Any:
    if path in paths:
        return _MISSING
    if path not in prefixes or not _granular(value, meta):
        return value
    if isinstance(value, dict):
        out_map = {}
        for key, child in value.items():
            child_meta = mergekeys.field_meta(meta.type_name, key)
            kept = _remove(child, child_meta, (*path, _f(key)), paths, prefixes)
            if kept is not _MISSING:
                out_map[key] = kept
        return _MISSING if value and not out_map else out_map
    item_meta = _item_meta(meta)
    out_list = []
    for i, item in enumerate(value):
        kept = _remove(item, item_meta, (*path, _item_pe(item, meta, i)), paths, prefixes)
        if kept is not _MISSING:
            out_list.append(kept)
    return _MISSING if value and not out_list else out_list


def _drop_under(paths: set[Path], roots: frozenset[Path]) -> set[Path]:
    """Set.RecursiveDifference: drop every path equal to or below one of `roots`."""
    if not roots:
        return set(paths)
    return {p for p in paths if not any(p[: len(r)] == r for r in roots)}


# ----------------------------------------------------------------------------- merge


def merge(kind: str, live: dict, config: dict) -> dict:
    """typed.Merge of an apply configuration into the live object (new containers, no aliasing)."""
    return _merge(copy.deepcopy(live), config, mergekeys.root(kind))


def _merge(lhs: Any, rhs: Any, meta: FieldMeta) -> Any:
    if isinstance(rhs, dict) and not meta.atomic:
        out = dict(lhs) if isinstance(lhs, dict) else {}
        for key, value in rhs.items():
            if value is None:
                out.pop(key, None)
                continue
            child = mergekeys.field_meta(meta.type_name, key)
            out[key] = _merge(out.get(key, _MISSING), value, child)
        return out
    if isinstance(rhs, list) and meta.ssa_list_type != "atomic":
        return _merge_list(lhs if isinstance(lhs, list) else [], rhs, meta)
    return copy.deepcopy(rhs)


def _merge_list(lhs: list, rhs: list, meta: FieldMeta) -> list:
    """mergingWalker.visitListItems: keep live order, place configured items in config order."""
    item_meta = _item_meta(meta)
    lhs_pes = [_item_pe(v, meta, i) for i, v in enumerate(lhs)]
    rhs_pes = [_item_pe(v, meta, i) for i, v in enumerate(rhs)]
    lhs_items: dict[PathElement, Any] = {}
    rhs_items: dict[PathElement, Any] = {}
    for pe, v in zip(lhs_pes, lhs, strict=True):
        lhs_items.setdefault(pe, v)
    for pe, v in zip(rhs_pes, rhs, strict=True):
        rhs_items.setdefault(pe, v)

    def merged(pe: PathElement) -> Any:
        return _merge(lhs_items.get(pe, _MISSING), rhs_items[pe], item_meta)

    shared = [pe for pe in rhs_pes if pe in lhs_items]
    next_shared = shared.pop(0) if shared else None
    done: set[PathElement] = set()
    out: list = []
    li = ri = 0
    while li < len(lhs_pes) or ri < len(rhs_pes):
        if li < len(lhs_pes) and ri < len(rhs_pes):
            pe = lhs_pes[li]
            if pe == rhs_pes[ri]:
                if pe not in done:
                    done.add(pe)
                    out.append(merged(pe))
                li, ri = li + 1, ri + 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in rhs_items and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lhs_pes):
            pe = lhs_pes[li]
            if pe not in rhs_items:
                out.append(lhs[li])
                li += 1
                continue
            if pe in done:
                li += 1
                continue
        if ri < len(rhs_pes):
            pe = rhs_pes[ri]
            if pe not in done:
                done.add(pe)
                out.append(merged(pe))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


# ----------------------------------------------------------------------------- managedFields


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: set[Path]

    @property
    def key(self) -> tuple[str, str, str, str]:
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def identifier(self) -> str:
        """fieldmanager BuildManagerIdentifier: the JSON that names a manager in conflicts."""
        ident: dict[str, str] = {"manager": self.manager, "operation": self.operation}
        if self.operation != "Apply" and self.api_version:
            ident["apiVersion"] = self.api_version
        if self.subresource:
            ident["subresource"] = self.subresource
        return json.dumps(ident, separators=(",", ":"))

    def encode(self) -> dict:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = encode_fields(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _decode_entries(raw: Any) -> dict[tuple[str, str, str, str], _Entry]:
    entries: dict[tuple[str, str, str, str], _Entry] = {}
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        try:
            fields = decode_fields(item.get("fieldsV1"))
        except (ValueError, TypeError):
            continue
        entry = _Entry(
            str(item.get("manager", "")),
            str(item.get("operation", "")),
            str(item.get("apiVersion", "")),
            str(item.get("subresource", "")),
            item["time"] if isinstance(item.get("time"), str) else None,
            fields,
        )
        if entry.key in entries:
            entries[entry.key].fields |= fields
        else:
            entries[entry.key] = entry
    return entries


def _metadata(obj: Any) -> dict:
    """obj's metadata when both are objects, else an empty one."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


def _managed_fields(obj: dict | None) -> Any:
    return _metadata(obj).get("managedFields")


def _without_managed_fields(obj: dict | None) -> dict:
    out = copy.deepcopy(obj) if isinstance(obj, dict) else {}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


def _entry_order(entry: _Entry) -> tuple:
    return (entry.operation, entry.time or "", entry.manager, entry.api_version, entry.subresource)


def _cap_update_managers(entries: dict[tuple[str, str, str, str], _Entry]) -> None:
    """Merge the oldest Update entries into `ancient-changes` beyond ten of them."""
    updaters = sorted(
        (e for e in entries.values() if e.operation != "Apply"),
        key=lambda e: (e.time or "", e.identifier()),
    )
    excess = len(updaters) - MAX_UPDATE_MANAGERS
    if excess <= 0:
        return
    first, bucket = updaters[0], None
    for entry in updaters[1 : excess + 1]:
        if bucket is None:
            del entries[first.key]
            bucket = _Entry(
                ANCIENT_CHANGES, "Update", first.api_version, "", first.time, set(first.fields)
            )
        bucket.fields |= entry.fields
        bucket.time = entry.time
        del entries[entry.key]
    if bucket is not None:
        previous = entries.get(bucket.key)
        if previous is not None:
            bucket.fields |= previous.fields
        entries[bucket.key] = bucket


def _store_entries(obj: dict, entries: Iterable[_Entry]) -> None:
    kept = sorted((e for e in entries if e.fields), key=_entry_order)
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    if kept:
        meta["managedFields"] = [e.encode() for e in kept]
    else:
        meta.pop("managedFields", None)


def _api_version(kind: str, *objs: dict | None) -> str:
    for obj in objs:
        if isinstance(obj, dict) and isinstance(obj.get("apiVersion"), str):
            return obj["apiVersion"]
    known = BY_KIND.get(kind)
    return known.api_version if known else ""


def _ignored(kind: str, subresource: str) -> frozenset[Path]:
    """Reset fields: what a write through this endpoint cannot change, hence never owns."""
    if subresource == "status":
        return frozenset({(_f("spec"),)})
    known = BY_KIND.get(kind)
    if known is not None and known.has_status:
        return frozenset({(_f("status"),)})
    return frozenset()


def _tracked(paths: set[Path], ignored: frozenset[Path]) -> set[Path]:
    return _drop_under(paths, ignored) - _STRIPPED


_SKELETONS: dict[str, dict] = {
    "Pod": {"spec": {"containers": None}, "status": {}},
    "Service": {"spec": {}, "status": {"loadBalancer": {}}},
    "Namespace": {"spec": {}, "status": {}},
    "Node": {"spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {}}, "nodeInfo": {}}},
    "Event": {"involvedObject": {}, "source": {}},
    "Deployment": {
        "spec": {
            "selector": None,
            "template": {"metadata": {}, "spec": {"containers": None}},
            "strategy": {},
        },
        "status": {},
    },
    "ReplicaSet": {
        "spec": {"selector": None, "template": {"metadata": {}, "spec": {"containers": None}}},
        "status": {},
    },
    "Ingress": {"spec": {}, "status": {"loadBalancer": {}}},
    "IngressClass": {"spec": {}},
    "Lease": {"spec": {}},
    "DaemonSet": {
        "spec": {
            "selector": None,
            "template": {"metadata": {}, "spec": {"containers": None}},
            "updateStrategy": {},
        },
        "status": {},
    },
    "StatefulSet": {
        "spec": {
            "selector": None,
            "template": {"metadata": {}, "spec": {"containers": None}},
            "updateStrategy": {},
        },
        "status": {},
    },
    "Job": {"spec": {"template": {"metadata": {}, "spec": {"containers": None}}}, "status": {}},
    "CronJob": {
        "spec": {
            "jobTemplate": {
                "metadata": {},
                "spec": {"template": {"metadata": {}, "spec": {"containers": None}}},
            }
        },
        "status": {},
    },
    "ReplicationController": {"spec": {}, "status": {}},
    "PersistentVolumeClaim": {"spec": {"resources": {}}, "status": {}},
    "PersistentVolume": {"spec": {}, "status": {}},
    "ResourceQuota": {"spec": {}, "status": {}},
    "LimitRange": {"spec": {"limits": None}},
    "HorizontalPodAutoscaler": {"spec": {"scaleTargetRef": {}}, "status": {}},
    "PodDisruptionBudget": {"spec": {}, "status": {}},
    "NetworkPolicy": {"spec": {"podSelector": {}}},
    "RoleBinding": {"roleRef": {}},
    "ClusterRoleBinding": {"roleRef": {}},
    "APIService": {"spec": {}, "status": {}},
}


def _empty_object(kind: str) -> dict:
    """The zero value of a kind as Go serializes it: the struct fields that are never omitted."""
    return {"metadata": {}, **copy.deepcopy(_SKELETONS.get(kind, {}))}


# ----------------------------------------------------------------------------- conflicts


def _print_manager(manager: str) -> str:
    """fieldmanager printManager."""
    try:
        entry = json.loads(manager)
    except ValueError:
        entry = None
    if not isinstance(entry, dict):
        return json.dumps(manager, ensure_ascii=False)
    text = json.dumps(str(entry.get("manager", "")), ensure_ascii=False)
    if entry.get("subresource"):
        text = f"{text} with subresource {json.dumps(entry['subresource'], ensure_ascii=False)}"
    if entry.get("operation") == "Update":
        text = f"{text} using {entry.get('apiVersion', '')}"
        if entry.get("time"):
            text = f"{text} at {entry['time']}"
    return text


def conflict_message(conflicts: list[tuple[str, str]]) -> str:
    """The message of upstream's 409 for apply conflicts.

    Each conflict is (manager, field path); the manager is the identifier JSON that names the
    entry (`{"manager":"m","operation":"Update","apiVersion":"v1"}`), or a bare manager name.
    """
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {_print_manager(manager)}: {path}"
    by_manager: dict[str, list[str]] = {}
    for manager, path in conflicts:
        by_manager.setdefault(manager, []).append(path)
    lines = []
    for manager in sorted(by_manager):
        lines.append(f"conflicts with {_print_manager(manager)}:")
        lines.extend(f"- {path}" for path in by_manager[manager])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def conflict_causes(conflicts: list[tuple[str, str]]) -> list[dict[str, str]]:
    """The StatusCauses of upstream's 409 for apply conflicts."""
    return [
        {
            "reason": CONFLICT_REASON,
            "message": f"conflict with {_print_manager(manager)}",
            "field": path,
        }
        for manager, path in conflicts
    ]


class ApplyConflict(Exception):
    """Another manager owns fields this apply changes (HTTP 409, reason Conflict)."""

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        self.conflicts = conflicts
        self.message = conflict_message(conflicts)
        super().__init__(self.message)

    def causes(self) -> list[dict[str, str]]:
        return conflict_causes(self.conflicts)


def _conflict_list(found: dict[tuple[str, str, str, str], tuple[_Entry, set[Path]]]) -> list:
    out: list[tuple[str, str]] = []
    for entry, paths in sorted(found.values(), key=lambda item: item[0].identifier()):
        out.extend((entry.identifier(), path_string(p)) for p in iter_paths(paths))
    return out


def _allowed_by_last_applied(kind: str, live: dict) -> set[Path]:
    """Fields whose live value is still what `kubectl apply` (client-side) last applied."""
    annotations = _metadata(live).get("annotations")
    text = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    if not isinstance(text, str) or not text:
        return set()
    try:
        last = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != live.get("apiVersion"):
        return set()
    diff = compare(kind, last, live)
    return field_set(kind, last) - diff.modified - diff.added - diff.removed


def _set_last_applied(obj: dict, applied: dict) -> None:
    annotations = _metadata(obj).get("annotations")
    if not isinstance(annotations, dict) or LAST_APPLIED not in annotations:
        return
    config = copy.deepcopy(applied)
    config_annotations = _metadata(config).get("annotations")
    if isinstance(config_annotations, dict):
        config_annotations.pop(LAST_APPLIED, None)
    annotations[LAST_APPLIED] = dumps_go(config) + "\n"


# ----------------------------------------------------------------------------- entry points


def apply_patch(
    kind: str,
    live: dict | None,
    applied: dict,
    manager: str,
    force: bool,
    now: str,
    *,
    subresource: str = "",
) -> dict:
    """Server-side apply of `applied` by `manager`; returns the new object with managedFields.

    `live` is None when the apply creates the object. Raises ApplyConflict when another
    manager owns a field the configuration changes and `force` is False, and PatchError when
    the configuration is not acceptable.
    """
    if not isinstance(applied, dict):
        raise PatchError("apply patch must be an object", 400)
    if _managed_fields(applied):
        raise PatchError("metadata.managedFields must be nil", 400)
    ignored = _ignored(kind, subresource)
    base = _without_managed_fields(live)
    entries = _decode_entries(_managed_fields(live))
    mine = _Entry(manager, "Apply", _api_version(kind, applied, live), subresource, None, set())
    previous = entries.pop(mine.key, None)
    mine.fields = _tracked(field_set(kind, applied), ignored)

    result = merge(kind, base, applied)
    if previous is not None and previous.fields:
        owned = set(mine.fields).union(*(e.fields for e in entries.values()))
        stale = (previous.fields & field_set(kind, result)) - owned
        result = remove_fields(kind, result, stale)

    diff = compare(kind, base, result).without(ignored)
    _resolve_conflicts(kind, base, entries, diff, manager, force)
    for entry in entries.values():
        entry.fields -= diff.removed

    changed = previous is None or previous.fields != mine.fields or result != base
    mine.time = previous.time if previous is not None and not changed else now
    if manager == "kubectl":
        _set_last_applied(result, applied)
    _store_entries(result, [*entries.values(), mine])
    return result


def _resolve_conflicts(
    kind: str,
    live: dict,
    entries: dict[tuple[str, str, str, str], _Entry],
    diff: Comparison,
    manager: str,
    force: bool,
) -> None:
    """Raise ApplyConflict, or (forced) take the conflicting fields from their owners."""
    changed = diff.modified | diff.added
    found = {
        key: (entry, entry.fields & changed)
        for key, entry in entries.items()
        if entry.fields & changed
    }
    if found and not force:
        allowed = _allowed_by_last_applied(kind, live) if manager == "kubectl" else set()
        remaining = {k: (e, paths - allowed) for k, (e, paths) in found.items() if paths - allowed}
        if remaining:
            raise ApplyConflict(_conflict_list(remaining))
    for entry, paths in found.values():
        entry.fields -= paths


def update_managed_fields(
    kind: str,
    old: dict | None,
    new: dict,
    manager: str,
    operation: str,
    now: str,
    subresource: str = "",
) -> None:
    """Record a create/update/patch by `manager` in new["metadata"]["managedFields"] (in place).

    `old` is None for a create. The fields the write changed move to this manager's entry
    (operation `operation`, normally "Update"); other entries lose them, and lose the fields the
    write removed. managedFields sent in `new` replace the live ones (that is how clients reset
    them); an existing object that has none stays untracked.
    """
    provided = _managed_fields(new)
    source = provided if provided and not subresource else _managed_fields(old)
    if old is not None and not source:
        new.setdefault("metadata", {}).pop("managedFields", None)
        return
    entries = _decode_entries(source)
    ignored = _ignored(kind, subresource)
    before = _without_managed_fields(old) if old is not None else _empty_object(kind)
    diff = compare(kind, before, _without_managed_fields(new)).without(ignored)
    touched = diff.added | diff.modified
    for entry in entries.values():
        entry.fields -= touched | diff.removed
    current = _tracked(touched, ignored)
    if current:
        mine = _Entry(manager, operation, _api_version(kind, new, old), subresource, now, set())
        previous = entries.get(mine.key)
        mine.fields = current | (previous.fields if previous else set())
        entries[mine.key] = mine
    entries = {k: e for k, e in entries.items() if e.fields}
    _cap_update_managers(entries)
    _store_entries(new, entries.values())


def default_manager(user_agent: str) -> str:
    """The field manager of a request without ?fieldManager=: the User-Agent up to its first '/'.

    Unprintable characters are dropped and the result is cut at 128 bytes, as upstream does.
    """
    out = ""
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():
            continue
        if len((out + ch).encode()) > FIELD_MANAGER_MAX_LENGTH:
            break
        out += ch
    return out
