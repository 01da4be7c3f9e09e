"""The work queue: de-duplication, no concurrent processing of one key, back-off."""

from __future__ import annotations

import asyncio

from kubesvc.client.workqueue import WorkQueue, run_workers


def test_dedupes_and_requeues_keys_added_while_processing() -> None:
    async def body() -> None:
        q = WorkQueue("t")
        q.add("a")
        q.add("a")
        q.add("b")
        assert len(q) == 2
        key = await q.get()
        assert key == "a"
        q.add("a")  # added while processing: not queued twice, not handed out concurrently
        assert await q.get() == "b"
        assert len(q) == 0
        q.done("b")
        q.done("a")
        assert len(q) == 1 and await q.get() == "a"

    asyncio.run(body())


def test_failures_retry_with_backoff_then_succeed() -> None:
    async def body() -> None:
        q = WorkQueue("t", base_delay=0.01)
        calls: list[str] = []

        async def sync(key: str) -> None:
            calls.append(key)
            if len(calls) < 3:
                raise RuntimeError("transient")
            await q.shutdown()

        q.add("k")
        await asyncio.wait_for(run_workers(q, sync, workers=2), 5)
        assert calls == ["k", "k", "k"]

    asyncio.run(body())


def test_add_after_keeps_the_earliest_deadline() -> None:
    async def body() -> None:
        q = WorkQueue("t")
        q.add_after("x", 0.05)
        q.add_after("x", 10)
        got = await asyncio.wait_for(q.get(), 2)
        assert got == "x"

    asyncio.run(body())
