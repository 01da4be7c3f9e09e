"""The EndpointSlice mirroring controller (pkg/controller/endpointslicemirroring): Endpoints
written by hand for a Service without a selector are mirrored into EndpointSlices, one slice
per (address type, ports) group, owned by the Endpoints."""

from __future__ import annotations

import copy
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api import objmeta
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers import endpointutil as eu
from kubesvc.controllers.base import Context, Controller, split_key
from kubesvc.controllers.endpointslice import DesiredGroup

log = logging.getLogger("kubesvc.controllers.endpointslice-mirroring")

CONTROLLER_NAME = "endpointslicemirroring-controller.k8s.io"
MAX_ENDPOINTS_PER_SUBSET = 1000


@dataclass
class MirrorDesired:
    groups: list[DesiredGroup] = field(default_factory=list)
    invalid: int = 0  # addresses that are not IPs
    skipped: int = 0  # addresses left out, invalid ones included


# -- desired state (pure) ----------------------------------------------------------------------
def should_mirror(endpoints: Obj | None) -> bool:
    if endpoints is None:
        return False
    m = objmeta.meta(endpoints)
    if (m.get("labels") or {}).get(eu.LABEL_SKIP_MIRROR) == "true":
        return False
    return eu.ANNOTATION_LEADER not in (m.get("annotations") or {})


def address_to_endpoint(address: Obj, ready: bool) -> tuple[Obj, str] | None:
    """addressToEndpoint: None for an address that is not an IP."""
    family = eu.ip_family(str(address.get("ip") or ""))
    if family is None:
        return None
    ep: Obj = {
        "addresses": [str(ipaddress.ip_address(address["ip"]))],
        "conditions": {"ready": ready},
    }
    if address.get("nodeName"):
        ep["nodeName"] = address["nodeName"]
    if address.get("hostname"):
        ep["hostname"] = address["hostname"]
    if address.get("targetRef"):
        ep["targetRef"] = copy.deepcopy(address["targetRef"])
    return ep, family


def _slice_ports(ports: Iterable[Obj] | None) -> list[Obj]:
    out = []
    for p in ports or []:
        port: Obj = {
            "name": p.get("name") or "",
            "port": p.get("port"),
            "protocol": p.get("protocol") or "TCP",
        }
        if p.get("appProtocol"):
            port["appProtocol"] = p["appProtocol"]
        out.append(port)
    return out


def mirror_slices(endpoints: Obj, max_per_subset: int = MAX_ENDPOINTS_PER_SUBSET) -> MirrorDesired:
    """The endpoint groups to mirror: ready addresses then not-ready ones, at most
    `max_per_subset` per subset, grouped by address type and ports."""
    out = MirrorDesired()
    groups: dict[tuple[Any, ...], DesiredGroup] = {}
    sets: dict[tuple[Any, ...], dict[tuple[Any, ...], Obj]] = {}
    for subset in endpoints.get("subsets") or []:
        ports = _slice_ports(subset.get("ports"))
        addresses = [(a, True) for a in subset.get("addresses") or []]
        addresses += [(a, False) for a in subset.get("notReadyAddresses") or []]
        added = 0
        for address, ready in addresses:
            if added >= max_per_subset:
                break
            converted = address_to_endpoint(address, ready)
            if converted is None:
                out.invalid += 1
                continue
            ep, family = converted
            group = DesiredGroup(family, ports)
            group = groups.setdefault(group.key, group)
            sets.setdefault(group.key, {})[eu.endpoint_key(ep)] = ep
            added += 1
        out.skipped += len(addresses) - added
    for key, group in groups.items():
        group.endpoints = list(sets.get(key, {}).values())
    out.groups = list(groups.values())
    return out


def mirrored_slice(endpoints: Obj, group: DesiredGroup, limit: int) -> Obj:
    """newEndpointSlice: labels and annotations cloned from the Endpoints (minus the trigger
    time and kubectl's last-applied), owned by the Endpoints."""
    m = objmeta.meta(endpoints)
    labels = dict(m.get("labels") or {})
    labels[eu.LABEL_SERVICE_NAME] = str(m.get("name", ""))
    labels[eu.LABEL_MANAGED_BY] = CONTROLLER_NAME
    annotations = {
        k: v
        for k, v in (m.get("annotations") or {}).items()
        if k not in (eu.ANNOTATION_TRIGGER_TIME, eu.ANNOTATION_LAST_APPLIED)
    }
    meta: Obj = {
        "generateName": eu.slice_prefix(str(m.get("name", ""))),
        "namespace": m.get("namespace"),
        "labels": labels,
        "ownerReferences": [eu.owner_ref(endpoints, "Endpoints")],
    }
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": group.address_type,
        "ports": copy.deepcopy(group.ports),
        "endpoints": copy.deepcopy(group.endpoints[:limit]),
    }


