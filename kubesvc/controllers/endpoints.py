"""The Endpoints controller (pkg/controller/endpoint): one Endpoints object per Service with a
selector, listing the IPs and resolved ports of the pods it selects."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from kubesvc.api import objmeta
from kubesvc.api.objmeta import object_key
from kubesvc.client import shape
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers import endpointutil as eu
from kubesvc.controllers.base import Context, Controller, split_key

log = logging.getLogger("kubesvc.controllers.endpoints")

MAX_CAPACITY = 1000
TRUNCATED = "truncated"
_NO_PORT = ("", -1, "", "")  # RepackSubsets' sentinel for addresses without ports


# -- desired state (pure) ----------------------------------------------------------------------
def _address(service: Obj, pod: Obj) -> Obj | None:
    """podToEndpointAddressForService: the pod IP of the Service's (first) family."""
    spec = service.get("spec") or {}
    ips = eu.pod_ips(pod)
    families = spec.get("ipFamilies") or []
    if families:
        family = families[0]
    elif not eu.is_headless(service):
        family = eu.ip_family(spec.get("clusterIP", "")) or "IPv4"
    else:
        family = eu.ip_family(ips[0]) if ips else "IPv4"
    ip = next((i for i in ips if eu.ip_family(i) == family), None)
    if ip is None:
        return None
    addr: Obj = {"ip": ip}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    if eu.should_set_hostname(pod, service):
        addr["hostname"] = pod["spec"]["hostname"]
    addr["targetRef"] = eu.pod_target_ref(pod)
    return addr


def _endpoint_port(service_port: Obj, number: int) -> Obj:
    port: Obj = {
        "name": service_port.get("name") or "",
        "port": number,
        "protocol": service_port.get("protocol") or "TCP",
    }
    if not port["name"]:
        del port["name"]
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def pod_subsets(service: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """One single-address subset per (pod, resolvable port), before repacking."""
    spec = service.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    subsets: list[Obj] = []
    for pod in pods:
        if not eu.should_pod_be_in_endpoints(pod, publish):
            continue
        addr = _address(service, pod)
        if addr is None:
            continue
        field = "addresses" if publish or eu.is_pod_ready(pod) else "notReadyAddresses"
        if not service_ports:
            # a headless Service may have no ports; its addresses are still published
            if spec.get("clusterIP") == "None":
                subsets.append({field: [addr]})
            continue
        for sp in service_ports:
            number = eu.find_port(pod, sp)
            if number is None:
                continue
            subsets.append({field: [addr], "ports": [_endpoint_port(sp, number)]})
    return subsets


def _addr_id(addr: Obj) -> tuple[str, str]:
    return str(addr.get("ip", "")), str((addr.get("targetRef") or {}).get("uid", ""))


def _port_sort_key(port: Obj) -> tuple[Any, ...]:
    return eu.port_key(port)


def repack_subsets(subsets: Iterable[Obj]) -> list[Obj]:
    """RepackSubsets: group addresses that offer exactly the same ports into one subset
    (not-ready wins over ready for an address), then sort everything."""
    all_addrs: dict[tuple[str, str], Obj] = {}
    ports_by_key: dict[tuple[Any, ...], Obj] = {}
    by_port: dict[tuple[Any, ...], dict[tuple[str, str], bool]] = {}
    for ss in subsets:
        port_keys = []
        for p in ss.get("ports") or []:
            k = eu.port_key(p)
            ports_by_key.setdefault(k, p)
            port_keys.append(k)
        for pk in port_keys or [_NO_PORT]:
            ready_map = by_port.setdefault(pk, {})
            for field, ready in (("addresses", True), ("notReadyAddresses", False)):
                for addr in ss.get(field) or []:
                    aid = _addr_id(addr)
                    all_addrs.setdefault(aid, addr)
                    if ready_map.get(aid, True):
                        ready_map[aid] = ready
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for pk, ready_map in by_port.items():
        gkey = tuple(sorted(ready_map.items()))
        ports = groups.setdefault(gkey, [])
        if pk != _NO_PORT:
            ports.append(pk)
    final: list[Obj] = []
    for gkey, port_keys in groups.items():
        subset: Obj = {}
        ready = [all_addrs[aid] for aid, r in gkey if r]
        not_ready = [all_addrs[aid] for aid, r in gkey if not r]
        if ready:
            subset["addresses"] = sorted(ready, key=_addr_id)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_addr_id)
        if port_keys:
            subset["ports"] = [ports_by_key[k] for k in sorted(port_keys)]
        final.append(subset)
    return sorted(final, key=_subset_sort_key)


