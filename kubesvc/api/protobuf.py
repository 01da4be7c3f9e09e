"""Decode the Kubernetes protobuf request bodies kubectl sends.

kubectl's generator commands (`create namespace|secret|configmap|service|ingress|deployment`)
POST `application/vnd.kubernetes.protobuf`: the 4 magic bytes `k8s\\x00`, then a
`runtime.Unknown` message {typeMeta{apiVersion=1, kind=2}=1, raw=2, contentEncoding=3,
contentType=4} whose `raw` is the object in the encoding of k8s.io/api's generated.proto.

`decode_body` turns such a body into the dict the JSON API would have received: the keys
are the Go JSON names, embedded (`json:",inline"`) structs are flattened into their parent,
and zero values are dropped or kept as Go's encoding/json does. The Go encoder always
writes non-pointer fields, so a zero value on the wire is dropped for `omitempty` fields
(`opt`) and kept for pointer fields and fields without `omitempty` (`keep`): a pointer set
to zero, such as `replicas: 0`, still appears.

The reader is a plain wire-format walker driven by the `SCHEMA` table of
kubesvc/api/protobuf_schema.py; field numbers
the table does not know are skipped.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from kubesvc.api.protobuf_schema import KINDS, SCHEMA, Field

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
MAX_DEPTH = 64

# Wire types.
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_VARINT_TYPES = frozenset({"int32", "int64", "bool"})


class ProtobufError(ValueError):
    """The body is not a protobuf encoding of an object this server can decode."""

    def __init__(self, message: str) -> None:
        super().__init__(f"unable to decode protobuf body: {message}")


# ---------------------------------------------------------------------------------------------
# Public API


def decode_body(data: bytes) -> dict[str, Any]:
    """Decode a `application/vnd.kubernetes.protobuf` body into the object's JSON dict."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtobufError(f"expected bytes, got {type(data).__name__}")
    view = memoryview(bytes(data))
    if view[: len(MAGIC)] != MAGIC:
        raise ProtobufError("missing the k8s\\x00 prefix")
    try:
        return _decode_unknown(view[len(MAGIC) :])
    except ProtobufError:
        raise
    except (IndexError, KeyError, OverflowError, RecursionError, TypeError, ValueError) as e:
        raise ProtobufError(f"{type(e).__name__}: {e}") from None


def message_for(api_version: str, kind: str) -> str | None:
    """The SCHEMA message name for a kind, or None when the kind has no decoder."""
    return KINDS.get((api_version, kind))


# ---------------------------------------------------------------------------------------------
# Envelope


def _decode_unknown(buf: memoryview) -> dict[str, Any]:
    api_version = kind = encoding = ""
    raw = memoryview(b"")
    for number, wire, value in _fields(buf):
        if number == 1:
            api_version, kind = _type_meta(_expect_len(value, wire, "Unknown.typeMeta"))
        elif number == 2:
            raw = _expect_len(value, wire, "Unknown.raw")
        elif number == 3:
            encoding = _text(_expect_len(value, wire, "Unknown.contentEncoding"))
    if not kind or not api_version:
        raise ProtobufError("the envelope names no apiVersion and kind")
    if encoding:
        raise ProtobufError(f"unsupported contentEncoding {encoding!r}")
    message = message_for(api_version, kind)
    if message is None:
        raise ProtobufError(f"no protobuf decoding for {api_version}, Kind={kind}")
    return {"kind": kind, "apiVersion": api_version, **_message(message, raw, 0)}


def _type_meta(buf: memoryview) -> tuple[str, str]:
    api_version = kind = ""
    for number, wire, value in _fields(buf):
        if number == 1:
            api_version = _text(_expect_len(value, wire, "TypeMeta.apiVersion"))
        elif number == 2:
            kind = _text(_expect_len(value, wire, "TypeMeta.kind"))
    return api_version, kind


