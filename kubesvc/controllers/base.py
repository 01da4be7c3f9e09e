"""What every controller shares: informers to read, a work queue of keys, an API client to
write and an event recorder, wired together by the controller manager."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesvc.api.objmeta import object_key
from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import InformerFactory, Obj
from kubesvc.client.rest import ApiClient, ApiException
from kubesvc.client.workqueue import WorkQueue, run_workers

log = logging.getLogger("kubesvc.controllers")

CONFLICT_RETRY = 1.0  # seconds


@dataclass
class Context:
    client: ApiClient  # the controller-manager's own: the shared informers read with it
    factory: InformerFactory
    recorder: EventRecorder
    settings: dict[str, float] = field(default_factory=dict)  # command-line tunables
    root_ca: str = ""  # the cluster CA (PEM) that the root CA publisher hands to namespaces
    # each controller's own client (clientbuilder.ClientBuilder.client); None: every
    # controller writes with `client`
    writers: Callable[[str], ApiClient] | None = None

    def client_for(self, controller: str) -> ApiClient:
        """The client `controller` writes with."""
        return self.writers(controller) if self.writers is not None else self.client

    def recorder_for(self, controller: str, component: str = "") -> Any:
        """An event recorder writing as `controller` (events' source `component`, or the
        shared recorder's)."""
        shared = self.recorder
        client = self.client_for(controller)
        if not isinstance(shared, EventRecorder) or (client is shared.client and not component):
            return shared
        return EventRecorder(client, component or shared.component, shared.host)


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
        self.client = ctx.client_for(self.name)
        self.recorder = ctx.recorder_for(self.name)
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
        if self.recorder is not self.ctx.recorder and isinstance(self.recorder, EventRecorder):
            await self.recorder.close()


def split_key(key: str) -> tuple[str | None, str]:
    if "/" in key:
        ns, name = key.split("/", 1)
        return ns, name
    return None, key


async def run_all(controllers: list[Controller]) -> None:
    await asyncio.gather(*(c.run() for c in controllers))
