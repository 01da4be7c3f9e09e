"""Typed decoding: a JSON value checked against a kind's schema before anything else sees it.

Upstream decodes every request body into its Go struct, so a value of the wrong JSON type
never reaches validation, storage or any consumer: `{"metadata":{"labels":"x"}}` is a 400
`json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type
map[string]string`. This module does the same from the OpenAPI schemas the server publishes
(openapi_data/), with Go's wording:

- JSON kinds must match the field's type; integers must be integral and fit int32/int64;
  quantities, timestamps and base64 bytes must parse; the first error wins, in document order;
- what Go would produce is what is kept: a null field is dropped, a null map or list entry
  becomes its zero value, a number where a Quantity goes becomes its string;
- fields the schema does not know are removed and reported (with duplicate keys found while
  parsing) for fieldValidation=Warn/Strict, with upstream's strict-decoding paths;
- free-form fields (managedFields' fieldsV1, preserve-unknown-fields) are taken as they are,
  up to MAX_FREE_FORM_DEPTH levels deep.

Schemas are compiled once into small decoder objects, so a Service decodes in tens of µs.
"""

from __future__ import annotations

import binascii
import itertools
import math
import re
from typing import Any

from kubesvc.api import openapi

MAX_FREE_FORM_DEPTH = 100
MAX_STRICT_ERRORS = 100  # unknown and duplicate fields reported (all are pruned)
_DROP = object()
_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$", re.ASCII)
_QUANTITY_SUFFIXES = {
    "",
    "Ki",
    "Mi",
    "Gi",
    "Ti",
    "Pi",
    "Ei",
    "n",
    "u",
    "m",
    "k",
    "M",
    "G",
    "T",
    "P",
    "E",
}
_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$", re.ASCII)
QUANTITY_FORMAT_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class TypeMismatch(ValueError):
    """A value Go's decoder refuses; str() is Go's message."""


class _Key(str):
    """A map key on the path: in strict-decoding paths, not in Go's field path."""

    __slots__ = ()


class _Context:
    __slots__ = ("dropped", "duplicates", "path", "repair", "unknown", "unknown_at")

    def __init__(self, duplicates: dict[int, list[str]] | None, repair: bool = False) -> None:
        self.duplicates = duplicates or {}
        self.path: list[str | int] = []  # field names and list indices
        self.unknown: list[str] = []  # strict-decoding paths of unknown fields
        self.unknown_at: list[str] = []  # strict-decoding paths of duplicate fields
        self.repair = repair  # leave out what does not decode instead of failing
        self.dropped: list[str] = []  # what repair left out: "path: why"

    def drop(self, error: TypeMismatch, depth: int) -> None:
        """In repair mode, forget a value that did not decode (and the path below it)."""
        if not self.repair:
            raise error
        del self.path[depth + 1 :]
        self.dropped.append(f"{self.strict_path()}: {error}")
        self.path.pop()

    def strict_path(self, name: str | None = None) -> str:
        out = ""
        for p in self.path if name is None else [*self.path, name]:
            if isinstance(p, int):
                out += f"[{p}]"
            else:
                out = f"{out}.{p}" if out else p
        return out

    def mismatch(self, what: str, go: str, struct: str) -> TypeMismatch:
        fields = ".".join(p for p in self.path if type(p) is str)
        if struct:
            return TypeMismatch(
                f"json: cannot unmarshal {what} into Go struct field {struct}.{fields} of type {go}"
            )
        return TypeMismatch(f"json: cannot unmarshal {what} into Go value of type {go}")


def json_kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


class _Type:
    __slots__ = ("go",)
    go: str

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        raise NotImplementedError

    def zero(self) -> Any:
        return _DROP


class _String(_Type):
    __slots__ = ()

    def __init__(self) -> None:
        self.go = "string"

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is str:
            return value
        raise ctx.mismatch(json_kind(value), self.go, struct)

    def zero(self) -> Any:
        return ""


class _Int(_Type):
    __slots__ = ("high", "low")

    def __init__(self, go: str) -> None:
        self.go = go
        self.low, self.high = _INT_RANGE.get(go, _INT_RANGE["int64"])

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is int:
            if self.low <= value <= self.high:
                return value
            raise ctx.mismatch(f"number {value}", self.go, struct)
        if type(value) is float:
            raise ctx.mismatch(f"number {_float_text(value)}", self.go, struct)
        raise ctx.mismatch(json_kind(value), self.go, struct)

    def zero(self) -> Any:
        return 0


