"""Valid objects of every served kind, the typed fields of their OpenAPI schemas, wrong-typed
and hostile values, the expensive request bodies of the hardening issue, and a protobuf
encoder for kubectl's wire form. Pure functions: no sockets, no processes."""

from __future__ import annotations

import base64
import copy
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubesvc.api import openapi, protobuf
from kubesvc.api.kinds import BY_KIND, KINDS, Kind

Obj = dict[str, Any]

# -- valid objects -----------------------------------------------------------------------------

_CONTAINER: Obj = {
    "name": "c",
    "image": "pause",
    "command": ["/pause"],
    "args": ["-v"],
    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
    "env": [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    "readinessProbe": {
        "httpGet": {"path": "/healthz", "port": 8080},
        "periodSeconds": 5,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 3,
    },
    "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 1},
    "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}},
    "imagePullPolicy": "IfNotPresent",
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}

_POD_SPEC: Obj = {
    "containers": [_CONTAINER],
    "volumes": [{"name": "data", "emptyDir": {}}],
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "nodeSelector": {"disk": "ssd"},
    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
    "hostname": "h",
    "subdomain": "s",
}


def sample(kind: str, name: str, namespace: str = "default") -> Obj:
    """A valid object of `kind` named `name` for `namespace` (which only an Event's
    involvedObject names: the request path gives the object's own)."""
    meta: Obj = {
        "name": name,
        "labels": {"app": "hostile", "tier": "t1"},
        "annotations": {"note": "hostile input"},
    }
    body = copy.deepcopy(_BODIES[kind])
    if kind == "Event":
        body["involvedObject"]["namespace"] = namespace
    if kind == "APIService":
        # an APIService is named <version>.<group>: this one serves version `name`
        body["spec"]["version"] = name
        body["spec"].pop("group")
    k = BY_KIND[kind]
    return {"apiVersion": k.api_version, "kind": kind, "metadata": meta, **body}


_SELECTOR: Obj = {"matchLabels": {"app": "hostile"}}
_TEMPLATE: Obj = {"metadata": {"labels": {"app": "hostile"}}, "spec": _POD_SPEC}

_BODIES: dict[str, Obj] = {
    "Namespace": {"spec": {"finalizers": ["kubernetes"]}},
    "Pod": {"spec": _POD_SPEC},
    "Service": {
        "spec": {
            "type": "NodePort",
            "selector": {"app": "hostile"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
            ],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "externalTrafficPolicy": "Cluster",
        }
    },
    "Endpoints": {
        "subsets": [
            {
                "addresses": [{"ip": "10.1.2.3", "hostname": "a", "nodeName": "n1"}],
                "notReadyAddresses": [{"ip": "10.1.2.4"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        ]
    },
    "Secret": {"type": "Opaque", "data": {"k": "dmFsdWU="}, "stringData": {"s": "t"}},
    "ConfigMap": {"data": {"a": "1", "b.txt": "two"}, "binaryData": {"bin": "AAEC"}},
    "Node": {
        "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"}]},
    },
    "Event": {
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u"},
        "reason": "Started",
        "message": "started",
        "type": "Normal",
        "count": 1,
        "source": {"component": "hostile"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
    },
    "Deployment": {
        "spec": {
            "replicas": 2,
            "selector": _SELECTOR,
            "template": _TEMPLATE,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1},
            },
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 600,
        }
    },
    "ReplicaSet": {"spec": {"replicas": 1, "selector": _SELECTOR, "template": _TEMPLATE}},
    "EndpointSlice": {
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["10.1.2.3"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": "n1",
            }
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    },
    "Ingress": {
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
            "tls": [{"hosts": ["example.com"], "secretName": "tls"}],
        }
    },
    "IngressClass": {"spec": {"controller": "example.com/ingress"}},
    "Lease": {
        "spec": {
            "holderIdentity": "h",
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": "2026-01-01T00:00:00.000000Z",
            "leaseTransitions": 0,
        }
    },
    "ReplicationController": {
        "spec": {"replicas": 1, "selector": {"app": "hostile"}, "template": _TEMPLATE}
    },
    "PersistentVolumeClaim": {
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "standard",
            "volumeMode": "Filesystem",
        }
    },
    "PersistentVolume": {
        "spec": {
            "capacity": {"storage": "5Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "standard",
            "hostPath": {"path": "/mnt/data"},
        }
    },
    "ServiceAccount": {"automountServiceAccountToken": False, "secrets": [{"name": "s"}]},
    "ResourceQuota": {
        "spec": {"hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi"}}
    },
    "LimitRange": {
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": "500m"},
                    "defaultRequest": {"cpu": "100m"},
                    "max": {"cpu": "1"},
                }
            ]
        }
    },
    "DaemonSet": {
        "spec": {
            "selector": _SELECTOR,
            "template": _TEMPLATE,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        }
    },
    "StatefulSet": {
        "spec": {
            "serviceName": "web",
            "replicas": 2,
            "selector": _SELECTOR,
            "template": _TEMPLATE,
            "podManagementPolicy": "OrderedReady",
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "www"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        }
    },
    "Job": {
        "spec": {
            "completions": 2,
            "parallelism": 1,
            "backoffLimit": 4,
            "ttlSecondsAfterFinished": 100,
            "template": {"spec": {**_POD_SPEC, "restartPolicy": "Never"}},
        }
    },
    "CronJob": {
        "spec": {
            "schedule": "*/5 * * * *",
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "spec": {"template": {"spec": {**_POD_SPEC, "restartPolicy": "OnFailure"}}}
            },
        }
    },
    "HorizontalPodAutoscaler": {
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
        }
    },
    "PodDisruptionBudget": {"spec": {"minAvailable": 2, "selector": _SELECTOR}},
    "NetworkPolicy": {
        "spec": {
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                        {"podSelector": {"matchLabels": {"role": "frontend"}}},
                    ],
                    "ports": [{"protocol": "TCP", "port": 6379}],
                }
            ],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"port": 5978}]}],
        }
    },
    "PriorityClass": {"value": 1000000, "globalDefault": False, "description": "high priority"},
    "StorageClass": {
        "provisioner": "kubernetes.io/no-provisioner",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
        "parameters": {"type": "local"},
    },
    "Role": {
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]}]
    },
    "ClusterRole": {
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
    },
    "RoleBinding": {
        "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "Role", "name": "pod-reader", "apiGroup": "rbac.authorization.k8s.io"},
    },
    "ClusterRoleBinding": {
        "subjects": [{"kind": "Group", "name": "manager", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {
            "kind": "ClusterRole",
            "name": "secret-reader",
            "apiGroup": "rbac.authorization.k8s.io",
        },
    },
    "APIService": {
        "spec": {
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "insecureSkipTLSVerify": True,
            "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
        }
    },
    "ValidatingAdmissionPolicy": {
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments"],
                    }
                ]
            },
            "validations": [{"expression": "object.spec.replicas <= 5"}],
        }
    },
    "ValidatingAdmissionPolicyBinding": {
        "spec": {"policyName": "demo-policy.example.com", "validationActions": ["Deny"]}
    },
}


