"""OpenAPI v3 documents for custom resources (/openapi/v3/apis/GROUP/VERSION): each kind's
schema from its CRD, with ObjectMeta and the meta types from the core document, and paths
whose operations name their kind and take fieldValidation (what kubectl looks for before it
leaves validation to the server)."""

from __future__ import annotations

import copy
from typing import Any

from kubesvc.api import openapi
from kubesvc.api.crd.kinds import CustomKind

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_ROOTS = ("ObjectMeta", "ListMeta", "Patch", "DeleteOptions", "Status")
_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject "
    "unrecognized values. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#resources"
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers "
    "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
    "CamelCase. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#types-kinds"
)
_META_DOC = (
    "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#metadata"
)


def schema_name(kind: CustomKind) -> str:
    """Upstream's name: the group reversed, then version and kind (io.k8s.gateway.v1.Gateway)."""
    reversed_group = ".".join(reversed(kind.group.split(".")))
    return f"{reversed_group}.{kind.version}.{kind.kind}"


def _meta_schemas() -> dict[str, Any]:
    core = openapi.parsed("api/v1") or {}
    schemas = core.get("components", {}).get("schemas", {})
    out: dict[str, Any] = {}
    todo = [META + r for r in _ROOTS]
    while todo:
        name = todo.pop()
        if name in out or name not in schemas:
            continue
        out[name] = schemas[name]
        todo.extend(_refs(schemas[name]))
    return out


def _refs(value: Any) -> list[str]:
    found: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            ref = v.get("$ref")
            if isinstance(ref, str) and ref.startswith(openapi.REF_PREFIX):
                found.append(ref[len(openapi.REF_PREFIX) :])
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found


def _ref(name: str) -> dict[str, str]:
    return {"$ref": openapi.REF_PREFIX + name}


def _gvk(kind: CustomKind, name: str) -> list[dict[str, str]]:
    return [{"group": kind.group, "kind": name, "version": kind.version}]


def kind_schema(kind: CustomKind) -> dict[str, Any]:
    schema = copy.deepcopy(kind.raw_schema) if kind.raw_schema else {"type": "object"}
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"description": _API_VERSION_DOC, "type": "string"}
    props["kind"] = {"description": _KIND_DOC, "type": "string"}
    props["metadata"] = {"allOf": [_ref(META + "ObjectMeta")], "description": _META_DOC}
    schema["x-kubernetes-group-version-kind"] = _gvk(kind, kind.kind)
    return schema


def _list_schema(kind: CustomKind) -> dict[str, Any]:
    return {
        "description": f"{kind.kind}List is a list of {kind.kind}",
        "properties": {
            "apiVersion": {"description": _API_VERSION_DOC, "type": "string"},
            "items": {
                "description": f"List of {kind.plural}. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/"
                "api-conventions.md",
                "items": _ref(schema_name(kind)),
                "type": "array",
            },
            "kind": {"description": _KIND_DOC, "type": "string"},
            "metadata": {"allOf": [_ref(META + "ListMeta")], "description": "ListMeta"},
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": _gvk(kind, kind.kind + "List"),
    }


def _param(name: str, where: str = "query", type_: str = "string") -> dict[str, Any]:
    p: dict[str, Any] = {"in": where, "name": name, "schema": {"type": type_, "uniqueItems": True}}
    if where == "path":
        p["required"] = True
    return p


def _op(kind: CustomKind, action: str, body: bool, params: list[str]) -> dict[str, Any]:
    ref = _ref(schema_name(kind))
    op: dict[str, Any] = {
        "operationId": f"{action}{kind.kind}",
        "parameters": [_param(p) for p in params],
        "responses": {
            "200": {
                "content": {
                    "application/json": {"schema": ref},
                    "application/yaml": {"schema": ref},
                },
                "description": "OK",
            }
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(kind, kind.kind)[0],
    }
    if body:
        media = (
            [
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
            ]
            if action == "patch"
            else ["application/json", "application/yaml"]
        )
        schema = _ref(META + "Patch") if action == "patch" else ref
        op["requestBody"] = {"content": {m: {"schema": schema} for m in media}, "required": True}
    return op


_WRITE = ["dryRun", "fieldManager", "fieldValidation"]


def _paths(kind: CustomKind) -> dict[str, Any]:
    base = f"/apis/{kind.group}/{kind.version}"
    coll = (
        f"{base}/namespaces/{{namespace}}/{kind.plural}"
        if kind.namespaced
        else f"{base}/{kind.plural}"
    )
    scope = [_param("namespace", "path")] if kind.namespaced else []
    out: dict[str, Any] = {
        coll: {
            "get": _op(kind, "list", False, ["labelSelector", "fieldSelector", "limit", "watch"]),
            "post": _op(kind, "post", True, _WRITE),
            "parameters": scope,
        },
        f"{coll}/{{name}}": {
            "get": _op(kind, "get", False, []),
            "put": _op(kind, "put", True, _WRITE),
            "patch": _op(kind, "patch", True, [*_WRITE, "force"]),
            "delete": _op(kind, "delete", False, ["dryRun", "propagationPolicy"]),
            "parameters": [_param("name", "path"), *scope],
        },
    }
    for sub in kind.subresources:
        out[f"{coll}/{{name}}/{sub}"] = {
            "get": _op(kind, "get", False, []),
            "put": _op(kind, "put", True, _WRITE),
            "patch": _op(kind, "patch", True, [*_WRITE, "force"]),
            "parameters": [_param("name", "path"), *scope],
        }
    return out


def document(group: str, version: str, kinds: list[CustomKind]) -> dict[str, Any]:
    schemas = _meta_schemas()
    paths: dict[str, Any] = {}
    for k in kinds:
        schemas[schema_name(k)] = kind_schema(k)
        schemas[schema_name(k) + "List"] = _list_schema(k)
        paths.update(_paths(k))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }
