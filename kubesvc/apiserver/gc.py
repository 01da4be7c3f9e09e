"""Garbage collection inside the API server: owner references, deletion finalizers,
namespace termination and terminating pods whose node is gone.

Each pass reads the whole (in-memory) store and acts on what it finds; passes run shortly
after any change that could matter and periodically, so a missed trigger only delays work.

Stored objects may hold anything (older data, or written straight to the store), so each one's
metadata is read through `gc_meta`, which never fails: an object without a name is skipped,
ownerReferences that cannot be read make an object's owners unknown (it is then never
collected for them), and one object that fails is logged once per revision while the pass
goes on with the others. A terminating namespace is emptied all the same: finalizers that
cannot be read are dropped before the delete, and an object the API cannot delete (no name,
or its delete fails on what it holds) is removed from the store itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from dataclasses import dataclass
from typing import Any

from kubesvc.api import catalog
from kubesvc.api.errors import ApiError
from kubesvc.api.kinds import BY_KIND, Kind
from kubesvc.apiserver.registry import Registry, WriteOptions, prefix_for
from kubesvc.store.base import KeyValue, StoreError

log = logging.getLogger("kubesvc.gc")

SWEEP_INTERVAL = 30.0
DEBOUNCE = 0.05


@dataclass(frozen=True, slots=True)
class GcMeta:
    """What garbage collection reads from an object's metadata."""

    name: str  # "" when the object has none: it cannot be addressed, so it is skipped
    namespace: str | None
    uid: str
    owners: tuple[str, ...] | None  # owner uids; None when ownerReferences cannot be read
    finalizers: tuple[str, ...] | None  # None when they cannot be read
    deleting: bool  # deletionTimestamp set
    node_name: str  # a Pod's spec.nodeName
    problems: tuple[str, ...] = ()


def _str(value: Any) -> str:
    return value if value.__class__ is str else ""


def gc_meta(obj: Any) -> GcMeta:
    """Read an object's metadata for garbage collection; never raises."""
    m = obj.get("metadata") if obj.__class__ is dict else None
    if m.__class__ is not dict:
        return GcMeta("", None, "", None, None, False, "", ("metadata: not an object",))
    problems: list[str] = []
    name = _str(m.get("name"))
    if not name:
        problems.append("metadata.name: missing or not a string")
    ns = m.get("namespace")
    if ns is not None and ns.__class__ is not str:
        problems.append("metadata.namespace: not a string")
        name = ""
    refs = m.get("ownerReferences")
    owners: tuple[str, ...] | None = ()
    if refs is not None:
        if refs.__class__ is list and all(
            r.__class__ is dict and r.get("uid").__class__ is str and r["uid"] for r in refs
        ):
            owners = tuple(r["uid"] for r in refs)
        else:
            owners = None
            problems.append("metadata.ownerReferences: not a list of references with uids")
    fins = m.get("finalizers")
    finalizers: tuple[str, ...] | None = ()
    if fins is not None:
        if fins.__class__ is list and all(f.__class__ is str for f in fins):
            finalizers = tuple(fins)
        else:
            finalizers = None
            problems.append("metadata.finalizers: not a list of strings")
    spec = obj.get("spec")
    node = _str(spec.get("nodeName")) if spec.__class__ is dict else ""
    return GcMeta(
        name,
        ns or None,  # type: ignore[arg-type]
        _str(m.get("uid")),
        owners,
        finalizers,
        bool(_str(m.get("deletionTimestamp"))),
        node,
        tuple(problems),
    )