def _same_content(existing: Obj, want: Obj) -> bool:
    def eps(s: Obj) -> list[Any]:
        return sorted(eu.endpoint_view(e) for e in s.get("endpoints") or [])

    em, wm = objmeta.meta(existing), want["metadata"]
    return (
        eps(existing) == eps(want)
        and (em.get("labels") or {}) == wm["labels"]
        and (em.get("annotations") or {}) == (wm.get("annotations") or {})
    )


def reconcile_mirrored(
    endpoints: Obj,
    desired: MirrorDesired,
    existing: list[Obj],
    limit: int = MAX_ENDPOINTS_PER_SUBSET,
) -> eu.SliceChanges:
    """One slice per group: keep the first existing slice of a group (updated in place when
    it differs), delete the rest and the slices of groups no longer wanted."""
    out = eu.SliceChanges()
    by_key: dict[tuple[Any, ...], list[Obj]] = {}
    for s in sorted(existing, key=lambda s: str(objmeta.meta(s).get("name", ""))):
        by_key.setdefault(eu.slice_port_map_key(s), []).append(s)
    for group in desired.groups:
        current = by_key.pop(group.key, [])
        if not group.endpoints:
            out.delete.extend(current)
            continue
        want = mirrored_slice(endpoints, group, limit)
        if not current:
            out.create.append(want)
            continue
        out.delete.extend(current[1:])
        first = current[0]
        if _same_content(first, want):
            continue
        want["metadata"].pop("generateName")
        want["metadata"]["name"] = objmeta.meta(first)["name"]
        if objmeta.meta(first).get("resourceVersion"):
            want["metadata"]["resourceVersion"] = objmeta.meta(first)["resourceVersion"]
        out.update.append(want)
    for slices in by_key.values():
        out.delete.extend(slices)
    return eu.recycle(out)


# -- controller ----------------------------------------------------------------------------
class MirroringController(Controller):
    name = "endpointslice-mirroring"
    workers = 2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        f = ctx.factory
        self.services = f.informer("Service")
        self.endpoints = f.informer("Endpoints")
        self.slices = f.informer("EndpointSlice")
        self.slices.add_indexer(eu.INDEX_SLICE_SERVICE, eu.slice_service_index)
        self.tracker = eu.SliceTracker()
        self.services.add_handler(self.enqueue, lambda _o, n: self.enqueue(n), self.enqueue)
        self.endpoints.add_handler(self.enqueue, self._endpoints_updated, self.enqueue)
        self.own = eu.OwnSlices(CONTROLLER_NAME, self.tracker, self.queue.add)
        self.slices.add_handler(self.own.added, self.own.updated, self.own.deleted)

    def _endpoints_updated(self, old: Obj, new: Obj) -> None:
        if objmeta.meta(old).get("resourceVersion") != objmeta.meta(new).get("resourceVersion"):
            self.enqueue(new)

    async def sync(self, key: str) -> None:
        ns, _name = split_key(key)
        slices = self.own.live(self.slices, key)
        service = self.services.get(key)
        endpoints = self.endpoints.get(key)
        if service is not None and eu.is_external_name(service):
            return
        if (
            service is None
            or eu.service_selector(service) is not None
            or not should_mirror(endpoints)
        ):
            self.tracker.delete_service(key)
            await self._delete_all(ns or "", slices)
            return
        assert endpoints is not None
        if self.tracker.stale(key, slices):
            raise eu.StaleCache(f"EndpointSlice informer cache is out of date for {key}")
        desired = mirror_slices(endpoints)
        self._report_skipped(endpoints, desired)
        changes = reconcile_mirrored(endpoints, desired, slices)
        if not changes:
            return
        try:
            await eu.apply_slice_changes(
                self.client,
                self.tracker,
                ns or "",
                changes,
                allow_create=not objmeta.meta(endpoints).get("deletionTimestamp"),
            )
        except ApiException as e:
            self.recorder.event(
                _typed(endpoints),
                "Warning",
                "FailedToUpdateEndpointSlices",
                f"Error updating EndpointSlices for Endpoints {key}: {e}",
            )
            raise

    def _report_skipped(self, endpoints: Obj, desired: MirrorDesired) -> None:
        if desired.invalid:
            self.recorder.event(
                _typed(endpoints),
                "Warning",
                "InvalidIPAddress",
                f"Skipped {desired.invalid} invalid IP addresses when mirroring to EndpointSlices",
            )
        if desired.skipped > desired.invalid:
            self.recorder.event(
                _typed(endpoints),
                "Warning",
                "TooManyAddressesToMirror",
                f"A max of {MAX_ENDPOINTS_PER_SUBSET} addresses can be mirrored to "
                f"EndpointSlices per Endpoints subset. {desired.skipped} addresses were skipped",
            )

    async def _delete_all(self, ns: str, slices: list[Obj]) -> None:
        for s in slices:
            try:
                await self.client.delete("EndpointSlice", ns, objmeta.meta(s)["name"])
            except ApiException as e:
                if e.status != 404:
                    raise
            self.tracker.expect_deletion(s)


def _typed(endpoints: Obj) -> Obj:
    return {"apiVersion": "v1", "kind": "Endpoints", **endpoints}
