"""Server-side `meta.k8s.io/v1` Table columns and row cells, one printer per kind.

Mirrors upstream's pkg/printers/internalversion/printers.go (Kubernetes v1.32). The API server
always generates tables with `Wide: true`, so every row carries the priority-1 cells as well;
kubectl drops those columns itself unless `-o wide` is given.

Objects are the versioned JSON dicts as stored (already defaulted). Cells are `str` or `int`
exactly where upstream uses `string` or `int64`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubesvc.api.table_docs import FIELD_DOCS

Obj = Mapping[str, Any]
Cell = str | int
Column = dict[str, Any]

# --- column descriptions (the swagger docs upstream's column definitions point at) -----------

NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
AGE_DESC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
CONTAINERS_DESC = "Names of each container in the template."
IMAGES_DESC = "Images referenced by each container in the template."

_POD_IP_DESC = (
    "podIP address allocated to the pod. Routable at least within the cluster. Empty if not "
    "yet allocated."
)
_POD_NODE_NAME_DESC = (
    "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate "
    "for scheduling by the scheduler defined in schedulerName. Once this field is set, the "
    "kubelet for this node becomes responsible for the lifecycle of this pod. This field should "
    "not be used to express a desire for the pod to be scheduled on a specific node. "
    "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"
)
_POD_NOMINATED_NODE_DESC = (
    "nominatedNodeName is set only when this pod preempts other pods on the node, but it "
    "cannot be scheduled right away as preemption victims receive their graceful termination "
    "periods. This field does not guarantee that the pod will be scheduled on this node. "
    "Scheduler may decide to place the pod elsewhere if other nodes become available sooner. "
    "Scheduler may also decide to give the resources on this node to a higher priority pod "
    "that is created after preemption. As a result, this field may be different than "
    "PodSpec.nodeName when the pod is scheduled."
)
_POD_READINESS_GATES_DESC = (
    "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when "
    "all its containers are ready AND all conditions specified in the readiness gates have "
    'status equal to "True" More info: '
    "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"
)
_SVC_TYPE_DESC = (
    "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are "
    'ExternalName, ClusterIP, NodePort, and LoadBalancer. "ClusterIP" allocates a '
    "cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by "
    "the selector or if that is not specified, by manual construction of an Endpoints object "
    'or EndpointSlice objects. If clusterIP is "None", no virtual IP is allocated and the '
    'endpoints are published as a set of endpoints rather than a virtual IP. "NodePort" '
    "builds on ClusterIP and allocates a port on every node which routes to the same endpoints "
    'as the clusterIP. "LoadBalancer" builds on NodePort and creates an external load-balancer '
    "(if supported in the current cloud) which routes to the same endpoints as the clusterIP. "
    '"ExternalName" aliases this service to the specified externalName. Several other fields '
    "do not apply to ExternalName services. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types"
)
_SVC_CLUSTER_IP_DESC = (
    "clusterIP is the IP address of the service and is usually assigned randomly. If an "
    "address is specified manually, is in-range (as per system configuration), and is not in "
    "use, it will be allocated to the service; otherwise creation of the service will fail. "
    "This field may not be changed through updates unless the type field is also being changed "
    "to ExternalName (which requires this field to be blank) or the type field is being changed "
    "from ExternalName (in which case this field may optionally be specified, as describe "
    'above).  Valid values are "None", empty string (""), or a valid IP address. Setting this '
    'to "None" makes a "headless service" (no virtual IP), which is useful when direct '
    "endpoint connections are preferred and proxying is not required.  Only applies to types "
    "ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service "
    "of type ExternalName, creation will fail. This field will be wiped when updating a Service "
    "to type ExternalName. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
)
_SVC_EXTERNAL_IPS_DESC = (
    "externalIPs is a list of IP addresses for which nodes in the cluster will also accept "
    "traffic for this service.  These IPs are not managed by Kubernetes.  The user is "
    "responsible for ensuring that traffic arrives at a node with this IP.  A common example "
    "is external load-balancers that are not part of the Kubernetes system."
)
_SVC_PORTS_DESC = (
    "The list of ports that are exposed by this service. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
)
_SVC_SELECTOR_DESC = (
    "Route service traffic to pods with label keys and values matching this selector. If empty "
    "or not present, the service is assumed to have an external process managing its "
    "endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, "
    "and LoadBalancer. Ignored if type is ExternalName. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/"
)
_ENDPOINTS_SUBSETS_DESC = (
    "The set of all endpoints is the union of all subsets. Addresses are placed into subsets "
    "according to the IPs they share. A single address with multiple ports, some of which are "
    "ready and some of which are not (because they come from different containers) will "
    "result in the address being displayed in different subsets for the different ports. No "
    "address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of "
    "addresses and ports that comprise a service."
)
_NODE_ADDRESSES_DESC = (
    "List of addresses reachable to the node. Queried from cloud provider, if available. More "
    "info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is "
    "declared as mergeable, but the merge key is not sufficiently unique, which can cause data "
    "corruption when it is merged. Callers should instead use a full-replacement patch. See "
    "https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change "
    "during the lifetime of a Node. However, there are some exceptions where this may not be "
    "possible, such as Pods that inherit a Node's address in its own status or consumers of "
    "the downward API (status.hostIP)."
)
_EVENT_FIELD_PATH_DESC = (
    "If referring to a piece of an object instead of an entire object, this string should "
    "contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. "
    "For example, if the object reference is to a container within a pod, this would take on "
    'a value like: "spec.containers{name}" (where "name" refers to the name of the container '
    'that triggered the event) or if no container name is specified "spec.containers[2]" '
    "(container with index 2 in this pod). This syntax is chosen only to have some "
    "well-defined way of referencing a part of an object."
)
_SECRET_TYPE_DESC = (
    "Used to facilitate programmatic handling of secret data. More info: "
    "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"
)
_SECRET_DATA_DESC = (
    "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' "
    "or '.'. The serialized form of the secret data is a base64 encoded string, representing "
    "the arbitrary (possibly non-string) data value here. Described in "
    "https://tools.ietf.org/html/rfc4648#section-4"
)
_CONFIGMAP_DATA_DESC = (
    "Data contains the configuration data. Each key must consist of alphanumeric characters, "
    "'-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The "
    "keys stored in Data must not overlap with the keys in the BinaryData field, this is "
    "enforced during validation process."
)
_DEPLOY_SELECTOR_DESC = (
    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the "
    "ones affected by this deployment."
)
_RS_SPEC_REPLICAS_DESC = (
    "Replicas is the number of desired replicas. This is a pointer to distinguish between "
    "explicit zero and unspecified. Defaults to 1. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"
)
_RS_STATUS_REPLICAS_DESC = (
    "Replicas is the most recently oberved number of replicas. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"
)
_RS_SELECTOR_DESC = (
    "Selector is a label query over pods that should match the replica count. If the selector "
    "is empty, it is defaulted to the labels present on the pod template. Label keys and "
    "values that must match in order to be controlled by this replica set. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
)
_ES_ADDRESS_TYPE_DESC = (
    "addressType specifies the type of address carried by this EndpointSlice. All addresses in "
    "this slice must be the same type. This field is immutable after creation. The following "
    "address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: "
    "Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name."
)
_ES_PORTS_DESC = (
    "ports specifies the list of network ports exposed by each endpoint in this slice. Each "
    "port must have a unique name. When ports is empty, it indicates that there are no "
    'defined ports. When a port is defined with a nil port value, it indicates "all ports". '
    "Each slice may include a maximum of 100 ports."
)
_ES_ENDPOINTS_DESC = (
    "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum "
    "of 1000 endpoints."
)
_LEASE_HOLDER_DESC = (
    "holderIdentity contains the identity of the holder of a current lease. If Coordinated "
    "Leader Election is used, the holder identity must be equal to the elected "
    "LeaseCandidate.metadata.name field."
)


def _col(name: str, type_: str, description: str, priority: int = 0, fmt: str = "") -> Column:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


def _name_col(priority: int = 0) -> Column:
    return _col("Name", "string", NAME_DESC, priority, fmt="name")


def _age_col() -> Column:
    return _col("Age", "string", AGE_DESC)


_COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        _name_col(),
        _col(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        _col("Status", "string", "The aggregate status of the containers in this pod."),
        _col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the "
            "last container in this pod has restarted.",
        ),
        _age_col(),
        _col("IP", "string", _POD_IP_DESC, 1),
        _col("Node", "string", _POD_NODE_NAME_DESC, 1),
        _col("Nominated Node", "string", _POD_NOMINATED_NODE_DESC, 1),
        _col("Readiness Gates", "string", _POD_READINESS_GATES_DESC, 1),
    ],
    "Service": [
        _name_col(),
        _col("Type", "string", _SVC_TYPE_DESC),
        _col("Cluster-IP", "string", _SVC_CLUSTER_IP_DESC),
        _col("External-IP", "string", _SVC_EXTERNAL_IPS_DESC),
        _col("Port(s)", "string", _SVC_PORTS_DESC),
        _age_col(),
        _col("Selector", "string", _SVC_SELECTOR_DESC, 1),
    ],
    "Endpoints": [
        _name_col(),
        _col("Endpoints", "string", _ENDPOINTS_SUBSETS_DESC),
        _age_col(),
    ],
    "Node": [
        _name_col(),
        _col("Status", "string", "The status of the node"),
        _col("Roles", "string", "The roles of the node"),
        _age_col(),
        _col("Version", "string", "Kubelet Version reported by the node."),
        _col("Internal-IP", "string", _NODE_ADDRESSES_DESC, 1),
        _col("External-IP", "string", _NODE_ADDRESSES_DESC, 1),
        _col(
            "OS-Image",
            "string",
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 "
            "(wheezy)).",
            1,
        ),
        _col(
            "Kernel-Version",
            "string",
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            1,
        ),
        _col(
            "Container-Runtime",
            "string",
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. "
            "containerd://1.4.2).",
            1,
        ),
    ],
    "Event": [
        _col(
            "Last Seen",
            "string",
            "The time at which the most recent occurrence of this event was recorded.",
        ),
        _col(
            "Type",
            "string",
            "Type of this event (Normal, Warning), new types could be added in the future",
        ),
        _col(
            "Reason",
            "string",
            "This should be a short, machine understandable string that gives the reason for "
            "the transition into the object's current status.",
        ),
        _col("Object", "string", "The object that this event is about."),
        _col("Subobject", "string", _EVENT_FIELD_PATH_DESC, 1),
        _col(
            "Source",
            "string",
            "The component reporting this event. Should be a short machine understandable string.",
            1,
        ),
        _col("Message", "string", "A human-readable description of the status of this operation."),
        _col(
            "First Seen",
            "string",
            "The time at which the event was first recorded. (Time of server receipt is in "
            "TypeMeta.)",
            1,
        ),
        _col("Count", "string", "The number of times this event has occurred.", 1),
        _name_col(priority=1),
    ],
    "Namespace": [
        _name_col(),
        _col("Status", "string", "The status of the namespace"),
        _age_col(),
    ],
    "Secret": [
        _name_col(),
        _col("Type", "string", _SECRET_TYPE_DESC),
        _col("Data", "string", _SECRET_DATA_DESC),
        _age_col(),
    ],
    "ConfigMap": [
        _name_col(),
        _col("Data", "string", _CONFIGMAP_DATA_DESC),
        _age_col(),
    ],
    "Deployment": [
        _name_col(),
        _col("Ready", "string", "Number of the pod with ready state"),
        _col(
            "Up-to-date",
            "string",
            "Total number of non-terminated pods targeted by this deployment that have the "
            "desired template spec.",
        ),
        _col(
            "Available",
            "string",
            "Total number of available pods (ready for at least minReadySeconds) targeted by "
            "this deployment.",
        ),
        _age_col(),
        _col("Containers", "string", CONTAINERS_DESC, 1),
        _col("Images", "string", IMAGES_DESC, 1),
        _col("Selector", "string", _DEPLOY_SELECTOR_DESC, 1),
    ],
    "ReplicaSet": [
        _name_col(),
        _col("Desired", "integer", _RS_SPEC_REPLICAS_DESC),
        _col("Current", "integer", _RS_STATUS_REPLICAS_DESC),
        _col("Ready", "integer", "The number of ready replicas for this replica set."),
        _age_col(),
        _col("Containers", "string", CONTAINERS_DESC, 1),
        _col("Images", "string", IMAGES_DESC, 1),
        _col("Selector", "string", _RS_SELECTOR_DESC, 1),
    ],
    "EndpointSlice": [
        _name_col(),
        _col("AddressType", "string", _ES_ADDRESS_TYPE_DESC),
        _col("Ports", "string", _ES_PORTS_DESC),
        _col("Endpoints", "string", _ES_ENDPOINTS_DESC),
        _age_col(),
    ],
    "Ingress": [
        _name_col(),
        _col(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for additional "
            "configuration",
        ),
        _col(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        _col(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
        ),
        _col("Ports", "string", "Ports of TLS configurations that open"),
        _age_col(),
    ],
    "IngressClass": [
        _name_col(),
        _col("Controller", "string", "Controller that is responsible for handling this class"),
        _col("Parameters", "string", "A reference to a resource with additional parameters"),
        _age_col(),
    ],
    "Lease": [
        _name_col(),
        _col("Holder", "string", _LEASE_HOLDER_DESC),
        _age_col(),
    ],
}

# apiserver's default table convertor (k8s.io/apiserver/pkg/registry/rest/table.go).
_DEFAULT_COLUMNS: list[Column] = [
    _name_col(),
    _col("Created At", "date", AGE_DESC),
]


def column_definitions(kind: str) -> list[dict]:
    """The Table `columnDefinitions` for `kind` (all columns, wide ones have priority 1)."""
    return [dict(c) for c in _columns_of(kind) or _DEFAULT_COLUMNS]


# --- durations and timestamps ----------------------------------------------------------------

_NS_PER_SECOND = 1_000_000_000
_NS_PER_MINUTE = 60 * _NS_PER_SECOND
_NS_PER_HOUR = 60 * _NS_PER_MINUTE


def _trunc_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as Go does."""
    q = abs(a) // b
    return q if a >= 0 else -q


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, for a duration in seconds."""
    ns = round(seconds * _NS_PER_SECOND)
    secs = _trunc_div(ns, _NS_PER_SECOND)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 60 * 2:
        return f"{secs}s"
    minutes = ns // _NS_PER_MINUTE
    if minutes < 10:
        s = secs % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = ns // _NS_PER_HOUR
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def _parse_time(timestamp: str | None) -> datetime | None:
    """An RFC3339 (optionally fractional) timestamp, or None when absent/zero/unparseable."""
    if not timestamp:
        return None
    try:
        t = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    if t.year <= 1:  # Go's zero time
        return None
    return t


def _utc(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _since(t: datetime | None, now: datetime) -> str:
    if t is None:
        return "<unknown>"
    return human_duration((_utc(now) - t).total_seconds())


def age(timestamp: str | None, now: datetime) -> str:
    """Upstream's translateTimestampSince: `<unknown>` for a missing timestamp."""
    return _since(_parse_time(timestamp), now)