def collection_path(kind: Kind, namespace: str) -> str:
    prefix = f"/apis/{kind.api_version}" if kind.group else f"/api/{kind.version}"
    if kind.namespaced:
        return f"{prefix}/namespaces/{namespace}/{kind.plural}"
    return f"{prefix}/{kind.plural}"


def object_path(kind: Kind, namespace: str, name: str) -> str:
    return f"{collection_path(kind, namespace)}/{name}"


# -- typed fields of the OpenAPI schemas ------------------------------------------------------

LIST_ITEM = "[]"  # a path segment: the first item of a list
MAP_VALUE = "{}"  # a path segment: the value under key "k" of a map

# what Go decodes a schema into; "custom" types have their own UnmarshalJSON
STRING, INT32, INT64, BOOL, FLOAT, STRUCT, MAP, ARRAY = (
    "string",
    "int32",
    "int64",
    "bool",
    "float64",
    "struct",
    "map",
    "array",
)
INT_OR_STRING, QUANTITY, TIME, BYTES, FREE = "intstr", "quantity", "time", "bytes", "free"


@dataclass(frozen=True)
class TypedField:
    kind: str  # the served kind whose schema this path is in
    path: tuple[str, ...]  # field names, LIST_ITEM and MAP_VALUE segments
    struct: str  # the innermost Go struct holding the field (as encoding/json names it)
    type: str  # one of the type constants above

    @property
    def dotted(self) -> str:
        """The field path as Go's UnmarshalTypeError prints it: names only, no indices."""
        return ".".join(p for p in self.path if p not in (LIST_ITEM, MAP_VALUE))

    @property
    def id(self) -> str:
        return f"{self.kind}:" + ".".join(self.path)


