"""The OpenAPI v2 document (/openapi/v2), derived from the shipped OpenAPI v3 data.

kubectl fetches it as protobuf (gnostic's ``openapi.v2.Document`` from
OpenAPIv2.proto) for client-side schema validation, e.g. of ``kind: List``
files. The v2 ``definitions`` are the union of the v3 ``components.schemas``
with references rewritten to ``#/definitions/...``, single-reference
``allOf`` wrappers flattened to ``$ref`` and the ``oneOf`` scalars
(IntOrString, Quantity) turned into ``type: string`` as upstream's v2 has.

The protobuf is produced by a small writer below (varints and
length-delimited fields only); vendor extensions are ``NamedAny`` entries
whose ``Any.yaml`` holds the YAML-encoded value, as gnostic produces them.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from kubesvc.api import openapi

Schema = dict[str, Any]

V3_REF = "#/components/schemas/"
V2_REF = "#/definitions/"
GVK_KEY = "x-kubernetes-group-version-kind"
TITLE = "Kubernetes"
VERSION = "v1.32.4"
PROTOBUF_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


# --------------------------------------------------------------------------- v3 -> v2


def _ref(v3_ref: str) -> str:
    return V2_REF + v3_ref.removeprefix(V3_REF)


def _one_of(schema: Schema) -> Schema:
    """IntOrString and Quantity: upstream's v2 has them as strings."""
    out: Schema = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf", "type")}
    out["type"] = "string"
    return out


def _single_ref(schema: Schema) -> str | None:
    wrapped = schema.get("allOf")
    if isinstance(wrapped, list) and len(wrapped) == 1 and set(wrapped[0]) == {"$ref"}:
        return str(wrapped[0]["$ref"])
    return None


def convert(schema: Schema) -> Schema:
    """One v3 schema as its v2 form."""
    if "oneOf" in schema or "anyOf" in schema:
        return _one_of(schema)
    ref = schema.get("$ref") or _single_ref(schema)
    if ref is not None:
        out: Schema = {"$ref": _ref(ref)}
        for key, value in schema.items():
            if key not in ("$ref", "allOf", "default", "type", "properties"):
                out[key] = value
        return out
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = convert(value)
        elif key == "allOf":
            out[key] = [convert(sub) for sub in value]
        else:
            out[key] = value
    return out


def _merge_gvks(into: Schema, other: Schema) -> None:
    entries = list(into.get(GVK_KEY, []))  # a copy: the v3 documents are shared
    for entry in other.get(GVK_KEY, []):
        if entry not in entries:
            entries.append(entry)
    into[GVK_KEY] = entries


def definitions() -> dict[str, Schema]:
    """The union of all v3 component schemas, converted, sorted by name.

    A name served by several group versions keeps its first schema; the
    group-version-kind lists of all copies are merged (upstream's v2 lists
    e.g. every group's DeleteOptions on the one definition).
    """
    found: dict[str, Schema] = {}
    for key in openapi.available():
        doc = openapi.parsed(key) or {}
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            if name not in found:
                found[name] = convert(schema)
            elif GVK_KEY in schema:
                _merge_gvks(found[name], schema)
    return {name: found[name] for name in sorted(found)}


@functools.cache
def document() -> Schema:
    """The v2 document as a JSON-compatible dict (shared: do not modify)."""
    return {
        "swagger": "2.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": {},
        "definitions": definitions(),
    }


# --------------------------------------------------------------------------- protobuf writer

VARINT = 0
FIXED64 = 1
LENGTH = 2


def varint(n: int) -> bytes:
    """Base-128 varint; negative numbers as their 64-bit two's complement."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def length_field(field: int, payload: bytes) -> bytes:
    return _key(field, LENGTH) + varint(len(payload)) + payload


def string_field(field: int, value: str) -> bytes:
    return length_field(field, value.encode()) if value else b""


def int_field(field: int, value: int) -> bytes:
    return _key(field, VARINT) + varint(value) if value else b""


def bool_field(field: int, value: bool) -> bytes:
    return _key(field, VARINT) + b"\x01" if value else b""


def double_field(field: int, value: float) -> bytes:
    return _key(field, FIXED64) + struct.pack("<d", float(value)) if value else b""


def repeated(field: int, items: Iterable[bytes]) -> bytes:
    return b"".join(length_field(field, item) for item in items)


# --------------------------------------------------------------------------- messages


def yaml_text(value: Any) -> str:
    """YAML for Any.yaml, block style like gnostic's (no document-end marker)."""
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True, allow_unicode=True)
    return text.removesuffix("...\n")