class GarbageCollector:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._wake = asyncio.Event()
        self._noted: set[tuple[Any, ...]] = set()

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        watch = await self.registry.store.watch("/registry/", self.registry.store.revision)
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

    async def _stored(self, kind: Kind, namespace: str | None) -> list[tuple[KeyValue, Any]]:
        """(key-value, decoded object) of every stored object of a kind; values that do not
        decode are logged once and left out."""
        kvs, _ = await self.registry.store.range(prefix_for(kind, namespace))
        out = []
        for kv in kvs:
            try:
                out.append((kv, self.registry.decode(kv).obj))
            except Exception as e:
                self._note(
                    kind,
                    {"metadata": {"name": kv.key, "resourceVersion": str(kv.mod_revision)}},
                    f"cannot decode: {e}",
                )
        return out

    async def sweep(self) -> None:
        objects: list[tuple[Kind, dict[str, Any], GcMeta]] = []
        for kind in catalog.stored_kinds():
            objects.extend((kind, o, gc_meta(o)) for _, o in await self._stored(kind, None))
        by_uid = {gm.uid for _, _, gm in objects if gm.uid}
        dependents: dict[str, list[tuple[Kind, dict[str, Any]]]] = {}
        for k, o, gm in objects:
            for uid in gm.owners or ():
                dependents.setdefault(uid, []).append((k, o))
        nodes = {gm.name for k, _, gm in objects if k.kind == "Node"}
        for k, o, gm in objects:
            if gm.problems:
                self._note(k, o, "; ".join(gm.problems))
            if not gm.name:
                continue
            try:
                if gm.owners and not any(uid in by_uid for uid in gm.owners):
                    await self._delete(k, o, "Background")
                    continue
                if gm.deleting:
                    await self._finish_deletion(k, o, gm, dependents.get(gm.uid, []), nodes)
            except Exception as e:  # one object must not stop the pass for all the others
                self._note(k, o, f"{type(e).__name__}: {e}")

    def _note(self, kind: Kind, obj: dict[str, Any], why: str) -> None:
        """Log a problem with an object once per revision."""
        m = obj.get("metadata") if obj.__class__ is dict else None
        rv = _str(m.get("resourceVersion")) if m.__class__ is dict else ""  # type: ignore[union-attr]
        ident = (kind.kind, id(obj) if not rv else "", rv, why)
        if ident in self._noted:
            return
        if len(self._noted) > 10_000:
            self._noted.clear()
        self._noted.add(ident)
        gm = gc_meta(obj)
        where = f"{gm.namespace}/{gm.name}" if gm.namespace else gm.name or "?"
        log.warning(
            "garbage collection: object skipped",
            extra={"kv": {"kind": kind.kind, "object": where, "resourceVersion": rv, "error": why}},
        )

    async def _finish_deletion(
        self,
        kind: Kind,
        obj: dict[str, Any],
        gm: GcMeta,
        deps: list[tuple[Kind, dict[str, Any]]],
        nodes: set[str],
    ) -> None:
        finalizers = list(gm.finalizers or ())
        if gm.finalizers is None:
            # unreadable finalizers cannot be finished one by one; the object is being
            # deleted, so what they would have held is let go (dependents keep their owner)
            await self._set_finalizers(kind, obj, [])
            return
        if "orphan" in finalizers:
            for dk, d in deps:
                await self._drop_owner(dk, d, gm.uid)
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
        if kind.kind == "Pod" and gm.node_name not in nodes:
            await self._delete(kind, obj, "Background", grace=0)

    async def _empty_namespace(self, ns: dict[str, Any]) -> None:
        name = gc_meta(ns).name
        remaining = 0
        for kind in catalog.stored_kinds():
            if not kind.namespaced:
                continue
            for kv, obj in await self._stored(kind, name):
                remaining += 1
                gm = gc_meta(obj)
                try:
                    if gm.name:
                        if gm.finalizers is None:
                            await self._set_finalizers(kind, obj, [])
                        await self._delete(kind, obj, "Background", grace=0)
                        continue
                except ApiError as e:
                    if e.code < 400 or e.code >= 500 or e.code == 409:
                        self._note(kind, obj, f"delete failed: {e}")
                        continue  # the next pass tries again
                    self._note(kind, obj, f"the API refuses it ({e}); removed from the store")
                except Exception as e:
                    self._note(kind, obj, f"{type(e).__name__}: {e}; removed from the store")
                # nothing the API can address or delete: it goes with its namespace anyway
                with contextlib.suppress(StoreError):
                    await self.registry.store.delete(kv.key, kv.mod_revision)
        if remaining:
            self.poke()
            return
        fresh = copy.deepcopy(await self.registry.get(BY_KIND["Namespace"], None, name))
        if fresh.get("spec").__class__ is not dict:
            fresh["spec"] = {}
        fresh["spec"]["finalizers"] = []
        await self._write(BY_KIND["Namespace"], fresh, "finalize")

    async def _delete(
        self, kind: Kind, obj: dict[str, Any], policy: str, grace: int | None = None
    ) -> None:
        gm = gc_meta(obj)
        if not gm.name:
            return
        options: dict[str, Any] = {"propagationPolicy": policy}
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        try:
            await self.registry.delete(kind, gm.namespace, gm.name, options)
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    async def _drop_owner(self, kind: Kind, obj: dict[str, Any], uid: str) -> None:
        new = copy.deepcopy(obj)
        refs = [
            r
            for r in new["metadata"].get("ownerReferences") or []
            if r.__class__ is not dict or r.get("uid") != uid
        ]
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
        gm = gc_meta(obj)
        if not gm.name:
            return
        try:
            await self.registry.update(
                kind,
                gm.namespace,
                gm.name,
                obj,
                WriteOptions(manager="kube-controller-manager", subresource=subresource),
            )
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            self.poke()
