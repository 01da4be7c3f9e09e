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

The reader is a plain wire-format walker driven by the `SCHEMA` table below; field numbers
the table does not know are skipped.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

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


class Field(NamedTuple):
    json: str  # Go JSON name; "" for an embedded struct whose fields join the parent
    type: str  # "string", "bytes", "bool", "int32", "int64" or a message name
    repeated: bool = False
    map: bool = False  # map<string, type>
    keep_zero: bool = False  # a zero scalar still appears in the JSON


def opt(name: str, type_: str) -> Field:
    """A non-pointer `omitempty` field, or a message field."""
    return Field(name, type_)


def keep(name: str, type_: str) -> Field:
    """A pointer field, or a non-pointer one without `omitempty`: zero values stay."""
    return Field(name, type_, keep_zero=True)


def rep(name: str, type_: str) -> Field:
    return Field(name, type_, repeated=True)


def mapof(name: str, value_type: str) -> Field:
    return Field(name, value_type, map=True)


def inline(type_: str) -> Field:
    return Field("", type_)


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

# ---------------------------------------------------------------------------------------------
# Schema: the messages reachable from KINDS, with the field numbers of k8s.io/api and
# k8s.io/apimachinery v0.32 generated.proto and the JSON names and `omitempty` flags of the Go
# struct tags (`json:"..." protobuf:"..."`). Map entry messages are folded into `mapof`; the
# apimachinery messages with their own JSON form are handled by _SPECIAL.

KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "core.Namespace",
    ("v1", "Pod"): "core.Pod",
    ("v1", "Service"): "core.Service",
    ("v1", "Endpoints"): "core.Endpoints",
    ("v1", "Secret"): "core.Secret",
    ("v1", "ConfigMap"): "core.ConfigMap",
    ("v1", "Node"): "core.Node",
    ("v1", "Event"): "core.Event",
    ("v1", "Binding"): "core.Binding",
    ("apps/v1", "Deployment"): "apps.Deployment",
    ("apps/v1", "ReplicaSet"): "apps.ReplicaSet",
    ("discovery.k8s.io/v1", "EndpointSlice"): "discovery.EndpointSlice",
    ("networking.k8s.io/v1", "Ingress"): "networking.Ingress",
    ("networking.k8s.io/v1", "IngressClass"): "networking.IngressClass",
    ("coordination.k8s.io/v1", "Lease"): "coordination.Lease",
    ("policy/v1", "Eviction"): "policy.Eviction",
    ("autoscaling/v1", "Scale"): "autoscaling.Scale",
    ("batch/v1", "Job"): "batch.Job",
    ("batch/v1", "CronJob"): "batch.CronJob",
    ("scheduling.k8s.io/v1", "PriorityClass"): "scheduling.PriorityClass",
    ("v1", "ServiceAccount"): "core.ServiceAccount",
    ("v1", "ResourceQuota"): "core.ResourceQuota",
    ("policy/v1", "PodDisruptionBudget"): "policy.PodDisruptionBudget",
    ("rbac.authorization.k8s.io/v1", "Role"): "rbac.Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "rbac.ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rbac.RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "rbac.ClusterRoleBinding",
}

