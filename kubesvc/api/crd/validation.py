"""Validation of CustomResourceDefinitions, with upstream apiextensions' paths and messages.

Covers names, group, scope, versions (exactly one storage version), structural schemas
(types specified, metadata limited to name and generateName, the x-kubernetes-* extensions
used where they apply, patterns that compile), printer columns and subresources.
x-kubernetes-validations (CEL) rules are stored but not evaluated.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubesvc.api.crd import jsonpath
from kubesvc.api.crd import schema as structural
from kubesvc.api.crd.schema import MAX_SCHEMA_DEPTH, Node, compile_schema, pattern_error
from kubesvc.api.errors import (
    FieldError,
    GoLiteral,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)
from kubesvc.api.validation.meta import (
    Obj,
    as_dict,
    immutable,
    is_dns1035_label,
    is_dns1123_subdomain,
    name_is_dns_subdomain,
    validate_object_meta,
    validate_object_meta_update,
)

Errs = list[FieldError]
APPROVAL = "api-approved.kubernetes.io"
_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_COLUMN_TYPES = ["integer", "number", "string", "boolean", "date"]
_KIND_FORMAT = "[a-z]([-a-z0-9]*[a-z0-9])?"


_KUBE_FINALIZER = "name is neither a standard finalizer name nor is it fully qualified"


def object_meta(obj: Obj, namespaced: bool) -> Errs:
    """The generic ValidateObjectMeta (apiextensions kinds and custom objects): finalizers
    need only be qualified names, not the core API's standard-or-prefixed names."""
    errs = validate_object_meta(obj, namespaced, name_is_dns_subdomain)
    return [
        e for e in errs if not (e.field == "metadata.finalizers" and e.detail == _KUBE_FINALIZER)
    ]


def validate_crd(obj: Obj) -> Errs:
    errs = object_meta(obj, False)
    spec = as_dict(obj.get("spec"))
    meta = as_dict(obj.get("metadata"))
    names = as_dict(spec.get("names"))
    group, plural = spec.get("group") or "", names.get("plural") or ""
    if meta.get("name") != f"{plural}.{group}":
        errs.append(
            invalid(
                "metadata.name", meta.get("name", ""), 'must be spec.names.plural+"."+spec.group'
            )
        )
    errs += _spec(spec, meta)
    return errs


def validate_crd_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old) + validate_crd(obj)
    spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
    for name in ("scope", "group"):
        errs += immutable(f"spec.{name}", spec.get(name), old_spec.get(name))
    errs += _stored_versions(obj, spec)
    return errs