def _ref_name(schema: Obj) -> str | None:
    ref = schema.get("$ref")
    if ref is None and len(schema.get("allOf", [])) == 1:
        ref = schema["allOf"][0].get("$ref")
    return ref.rsplit(".", 1)[-1] if ref else None


def _type_of(schema: Obj) -> str:
    fmt = schema.get("format")
    if fmt == "int-or-string" or schema.get("x-kubernetes-int-or-string"):
        return INT_OR_STRING
    if "oneOf" in schema or "anyOf" in schema:
        return QUANTITY
    if fmt == "date-time":
        return TIME
    if fmt == "byte":
        return BYTES  # []byte: base64 text, or (as Go allows) an array of numbers
    t = schema.get("type")
    if t == "string":
        return STRING
    if t == "integer":
        return INT64 if fmt == "int64" else INT32
    if t == "boolean":
        return BOOL
    if t == "number":
        return FLOAT
    if t == "array":
        return ARRAY
    if schema.get("properties") is not None:
        return STRUCT
    if isinstance(schema.get("additionalProperties"), dict):
        return MAP
    return FREE  # RawExtension, FieldsV1 and other free-form objects


def _walk(
    doc: Obj,
    schema: Obj,
    kind: str,
    path: tuple[str, ...],
    struct: str,
    seen: frozenset[str],
    out: list[TypedField],
) -> None:
    s = openapi.resolve(doc, schema)
    t = _type_of(s)
    if path:
        out.append(TypedField(kind, path, struct, t))
    if t == STRUCT:
        inner = _ref_name(schema) or struct
        if inner in seen:
            return
        for name, sub in s["properties"].items():
            _walk(doc, sub, kind, (*path, name), inner, seen | {inner}, out)
    elif t in (ARRAY, MAP):
        # the item (or map value) itself, then its own fields
        sub = s["items"] if t == ARRAY else s["additionalProperties"]
        _walk(doc, sub, kind, (*path, LIST_ITEM if t == ARRAY else MAP_VALUE), struct, seen, out)


@functools.cache
def typed_fields(kind: str) -> tuple[TypedField, ...]:
    """Every field reachable in the kind's OpenAPI v3 schema, depth first."""
    k = BY_KIND[kind]
    found = openapi.kind_schema(k.api_version, k.kind)
    assert found is not None, kind
    doc, schema = found
    out: list[TypedField] = []
    _walk(doc, schema, kind, (), kind, frozenset(), out)
    return tuple(out)


def all_typed_fields() -> list[TypedField]:
    return [f for k in KINDS for f in typed_fields(k.kind)]


@dataclass(frozen=True)
class WrongValue:
    value: Any
    go: str  # how Go's UnmarshalTypeError names the JSON value: "string", "number 1.5", ...


def wrong_values(field: TypedField) -> list[WrongValue]:
    """JSON values Go's typed decoding refuses for the field (none for free-form fields)."""
    s, n, b = WrongValue("x", "string"), WrongValue(5, "number"), WrongValue(True, "bool")
    a, o = WrongValue(["x"], "array"), WrongValue({"x": 1}, "object")
    if field.type == STRING:
        return [n, b, a, o]
    if field.type == INT32:
        return [s, b, a, o, WrongValue(1.5, "number 1.5"), WrongValue(2**40, f"number {2**40}")]
    if field.type == INT64:
        return [s, b, a, o, WrongValue(1.5, "number 1.5"), WrongValue(2**70, f"number {2**70}")]
    if field.type == BOOL:
        return [s, n, a, o]
    if field.type == FLOAT:
        return [s, b, a, o]
    if field.type == STRUCT:
        return [s, n, b, a]
    if field.type in (MAP, ARRAY):
        return [s, n, b, o if field.type == ARRAY else a]
    if field.type in (INT_OR_STRING, TIME, QUANTITY):
        return [b, a, o]
    if field.type == BYTES:
        return [n, b, o, WrongValue("not base64!", "string")]
    return []