class _Float(_Type):
    __slots__ = ()

    def __init__(self) -> None:
        self.go = "float64"

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is int or (type(value) is float and math.isfinite(value)):
            return value
        raise ctx.mismatch(json_kind(value), self.go, struct)

    def zero(self) -> Any:
        return 0


class _Bool(_Type):
    __slots__ = ()

    def __init__(self) -> None:
        self.go = "bool"

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is bool:
            return value
        raise ctx.mismatch(json_kind(value), self.go, struct)

    def zero(self) -> Any:
        return False


class _IntOrString(_Type):
    """intstr.IntOrString: a string, or a number decoded as int32."""

    __slots__ = ("as_int",)

    def __init__(self) -> None:
        self.go = "intstr.IntOrString"
        self.as_int = _Int("int32")

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is str:
            return value
        return self.as_int.decode(value, ctx, struct)


class _Quantity(_Type):
    """resource.Quantity: a string or number that parses as a quantity."""

    __slots__ = ()

    def __init__(self) -> None:
        self.go = "resource.Quantity"

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is str:
            text = value.strip()
        elif type(value) is int:
            text = str(value)
        elif type(value) is float:
            text = repr(value)
        else:  # its UnmarshalJSON parses the raw JSON text, which never matches
            raise TypeMismatch(QUANTITY_FORMAT_ERROR)
        check_quantity(text)
        return text


def check_quantity(text: str) -> None:
    """resource.ParseQuantity's errors, as its UnmarshalJSON reports them."""
    m = _QUANTITY.match(text)
    if not text or m is None:
        raise TypeMismatch(QUANTITY_FORMAT_ERROR)
    number, suffix = m.group(1), m.group(2)
    if number.count(".") > 1 or number.strip("+-") in ("", "."):
        raise TypeMismatch("unable to parse numeric part of quantity")
    if suffix not in _QUANTITY_SUFFIXES and not _EXPONENT.match(suffix):
        raise TypeMismatch("unable to parse quantity's suffix")


class _Time(_Type):
    """metav1.Time / MicroTime: an RFC 3339 string (their UnmarshalJSON decodes a string)."""

    __slots__ = ()

    def __init__(self) -> None:
        self.go = "string"

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is not str:
            raise ctx.mismatch(json_kind(value), self.go, struct)
        if not _TIME.match(value):
            raise TypeMismatch(
                f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": '
                f'cannot parse "{value}" as "2006"'
            )
        return value


class _Bytes(_Type):
    """[]byte: a base64 string (encoding/json's StdEncoding, which skips newlines)."""

    __slots__ = ()

    def __init__(self) -> None:
        self.go = "[]uint8"

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is not str:
            raise ctx.mismatch(json_kind(value), self.go, struct)
        bad = base64_error_at(value)
        if bad is not None:
            raise TypeMismatch(f"illegal base64 data at input byte {bad}")
        return value


_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)


def base64_error_at(text: str) -> int | None:
    """Where Go's base64.StdEncoding would fail on text, or None if it decodes."""
    plain = text.replace("\r", "").replace("\n", "")
    m = _B64.match(plain)
    end = m.end() if m else 0
    if end < len(plain):
        return end
    if len(plain) % 4:
        return len(plain) - len(plain) % 4 if "=" not in plain else len(plain.rstrip("="))
    try:
        binascii.a2b_base64(plain, strict_mode=True)
    except binascii.Error:
        return max(len(plain.rstrip("=")) - 1, 0)
    return None


class _FreeForm(_Type):
    """Any JSON (fieldsV1, RawExtension, preserve-unknown-fields), bounded in depth."""

    __slots__ = ()

    def __init__(self, go: str = "map[string]interface {}") -> None:
        self.go = go

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if not within_depth(value, MAX_FREE_FORM_DEPTH):
            raise TypeMismatch(
                f"{ctx.strict_path()}: nested more than {MAX_FREE_FORM_DEPTH} levels deep"
            )
        return value


def within_depth(value: Any, limit: int) -> bool:
    if not isinstance(value, dict | list):
        return True
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return False
        children = current.values() if isinstance(current, dict) else current
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return True


