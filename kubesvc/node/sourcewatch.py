"""The ConfigMaps and Secrets a node's pods mount, each watched on its own, as upstream's
kubelet does with its watch-based manager (pkg/kubelet/util/manager/watch_based_manager.go):
one list and watch per referenced object, with `fieldSelector=metadata.name=NAME` in its
namespace, started when the first pod on the node refers to the object and stopped when the
last one is gone. The Node authorizer allows exactly that (a named list or watch of an object
a pod bound to the node refers to); a cluster-wide ConfigMap or Secret watch it refuses.

`References` is the pure part (which objects each pod refers to, counted); `SourceWatches`
applies it with informers."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from kubesvc.client import shape
from kubesvc.client.informer import Informer
from kubesvc.client.rest import ApiClient

Obj = dict[str, Any]
Source = tuple[str, str, str]  # (kind: "configMap" | "secret", namespace, name)
KINDS = {"configMap": "ConfigMap", "secret": "Secret"}


class References:
    """Which sources each pod (by uid) refers to, and how many pods refer to each."""

    def __init__(self) -> None:
        self._pods: dict[str, frozenset[Source]] = {}
        self._counts: Counter[Source] = Counter()

    def set_pod(self, uid: str, sources: Iterable[Source]) -> tuple[set[Source], set[Source]]:
        """Record what pod `uid` refers to now: (sources now referred to that were not,
        sources no pod refers to any more)."""
        new = frozenset(s for s in sources if s[1] and s[2] and s[0] in KINDS)
        old = self._pods.get(uid, frozenset())
        if new == old:
            return set(), set()
        if new:
            self._pods[uid] = new
        else:
            self._pods.pop(uid, None)
        added, removed = set(), set()
        for s in new - old:
            self._counts[s] += 1
            if self._counts[s] == 1:
                added.add(s)
        for s in old - new:
            self._counts[s] -= 1
            if self._counts[s] <= 0:
                del self._counts[s]
                removed.add(s)
        return added, removed

    def forget_pod(self, uid: str) -> set[Source]:
        return self.set_pod(uid, ())[1]

    def referred(self) -> set[Source]:
        return set(self._counts)


class SourceWatches:
    """An informer per referenced ConfigMap or Secret; `on_change(kind, obj)` for each of
    their events (kind as in pod specs: "configMap", "secret")."""

    def __init__(
        self,
        client: ApiClient,
        on_change: Callable[[str, Obj], None],
        informer: Callable[[ApiClient, str, str, str], Informer] | None = None,
    ) -> None:
        self.client = client
        self.on_change = on_change
        self.refs = References()
        self._informer = informer or _named_informer
        self._watches: dict[Source, Informer] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def set_pod(self, uid: str, namespace: str, sources: Iterable[tuple[str, str]]) -> None:
        added, removed = self.refs.set_pod(uid, ((k, namespace, n) for k, n in sources))
        self._apply(added, removed)

    def forget_pod(self, uid: str) -> None:
        self._apply(set(), self.refs.forget_pod(uid))

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        inf = self._watches.get((kind, namespace, name))
        return inf.get(f"{namespace}/{name}") if inf is not None else None

    def synced(self, kind: str, namespace: str, name: str) -> bool:
        inf = self._watches.get((kind, namespace, name))
        return inf is not None and inf.has_synced

    def _apply(self, added: set[Source], removed: set[Source]) -> None:
        for source in removed:
            inf = self._watches.pop(source, None)
            if inf is not None:
                task = asyncio.get_running_loop().create_task(inf.stop())
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)
        for source in added:
            kind, namespace, name = source
            inf = self._informer(self.client, KINDS[kind], namespace, name)
            inf.add_handler(
                lambda o, k=kind: self.on_change(k, o),  # type: ignore[misc]
                lambda _o, n, k=kind: self.on_change(k, n),  # type: ignore[misc]
                lambda o, k=kind: self.on_change(k, o),  # type: ignore[misc]
            )
            self._watches[source] = inf
            inf.start()

    async def stop(self) -> None:
        watches, self._watches = list(self._watches.values()), {}
        for inf in watches:
            await inf.stop()


def _named_informer(client: ApiClient, kind: str, namespace: str, name: str) -> Informer:
    return Informer(
        client,
        kind,
        namespace=namespace,
        field_selector=f"metadata.name={name}",
        check=shape.checker(kind),
    )
