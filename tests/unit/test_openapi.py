"""OpenAPI v3 documents and unknown-field validation."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from kubesvc.api import openapi
from kubesvc.api.catalog import BUILTIN as KINDS
from kubesvc.api.kinds import Kind

ROOT = Path(__file__).resolve().parents[2]
GV_KEYS = {
    "api/v1",
    "apis/apps/v1",
    "apis/discovery.k8s.io/v1",
    "apis/networking.k8s.io/v1",
    "apis/coordination.k8s.io/v1",
    "apis/apiextensions.k8s.io/v1",
    "apis/batch/v1",
    "apis/autoscaling/v2",
    "apis/policy/v1",
    "apis/scheduling.k8s.io/v1",
    "apis/storage.k8s.io/v1",
    "apis/rbac.authorization.k8s.io/v1",
    "apis/admissionregistration.k8s.io/v1",
    "apis/apiregistration.k8s.io/v1",
}
PATCH_TYPES = {
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
}


def doc_for(kind: Kind) -> dict[str, Any]:
    doc = openapi.parsed(openapi.doc_key(kind.api_version))
    assert doc is not None
    return doc


def item_path(kind: Kind) -> str:
    prefix = "/" + openapi.doc_key(kind.api_version)
    scope = f"{prefix}/namespaces/{{namespace}}" if kind.namespaced else prefix
    return f"{scope}/{kind.plural}/{{name}}"


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return doc["components"]["schemas"][name]


# --------------------------------------------------------------------------- index / documents


def test_index_shape() -> None:
    idx = openapi.index()
    assert set(idx) == {"paths"}
    assert set(idx["paths"]) == GV_KEYS
    for key, entry in idx["paths"].items():
        url = entry["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{key}?hash=")
        digest = url.split("hash=", 1)[1]
        assert re.fullmatch(r"[0-9A-F]{128}", digest)
        assert digest == openapi.document_hash(key)


def test_document_hash_is_sha512_of_bytes() -> None:
    import hashlib

    data = openapi.document("api/v1")
    assert data is not None
    assert openapi.document_hash("api/v1") == hashlib.sha512(data).hexdigest().upper()


@pytest.mark.parametrize("key", sorted(GV_KEYS))
def test_documents_parse(key: str) -> None:
    data = openapi.document(key)
    assert data is not None
    doc = json.loads(data)
    assert doc["openapi"] == "3.0.0"
    assert doc["info"]["title"] == "Kubernetes"
    assert doc["paths"] and doc["components"]["schemas"]
    # every $ref resolves within the document
    refs = set(re.findall(r'"\$ref":"#/components/schemas/([^"]+)"', data.decode()))
    assert refs <= set(doc["components"]["schemas"])


def test_document_path_forms_and_unknown() -> None:
    assert openapi.document("/api/v1") == openapi.document("api/v1")
    assert openapi.document("/openapi/v3/apis/apps/v1?hash=x") == openapi.document("apis/apps/v1")
    assert openapi.document("apis/batch/v2") is None
    assert openapi.document("../../etc/passwd") is None
    assert openapi.document("") is None


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_gvk_extension_for_each_kind(kind: Kind) -> None:
    doc = doc_for(kind)
    wanted = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    listed = {"group": kind.group, "version": kind.version, "kind": kind.kind + "List"}
    gvks = [
        e
        for s in doc["components"]["schemas"].values()
        for e in s.get("x-kubernetes-group-version-kind", [])
    ]
    assert wanted in gvks
    assert listed in gvks


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_patch_operation_supports_field_validation(kind: Kind) -> None:
    doc = doc_for(kind)
    ops = doc["paths"][item_path(kind)]
    assert set(ops) >= {"get", "put", "patch", "delete", "parameters"}
    patch = ops["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": kind.group,
        "version": kind.version,
        "kind": kind.kind,
    }
    names = {p["name"] for p in patch["parameters"] if p["in"] == "query"}
    assert names >= {"fieldValidation", "dryRun", "fieldManager", "force"}
    assert set(patch["requestBody"]["content"]) == PATCH_TYPES
    for verb in ("put",):
        names = {p["name"] for p in ops[verb]["parameters"]}
        assert names >= {"fieldValidation", "dryRun", "fieldManager"}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_collection_operations(kind: Kind) -> None:
    doc = doc_for(kind)
    coll = doc["paths"][item_path(kind).rsplit("/", 1)[0]]
    assert coll["get"]["x-kubernetes-action"] == "list"
    assert coll["delete"]["x-kubernetes-action"] == "deletecollection"
    post_params = {p["name"] for p in coll["post"]["parameters"]}
    assert post_params >= {"fieldValidation", "dryRun", "fieldManager"}
    if kind.has_status:
        assert "patch" in doc["paths"][item_path(kind) + "/status"]


# --------------------------------------------------------------------------- schemas


def test_service_ports_merge_key() -> None:
    ports = openapi.field_schema("v1", "Service", ["spec", "ports"])
    assert ports is not None
    assert ports["type"] == "array"
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    assert ports["x-kubernetes-patch-strategy"] == "merge"
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    doc = openapi.parsed("api/v1")
    assert doc is not None
    item = openapi.resolve(doc, ports["items"])
    assert item["required"] == ["port"]
    assert "targetPort" in item["properties"]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (["spec", "containers"], "name"),
        (["spec", "volumes"], "name"),
        (["spec", "containers", "env"], "name"),
        (["spec", "containers", "ports"], "containerPort"),
        (["status", "conditions"], "type"),
    ],
)
def test_pod_merge_keys(path: list[str], key: str) -> None:
    field = openapi.field_schema("v1", "Pod", path)
    assert field is not None
    assert field["x-kubernetes-patch-merge-key"] == key


def test_deployment_template_containers() -> None:
    containers = openapi.field_schema(
        "apps/v1", "Deployment", ["spec", "template", "spec", "containers"]
    )
    assert containers is not None
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    doc = openapi.parsed("apis/apps/v1")
    assert doc is not None
    assert "io.k8s.api.core.v1.Container" in doc["components"]["schemas"]
    spec = schema(doc, "io.k8s.api.apps.v1.DeploymentSpec")
    assert set(spec["required"]) >= {"selector", "template"}


def test_leaf_schemas() -> None:
    doc = openapi.parsed("api/v1")
    assert doc is not None
    intstr = schema(doc, "io.k8s.apimachinery.pkg.util.intstr.IntOrString")
    assert intstr["format"] == "int-or-string"
    time = schema(doc, "io.k8s.apimachinery.pkg.apis.meta.v1.Time")
    assert time == {**time, "type": "string", "format": "date-time"}
    assert "io.k8s.apimachinery.pkg.api.resource.Quantity" in doc["components"]["schemas"]
    limits = openapi.field_schema("v1", "Pod", ["spec", "containers", "resources", "limits"])
    assert limits is not None
    assert limits["additionalProperties"]["$ref"].endswith("resource.Quantity")
    labels = openapi.field_schema("v1", "Service", ["metadata", "labels"])
    assert labels == {**labels, "type": "object", "additionalProperties": {"type": "string"}}


def test_property_refs_use_allof_wrappers() -> None:
    doc = openapi.parsed("api/v1")
    assert doc is not None
    spec = schema(doc, "io.k8s.api.core.v1.Service")["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ServiceSpec"}]
    assert spec["description"]


def test_schema_groups() -> None:
    names = {
        ("v1", "Event"): "io.k8s.api.core.v1.Event",
        ("discovery.k8s.io/v1", "EndpointSlice"): "io.k8s.api.discovery.v1.EndpointSlice",
        ("networking.k8s.io/v1", "Ingress"): "io.k8s.api.networking.v1.Ingress",
        ("coordination.k8s.io/v1", "Lease"): "io.k8s.api.coordination.v1.Lease",
    }
    for (api_version, kind), name in names.items():
        found = openapi.kind_schema(api_version, kind)
        assert found is not None
        doc, kind_schema = found
        assert doc["components"]["schemas"][name] is kind_schema
    ing = openapi.parsed("apis/networking.k8s.io/v1")
    assert ing is not None
    assert "io.k8s.api.core.v1.TypedLocalObjectReference" in ing["components"]["schemas"]
    lease = openapi.field_schema("coordination.k8s.io/v1", "Lease", ["spec", "renewTime"])
    assert lease is not None and lease["format"] == "date-time"


# --------------------------------------------------------------------------- unknown fields


# --------------------------------------------------------------------------- generator


def test_committed_data_matches_generator() -> None:
    # the test extra pins the client's major version the data was generated from (37)
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "tools" / "gen_openapi.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    generated = gen.generate()
    for name, blob in generated.items():
        assert (openapi.DATA_DIR / name).read_bytes() == blob, name
    assert set(generated) == {p.name for p in openapi.DATA_DIR.glob("*.json.gz")}
