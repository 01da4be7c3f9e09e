"""The LoadBalancer IP allocator (MetalLB's controller, built into the controller-manager):
every Service of type LoadBalancer without a loadBalancerClass gets an address from the
IPAddressPools of `metallb-system` in `status.loadBalancer.ingress`, and gives it back when
it goes or stops being a LoadBalancer.

What Services hold is rebuilt from their statuses before anything is handed out, so a
restarted controller-manager never gives one address to two Services. The pools' informer
is this controller's own rather than the shared factory's: without MetalLB's CRDs it keeps
retrying, and only this controller waits for it.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from kubesvc.api import objmeta
from kubesvc.client import shape
from kubesvc.client.informer import Informer, Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers.base import Context, Controller
from kubesvc.controllers.lbipam import metallb
from kubesvc.controllers.lbipam.model import (
    ALLOCATED_FROM_POOL,
    OLD_ALLOCATED_FROM_POOL,
    Allocator,
    Outcome,
    Pool,
    PoolError,
    build_pools,
    converge,
    parse_pool,
    read_service,
)

log = logging.getLogger("kubesvc.controllers.lbipam")

POOLS_KEY = "\x00pools"  # queue key: read the pools again (not a valid object key)


class LoadBalancerIPController(Controller):
    name = "lbipam"
    workers = 1  # one allocator, changed by one sync at a time, as in MetalLB
    requeue_conflicts = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.services = ctx.factory.informer("Service")
        self.namespaces = ctx.factory.informer("Namespace")
        self.pool_informer = Informer(
            ctx.client,
            metallb.IP_ADDRESS_POOL,
            namespace=metallb.NAMESPACE,
            resync_period=ctx.factory.resync_period,
        )
        self.alloc = Allocator()
        self.pending: set[str] = set()  # Services that got no address: retried on frees
        self.written: dict[str, Obj] = {}  # our last write per Service, until the cache has it
        self._parsed: dict[str, tuple[str, Pool | str]] = {}  # pool -> (revision, result)
        self._reported: dict[str, str] = {}  # invalid pool -> message already reported
        self.services.add_handler(self.enqueue, lambda _o, n: self.enqueue(n), self.enqueue)
        self.namespaces.add_handler(None, self._namespace_changed, None)
        self.pool_informer.add_handler(
            self._pools_changed, lambda _o, _n: self._pools_changed(_n), self._pools_changed
        )

    # -- handlers ------------------------------------------------------------------------
    def _pools_changed(self, _obj: Obj) -> None:
        self.queue.add(POOLS_KEY)

    def _namespace_changed(self, old: Obj, new: Obj) -> None:
        if objmeta.meta(old).get("labels") == objmeta.meta(new).get("labels"):
            return
        ns = objmeta.meta(new).get("name")
        for svc in self.services.list():
            if objmeta.meta(svc).get("namespace") == ns:
                self.enqueue(svc)

    def _retry_pending(self) -> None:
        for key in self.pending:
            self.queue.add(key)

    # -- running -------------------------------------------------------------------------
    async def run(self) -> None:
        self.pool_informer.start()
        await self.pool_informer.wait_for_sync()
        self._load_pools()
        self._rebuild()
        for svc in self.services.list():
            self.enqueue(svc)
        await super().run()

    async def stop(self) -> None:
        await super().stop()
        await self.pool_informer.stop()

    def _rebuild(self) -> None:
        """What every Service holds, from its status, oldest Service first (it keeps an
        address two Services claim; the other gets a new one when it is synced)."""
        reqs = [r for r in map(read_service, self.services.list()) if r and r.load_balancer]
        for req in sorted(reqs, key=lambda r: (r.created, r.key)):
            if req.current:
                labels = self._namespace_labels(req.namespace)
                if self.alloc.assign(req, req.current[0], labels):
                    self.alloc.hold_orphan(req, req.current[0])
        log.info(
            "addresses held by Services",
            extra={"kv": {"services": len(self.alloc.allocated), "pools": len(self.alloc.pools)}},
        )

    def _load_pools(self) -> list[str]:
        """Read the pools again; returns the Services whose address left every pool."""
        results: list[Pool | tuple[str, str]] = []
        seen: set[str] = set()
        for obj in self.pool_informer.list():
            key = objmeta.object_key(obj)
            seen.add(key)
            rv = shape.revision(obj)
            cached = self._parsed.get(key)
            if cached is None or cached[0] != rv:
                try:
                    cached = (rv, parse_pool(obj))
                except PoolError as e:
                    cached = (rv, str(e))
                self._parsed[key] = cached
            name = str(objmeta.meta(obj).get("name", ""))
            results.append(cached[1] if isinstance(cached[1], Pool) else (name, cached[1]))
        for key in [k for k in self._parsed if k not in seen]:
            del self._parsed[key]
        pools = build_pools(results)
        for name, why in pools.invalid.items():
            if self._reported.get(name) != why:
                self._reported[name] = why
                self._report_invalid(name, why)
        self._reported = {k: v for k, v in self._reported.items() if k in pools.invalid}
        return self.alloc.set_pools(pools)

    def _report_invalid(self, name: str, why: str) -> None:
        log.warning(
            "IPAddressPool cannot be used",
            extra={"kv": {"pool": f"{metallb.NAMESPACE}/{name}", "error": why}},
        )
        obj = self.pool_informer.get(f"{metallb.NAMESPACE}/{name}")
        if obj is not None:
            ref = {
                "apiVersion": metallb.IP_ADDRESS_POOL.api_version,
                "kind": metallb.IP_ADDRESS_POOL.kind,
                "metadata": objmeta.meta(obj),
            }
            self.recorder.event(ref, "Warning", "InvalidPool", f"pool cannot be used: {why}")

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        labels = objmeta.meta(self.namespaces.get(namespace) or {}).get("labels")
        if not isinstance(labels, dict):
            return {}
        return {k: v for k, v in labels.items() if isinstance(v, str)}

    # -- one key -------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        if key == POOLS_KEY:
            released = self._load_pools()
            if released:
                log.info("addresses left their pools", extra={"kv": {"services": released}})
            for svc in self.services.list():  # any Service may now fit or not fit
                self.enqueue(svc)
            return
        obj = self._freshest(key)
        if obj is None:
            self.pending.discard(key)
            if self.alloc.unassign(key):
                self._retry_pending()
            return
        req = read_service(obj)
        if req is None:
            return
        before = self.alloc.ip(key)
        if not req.load_balancer:
            self.pending.discard(key)
            if self.alloc.unassign(key):
                self._retry_pending()
            spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
            if spec.get("type") != "LoadBalancer":
                await self._write(obj, Outcome([]))  # not (or no longer) a LoadBalancer
            return
        out = converge(self.alloc, req, self._namespace_labels(req.namespace))
        if before is not None and self.alloc.ip(key) != before:
            self._retry_pending()
        ref = {"apiVersion": "v1", "kind": "Service", "metadata": objmeta.meta(obj)}
        for type_, reason, message in out.events:
            self.recorder.event(ref, type_, reason, message)
        if out.failed:
            self.pending.add(key)
        else:
            self.pending.discard(key)
        await self._write(obj, out)

    def _freshest(self, key: str) -> Obj | None:
        """The cached Service, or our own last write of it when the cache is behind (so a
        sync right after a write does not undo it)."""
        cached = self.services.get(key)
        mine = self.written.get(key)
        if cached is None or mine is None:
            self.written.pop(key, None)
            return cached
        try:
            if int(shape.revision(mine)) > int(shape.revision(cached)):
                return mine
        except ValueError:
            pass
        del self.written[key]
        return cached

    async def _write(self, obj: Obj, out: Outcome) -> None:
        """Status (and MetalLB's ip-allocated-from-pool annotation) as `out` says, when
        they differ from what the Service has."""
        meta = objmeta.meta(obj)
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        key = f"{ns}/{name}"
        want = [{"ip": ip, "ipMode": "VIP"} for ip in out.ips]
        status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
        lb = status.get("loadBalancer") if isinstance(status.get("loadBalancer"), dict) else {}
        if (lb.get("ingress") or []) != want:
            body = copy.deepcopy(obj)
            body.setdefault("apiVersion", "v1")
            body.setdefault("kind", "Service")
            new_status = body["status"] if isinstance(body.get("status"), dict) else {}
            new_status["loadBalancer"] = {"ingress": want} if want else {}
            body["status"] = new_status
            try:
                obj = await self.client.update("Service", body, subresource="status")
            except ApiException as e:
                if e.status == 404:
                    return  # deleted meanwhile: its delete event frees the address
                raise
            self.written[key] = obj
        if out.ips and not out.pool:
            return  # held while its pool is being fixed: the annotation stays as it was
        annotations = objmeta.meta(obj).get("annotations")
        annotations = annotations if isinstance(annotations, dict) else {}
        want_pool = out.pool if out.ips and out.pool else None
        if annotations.get(ALLOCATED_FROM_POOL) != want_pool or (
            OLD_ALLOCATED_FROM_POOL in annotations
        ):
            patch: dict[str, Any] = {
                "metadata": {
                    "annotations": {ALLOCATED_FROM_POOL: want_pool, OLD_ALLOCATED_FROM_POOL: None}
                }
            }
            try:
                self.written[key] = await self.client.patch("Service", ns, name, patch)
            except ApiException as e:
                if e.status != 404:
                    raise