def _subset_sort_key(ss: Obj) -> tuple[Any, ...]:
    return (
        tuple(eu.port_key(p) for p in ss.get("ports") or []),
        tuple(_addr_id(a) for a in ss.get("addresses") or []),
        tuple(_addr_id(a) for a in ss.get("notReadyAddresses") or []),
    )


def _count(subsets: Iterable[Obj]) -> tuple[int, int]:
    ready = not_ready = 0
    for ss in subsets:
        ready += len(ss.get("addresses") or [])
        not_ready += len(ss.get("notReadyAddresses") or [])
    return ready, not_ready


def truncate_subsets(subsets: list[Obj], capacity: int = MAX_CAPACITY) -> bool:
    """truncateEndpoints: keep at most `capacity` addresses, ready ones first, spread over the
    subsets in proportion to their size. Mutates; True when something was cut."""
    total_ready, total_not_ready = _count(subsets)
    if total_ready + total_not_ready <= capacity:
        return False
    truncate_ready = total_ready > capacity
    limit = capacity if truncate_ready else capacity - total_ready
    total = total_ready if truncate_ready else total_not_ready
    can_add = limit
    for ss in subsets:
        field = "addresses" if truncate_ready else "notReadyAddresses"
        in_subset = len(ss.get(field) or [])
        to_add = min(math.ceil(in_subset / total * limit), can_add) if total else 0
        ss[field] = (ss.get(field) or [])[:to_add]
        if truncate_ready:
            ss.pop("notReadyAddresses", None)
        can_add -= len(ss[field])
        if not ss[field]:
            del ss[field]
    return True


def desired_endpoints(service: Obj, pods: Iterable[Obj]) -> Obj | None:
    """The Endpoints this controller wants for `service` (pods already selected by it), or
    None when the Service's Endpoints are not this controller's business (no selector, or
    ExternalName). Annotations carry only the over-capacity marker."""
    if eu.is_external_name(service) or eu.service_selector(service) is None:
        return None
    m = objmeta.meta(service)
    subsets = repack_subsets(pod_subsets(service, pods))
    truncated = truncate_subsets(subsets)
    labels = dict(m.get("labels") or {})
    if eu.is_headless(service):
        labels[eu.LABEL_HEADLESS] = ""
    else:
        labels.pop(eu.LABEL_HEADLESS, None)
    out: Obj = {"metadata": {"name": m.get("name"), "namespace": m.get("namespace")}}
    if labels:
        out["metadata"]["labels"] = labels
    if truncated:
        out["metadata"]["annotations"] = {eu.ANNOTATION_OVER_CAPACITY: TRUNCATED}
    if subsets:
        out["subsets"] = subsets
    return out


def _address_view(addr: Obj) -> tuple[Any, ...]:
    ref = {k: v for k, v in (addr.get("targetRef") or {}).items() if k != "resourceVersion"}
    return (addr.get("ip"), addr.get("hostname") or "", addr.get("nodeName") or "", repr(ref))


def _subsets_view(subsets: Iterable[Obj] | None) -> list[Any]:
    return [
        (
            [_address_view(a) for a in ss.get("addresses") or []],
            [_address_view(a) for a in ss.get("notReadyAddresses") or []],
            [eu.port_key(p) for p in ss.get("ports") or []],
        )
        for ss in subsets or []
    ]


def endpoints_up_to_date(existing: Obj, desired: Obj, service: Obj) -> bool:
    """Upstream's no-op check: same subsets (pod resourceVersions ignored), labels equal to the
    Service's (headless label aside), and the over-capacity annotation set correctly."""
    labels = dict(objmeta.meta(existing).get("labels") or {})
    labels.pop(eu.LABEL_HEADLESS, None)
    over = eu.ANNOTATION_OVER_CAPACITY in (objmeta.meta(existing).get("annotations") or {})
    ready, not_ready = _count(existing.get("subsets") or [])
    capacity_ok = not over and ready + not_ready <= MAX_CAPACITY
    return (
        _subsets_view(existing.get("subsets")) == _subsets_view(desired.get("subsets"))
        and labels == (objmeta.meta(service).get("labels") or {})
        and capacity_ok
    )


