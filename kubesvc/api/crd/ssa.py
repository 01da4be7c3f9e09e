"""Server-side apply metadata of custom resources: the lists their schemas mark
`x-kubernetes-list-type: map` or `set` (and `x-kubernetes-map-type: atomic` objects),
registered in kubesvc.api.mergekeys under the type name the registry applies them by
(`group/Kind`). Lists without a list type stay atomic, as upstream treats them."""

from __future__ import annotations

from kubesvc.api import mergekeys
from kubesvc.api.crd.kinds import CustomKind
from kubesvc.api.crd.schema import Node
from kubesvc.api.mergekeys import FieldMeta

_registered: set[str] = set()


def type_name(kind: CustomKind) -> str:
    return f"{kind.group}/{kind.kind}"


def types_for(name: str, root: Node) -> dict[str, dict[str, FieldMeta]]:
    """Struct type name -> field -> metadata, for one custom kind's schema."""
    out: dict[str, dict[str, FieldMeta]] = {}

    def walk(struct: str, node: Node, top: bool) -> None:
        fields: dict[str, FieldMeta] = {}
        if top:
            fields["metadata"] = FieldMeta(type_name="ObjectMeta")
        out[struct] = fields
        for prop, sub in node.properties.items():
            meta = field(f"{struct}.{prop}", sub)
            if meta is not mergekeys.NONE:
                fields[prop] = meta

    def field(path: str, sub: Node) -> FieldMeta:
        if sub.type == "array":
            item = sub.items
            item_type = ""
            if item is not None and item.type == "object" and item.properties:
                item_type = path + "[]"
                walk(item_type, item, False)
            list_type = sub.list_type if sub.list_type in ("set", "map") else "atomic"
            keys = sub.list_map_keys if list_type == "map" else ()
            return FieldMeta(list_type=list_type, list_map_keys=keys, type_name=item_type)
        if sub.type == "object" and sub.properties:
            walk(path, sub, False)
            return FieldMeta(type_name=path, atomic=sub.map_type == "atomic")
        if sub.map_type == "atomic":
            return FieldMeta(atomic=True)
        return mergekeys.NONE

    walk(name, root, True)
    return out


def register(kinds: list[CustomKind]) -> None:
    """Replace the registered custom types with those of these kinds' storage versions."""
    for name in _registered:
        mergekeys.TYPES.pop(name, None)
    _registered.clear()
    for kind in kinds:
        if kind.version != kind.storage_version or kind.schema is None:
            continue
        types = types_for(type_name(kind), kind.schema)
        for name, fields in types.items():
            if name not in mergekeys.TYPES:  # never a built-in type's
                mergekeys.TYPES[name] = fields
                _registered.add(name)
