"""Record core/v1 Events about objects, as client-go's record.EventRecorder does.

Recording never blocks the caller: events go on a queue and a background task writes them.
Repeats of the same (object, type, reason, message) within ten minutes bump `count` and
`lastTimestamp` on the existing Event instead of creating a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from kubesvc.api import objmeta
from kubesvc.client import shape
from kubesvc.client.rest import ApiClient, ApiException

log = logging.getLogger("kubesvc.events")

AGGREGATE_WINDOW = 600.0
MAX_PENDING = 1000


def involved_object(obj: dict[str, Any]) -> dict[str, Any]:
    """The object reference of an Event; fields of the wrong type (an object read as
    stored can have any) are left empty."""
    m = objmeta.meta(obj)
    ref = {
        "kind": shape.text(obj.get("kind")),
        "apiVersion": shape.text(obj.get("apiVersion")),
        "name": shape.text(m.get("name")),
        "uid": shape.text(m.get("uid")),
        "resourceVersion": shape.text(m.get("resourceVersion")),
    }
    if shape.text(m.get("namespace")):
        ref["namespace"] = m["namespace"]
    return ref


class EventRecorder:
    def __init__(self, client: ApiClient, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str]] = asyncio.Queue(
            MAX_PENDING
        )
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(asyncio.QueueFull):  # drop rather than block a controller
            self._queue.put_nowait((involved_object(obj), type_, reason, message))

    async def flush(self) -> None:
        await self._queue.join()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            ref, type_, reason, message = await self._queue.get()
            try:
                await self._write(ref, type_, reason, message)
            except (ApiException, OSError) as e:
                log.debug("event not recorded", extra={"kv": {"reason": reason, "error": str(e)}})
            except Exception:
                log.exception("event recording failed")
            finally:
                self._queue.task_done()

    async def _write(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        ns = ref.get("namespace") or "default"
        key = (ref.get("uid", ""), type_, reason, message)
        now, mono = objmeta.now_text(), time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and mono - seen[3] < AGGREGATE_WINDOW:
            name, ns_seen, count, _ = seen
            try:
                await self.client.patch(
                    "Event", ns_seen, name, {"count": count + 1, "lastTimestamp": now}
                )
                self._seen[key] = (name, ns_seen, count + 1, mono)
                return
            except ApiException as e:
                if e.status != 404:
                    raise
        name = f"{ref.get('name', 'object')}.{time.time_ns():x}"
        event = {
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        await self.client.create("Event", ns, event)
        self._seen[key] = (name, ns, 1, mono)
        if len(self._seen) > 4096:
            cutoff = mono - AGGREGATE_WINDOW
            self._seen = {k: v for k, v in self._seen.items() if v[3] >= cutoff}