def plain_go_type(field: TypedField) -> bool:
    """Whether a wrong value at the field gets encoding/json's own `Go struct field` error
    (types with their own UnmarshalJSON word it differently)."""
    return field.type not in (INT_OR_STRING, QUANTITY, TIME, BYTES, FREE)


def set_at(obj: Obj, path: tuple[str, ...], value: Any) -> Obj:
    """obj with `value` at `path`, creating what is missing (first list item, map key "k")."""
    obj = copy.deepcopy(obj)
    node: Any = obj
    for i, seg in enumerate(path):
        last = i == len(path) - 1
        nxt = path[i + 1] if not last else None
        empty: Any = [] if nxt == LIST_ITEM else {}
        if seg == LIST_ITEM:
            if not node:
                node.append(empty)
            if last:
                node[0] = value
            elif not isinstance(node[0], list | dict) or (nxt == LIST_ITEM) != isinstance(
                node[0], list
            ):
                node[0] = empty
            node = node[0]
            continue
        key = "k" if seg == MAP_VALUE else seg
        if seg == MAP_VALUE and node:
            key = next(iter(node))
        if last:
            node[key] = value
            break
        child = node.get(key)
        if not isinstance(child, list | dict) or (nxt == LIST_ITEM) != isinstance(child, list):
            node[key] = empty
        node = node[key]
    return obj


def wrong_type_message(kind: str, version: str, field: TypedField, wrong: WrongValue) -> str:
    """What upstream's 400 for a wrong type at the field contains. apiVersion and kind are
    read first, into an anonymous struct; fields of the other plain Go types name their
    struct and path (the Go type after `of type ` is left out: named types such as
    v1.Protocol are not in the schema); types with their own UnmarshalJSON only share the
    prefix."""
    if field.path in (("apiVersion",), ("kind",)):
        return (
            "couldn't get version/kind; json parse error: json: cannot unmarshal "
            f"{wrong.go} into Go struct field .{field.dotted} of type string"
        )
    prefix = f'{kind} in version "{version}" cannot be handled as a {kind}: '
    if not plain_go_type(field):
        return prefix
    return (
        f"{prefix}json: cannot unmarshal {wrong.go} into Go struct field "
        f"{field.struct}.{field.dotted} of type "
    )


# -- hostile values ----------------------------------------------------------------------------


def nested(depth: int, leaf: Any = 1, kind: str = "array") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "array" else {"a": value}
    return value


def nested_json(depth: int, kind: str = "array") -> bytes:
    """`depth` nested arrays or objects as JSON text (built without recursion)."""
    if kind == "array":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def json_with(obj: Obj, path: tuple[str, ...], literal: bytes) -> bytes:
    """obj as JSON with the raw text `literal` (NaN, 1e400, invalid UTF-8, ...) at path."""
    marker = "__hostile_literal__"
    text = json.dumps(set_at(obj, path, marker), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )
    return text.replace(json.dumps(marker).encode(), literal, 1)


NAN_LITERALS = [b"NaN", b"Infinity", b"-Infinity"]
HUGE_NUMBERS = [b"1e400", b"-1e400", b"18446744073709551616", b"-9223372036854775809", b"1e-400"]
# JSON string literals Go decodes with U+FFFD in place of what is not valid UTF-16 or UTF-8
BAD_TEXT = [b'"\\ud800"', b'"a\\udc00b"', b'"\xff"', b'"\xc3\x28"', b'"\xed\xa0\x80"']


