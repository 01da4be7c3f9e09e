"""The revisioned key-value store interface, modelled on etcd's data model.

Every successful write gets the next global revision; that revision is the Kubernetes
resourceVersion. Values are opaque bytes. Watches deliver every change after a revision, in
order, and fail with `Compacted` when the history they need was compacted away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int  # number of writes since creation, starting at 1


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue  # for DELETE: the last value, with mod_revision = the deletion revision
    created: bool = False  # PUT that created the key
    prev: KeyValue | None = None  # the value before this change, when known


Claims = Sequence[tuple[str, bytes]]  # (key, value) pairs created with a write


def side_keys(
    key: str, claims: Claims, releases: Sequence[str]
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """A write's claims and releases, each key once (the last value of a repeated claim);
    ValueError when a key is both, or is the written key itself."""
    claimed = dict(claims)
    released = list(dict.fromkeys(releases))
    if key in claimed or key in released or not claimed.keys().isdisjoint(released):
        raise ValueError("a key is claimed and released, or written, by one write")
    return list(claimed.items()), released


class StoreError(Exception):
    pass


class StoreUnavailable(StoreError):
    """The store did not answer in time (etcd without quorum, or no member reachable)."""


class KeyExists(StoreError):
    pass


class KeyNotFound(StoreError):
    pass


class Claimed(StoreError):
    """A write's claim key exists already: what it claims is someone else's."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} is claimed")
        self.key = key


class RevisionMismatch(StoreError):
    """Compare-and-swap failed: the key's mod_revision is not the expected one."""

    def __init__(self, current: KeyValue | None) -> None:
        super().__init__("revision mismatch")
        self.current = current


class Compacted(StoreError):
    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"required revision {requested} has been compacted (compacted: {compacted})"
        )
        self.requested = requested
        self.compacted = compacted


class Watch(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...

    @property
    def progress_revision(self) -> int:
        """Every change under the prefix up to this revision has been delivered (what a
        watch bookmark may promise)."""
        ...

    def close(self) -> None: ...


WATCH_QUEUE_LIMIT = 100_000  # events buffered for one slow watcher before it is dropped


class QueuedWatch:
    """A watch whose events are handed to its reader through a queue: None ends it, an
    exception put there is raised to the reader. A reader that lets WATCH_QUEUE_LIMIT
    events pile up is dropped (`overflowed`)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        self.closed = False
        self.overflowed = False

    def push(self, item: Event | BaseException) -> None:
        if self.closed:
            return
        if isinstance(item, Event) and self._queue.qsize() >= WATCH_QUEUE_LIMIT:
            self.overflowed = True
            self.close()
            return
        self._queue.put_nowait(item)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._closed()
            self._queue.put_nowait(None)

    def _closed(self) -> None:
        """What the source does when a watcher is closed (forget it)."""

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class Store(Protocol):
    @property
    def revision(self) -> int:
        """The newest revision."""
        ...

    @property
    def compacted_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None: ...

    async def range(
        self, prefix: str, revision: int = 0, start_after: str = ""
    ) -> tuple[list[KeyValue], int]:
        """The keys under prefix after start_after (sorted by key) as they were at revision
        (0: now), and that revision; raises Compacted when it is no longer kept."""
        ...

    # Claims and releases ride in a write's own transaction: `claims` are keys created with
    # it that must not exist yet (else Claimed), `releases` keys deleted with it. They are
    # how an object holds a unique value, such as a Service's ClusterIP, across API servers.
    async def create(self, key: str, value: bytes, claims: Claims = ()) -> KeyValue: ...

    async def update(
        self,
        key: str,
        value: bytes,
        expected_mod_revision: int,
        claims: Claims = (),
        releases: Sequence[str] = (),
    ) -> KeyValue: ...

    async def delete(
        self, key: str, expected_mod_revision: int | None = None, releases: Sequence[str] = ()
    ) -> KeyValue:
        """Delete; returns the deleted value with mod_revision set to the deletion revision."""
        ...

    async def watch(self, prefix: str, after_revision: int) -> Watch:
        """Changes under prefix with revision > after_revision; raises Compacted."""
        ...

    async def compact(self, revision: int) -> None: ...

    async def close(self) -> None: ...
