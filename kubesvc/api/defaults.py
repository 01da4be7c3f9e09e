"""Defaulting for every served kind, as upstream applies it to v1 objects (JSON dicts).

`apply_defaults` mirrors pkg/apis/*/v1/defaults.go plus the defaulting parts of the registry
strategies' PrepareForCreate (Service clusterIPs, ipFamilies; Namespace finalizer and phase;
Pod phase and QoS class). It is idempotent: the API server runs it on every create, update
and patch result. IPs and node ports are never allocated here.

`prepare_for_update` mirrors the Service strategy's PrepareForUpdate (clusterIPs
normalisation and wiping of fields that no longer apply after a `type` change); call it on
updates with the stored object, before `apply_defaults`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]

_CLUSTER_SCOPED = {
    "Namespace",
    "Node",
    "IngressClass",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "APIService",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
_SURROGATE = re.compile("[\ud800-\udfff]")


def apply_defaults(kind: str, obj: Obj) -> None:
    """Fill upstream defaults into `obj` in place."""
    if kind in _CLUSTER_SCOPED:
        # the generic store clears a namespace sent for a cluster-scoped object
        _dict(obj, "metadata").pop("namespace", None)
    fn = _DEFAULTERS.get(kind)
    if fn is not None:
        fn(obj)


def prepare_for_update(kind: str, obj: Obj, old: Obj) -> None:
    """Update-time normalisation (Service only), in place; `old` is the stored object."""
    if kind != "Service":
        return
    spec, old_spec = _dict(obj, "spec"), _dict(old, "spec")
    _normalize_cluster_ips_update(spec, old_spec)
    _drop_type_dependent_fields(obj, spec, old_spec)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _dict(parent: Obj, key: str) -> Obj:
    """parent[key] as a dict, creating it when missing or null."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def _utf8(text: str) -> bytes:
    """text in UTF-8, a lone surrogate written as U+FFFD (what Go decodes it to)."""
    return _SURROGATE.sub("\ufffd", text).encode()


def _map(value: Any) -> Obj:
    """value when it is an object, else an empty one (never stored)."""
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _setdefault(obj: Obj, key: str, value: Any) -> None:
    """Set `key` when it is missing, null or the Go zero value ""."""
    if obj.get(key) in (None, ""):
        obj[key] = value


# ---------------------------------------------------------------------------
# Service (SetDefaults_Service + service strategy PrepareForCreate)
# ---------------------------------------------------------------------------


def _externally_accessible(spec: Obj) -> bool:
    kind = spec.get("type")
    return kind in ("LoadBalancer", "NodePort") or (
        kind == "ClusterIP" and bool(spec.get("externalIPs"))
    )