def validate_crd_status(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + _stored_versions(obj, as_dict(obj.get("spec")))


def _stored_versions(obj: Obj, spec: Obj) -> Errs:
    served = {v.get("name") for v in spec.get("versions") or [] if isinstance(v, dict)}
    stored = as_dict(obj.get("status")).get("storedVersions") or []
    return [
        invalid(f"status.storedVersions[{i}]", v, "must appear in spec.versions")
        for i, v in enumerate(stored)
        if v not in served
    ]


def _spec(spec: Obj, meta: Obj) -> Errs:
    errs: Errs = []
    group = spec.get("group") or ""
    if not group:
        errs.append(required("spec.group"))
    else:
        errs += [invalid("spec.group", group, m) for m in is_dns1123_subdomain(group)]
        if "." not in group:
            errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
        elif _protected(group) and not (meta.get("annotations") or {}).get(APPROVAL):
            errs.append(
                required(
                    f"metadata.annotations[{APPROVAL}]",
                    f'protected groups must have approval annotation "{APPROVAL}", see https://github.com/kubernetes/enhancements/pull/1111',
                )
            )
    scope = spec.get("scope") or ""
    if not scope:
        errs.append(required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        errs.append(not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    if spec.get("preserveUnknownFields") is True:
        errs.append(
            invalid(
                "spec.preserveUnknownFields",
                True,
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in "
                "openAPIV3Schema instead",
            )
        )
    errs += _names(as_dict(spec.get("names")), "spec.names")
    errs += _versions(spec)
    conversion = as_dict(spec.get("conversion"))
    strategy = conversion.get("strategy")
    if strategy is not None and strategy not in ("None", "Webhook"):
        errs.append(not_supported("spec.conversion.strategy", strategy, ["None", "Webhook"]))
    return errs


def _protected(group: str) -> bool:
    return group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))


def _names(names: Obj, path: str) -> Errs:
    errs: Errs = []
    for field in ("plural", "singular"):
        value = names.get(field) or ""
        if not value:
            if field == "plural":
                errs.append(required(f"{path}.{field}"))
            continue
        errs += [invalid(f"{path}.{field}", value, m) for m in is_dns1035_label(value)]
    for field in ("kind", "listKind"):
        value = names.get(field) or ""
        if not value:
            if field == "kind":
                errs.append(required(f"{path}.{field}"))
            continue
        if is_dns1035_label(value.lower()):
            errs.append(
                invalid(
                    f"{path}.{field}",
                    value,
                    f"may have mixed case, but should otherwise match: {_KIND_FORMAT}",
                )
            )
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.append(
            invalid(f"{path}.listKind", names["listKind"], "kind and listKind may not be the same")
        )
    for field in ("shortNames", "categories"):
        seen: set[str] = set()
        for i, value in enumerate(names.get(field) or []):
            if field == "shortNames":
                errs += [invalid(f"{path}.{field}[{i}]", value, m) for m in is_dns1035_label(value)]
            if value in seen:
                errs.append(duplicate(f"{path}.{field}[{i}]", value))
            seen.add(value)
    return errs


def _versions(spec: Obj) -> Errs:
    versions = spec.get("versions") or []
    if not versions:
        return [
            required("spec.versions", "must have exactly one version marked as storage version")
        ]
    errs: Errs = []
    seen: set[str] = set()
    storage = 0
    for i, v in enumerate(versions):
        path = f"spec.versions[{i}]"
        v = as_dict(v)
        name = v.get("name") or ""
        if not name:
            errs.append(required(f"{path}.name"))
        else:
            errs += [invalid(f"{path}.name", name, m) for m in is_dns1035_label(name)]
            if name in seen:
                errs.append(duplicate(f"{path}.name", name))
            seen.add(name)
        if v.get("storage") is True:
            storage += 1
        schema = as_dict(v.get("schema")).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            errs.append(required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
        else:
            errs += validate_schema(schema, f"{path}.schema.openAPIV3Schema")
        errs += _columns(
            v.get("additionalPrinterColumns") or [], f"{path}.additionalPrinterColumns"
        )
        errs += _subresources(as_dict(v.get("subresources")), f"{path}.subresources")
    if storage != 1:
        errs.append(
            invalid(
                "spec.versions",
                _versions_shown(versions),
                "must have exactly one version marked as storage version",
            )
        )
    if not any(as_dict(v).get("served") is True for v in versions):
        errs.append(
            invalid(
                "spec.versions",
                _versions_shown(versions),
                "must have at least one version marked as served",
            )
        )
    return errs


def _versions_shown(versions: list[Any]) -> Any:
    return GoLiteral("[]apiextensions.CustomResourceDefinitionVersion{...}")


def _columns(columns: list[Any], path: str) -> Errs:
    errs: Errs = []
    for i, c in enumerate(columns):
        c = as_dict(c)
        p = f"{path}[{i}]"
        if not c.get("name"):
            errs.append(required(f"{p}.name"))
        t = c.get("type") or ""
        if not t:
            errs.append(required(f"{p}.type"))
        elif t not in _COLUMN_TYPES:
            errs.append(not_supported(f"{p}.type", t, _COLUMN_TYPES))
        path_text = c.get("jsonPath") or ""
        if not path_text:
            errs.append(required(f"{p}.jsonPath"))
        else:
            problem = jsonpath.parse_error(path_text)
            if problem:
                errs.append(
                    invalid(f"{p}.jsonPath", path_text, f"must be a simple json path: {problem}")
                )
    return errs


def _subresources(subs: Obj, path: str) -> Errs:
    scale = subs.get("scale")
    if not isinstance(scale, dict):
        return []
    errs: Errs = []
    for field, prefix, needed in (
        ("specReplicasPath", ".spec.", True),
        ("statusReplicasPath", ".status.", True),
        ("labelSelectorPath", "", False),
    ):
        value = scale.get(field) or ""
        if not value:
            if needed:
                errs.append(required(f"{path}.scale.{field}"))
            continue
        if prefix and not value.startswith(prefix):
            errs.append(
                invalid(f"{path}.scale.{field}", value, f"should be a json path under {prefix}")
            )
        elif not prefix and not value.startswith((".spec.", ".status.")):
            errs.append(
                invalid(
                    f"{path}.scale.{field}",
                    value,
                    "should be a json path under either .spec or .status",
                )
            )
    return errs


# --------------------------------------------------------------------------- structural schemas


def validate_schema(schema: Obj, path: str) -> Errs:
    """Upstream's ValidateStructural (errors sorted, as upstream sorts them) plus the
    OpenAPI checks of the CRD's own validation (types, patterns, list types)."""
    errs: Errs = []
    _schema(schema, path, errs, 0, "root")
    return sorted(errs, key=str)


_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]


def _schema(s: Obj, path: str, errs: Errs, depth: int, level: str) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        errs.append(forbidden(path, f"must not be nested more than {MAX_SCHEMA_DEPTH} levels"))
        return
    t = s.get("type") or ""
    preserve = s.get("x-kubernetes-preserve-unknown-fields")
    int_or_string = s.get("x-kubernetes-int-or-string") is True
    embedded = s.get("x-kubernetes-embedded-resource") is True
    props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
    extra = s.get("additionalProperties")
    if t and t not in _TYPES:
        errs.append(not_supported(f"{path}.type", t, list(_TYPES)))
    if preserve is False:
        errs.append(
            invalid(
                f"{path}.x-kubernetes-preserve-unknown-fields", False, "must be true or undefined"
            )
        )
    if t == "array" and not isinstance(s.get("items"), dict):
        errs.append(required(f"{path}.items", "must be specified"))
    if embedded and t != "object":
        why = "must be object if x-kubernetes-embedded-resource is true"
        errs.append(invalid(f"{path}.type", t, why) if t else required(f"{path}.type", why))
    elif not t and not int_or_string and preserve is not True:
        where = {"root": "at the root", "item": "for specified array items"}
        errs.append(
            required(
                f"{path}.type",
                f"must not be empty {where.get(level, 'for specified object fields')}",
            )
        )
    if embedded and extra is not None:
        errs.append(
            forbidden(
                f"{path}.additionalProperties",
                "must not be used if x-kubernetes-embedded-resource is set",
            )
        )
    if level == "root" and t and t != "object":
        errs.append(invalid(f"{path}.type", t, "must be object at the root"))
    if level == "root" and extra is not None:
        errs.append(forbidden(f"{path}.additionalProperties", "must not be used at the root"))
    if int_or_string and preserve is True:
        errs.append(
            invalid(
                f"{path}.x-kubernetes-preserve-unknown-fields",
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    if int_or_string and embedded:
        errs.append(
            invalid(
                f"{path}.x-kubernetes-embedded-resource",
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    if (level == "root" or embedded) and "metadata" in props:
        meta = as_dict(props["metadata"])
        if meta.get("type") and meta.get("type") != "object":
            errs.append(
                invalid(f"{path}.properties[metadata].type", meta.get("type"), "must be object")
            )
    if level == "root" and "metadata" in props:
        meta = as_dict(props["metadata"])
        names = set(as_dict(meta.get("properties")))
        if set(meta) - {"type", "properties"} or names - {"name", "generateName"}:
            errs.append(
                forbidden(
                    f"{path}.properties[metadata]",
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",  # noqa: E501 (upstream wording)
                )
            )
    if embedded and preserve is not True and not props:
        errs.append(
            required(
                f"{path}.properties",
                "must not be empty if x-kubernetes-embedded-resource is true without "
                "x-kubernetes-preserve-unknown-fields",
            )
        )
    list_type = s.get("x-kubernetes-list-type")
    if list_type is not None:
        if t != "array":
            errs.append(
                invalid(f"{path}.x-kubernetes-list-type", list_type, "must only be used on arrays")
            )
        elif list_type not in ("atomic", "set", "map"):
            errs.append(
                not_supported(f"{path}.x-kubernetes-list-type", list_type, ["atomic", "set", "map"])
            )
        elif list_type == "map" and not s.get("x-kubernetes-list-map-keys"):
            errs.append(
                required(
                    f"{path}.x-kubernetes-list-map-keys",
                    "must not be empty if x-kubernetes-list-type is map",
                )
            )
    if s.get("x-kubernetes-list-map-keys") and list_type != "map":
        errs.append(
            forbidden(
                f"{path}.x-kubernetes-list-map-keys",
                "must only be used if x-kubernetes-list-type is map",
            )
        )
    map_type = s.get("x-kubernetes-map-type")
    if map_type is not None and map_type not in ("granular", "atomic"):
        errs.append(
            not_supported(f"{path}.x-kubernetes-map-type", map_type, ["granular", "atomic"])
        )
    pattern = s.get("pattern")
    if isinstance(pattern, str):
        problem = pattern_error(pattern)
        if problem is not None:
            errs.append(
                invalid(
                    f"{path}.pattern",
                    pattern,
                    "must be a valid regular expression, but isn't: error parsing regexp: "
                    + problem,
                )
            )
    if s.get("$ref"):
        errs.append(forbidden(f"{path}.$ref", "$ref is not supported"))
    if "default" in s and level != "root":
        errs += _default_errors(s, path)
    if s.get("uniqueItems") is True:
        errs.append(
            forbidden(
                f"{path}.uniqueItems",
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    if props and extra is not None and extra is not False:
        errs.append(
            forbidden(
                f"{path}.additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            )
        )
    for name, sub in props.items():
        if isinstance(sub, dict):
            _schema(sub, f"{path}.properties[{name}]", errs, depth + 1, "field")
    items = s.get("items")
    if isinstance(items, dict):
        _schema(items, f"{path}.items", errs, depth + 1, "item")
    elif isinstance(items, list):
        errs.append(forbidden(f"{path}.items", "items must be a schema object and not an array"))
    if isinstance(extra, dict):
        _schema(extra, f"{path}.additionalProperties", errs, depth + 1, "field")
    any_of = s.get("anyOf") or []
    all_of = s.get("allOf") or []
    int_or_string_any_of = any_of == _INT_OR_STRING_ANY_OF
    for i, sub in enumerate(any_of):
        if isinstance(sub, dict) and not int_or_string_any_of:
            _nested(sub, f"{path}.anyOf[{i}]", errs, depth + 1)
    for i, sub in enumerate(all_of):
        if not isinstance(sub, dict):
            continue
        skip = i == 0 and sub.get("anyOf") == _INT_OR_STRING_ANY_OF
        _nested(sub, f"{path}.allOf[{i}]", errs, depth + 1, skip_any_of=skip)
    for i, sub in enumerate(s.get("oneOf") or []):
        if isinstance(sub, dict):
            _nested(sub, f"{path}.oneOf[{i}]", errs, depth + 1)
    if isinstance(s.get("not"), dict):
        _nested(s["not"], f"{path}.not", errs, depth + 1)


def _holder(name: str, node: Node) -> Node:
    """A root whose one property is `name`: prune a value as a field of that schema."""
    return Node(type="object", properties={name: node})


def _default_errors(s: Obj, path: str) -> Errs:
    """A default must be valid for its own schema (upstream validates defaults as objects
    would be validated, so that defaulting never produces an object it then refuses)."""
    node = compile_schema(s)
    value = copy.deepcopy(s["default"])
    found: Errs = []
    if isinstance(value, dict | list):
        holder = {"default": value}
        pruned = structural.prune(_holder("default", node), holder)
        if pruned:
            found.append(
                invalid(
                    f"{path}.default",
                    _shown_default(s["default"]),
                    "must not have unknown fields: "
                    + ", ".join(p.removeprefix("default.") for p in pruned),
                )
            )
    checked = structural.validate_value(node, value, "default")
    found += [
        FieldError(e.type, f"{path}.default" + e.field[len("default") :], e.detail, e.value)
        for e in checked
    ]
    return found[:10]


def _shown_default(value: Any) -> Any:
    return (
        GoLiteral(json.dumps(value, separators=(",", ":")))
        if isinstance(value, dict | list)
        else value
    )


_FORBIDDEN_NESTED = (
    ("type", "must be empty to be structural"),
    ("additionalProperties", "must be undefined to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
)


def _nested(s: Obj, path: str, errs: Errs, depth: int, skip_any_of: bool = False) -> None:
    """Inside allOf/anyOf/oneOf/not only value validations are allowed: the structural part
    is the schema outside them."""
    if depth > MAX_SCHEMA_DEPTH:
        errs.append(forbidden(path, f"must not be nested more than {MAX_SCHEMA_DEPTH} levels"))
        return
    for key, why in _FORBIDDEN_NESTED:
        value = s.get(key)
        if value not in (None, False, "", []):
            errs.append(forbidden(f"{path}.{key}", why))
    props = as_dict(s.get("properties"))
    if "metadata" in props:
        errs.append(
            forbidden(f"{path}.properties[metadata]", "must not be specified in a nested context")
        )
    for name, sub in props.items():
        if isinstance(sub, dict):
            _nested(sub, f"{path}.properties[{name}]", errs, depth + 1)
    if isinstance(s.get("items"), dict):
        _nested(s["items"], f"{path}.items", errs, depth + 1)
    if not skip_any_of:
        for i, sub in enumerate(s.get("anyOf") or []):
            if isinstance(sub, dict):
                _nested(sub, f"{path}.anyOf[{i}]", errs, depth + 1)
    for combinator in ("allOf", "oneOf"):
        for i, sub in enumerate(s.get(combinator) or []):
            if isinstance(sub, dict):
                _nested(sub, f"{path}.{combinator}[{i}]", errs, depth + 1)
    if isinstance(s.get("not"), dict):
        _nested(s["not"], f"{path}.not", errs, depth + 1)
