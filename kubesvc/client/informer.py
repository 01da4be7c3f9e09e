"""Informers: list, then watch from the list's resourceVersion, into an indexed local cache.

As client-go's reflector + indexer + shared informer: the cache is updated first, then handlers
are told; a dropped watch resumes from the last resourceVersion seen; 410 Expired (or any
error) makes it list again and reconcile the cache, telling handlers about what changed while
it was away (deletes included). Handlers are plain functions and must not block: controllers
only put keys on their queues there.

An object the informer cannot use (no name, a transform or an optional kind check that
raises `shape.Invalid`) is kept out of the cache, as if it had been deleted: handlers get a
delete for the version they had, one log line is written per object revision, and the
object comes back with its next usable revision. Nothing else stops: the rest of the list or
watch goes on, and any failure of a list or watch is retried with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from kubesvc.api import objmeta
from kubesvc.api.kinds import BY_KIND, Kind
from kubesvc.api.objmeta import object_key
from kubesvc.client import shape
from kubesvc.client.rest import ApiClient, ApiException

log = logging.getLogger("kubesvc.informer")

Obj = dict[str, Any]
AddFn = Callable[[Obj], None]
UpdateFn = Callable[[Obj, Obj], None]
DeleteFn = Callable[[Obj], None]
Transform = Callable[[Obj], Obj]
RejectFn = Callable[[Any, str], None]
IndexFn = Callable[[Obj], Iterable[str]]


def _interned(value: Any) -> Any:
    if isinstance(value, dict):
        return {sys.intern(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    if isinstance(value, str) and len(value) <= 16:
        return sys.intern(value)
    return value


def compact(obj: Obj) -> Obj:
    """Default transform: drop managedFields (large, read by no controller) and share the
    strings every object repeats (keys, "TCP", "ClusterIP", ...). A Service then costs about
    2 KB in the cache instead of 9 KB."""
    m = obj.get("metadata")
    if isinstance(m, dict) and "managedFields" in m:
        m.pop("managedFields")
    status = obj.get("status")
    if isinstance(status, dict) and all(v in ({}, None, []) for v in status.values()):
        obj.pop("status")  # e.g. a Service's `status: {loadBalancer: {}}` says nothing
    return _interned(obj)  # type: ignore[no-any-return]


class _Expired(Exception):
    pass


@dataclass
class _Handler:
    on_add: AddFn | None
    on_update: UpdateFn | None
    on_delete: DeleteFn | None


class Informer:
    def __init__(
        self,
        client: ApiClient,
        kind: str | Kind,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        transform: Transform | None = compact,
        resync_period: float = 0.0,
        watch_timeout: int = 300,
        page_size: int = 500,
        check: shape.Check | None = None,
    ) -> None:
        self.client = client
        self.page_size = page_size
        self.kind = BY_KIND[kind] if isinstance(kind, str) else kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform
        self.check = check  # runs before the transform; raises shape.Invalid
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.cache: dict[str, Obj] = {}
        self.resource_version = ""
        self._handlers: list[_Handler] = []
        self._indexers: dict[str, IndexFn] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # key -> resourceVersion of objects kept out of the cache (logged once per revision)
        self.rejected: dict[str, str] = {}
        self._reject_handlers: list[RejectFn] = []

    # -- cache access --------------------------------------------------------------------
    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    def get(self, key: str) -> Obj | None:
        return self.cache.get(key)

    def list(self) -> list[Obj]:
        return list(self.cache.values())

    def add_indexer(self, name: str, fn: IndexFn) -> None:
        self._indexers[name] = fn
        index: dict[str, set[str]] = {}
        for key, obj in self.cache.items():
            for value in self._index_values(name, fn, obj):
                index.setdefault(value, set()).add(key)
        self._indices[name] = index

    def by_index(self, name: str, value: str) -> list[Obj]:
        keys = self._indices.get(name, {}).get(value, ())
        return [self.cache[k] for k in keys if k in self.cache]

    def add_handler(
        self,
        on_add: AddFn | None = None,
        on_update: UpdateFn | None = None,
        on_delete: DeleteFn | None = None,
    ) -> None:
        """Register handlers; a late registration first gets an add for every cached object."""
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in list(self.cache.values()):
                _call(on_add, obj)

    def add_reject_handler(self, fn: RejectFn) -> None:
        """fn(object as received, why) once per revision of an object kept out of the cache
        (for an Event about it; the object may have any shape)."""
        self._reject_handlers.append(fn)

    # -- cache mutation (cache first, then handlers) ----------------------------------------
    def _index_values(self, name: str, fn: IndexFn, obj: Obj) -> Iterable[str]:
        try:
            return list(fn(obj))
        except Exception as e:
            log.warning(
                "index function failed; object left out of the index",
                extra={
                    "kv": {
                        "kind": self.kind.plural,
                        "index": name,
                        "object": shape.identity(obj),
                        "error": repr(e),
                    }
                },
            )
            return ()

    def _index(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in self._index_values(name, fn, old) if old is not None else ():
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
            for value in self._index_values(name, fn, new) if new is not None else ():
                index.setdefault(value, set()).add(key)

    def _ingest(self, raw: Obj) -> tuple[str, Obj | None]:
        """(key, the object as cached) for a listed or watched object, or (key, None) when
        it cannot be used (logged once per revision; key "" when it has no name)."""
        key = object_key(raw)
        try:
            if not key:
                raise shape.Invalid("required field is missing", ("metadata", "name"))
            if self.check is not None:
                self.check(raw)
            obj = self.transform(raw) if self.transform is not None else raw
        except Exception as e:
            self._note_rejected(key, raw, e)
            return key, None
        if key in self.rejected:
            del self.rejected[key]
            log.info(
                "object is usable again",
                extra={"kv": {"kind": self.kind.plural, "object": shape.identity(raw)}},
            )
        return key, obj

    def _note_rejected(self, key: str, raw: Any, error: Exception) -> None:
        rv = shape.revision(raw)
        seen = self.rejected.get(key or "?" + rv)
        if seen == rv:
            return
        if len(self.rejected) > 10_000:  # nameless objects cannot be forgotten on delete
            self.rejected.clear()
        self.rejected[key or "?" + rv] = rv
        why = str(error) if isinstance(error, shape.Invalid) else f"{type(error).__name__}: {error}"
        log.warning(
            "ignoring an object that cannot be used",
            extra={"kv": {"kind": self.kind.plural, "object": shape.identity(raw), "error": why}},
        )
        for fn in self._reject_handlers:
            try:
                fn(raw, why)
            except Exception:
                log.exception("informer reject handler failed")

    def _upsert(self, obj: Obj) -> None:
        """An object as a watch event brings it: cached when usable, else removed."""
        key, cached = self._ingest(obj)
        if cached is not None:
            self._store(key, cached)
        elif key:
            self._drop(key)  # unusable now: gone for the consumers

    def _remove(self, obj: Obj) -> None:
        key = object_key(obj)
        self.rejected.pop(key, None)
        self._drop(key)

    def _store(self, key: str, obj: Obj) -> None:
        old = self.cache.get(key)
        self.cache[key] = obj
        self._index(key, old, obj)
        for h in self._handlers:
            if old is None:
                if h.on_add is not None:
                    _call(h.on_add, obj)
            elif h.on_update is not None:
                _call(h.on_update, old, obj)

    def _drop(self, key: str) -> None:
        old = self.cache.pop(key, None)
        if old is None:
            return
        self._index(key, old, None)
        for h in self._handlers:
            if h.on_delete is not None:
                _call(h.on_delete, old)

    def _replace(self, fresh: dict[str, Obj | None]) -> None:
        """The cache becomes the usable objects of `fresh` (already transformed)."""
        for key in [k for k in self.cache if fresh.get(k) is None]:
            self._drop(key)
        for key, obj in fresh.items():
            if obj is None:
                continue
            old = self.cache.get(key)
            if old is not None and _rv(old) == _rv(obj):
                continue
            self._store(key, obj)
        for key in [k for k in self.rejected if k not in fresh]:
            del self.rejected[key]  # gone while we were away

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        if not self._tasks:
            self._tasks.append(
                asyncio.create_task(self._run(), name=f"informer-{self.kind.plural}")
            )
            if self.resync_period > 0:
                self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._list()
                failures = 0
                while True:
                    await self._watch()
            except _Expired:
                log.info("watch expired; listing again", extra={"kv": {"kind": self.kind.plural}})
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # anything at all: an informer that stops is a consumer that never syncs
                failures += 1
                delay = min(30.0, 0.2 * 2 ** min(failures, 8))
                if failures & (failures - 1) == 0:  # 1st, 2nd, 4th, 8th, ... failure
                    known = (ApiException, aiohttp.ClientError, OSError, TimeoutError)
                    error = str(e) if isinstance(e, known) else f"{type(e).__name__}: {e}"
                    log.warning(
                        "list/watch failed; retrying",
                        extra={
                            "kv": {
                                "kind": self.kind.plural,
                                "error": error,
                                "in": delay,
                                "failures": failures,
                            }
                        },
                    )
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        """List in pages, as upstream's reflector does: each page is transformed before the
        next arrives, so a large list never holds every full object at once. The watch
        starts from the first page's resourceVersion (pages after it may be newer; the
        watch replays what changed meanwhile)."""
        fresh: dict[str, Obj | None] = {}
        resource_version, token = "", ""
        while True:
            body = await self.client.list(
                self.kind,
                self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                limit=self.page_size,
                continue_token=token,
            )
            page = body.get("items") or []
            if not isinstance(page, list):
                raise ValueError(f"list of {self.kind.plural}: items is not an array")
            for raw in page:
                key, obj = self._ingest(raw)
                if key:
                    fresh[key] = obj
            meta = objmeta.meta(body)
            resource_version = resource_version or shape.text(meta.get("resourceVersion"))
            token = shape.text(meta.get("continue"))
            if not token:
                break
        self._replace(fresh)
        self.resource_version = resource_version
        self._synced.set()

    async def _watch(self) -> None:
        stream = self.client.watch(
            self.kind,
            self.namespace,
            resource_version=self.resource_version,
            timeout_seconds=self.watch_timeout,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        async for type_, obj in stream:
            if type_ == "ERROR":
                if obj.get("code") == 410:
                    raise _Expired()
                raise ApiException(int(obj.get("code") or 500), obj)
            rv = _rv(obj)
            if type_ in ("ADDED", "MODIFIED"):
                self._upsert(obj)
            elif type_ == "DELETED":
                self._remove(obj)
            if rv:
                self.resource_version = rv

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            if not self.has_synced:
                continue
            for obj in list(self.cache.values()):
                for h in self._handlers:
                    if h.on_update is not None:
                        _call(h.on_update, obj, obj)


def _rv(obj: Obj) -> str:
    return shape.revision(obj)


def _call(fn: Callable[..., None], *args: Obj) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("informer handler failed")


class InformerFactory:
    """One informer per (kind, namespace, selectors) per process, shared by all users."""

    def __init__(
        self, client: ApiClient, resync_period: float = 0.0, *, checked: bool = False
    ) -> None:
        """`checked`: every informer runs its kind's `shape.check` on what it receives."""
        self.client = client
        self.resync_period = resync_period
        self.checked = checked
        self._informers: dict[tuple[str, str | None, str, str], Informer] = {}

    def informer(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        transform: Transform | None = compact,
    ) -> Informer:
        key = (kind, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(
                self.client,
                kind,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                transform=transform,
                resync_period=self.resync_period,
                check=shape.checker(kind) if self.checked else None,
            )
            self._informers[key] = inf
        return inf

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        waits = [inf.wait_for_sync() for inf in self._informers.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        for inf in self._informers.values():
            with contextlib.suppress(Exception):
                await inf.stop()