def _service(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _setdefault(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = spec.get("sessionAffinityConfig")
        client_ip = config.get("clientIP") if isinstance(config, dict) else None
        if not isinstance(client_ip, dict) or client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    _setdefault(spec, "type", "ClusterIP")
    for port in _dicts(spec.get("ports")):
        _setdefault(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port", 0)
    if _externally_accessible(spec):
        _setdefault(spec, "externalTrafficPolicy", "Cluster")
    kind = spec["type"]
    if spec.get("internalTrafficPolicy") is None and kind in (
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
    ):
        spec["internalTrafficPolicy"] = "Cluster"
    if kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if kind == "LoadBalancer":
        status = obj.get("status")
        lb = status.get("loadBalancer") if isinstance(status, dict) else None
        for ing in _dicts(lb.get("ingress") if isinstance(lb, dict) else None):
            if ing.get("ip") and ing.get("ipMode") is None:
                ing["ipMode"] = "VIP"
    _service_ips(spec)


def _service_ips(spec: Obj) -> None:
    """normalizeClusterIPs on create, and the allocator's single-stack family defaults."""
    # only singular -> plural: clients that know clusterIPs must send both (upstream rule)
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if spec.get("type") == "ExternalName":
        return
    if spec.get("ipFamilyPolicy") is None:
        two = len(_items(spec.get("ipFamilies"))) == 2
        spec["ipFamilyPolicy"] = "RequireDualStack" if two else "SingleStack"
    if not spec.get("ipFamilies"):
        first = next(iter(_items(spec.get("clusterIPs"))), "")
        spec["ipFamilies"] = ["IPv6" if ":" in str(first) else "IPv4"]


def _same(a: Obj, b: Obj, key: str) -> bool:
    return (a.get(key) or None) == (b.get(key) or None)


def _normalize_cluster_ips_update(spec: Obj, old_spec: Obj) -> None:
    same_ip = (old_spec.get("clusterIP") or "") == (spec.get("clusterIP") or "")
    if old_spec.get("clusterIPs") and not spec.get("clusterIPs") and same_ip:
        # an old client patched some other field and did not send clusterIPs
        spec["clusterIPs"] = list(old_spec["clusterIPs"])
    old_ip, new_ip = old_spec.get("clusterIP") or "", spec.get("clusterIP") or ""
    if old_ip == new_ip:
        return
    if old_ip and not new_ip:
        if _same(old_spec, spec, "clusterIPs"):
            spec.pop("clusterIPs", None)
    elif _same(old_spec, spec, "clusterIPs"):
        spec["clusterIPs"] = [new_ip]


def _drop_type_dependent_fields(obj: Obj, spec: Obj, old_spec: Obj) -> None:
    """dropTypeDependentFields: wipe what the new type cannot use, if the user left it alone."""
    old_type, new_type = old_spec.get("type"), spec.get("type")
    if old_type != "ExternalName" and new_type == "ExternalName":
        if _same(old_spec, spec, "clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if _same(old_spec, spec, key):
                spec.pop(key, None)
    node_port_types = ("NodePort", "LoadBalancer")
    if old_type in node_port_types and new_type not in node_port_types:
        old_ports = [p.get("nodePort") for p in _dicts(old_spec.get("ports"))]
        new_ports = [p.get("nodePort") for p in _dicts(spec.get("ports"))]
        if old_ports == new_ports:
            for port in _dicts(spec.get("ports")):
                port.pop("nodePort", None)
    old_hc = old_type == "LoadBalancer" and old_spec.get("externalTrafficPolicy") == "Local"
    new_hc = new_type == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
    if old_hc and not new_hc and _same(old_spec, spec, "healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    if old_type == "LoadBalancer" and new_type != "LoadBalancer":
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if spec.get(key) is not None and old_spec.get(key) == spec.get(key):
                spec.pop(key, None)
    no_longer_external = _externally_accessible(old_spec) and not _externally_accessible(spec)
    if no_longer_external and _same(old_spec, spec, "externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
    if new_type != "LoadBalancer" and isinstance(obj.get("status"), dict):
        obj["status"]["loadBalancer"] = {}


# ---------------------------------------------------------------------------
# Pod spec (SetDefaults_PodSpec, _Container, _Probe, _Volume, ...)
# ---------------------------------------------------------------------------

_DIGEST = re.compile(r"@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")


def _image_tag(image: str) -> str:
    """The tag docker's reference parser finds; "latest" when neither tag nor digest."""
    has_digest = bool(_DIGEST.search(image))
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if has_digest else "latest"


def _handler(handler: Obj) -> None:
    http = handler.get("httpGet")
    if isinstance(http, dict):
        _setdefault(http, "path", "/")
        _setdefault(http, "scheme", "HTTP")


def _probe(probe: Obj) -> None:
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        if probe.get(key) in (None, 0):
            probe[key] = value
    _handler(probe)


def _container(ctr: Obj) -> None:
    if not ctr.get("imagePullPolicy"):
        tag = _image_tag(str(ctr.get("image") or ""))
        ctr["imagePullPolicy"] = "Always" if tag == "latest" else "IfNotPresent"
    _setdefault(ctr, "terminationMessagePath", "/dev/termination-log")
    _setdefault(ctr, "terminationMessagePolicy", "File")
    for port in _dicts(ctr.get("ports")):
        _setdefault(port, "protocol", "TCP")
    for var in _dicts(ctr.get("env")):
        source = var.get("valueFrom")
        ref = source.get("fieldRef") if isinstance(source, dict) else None
        if isinstance(ref, dict):
            _setdefault(ref, "apiVersion", "v1")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(ctr.get(key), dict):
            _probe(ctr[key])
    lifecycle = ctr.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lifecycle.get(hook), dict):
                _handler(lifecycle[hook])


_MODE_SOURCES = ("secret", "configMap", "downwardAPI", "projected")
_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
    "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
    "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
    "storageos", "csi", "ephemeral", "image",
)  # fmt: skip


def _volume(vol: Obj) -> None:
    if not any(vol.get(s) is not None for s in _VOLUME_SOURCES):
        vol["emptyDir"] = {}
    for key in _MODE_SOURCES:
        if isinstance(vol.get(key), dict) and vol[key].get("defaultMode") is None:
            vol[key]["defaultMode"] = 0o644
    host_path = vol.get("hostPath")
    if isinstance(host_path, dict) and host_path.get("type") is None:
        host_path["type"] = ""
    projected = vol.get("projected")
    if isinstance(projected, dict):
        for source in _dicts(projected.get("sources")):
            token = source.get("serviceAccountToken")
            if isinstance(token, dict) and token.get("expirationSeconds") is None:
                token["expirationSeconds"] = 3600


def _host_network_ports(containers: list[Obj]) -> None:
    for ctr in containers:
        for port in _dicts(ctr.get("ports")):
            if not port.get("hostPort"):
                port["hostPort"] = port.get("containerPort", 0)


def _pod_spec(spec: Obj) -> None:
    _setdefault(spec, "dnsPolicy", "ClusterFirst")
    _setdefault(spec, "restartPolicy", "Always")
    if not isinstance(spec.get("securityContext"), dict):
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    _setdefault(spec, "schedulerName", "default-scheduler")
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    containers = _dicts(spec.get("containers")) + _dicts(spec.get("initContainers"))
    for ctr in [*containers, *_dicts(spec.get("ephemeralContainers"))]:
        _container(ctr)
    for vol in _dicts(spec.get("volumes")):
        _volume(vol)


def _requests_from_limits(spec: Obj) -> None:
    """SetDefaults_Pod (pods only, not templates): requests default to limits."""
    for ctr in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        resources = ctr.get("resources")
        if not isinstance(resources, dict) or not isinstance(resources.get("limits"), dict):
            continue
        requests = _dict(resources, "requests")
        for name, quantity in resources["limits"].items():
            requests.setdefault(name, quantity)


def _qos_class(spec: Obj) -> str:
    """qos.GetPodQOS, simplified to compare quantities as written."""
    containers = _dicts(spec.get("containers")) + _dicts(spec.get("initContainers"))
    any_set, guaranteed = False, True
    for ctr in containers:
        res = _map(ctr.get("resources"))
        limits = {k: v for k, v in _map(res.get("limits")).items() if k in ("cpu", "memory")}
        requests = {k: v for k, v in _map(res.get("requests")).items() if k in ("cpu", "memory")}
        if limits or requests:
            any_set = True
        if set(limits) != {"cpu", "memory"} or any(
            str(requests.get(k, v)) != str(v) for k, v in limits.items()
        ):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _pod(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _requests_from_limits(spec)
    _pod_spec(spec)
    if spec.get("hostNetwork"):
        # pods only: templates get this behind a feature gate that is off in v1.32
        _host_network_ports(_dicts(spec.get("containers")) + _dicts(spec.get("initContainers")))
    status = _dict(obj, "status")
    _setdefault(status, "phase", "Pending")
    _setdefault(status, "qosClass", _qos_class(spec))


def _template(spec: Obj) -> None:
    template = _dict(spec, "template")
    _pod_spec(_dict(template, "spec"))


# ---------------------------------------------------------------------------
# other kinds
# ---------------------------------------------------------------------------


def _deployment(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = _dict(spec, "strategy")
    _setdefault(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = "25%"
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _template(spec)


def _replica_set(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _template(spec)


def _namespace(obj: Obj) -> None:
    meta = _dict(obj, "metadata")
    name = meta.get("name")
    if name:
        _dict(meta, "labels")["kubernetes.io/metadata.name"] = name
    status = _dict(obj, "status")
    if not status.get("phase"):
        # PrepareForCreate: a new namespace starts Active with the kubernetes finalizer
        status["phase"] = "Active"
        finalizers = _dict(obj, "spec").setdefault("finalizers", [])
        if isinstance(finalizers, list) and "kubernetes" not in finalizers:
            finalizers.append("kubernetes")


def _secret(obj: Obj) -> None:
    _setdefault(obj, "type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        # v1 -> internal conversion: stringData overwrites data, then is dropped
        data = _dict(obj, "data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(_utf8(str(value))).decode()


def _endpoints(obj: Obj) -> None:
    for subset in _dicts(obj.get("subsets")):
        for port in _dicts(subset.get("ports")):
            _setdefault(port, "protocol", "TCP")


def _endpoint_slice(obj: Obj) -> None:
    for port in _dicts(obj.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        if port.get("protocol") is None:
            port["protocol"] = "TCP"


def _node(obj: Obj) -> None:
    status = obj.get("status")
    if isinstance(status, dict) and status.get("allocatable") is None:
        capacity = status.get("capacity")
        if isinstance(capacity, dict) and capacity:
            status["allocatable"] = dict(capacity)


def _ingress_class(obj: Obj) -> None:
    params = _dict(obj, "spec").get("parameters")
    if isinstance(params, dict) and params.get("scope") is None:
        params["scope"] = "Cluster"


# ---------------------------------------------------------------------------
# workloads (apps/v1, batch/v1, core ReplicationController)
# ---------------------------------------------------------------------------


def _default_int(obj: Obj, key: str, value: int) -> None:
    if obj.get(key) is None:
        obj[key] = value


def _daemon_set(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    strategy = _dict(spec, "updateStrategy")
    _setdefault(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _default_int(rolling, "maxUnavailable", 1)
        _default_int(rolling, "maxSurge", 0)
    _default_int(spec, "revisionHistoryLimit", 10)
    _template(spec)


def _pvc_spec(spec: Obj) -> None:
    _setdefault(spec, "volumeMode", "Filesystem")


def _stateful_set(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _setdefault(spec, "podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    _setdefault(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        _default_int(_dict(strategy, "rollingUpdate"), "partition", 0)
    _default_int(spec, "replicas", 1)
    _default_int(spec, "revisionHistoryLimit", 10)
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    _setdefault(retention, "whenDeleted", "Retain")
    _setdefault(retention, "whenScaled", "Retain")
    for claim in _dicts(spec.get("volumeClaimTemplates")):
        _pvc_spec(_dict(claim, "spec"))
        _setdefault(claim, "apiVersion", "v1")
        _setdefault(claim, "kind", "PersistentVolumeClaim")
        _dict(claim, "status").setdefault("phase", "Pending")
    _template(spec)


def _job_spec(spec: Obj) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    _default_int(spec, "parallelism", 1)
    _default_int(spec, "backoffLimit", 6)
    _setdefault(spec, "completionMode", "NonIndexed")
    if spec.get("suspend") is None:
        spec["suspend"] = False
    _setdefault(spec, "podReplacementPolicy", "TerminatingOrFailed")
    _pod_spec(_dict(_dict(spec, "template"), "spec"))


def _job(obj: Obj) -> None:
    _job_spec(_dict(obj, "spec"))


def _cron_job(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _setdefault(spec, "concurrencyPolicy", "Allow")
    if spec.get("suspend") is None:
        spec["suspend"] = False
    _default_int(spec, "successfulJobsHistoryLimit", 3)
    _default_int(spec, "failedJobsHistoryLimit", 1)
    _job_spec(_dict(_dict(spec, "jobTemplate"), "spec"))


def _replication_controller(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    template = spec.get("template")
    labels = _map(_map(_map(template).get("metadata")).get("labels"))
    # SetDefaults_ReplicationController: the selector and labels default to the template's
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _dict(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    _default_int(spec, "replicas", 1)
    if isinstance(template, dict):
        _pod_spec(_dict(template, "spec"))


def _hpa(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _default_int(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        # autoscaling/v2 SetDefaults: 80% average CPU utilization
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            }
        ]


# ---------------------------------------------------------------------------
# stored kinds
# ---------------------------------------------------------------------------


def _persistent_volume_claim(obj: Obj) -> None:
    _pvc_spec(_dict(obj, "spec"))
    _setdefault(_dict(obj, "status"), "phase", "Pending")


def _persistent_volume(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _setdefault(spec, "persistentVolumeReclaimPolicy", "Retain")
    _setdefault(spec, "volumeMode", "Filesystem")
    _setdefault(_dict(obj, "status"), "phase", "Pending")


def _storage_class(obj: Obj) -> None:
    _setdefault(obj, "reclaimPolicy", "Delete")
    _setdefault(obj, "volumeBindingMode", "Immediate")


def _limit_range(obj: Obj) -> None:
    # SetDefaults_LimitRangeItem: a container's max is its default limit, the default limit
    # (else max) its default request
    for item in _dicts(_dict(obj, "spec").get("limits")):
        if item.get("type") != "Container":
            continue
        default = _dict(item, "default")
        for name, quantity in _map(item.get("max")).items():
            default.setdefault(name, quantity)
        request = _dict(item, "defaultRequest")
        for name, quantity in default.items():
            request.setdefault(name, quantity)
        for name, quantity in _map(item.get("min")).items():
            request.setdefault(name, quantity)
        if not default:
            item.pop("default")
        if not request:
            item.pop("defaultRequest")


def _network_policy(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _dict(spec, "podSelector")
    for rule in _dicts(spec.get("ingress")) + _dicts(spec.get("egress")):
        for port in _dicts(rule.get("ports")):
            _setdefault(port, "protocol", "TCP")
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types


def _priority_class(obj: Obj) -> None:
    _setdefault(obj, "preemptionPolicy", "PreemptLowerPriority")


_RBAC_GROUP = "rbac.authorization.k8s.io"


def _role_binding(obj: Obj) -> None:
    for subject in _dicts(obj.get("subjects")):
        if subject.get("apiGroup") is None:
            kind = subject.get("kind")
            if kind in ("User", "Group"):
                subject["apiGroup"] = _RBAC_GROUP
            elif kind == "ServiceAccount":
                subject["apiGroup"] = ""


def _api_service(obj: Obj) -> None:
    service = _dict(obj, "spec").get("service")
    if isinstance(service, dict) and service.get("port") is None:
        service["port"] = 443


def _match_resources(match: Any) -> None:
    """SetDefaults_MatchResources and SetDefaults_NamedRuleWithOperations."""
    if not isinstance(match, dict):
        return
    match.setdefault("matchPolicy", "Equivalent")
    match.setdefault("namespaceSelector", {})
    match.setdefault("objectSelector", {})
    rules = match.get("resourceRules")
    for rule in rules if isinstance(rules, list) else ():
        if isinstance(rule, dict):
            rule.setdefault("scope", "*")


def _validating_admission_policy(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    spec.setdefault("failurePolicy", "Fail")
    _match_resources(spec.get("matchConstraints"))


def _validating_admission_policy_binding(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _match_resources(spec.get("matchResources"))
    ref = spec.get("paramRef")
    if isinstance(ref, dict):
        ref.setdefault("parameterNotFoundAction", "Deny")


_DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "DaemonSet": _daemon_set,
    "StatefulSet": _stateful_set,
    "Job": _job,
    "CronJob": _cron_job,
    "ReplicationController": _replication_controller,
    "HorizontalPodAutoscaler": _hpa,
    "PersistentVolumeClaim": _persistent_volume_claim,
    "PersistentVolume": _persistent_volume,
    "StorageClass": _storage_class,
    "LimitRange": _limit_range,
    "NetworkPolicy": _network_policy,
    "PriorityClass": _priority_class,
    "RoleBinding": _role_binding,
    "ClusterRoleBinding": _role_binding,
    "APIService": _api_service,
    "ValidatingAdmissionPolicy": _validating_admission_policy,
    "ValidatingAdmissionPolicyBinding": _validating_admission_policy_binding,
    "Service": _service,
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _replica_set,
    "Namespace": _namespace,
    "Secret": _secret,
    "Endpoints": _endpoints,
    "EndpointSlice": _endpoint_slice,
    "Node": _node,
    "IngressClass": _ingress_class,
}

__all__ = ["apply_defaults", "prepare_for_update"]
