"""What every controller shares: informers to read, a work queue of keys, an API client to
write and an event recorder, wired together by the controller manager."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import InformerFactory, Obj, object_key
from kubesvc.client.rest import ApiClient
from kubesvc.client.workqueue import WorkQueue, run_workers


@dataclass
class Context:
    client: ApiClient
    factory: InformerFactory
    recorder: EventRecorder
    settings: dict[str, float] = field(default_factory=dict)  # command-line tunables


class Controller:
    """Subclasses create informers and handlers in __init__ and implement sync(key)."""

    name = "controller"
    workers = 2

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
        await run_workers(self.queue, self.sync, self.workers)

    async def stop(self) -> None:
        await self.queue.shutdown()


def split_key(key: str) -> tuple[str | None, str]:
    if "/" in key:
        ns, name = key.split("/", 1)
        return ns, name
    return None, key


async def run_all(controllers: list[Controller]) -> None:
    await asyncio.gather(*(c.run() for c in controllers))