class _List(_Type):
    __slots__ = ("item",)

    def __init__(self, item: _Type) -> None:
        self.item = item
        self.go = "[]" + item.go

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is not list:
            raise ctx.mismatch(json_kind(value), self.go, struct)
        item = self.item
        out: list[Any] | None = None  # a copy only once something differs from the input
        path = ctx.path
        depth = len(path)
        for i, v in enumerate(value):
            if v is None:
                if out is None:
                    out = value[:i]
                zero = item.zero()
                if zero is not _DROP:
                    out.append(zero)
                continue
            path.append(i)
            try:
                r = item.decode(v, ctx, struct)
            except TypeMismatch as e:
                ctx.drop(e, depth)
                if out is None:
                    out = value[:i]
                continue
            path.pop()
            if out is None:
                if r is v:
                    continue
                out = value[:i]
            out.append(r)
        return value if out is None else out


class _Map(_Type):
    __slots__ = ("value",)

    def __init__(self, value: _Type) -> None:
        self.value = value
        self.go = "map[string]" + value.go

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is not dict:
            raise ctx.mismatch(json_kind(value), self.go, struct)
        vt = self.value
        if type(vt) is _String:
            # the common case (labels, annotations, data): no per-entry path bookkeeping
            for v in value.values():
                if type(v) is not str:
                    break
            else:
                return value
        out: dict[str, Any] | None = None  # a copy only once something differs
        path = ctx.path
        depth = len(path)
        for i, (k, v) in enumerate(value.items()):
            if v is None:
                if out is None:
                    out = dict(itertools.islice(value.items(), i))
                zero = vt.zero()
                if zero is not _DROP:
                    out[k] = zero
                continue
            path.append(_Key(k))
            try:
                r = vt.decode(v, ctx, struct)
            except TypeMismatch as e:
                ctx.drop(e, depth)
                if out is None:
                    out = dict(itertools.islice(value.items(), i))
                continue
            path.pop()
            if out is None:
                if r is v:
                    continue
                out = dict(itertools.islice(value.items(), i))
            out[k] = r
        return value if out is None else out


class _Struct(_Type):
    __slots__ = ("fields", "name")

    def __init__(self, name: str, go: str) -> None:
        self.name = name  # "ServiceSpec": Go's struct context in messages
        self.go = go  # "v1.ServiceSpec"
        self.fields: dict[str, _Type] = {}

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is not dict:
            raise ctx.mismatch(json_kind(value), self.go, struct)
        fields = self.fields
        out: dict[str, Any] | None = None  # a copy only once something differs
        path = ctx.path
        dups = ctx.duplicates.get(id(value)) if ctx.duplicates else None
        if dups:
            room = MAX_STRICT_ERRORS - len(ctx.unknown_at)
            ctx.unknown_at.extend([ctx.strict_path(k) for k in dups if k in fields][:room])
        depth = len(path)
        for i, (k, v) in enumerate(value.items()):
            ft = fields.get(k)
            if ft is None or v is None:
                if ft is None and len(ctx.unknown) < MAX_STRICT_ERRORS:
                    ctx.unknown.append(ctx.strict_path(k))
                if out is None:
                    out = dict(itertools.islice(value.items(), i))
                continue
            # well-typed scalars, most of any object, without a call or path bookkeeping
            tv, tf = type(v), type(ft)
            if (
                (tv is str and (tf is _String or tf is _IntOrString))
                or (tv is bool and tf is _Bool)
                or (tv is int and tf is _Int and ft.low <= v <= ft.high)  # type: ignore[attr-defined]
            ):
                if out is not None:
                    out[k] = v
                continue
            path.append(k)
            try:
                r = ft.decode(v, ctx, self.name)
            except TypeMismatch as e:
                ctx.drop(e, depth)
                if out is None:
                    out = dict(itertools.islice(value.items(), i))
                continue
            path.pop()
            if out is None:
                if r is v:
                    continue
                out = dict(itertools.islice(value.items(), i))
            out[k] = r
        return value if out is None else out

    def zero(self) -> Any:
        return {}


def _float_text(value: float) -> str:
    if value.is_integer() and abs(value) < 1e21:
        return f"{value:.1f}"
    return repr(value)


# --------------------------------------------------------------------------- compiling

_compiled: dict[tuple[str, str], _Type] = {}
_SPECIAL: dict[str, Any] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": _IntOrString,
    "io.k8s.apimachinery.pkg.api.resource.Quantity": _Quantity,
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": _Time,
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": _Time,
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": lambda: _FreeForm("v1.FieldsV1"),
    "io.k8s.apimachinery.pkg.runtime.RawExtension": lambda: _FreeForm("runtime.RawExtension"),
}