def any_message(value: Any) -> bytes:
    """Any: value (google.protobuf.Any) = 1 unused, yaml = 2."""
    return string_field(2, yaml_text(value))


def named_any(name: str, value: Any) -> bytes:
    """NamedAny: name = 1, value (Any) = 2."""
    return string_field(1, name) + length_field(2, any_message(value))


def _extensions(field: int, obj: Schema) -> bytes:
    return repeated(field, (named_any(k, v) for k, v in obj.items() if k.startswith("x-")))


def _additional_properties(value: Any) -> bytes:
    """AdditionalPropertiesItem: oneof schema = 1, boolean = 2."""
    if isinstance(value, bool):
        return _key(2, VARINT) + (b"\x01" if value else b"\x00")
    return length_field(1, schema_message(value))


def _type_item(value: Any) -> bytes:
    """TypeItem: repeated string value = 1."""
    values = value if isinstance(value, list) else [value]
    return b"".join(length_field(1, str(v).encode()) for v in values)


def _items(value: Any) -> bytes:
    """ItemsItem: repeated Schema schema = 1."""
    schemas = value if isinstance(value, list) else [value]
    return repeated(1, (schema_message(s) for s in schemas))


def _named_schemas(schemas: dict[str, Schema]) -> bytes:
    """Properties / Definitions: repeated NamedSchema additional_properties = 1."""
    return repeated(
        1,
        (string_field(1, name) + length_field(2, schema_message(s)) for name, s in schemas.items()),
    )


def _strings(field: int, values: Iterable[str]) -> bytes:
    return b"".join(length_field(field, v.encode()) for v in values)


Encoder = Callable[[int, Any], bytes]


def _message(encode: Callable[[Any], bytes]) -> Encoder:
    return lambda field, value: length_field(field, encode(value))


# Schema fields in field-number order: (json key, field number, encoder).
SCHEMA_FIELDS: tuple[tuple[str, int, Encoder], ...] = (
    ("$ref", 1, string_field),
    ("format", 2, string_field),
    ("title", 3, string_field),
    ("description", 4, string_field),
    ("default", 5, _message(any_message)),
    ("multipleOf", 6, double_field),
    ("maximum", 7, double_field),
    ("exclusiveMaximum", 8, bool_field),
    ("minimum", 9, double_field),
    ("exclusiveMinimum", 10, bool_field),
    ("maxLength", 11, int_field),
    ("minLength", 12, int_field),
    ("pattern", 13, string_field),
    ("maxItems", 14, int_field),
    ("minItems", 15, int_field),
    ("uniqueItems", 16, bool_field),
    ("maxProperties", 17, int_field),
    ("minProperties", 18, int_field),
    ("required", 19, _strings),
    ("enum", 20, lambda f, vs: repeated(f, (any_message(v) for v in vs))),
    ("additionalProperties", 21, _message(_additional_properties)),
    ("type", 22, _message(_type_item)),
    ("items", 23, _message(_items)),
    ("allOf", 24, lambda f, vs: repeated(f, (schema_message(v) for v in vs))),
    ("properties", 25, _message(_named_schemas)),
    ("discriminator", 26, string_field),
    ("readOnly", 27, bool_field),
    ("example", 30, _message(any_message)),
)


def schema_message(schema: Schema) -> bytes:
    """openapi.v2.Schema."""
    out = b"".join(
        encode(field, schema[key]) for key, field, encode in SCHEMA_FIELDS if key in schema
    )
    return out + _extensions(31, schema)


def info_message(info: Schema) -> bytes:
    """Info: title = 1, version = 2, description = 3."""
    return (
        string_field(1, info.get("title", ""))
        + string_field(2, info.get("version", ""))
        + string_field(3, info.get("description", ""))
    )


def document_message(doc: Schema) -> bytes:
    """Document: swagger = 1, info = 2, paths = 8, definitions = 9."""
    return (
        string_field(1, doc["swagger"])
        + length_field(2, info_message(doc["info"]))
        + length_field(8, b"")  # Paths: none listed
        + length_field(9, _named_schemas(doc["definitions"]))
    )


# --------------------------------------------------------------------------- public


@functools.cache
def document_protobuf() -> bytes:
    """The v2 document as gnostic protobuf (computed once)."""
    return document_message(document())


@functools.cache
def document_json() -> bytes:
    """The v2 document as JSON (computed once)."""
    return json.dumps(document(), separators=(",", ":")).encode()
