"""A rate-limited, de-duplicating work queue (client-go's workqueue, for asyncio).

A key is queued at most once; a key added while a worker processes it is queued again when
that worker calls done(), so one key is never processed by two workers at once.

A failed sync is retried with exponential back-off and logged on its 1st, 2nd, 4th, 8th, ...
consecutive failure, so a key that keeps failing does not fill the log. A sync that raises
`shape.Invalid` (the object itself cannot be used) is not retried: it is logged once per
key and message, and the key comes back with the object's next change.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from kubesvc.client.shape import Invalid

log = logging.getLogger("kubesvc.workqueue")


class WorkQueue:
    def __init__(self, name: str, base_delay: float = 0.005, max_delay: float = 300.0) -> None:
        self.name = name
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wake = asyncio.Condition()
        self._shutdown = False
        self._invalid: dict[str, str] = {}  # key -> the Invalid message last logged

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._notify()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._wake:
                self._wake.notify()

        asyncio.get_running_loop().create_task(notify())

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = loop.call_later(delay, fire)

    def add_rate_limited(self, key: str) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self.max_delay, self.base_delay * 2**n))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def retries(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str | None:
        async with self._wake:
            while not self._queue and not self._shutdown:
                await self._wake.wait()
            if self._shutdown:
                return None
            key = self._queue.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._notify()

    async def shutdown(self) -> None:
        self._shutdown = True
        for t in self._timers.values():
            t.cancel()
        async with self._wake:
            self._wake.notify_all()


async def run_workers(
    queue: WorkQueue, sync: Callable[[str], Awaitable[None]], workers: int = 1
) -> None:
    """Process keys until the queue shuts down; failures are retried with back-off."""

    async def worker() -> None:
        while True:
            key = await queue.get()
            if key is None:
                return
            try:
                await sync(key)
                queue.forget(key)
                queue._invalid.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Invalid as e:
                queue.forget(key)
                if queue._invalid.get(key) != str(e):
                    queue._invalid[key] = str(e)
                    log.warning(
                        "object cannot be used; skipped until it changes",
                        extra={"kv": {"queue": queue.name, "key": key, "error": str(e)}},
                    )
            except Exception as e:
                retries = queue.retries(key)
                if retries & (retries + 1) == 0:  # failures 1, 2, 4, 8, ...
                    log.warning(
                        "sync failed; will retry",
                        extra={
                            "kv": {
                                "queue": queue.name,
                                "key": key,
                                "error": str(e) or type(e).__name__,
                                "retries": retries,
                            }
                        },
                    )
                queue.add_rate_limited(key)
            finally:
                queue.done(key)

    await asyncio.gather(*(worker() for _ in range(workers)))
