"""Request bodies into objects, as upstream's handlers decode them.

read_body takes the bytes within the server's limits (size, Content-Encoding), decode_body
parses them by media type (kubesvc.api.bodies, protobuf), and decode_object, decode_apply and
decode_as decode the result into the kind's schema (kubesvc.api.typed) with upstream's
errors and fieldValidation. All but read_body are pure, so large bodies run off the loop.
"""

from __future__ import annotations

import zlib
from typing import Any

from aiohttp import web

from kubesvc.api import bodies, errors, typed
from kubesvc.api.crd import objects as custom
from kubesvc.api.crd.kinds import CustomKind
from kubesvc.api.errors import ApiError, bad_request
from kubesvc.api.kinds import Kind
from kubesvc.api.typed import TypeMismatch
from kubesvc.apiserver.negotiation import content_type

MAX_BODY = 3 * 1024 * 1024  # as kube-apiserver's --max-request-bytes default
MAX_JSON_PATCH_OPS = 10_000
_TYPE_META = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
    'Kind string "json:\\"kind,omitempty\\"" }'
)
MAX_PATCH_DEPTH = typed.MAX_FREE_FORM_DEPTH + 50  # the deepest schema path plus free-form


async def read_body(request: web.Request) -> bytes:
    """The request body, decompressed when its Content-Encoding is gzip or deflate (at most
    MAX_BODY bytes either way). More than the server takes is a 413, before the body is read
    when its Content-Length says so; an encoding the server does not speak is a 415, and a
    body that is not what its encoding says is a 400."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f'unsupported Content-Encoding "{encoding}": supported encodings are gzip, deflate',
        )
    raw = await request.read()
    if encoding in ("gzip", "x-gzip", "deflate"):
        raw = _decompress(raw, encoding)
    return raw


def _too_large() -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}")


def _decompress(raw: bytes, encoding: str) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(raw, MAX_BODY + 1)
        if len(out) > MAX_BODY or d.unconsumed_tail:
            raise _too_large()
        out += d.flush()
        if not d.eof:
            raise zlib.error("incomplete or truncated stream")
    except zlib.error as e:
        raise errors.bad_request(
            f"unable to read the request body: it is not {encoding} data ({_one_line(e)})"
        ) from None
    if len(out) > MAX_BODY:
        raise _too_large()
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def field_validation(request: web.Request) -> str:
    mode = request.query.get("fieldValidation", "Warn") or "Warn"
    if mode not in ("Ignore", "Warn", "Strict"):
        raise errors.bad_request(
            f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"'  # noqa: E501 (upstream wording)
        )
    return mode


def _sniff_type_meta(value: Any) -> None:
    """Upstream reads apiVersion and kind first; a body that has no such shape fails there."""
    if not isinstance(value, dict):
        raise errors.bad_request(
            "couldn't get version/kind; json parse error: json: cannot unmarshal "
            f"{typed.json_kind(value)} into Go value of type {_TYPE_META}"
        )
    for name in ("apiVersion", "kind"):
        v = value.get(name)
        if v is not None and not isinstance(v, str):
            raise errors.bad_request(
                "couldn't get version/kind; json parse error: json: cannot unmarshal "
                f"{typed.json_kind(v)} into Go struct field .{name} of type string"
            )


def decode_as(
    api_version: str, kind: str, parsed: bodies.Parsed, mode: str, expected: Kind | None = None
) -> typed.Decoded:
    """A body decoded into a kind's schema, with upstream's errors in upstream's order (type
    meta, then the body's own apiVersion and kind against `expected`, then types); strict
    decoding errors (unknown and duplicate fields) fail in Strict mode and are left to the
    caller otherwise."""
    _sniff_type_meta(parsed.value)
    if expected is not None:
        _check_type_meta(expected, parsed.value)
    try:
        decoded = typed.decode(api_version, kind, parsed.value, parsed.duplicates)
    except TypeMismatch as e:
        raise errors.bad_request(typed.cannot_handle(api_version, kind, e)) from None
    strict = decoded.strict_errors()
    if strict and mode == "Strict":
        detail = "strict decoding error: " + ", ".join(strict)
        raise errors.bad_request(typed.cannot_handle(api_version, kind, detail))
    return decoded


def _check_type_meta(kind: Kind, obj: dict[str, Any]) -> None:
    api_version, name = obj.get("apiVersion"), obj.get("kind")
    mismatch = f"the API version in the data ({api_version}) does not match the expected API version ({kind.api_version})"  # noqa: E501 (upstream wording)
    if name and name != kind.kind:
        raise errors.bad_request(
            mismatch
            if api_version and api_version != kind.api_version
            else f'{name} in version "{kind.version}" cannot be handled as a {kind.kind}: '
            f'no kind "{name}" is registered for version "{kind.api_version}"'
        )
    if api_version and api_version != kind.api_version:
        raise errors.bad_request(mismatch)


def decode_object(kind: Kind, parsed: bodies.Parsed, mode: str) -> tuple[dict[str, Any], list[str]]:
    """A create/update body: type meta checked, decoded, unknown fields pruned; returns the
    object and the Warning texts."""
    if isinstance(kind, CustomKind):
        return _decode_custom(kind, parsed, mode)
    decoded = decode_as(kind.api_version, kind.kind, parsed, mode, kind)
    obj = decoded.obj
    obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
    return obj, decoded.strict_errors() if mode == "Warn" else []


def _decode_custom(
    kind: CustomKind, parsed: bodies.Parsed, mode: str
) -> tuple[dict[str, Any], list[str]]:
    _sniff_type_meta(parsed.value)
    _check_type_meta(kind, parsed.value)
    try:
        obj, strict = custom.decode(kind, parsed.value, parsed.duplicates)
    except TypeMismatch as e:
        raise errors.bad_request(typed.cannot_handle(kind.api_version, kind.kind, e)) from None
    if strict and mode == "Strict":
        detail = "strict decoding error: " + ", ".join(strict)
        raise errors.bad_request(typed.cannot_handle(kind.api_version, kind.kind, detail))
    obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
    return obj, strict if mode == "Warn" else []


def decode_apply(kind: Kind, parsed: bodies.Parsed) -> dict[str, Any]:
    """A server-side apply configuration, decoded like an object (unknown fields dropped)."""
    value = parsed.value
    if not isinstance(value, dict):
        raise errors.bad_request("the apply patch must be an object")
    _sniff_type_meta(value)
    _check_type_meta(kind, value)
    if isinstance(kind, CustomKind):
        try:
            obj, _ = custom.decode(kind, value, parsed.duplicates)
        except TypeMismatch as e:
            raise errors.bad_request(
                f"failed to create typed patch object ({kind.api_version}, Kind={kind.kind}): {e}"
            ) from None
        obj["apiVersion"], obj["kind"] = kind.storage_api_version, kind.kind
        return obj
    try:
        decoded = typed.decode(kind.api_version, kind.kind, value, parsed.duplicates)
    except TypeMismatch as e:
        group_version = kind.api_version if "/" in kind.api_version else "/" + kind.api_version
        raise errors.bad_request(
            f"failed to create typed patch object ({group_version}, Kind={kind.kind}): {e}"
        ) from None
    obj = decoded.obj
    obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
    return obj


def check_patch_body(patch_type: str, body: Any) -> None:
    """Upstream's bounds on a patch before it is applied."""
    if patch_type == "json" and isinstance(body, list) and len(body) > MAX_JSON_PATCH_OPS:
        raise ApiError(
            413,
            "RequestEntityTooLarge",
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPS}, "
            f"got {len(body)}",
        )
    if not typed.within_depth(body, MAX_PATCH_DEPTH):
        raise errors.bad_request(f"the patch is nested more than {MAX_PATCH_DEPTH} levels deep")


def decode_body(raw: bytes, ctype: str) -> bodies.Parsed:
    """Decode a request body; malformed input is a 400 Status, never a crash."""
    ctype = content_type(ctype)
    if ctype == "application/vnd.kubernetes.protobuf":
        # few clients send protobuf bodies: its schemas are loaded by the first one
        from kubesvc.api import protobuf

        try:
            return bodies.Parsed(protobuf.decode_body(raw))
        except ValueError as e:
            raise bad_request(str(e)) from None
    if not raw.strip():
        raise bad_request(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"  # noqa: E501 (upstream wording)
        )
    if ctype in ("application/yaml", "application/apply-patch+yaml"):
        try:
            return bodies.Parsed(bodies.parse_yaml(raw))
        except bodies.BodyError as e:
            raise bad_request(str(e)) from None
    try:
        return bodies.parse_json(raw)
    except bodies.BodyError as e:
        raise bad_request(f"couldn't get version/kind; json parse error: {e}") from None