def billion_laughs_yaml(levels: int = 9, width: int = 9) -> bytes:
    """A YAML ConfigMap whose aliases expand to width**levels strings (444 bytes by default)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for i in range(levels - 1):
        name = chr(ord("b") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * width) + "]")
        prev = name
    lines.append("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: laughs}")
    lines.append(f"data: {{x: *{prev}}}")
    return ("\n".join(lines) + "\n").encode()


def copy_doubling_patch(ops: int = 20) -> bytes:
    """A JSON patch whose `copy` operations each copy the annotations into themselves, doubling
    the object `ops` times (20 operations: about 20 MB from 1.8 KB)."""
    body: list[Obj] = [{"op": "add", "path": "/metadata/annotations", "value": {"x": "x" * 10}}]
    body += [
        {"op": "copy", "from": "/metadata/annotations", "path": f"/metadata/annotations/d{i}"}
        for i in range(ops)
    ]
    return json.dumps(body).encode()


def many_keys_yaml(keys: int = 100_000, name: str = "many-keys") -> bytes:
    """A YAML ConfigMap with `keys` data entries (about 1.3 MB for 100,000)."""
    head = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n"
    return (head + "".join(f"  k{i}: v\n" for i in range(keys))).encode()


def big_configmap_json(name: str, size: int = 3 * 1024 * 1024 - 4096) -> bytes:
    """A JSON ConfigMap just under the 3 MiB body limit, in 64 KiB values."""
    chunk = 64 * 1024
    data = {f"k{i}": "x" * chunk for i in range(size // chunk)}
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    ).encode()


# -- protobuf (what kubectl's create generators send) -------------------------------------------


def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, protobuf.LEN) + _varint(len(payload)) + payload


def _seconds(text: str) -> tuple[int, int]:
    t = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    micros = int(text[20:26]) if len(text) > 20 and text[19] == "." else 0
    return int(t.timestamp()), micros * 1000


def _special(type_: str, value: Any) -> bytes:
    if type_ in ("meta.Time", "meta.MicroTime"):
        seconds, nanos = _seconds(value)
        return _key(1, 0) + _varint(seconds) + (_key(2, 0) + _varint(nanos) if nanos else b"")
    if type_ == "intstr.IntOrString":
        if isinstance(value, int):
            return _key(1, 0) + _varint(0) + _key(2, 0) + _varint(value)
        return _key(1, 0) + _varint(1) + _len_field(3, value.encode())
    if type_ == "resource.Quantity":
        return _len_field(1, str(value).encode())
    if type_ == "meta.FieldsV1":
        return _len_field(1, json.dumps(value).encode())
    raise KeyError(type_)


def _scalar(number: int, type_: str, value: Any) -> bytes:
    if type_ == "string":
        return _len_field(number, value.encode())
    if type_ == "bytes":
        return _len_field(number, base64.b64decode(value))
    if type_ in ("bool", "int32", "int64"):
        return _key(number, 0) + _varint(int(value))
    if type_ in protobuf._SPECIAL:
        return _len_field(number, _special(type_, value))
    return _len_field(number, _message(type_, value))


def _message(name: str, obj: Obj) -> bytes:
    out = bytearray()
    for number, f in sorted(protobuf.SCHEMA[name].items()):
        if not f.json:
            out += _len_field(number, _message(f.type, obj))
            continue
        if f.json not in obj or obj[f.json] is None:
            continue
        value = obj[f.json]
        if f.map:
            for k, v in value.items():
                entry = _len_field(1, k.encode()) + _scalar(2, f.type, v)
                out += _len_field(number, entry)
        elif f.repeated:
            for item in value:
                out += _scalar(number, f.type, item)
        else:
            out += _scalar(number, f.type, value)
    return bytes(out)


def to_protobuf(obj: Obj) -> bytes:
    """obj in `application/vnd.kubernetes.protobuf` (the k8s\\x00 envelope, as kubectl)."""
    message = protobuf.message_for(obj["apiVersion"], obj["kind"])
    assert message is not None, obj["kind"]
    type_meta = _len_field(1, obj["apiVersion"].encode()) + _len_field(2, obj["kind"].encode())
    envelope = _len_field(1, type_meta) + _len_field(2, _message(message, obj))
    return protobuf.MAGIC + envelope + _len_field(4, b"application/vnd.kubernetes.protobuf")


def byte_mutations(data: bytes) -> Iterator[bytes]:
    """A few deterministic corruptions of an encoded body: truncations, flipped bytes, an
    inflated length, and garbage appended."""
    n = len(data)
    for cut in (n // 2, n - 1, 5):
        yield data[:cut]
    for pos in (4, n // 3, n - 2):
        yield data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]
    yield data[:5] + b"\xff\xff\xff\xff\x0f" + data[6:]
    yield data + b"\x08"
