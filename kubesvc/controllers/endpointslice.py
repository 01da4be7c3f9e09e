"""The EndpointSlice controller (pkg/controller/endpointslice + k8s.io/endpointslice): the pods
a Service selects, as EndpointSlices of at most 100 endpoints grouped by resolved ports,
changed with as little churn as upstream's reconciler allows."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api import objmeta
from kubesvc.client import shape
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers import endpointutil as eu
from kubesvc.controllers.base import Context, Controller, split_key

log = logging.getLogger("kubesvc.controllers.endpointslice")

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS_PER_SLICE = 100
LABEL_ZONE = "topology.kubernetes.io/zone"
_RESERVED_LABELS = (eu.LABEL_SERVICE_NAME, eu.LABEL_MANAGED_BY, eu.LABEL_HEADLESS)

EndpointSet = dict[tuple[Any, ...], Obj]


@dataclass
class DesiredGroup:
    """Endpoints that share an address type and an exact set of resolved ports."""

    address_type: str
    ports: list[Obj]
    endpoints: list[Obj] = field(default_factory=list)

    @property
    def key(self) -> tuple[Any, ...]:
        return eu.port_map_key(self.address_type, self.ports)


@dataclass
class DesiredSlices:
    groups: list[DesiredGroup]
    # pods left out because the Node they are bound to is unknown
    skipped_pods: list[str] = field(default_factory=list)


# -- desired state (pure) ----------------------------------------------------------------------
def address_types(service: Obj) -> list[str]:
    """getAddressTypesForService."""
    spec = service.get("spec") or {}
    types = [f for f in ("IPv4", "IPv6") if f in (spec.get("ipFamilies") or [])]
    if types:
        return types
    if not eu.is_headless(service):
        return [eu.ip_family(spec.get("clusterIP", "")) or "IPv4"]
    return ["IPv4", "IPv6"]


def endpoint_ports(service: Obj, pod: Obj) -> list[Obj]:
    """getEndpointPorts: every Service port this pod can serve, with its resolved number."""
    ports: list[Obj] = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = eu.find_port(pod, sp)
        if number is None:
            continue
        port: Obj = {
            "name": sp.get("name") or "",
            "port": number,
            "protocol": sp.get("protocol") or "TCP",
        }
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        ports.append(port)
    return ports


def pod_to_endpoint(pod: Obj, node: Obj | None, service: Obj, address_type: str) -> Obj:
    serving = eu.is_pod_ready(pod)
    terminating = eu.is_terminating(pod)
    # "ready" is never true for a terminating pod unless not-ready addresses are published
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    ready = publish or (serving and not terminating)
    ep: Obj = {
        "addresses": [ip for ip in eu.pod_ips(pod) if eu.ip_family(ip) == address_type],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        ep["nodeName"] = node_name
    zone = _zone(node) if node else None
    if zone:
        ep["zone"] = zone
    if eu.should_set_hostname(pod, service):
        ep["hostname"] = pod["spec"]["hostname"]
    ep["targetRef"] = eu.pod_target_ref(pod)
    return ep


def desired_slices(service: Obj, pods: Iterable[Obj], nodes: Mapping[str, Obj]) -> DesiredSlices:
    """The endpoints each slice group should hold, for pods already selected by `service`."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    pods = [p for p in pods if eu.should_pod_be_in_endpoints(p, True)]
    groups: dict[tuple[Any, ...], DesiredGroup] = {}
    sets: dict[tuple[Any, ...], EndpointSet] = {}
    skipped: set[str] = set()
    for address_type in address_types(service):
        for pod in pods:
            ports = endpoint_ports(service, pod)
            group = DesiredGroup(address_type, ports)
            group = groups.setdefault(group.key, group)
            node_name = (pod.get("spec") or {}).get("nodeName") or ""
            node = nodes.get(node_name)
            if node is None and not publish:
                # upstream skips pods bound to unknown nodes (and retries when one appears)
                skipped.add(str(objmeta.meta(pod).get("name")))
                continue
            ep = pod_to_endpoint(pod, node, service, address_type)
            if ep["addresses"]:
                sets.setdefault(group.key, {})[eu.endpoint_key(ep)] = ep
    for key, group in groups.items():
        group.endpoints = list(sets.get(key, {}).values())
    return DesiredSlices(list(groups.values()), sorted(skipped))


