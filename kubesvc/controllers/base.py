"""What every controller shares: informers to read, a work queue of keys, an API client to
write and an event recorder, wired together by the controller manager."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from kubesvc.api.objmeta import object_key
from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import InformerFactory, Obj
from kubesvc.client.rest import ApiClient, ApiException
from kubesvc.client.workqueue import WorkQueue, run_workers

log = logging.getLogger("kubesvc.controllers")

CONFLICT_RETRY = 1.0  # seconds


@dataclass
class Context:
    client: ApiClient
    factory: InformerFactory
    recorder: EventRecorder
    settings: dict[str, float] = field(default_factory=dict)  # command-line tunables
    root_ca: str = ""  # the cluster CA (PEM) that the root CA publisher hands to namespaces


class Controller:
    """Subclasses create informers and handlers in __init__ and implement sync(key)."""

    name = "controller"
    workers = 2
    # A write that raced a newer version (409) is retried after CONFLICT_RETRY rather than
    # counted as a failure: the newer version's informer event requeues the key anyway,
    # and the retry covers a missed one.
    requeue_conflicts = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.queue = WorkQueue(self.name)

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        await run_workers(self.queue, self._sync_key, self.workers)

    async def _sync_key(self, key: str) -> None:
        try:
            await self.sync(key)
        except ApiException as e:
            if e.status != 409 or not self.requeue_conflicts:
                raise
            log.debug("conflict; requeueing", extra={"kv": {"controller": self.name, "key": key}})
            self.queue.add_after(key, CONFLICT_RETRY)

    async def stop(self) -> None:
        await self.queue.shutdown()


def split_key(key: str) -> tuple[str | None, str]:
    if "/" in key:
        ns, name = key.split("/", 1)
        return ns, name
    return None, key


async def run_all(controllers: list[Controller]) -> None:
    await asyncio.gather(*(c.run() for c in controllers))