def endpoints_to_write(
    existing: Obj | None, desired: Obj, service: Obj, trigger_time: datetime | None
) -> Obj | None:
    """The full object to create (no existing) or update, or None when nothing changed."""
    if existing is not None and endpoints_up_to_date(existing, desired, service):
        return None
    obj = copy.deepcopy(existing) if existing is not None else {"metadata": {}}
    m, dm = obj["metadata"], desired["metadata"]
    m["name"], m["namespace"] = dm["name"], dm["namespace"]
    if dm.get("labels"):
        m["labels"] = dict(dm["labels"])
    else:
        m.pop("labels", None)
    annotations = dict(m.get("annotations") or {})
    annotations.pop(eu.ANNOTATION_OVER_CAPACITY, None)
    annotations.update(dm.get("annotations") or {})
    m["annotations"] = annotations
    eu.set_trigger_time(obj, trigger_time)
    if desired.get("subsets"):
        obj["subsets"] = copy.deepcopy(desired["subsets"])
    else:
        obj.pop("subsets", None)
    return obj


# -- controller ----------------------------------------------------------------------------
class EndpointsController(Controller):
    name = "endpoints"
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        f = ctx.factory
        self.services = f.informer("Service")
        self.pods = f.informer("Pod")
        self.endpoints = f.informer("Endpoints")
        self.services.add_indexer(eu.INDEX_NAMESPACE, eu.namespace_index)
        self.pods.add_indexer(eu.INDEX_NAMESPACE, eu.namespace_index)
        eu.add_selector_indexes(self.services, self.pods)
        self.services.add_handler(self.enqueue, self._service_updated, self.enqueue)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_added)
        self.endpoints.add_handler(on_delete=self.enqueue)
        self._triggers: dict[str, eu.TriggerState] = {}

    # handlers only enqueue
    def _service_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _services_for(self, namespace: str, *label_sets: Any) -> set[str]:
        return eu.selecting_services(self.services, namespace, *label_sets)

    def _pod_added(self, pod: Obj) -> None:
        m = objmeta.meta(pod)
        for key in self._services_for(m.get("namespace", ""), m.get("labels")):
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if objmeta.meta(old).get("resourceVersion") == objmeta.meta(new).get("resourceVersion"):
            return
        ns = objmeta.meta(new).get("namespace", "")
        labels = (objmeta.meta(old).get("labels"), objmeta.meta(new).get("labels"))
        for key in self._services_for(ns, *labels):
            self.queue.add(key)

    async def run(self) -> None:
        # checkLeftoverEndpoints: Endpoints whose Service is gone get deleted on sync
        for ep in self.endpoints.list():
            if eu.ANNOTATION_LEADER not in (objmeta.meta(ep).get("annotations") or {}):
                self.queue.add(object_key(ep))
        await super().run()

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        service = self.services.get(key)
        if service is None:
            self._triggers.pop(key, None)
            await self._delete(ns or "", name)
            return
        pods = eu.selected_pods(service, self.pods)
        desired = desired_endpoints(service, pods)
        if desired is None:
            return
        state, trigger = eu.compute_trigger_time(self._triggers.get(key), service, pods)
        self._triggers[key] = state
        existing = self.endpoints.get(key)
        obj = endpoints_to_write(existing, desired, service, trigger)
        if obj is None:
            return
        try:
            if existing is None:
                await self._create(ns or "", name, obj)
            else:
                await self.client.update("Endpoints", obj)
        except ApiException as e:
            if existing is None and eu.namespace_closed(e):
                return
            reason = "FailedToCreateEndpoint" if existing is None else "FailedToUpdateEndpoint"
            what = "create endpoint for service" if existing is None else "update endpoint"
            typed = {"apiVersion": "v1", "kind": "Endpoints", **obj}
            self.recorder.event(typed, "Warning", reason, f"Failed to {what} {ns}/{name}: {e}")
            raise

    async def _create(self, ns: str, name: str, obj: Obj) -> None:
        """Create the Endpoints; when one exists that the informer keeps out (it cannot be
        read), it is this controller's object all the same: replace it."""
        try:
            await self.client.create("Endpoints", ns, obj)
        except ApiException as e:
            if (
                e.status != 409
                or e.reason != "AlreadyExists"
                or self.endpoints.get(object_key(obj))
            ):
                raise
            current = await self.client.get("Endpoints", ns, name)
            rv = shape.revision(current)
            log.info(
                "replacing Endpoints that cannot be read",
                extra={"kv": {"endpoints": f"{ns}/{name}", "resourceVersion": rv}},
            )
            await self.client.update(
                "Endpoints", {**obj, "metadata": {**obj["metadata"], "resourceVersion": rv}}
            )

    async def _delete(self, ns: str, name: str) -> None:
        try:
            await self.client.delete("Endpoints", ns, name)
        except ApiException as e:
            if e.status != 404:
                raise