# --- small helpers ----------------------------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None when any step is missing or not a mapping."""
    cur = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _name(obj: Obj) -> str:
    return _str(_get(obj, "metadata", "name"))


def _created(obj: Obj, now: datetime) -> str:
    return age(_get(obj, "metadata", "creationTimestamp"), now)


def _format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted `k=v` joined by commas, `<none>` when empty."""
    if not isinstance(labels, Mapping) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


_SELECTOR_OPS = {"In": " in ", "NotIn": " notin "}


def _requirement(key: str, op: str, values: list[str]) -> str:
    """labels.Requirement.String for a LabelSelector requirement; ValueError if invalid."""
    if op in _SELECTOR_OPS:
        if not values:
            raise ValueError("for 'in', 'notin' operators, values set can't be empty")
        return f"{key}{_SELECTOR_OPS[op]}({','.join(sorted(values))})"
    if op in ("Exists", "DoesNotExist"):
        if values:
            raise ValueError("values set must be empty for exists and does not exist")
        return key if op == "Exists" else f"!{key}"
    raise ValueError(f"{op!r} is not a valid label selector operator")


def _selector_string(selector: Any) -> str:
    """metav1.LabelSelectorAsSelector(selector).String(); ValueError if invalid."""
    if not isinstance(selector, Mapping):
        return ""  # nil selector -> labels.Nothing(), which prints as ""
    reqs: list[tuple[str, str]] = []
    for k, v in _map(selector.get("matchLabels")).items():
        reqs.append((k, f"{k}={v}"))
    for expr in _list(selector.get("matchExpressions")):
        key = _str(_get(expr, "key"))
        values = [_str(v) for v in _list(_get(expr, "values"))]
        reqs.append((key, _requirement(key, _str(_get(expr, "operator")), values)))
    reqs.sort(key=lambda r: r[0])
    return ",".join(r for _, r in reqs)


def _format_label_selector(selector: Any) -> str:
    """metav1.FormatLabelSelector: `<none>` when empty, `<error>` when invalid."""
    try:
        text = _selector_string(selector)
    except ValueError:
        return "<error>"
    return text or "<none>"


def _container_cells(containers: Iterable[Any]) -> tuple[str, str]:
    """layoutContainerCells: comma-joined container names and images."""
    items = list(containers)
    names = ",".join(_str(_get(c, "name")) for c in items)
    images = ",".join(_str(_get(c, "image")) for c in items)
    return names, images


def _list_with_more(items: list[str], more: bool, count: int, limit: int) -> str:
    ret = ",".join(items)
    if more:
        return f"{ret} + {count - limit} more..."
    return ret or "<unset>"


def _join_host_port(host: str, port: int) -> str:
    """net.JoinHostPort: brackets around IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _lb_status_string(ingress: Any) -> str:
    """(ingress)LoadBalancerStatusStringer with wide=true: sorted unique IPs/hostnames."""
    found: set[str] = set()
    for entry in _list(ingress):
        ip, hostname = _str(_get(entry, "ip")), _str(_get(entry, "hostname"))
        if ip:
            found.add(ip)
        elif hostname:
            found.add(hostname)
    return ",".join(sorted(found))