SCHEMA: dict[str, dict[int, Field]] = {
    "core.Namespace": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "core.NamespaceSpec"),
        3: opt("status", "core.NamespaceStatus"),
    },
    "core.Pod": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "core.PodSpec"),
        3: opt("status", "core.PodStatus"),
    },
    "core.Service": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "core.ServiceSpec"),
        3: opt("status", "core.ServiceStatus"),
    },
    "core.Endpoints": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: rep("subsets", "core.EndpointSubset"),
    },
    "core.Secret": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: mapof("data", "bytes"),
        3: opt("type", "string"),
        4: mapof("stringData", "string"),
        5: keep("immutable", "bool"),
    },
    "core.ConfigMap": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: mapof("data", "string"),
        3: mapof("binaryData", "bytes"),
        4: keep("immutable", "bool"),
    },
    "core.Node": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "core.NodeSpec"),
        3: opt("status", "core.NodeStatus"),
    },
    "core.Event": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("involvedObject", "core.ObjectReference"),
        3: opt("reason", "string"),
        4: opt("message", "string"),
        5: opt("source", "core.EventSource"),
        6: opt("firstTimestamp", "meta.Time"),
        7: opt("lastTimestamp", "meta.Time"),
        8: opt("count", "int32"),
        9: opt("type", "string"),
        10: opt("eventTime", "meta.MicroTime"),
        11: opt("series", "core.EventSeries"),
        12: opt("action", "string"),
        13: opt("related", "core.ObjectReference"),
        14: keep("reportingComponent", "string"),
        15: keep("reportingInstance", "string"),
    },
    "core.Binding": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("target", "core.ObjectReference"),
    },
    "apps.Deployment": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "apps.DeploymentSpec"),
        3: opt("status", "apps.DeploymentStatus"),
    },
    "apps.ReplicaSet": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "apps.ReplicaSetSpec"),
        3: opt("status", "apps.ReplicaSetStatus"),
    },
    "discovery.EndpointSlice": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: rep("endpoints", "discovery.Endpoint"),
        3: rep("ports", "discovery.EndpointPort"),
        4: keep("addressType", "string"),
    },
    "networking.Ingress": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "networking.IngressSpec"),
        3: opt("status", "networking.IngressStatus"),
    },
    "networking.IngressClass": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "networking.IngressClassSpec"),
    },
    "coordination.Lease": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "coordination.LeaseSpec"),
    },
    "policy.Eviction": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("deleteOptions", "meta.DeleteOptions"),
    },
    "autoscaling.Scale": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "autoscaling.ScaleSpec"),
        3: opt("status", "autoscaling.ScaleStatus"),
    },
    "meta.ObjectMeta": {
        1: opt("name", "string"),
        2: opt("generateName", "string"),
        3: opt("namespace", "string"),
        4: opt("selfLink", "string"),
        5: opt("uid", "string"),
        6: opt("resourceVersion", "string"),
        7: opt("generation", "int64"),
        8: opt("creationTimestamp", "meta.Time"),
        9: opt("deletionTimestamp", "meta.Time"),
        10: keep("deletionGracePeriodSeconds", "int64"),
        11: mapof("labels", "string"),
        12: mapof("annotations", "string"),
        13: rep("ownerReferences", "meta.OwnerReference"),
        14: rep("finalizers", "string"),
        17: rep("managedFields", "meta.ManagedFieldsEntry"),
    },
    "core.NamespaceSpec": {
        1: rep("finalizers", "string"),
    },
    "core.NamespaceStatus": {
        1: opt("phase", "string"),
        2: rep("conditions", "core.NamespaceCondition"),
    },
    "core.PodSpec": {
        1: rep("volumes", "core.Volume"),
        2: rep("containers", "core.Container"),
        3: opt("restartPolicy", "string"),
        4: keep("terminationGracePeriodSeconds", "int64"),
        5: keep("activeDeadlineSeconds", "int64"),
        6: opt("dnsPolicy", "string"),
        7: mapof("nodeSelector", "string"),
        8: opt("serviceAccountName", "string"),
        9: opt("serviceAccount", "string"),
        10: opt("nodeName", "string"),
        11: opt("hostNetwork", "bool"),
        12: opt("hostPID", "bool"),
        13: opt("hostIPC", "bool"),
        14: opt("securityContext", "core.PodSecurityContext"),
        15: rep("imagePullSecrets", "core.LocalObjectReference"),
        16: opt("hostname", "string"),
        17: opt("subdomain", "string"),
        18: opt("affinity", "core.Affinity"),
        19: opt("schedulerName", "string"),
        20: rep("initContainers", "core.Container"),
        21: keep("automountServiceAccountToken", "bool"),
        22: rep("tolerations", "core.Toleration"),
        23: rep("hostAliases", "core.HostAlias"),
        24: opt("priorityClassName", "string"),
        25: keep("priority", "int32"),
        26: opt("dnsConfig", "core.PodDNSConfig"),
        27: keep("shareProcessNamespace", "bool"),
        28: rep("readinessGates", "core.PodReadinessGate"),
        29: keep("runtimeClassName", "string"),
        30: keep("enableServiceLinks", "bool"),
        31: keep("preemptionPolicy", "string"),
        32: mapof("overhead", "resource.Quantity"),
        33: rep("topologySpreadConstraints", "core.TopologySpreadConstraint"),
        34: rep("ephemeralContainers", "core.EphemeralContainer"),
        35: keep("setHostnameAsFQDN", "bool"),
        36: opt("os", "core.PodOS"),
        37: keep("hostUsers", "bool"),
        38: rep("schedulingGates", "core.PodSchedulingGate"),
        39: rep("resourceClaims", "core.PodResourceClaim"),
        40: opt("resources", "core.ResourceRequirements"),
    },
    "core.PodStatus": {
        1: opt("phase", "string"),
        2: rep("conditions", "core.PodCondition"),
        3: opt("message", "string"),
        4: opt("reason", "string"),
        5: opt("hostIP", "string"),
        6: opt("podIP", "string"),
        7: opt("startTime", "meta.Time"),
        8: rep("containerStatuses", "core.ContainerStatus"),
        9: opt("qosClass", "string"),
        10: rep("initContainerStatuses", "core.ContainerStatus"),
        11: opt("nominatedNodeName", "string"),
        12: rep("podIPs", "core.PodIP"),
        13: rep("ephemeralContainerStatuses", "core.ContainerStatus"),
        14: opt("resize", "string"),
        15: rep("resourceClaimStatuses", "core.PodResourceClaimStatus"),
        16: rep("hostIPs", "core.HostIP"),
    },
    "core.ServiceSpec": {
        1: rep("ports", "core.ServicePort"),
        2: mapof("selector", "string"),
        3: opt("clusterIP", "string"),
        4: opt("type", "string"),
        5: rep("externalIPs", "string"),
        7: opt("sessionAffinity", "string"),
        8: opt("loadBalancerIP", "string"),
        9: rep("loadBalancerSourceRanges", "string"),
        10: opt("externalName", "string"),
        11: opt("externalTrafficPolicy", "string"),
        12: opt("healthCheckNodePort", "int32"),
        13: opt("publishNotReadyAddresses", "bool"),
        14: opt("sessionAffinityConfig", "core.SessionAffinityConfig"),
        17: keep("ipFamilyPolicy", "string"),
        18: rep("clusterIPs", "string"),
        19: rep("ipFamilies", "string"),
        20: keep("allocateLoadBalancerNodePorts", "bool"),
        21: keep("loadBalancerClass", "string"),
        22: keep("internalTrafficPolicy", "string"),
        23: keep("trafficDistribution", "string"),
    },
    "core.ServiceStatus": {
        1: opt("loadBalancer", "core.LoadBalancerStatus"),
        2: rep("conditions", "meta.Condition"),
    },
    "core.EndpointSubset": {
        1: rep("addresses", "core.EndpointAddress"),
        2: rep("notReadyAddresses", "core.EndpointAddress"),
        3: rep("ports", "core.EndpointPort"),
    },
    "core.NodeSpec": {
        1: opt("podCIDR", "string"),
        2: opt("externalID", "string"),
        3: opt("providerID", "string"),
        4: opt("unschedulable", "bool"),
        5: rep("taints", "core.Taint"),
        6: opt("configSource", "core.NodeConfigSource"),
        7: rep("podCIDRs", "string"),
    },
    "core.NodeStatus": {
        1: mapof("capacity", "resource.Quantity"),
        2: mapof("allocatable", "resource.Quantity"),
        3: opt("phase", "string"),
        4: rep("conditions", "core.NodeCondition"),
        5: rep("addresses", "core.NodeAddress"),
        6: opt("daemonEndpoints", "core.NodeDaemonEndpoints"),
        7: opt("nodeInfo", "core.NodeSystemInfo"),
        8: rep("images", "core.ContainerImage"),
        9: rep("volumesInUse", "string"),
        10: rep("volumesAttached", "core.AttachedVolume"),
        11: opt("config", "core.NodeConfigStatus"),
        12: rep("runtimeHandlers", "core.NodeRuntimeHandler"),
        13: opt("features", "core.NodeFeatures"),
    },
    "core.ObjectReference": {
        1: opt("kind", "string"),
        2: opt("namespace", "string"),
        3: opt("name", "string"),
        4: opt("uid", "string"),
        5: opt("apiVersion", "string"),
        6: opt("resourceVersion", "string"),
        7: opt("fieldPath", "string"),
    },
    "core.EventSource": {
        1: opt("component", "string"),
        2: opt("host", "string"),
    },
    "core.EventSeries": {
        1: opt("count", "int32"),
        2: opt("lastObservedTime", "meta.MicroTime"),
    },
    "apps.DeploymentSpec": {
        1: keep("replicas", "int32"),
        2: opt("selector", "meta.LabelSelector"),
        3: opt("template", "core.PodTemplateSpec"),
        4: opt("strategy", "apps.DeploymentStrategy"),
        5: opt("minReadySeconds", "int32"),
        6: keep("revisionHistoryLimit", "int32"),
        7: opt("paused", "bool"),
        9: keep("progressDeadlineSeconds", "int32"),
    },
    "apps.DeploymentStatus": {
        1: opt("observedGeneration", "int64"),
        2: opt("replicas", "int32"),
        3: opt("updatedReplicas", "int32"),
        4: opt("availableReplicas", "int32"),
        5: opt("unavailableReplicas", "int32"),
        6: rep("conditions", "apps.DeploymentCondition"),
        7: opt("readyReplicas", "int32"),
        8: keep("collisionCount", "int32"),
    },
    "batch.Job": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "batch.JobSpec"),
        3: opt("status", "batch.JobStatus"),
    },
    "batch.JobSpec": {
        1: keep("parallelism", "int32"),
        2: keep("completions", "int32"),
        3: keep("activeDeadlineSeconds", "int64"),
        4: opt("selector", "meta.LabelSelector"),
        5: keep("manualSelector", "bool"),
        6: opt("template", "core.PodTemplateSpec"),
        7: keep("backoffLimit", "int32"),
        8: keep("ttlSecondsAfterFinished", "int32"),
        9: keep("completionMode", "string"),
        10: keep("suspend", "bool"),
        12: keep("backoffLimitPerIndex", "int32"),
        13: keep("maxFailedIndexes", "int32"),
        14: keep("podReplacementPolicy", "string"),
        15: keep("managedBy", "string"),
    },
    "batch.JobStatus": {
        1: rep("conditions", "batch.JobCondition"),
        2: opt("startTime", "meta.Time"),
        3: opt("completionTime", "meta.Time"),
        4: opt("active", "int32"),
        5: opt("succeeded", "int32"),
        6: opt("failed", "int32"),
        7: opt("completedIndexes", "string"),
        9: keep("ready", "int32"),
        10: keep("failedIndexes", "string"),
        11: keep("terminating", "int32"),
    },
    "batch.JobCondition": {
        1: opt("type", "string"),
        2: opt("status", "string"),
        3: opt("lastProbeTime", "meta.Time"),
        4: opt("lastTransitionTime", "meta.Time"),
        5: opt("reason", "string"),
        6: opt("message", "string"),
    },
    "batch.CronJob": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "batch.CronJobSpec"),
        3: opt("status", "batch.CronJobStatus"),
    },
    "batch.CronJobSpec": {
        1: keep("schedule", "string"),
        2: keep("startingDeadlineSeconds", "int64"),
        3: opt("concurrencyPolicy", "string"),
        4: keep("suspend", "bool"),
        5: opt("jobTemplate", "batch.JobTemplateSpec"),
        6: keep("successfulJobsHistoryLimit", "int32"),
        7: keep("failedJobsHistoryLimit", "int32"),
        8: keep("timeZone", "string"),
    },
    "batch.JobTemplateSpec": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "batch.JobSpec"),
    },
    "batch.CronJobStatus": {
        1: rep("active", "core.ObjectReference"),
        4: opt("lastScheduleTime", "meta.Time"),
        5: opt("lastSuccessfulTime", "meta.Time"),
    },
    "core.ServiceAccount": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: rep("secrets", "core.ObjectReference"),
        3: rep("imagePullSecrets", "core.LocalObjectReference"),
        4: keep("automountServiceAccountToken", "bool"),
    },
    "core.ResourceQuota": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "core.ResourceQuotaSpec"),
        3: opt("status", "core.ResourceQuotaStatus"),
    },
    "core.ResourceQuotaSpec": {
        1: mapof("hard", "resource.Quantity"),
        2: rep("scopes", "string"),
    },
    "core.ResourceQuotaStatus": {
        1: mapof("hard", "resource.Quantity"),
        2: mapof("used", "resource.Quantity"),
    },
    "policy.PodDisruptionBudget": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "policy.PodDisruptionBudgetSpec"),
        3: opt("status", "policy.PodDisruptionBudgetStatus"),
    },
    "policy.PodDisruptionBudgetSpec": {
        1: opt("minAvailable", "intstr.IntOrString"),
        2: opt("selector", "meta.LabelSelector"),
        3: opt("maxUnavailable", "intstr.IntOrString"),
        4: keep("unhealthyPodEvictionPolicy", "string"),
    },
    "policy.PodDisruptionBudgetStatus": {
        1: opt("observedGeneration", "int64"),
        3: keep("disruptionsAllowed", "int32"),
        4: keep("currentHealthy", "int32"),
        5: keep("desiredHealthy", "int32"),
        6: keep("expectedPods", "int32"),
        7: rep("conditions", "meta.Condition"),
    },
    "rbac.Role": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: rep("rules", "rbac.PolicyRule"),
    },
    "rbac.ClusterRole": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: rep("rules", "rbac.PolicyRule"),
        3: opt("aggregationRule", "rbac.AggregationRule"),
    },
    "rbac.AggregationRule": {1: rep("clusterRoleSelectors", "meta.LabelSelector")},
    "rbac.PolicyRule": {
        1: rep("verbs", "string"),
        2: rep("apiGroups", "string"),
        3: rep("resources", "string"),
        4: rep("resourceNames", "string"),
        5: rep("nonResourceURLs", "string"),
    },
    "rbac.RoleBinding": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: rep("subjects", "rbac.Subject"),
        3: opt("roleRef", "rbac.RoleRef"),
    },
    "rbac.ClusterRoleBinding": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: rep("subjects", "rbac.Subject"),
        3: opt("roleRef", "rbac.RoleRef"),
    },
    "rbac.Subject": {
        1: keep("kind", "string"),
        2: opt("apiGroup", "string"),
        3: keep("name", "string"),
        4: opt("namespace", "string"),
    },
    "rbac.RoleRef": {
        1: keep("apiGroup", "string"),
        2: keep("kind", "string"),
        3: keep("name", "string"),
    },
    "scheduling.PriorityClass": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: keep("value", "int32"),
        3: opt("globalDefault", "bool"),
        4: opt("description", "string"),
        5: keep("preemptionPolicy", "string"),
    },
    "apps.ReplicaSetSpec": {
        1: keep("replicas", "int32"),
        2: opt("selector", "meta.LabelSelector"),
        3: opt("template", "core.PodTemplateSpec"),
        4: opt("minReadySeconds", "int32"),
    },
    "apps.ReplicaSetStatus": {
        1: keep("replicas", "int32"),
        2: opt("fullyLabeledReplicas", "int32"),
        3: opt("observedGeneration", "int64"),
        4: opt("readyReplicas", "int32"),
        5: opt("availableReplicas", "int32"),
        6: rep("conditions", "apps.ReplicaSetCondition"),
    },
    "discovery.Endpoint": {
        1: rep("addresses", "string"),
        2: opt("conditions", "discovery.EndpointConditions"),
        3: keep("hostname", "string"),
        4: opt("targetRef", "core.ObjectReference"),
        5: mapof("deprecatedTopology", "string"),
        6: keep("nodeName", "string"),
        7: keep("zone", "string"),
        8: opt("hints", "discovery.EndpointHints"),
    },
    "discovery.EndpointPort": {
        1: keep("name", "string"),
        2: keep("protocol", "string"),
        3: keep("port", "int32"),
        4: keep("appProtocol", "string"),
    },
    "networking.IngressSpec": {
        1: opt("defaultBackend", "networking.IngressBackend"),
        2: rep("tls", "networking.IngressTLS"),
        3: rep("rules", "networking.IngressRule"),
        4: keep("ingressClassName", "string"),
    },
    "networking.IngressStatus": {
        1: opt("loadBalancer", "networking.IngressLoadBalancerStatus"),
    },
    "networking.IngressClassSpec": {
        1: opt("controller", "string"),
        2: opt("parameters", "networking.IngressClassParametersReference"),
    },
    "coordination.LeaseSpec": {
        1: keep("holderIdentity", "string"),
        2: keep("leaseDurationSeconds", "int32"),
        3: opt("acquireTime", "meta.MicroTime"),
        4: opt("renewTime", "meta.MicroTime"),
        5: keep("leaseTransitions", "int32"),
        6: keep("strategy", "string"),
        7: keep("preferredHolder", "string"),
    },
    "meta.DeleteOptions": {
        1: keep("gracePeriodSeconds", "int64"),
        2: opt("preconditions", "meta.Preconditions"),
        3: keep("orphanDependents", "bool"),
        4: keep("propagationPolicy", "string"),
        5: rep("dryRun", "string"),
        6: keep("ignoreStoreReadErrorWithClusterBreakingPotential", "bool"),
    },
    "autoscaling.ScaleSpec": {
        1: opt("replicas", "int32"),
    },
    "autoscaling.ScaleStatus": {
        1: keep("replicas", "int32"),
        2: opt("selector", "string"),
    },
    "meta.OwnerReference": {
        1: keep("kind", "string"),
        3: keep("name", "string"),
        4: keep("uid", "string"),
        5: keep("apiVersion", "string"),
        6: keep("controller", "bool"),
        7: keep("blockOwnerDeletion", "bool"),
    },
    "meta.ManagedFieldsEntry": {
        1: opt("manager", "string"),
        2: opt("operation", "string"),
        3: opt("apiVersion", "string"),
        4: opt("time", "meta.Time"),
        6: opt("fieldsType", "string"),
        7: opt("fieldsV1", "meta.FieldsV1"),
        8: opt("subresource", "string"),
    },
    "core.NamespaceCondition": {
        1: keep("type", "string"),
        2: keep("status", "string"),
        4: opt("lastTransitionTime", "meta.Time"),
        5: opt("reason", "string"),
        6: opt("message", "string"),
    },
    "core.Volume": {
        1: keep("name", "string"),
        2: inline("core.VolumeSource"),
    },
    "core.Container": {
        1: keep("name", "string"),
        2: opt("image", "string"),
        3: rep("command", "string"),
        4: rep("args", "string"),
        5: opt("workingDir", "string"),
        6: rep("ports", "core.ContainerPort"),
        7: rep("env", "core.EnvVar"),
        8: opt("resources", "core.ResourceRequirements"),
        9: rep("volumeMounts", "core.VolumeMount"),
        10: opt("livenessProbe", "core.Probe"),
        11: opt("readinessProbe", "core.Probe"),
        12: opt("lifecycle", "core.Lifecycle"),
        13: opt("terminationMessagePath", "string"),
        14: opt("imagePullPolicy", "string"),
        15: opt("securityContext", "core.SecurityContext"),
        16: opt("stdin", "bool"),
        17: opt("stdinOnce", "bool"),
        18: opt("tty", "bool"),
        19: rep("envFrom", "core.EnvFromSource"),
        20: opt("terminationMessagePolicy", "string"),
        21: rep("volumeDevices", "core.VolumeDevice"),
        22: opt("startupProbe", "core.Probe"),
        23: rep("resizePolicy", "core.ContainerResizePolicy"),
        24: keep("restartPolicy", "string"),
    },
    "core.EphemeralContainer": {
        1: inline("core.EphemeralContainerCommon"),
        2: opt("targetContainerName", "string"),
    },
    "core.PodSecurityContext": {
        1: opt("seLinuxOptions", "core.SELinuxOptions"),
        2: keep("runAsUser", "int64"),
        3: keep("runAsNonRoot", "bool"),
        4: rep("supplementalGroups", "int64"),
        5: keep("fsGroup", "int64"),
        6: keep("runAsGroup", "int64"),
        7: rep("sysctls", "core.Sysctl"),
        8: opt("windowsOptions", "core.WindowsSecurityContextOptions"),
        9: keep("fsGroupChangePolicy", "string"),
        10: opt("seccompProfile", "core.SeccompProfile"),
        11: opt("appArmorProfile", "core.AppArmorProfile"),
        12: keep("supplementalGroupsPolicy", "string"),
        13: keep("seLinuxChangePolicy", "string"),
    },
    "core.LocalObjectReference": {
        1: opt("name", "string"),
    },
    "core.Affinity": {
        1: opt("nodeAffinity", "core.NodeAffinity"),
        2: opt("podAffinity", "core.PodAffinity"),
        3: opt("podAntiAffinity", "core.PodAntiAffinity"),
    },
    "core.Toleration": {
        1: opt("key", "string"),
        2: opt("operator", "string"),
        3: opt("value", "string"),
        4: opt("effect", "string"),
        5: keep("tolerationSeconds", "int64"),
    },
    "core.HostAlias": {
        1: keep("ip", "string"),
        2: rep("hostnames", "string"),
    },
    "core.PodDNSConfig": {
        1: rep("nameservers", "string"),
        2: rep("searches", "string"),
        3: rep("options", "core.PodDNSConfigOption"),
    },
    "core.PodReadinessGate": {
        1: keep("conditionType", "string"),
    },
    "core.TopologySpreadConstraint": {
        1: keep("maxSkew", "int32"),
        2: keep("topologyKey", "string"),
        3: keep("whenUnsatisfiable", "string"),
        4: opt("labelSelector", "meta.LabelSelector"),
        5: keep("minDomains", "int32"),
        6: keep("nodeAffinityPolicy", "string"),
        7: keep("nodeTaintsPolicy", "string"),
        8: rep("matchLabelKeys", "string"),
    },
    "core.PodOS": {
        1: keep("name", "string"),
    },
    "core.PodSchedulingGate": {
        1: keep("name", "string"),
    },
    "core.PodResourceClaim": {
        1: keep("name", "string"),
        3: keep("resourceClaimName", "string"),
        4: keep("resourceClaimTemplateName", "string"),
    },
    "core.ResourceRequirements": {
        1: mapof("limits", "resource.Quantity"),
        2: mapof("requests", "resource.Quantity"),
        3: rep("claims", "core.ResourceClaim"),
    },
    "core.PodCondition": {
        1: keep("type", "string"),
        2: keep("status", "string"),
        3: opt("lastProbeTime", "meta.Time"),
        4: opt("lastTransitionTime", "meta.Time"),
        5: opt("reason", "string"),
        6: opt("message", "string"),
    },
    "core.HostIP": {
        1: keep("ip", "string"),
    },
    "core.PodIP": {
        1: keep("ip", "string"),
    },
    "core.ContainerStatus": {
        1: keep("name", "string"),
        2: opt("state", "core.ContainerState"),
        3: opt("lastState", "core.ContainerState"),
        4: keep("ready", "bool"),
        5: keep("restartCount", "int32"),
        6: keep("image", "string"),
        7: keep("imageID", "string"),
        8: opt("containerID", "string"),
        9: keep("started", "bool"),
        10: mapof("allocatedResources", "resource.Quantity"),
        11: opt("resources", "core.ResourceRequirements"),
        12: rep("volumeMounts", "core.VolumeMountStatus"),
        13: opt("user", "core.ContainerUser"),
        14: rep("allocatedResourcesStatus", "core.ResourceStatus"),
    },
    "core.PodResourceClaimStatus": {
        1: keep("name", "string"),
        2: keep("resourceClaimName", "string"),
    },
    "core.ServicePort": {
        1: opt("name", "string"),
        2: opt("protocol", "string"),
        3: keep("port", "int32"),
        4: opt("targetPort", "intstr.IntOrString"),
        5: opt("nodePort", "int32"),
        6: keep("appProtocol", "string"),
    },
    "core.SessionAffinityConfig": {
        1: opt("clientIP", "core.ClientIPConfig"),
    },
    "core.LoadBalancerStatus": {
        1: rep("ingress", "core.LoadBalancerIngress"),
    },
    "meta.Condition": {
        1: keep("type", "string"),
        2: keep("status", "string"),
        3: opt("observedGeneration", "int64"),
        4: opt("lastTransitionTime", "meta.Time"),
        5: keep("reason", "string"),
        6: keep("message", "string"),
    },
    "core.EndpointAddress": {
        1: keep("ip", "string"),
        2: opt("targetRef", "core.ObjectReference"),
        3: opt("hostname", "string"),
        4: keep("nodeName", "string"),
    },
    "core.EndpointPort": {
        1: opt("name", "string"),
        2: keep("port", "int32"),
        3: opt("protocol", "string"),
        4: keep("appProtocol", "string"),
    },
    "core.Taint": {
        1: keep("key", "string"),
        2: opt("value", "string"),
        3: keep("effect", "string"),
        4: opt("timeAdded", "meta.Time"),
    },
    "core.NodeConfigSource": {
        2: opt("configMap", "core.ConfigMapNodeConfigSource"),
    },
    "core.NodeCondition": {
        1: keep("type", "string"),
        2: keep("status", "string"),
        3: opt("lastHeartbeatTime", "meta.Time"),
        4: opt("lastTransitionTime", "meta.Time"),
        5: opt("reason", "string"),
        6: opt("message", "string"),
    },
    "core.NodeAddress": {
        1: keep("type", "string"),
        2: keep("address", "string"),
    },
    "core.NodeDaemonEndpoints": {
        1: opt("kubeletEndpoint", "core.DaemonEndpoint"),
    },
    "core.NodeSystemInfo": {
        1: keep("machineID", "string"),
        2: keep("systemUUID", "string"),
        3: keep("bootID", "string"),
        4: keep("kernelVersion", "string"),
        5: keep("osImage", "string"),
        6: keep("containerRuntimeVersion", "string"),
        7: keep("kubeletVersion", "string"),
        8: keep("kubeProxyVersion", "string"),
        9: keep("operatingSystem", "string"),
        10: keep("architecture", "string"),
    },
    "core.ContainerImage": {
        1: rep("names", "string"),
        2: opt("sizeBytes", "int64"),
    },
    "core.AttachedVolume": {
        1: keep("name", "string"),
        2: keep("devicePath", "string"),
    },
    "core.NodeConfigStatus": {
        1: opt("assigned", "core.NodeConfigSource"),
        2: opt("active", "core.NodeConfigSource"),
        3: opt("lastKnownGood", "core.NodeConfigSource"),
        4: opt("error", "string"),
    },
    "core.NodeRuntimeHandler": {
        1: keep("name", "string"),
        2: opt("features", "core.NodeRuntimeHandlerFeatures"),
    },
    "core.NodeFeatures": {
        1: keep("supplementalGroupsPolicy", "bool"),
    },
    "meta.LabelSelector": {
        1: mapof("matchLabels", "string"),
        2: rep("matchExpressions", "meta.LabelSelectorRequirement"),
    },
    "core.PodTemplateSpec": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "core.PodSpec"),
    },
    "apps.DeploymentStrategy": {
        1: opt("type", "string"),
        2: opt("rollingUpdate", "apps.RollingUpdateDeployment"),
    },
    "apps.DeploymentCondition": {
        1: keep("type", "string"),
        2: keep("status", "string"),
        4: opt("reason", "string"),
        5: opt("message", "string"),
        6: opt("lastUpdateTime", "meta.Time"),
        7: opt("lastTransitionTime", "meta.Time"),
    },
    "apps.ReplicaSetCondition": {
        1: keep("type", "string"),
        2: keep("status", "string"),
        3: opt("lastTransitionTime", "meta.Time"),
        4: opt("reason", "string"),
        5: opt("message", "string"),
    },
    "discovery.EndpointConditions": {
        1: keep("ready", "bool"),
        2: keep("serving", "bool"),
        3: keep("terminating", "bool"),
    },
    "discovery.EndpointHints": {
        1: rep("forZones", "discovery.ForZone"),
    },
    "networking.IngressBackend": {
        3: opt("resource", "core.TypedLocalObjectReference"),
        4: opt("service", "networking.IngressServiceBackend"),
    },
    "networking.IngressTLS": {
        1: rep("hosts", "string"),
        2: opt("secretName", "string"),
    },
    "networking.IngressRule": {
        1: opt("host", "string"),
        2: inline("networking.IngressRuleValue"),
    },
    "networking.IngressLoadBalancerStatus": {
        1: rep("ingress", "networking.IngressLoadBalancerIngress"),
    },
    "networking.IngressClassParametersReference": {
        1: keep("apiGroup", "string"),
        2: keep("kind", "string"),
        3: keep("name", "string"),
        4: keep("scope", "string"),
        5: keep("namespace", "string"),
    },
    "meta.Preconditions": {
        1: keep("uid", "string"),
        2: keep("resourceVersion", "string"),
    },
    "core.VolumeSource": {
        1: opt("hostPath", "core.HostPathVolumeSource"),
        2: opt("emptyDir", "core.EmptyDirVolumeSource"),
        3: opt("gcePersistentDisk", "core.GCEPersistentDiskVolumeSource"),
        4: opt("awsElasticBlockStore", "core.AWSElasticBlockStoreVolumeSource"),
        5: opt("gitRepo", "core.GitRepoVolumeSource"),
        6: opt("secret", "core.SecretVolumeSource"),
        7: opt("nfs", "core.NFSVolumeSource"),
        8: opt("iscsi", "core.ISCSIVolumeSource"),
        9: opt("glusterfs", "core.GlusterfsVolumeSource"),
        10: opt("persistentVolumeClaim", "core.PersistentVolumeClaimVolumeSource"),
        11: opt("rbd", "core.RBDVolumeSource"),
        12: opt("flexVolume", "core.FlexVolumeSource"),
        13: opt("cinder", "core.CinderVolumeSource"),
        14: opt("cephfs", "core.CephFSVolumeSource"),
        15: opt("flocker", "core.FlockerVolumeSource"),
        16: opt("downwardAPI", "core.DownwardAPIVolumeSource"),
        17: opt("fc", "core.FCVolumeSource"),
        18: opt("azureFile", "core.AzureFileVolumeSource"),
        19: opt("configMap", "core.ConfigMapVolumeSource"),
        20: opt("vsphereVolume", "core.VsphereVirtualDiskVolumeSource"),
        21: opt("quobyte", "core.QuobyteVolumeSource"),
        22: opt("azureDisk", "core.AzureDiskVolumeSource"),
        23: opt("photonPersistentDisk", "core.PhotonPersistentDiskVolumeSource"),
        24: opt("portworxVolume", "core.PortworxVolumeSource"),
        25: opt("scaleIO", "core.ScaleIOVolumeSource"),
        26: opt("projected", "core.ProjectedVolumeSource"),
        27: opt("storageos", "core.StorageOSVolumeSource"),
        28: opt("csi", "core.CSIVolumeSource"),
        29: opt("ephemeral", "core.EphemeralVolumeSource"),
        30: opt("image", "core.ImageVolumeSource"),
    },
    "core.ContainerPort": {
        1: opt("name", "string"),
        2: opt("hostPort", "int32"),
        3: keep("containerPort", "int32"),
        4: opt("protocol", "string"),
        5: opt("hostIP", "string"),
    },
    "core.EnvFromSource": {
        1: opt("prefix", "string"),
        2: opt("configMapRef", "core.ConfigMapEnvSource"),
        3: opt("secretRef", "core.SecretEnvSource"),
    },
    "core.EnvVar": {
        1: keep("name", "string"),
        2: opt("value", "string"),
        3: opt("valueFrom", "core.EnvVarSource"),
    },
    "core.ContainerResizePolicy": {
        1: keep("resourceName", "string"),
        2: keep("restartPolicy", "string"),
    },
    "core.VolumeMount": {
        1: keep("name", "string"),
        2: opt("readOnly", "bool"),
        3: keep("mountPath", "string"),
        4: opt("subPath", "string"),
        5: keep("mountPropagation", "string"),
        6: opt("subPathExpr", "string"),
        7: keep("recursiveReadOnly", "string"),
    },
    "core.VolumeDevice": {
        1: keep("name", "string"),
        2: keep("devicePath", "string"),
    },
    "core.Probe": {
        1: inline("core.ProbeHandler"),
        2: opt("initialDelaySeconds", "int32"),
        3: opt("timeoutSeconds", "int32"),
        4: opt("periodSeconds", "int32"),
        5: opt("successThreshold", "int32"),
        6: opt("failureThreshold", "int32"),
        7: keep("terminationGracePeriodSeconds", "int64"),
    },
    "core.Lifecycle": {
        1: opt("postStart", "core.LifecycleHandler"),
        2: opt("preStop", "core.LifecycleHandler"),
    },
    "core.SecurityContext": {
        1: opt("capabilities", "core.Capabilities"),
        2: keep("privileged", "bool"),
        3: opt("seLinuxOptions", "core.SELinuxOptions"),
        4: keep("runAsUser", "int64"),
        5: keep("runAsNonRoot", "bool"),
        6: keep("readOnlyRootFilesystem", "bool"),
        7: keep("allowPrivilegeEscalation", "bool"),
        8: keep("runAsGroup", "int64"),
        9: keep("procMount", "string"),
        10: opt("windowsOptions", "core.WindowsSecurityContextOptions"),
        11: opt("seccompProfile", "core.SeccompProfile"),
        12: opt("appArmorProfile", "core.AppArmorProfile"),
    },
    "core.SELinuxOptions": {
        1: opt("user", "string"),
        2: opt("role", "string"),
        3: opt("type", "string"),
        4: opt("level", "string"),
    },
    "core.WindowsSecurityContextOptions": {
        1: keep("gmsaCredentialSpecName", "string"),
        2: keep("gmsaCredentialSpec", "string"),
        3: keep("runAsUserName", "string"),
        4: keep("hostProcess", "bool"),
    },
    "core.Sysctl": {
        1: keep("name", "string"),
        2: keep("value", "string"),
    },
    "core.SeccompProfile": {
        1: keep("type", "string"),
        2: keep("localhostProfile", "string"),
    },
    "core.AppArmorProfile": {
        1: keep("type", "string"),
        2: keep("localhostProfile", "string"),
    },
    "core.NodeAffinity": {
        1: opt("requiredDuringSchedulingIgnoredDuringExecution", "core.NodeSelector"),
        2: rep("preferredDuringSchedulingIgnoredDuringExecution", "core.PreferredSchedulingTerm"),
    },
    "core.PodAffinity": {
        1: rep("requiredDuringSchedulingIgnoredDuringExecution", "core.PodAffinityTerm"),
        2: rep("preferredDuringSchedulingIgnoredDuringExecution", "core.WeightedPodAffinityTerm"),
    },
    "core.PodAntiAffinity": {
        1: rep("requiredDuringSchedulingIgnoredDuringExecution", "core.PodAffinityTerm"),
        2: rep("preferredDuringSchedulingIgnoredDuringExecution", "core.WeightedPodAffinityTerm"),
    },
    "core.PodDNSConfigOption": {
        1: opt("name", "string"),
        2: keep("value", "string"),
    },
    "core.ResourceClaim": {
        1: keep("name", "string"),
        2: opt("request", "string"),
    },
    "core.ContainerState": {
        1: opt("waiting", "core.ContainerStateWaiting"),
        2: opt("running", "core.ContainerStateRunning"),
        3: opt("terminated", "core.ContainerStateTerminated"),
    },
    "core.VolumeMountStatus": {
        1: keep("name", "string"),
        2: keep("mountPath", "string"),
        3: opt("readOnly", "bool"),
        4: keep("recursiveReadOnly", "string"),
    },
    "core.ContainerUser": {
        1: opt("linux", "core.LinuxContainerUser"),
    },
    "core.ResourceStatus": {
        1: keep("name", "string"),
        2: rep("resources", "core.ResourceHealth"),
    },
    "core.ClientIPConfig": {
        1: keep("timeoutSeconds", "int32"),
    },
    "core.LoadBalancerIngress": {
        1: opt("ip", "string"),
        2: opt("hostname", "string"),
        3: keep("ipMode", "string"),
        4: rep("ports", "core.PortStatus"),
    },
    "core.ConfigMapNodeConfigSource": {
        1: keep("namespace", "string"),
        2: keep("name", "string"),
        3: opt("uid", "string"),
        4: opt("resourceVersion", "string"),
        5: keep("kubeletConfigKey", "string"),
    },
    "core.DaemonEndpoint": {
        1: keep("Port", "int32"),
    },
    "core.NodeRuntimeHandlerFeatures": {
        1: keep("recursiveReadOnlyMounts", "bool"),
        2: keep("userNamespaces", "bool"),
    },
    "meta.LabelSelectorRequirement": {
        1: keep("key", "string"),
        2: keep("operator", "string"),
        3: rep("values", "string"),
    },
    "apps.RollingUpdateDeployment": {
        1: opt("maxUnavailable", "intstr.IntOrString"),
        2: opt("maxSurge", "intstr.IntOrString"),
    },
    "discovery.ForZone": {
        1: keep("name", "string"),
    },
    "networking.IngressServiceBackend": {
        1: keep("name", "string"),
        2: opt("port", "networking.ServiceBackendPort"),
    },
    "core.TypedLocalObjectReference": {
        1: keep("apiGroup", "string"),
        2: keep("kind", "string"),
        3: keep("name", "string"),
    },
    "networking.IngressRuleValue": {
        1: opt("http", "networking.HTTPIngressRuleValue"),
    },
    "networking.IngressLoadBalancerIngress": {
        1: opt("ip", "string"),
        2: opt("hostname", "string"),
        4: rep("ports", "networking.IngressPortStatus"),
    },
    "core.HostPathVolumeSource": {
        1: keep("path", "string"),
        2: keep("type", "string"),
    },
    "core.EmptyDirVolumeSource": {
        1: opt("medium", "string"),
        2: opt("sizeLimit", "resource.Quantity"),
    },
    "core.GCEPersistentDiskVolumeSource": {
        1: keep("pdName", "string"),
        2: opt("fsType", "string"),
        3: opt("partition", "int32"),
        4: opt("readOnly", "bool"),
    },
    "core.AWSElasticBlockStoreVolumeSource": {
        1: keep("volumeID", "string"),
        2: opt("fsType", "string"),
        3: opt("partition", "int32"),
        4: opt("readOnly", "bool"),
    },
    "core.GitRepoVolumeSource": {
        1: keep("repository", "string"),
        2: opt("revision", "string"),
        3: opt("directory", "string"),
    },
    "core.SecretVolumeSource": {
        1: opt("secretName", "string"),
        2: rep("items", "core.KeyToPath"),
        3: keep("defaultMode", "int32"),
        4: keep("optional", "bool"),
    },
    "core.NFSVolumeSource": {
        1: keep("server", "string"),
        2: keep("path", "string"),
        3: opt("readOnly", "bool"),
    },
    "core.ISCSIVolumeSource": {
        1: keep("targetPortal", "string"),
        2: keep("iqn", "string"),
        3: keep("lun", "int32"),
        4: opt("iscsiInterface", "string"),
        5: opt("fsType", "string"),
        6: opt("readOnly", "bool"),
        7: rep("portals", "string"),
        8: opt("chapAuthDiscovery", "bool"),
        10: opt("secretRef", "core.LocalObjectReference"),
        11: opt("chapAuthSession", "bool"),
        12: keep("initiatorName", "string"),
    },
    "core.GlusterfsVolumeSource": {
        1: keep("endpoints", "string"),
        2: keep("path", "string"),
        3: opt("readOnly", "bool"),
    },
    "core.PersistentVolumeClaimVolumeSource": {
        1: keep("claimName", "string"),
        2: opt("readOnly", "bool"),
    },
    "core.RBDVolumeSource": {
        1: rep("monitors", "string"),
        2: keep("image", "string"),
        3: opt("fsType", "string"),
        4: opt("pool", "string"),
        5: opt("user", "string"),
        6: opt("keyring", "string"),
        7: opt("secretRef", "core.LocalObjectReference"),
        8: opt("readOnly", "bool"),
    },
    "core.FlexVolumeSource": {
        1: keep("driver", "string"),
        2: opt("fsType", "string"),
        3: opt("secretRef", "core.LocalObjectReference"),
        4: opt("readOnly", "bool"),
        5: mapof("options", "string"),
    },
    "core.CinderVolumeSource": {
        1: keep("volumeID", "string"),
        2: opt("fsType", "string"),
        3: opt("readOnly", "bool"),
        4: opt("secretRef", "core.LocalObjectReference"),
    },
    "core.CephFSVolumeSource": {
        1: rep("monitors", "string"),
        2: opt("path", "string"),
        3: opt("user", "string"),
        4: opt("secretFile", "string"),
        5: opt("secretRef", "core.LocalObjectReference"),
        6: opt("readOnly", "bool"),
    },
    "core.FlockerVolumeSource": {
        1: opt("datasetName", "string"),
        2: opt("datasetUUID", "string"),
    },
    "core.DownwardAPIVolumeSource": {
        1: rep("items", "core.DownwardAPIVolumeFile"),
        2: keep("defaultMode", "int32"),
    },
    "core.FCVolumeSource": {
        1: rep("targetWWNs", "string"),
        2: keep("lun", "int32"),
        3: opt("fsType", "string"),
        4: opt("readOnly", "bool"),
        5: rep("wwids", "string"),
    },
    "core.AzureFileVolumeSource": {
        1: keep("secretName", "string"),
        2: keep("shareName", "string"),
        3: opt("readOnly", "bool"),
    },
    "core.ConfigMapVolumeSource": {
        1: inline("core.LocalObjectReference"),
        2: rep("items", "core.KeyToPath"),
        3: keep("defaultMode", "int32"),
        4: keep("optional", "bool"),
    },
    "core.VsphereVirtualDiskVolumeSource": {
        1: keep("volumePath", "string"),
        2: opt("fsType", "string"),
        3: opt("storagePolicyName", "string"),
        4: opt("storagePolicyID", "string"),
    },
    "core.QuobyteVolumeSource": {
        1: keep("registry", "string"),
        2: keep("volume", "string"),
        3: opt("readOnly", "bool"),
        4: opt("user", "string"),
        5: opt("group", "string"),
        6: opt("tenant", "string"),
    },
    "core.AzureDiskVolumeSource": {
        1: keep("diskName", "string"),
        2: keep("diskURI", "string"),
        3: keep("cachingMode", "string"),
        4: keep("fsType", "string"),
        5: keep("readOnly", "bool"),
        6: keep("kind", "string"),
    },
    "core.PhotonPersistentDiskVolumeSource": {
        1: keep("pdID", "string"),
        2: opt("fsType", "string"),
    },
    "core.ProjectedVolumeSource": {
        1: rep("sources", "core.VolumeProjection"),
        2: keep("defaultMode", "int32"),
    },
    "core.PortworxVolumeSource": {
        1: keep("volumeID", "string"),
        2: opt("fsType", "string"),
        3: opt("readOnly", "bool"),
    },
    "core.ScaleIOVolumeSource": {
        1: keep("gateway", "string"),
        2: keep("system", "string"),
        3: opt("secretRef", "core.LocalObjectReference"),
        4: opt("sslEnabled", "bool"),
        5: opt("protectionDomain", "string"),
        6: opt("storagePool", "string"),
        7: opt("storageMode", "string"),
        8: opt("volumeName", "string"),
        9: opt("fsType", "string"),
        10: opt("readOnly", "bool"),
    },
    "core.StorageOSVolumeSource": {
        1: opt("volumeName", "string"),
        2: opt("volumeNamespace", "string"),
        3: opt("fsType", "string"),
        4: opt("readOnly", "bool"),
        5: opt("secretRef", "core.LocalObjectReference"),
    },
    "core.CSIVolumeSource": {
        1: keep("driver", "string"),
        2: keep("readOnly", "bool"),
        3: keep("fsType", "string"),
        4: mapof("volumeAttributes", "string"),
        5: opt("nodePublishSecretRef", "core.LocalObjectReference"),
    },
    "core.EphemeralVolumeSource": {
        1: opt("volumeClaimTemplate", "core.PersistentVolumeClaimTemplate"),
    },
    "core.ImageVolumeSource": {
        1: opt("reference", "string"),
        2: opt("pullPolicy", "string"),
    },
    "core.ConfigMapEnvSource": {
        1: inline("core.LocalObjectReference"),
        2: keep("optional", "bool"),
    },
    "core.SecretEnvSource": {
        1: inline("core.LocalObjectReference"),
        2: keep("optional", "bool"),
    },
    "core.EnvVarSource": {
        1: opt("fieldRef", "core.ObjectFieldSelector"),
        2: opt("resourceFieldRef", "core.ResourceFieldSelector"),
        3: opt("configMapKeyRef", "core.ConfigMapKeySelector"),
        4: opt("secretKeyRef", "core.SecretKeySelector"),
    },
    "core.ProbeHandler": {
        1: opt("exec", "core.ExecAction"),
        2: opt("httpGet", "core.HTTPGetAction"),
        3: opt("tcpSocket", "core.TCPSocketAction"),
        4: opt("grpc", "core.GRPCAction"),
    },
    "core.LifecycleHandler": {
        1: opt("exec", "core.ExecAction"),
        2: opt("httpGet", "core.HTTPGetAction"),
        3: opt("tcpSocket", "core.TCPSocketAction"),
        4: opt("sleep", "core.SleepAction"),
    },
    "core.Capabilities": {
        1: rep("add", "string"),
        2: rep("drop", "string"),
    },
    "core.NodeSelector": {
        1: rep("nodeSelectorTerms", "core.NodeSelectorTerm"),
    },
    "core.PreferredSchedulingTerm": {
        1: keep("weight", "int32"),
        2: opt("preference", "core.NodeSelectorTerm"),
    },
    "core.PodAffinityTerm": {
        1: opt("labelSelector", "meta.LabelSelector"),
        2: rep("namespaces", "string"),
        3: keep("topologyKey", "string"),
        4: opt("namespaceSelector", "meta.LabelSelector"),
        5: rep("matchLabelKeys", "string"),
        6: rep("mismatchLabelKeys", "string"),
    },
    "core.WeightedPodAffinityTerm": {
        1: keep("weight", "int32"),
        2: opt("podAffinityTerm", "core.PodAffinityTerm"),
    },
    "core.ContainerStateWaiting": {
        1: opt("reason", "string"),
        2: opt("message", "string"),
    },
    "core.ContainerStateRunning": {
        1: opt("startedAt", "meta.Time"),
    },
    "core.ContainerStateTerminated": {
        1: keep("exitCode", "int32"),
        2: opt("signal", "int32"),
        3: opt("reason", "string"),
        4: opt("message", "string"),
        5: opt("startedAt", "meta.Time"),
        6: opt("finishedAt", "meta.Time"),
        7: opt("containerID", "string"),
    },
    "core.LinuxContainerUser": {
        1: keep("uid", "int64"),
        2: keep("gid", "int64"),
        3: rep("supplementalGroups", "int64"),
    },
    "core.ResourceHealth": {
        1: keep("resourceID", "string"),
        2: opt("health", "string"),
    },
    "core.PortStatus": {
        1: keep("port", "int32"),
        2: keep("protocol", "string"),
        3: keep("error", "string"),
    },
    "networking.ServiceBackendPort": {
        1: opt("name", "string"),
        2: opt("number", "int32"),
    },
    "networking.HTTPIngressRuleValue": {
        1: rep("paths", "networking.HTTPIngressPath"),
    },
    "networking.IngressPortStatus": {
        1: keep("port", "int32"),
        2: keep("protocol", "string"),
        3: keep("error", "string"),
    },
    "core.KeyToPath": {
        1: keep("key", "string"),
        2: keep("path", "string"),
        3: keep("mode", "int32"),
    },
    "core.DownwardAPIVolumeFile": {
        1: keep("path", "string"),
        2: opt("fieldRef", "core.ObjectFieldSelector"),
        3: opt("resourceFieldRef", "core.ResourceFieldSelector"),
        4: keep("mode", "int32"),
    },
    "core.VolumeProjection": {
        1: opt("secret", "core.SecretProjection"),
        2: opt("downwardAPI", "core.DownwardAPIProjection"),
        3: opt("configMap", "core.ConfigMapProjection"),
        4: opt("serviceAccountToken", "core.ServiceAccountTokenProjection"),
        5: opt("clusterTrustBundle", "core.ClusterTrustBundleProjection"),
    },
    "core.PersistentVolumeClaimTemplate": {
        1: opt("metadata", "meta.ObjectMeta"),
        2: opt("spec", "core.PersistentVolumeClaimSpec"),
    },
    "core.ObjectFieldSelector": {
        1: opt("apiVersion", "string"),
        2: keep("fieldPath", "string"),
    },
    "core.ResourceFieldSelector": {
        1: opt("containerName", "string"),
        2: keep("resource", "string"),
        3: opt("divisor", "resource.Quantity"),
    },
    "core.ConfigMapKeySelector": {
        1: inline("core.LocalObjectReference"),
        2: keep("key", "string"),
        3: keep("optional", "bool"),
    },
    "core.SecretKeySelector": {
        1: inline("core.LocalObjectReference"),
        2: keep("key", "string"),
        3: keep("optional", "bool"),
    },
    "core.ExecAction": {
        1: rep("command", "string"),
    },
    "core.HTTPGetAction": {
        1: opt("path", "string"),
        2: opt("port", "intstr.IntOrString"),
        3: opt("host", "string"),
        4: opt("scheme", "string"),
        5: rep("httpHeaders", "core.HTTPHeader"),
    },
    "core.TCPSocketAction": {
        1: opt("port", "intstr.IntOrString"),
        2: opt("host", "string"),
    },
    "core.GRPCAction": {
        1: keep("port", "int32"),
        2: keep("service", "string"),
    },
    "core.SleepAction": {
        1: keep("seconds", "int64"),
    },
    "core.NodeSelectorTerm": {
        1: rep("matchExpressions", "core.NodeSelectorRequirement"),
        2: rep("matchFields", "core.NodeSelectorRequirement"),
    },
    "networking.HTTPIngressPath": {
        1: opt("path", "string"),
        2: opt("backend", "networking.IngressBackend"),
        3: keep("pathType", "string"),
    },
    "core.SecretProjection": {
        1: inline("core.LocalObjectReference"),
        2: rep("items", "core.KeyToPath"),
        4: keep("optional", "bool"),
    },
    "core.DownwardAPIProjection": {
        1: rep("items", "core.DownwardAPIVolumeFile"),
    },
    "core.ConfigMapProjection": {
        1: inline("core.LocalObjectReference"),
        2: rep("items", "core.KeyToPath"),
        4: keep("optional", "bool"),
    },
    "core.ServiceAccountTokenProjection": {
        1: opt("audience", "string"),
        2: keep("expirationSeconds", "int64"),
        3: keep("path", "string"),
    },
    "core.ClusterTrustBundleProjection": {
        1: keep("name", "string"),
        2: keep("signerName", "string"),
        3: opt("labelSelector", "meta.LabelSelector"),
        4: keep("path", "string"),
        5: keep("optional", "bool"),
    },
    "core.PersistentVolumeClaimSpec": {
        1: rep("accessModes", "string"),
        2: opt("resources", "core.VolumeResourceRequirements"),
        3: opt("volumeName", "string"),
        4: opt("selector", "meta.LabelSelector"),
        5: keep("storageClassName", "string"),
        6: keep("volumeMode", "string"),
        7: opt("dataSource", "core.TypedLocalObjectReference"),
        8: opt("dataSourceRef", "core.TypedObjectReference"),
        9: keep("volumeAttributesClassName", "string"),
    },
    "core.HTTPHeader": {
        1: keep("name", "string"),
        2: keep("value", "string"),
    },
    "core.NodeSelectorRequirement": {
        1: keep("key", "string"),
        2: keep("operator", "string"),
        3: rep("values", "string"),
    },
    "core.VolumeResourceRequirements": {
        1: mapof("limits", "resource.Quantity"),
        2: mapof("requests", "resource.Quantity"),
    },
    "core.TypedObjectReference": {
        1: keep("apiGroup", "string"),
        2: keep("kind", "string"),
        3: keep("name", "string"),
        4: keep("namespace", "string"),
    },
}

# the same fields as Container, under another name (as in upstream's generated.proto)
SCHEMA["core.EphemeralContainerCommon"] = SCHEMA["core.Container"]