# ---------------------------------------------------------------------------------------------
# Wire format


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    for i in range(pos, min(pos + 10, len(buf))):
        byte = buf[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, i + 1
        shift += 7
    if len(buf) - pos >= 10:
        raise ProtobufError(f"varint at offset {pos} is longer than 10 bytes")
    raise ProtobufError(f"truncated varint at offset {pos}")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value) for every field of one message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise ProtobufError(f"invalid field number {number}")
        value: int | memoryview
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        elif wire == LEN:
            size, pos = _varint(buf, pos)
            value, pos = _take(buf, pos, size), pos + size
        elif wire == FIXED64:
            value, pos = _take(buf, pos, 8), pos + 8
        elif wire == FIXED32:
            value, pos = _take(buf, pos, 4), pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire} for field {number}")
        yield number, wire, value


def _take(buf: memoryview, pos: int, size: int) -> memoryview:
    if size > len(buf) - pos:
        raise ProtobufError(f"length {size} at offset {pos} runs past the end of the data")
    return buf[pos : pos + size]


def _expect_len(value: int | memoryview, wire: int, where: str) -> memoryview:
    if wire != LEN or not isinstance(value, memoryview):
        raise ProtobufError(f"{where}: wire type {wire}, expected length-delimited")
    return value


def _expect_varint(value: int | memoryview, wire: int, where: str) -> int:
    if wire != VARINT or not isinstance(value, int):
        raise ProtobufError(f"{where}: wire type {wire}, expected varint")
    return value


def _text(buf: memoryview) -> str:
    # Go keeps invalid UTF-8 in strings and its JSON encoder writes U+FFFD for it.
    return bytes(buf).decode("utf-8", errors="replace")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# ---------------------------------------------------------------------------------------------
# Messages


