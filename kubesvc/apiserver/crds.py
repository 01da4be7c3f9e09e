"""Serving custom resources: the controller that follows CustomResourceDefinitions.

On every change to a CRD (and at start) it:
- gives each CRD its status (acceptedNames, NamesAccepted, Established, Terminating:
  kubesvc.api.crd.status), written through the status subresource;
- makes the served versions of every Established CRD routable (kubesvc.api.catalog), with
  discovery and OpenAPI documents following from that;
- finishes deleting a CRD: its objects are deleted, then the
  customresourcecleanup.apiextensions.k8s.io finalizer is removed and the CRD goes.
The catalog is replaced on the event loop before the status write that reports Established,
so a client that waits for the condition finds the resource served.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

import orjson

from kubesvc.api import catalog, openapi
from kubesvc.api.crd import openapi as crd_openapi
from kubesvc.api.crd import ssa as crd_ssa
from kubesvc.api.crd.kinds import CLEANUP_FINALIZER, CRD_KIND, CustomKind, condition, kinds_for
from kubesvc.api.crd.status import desired_statuses
from kubesvc.api.errors import ApiError
from kubesvc.apiserver.keys import resource_prefix
from kubesvc.apiserver.objects import now_rfc3339
from kubesvc.apiserver.registry import Registry, WriteOptions, prefix_for

log = logging.getLogger("kubesvc.crds")

RESYNC = 30.0


class CrdController:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._wake = asyncio.Event()
        # CRD name -> (what its kinds depend on, its kinds): schemas compile once per spec
        self._kinds: dict[str, tuple[tuple[Any, ...], list[CustomKind]]] = {}

    async def start(self) -> None:
        """The first pass, before the server takes requests: stored CRDs are served at once."""
        await self.sync()

    async def run(self) -> None:
        watch = await self.registry.store.watch(
            prefix_for(CRD_KIND, None), self.registry.store.revision
        )
        trigger = asyncio.create_task(self._triggers(watch))
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RESYNC)
                self._wake.clear()
                try:
                    await self.sync()
                except Exception:
                    log.exception("custom resource definition sync failed")
        finally:
            trigger.cancel()
            watch.close()

    async def _triggers(self, watch: Any) -> None:
        async for _ in watch:
            self._wake.set()

    async def sync(self) -> None:
        items, _, _ = await self.registry.list(CRD_KIND, None)
        crds = [c.obj for c in items]
        wanted = desired_statuses(crds, now_rfc3339())
        # serve first: a client that sees Established must find the resource
        kinds: list[CustomKind] = []
        for crd in crds:
            name = crd["metadata"]["name"]
            status = wanted.get(name, {})
            if condition({"status": status}, "Established") == "True":
                kinds += self._kinds_of(crd)
        self._kinds = {n: v for n, v in self._kinds.items() if n in wanted}
        self._serve(kinds)
        for crd in crds:
            name = crd["metadata"]["name"]
            status = wanted.get(name)
            if status is not None and status != crd.get("status"):
                await self._write_status(crd, status)
        for crd in crds:
            if crd["metadata"].get("deletionTimestamp"):
                await self._finish_deletion(crd)
            elif CLEANUP_FINALIZER not in (crd["metadata"].get("finalizers") or []):
                await self._add_finalizer(crd)

    def _kinds_of(self, crd: dict[str, Any]) -> list[CustomKind]:
        m = crd["metadata"]
        # the generation grows with every spec change; status writes leave it alone
        key = (m.get("uid"), m.get("generation"), bool(m.get("deletionTimestamp")))
        hit = self._kinds.get(m["name"])
        if hit is None or hit[0] != key:
            hit = self._kinds[m["name"]] = (key, kinds_for(crd))
        return hit[1]

    def _serve(self, kinds: list[CustomKind]) -> None:
        before = {(k.group_resource, k.version): k for k in catalog.custom_kinds()}
        catalog.set_custom(kinds)
        crd_ssa.register(catalog.custom_kinds())
        after = {(k.group_resource, k.version): k for k in catalog.custom_kinds()}
        changed = {gr for (gr, v), k in after.items() if before.get((gr, v)) is not k}
        changed |= {gr for (gr, v) in before if (gr, v) not in after}
        if not changed and before:
            return
        if changed:
            # objects read with another schema (defaults on read) are decoded again
            self.registry.forget(tuple(resource_prefix(gr) for gr in changed))
        docs: dict[str, bytes] = {}
        by_gv: dict[tuple[str, str], list[CustomKind]] = {}
        for k in catalog.custom_kinds():
            by_gv.setdefault((k.group, k.version), []).append(k)
        for (group, version), ks in by_gv.items():
            docs[f"apis/{group}/{version}"] = orjson.dumps(crd_openapi.document(group, version, ks))
        openapi.set_custom_documents(docs)

    async def _write_status(self, crd: dict[str, Any], status: dict[str, Any]) -> None:
        new = copy.deepcopy(crd)
        new["status"] = status
        try:
            await self.registry.update(
                CRD_KIND, None, crd["metadata"]["name"], new, WriteOptions(subresource="status")
            )
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            self._wake.set()  # changed meanwhile: the next pass sees the new version

    async def _add_finalizer(self, crd: dict[str, Any]) -> None:
        new = copy.deepcopy(crd)
        new["metadata"]["finalizers"] = [
            *(crd["metadata"].get("finalizers") or []),
            CLEANUP_FINALIZER,
        ]
        with contextlib.suppress(ApiError):
            await self.registry.update(CRD_KIND, None, crd["metadata"]["name"], new, WriteOptions())

    async def _finish_deletion(self, crd: dict[str, Any]) -> None:
        finalizers = list(crd["metadata"].get("finalizers") or [])
        if CLEANUP_FINALIZER not in finalizers:
            return
        kinds = kinds_for(crd)
        remaining = 0
        if kinds:
            storage = next((k for k in kinds if k.version == k.storage_version), kinds[0])
            items, _, _ = await self.registry.list(storage, None)
            for cached in items:
                m = cached.obj["metadata"]
                try:
                    _, gone = await self.registry.delete(storage, m.get("namespace"), m["name"], {})
                except ApiError as e:
                    if e.code != 404:
                        log.warning(
                            "could not delete a custom object",
                            extra={"kv": {"name": m.get("name"), "error": str(e)}},
                        )
                    continue
                remaining += not gone
        if remaining:
            # objects with finalizers of their own: look again shortly
            asyncio.get_running_loop().call_later(1.0, self._wake.set)
            return
        fresh = await self.registry.try_get(CRD_KIND, None, crd["metadata"]["name"])
        if fresh is None:
            return
        new = copy.deepcopy(fresh)
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"].get("finalizers") or [] if f != CLEANUP_FINALIZER
        ]
        with contextlib.suppress(ApiError):
            await self.registry.update(CRD_KIND, None, crd["metadata"]["name"], new, WriteOptions())
        self._wake.set()