# --- Pod --------------------------------------------------------------------------------------


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is not None and (current is None or candidate > current):
        return candidate
    return current


def _last_terminated_at(status: Any) -> datetime | None:
    return _parse_time(_get(status, "lastState", "terminated", "finishedAt"))


def _is_restartable_init(container: Any) -> bool:
    return _get(container, "restartPolicy") == "Always"


def _condition_true(conditions: list[Any], type_: str) -> bool:
    """isPodInitializedConditionTrue-style: the first condition of `type_` decides."""
    for cond in conditions:
        if _get(cond, "type") == type_:
            return _get(cond, "status") == "True"
    return False


def _has_condition_true(conditions: list[Any], type_: str) -> bool:
    return any(_get(c, "type") == type_ and _get(c, "status") == "True" for c in conditions)


def _terminated_reason(term: Any, prefix: str) -> str:
    reason = _str(_get(term, "reason"))
    if reason:
        return prefix + reason
    signal = _int(_get(term, "signal"))
    if signal != 0:
        return f"{prefix}Signal:{signal}"
    return f"{prefix}ExitCode:{_int(_get(term, 'exitCode'))}"


class _PodSummary:
    """The mutable state printPod threads through its init-container and container loops."""

    def __init__(self, pod: Obj) -> None:
        spec, status = _map(pod.get("spec")), _map(pod.get("status"))
        self.spec: Mapping[str, Any] = spec
        self.status: Mapping[str, Any] = status
        self.conditions = _list(status.get("conditions"))
        self.phase = _str(status.get("phase"))
        self.reason = _str(status.get("reason")) or self.phase
        if any(
            _get(c, "type") == "PodScheduled" and _get(c, "reason") == "SchedulingGated"
            for c in self.conditions
        ):
            self.reason = "SchedulingGated"
        self.init_specs = {_str(_get(c, "name")): c for c in _list(spec.get("initContainers"))}
        restartable = sum(1 for c in self.init_specs.values() if _is_restartable_init(c))
        self.total = len(_list(spec.get("containers"))) + restartable
        self.ready = 0
        self.restarts = 0
        self.last_restart: datetime | None = None
        self.sidecar_restarts = 0
        self.sidecar_last_restart: datetime | None = None

    def scan_init_containers(self) -> bool:
        """The init-container loop; returns whether the pod is still initializing."""
        n_init = len(_list(self.spec.get("initContainers")))
        for i, cs in enumerate(_list(self.status.get("initContainerStatuses"))):
            restartable = _is_restartable_init(self.init_specs.get(_str(_get(cs, "name"))))
            self.restarts += _int(_get(cs, "restartCount"))
            self.last_restart = _later(self.last_restart, _last_terminated_at(cs))
            if restartable:
                self.sidecar_restarts += _int(_get(cs, "restartCount"))
                self.sidecar_last_restart = _later(
                    self.sidecar_last_restart, _last_terminated_at(cs)
                )
            terminated = _get(cs, "state", "terminated")
            waiting_reason = _str(_get(cs, "state", "waiting", "reason"))
            if terminated is not None and _int(_get(terminated, "exitCode")) == 0:
                continue
            if restartable and _get(cs, "started") is True:
                if _get(cs, "ready") is True:
                    self.ready += 1
                continue
            if terminated is not None:
                self.reason = _terminated_reason(terminated, "Init:")
            elif waiting_reason and waiting_reason != "PodInitializing":
                self.reason = "Init:" + waiting_reason
            else:
                self.reason = f"Init:{i}/{n_init}"
            return True
        return False

    def scan_containers(self) -> None:
        """The regular-container loop (walked last to first, as upstream does)."""
        self.restarts = self.sidecar_restarts
        self.last_restart = self.sidecar_last_restart
        has_running = False
        for cs in reversed(_list(self.status.get("containerStatuses"))):
            self.restarts += _int(_get(cs, "restartCount"))
            self.last_restart = _later(self.last_restart, _last_terminated_at(cs))
            waiting_reason = _str(_get(cs, "state", "waiting", "reason"))
            terminated = _get(cs, "state", "terminated")
            if waiting_reason:
                self.reason = waiting_reason
            elif terminated is not None:
                self.reason = _terminated_reason(terminated, "")
            elif _get(cs, "ready") is True and _get(cs, "state", "running") is not None:
                has_running = True
                self.ready += 1
        if self.reason == "Completed" and has_running:
            ready = _has_condition_true(self.conditions, "Ready")
            self.reason = "Running" if ready else "NotReady"

    def apply_deletion(self, pod: Obj) -> None:
        if _get(pod, "metadata", "deletionTimestamp") is None:
            return
        if _str(self.status.get("reason")) == "NodeLost":
            self.reason = "Unknown"
        elif self.phase not in ("Succeeded", "Failed"):
            self.reason = "Terminating"

    def restarts_cell(self, now: datetime) -> str:
        if self.restarts != 0 and self.last_restart is not None:
            return f"{self.restarts} ({_since(self.last_restart, now)} ago)"
        return str(self.restarts)