def _message(name: str, buf: memoryview, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise ProtobufError("messages nested too deeply")
    schema = SCHEMA[name]
    out: dict[str, Any] = {}
    for number, wire, value in _fields(buf):
        field = schema.get(number)
        if field is not None:
            _set(out, field, wire, value, f"{name}.{field.json or field.type}", depth)
    return out


def _set(
    out: dict[str, Any], field: Field, wire: int, value: int | memoryview, where: str, depth: int
) -> None:
    if field.map:
        key, item = _map_entry(field, _expect_len(value, wire, where), where, depth)
        out.setdefault(field.json, {})[key] = item
    elif field.repeated:
        out.setdefault(field.json, []).extend(_items(field.type, wire, value, where, depth))
    elif not field.json:
        out.update(_message(field.type, _expect_len(value, wire, where), depth + 1))
    else:
        decoded = _value(field.type, wire, value, where, depth)
        if field.keep_zero or field.type not in _SCALARS or decoded not in ("", 0):
            out[field.json] = decoded
        else:
            out.pop(field.json, None)


def _items(type_: str, wire: int, value: int | memoryview, where: str, depth: int) -> list[Any]:
    if type_ in _VARINT_TYPES and wire == LEN and isinstance(value, memoryview):
        return _packed(type_, value, where)
    return [_value(type_, wire, value, where, depth)]


def _packed(type_: str, buf: memoryview, where: str) -> list[Any]:
    """A repeated varint field in packed encoding (proto3 style; accepted like Go does)."""
    items: list[Any] = []
    pos = 0
    while pos < len(buf):
        item, pos = _varint(buf, pos)
        items.append(_value(type_, VARINT, item, where, 0))
    return items


def _map_entry(field: Field, buf: memoryview, where: str, depth: int) -> tuple[str, Any]:
    key = ""
    item: Any = _MAP_DEFAULTS.get(field.type, "")
    for number, wire, value in _fields(buf):
        if number == 1:
            key = _text(_expect_len(value, wire, f"{where} key"))
        elif number == 2:
            item = _value(field.type, wire, value, f"{where}[{key!r}]", depth)
    return key, item


def _value(type_: str, wire: int, value: int | memoryview, where: str, depth: int) -> Any:
    if type_ == "string":
        return _text(_expect_len(value, wire, where))
    if type_ == "bytes":
        return base64.b64encode(_expect_len(value, wire, where)).decode("ascii")
    if type_ == "bool":
        return _expect_varint(value, wire, where) != 0
    if type_ == "int32":
        return _signed(_expect_varint(value, wire, where), 32)
    if type_ == "int64":
        return _signed(_expect_varint(value, wire, where), 64)
    buf = _expect_len(value, wire, where)
    special = _SPECIAL.get(type_)
    if special is not None:
        return special(buf)
    return _message(type_, buf, depth + 1)


# ---------------------------------------------------------------------------------------------
# Messages with their own JSON form (apimachinery)


def _scalar_fields(buf: memoryview) -> dict[int, int | memoryview]:
    """The last value of each field of a small message of scalars."""
    return {number: value for number, _, value in _fields(buf)}


def _time(buf: memoryview) -> str | None:
    """meta.Time {seconds=1, nanos=2}: RFC 3339 in whole seconds; empty is the zero time."""
    if not len(buf):
        return None
    seconds = _int_field(buf, 1, 64)
    return _format_time(_at(seconds, 0), micro=False)


def _micro_time(buf: memoryview) -> str | None:
    """meta.MicroTime {seconds=1, nanos=2}: RFC 3339 with microseconds."""
    if not len(buf):
        return None
    return _format_time(_at(_int_field(buf, 1, 64), _int_field(buf, 2, 32)), micro=True)


def _int_field(buf: memoryview, number: int, bits: int) -> int:
    value = _scalar_fields(buf).get(number, 0)
    if not isinstance(value, int):
        raise ProtobufError(f"field {number} of a timestamp is not a varint")
    return _signed(value, bits)


def _at(seconds: int, nanos: int) -> datetime:
    try:
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ProtobufError(f"timestamp {seconds}s is out of range") from None


def _format_time(t: datetime, *, micro: bool) -> str:
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{text}.{t.microsecond:06d}Z" if micro else f"{text}Z"


def _int_or_string(buf: memoryview) -> int | str:
    """intstr.IntOrString {type=1, intVal=2, strVal=3}."""
    fields = _scalar_fields(buf)
    kind, number, text = fields.get(1, 0), fields.get(2, 0), fields.get(3, memoryview(b""))
    if kind == 0 and isinstance(number, int):
        return _signed(number, 32)
    if kind == 1 and isinstance(text, memoryview):
        return _text(text)
    raise ProtobufError("invalid IntOrString: type must be 0 (intVal) or 1 (strVal)")


def _quantity(buf: memoryview) -> str:
    """resource.Quantity {string=1}."""
    text = _scalar_fields(buf).get(1, memoryview(b""))
    if not isinstance(text, memoryview):
        raise ProtobufError("Quantity string must be length-delimited")
    return _text(text) or "0"


def _fields_v1(buf: memoryview) -> Any:
    """meta.FieldsV1 {Raw=1}: raw JSON."""
    raw = _scalar_fields(buf).get(1, memoryview(b""))
    if not isinstance(raw, memoryview):
        raise ProtobufError("FieldsV1 raw must be length-delimited")
    if not len(raw):
        return None
    try:
        return json.loads(bytes(raw))
    except ValueError:
        raise ProtobufError("FieldsV1 does not hold JSON") from None


_SPECIAL = {
    "meta.Time": _time,
    "meta.MicroTime": _micro_time,
    "intstr.IntOrString": _int_or_string,
    "resource.Quantity": _quantity,
    "meta.FieldsV1": _fields_v1,
}
_SCALARS = frozenset({"string", "bytes", "bool", "int32", "int64"})
# Go's value for a map entry whose value field is absent (nil []byte is JSON null).
_MAP_DEFAULTS: dict[str, Any] = {"bytes": None, "resource.Quantity": "0"}