def slice_labels(current: Mapping[str, str] | None, service: Obj) -> tuple[dict[str, str], bool]:
    """setEndpointSliceLabels: the Service's labels (reserved keys aside) plus the reserved
    ones; True when the non-reserved labels differ from the Service's."""
    current_rest = {k: v for k, v in (current or {}).items() if k not in _RESERVED_LABELS}
    labels = {
        k: v
        for k, v in (objmeta.meta(service).get("labels") or {}).items()
        if k not in _RESERVED_LABELS
    }
    changed = current_rest != labels
    if eu.is_headless(service):
        labels[eu.LABEL_HEADLESS] = ""
    labels[eu.LABEL_SERVICE_NAME] = str(objmeta.meta(service).get("name", ""))
    labels[eu.LABEL_MANAGED_BY] = CONTROLLER_NAME
    return labels, changed


def new_slice(service: Obj, address_type: str, ports: list[Obj]) -> Obj:
    m = objmeta.meta(service)
    labels, _ = slice_labels({}, service)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": eu.slice_prefix(str(m.get("name", ""))),
            "namespace": m.get("namespace"),
            "labels": labels,
            "ownerReferences": [eu.owner_ref(service, "Service")],
        },
        "addressType": address_type,
        "ports": copy.deepcopy(ports),
        "endpoints": [],
    }


def owned_by(s: Obj, service: Obj) -> bool:
    uid = objmeta.meta(service).get("uid")
    return any(
        o.get("uid") == uid and o.get("kind") == "Service" and o.get("apiVersion") == "v1"
        for o in objmeta.meta(s).get("ownerReferences") or []
    )


def _is_placeholder_of(s: Obj, placeholder: Obj) -> bool:
    """placeholderSliceCompare: namespace, labels, owners and an empty body."""
    m, pm = objmeta.meta(s), placeholder["metadata"]
    return (
        m.get("namespace") == pm.get("namespace")
        and (m.get("labels") or {}) == pm["labels"]
        and (m.get("ownerReferences") or []) == pm["ownerReferences"]
        and not s.get("ports")
        and not s.get("endpoints")
        and s.get("addressType") == placeholder["addressType"]
    )


def _pop_any(desired: EndpointSet) -> Obj:
    key = next(iter(desired))
    return desired.pop(key)


def _slice_to_fill(slices: list[Obj], count: int, limit: int) -> Obj | None:
    """getSliceToFill: the slice that ends closest to full after taking `count` more."""
    best, best_diff = None, limit
    for s in slices:
        diff = limit - (count + len(s.get("endpoints") or []))
        if 0 <= diff < best_diff:
            best, best_diff = s, diff
            if diff == 0:
                break
    return best