def _readiness_gates(pod: Obj) -> str:
    gates = _list(_get(pod, "spec", "readinessGates"))
    if not gates:
        return "<none>"
    conditions = _list(_get(pod, "status", "conditions"))
    true_count = 0
    for gate in gates:
        for cond in conditions:
            if _get(cond, "type") == _get(gate, "conditionType"):
                if _get(cond, "status") == "True":
                    true_count += 1
                break
    return f"{true_count}/{len(gates)}"


def _pod_ip(pod: Obj) -> str:
    ips = _list(_get(pod, "status", "podIPs"))
    ip = _str(_get(ips[0], "ip")) if ips else _str(_get(pod, "status", "podIP"))
    return ip or "<none>"


def _pod_cells(pod: Obj, now: datetime) -> list[Cell]:
    summary = _PodSummary(pod)
    initializing = summary.scan_init_containers()
    if not initializing or _condition_true(summary.conditions, "Initialized"):
        summary.scan_containers()
    summary.apply_deletion(pod)
    return [
        _name(pod),
        f"{summary.ready}/{summary.total}",
        summary.reason,
        summary.restarts_cell(now),
        _created(pod, now),
        _pod_ip(pod),
        _str(_get(pod, "spec", "nodeName")) or "<none>",
        _str(_get(pod, "status", "nominatedNodeName")) or "<none>",
        _readiness_gates(pod),
    ]


def row_conditions(kind: str, obj: Obj) -> list[dict]:
    """The TableRow `conditions` upstream attaches (only pods in a terminal phase have any)."""
    if kind != "Pod":
        return []
    phase = _get(obj, "status", "phase")
    messages = {
        "Succeeded": "The pod has completed successfully.",
        "Failed": "The pod failed.",
    }
    if phase not in messages:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": messages[phase]}]


# --- Service ----------------------------------------------------------------------------------


def _service_external_ip(svc: Obj) -> str:
    spec = _map(svc.get("spec"))
    external_ips = [_str(ip) for ip in _list(spec.get("externalIPs"))]
    svc_type = _str(spec.get("type")) or "ClusterIP"
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) if external_ips else "<none>"
    if svc_type == "LoadBalancer":
        lb_ips = _lb_status_string(_get(svc, "status", "loadBalancer", "ingress"))
        if external_ips:
            results = (lb_ips.split(",") if lb_ips else []) + external_ips
            return ",".join(results)
        return lb_ips or "<pending>"
    if svc_type == "ExternalName":
        return _str(spec.get("externalName"))
    return "<unknown>"


