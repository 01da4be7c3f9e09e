"""The OpenAPI v2 document: conversion from v3 and the gnostic protobuf encoding."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubesvc.api import openapi_v2

Fields = dict[int, list[Any]]  # field number -> values (int, float or bytes)

# Field numbers from gnostic's OpenAPIv2.proto used below.
DOC_SWAGGER, DOC_INFO, DOC_PATHS, DOC_DEFINITIONS = 1, 2, 8, 9
SCHEMA_REF, SCHEMA_FORMAT, SCHEMA_DESCRIPTION = 1, 2, 4
SCHEMA_REQUIRED, SCHEMA_ADDITIONAL, SCHEMA_TYPE, SCHEMA_ITEMS = 19, 21, 22, 23
SCHEMA_PROPERTIES, SCHEMA_EXTENSIONS = 25, 31


# --------------------------------------------------------------------------- a tiny reader


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _entries(data: bytes) -> Iterator[tuple[int, Any]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            (value,) = struct.unpack_from("<d", data, pos)
            pos += 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value = data[pos : pos + size]
            pos += size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        yield field, value


def decode(data: bytes) -> Fields:
    out: Fields = {}
    for field, value in _entries(data):
        out.setdefault(field, []).append(value)
    return out


def one(fields: Fields, number: int) -> Any:
    values = fields.get(number, [])
    assert len(values) == 1, (number, values)
    return values[0]


def text(fields: Fields, number: int) -> str:
    return bytes(one(fields, number)).decode() if number in fields else ""


def named(data: bytes) -> dict[str, Fields]:
    """Definitions / Properties: repeated NamedSchema (name = 1, value = 2)."""
    out: dict[str, Fields] = {}
    for entry in decode(data).get(1, []):
        pair = decode(entry)
        out[text(pair, 1)] = decode(one(pair, 2))
    return out


def extensions(schema: Fields) -> dict[str, Any]:
    """Vendor extensions: NamedAny (name = 1, value = Any with yaml = 2)."""
    out: dict[str, Any] = {}
    for entry in schema.get(SCHEMA_EXTENSIONS, []):
        pair = decode(entry)
        any_value = decode(one(pair, 2))
        assert 1 not in any_value  # google.protobuf.Any is not used
        out[text(pair, 1)] = yaml.safe_load(text(any_value, 2))
    return out


def types(schema: Fields) -> list[str]:
    if SCHEMA_TYPE not in schema:
        return []
    return [bytes(v).decode() for v in decode(one(schema, SCHEMA_TYPE)).get(1, [])]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def document() -> Fields:
    return decode(openapi_v2.document_protobuf())


@pytest.fixture(scope="module")
def definitions(document: Fields) -> dict[str, Fields]:
    return named(one(document, DOC_DEFINITIONS))


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02")],
)
def test_varint(n: int, encoded: bytes) -> None:
    assert openapi_v2.varint(n) == encoded
    assert _varint(encoded, 0) == (n, len(encoded))


def test_negative_varint_is_ten_bytes() -> None:
    assert openapi_v2.varint(-1) == b"\xff" * 9 + b"\x01"


def test_document_header(document: Fields) -> None:
    assert text(document, DOC_SWAGGER) == "2.0"
    info = decode(one(document, DOC_INFO))
    assert text(info, 1) == "Kubernetes"
    assert text(info, 2).startswith("v1.")
    assert one(document, DOC_PATHS) == b""


def test_definitions_are_the_union_of_v3_schemas(definitions: dict[str, Fields]) -> None:
    assert "io.k8s.api.core.v1.ConfigMap" in definitions
    assert "io.k8s.api.apps.v1.Deployment" in definitions
    assert "io.k8s.api.coordination.v1.Lease" in definitions
    assert list(definitions) == sorted(definitions)


def test_group_version_kind_extension(definitions: dict[str, Fields]) -> None:
    cm = extensions(definitions["io.k8s.api.core.v1.ConfigMap"])
    assert cm["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "ConfigMap", "version": "v1"}
    ]
    deploy = extensions(definitions["io.k8s.api.apps.v1.Deployment"])
    assert deploy["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]


def test_shared_definitions_merge_group_version_kinds(definitions: dict[str, Fields]) -> None:
    ext = extensions(definitions["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"])
    groups = {gvk["group"] for gvk in ext["x-kubernetes-group-version-kind"]}
    assert {"", "apps", "coordination.k8s.io"} <= groups


def test_object_properties_and_references(definitions: dict[str, Fields]) -> None:
    cm = definitions["io.k8s.api.core.v1.ConfigMap"]
    assert types(cm) == ["object"]
    props = named(one(cm, SCHEMA_PROPERTIES))
    assert set(props) == {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}
    meta = props["metadata"]
    assert text(meta, SCHEMA_REF) == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    assert types(meta) == []
    assert text(meta, SCHEMA_DESCRIPTION)
    data = props["data"]
    assert types(data) == ["object"]
    extra = decode(one(data, SCHEMA_ADDITIONAL))
    assert types(decode(one(extra, 1))) == ["string"]


def test_array_items_and_required(definitions: dict[str, Fields]) -> None:
    ports = named(one(definitions["io.k8s.api.core.v1.ServiceSpec"], SCHEMA_PROPERTIES))["ports"]
    assert types(ports) == ["array"]
    items = decode(one(ports, SCHEMA_ITEMS)).get(1, [])
    assert len(items) == 1
    assert text(decode(items[0]), SCHEMA_REF) == "#/definitions/io.k8s.api.core.v1.ServicePort"
    assert extensions(ports)["x-kubernetes-list-type"] == "map"
    port = definitions["io.k8s.api.core.v1.ServicePort"]
    assert [bytes(v).decode() for v in port[SCHEMA_REQUIRED]] == ["port"]


def test_int_or_string_and_quantity_are_strings(definitions: dict[str, Fields]) -> None:
    ios = definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert types(ios) == ["string"]
    assert text(ios, SCHEMA_FORMAT) == "int-or-string"
    assert types(definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]) == ["string"]


def _walk(schema: Fields) -> Iterator[Fields]:
    yield schema
    if SCHEMA_PROPERTIES in schema:
        for sub in named(one(schema, SCHEMA_PROPERTIES)).values():
            yield from _walk(sub)
    if SCHEMA_ITEMS in schema:
        for sub in decode(one(schema, SCHEMA_ITEMS)).get(1, []):
            yield from _walk(decode(sub))
    if SCHEMA_ADDITIONAL in schema:
        extra = decode(one(schema, SCHEMA_ADDITIONAL))
        if 1 in extra:
            yield from _walk(decode(one(extra, 1)))


def test_every_schema_parses_as_kubectl_expects(definitions: dict[str, Fields]) -> None:
    """The rules kube-openapi's proto parser enforces on the whole document."""
    for schema in (s for d in definitions.values() for s in _walk(d)):
        ref = text(schema, SCHEMA_REF)
        if ref:
            assert ref.removeprefix("#/definitions/") in definitions, ref
            assert not types(schema) and SCHEMA_PROPERTIES not in schema
            continue
        kinds = types(schema)
        assert len(kinds) <= 1
        if kinds == ["array"]:
            assert len(decode(one(schema, SCHEMA_ITEMS)).get(1, [])) == 1
        elif kinds and kinds != ["object"]:
            assert kinds[0] in ("string", "integer", "number", "boolean")


def test_json_form_matches() -> None:
    doc = json.loads(openapi_v2.document_json())
    assert doc["swagger"] == "2.0"
    defs = doc["definitions"]
    meta = defs["io.k8s.api.core.v1.ConfigMap"]["properties"]["metadata"]
    assert meta["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    assert "#/components/" not in openapi_v2.document_json().decode()
    assert defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"


def test_encoding_is_cached() -> None:
    assert openapi_v2.document_protobuf() is openapi_v2.document_protobuf()
    assert openapi_v2.document_json() is openapi_v2.document_json()
