"""Helpers shared by the Endpoints, EndpointSlice and mirroring controllers: which pods count
as endpoints, port resolution, trigger times, and the slice bookkeeping of
staging/src/k8s.io/endpointslice (util + reconciler finalize)."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubesvc.api.kinds import SERVICE_NAME_LABEL, slice_service_key
from kubesvc.api.objmeta import format_time_nano as format_time
from kubesvc.api.objmeta import meta, parse_time
from kubesvc.client.rest import ApiClient, ApiException

Obj = dict[str, Any]

LABEL_SERVICE_NAME = SERVICE_NAME_LABEL
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
LABEL_HEADLESS = "service.kubernetes.io/headless"
ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
ANNOTATION_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ANNOTATION_LEADER = "control-plane.alpha.kubernetes.io/leader"

# index names on the shared informers (prefixed: other controllers share the informers)
INDEX_NAMESPACE = "endpointutil:namespace"
INDEX_SLICE_SERVICE = "endpointutil:slice-service"
INDEX_POD_NODE = "endpointutil:pod-node"
INDEX_POD_LABEL = "endpointutil:pod-label"  # "ns/key=value" for each label of a pod
INDEX_SERVICE_SELECTOR = "endpointutil:service-selector"  # "ns/key=value" per selector term


def namespace_index(obj: Obj) -> list[str]:
    return [meta(obj).get("namespace") or ""]


def slice_service_index(obj: Obj) -> list[str]:
    """EndpointSlices by the "ns/name" of the Service their service-name label points at."""
    key = slice_service_key(obj)
    return [key] if key else []


def pod_label_index(obj: Obj) -> list[str]:
    ns = meta(obj).get("namespace") or ""
    return [f"{ns}/{k}={v}" for k, v in (meta(obj).get("labels") or {}).items()]


def service_selector_index(obj: Obj) -> list[str]:
    ns = meta(obj).get("namespace") or ""
    return [f"{ns}/{k}={v}" for k, v in (service_selector(obj) or {}).items()]


def add_selector_indexes(services: Any, pods: Any) -> None:
    """Indexes that make "pods of a Service" and "Services of a pod" cost the size of the
    answer, not of the namespace (a sync must not scan 10,000 pods)."""
    services.add_indexer(INDEX_SERVICE_SELECTOR, service_selector_index)
    pods.add_indexer(INDEX_POD_LABEL, pod_label_index)


def selected_pods(service: Obj, pods: Any) -> list[Obj]:
    """pods_for_service over an informer indexed by add_selector_indexes."""
    selector = service_selector(service)
    if selector is None:
        return []
    ns = meta(service).get("namespace") or ""
    # candidates: the pods carrying the rarest of the selector's key=value pairs
    candidates = min(
        (pods.by_index(INDEX_POD_LABEL, f"{ns}/{k}={v}") for k, v in selector.items()), key=len
    )
    return pods_for_service(service, candidates)


def selecting_services(
    services: Any, namespace: str, *label_sets: Mapping[str, str] | None
) -> set[str]:
    """services_selecting over an informer indexed by add_selector_indexes."""
    candidates: dict[str, Obj] = {}
    for labels in label_sets:
        for k, v in (labels or {}).items():
            for svc in services.by_index(INDEX_SERVICE_SELECTOR, f"{namespace}/{k}={v}"):
                candidates[f"{namespace}/{meta(svc).get('name')}"] = svc
    return services_selecting(candidates.values(), *label_sets)


def pod_node_index(obj: Obj) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


# -- services ------------------------------------------------------------------------------
def service_selector(service: Obj) -> dict[str, str] | None:
    """The selector, or None for a Service without one (an empty map is no selector either:
    upstream's protobuf storage turns it into nil)."""
    selector = (service.get("spec") or {}).get("selector")
    return dict(selector) if isinstance(selector, dict) and selector else None


def selects(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def is_external_name(service: Obj) -> bool:
    return (service.get("spec") or {}).get("type") == "ExternalName"


def is_headless(service: Obj) -> bool:
    """Not isServiceIPSet: clusterIP is "None" or empty."""
    cluster_ip = (service.get("spec") or {}).get("clusterIP") or ""
    return cluster_ip in ("", "None")


def pods_for_service(service: Obj, pods: Iterable[Obj]) -> list[Obj]:
    selector = service_selector(service)
    if selector is None:
        return []
    ns = meta(service).get("namespace")
    found = [
        p
        for p in pods
        if meta(p).get("namespace") == ns and selects(selector, meta(p).get("labels"))
    ]
    return sorted(found, key=lambda p: str(meta(p).get("name", "")))


def services_selecting(services: Iterable[Obj], *label_sets: Mapping[str, str] | None) -> set[str]:
    """Keys of the Services whose selector matches any of the given label sets."""
    keys: set[str] = set()
    for svc in services:
        selector = service_selector(svc)
        if selector is not None and any(selects(selector, ls) for ls in label_sets):
            keys.add(f"{meta(svc).get('namespace')}/{meta(svc).get('name')}")
    return keys


# -- pods ----------------------------------------------------------------------------------
def ready_condition(pod: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond
    return None


def is_pod_ready(pod: Obj) -> bool:
    cond = ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def is_pod_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_terminating(pod: Obj) -> bool:
    return bool(meta(pod).get("deletionTimestamp"))


def pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = [str(p.get("ip")) for p in status.get("podIPs") or [] if p and p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return ips


def should_pod_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """ShouldPodBeInEndpoints: not terminal, has an IP, and not terminating unless asked."""
    if is_pod_terminal(pod) or not pod_ips(pod):
        return False
    return include_terminating or not is_terminating(pod)


def should_set_hostname(pod: Obj, service: Obj) -> bool:
    spec = pod.get("spec") or {}
    return (
        bool(spec.get("hostname"))
        and spec.get("subdomain") == meta(service).get("name")
        and meta(pod).get("namespace") == meta(service).get("namespace")
    )


def pod_target_ref(pod: Obj) -> Obj:
    m = meta(pod)
    ref = {"kind": "Pod", "namespace": m.get("namespace", ""), "name": m.get("name", "")}
    if m.get("uid"):
        ref["uid"] = m["uid"]
    return ref


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """FindPort: a numeric targetPort as is; a named one looked up by container port name and
    protocol (sidecar init containers included); None when the pod has no such port."""
    target = service_port.get("targetPort")
    if target is None or target == "" or target == 0:
        target = service_port.get("port")
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or [])
    containers += [
        c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    ]
    for ctr in containers:
        for port in ctr.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port.get("containerPort") or 0)
    return None


def ip_family(ip: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return None


# -- time ----------------------------------------------------------------------------------


@dataclass
class TriggerState:
    pod_times: dict[str, datetime] = field(default_factory=dict)
    service_time: datetime | None = None


def compute_trigger_time(
    state: TriggerState | None, service: Obj, pods: Iterable[Obj]
) -> tuple[TriggerState, datetime | None]:
    """TriggerTimeTracker.ComputeEndpointLastChangeTriggerTime: the Service's creation time on
    its first sync, afterwards the earliest Ready-transition (or Service) time that changed
    since the previous sync; None when nothing did."""
    new = TriggerState()
    earliest: datetime | None = None

    def consider(t: datetime) -> None:
        nonlocal earliest
        earliest = t if earliest is None or t < earliest else earliest

    for pod in pods:
        cond = ready_condition(pod)
        t = parse_time(cond.get("lastTransitionTime")) if cond else None
        if t is None:
            continue
        name = str(meta(pod).get("name", ""))
        new.pod_times[name] = t
        previous = state.pod_times.get(name) if state else None
        if previous is None or t > previous:
            consider(t)
    new.service_time = parse_time(meta(service).get("creationTimestamp"))
    if new.service_time is not None and (
        state is None or state.service_time is None or new.service_time > state.service_time
    ):
        consider(new.service_time)
    if state is None:
        return new, new.service_time
    return new, earliest


def set_trigger_time(obj: Obj, when: datetime | None) -> None:
    annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
    if when is not None:
        annotations[ANNOTATION_TRIGGER_TIME] = format_time(when)
    else:
        annotations.pop(ANNOTATION_TRIGGER_TIME, None)
    if not annotations:
        obj["metadata"].pop("annotations", None)


# -- EndpointSlice endpoints and ports -------------------------------------------------------
def endpoint_key(ep: Obj) -> tuple[Any, ...]:
    """hashEndpoint: an endpoint's identity is its addresses, hostname and target."""
    ref = ep.get("targetRef") or {}
    return (
        tuple(sorted(ep.get("addresses") or [])),
        ep.get("hostname") or "",
        ref.get("namespace") or "",
        ref.get("name") or "",
    )


def endpoint_view(ep: Obj) -> tuple[Any, ...]:
    """What EndpointsEqualBeyondHash compares (plus the key): server-added fields ignored."""
    cond = ep.get("conditions") or {}
    ref = {k: v for k, v in (ep.get("targetRef") or {}).items() if k != "resourceVersion"}
    return (
        endpoint_key(ep),
        cond.get("ready"),
        cond.get("serving"),
        cond.get("terminating"),
        ep.get("nodeName"),
        ep.get("zone"),
        tuple(sorted(ref.items())),
        repr(ep.get("hints")) if ep.get("hints") else None,
    )


def port_key(port: Obj) -> tuple[str, int, str, str]:
    return (
        str(port.get("name") or ""),
        int(port.get("port") or 0),
        str(port.get("protocol") or "TCP"),
        str(port.get("appProtocol") or ""),
    )


def port_map_key(address_type: str, ports: Iterable[Obj] | None) -> tuple[Any, ...]:
    """NewPortMapKey (+ address type): slices group endpoints by their exact set of ports."""
    return (address_type, tuple(sorted(port_key(p) for p in ports or [])))


def slice_port_map_key(s: Obj) -> tuple[Any, ...]:
    return port_map_key(str(s.get("addressType") or ""), s.get("ports"))


def owner_ref(owner: Obj, kind: str) -> Obj:
    m = meta(owner)
    return {
        "apiVersion": "v1",
        "kind": kind,
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def slice_prefix(name: str) -> str:
    """getEndpointSlicePrefix: "<name>-" unless that makes generateName too long."""
    return f"{name}-" if len(name) + 1 <= 253 - 5 else name


@dataclass
class SliceChanges:
    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)


def recycle(changes: SliceChanges, can_reuse: Any = None) -> SliceChanges:
    """finalize/recycleSlices: rather than delete one slice and create another, update the
    one that would go (same address type; `can_reuse` may veto, e.g. a foreign owner)."""
    creates = list(changes.create)
    deletes = list(changes.delete)
    updates = list(changes.update)
    i = 0
    while i < len(deletes) and creates:
        old = deletes[i]
        new = creates[-1]
        if old.get("addressType") == new.get("addressType") and (
            can_reuse is None or can_reuse(old)
        ):
            new = copy.deepcopy(new)
            m = new["metadata"]
            m.pop("generateName", None)
            m["name"] = meta(old)["name"]
            if meta(old).get("resourceVersion"):
                m["resourceVersion"] = meta(old)["resourceVersion"]
            creates.pop()
            updates.append(new)
            deletes.pop(i)
        else:
            i += 1
    return SliceChanges(creates, updates, deletes)


# -- stale cache detection ----------------------------------------------------------------------
DELETION_EXPECTED = -1


class StaleCache(Exception):
    """The slice informer has not caught up with this controller's own writes yet."""


class SliceTracker:
    """EndpointSliceTracker: the generation of every slice this controller wrote, per Service,
    so a sync can tell a cache that lags behind its own writes (and not create duplicates)."""

    def __init__(self) -> None:
        self._by_service: dict[str, dict[str, int]] = {}

    @staticmethod
    def _ids(s: Obj) -> tuple[str | None, str, int]:
        m = meta(s)
        return slice_service_key(s), str(m.get("uid", "")), int(m.get("generation") or 0)

    def has(self, s: Obj) -> bool:
        svc, uid, _ = self._ids(s)
        return svc is not None and uid in self._by_service.get(svc, {})

    def should_sync(self, s: Obj) -> bool:
        """True unless this is a slice version this controller wrote itself."""
        svc, uid, gen = self._ids(s)
        tracked = self._by_service.get(svc or "", {}).get(uid)
        return tracked is None or gen > tracked

    def update(self, s: Obj) -> None:
        svc, uid, gen = self._ids(s)
        if svc is not None:
            self._by_service.setdefault(svc, {})[uid] = gen

    def expect_deletion(self, s: Obj) -> None:
        svc, uid, _ = self._ids(s)
        if svc is not None:
            self._by_service.setdefault(svc, {})[uid] = DELETION_EXPECTED

    def handle_deletion(self, s: Obj) -> bool:
        """Forget a deleted slice; True when this controller deleted it."""
        svc, uid, _ = self._ids(s)
        gens = self._by_service.get(svc or "", {})
        expected = gens.pop(uid, None) == DELETION_EXPECTED
        if svc in self._by_service and not gens:
            del self._by_service[svc]
        return expected

    def stale(self, svc_key: str, slices: Iterable[Obj]) -> bool:
        gens = self._by_service.get(svc_key)
        if not gens:
            return False
        provided: set[str] = set()
        for s in slices:
            _, uid, gen = self._ids(s)
            provided.add(uid)
            tracked = gens.get(uid)
            if tracked is not None and (tracked == DELETION_EXPECTED or tracked > gen):
                return True
        return any(g != DELETION_EXPECTED and uid not in provided for uid, g in gens.items())

    def delete_service(self, svc_key: str) -> None:
        self._by_service.pop(svc_key, None)


async def apply_slice_changes(
    client: ApiClient,
    tracker: SliceTracker,
    namespace: str,
    changes: SliceChanges,
    *,
    allow_create: bool = True,
) -> None:
    """Write creates, updates and deletes, telling the tracker about each; a 409 propagates
    so the key is retried against a fresher cache."""
    if allow_create:
        for body in changes.create:
            try:
                created = await client.create("EndpointSlice", namespace, body)
            except ApiException as e:
                if namespace_closed(e):
                    return
                raise
            tracker.update(created)
    for body in changes.update:
        updated = await client.update("EndpointSlice", body)
        tracker.update(updated)
    for s in changes.delete:
        try:
            await client.delete("EndpointSlice", namespace, meta(s)["name"])
        except ApiException as e:
            if e.status != 404:
                raise
        tracker.expect_deletion(s)


def namespace_closed(e: ApiException) -> bool:
    """A create failed because the namespace is terminating (403) or gone (404): retrying
    cannot help, so the key is dropped."""
    if e.status == 404:
        return True
    causes = (e.body.get("details") or {}).get("causes") or []
    return e.status == 403 and (
        any(c.get("type") == "NamespaceTerminating" for c in causes)
        or "being terminated" in str(e.message)
    )


class OwnSlices:
    """Informer handlers for the EndpointSlices one controller manages: the Service is
    synced again when someone else changes or deletes one, not after the controller's own
    writes (the tracker recognises those)."""

    def __init__(
        self, managed_by: str, tracker: SliceTracker, enqueue: Callable[[str], None]
    ) -> None:
        self.managed_by, self.tracker, self.enqueue = managed_by, tracker, enqueue

    def managed(self, s: Obj) -> bool:
        return (meta(s).get("labels") or {}).get(LABEL_MANAGED_BY) == self.managed_by

    def live(self, slices: Any, service_key: str) -> list[Obj]:
        """This controller's slices of one Service that are not being deleted."""
        return [
            s
            for s in slices.by_index(INDEX_SLICE_SERVICE, service_key)
            if self.managed(s) and not meta(s).get("deletionTimestamp")
        ]

    def _enqueue(self, s: Obj) -> None:
        key = slice_service_key(s)
        if key:
            self.enqueue(key)

    def added(self, s: Obj) -> None:
        if self.managed(s) and self.tracker.should_sync(s):
            self._enqueue(s)

    def updated(self, old: Obj, new: Obj) -> None:
        if self.managed(old) != self.managed(new):
            self._enqueue(old)
            self._enqueue(new)
        elif self.managed(new) and self.tracker.should_sync(new):
            if slice_service_key(old) != slice_service_key(new):
                self._enqueue(old)
            self._enqueue(new)

    def deleted(self, s: Obj) -> None:
        # a slice someone else deleted is recreated; our own deletions are just forgotten
        if self.managed(s) and not self.tracker.handle_deletion(s):
            self._enqueue(s)