def _service_ports(ports: list[Any]) -> str:
    pieces = []
    for port in ports:
        number, protocol = _int(_get(port, "port")), _str(_get(port, "protocol")) or "TCP"
        node_port = _int(_get(port, "nodePort"))
        if node_port > 0:
            pieces.append(f"{number}:{node_port}/{protocol}")
        else:
            pieces.append(f"{number}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_cells(svc: Obj, now: datetime) -> list[Cell]:
    spec = _map(svc.get("spec"))
    cluster_ips = _list(spec.get("clusterIPs"))
    if cluster_ips:
        internal_ip = _str(cluster_ips[0])
    else:
        internal_ip = _str(spec.get("clusterIP")) or "<none>"
    return [
        _name(svc),
        _str(spec.get("type")) or "ClusterIP",
        internal_ip,
        _service_external_ip(svc),
        _service_ports(_list(spec.get("ports"))),
        _created(svc, now),
        _format_labels(spec.get("selector")),
    ]


# --- Endpoints / EndpointSlice ----------------------------------------------------------------

_MAX_LISTED = 3


def format_endpoints(endpoints: Obj) -> str:
    """formatEndpoints(endpoints, nil): up to 3 `ip:port`, then ` + N more...`."""
    subsets = _list(endpoints.get("subsets"))
    if not subsets:
        return "<none>"
    listed: list[str] = []
    more = False
    count = 0
    for ss in subsets:
        addresses = [_str(_get(a, "ip")) for a in _list(_get(ss, "addresses"))]
        ports = _list(_get(ss, "ports"))
        # Headless services may have no ports: list the bare IPs once.
        port_numbers: list[int | None] = [_int(_get(p, "port")) for p in ports] or [None]
        for port in port_numbers:
            count += len(addresses)
            for ip in addresses:
                if len(listed) == _MAX_LISTED:
                    more = True
                    break
                listed.append(ip if port is None else _join_host_port(ip, port))
    ret = ",".join(listed)
    if more:
        return f"{ret} + {count - _MAX_LISTED} more..."
    return ret


def _discovery_ports(ports: list[Any]) -> str:
    listed: list[str] = []
    more = False
    for port in ports:
        if len(listed) < _MAX_LISTED:
            number, name = _get(port, "port"), _get(port, "name")
            if number is not None:
                listed.append(str(number))
            elif name is not None:
                listed.append(_str(name))
            else:
                listed.append("*")
        elif len(listed) == _MAX_LISTED:
            more = True
    return _list_with_more(listed, more, len(ports), _MAX_LISTED)


def _discovery_endpoints(endpoints: list[Any]) -> str:
    listed: list[str] = []
    more = False
    count = 0
    for endpoint in endpoints:
        for address in _list(_get(endpoint, "addresses")):
            if len(listed) < _MAX_LISTED:
                listed.append(_str(address))
            elif len(listed) == _MAX_LISTED:
                more = True
            count += 1
    return _list_with_more(listed, more, count, _MAX_LISTED)


def _endpoints_cells(ep: Obj, now: datetime) -> list[Cell]:
    return [_name(ep), format_endpoints(ep), _created(ep, now)]


def _endpoint_slice_cells(es: Obj, now: datetime) -> list[Cell]:
    return [
        _name(es),
        _str(es.get("addressType")),
        _discovery_ports(_list(es.get("ports"))),
        _discovery_endpoints(_list(es.get("endpoints"))),
        _created(es, now),
    ]


# --- Node -------------------------------------------------------------------------------------

_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_ROLE_LABEL = "kubernetes.io/role"


def _node_roles(node: Obj) -> str:
    roles: set[str] = set()
    for key, value in _map(_get(node, "metadata", "labels")).items():
        if key.startswith(_NODE_ROLE_PREFIX):
            if role := key[len(_NODE_ROLE_PREFIX) :]:
                roles.add(role)
        elif key == _NODE_ROLE_LABEL and value:
            roles.add(_str(value))
    return ",".join(sorted(roles)) or "<none>"


def _node_status(node: Obj) -> str:
    ready = None
    for cond in _list(_get(node, "status", "conditions")):
        if _get(cond, "type") == "Ready":
            ready = cond  # later duplicates win, as with upstream's condition map
    status = ["Unknown"] if ready is None else []
    if ready is not None:
        status.append("Ready" if _get(ready, "status") == "True" else "NotReady")
    if _get(node, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")
    return ",".join(status)


def _node_address(node: Obj, address_type: str) -> str:
    for address in _list(_get(node, "status", "addresses")):
        if _get(address, "type") == address_type:
            return _str(_get(address, "address"))
    return "<none>"


def _node_cells(node: Obj, now: datetime) -> list[Cell]:
    info = _map(_get(node, "status", "nodeInfo"))
    return [
        _name(node),
        _node_status(node),
        _node_roles(node),
        _created(node, now),
        _str(info.get("kubeletVersion")),
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        _str(info.get("osImage")) or "<unknown>",
        _str(info.get("kernelVersion")) or "<unknown>",
        _str(info.get("containerRuntimeVersion")) or "<unknown>",
    ]


# --- Event ------------------------------------------------------------------------------------


def _event_source(event: Obj) -> str:
    component = _str(_get(event, "source", "component")) or _str(event.get("reportingComponent"))
    instance = _str(_get(event, "source", "host")) or _str(event.get("reportingInstance"))
    return f"{component}, {instance}" if instance else component


def _event_cells(event: Obj, now: datetime) -> list[Cell]:
    first_ts = _parse_time(event.get("firstTimestamp"))
    first_seen = _since(first_ts if first_ts else _parse_time(event.get("eventTime")), now)
    last_ts = _parse_time(event.get("lastTimestamp"))
    last_seen = _since(last_ts, now) if last_ts else first_seen
    count = _int(event.get("count"))
    series = event.get("series")
    if series is not None:
        last_seen = _since(_parse_time(_get(series, "lastObservedTime")), now)
        count = _int(_get(series, "count"))
    elif count == 0:
        count = 1  # singleton events have no count in the events.k8s.io API
    kind = _str(_get(event, "involvedObject", "kind")).lower()
    target_name = _str(_get(event, "involvedObject", "name"))
    target = f"{kind}/{target_name}" if target_name else kind
    return [
        last_seen,
        _str(event.get("type")),
        _str(event.get("reason")),
        target,
        _str(_get(event, "involvedObject", "fieldPath")),
        _event_source(event),
        _str(event.get("message")).strip(),
        first_seen,
        count,
        _name(event),
    ]


# --- the rest ---------------------------------------------------------------------------------


def _namespace_cells(ns: Obj, now: datetime) -> list[Cell]:
    return [_name(ns), _str(_get(ns, "status", "phase")), _created(ns, now)]


def _secret_cells(secret: Obj, now: datetime) -> list[Cell]:
    data = _map(secret.get("data"))
    return [_name(secret), _str(secret.get("type")), len(data), _created(secret, now)]


def _configmap_cells(cm: Obj, now: datetime) -> list[Cell]:
    count = len(_map(cm.get("data"))) + len(_map(cm.get("binaryData")))
    return [_name(cm), count, _created(cm, now)]


def _template_containers(obj: Obj) -> list[Any]:
    return _list(_get(obj, "spec", "template", "spec", "containers"))


def _deployment_cells(deploy: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(deploy.get("spec")), _map(deploy.get("status"))
    desired = _int(spec.get("replicas"), default=1)
    try:
        selector = _selector_string(spec.get("selector"))
    except ValueError:
        selector = "<invalid>"
    names, images = _container_cells(_template_containers(deploy))
    return [
        _name(deploy),
        f"{_int(status.get('readyReplicas'))}/{desired}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _created(deploy, now),
        names,
        images,
        selector,
    ]


def _replicaset_cells(rs: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(rs.get("spec")), _map(rs.get("status"))
    names, images = _container_cells(_template_containers(rs))
    return [
        _name(rs),
        _int(spec.get("replicas"), default=1),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _created(rs, now),
        names,
        images,
        _format_label_selector(spec.get("selector")),
    ]


def _ingress_hosts(rules: list[Any]) -> str:
    listed: list[str] = []
    more = False
    for rule in rules:
        if len(listed) == _MAX_LISTED:
            more = True
        host = _str(_get(rule, "host"))
        if not more and host:
            listed.append(host)
    if not listed:
        return "*"
    ret = ",".join(listed)
    return f"{ret} + {len(rules) - _MAX_LISTED} more..." if more else ret


def _ingress_cells(ing: Obj, now: datetime) -> list[Cell]:
    spec = _map(ing.get("spec"))
    class_name = spec.get("ingressClassName")
    return [
        _name(ing),
        "<none>" if class_name is None else _str(class_name),
        _ingress_hosts(_list(spec.get("rules"))),
        _lb_status_string(_get(ing, "status", "loadBalancer", "ingress")),
        "80, 443" if _list(spec.get("tls")) else "80",
        _created(ing, now),
    ]


def _ingress_class_cells(ic: Obj, now: datetime) -> list[Cell]:
    spec = _map(ic.get("spec"))
    params = spec.get("parameters")
    parameters = "<none>"
    if isinstance(params, Mapping):
        parameters = _str(params.get("kind"))
        if params.get("apiGroup") is not None:
            parameters += "." + _str(params.get("apiGroup"))
        parameters += "/" + _str(params.get("name"))
    return [_name(ic), _str(spec.get("controller")), parameters, _created(ic, now)]


def _lease_cells(lease: Obj, now: datetime) -> list[Cell]:
    return [_name(lease), _str(_get(lease, "spec", "holderIdentity")), _created(lease, now)]


def _default_cells(obj: Obj, now: datetime) -> list[Cell]:
    created = _parse_time(_get(obj, "metadata", "creationTimestamp"))
    stamp = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created else None
    return [_name(obj), stamp or "0001-01-01T00:00:00Z"]


# --- workload and stored kinds added later (descriptions from the published schemas) ----------


def _doc(group_version: str, type_name: str, field: str) -> str:
    """A field's description in our OpenAPI documents (upstream's SwaggerDoc text)."""
    return FIELD_DOCS.get((type_name, field), "")


def _core(type_name: str, field: str) -> str:
    return _doc("v1", f"io.k8s.api.core.v1.{type_name}", field)


_WIDE_TEMPLATE = (
    _col("Containers", "string", CONTAINERS_DESC, 1),
    _col("Images", "string", IMAGES_DESC, 1),
)


def _later_columns() -> dict[str, list[Column]]:
    apps = "io.k8s.api.apps.v1"
    batch = "io.k8s.api.batch.v1"
    hpa = "io.k8s.api.autoscaling.v2"
    return {
        "ReplicationController": [
            _name_col(),
            _col("Desired", "integer", _core("ReplicationControllerSpec", "replicas")),
            _col("Current", "integer", _core("ReplicationControllerStatus", "replicas")),
            _col("Ready", "integer", _core("ReplicationControllerStatus", "readyReplicas")),
            _age_col(),
            *_WIDE_TEMPLATE,
            _col("Selector", "string", _core("ReplicationControllerSpec", "selector"), 1),
        ],
        "DaemonSet": [
            _name_col(),
            _col(
                "Desired",
                "integer",
                _doc("apps/v1", f"{apps}.DaemonSetStatus", "desiredNumberScheduled"),
            ),
            _col(
                "Current",
                "integer",
                _doc("apps/v1", f"{apps}.DaemonSetStatus", "currentNumberScheduled"),
            ),
            _col("Ready", "integer", _doc("apps/v1", f"{apps}.DaemonSetStatus", "numberReady")),
            _col(
                "Up-to-date",
                "integer",
                _doc("apps/v1", f"{apps}.DaemonSetStatus", "updatedNumberScheduled"),
            ),
            _col(
                "Available",
                "integer",
                _doc("apps/v1", f"{apps}.DaemonSetStatus", "numberAvailable"),
            ),
            _col("Node Selector", "string", _core("PodSpec", "nodeSelector")),
            _age_col(),
            *_WIDE_TEMPLATE,
            _col("Selector", "string", _doc("apps/v1", f"{apps}.DaemonSetSpec", "selector"), 1),
        ],
        "StatefulSet": [
            _name_col(),
            _col("Ready", "string", "Number of the pod with ready state"),
            _age_col(),
            *_WIDE_TEMPLATE,
        ],
        "Job": [
            _name_col(),
            _col("Status", "string", "Status of the job."),
            _col("Completions", "string", _doc("batch/v1", f"{batch}.JobStatus", "succeeded")),
            _col("Duration", "string", "Time required to complete the job."),
            _age_col(),
            *_WIDE_TEMPLATE,
            _col("Selector", "string", _doc("batch/v1", f"{batch}.JobSpec", "selector"), 1),
        ],
        "CronJob": [
            _name_col(),
            _col("Schedule", "string", _doc("batch/v1", f"{batch}.CronJobSpec", "schedule")),
            _col("Timezone", "string", _doc("batch/v1", f"{batch}.CronJobSpec", "timeZone")),
            _col("Suspend", "boolean", _doc("batch/v1", f"{batch}.CronJobSpec", "suspend")),
            _col("Active", "integer", _doc("batch/v1", f"{batch}.CronJobStatus", "active")),
            _col(
                "Last Schedule",
                "string",
                _doc("batch/v1", f"{batch}.CronJobStatus", "lastScheduleTime"),
            ),
            _age_col(),
            *_WIDE_TEMPLATE,
            _col("Selector", "string", _doc("batch/v1", f"{batch}.JobSpec", "selector"), 1),
        ],
        "HorizontalPodAutoscaler": [
            _name_col(),
            _col(
                "Reference",
                "string",
                _doc("autoscaling/v2", f"{hpa}.HorizontalPodAutoscalerSpec", "scaleTargetRef"),
            ),
            _col(
                "Targets",
                "string",
                _doc("autoscaling/v2", f"{hpa}.HorizontalPodAutoscalerSpec", "metrics"),
            ),
            _col(
                "MinPods",
                "string",
                _doc("autoscaling/v2", f"{hpa}.HorizontalPodAutoscalerSpec", "minReplicas"),
            ),
            _col(
                "MaxPods",
                "string",
                _doc("autoscaling/v2", f"{hpa}.HorizontalPodAutoscalerSpec", "maxReplicas"),
            ),
            _col(
                "Replicas",
                "string",
                _doc("autoscaling/v2", f"{hpa}.HorizontalPodAutoscalerStatus", "currentReplicas"),
            ),
            _age_col(),
        ],
        "PodDisruptionBudget": [
            _name_col(),
            _col("Min Available", "string", "The minimum number of pods that must be available."),
            _col(
                "Max Unavailable", "string", "The maximum number of pods that may be unavailable."
            ),
            _col(
                "Allowed Disruptions",
                "integer",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            _age_col(),
        ],
        "NetworkPolicy": [
            _name_col(),
            _col(
                "Pod-Selector",
                "string",
                _doc(
                    "networking.k8s.io/v1",
                    "io.k8s.api.networking.v1.NetworkPolicySpec",
                    "podSelector",
                ),
            ),
            _age_col(),
        ],
        "PriorityClass": [
            _name_col(),
            _col(
                "Value",
                "integer",
                _doc("scheduling.k8s.io/v1", "io.k8s.api.scheduling.v1.PriorityClass", "value"),
            ),
            _col(
                "Global-Default",
                "boolean",
                _doc(
                    "scheduling.k8s.io/v1",
                    "io.k8s.api.scheduling.v1.PriorityClass",
                    "globalDefault",
                ),
            ),
            _age_col(),
            _col(
                "PreemptionPolicy",
                "string",
                _doc(
                    "scheduling.k8s.io/v1",
                    "io.k8s.api.scheduling.v1.PriorityClass",
                    "preemptionPolicy",
                ),
                1,
            ),
        ],
        "ResourceQuota": [
            _name_col(),
            _col(
                "Request",
                "string",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            _col(
                "Limit",
                "string",
                "Limits control the maximum amount of cpu/memory that a container may use "
                "independent of contention on the node.",
            ),
            _age_col(),
        ],
        "PersistentVolumeClaim": [
            _name_col(),
            _col("Status", "string", _core("PersistentVolumeClaimStatus", "phase")),
            _col("Volume", "string", _core("PersistentVolumeClaimSpec", "volumeName")),
            _col("Capacity", "string", _core("PersistentVolumeClaimStatus", "capacity")),
            _col("Access Modes", "string", _core("PersistentVolumeClaimStatus", "accessModes")),
            _col("StorageClass", "string", "StorageClass of the pvc"),
            _col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            _age_col(),
            _col("VolumeMode", "string", _core("PersistentVolumeClaimSpec", "volumeMode"), 1),
        ],
        "PersistentVolume": [
            _name_col(),
            _col("Capacity", "string", _core("PersistentVolumeSpec", "capacity")),
            _col("Access Modes", "string", _core("PersistentVolumeSpec", "accessModes")),
            _col(
                "Reclaim Policy",
                "string",
                _core("PersistentVolumeSpec", "persistentVolumeReclaimPolicy"),
            ),
            _col("Status", "string", _core("PersistentVolumeStatus", "phase")),
            _col("Claim", "string", _core("PersistentVolumeSpec", "claimRef")),
            _col("StorageClass", "string", "StorageClass of the pv"),
            _col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            _col("Reason", "string", _core("PersistentVolumeStatus", "reason")),
            _age_col(),
            _col("VolumeMode", "string", _core("PersistentVolumeSpec", "volumeMode"), 1),
        ],
        "StorageClass": [
            _name_col(),
            *(
                _col(
                    title,
                    "string",
                    _doc("storage.k8s.io/v1", "io.k8s.api.storage.v1.StorageClass", field),
                )
                for title, field in (
                    ("Provisioner", "provisioner"),
                    ("ReclaimPolicy", "reclaimPolicy"),
                    ("VolumeBindingMode", "volumeBindingMode"),
                    ("AllowVolumeExpansion", "allowVolumeExpansion"),
                )
            ),
            _age_col(),
        ],
        "ServiceAccount": [
            _name_col(),
            _col("Secrets", "string", _core("ServiceAccount", "secrets")),
            _age_col(),
        ],
        "RoleBinding": _binding_columns("roleBinding", "RoleBinding"),
        "ClusterRoleBinding": _binding_columns("clusterRoleBinding", "ClusterRoleBinding"),
        "APIService": [
            _name_col(),
            _col("Service", "string", "The reference to the service that hosts this API endpoint."),
            _col("Available", "string", "Whether this service is available."),
            _age_col(),
        ],
        "ValidatingAdmissionPolicy": [
            _name_col(),
            _col(
                "Validations",
                "integer",
                "Validations indicates the number of validation rules defined in this "
                "configuration",
            ),
            _col(
                "ParamKind",
                "string",
                "ParamKind specifies the kind of resources used to parameterize this policy",
            ),
            _age_col(),
        ],
        "ValidatingAdmissionPolicyBinding": [
            _name_col(),
            _col(
                "PolicyName",
                "string",
                "PolicyName indicates the policy definition which the policy binding binded to",
            ),
            _col(
                "ParamRef",
                "string",
                "ParamRef indicates the param resource which sets the configration param",
            ),
            _age_col(),
        ],
    }


def _binding_columns(word: str, type_name: str) -> list[Column]:
    rbac = "io.k8s.api.rbac.v1"
    return [
        _name_col(),
        _col(
            "Role", "string", _doc("rbac.authorization.k8s.io/v1", f"{rbac}.{type_name}", "roleRef")
        ),
        _age_col(),
        _col("Users", "string", f"Users in the {word}", 1),
        _col("Groups", "string", f"Groups in the {word}", 1),
        _col("ServiceAccounts", "string", f"ServiceAccounts in the {word}", 1),
    ]


_LATER_COLUMNS: dict[str, list[Column]] = {}


def _columns_of(kind: str) -> list[Column] | None:
    if kind in _COLUMNS:
        return _COLUMNS[kind]
    if not _LATER_COLUMNS:
        _LATER_COLUMNS.update(_later_columns())
    return _LATER_COLUMNS.get(kind)


def _quantity(value: Any) -> str:
    return _str(value)


def _rc_cells(rc: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(rc.get("spec")), _map(rc.get("status"))
    names, images = _container_cells(_template_containers(rc))
    return [
        _name(rc),
        _int(spec.get("replicas"), default=1),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _created(rc, now),
        names,
        images,
        _format_labels(spec.get("selector")),
    ]


def _daemon_set_cells(ds: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(ds.get("spec")), _map(ds.get("status"))
    names, images = _container_cells(_template_containers(ds))
    return [
        _name(ds),
        _int(status.get("desiredNumberScheduled")),
        _int(status.get("currentNumberScheduled")),
        _int(status.get("numberReady")),
        _int(status.get("updatedNumberScheduled")),
        _int(status.get("numberAvailable")),
        _format_labels(_get(spec, "template", "spec", "nodeSelector")),
        _created(ds, now),
        names,
        images,
        _format_label_selector(spec.get("selector")),
    ]


def _stateful_set_cells(sts: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(sts.get("spec")), _map(sts.get("status"))
    names, images = _container_cells(_template_containers(sts))
    ready = f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'), default=1)}"
    return [_name(sts), ready, _created(sts, now), names, images]


def _condition_is_true(conditions: Any, type_: str) -> bool:
    for cond in _list(conditions):
        if _get(cond, "type") == type_:
            return _get(cond, "status") == "True"
    return False


def job_status_word(job: Obj) -> str:
    conditions = _get(job, "status", "conditions")
    if _condition_is_true(conditions, "Complete"):
        return "Complete"
    if _condition_is_true(conditions, "Failed"):
        return "Failed"
    if _get(job, "metadata", "deletionTimestamp"):
        return "Terminating"
    if _condition_is_true(conditions, "Suspended"):
        return "Suspended"
    if _condition_is_true(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_cells(job: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(job.get("spec")), _map(job.get("status"))
    succeeded = _int(status.get("succeeded"))
    completions = spec.get("completions")
    if isinstance(completions, int) and not isinstance(completions, bool):
        done = f"{succeeded}/{completions}"
    else:
        parallelism = _int(spec.get("parallelism"))
        done = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start = _parse_time(status.get("startTime"))
    end = _parse_time(status.get("completionTime"))
    if start is None:
        duration = ""
    elif end is None:
        duration = _since(start, now)
    else:
        duration = human_duration((end - start).total_seconds())
    names, images = _container_cells(_template_containers(job))
    return [
        _name(job),
        job_status_word(job),
        done,
        duration,
        _created(job, now),
        names,
        images,
        _format_label_selector(spec.get("selector")),
    ]


def _bool_ptr(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return "<unset>"


def _cron_job_cells(cj: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(cj.get("spec")), _map(cj.get("status"))
    last = status.get("lastScheduleTime")
    zone = spec.get("timeZone")
    job_spec = _map(_get(spec, "jobTemplate", "spec"))
    names, images = _container_cells(_list(_get(job_spec, "template", "spec", "containers")))
    return [
        _name(cj),
        _str(spec.get("schedule")),
        "<none>" if zone is None else _str(zone),
        _bool_ptr(spec.get("suspend")),
        len(_list(status.get("active"))),
        "<none>" if last is None else age(last, now),
        _created(cj, now),
        names,
        images,
        _format_label_selector(job_spec.get("selector")),
    ]


def _hpa_metric(spec: Any, status: Any) -> str:
    kind = _str(_get(spec, "type"))
    if kind == "Resource" or kind == "ContainerResource":
        source = "resource" if kind == "Resource" else "containerResource"
        name = _str(_get(spec, source, "name"))
        target = _map(_get(spec, source, "target"))
        current_src = _map(_get(status, source, "current"))
        if target.get("averageValue") is not None:
            current = _str(current_src.get("averageValue")) if current_src else "<unknown>"
            return f"{name}: {current or '<unknown>'}/{_quantity(target['averageValue'])}"
        current = "<unknown>"
        if current_src.get("averageUtilization") is not None:
            current = f"{_int(current_src['averageUtilization'])}%"
        want = "<auto>"
        if target.get("averageUtilization") is not None:
            want = f"{_int(target['averageUtilization'])}%"
        return f"{name}: {current}/{want}"
    if kind in ("Pods", "Object", "External"):
        source = kind.lower()
        target = _map(_get(spec, source, "target"))
        current_src = _map(_get(status, source, "current"))
        if kind == "Pods" or target.get("averageValue") is not None:
            current = _str(current_src.get("averageValue")) or "<unknown>"
            suffix = "" if kind == "Pods" else " (avg)"
            return f"{current}/{_quantity(target.get('averageValue'))}{suffix}"
        current = _str(current_src.get("value")) or "<unknown>"
        return f"{current}/{_quantity(target.get('value'))}"
    return "<unknown type>"


def _hpa_targets(specs: list[Any], statuses: list[Any]) -> str:
    if not specs:
        return "<none>"
    items = [
        _hpa_metric(spec, statuses[i] if i < len(statuses) else None)
        for i, spec in enumerate(specs)
    ]
    if len(items) > 2:
        return f"{', '.join(items[:2])} + {len(items) - 2} more..."
    return ", ".join(items)


def _hpa_cells(hpa: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(hpa.get("spec")), _map(hpa.get("status"))
    ref = _map(spec.get("scaleTargetRef"))
    low = spec.get("minReplicas")
    return [
        _name(hpa),
        f"{_str(ref.get('kind'))}/{_str(ref.get('name'))}",
        _hpa_targets(_list(spec.get("metrics")), _list(status.get("currentMetrics"))),
        "<unset>" if low is None else _str(low),
        _int(spec.get("maxReplicas")),
        _int(status.get("currentReplicas")),
        _created(hpa, now),
    ]


def _int_or_string(value: Any) -> str:
    return "N/A" if value is None else _str(value)


def _pdb_cells(pdb: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(pdb.get("spec")), _map(pdb.get("status"))
    return [
        _name(pdb),
        _int_or_string(spec.get("minAvailable")),
        _int_or_string(spec.get("maxUnavailable")),
        _int(status.get("disruptionsAllowed")),
        _created(pdb, now),
    ]


def _network_policy_cells(np: Obj, now: datetime) -> list[Cell]:
    return [
        _name(np),
        _format_label_selector(_get(np, "spec", "podSelector") or {}),
        _created(np, now),
    ]


def _priority_class_cells(pc: Obj, now: datetime) -> list[Cell]:
    return [
        _name(pc),
        _int(pc.get("value")),
        pc.get("globalDefault") is True,
        _created(pc, now),
        _str(pc.get("preemptionPolicy")),
    ]


def _resource_quota_cells(rq: Obj, now: datetime) -> list[Cell]:
    status = _map(rq.get("status"))
    hard, used = _map(status.get("hard")), _map(status.get("used"))
    requests: list[str] = []
    limits: list[str] = []
    for resource in sorted(hard):
        column = limits if resource.split(".")[0] == "limits" and "." in resource else requests
        column.append(f"{resource}: {_str(used.get(resource, 0))}/{_str(hard[resource])}")
    return [_name(rq), ", ".join(requests), ", ".join(limits), _created(rq, now)]


_ACCESS_MODE_SHORT = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)


def _access_modes(modes: Any) -> str:
    present = {m for m in _list(modes) if isinstance(m, str)}
    return ",".join(short for mode, short in _ACCESS_MODE_SHORT if mode in present)


def _volume_class(obj: Obj) -> str:
    annotations = _map(_get(obj, "metadata", "annotations"))
    beta = annotations.get("volume.beta.kubernetes.io/storage-class")
    if beta is not None:
        return _str(beta)
    return _str(_get(obj, "spec", "storageClassName"))


def _pvc_cells(pvc: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(pvc.get("spec")), _map(pvc.get("status"))
    phase = (
        "Terminating" if _get(pvc, "metadata", "deletionTimestamp") else _str(status.get("phase"))
    )
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(status.get("accessModes"))
        capacity = _quantity(_map(status.get("capacity")).get("storage", "0"))
    attr = spec.get("volumeAttributesClassName")
    mode = spec.get("volumeMode")
    return [
        _name(pvc),
        phase,
        _str(spec.get("volumeName")),
        capacity,
        modes,
        _volume_class(pvc),
        "<unset>" if attr is None else _str(attr),
        _created(pvc, now),
        "<unset>" if mode is None else _str(mode),
    ]


def _pv_cells(pv: Obj, now: datetime) -> list[Cell]:
    spec, status = _map(pv.get("spec")), _map(pv.get("status"))
    claim = ""
    ref = spec.get("claimRef")
    if isinstance(ref, Mapping):
        claim = f"{_str(ref.get('namespace'))}/{_str(ref.get('name'))}"
    phase = (
        "Terminating" if _get(pv, "metadata", "deletionTimestamp") else _str(status.get("phase"))
    )
    attr = spec.get("volumeAttributesClassName")
    mode = spec.get("volumeMode")
    return [
        _name(pv),
        _quantity(_map(spec.get("capacity")).get("storage", "0")),
        _access_modes(spec.get("accessModes")),
        _str(spec.get("persistentVolumeReclaimPolicy")),
        phase,
        claim,
        _volume_class(pv),
        "<unset>" if attr is None else _str(attr),
        _str(status.get("reason")),
        _created(pv, now),
        "<unset>" if mode is None else _str(mode),
    ]


_DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


def _storage_class_cells(sc: Obj, now: datetime) -> list[Cell]:
    annotations = _map(_get(sc, "metadata", "annotations"))
    name = _name(sc)
    if any(annotations.get(a) == "true" for a in _DEFAULT_CLASS_ANNOTATIONS):
        name += " (default)"
    expansion = sc.get("allowVolumeExpansion")
    return [
        name,
        _str(sc.get("provisioner")),
        _str(sc.get("reclaimPolicy") or "Delete"),
        _str(sc.get("volumeBindingMode") or "Immediate"),
        expansion is True,
        _created(sc, now),
    ]


def _service_account_cells(sa: Obj, now: datetime) -> list[Cell]:
    return [_name(sa), len(_list(sa.get("secrets"))), _created(sa, now)]


def _binding_cells(binding: Obj, now: datetime) -> list[Cell]:
    ref = _map(binding.get("roleRef"))
    users: list[str] = []
    groups: list[str] = []
    accounts: list[str] = []
    for subject in _list(binding.get("subjects")):
        kind, name = _str(_get(subject, "kind")), _str(_get(subject, "name"))
        if kind == "ServiceAccount":
            accounts.append(f"{_str(_get(subject, 'namespace'))}/{name}")
        elif kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
    return [
        _name(binding),
        f"{_str(ref.get('kind'))}/{_str(ref.get('name'))}",
        _created(binding, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(accounts),
    ]


def _admission_policy_cells(policy: Obj, now: datetime) -> list[Cell]:
    param = _get(policy, "spec", "paramKind")
    kind = "<unset>"
    if isinstance(param, Mapping):
        kind = f"{_str(param.get('apiVersion'))}/{_str(param.get('kind'))}"
    validations = len(_list(_get(policy, "spec", "validations")))
    return [_name(policy), validations, kind, _created(policy, now)]


def _admission_policy_binding_cells(binding: Obj, now: datetime) -> list[Cell]:
    ref = _get(binding, "spec", "paramRef")
    param = "<unset>"
    if isinstance(ref, Mapping):
        name, namespace = _str(ref.get("name")), _str(ref.get("namespace"))
        if name:
            # upstream cannot tell a cluster-scoped param from here either
            param = f"{namespace}/{name}" if namespace else f"*/{name}"
        elif isinstance(ref.get("selector"), Mapping):
            param = _format_label_selector(ref["selector"])
    policy = _str(_get(binding, "spec", "policyName"))
    return [_name(binding), policy, param, _created(binding, now)]


def _api_service_cells(svc: Obj, now: datetime) -> list[Cell]:
    ref = _get(svc, "spec", "service")
    service = "Local"
    if isinstance(ref, Mapping):
        service = f"{_str(ref.get('namespace'))}/{_str(ref.get('name'))}"
    available = "Unknown"
    for cond in _list(_get(svc, "status", "conditions")):
        if _get(cond, "type") == "Available":
            available = _str(_get(cond, "status"))
            if available != "True":
                reason = _str(_get(cond, "reason"))
                available = f"{available} ({reason})" if reason else available
            break
    return [_name(svc), service, available, _created(svc, now)]


_PRINTERS: dict[str, Callable[[Obj, datetime], list[Cell]]] = {
    "Pod": _pod_cells,
    "Service": _service_cells,
    "Endpoints": _endpoints_cells,
    "Node": _node_cells,
    "Event": _event_cells,
    "Namespace": _namespace_cells,
    "Secret": _secret_cells,
    "ConfigMap": _configmap_cells,
    "Deployment": _deployment_cells,
    "ReplicaSet": _replicaset_cells,
    "EndpointSlice": _endpoint_slice_cells,
    "Ingress": _ingress_cells,
    "IngressClass": _ingress_class_cells,
    "Lease": _lease_cells,
    "ReplicationController": _rc_cells,
    "DaemonSet": _daemon_set_cells,
    "StatefulSet": _stateful_set_cells,
    "Job": _job_cells,
    "CronJob": _cron_job_cells,
    "HorizontalPodAutoscaler": _hpa_cells,
    "PodDisruptionBudget": _pdb_cells,
    "NetworkPolicy": _network_policy_cells,
    "PriorityClass": _priority_class_cells,
    "ResourceQuota": _resource_quota_cells,
    "PersistentVolumeClaim": _pvc_cells,
    "PersistentVolume": _pv_cells,
    "StorageClass": _storage_class_cells,
    "ServiceAccount": _service_account_cells,
    "RoleBinding": _binding_cells,
    "ClusterRoleBinding": _binding_cells,
    "APIService": _api_service_cells,
    "ValidatingAdmissionPolicy": _admission_policy_cells,
    "ValidatingAdmissionPolicyBinding": _admission_policy_binding_cells,
}


def row_cells(kind: str, obj: dict, now: datetime) -> list:
    """The cells of one Table row for `obj` (wide: one cell per column of column_definitions)."""
    return _PRINTERS.get(kind, _default_cells)(obj, now)