def _reconcile_port_mapping(
    service: Obj, existing: list[Obj], desired: EndpointSet, group: DesiredGroup, limit: int
) -> eu.SliceChanges:
    by_name: dict[str, Obj] = {}
    unchanged: list[str] = []
    to_update: list[str] = []
    to_delete: list[str] = []
    # 1. drop endpoints no longer desired, refresh changed ones, keep labels in step
    for s in existing:
        name = objmeta.meta(s)["name"]
        by_name[name] = s
        kept: list[Obj] = []
        updated = False
        for ep in s.get("endpoints") or []:
            want = desired.pop(eu.endpoint_key(ep), None)
            if want is not None:
                kept.append(want)
                updated = updated or eu.endpoint_view(want) != eu.endpoint_view(ep)
        labels, labels_changed = slice_labels(objmeta.meta(s).get("labels"), service)
        if updated or len(kept) != len(s.get("endpoints") or []):
            if not kept:
                to_delete.append(name)
                continue
            copy_ = copy.deepcopy(s)
            copy_["endpoints"] = kept
            copy_["metadata"]["labels"] = labels
            by_name[name] = copy_
            to_update.append(name)
        elif labels_changed:
            copy_ = copy.deepcopy(s)
            copy_["endpoints"] = list(s.get("endpoints") or [])  # null or missing: none
            copy_["metadata"]["labels"] = labels
            by_name[name] = copy_
            to_update.append(name)
        else:
            unchanged.append(name)
    # 2. top up the slices that are being written anyway, fullest first
    if desired and to_update:
        for name in sorted(to_update, key=lambda n: -len(by_name[n]["endpoints"])):
            s = by_name[name]
            while desired and len(s["endpoints"]) < limit:
                s["endpoints"].append(_pop_any(desired))
    # 3. fit the rest into one untouched slice if possible, else create new slices
    creates: list[Obj] = []
    while desired:
        fill: Obj | None = None
        if len(desired) < limit and unchanged:
            candidate = _slice_to_fill([by_name[n] for n in unchanged], len(desired), limit)
            if candidate is not None:
                fill = copy.deepcopy(candidate)
                fill["endpoints"] = list(fill.get("endpoints") or [])
                by_name[objmeta.meta(fill)["name"]] = fill
        if fill is None:
            fill = new_slice(service, group.address_type, group.ports)
        while desired and len(fill["endpoints"]) < limit:
            fill["endpoints"].append(_pop_any(desired))
        name = fill["metadata"].get("name")
        if name:
            to_update.append(name)
            unchanged.remove(name)
        else:
            creates.append(fill)
    return eu.SliceChanges(
        creates, [by_name[n] for n in to_update], [by_name[n] for n in to_delete]
    )


def reconcile_slices(
    service: Obj,
    desired: DesiredSlices | list[DesiredGroup],
    existing: list[Obj],
    max_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
) -> eu.SliceChanges:
    """Reconciler.Reconcile: the creates, updates and deletes that turn `existing` slices of
    this Service into `desired`, reusing slices where possible; exactly one empty placeholder
    slice per address type when no endpoints exist."""
    groups = desired.groups if isinstance(desired, DesiredSlices) else desired
    supported = address_types(service)
    result = eu.SliceChanges()
    result.delete.extend(s for s in existing if s.get("addressType") not in supported)
    for address_type in supported:
        current = [s for s in existing if s.get("addressType") == address_type]
        changes = _reconcile_address_type(
            service,
            [g for g in groups if g.address_type == address_type],
            current,
            address_type,
            max_per_slice,
        )
        result.create.extend(changes.create)
        result.update.extend(changes.update)
        result.delete.extend(changes.delete)
    return result


def _reconcile_address_type(
    service: Obj, groups: list[DesiredGroup], existing: list[Obj], address_type: str, limit: int
) -> eu.SliceChanges:
    out = eu.SliceChanges()
    by_key: dict[tuple[Any, ...], list[Obj]] = {}
    for s in sorted(existing, key=lambda s: str(objmeta.meta(s).get("name", ""))):
        if owned_by(s, service):
            by_key.setdefault(eu.slice_port_map_key(s), []).append(s)
        else:
            out.delete.append(s)
    wanted = {g.key for g in groups}
    for group in groups:
        desired = {eu.endpoint_key(ep): ep for ep in group.endpoints}
        changes = _reconcile_port_mapping(service, by_key.get(group.key, []), desired, group, limit)
        out.create.extend(changes.create)
        out.update.extend(changes.update)
        out.delete.extend(changes.delete)
    for key, slices in by_key.items():
        if key not in wanted:
            out.delete.extend(slices)
    if len(existing) == len(out.delete) and not out.create:
        placeholder = new_slice(service, address_type, [])
        if len(out.delete) == 1 and _is_placeholder_of(out.delete[0], placeholder):
            out.delete = []
        else:
            out.create.append(placeholder)
    return eu.recycle(out, lambda s: owned_by(s, service))


def _zone(node: Obj) -> str | None:
    return (objmeta.meta(node).get("labels") or {}).get(LABEL_ZONE)