def _go_name(component: str) -> tuple[str, str]:
    """("ServiceSpec", "v1.ServiceSpec") for "io.k8s.api.core.v1.ServiceSpec"."""
    parts = component.split(".")
    return parts[-1], ".".join(parts[-2:])


def _component(doc_key: str, doc: dict[str, Any], name: str) -> _Type:
    key = (doc_key, name)
    hit = _compiled.get(key)
    if hit is not None:
        return hit
    special = _SPECIAL.get(name)
    if special is not None:
        t: _Type = special()
        _compiled[key] = t
        return t
    schema = doc["components"]["schemas"][name]
    if "properties" in schema:
        struct = _Struct(*_go_name(name))
        _compiled[key] = struct  # before the fields: schemas may refer to themselves
        for prop, sub in schema["properties"].items():
            struct.fields[prop] = _inline(doc_key, doc, sub)
        return struct
    t = _inline(doc_key, doc, schema, name)
    _compiled[key] = t
    return t


def _inline(doc_key: str, doc: dict[str, Any], schema: dict[str, Any], name: str = "") -> _Type:
    if "$ref" in schema:
        return _component(doc_key, doc, schema["$ref"][len(openapi.REF_PREFIX) :])
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        return _inline(doc_key, doc, all_of[0])
    if schema.get("x-kubernetes-preserve-unknown-fields") or "oneOf" in schema or "anyOf" in schema:
        if schema.get("format") == "int-or-string":
            return _IntOrString()
        return _FreeForm()
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "string":
        if fmt == "byte":
            return _Bytes()
        if fmt == "date-time":
            return _Time()
        return _String()
    if kind == "integer":
        return _Int(fmt if fmt in ("int32", "int64") else "int")
    if kind == "number":
        return _Float()
    if kind == "boolean":
        return _Bool()
    if kind == "array":
        items = schema.get("items")
        return _List(_inline(doc_key, doc, items) if isinstance(items, dict) else _FreeForm())
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return _Map(_inline(doc_key, doc, extra))
        if "properties" in schema:
            struct = _Struct(*_go_name(name or "Object"))
            for prop, sub in schema["properties"].items():
                struct.fields[prop] = _inline(doc_key, doc, sub)
            return struct
    return _FreeForm()


