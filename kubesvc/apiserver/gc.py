"""Garbage collection inside the API server: owner references, deletion finalizers,
namespace termination and terminating pods whose node is gone.

Each pass reads the whole (in-memory) store and acts on what it finds; passes run shortly
after any change that could matter and periodically, so a missed trigger only delays work.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

from kubesvc.api.errors import ApiError
from kubesvc.api.kinds import BY_KIND, KINDS, Kind
from kubesvc.apiserver.registry import Registry, WriteOptions

log = logging.getLogger("kubesvc.gc")

SWEEP_INTERVAL = 30.0
DEBOUNCE = 0.05


class GarbageCollector:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._wake = asyncio.Event()

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        watch = self.registry.store.watch("/registry/", self.registry.store.revision)
        trigger = asyncio.create_task(self._triggers(watch))
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), SWEEP_INTERVAL)
                await asyncio.sleep(DEBOUNCE)
                self._wake.clear()
                try:
                    await self.sweep()
                except Exception:
                    log.exception("garbage collection pass failed")
        finally:
            trigger.cancel()
            watch.close()

    async def _triggers(self, watch: Any) -> None:
        async for ev in watch:
            if ev.type == "DELETE" or b'"deletionTimestamp"' in ev.kv.value:
                self._wake.set()

    async def sweep(self) -> None:
        objects: list[tuple[Kind, dict[str, Any]]] = []
        for kind in KINDS:
            items, _, _ = await self.registry.list(kind, None)
            objects.extend((kind, c.obj) for c in items)
        by_uid = {o["metadata"].get("uid"): (k, o) for k, o in objects}
        dependents: dict[str, list[tuple[Kind, dict[str, Any]]]] = {}
        for k, o in objects:
            for ref in o["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid", ""), []).append((k, o))
        nodes = {o["metadata"]["name"] for k, o in objects if k.kind == "Node"}
        for k, o in objects:
            m = o["metadata"]
            refs = m.get("ownerReferences") or []
            if refs and not any(r.get("uid") in by_uid for r in refs):
                await self._delete(k, o, "Background")
                continue
            if m.get("deletionTimestamp"):
                await self._finish_deletion(k, o, dependents.get(m.get("uid", ""), []), nodes)

    async def _finish_deletion(
        self,
        kind: Kind,
        obj: dict[str, Any],
        deps: list[tuple[Kind, dict[str, Any]]],
        nodes: set[str],
    ) -> None:
        m = obj["metadata"]
        finalizers = list(m.get("finalizers") or [])
        if "orphan" in finalizers:
            for dk, d in deps:
                await self._drop_owner(dk, d, m["uid"])
            finalizers.remove("orphan")
            await self._set_finalizers(kind, obj, finalizers)
            return
        if "foregroundDeletion" in finalizers:
            if deps:
                for dk, d in deps:
                    await self._delete(dk, d, "Foreground")
                return
            finalizers.remove("foregroundDeletion")
            await self._set_finalizers(kind, obj, finalizers)
            return
        if kind.kind == "Namespace":
            await self._empty_namespace(obj)
            return
        if kind.kind == "Pod" and (obj.get("spec") or {}).get("nodeName") not in nodes:
            await self._delete(kind, obj, "Background", grace=0)

    async def _empty_namespace(self, ns: dict[str, Any]) -> None:
        name = ns["metadata"]["name"]
        remaining = 0
        for kind in KINDS:
            if not kind.namespaced:
                continue
            items, _, _ = await self.registry.list(kind, name)
            for c in items:
                remaining += 1
                await self._delete(kind, c.obj, "Background", grace=0)
        if remaining:
            self.poke()
            return
        fresh = copy.deepcopy(await self.registry.get(BY_KIND["Namespace"], None, name))
        fresh.setdefault("spec", {})["finalizers"] = []
        await self._write(BY_KIND["Namespace"], fresh, "finalize")

    async def _delete(
        self, kind: Kind, obj: dict[str, Any], policy: str, grace: int | None = None
    ) -> None:
        m = obj["metadata"]
        options: dict[str, Any] = {"propagationPolicy": policy}
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        try:
            await self.registry.delete(kind, m.get("namespace"), m["name"], options)
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    async def _drop_owner(self, kind: Kind, obj: dict[str, Any], uid: str) -> None:
        new = copy.deepcopy(obj)
        refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            new["metadata"].pop("ownerReferences", None)
        await self._write(kind, new, "")

    async def _set_finalizers(self, kind: Kind, obj: dict[str, Any], finalizers: list[str]) -> None:
        new = copy.deepcopy(obj)
        if finalizers:
            new["metadata"]["finalizers"] = finalizers
        else:
            new["metadata"].pop("finalizers", None)
        await self._write(kind, new, "")

    async def _write(self, kind: Kind, obj: dict[str, Any], subresource: str) -> None:
        m = obj["metadata"]
        try:
            await self.registry.update(
                kind,
                m.get("namespace"),
                m["name"],
                obj,
                WriteOptions(manager="kube-controller-manager", subresource=subresource),
            )
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            self.poke()