# -- controller ----------------------------------------------------------------------------
class EndpointSliceController(Controller):
    name = "endpointslice"
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        f = ctx.factory
        self.services = f.informer("Service")
        self.pods = f.informer("Pod")
        self.slices = f.informer("EndpointSlice")
        self.nodes = f.informer("Node")
        self.services.add_indexer(eu.INDEX_NAMESPACE, eu.namespace_index)
        self.pods.add_indexer(eu.INDEX_NAMESPACE, eu.namespace_index)
        self.pods.add_indexer(eu.INDEX_POD_NODE, eu.pod_node_index)
        eu.add_selector_indexes(self.services, self.pods)
        self.slices.add_indexer(eu.INDEX_SLICE_SERVICE, eu.slice_service_index)
        self.tracker = eu.SliceTracker()
        self._triggers: dict[str, eu.TriggerState] = {}
        self.services.add_handler(self.enqueue, lambda _o, n: self.enqueue(n), self.enqueue)
        self.services.add_reject_handler(self._service_rejected)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_added)
        self.own = eu.OwnSlices(CONTROLLER_NAME, self.tracker, self.queue.add)
        self.slices.add_handler(self.own.added, self.own.updated, self.own.deleted)
        self.nodes.add_handler(self._node_changed, self._node_updated, self._node_changed)

    # -- handlers (enqueue only) -----------------------------------------------------------
    def _enqueue_for_pod(self, pod: Obj, *label_sets: Any) -> None:
        ns = objmeta.meta(pod).get("namespace", "")
        for key in eu.selecting_services(self.services, ns, *label_sets):
            self.queue.add(key)

    def _pod_added(self, pod: Obj) -> None:
        self._enqueue_for_pod(pod, objmeta.meta(pod).get("labels"))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if objmeta.meta(old).get("resourceVersion") != objmeta.meta(new).get("resourceVersion"):
            self._enqueue_for_pod(
                new, objmeta.meta(old).get("labels"), objmeta.meta(new).get("labels")
            )

    def _service_rejected(self, service: Any, why: str) -> None:
        """A Service the informer keeps out: its slices are left as they are, and the
        Service says why (the event upstream records when a sync fails)."""
        m = objmeta.meta(service)
        ns, name = shape.text(m.get("namespace")), shape.text(m.get("name"))
        if ns and name:
            self.recorder.event(
                {"apiVersion": "v1", "kind": "Service", "metadata": dict(m)},
                "Warning",
                "FailedToUpdateEndpointSlices",
                f"Error updating Endpoint Slices for Service {ns}/{name}: "
                f"the Service cannot be read: {why}",
            )

    def _node_changed(self, node: Obj) -> None:
        for pod in self.pods.by_index(eu.INDEX_POD_NODE, str(objmeta.meta(node).get("name", ""))):
            self._pod_added(pod)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if _zone(old) != _zone(new):
            self._node_changed(new)

    # -- sync --------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        ns, _name = split_key(key)
        service = self.services.get(key)
        if service is None:
            # the Service's slices are its dependents: garbage collection removes them
            self.tracker.delete_service(key)
            self._triggers.pop(key, None)
            return
        slices = self.own.live(self.slices, key)
        if self.tracker.stale(key, slices):
            raise eu.StaleCache(f"EndpointSlice informer cache is out of date for {key}")
        if eu.is_external_name(service) or eu.service_selector(service) is None:
            # out-of-band slices only; drop what this controller made while it had a selector
            changes = eu.SliceChanges(delete=slices)
            pods: list[Obj] = []
        else:
            pods = eu.selected_pods(service, self.pods)
            desired = desired_slices(service, pods, self.nodes.cache)
            if desired.skipped_pods:
                log.info(
                    "skipping pods bound to unknown nodes",
                    extra={"kv": {"service": key, "pods": ",".join(desired.skipped_pods)}},
                )
            changes = reconcile_slices(service, desired, slices)
        state, trigger = eu.compute_trigger_time(self._triggers.get(key), service, pods)
        self._triggers[key] = state
        if not changes:
            return
        for body in changes.create + changes.update:
            eu.set_trigger_time(body, trigger)
        try:
            await eu.apply_slice_changes(
                self.client,
                self.tracker,
                ns or "",
                changes,
                allow_create=not objmeta.meta(service).get("deletionTimestamp"),
            )
        except ApiException as e:
            self.recorder.event(
                {"apiVersion": "v1", "kind": "Service", **service},
                "Warning",
                "FailedToUpdateEndpointSlices",
                f"Error updating Endpoint Slices for Service {key}: {e}",
            )
            raise