def _extra(api_version: str, kind: str) -> _Type | None:
    """Kinds that only appear as subresource bodies (not in the published documents)."""
    doc = openapi.parsed("api/v1")
    assert doc is not None
    meta = _component("api/v1", doc, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    if (api_version, kind) == ("autoscaling/v1", "Scale"):
        spec = _Struct("ScaleSpec", "v1.ScaleSpec")
        spec.fields["replicas"] = _Int("int32")
        status = _Struct("ScaleStatus", "v1.ScaleStatus")
        status.fields.update(replicas=_Int("int32"), selector=_String())
        t = _Struct("Scale", "v1.Scale")
        t.fields.update(apiVersion=_String(), kind=_String(), metadata=meta)
        t.fields.update(spec=spec, status=status)
        return t
    if (api_version, kind) == ("authentication.k8s.io/v1", "TokenRequest"):
        ref = _Struct("BoundObjectReference", "v1.BoundObjectReference")
        ref.fields.update(kind=_String(), apiVersion=_String(), name=_String(), uid=_String())
        spec = _Struct("TokenRequestSpec", "v1.TokenRequestSpec")
        spec.fields.update(
            audiences=_List(_String()), expirationSeconds=_Int("int64"), boundObjectRef=ref
        )
        status = _Struct("TokenRequestStatus", "v1.TokenRequestStatus")
        status.fields.update(token=_String(), expirationTimestamp=_Time())
        t = _Struct("TokenRequest", "v1.TokenRequest")
        t.fields.update(apiVersion=_String(), kind=_String(), metadata=meta)
        t.fields.update(spec=spec, status=status)
        return t
    if (api_version, kind) == ("authentication.k8s.io/v1", "SelfSubjectReview"):
        info = _Struct("UserInfo", "v1.UserInfo")
        info.fields.update(
            username=_String(),
            uid=_String(),
            groups=_List(_String()),
            extra=_Map(_List(_String())),
        )
        status = _Struct("SelfSubjectReviewStatus", "v1.SelfSubjectReviewStatus")
        status.fields["userInfo"] = info
        t = _Struct("SelfSubjectReview", "v1.SelfSubjectReview")
        t.fields.update(apiVersion=_String(), kind=_String(), metadata=meta, status=status)
        return t
    if api_version == "authorization.k8s.io/v1" and kind in _ACCESS_REVIEWS:
        t = _Struct(kind, f"v1.{kind}")
        t.fields.update(apiVersion=_String(), kind=_String(), metadata=meta)
        t.fields.update(spec=_access_review_spec(kind), status=_FreeForm())
        return t
    if (api_version, kind) == ("v1", "Binding"):
        t = _Struct("Binding", "v1.Binding")
        t.fields.update(apiVersion=_String(), kind=_String(), metadata=meta)
        t.fields["target"] = _component("api/v1", doc, "io.k8s.api.core.v1.ObjectReference")
        return t
    return None


_ACCESS_REVIEWS = (
    "SelfSubjectAccessReview",
    "SubjectAccessReview",
    "LocalSubjectAccessReview",
    "SelfSubjectRulesReview",
)


def _access_review_spec(kind: str) -> _Type:
    """authorization.k8s.io/v1 review specs (the status is the server's to write)."""
    if kind == "SelfSubjectRulesReview":
        spec = _Struct("SelfSubjectRulesReviewSpec", "v1.SelfSubjectRulesReviewSpec")
        spec.fields["namespace"] = _String()
        return spec
    requirement = _Struct("FieldSelectorRequirement", "v1.FieldSelectorRequirement")
    requirement.fields.update(key=_String(), operator=_String(), values=_List(_String()))
    fields = _Struct("FieldSelectorAttributes", "v1.FieldSelectorAttributes")
    fields.fields.update(rawSelector=_String(), requirements=_List(requirement))
    labels = _Struct("LabelSelectorAttributes", "v1.LabelSelectorAttributes")
    labels.fields.update(rawSelector=_String(), requirements=_List(requirement))
    resource = _Struct("ResourceAttributes", "v1.ResourceAttributes")
    for name in ("namespace", "verb", "group", "version", "resource", "subresource", "name"):
        resource.fields[name] = _String()
    resource.fields.update(fieldSelector=fields, labelSelector=labels)
    non_resource = _Struct("NonResourceAttributes", "v1.NonResourceAttributes")
    non_resource.fields.update(path=_String(), verb=_String())
    go = (
        "SelfSubjectAccessReviewSpec"
        if kind == "SelfSubjectAccessReview"
        else "SubjectAccessReviewSpec"
    )
    spec = _Struct(go, f"v1.{go}")
    spec.fields.update(resourceAttributes=resource, nonResourceAttributes=non_resource)
    if kind != "SelfSubjectAccessReview":
        spec.fields.update(
            user=_String(), uid=_String(), groups=_List(_String()), extra=_Map(_List(_String()))
        )
    return spec


class _Unstructured(_Type):
    """A custom object: apiVersion, kind and metadata typed as ObjectMeta, the rest kept as it
    is (its custom resource's schema prunes and validates it), bounded in depth."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, _Type]) -> None:
        self.go = "map[string]interface {}"
        self.fields = fields

    def decode(self, value: Any, ctx: _Context, struct: str) -> Any:
        if type(value) is not dict:
            raise ctx.mismatch(json_kind(value), self.go, struct)
        if not within_depth(value, MAX_FREE_FORM_DEPTH):
            raise TypeMismatch(f"the object is nested more than {MAX_FREE_FORM_DEPTH} levels deep")
        dups = ctx.duplicates.get(id(value)) if ctx.duplicates else None
        if dups:
            ctx.unknown_at.extend([ctx.strict_path(k) for k in dups][:MAX_STRICT_ERRORS])
        out = dict(value)
        depth = len(ctx.path)
        for k, ft in self.fields.items():
            v = value.get(k)
            if v is None:
                out.pop(k, None)
                continue
            ctx.path.append(k)
            try:
                out[k] = ft.decode(v, ctx, "ObjectMeta" if k == "metadata" else "")
            except TypeMismatch as e:
                ctx.drop(e, depth)
                out.pop(k, None)
                continue
            ctx.path.pop()
        return out


def _unstructured() -> _Type:
    key = ("extra", "unstructured")
    hit = _compiled.get(key)
    if hit is None:
        doc = openapi.parsed("api/v1")
        assert doc is not None
        meta = _component("api/v1", doc, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        hit = _compiled[key] = _Unstructured(
            {"apiVersion": _String(), "kind": _String(), "metadata": meta}
        )
    return hit


def decode_unstructured(value: Any, duplicates: dict[int, list[str]] | None = None) -> Decoded:
    """A custom object decoded as upstream's unstructured decoding does (see _Unstructured);
    raises TypeMismatch."""
    ctx = _Context(duplicates)
    obj = _unstructured().decode(value, ctx, "")
    return Decoded(obj, ctx.unknown, ctx.unknown_at)


def repair_unstructured(value: Any) -> tuple[Any, list[str]]:
    """A stored custom object without what does not decode (see repair)."""
    ctx = _Context(None, repair=True)
    try:
        obj = _unstructured().decode(value, ctx, "")
    except TypeMismatch as e:
        return {}, [f"(the object): {e}"]
    return obj, ctx.dropped


def kind_type(api_version: str, kind: str) -> _Type | None:
    """The compiled decoder of a kind (or of DeleteOptions, served in every group)."""
    hit = _by_kind.get((api_version, kind))
    if hit is None:
        hit = _by_kind[(api_version, kind)] = _kind_type(api_version, kind)
    return hit


_by_kind: dict[tuple[str, str], _Type | None] = {}


def _kind_type(api_version: str, kind: str) -> _Type | None:
    found = openapi._gvks().get((*_split(api_version), kind))
    if found is None:
        key = ("extra", f"{api_version}/{kind}")
        if key not in _compiled:
            extra = _extra(api_version, kind)
            if extra is None:
                return None
            _compiled[key] = extra
        return _compiled[key]
    doc_key, name = found
    doc = openapi.parsed(doc_key)
    assert doc is not None
    return _component(doc_key, doc, name)


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


# --------------------------------------------------------------------------- decoding


class Decoded:
    __slots__ = ("duplicates", "obj", "unknown")

    def __init__(self, obj: Any, unknown: list[str], duplicates: list[str]) -> None:
        self.obj = obj
        self.unknown = unknown  # pruned from obj (the first MAX_STRICT_ERRORS reported)
        self.duplicates = duplicates

    def strict_errors(self) -> list[str]:
        """Upstream's strict decoding errors: duplicates first, then unknown fields (at most
        MAX_STRICT_ERRORS, as upstream stops collecting there)."""
        errors = [f'duplicate field "{p}"' for p in self.duplicates]
        errors += [f'unknown field "{p}"' for p in self.unknown]
        return errors[:MAX_STRICT_ERRORS]


def decode(
    api_version: str,
    kind: str,
    value: Any,
    duplicates: dict[int, list[str]] | None = None,
) -> Decoded:
    """Decode value as the kind's Go struct would; raises TypeMismatch with Go's message.

    Kinds without a schema pass through unchanged.
    """
    t = kind_type(api_version, kind)
    if t is None:
        return Decoded(value, [], [])
    _check_recursive(api_version, kind, value)
    ctx = _Context(duplicates)
    obj = t.decode(value, ctx, "")
    return Decoded(obj, ctx.unknown, ctx.unknown_at)


# kinds whose schema refers to itself (JSONSchemaProps): their depth is the body's, so it is
# bounded before the (recursive) decoding
_RECURSIVE = {("apiextensions.k8s.io/v1", "CustomResourceDefinition")}
MAX_RECURSIVE_DEPTH = 200


def _check_recursive(api_version: str, kind: str, value: Any) -> None:
    if (api_version, kind) in _RECURSIVE and not within_depth(value, MAX_RECURSIVE_DEPTH):
        raise TypeMismatch(f"the object is nested more than {MAX_RECURSIVE_DEPTH} levels deep")


def repair(api_version: str, kind: str, value: Any) -> tuple[Any, list[str]]:
    """A stored object as the kind's schema allows it: values that do not decode are left
    out (upstream could not decode such an object at all). Returns the object and what was
    left out ("path: why")."""
    t = kind_type(api_version, kind)
    if t is None:
        return value, []
    ctx = _Context(None, repair=True)
    try:
        _check_recursive(api_version, kind, value)
        obj = t.decode(value, ctx, "")
    except TypeMismatch as e:  # the object itself is not an object
        return {}, [f"(the object): {e}"]
    return obj, ctx.dropped


def cannot_handle(api_version: str, kind: str, error: Exception | str) -> str:
    """The create/update wording: `Service in version "v1" cannot be handled as a Service: ...`."""
    version = api_version.rpartition("/")[2]
    return f'{kind} in version "{version}" cannot be handled as a {kind}: {error}'
