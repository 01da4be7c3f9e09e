"""Objects an informer cannot use: kept out of the cache as if deleted, logged once per
revision, back with their next usable revision; and the work queue's handling of objects a
sync cannot use (no retry, one line) and of failures that repeat (1st, 2nd, 4th, ... logged)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from kubesvc.api.objmeta import object_key
from kubesvc.client import shape
from kubesvc.client.informer import Informer
from kubesvc.client.shape import Invalid
from kubesvc.client.workqueue import WorkQueue, run_workers


def svc(rv: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": rv, **meta},
        "spec": {"ports": [{"port": 80}]},
    }


class Events:
    def __init__(self, informer: Informer) -> None:
        self.seen: list[tuple[str, str]] = []
        informer.add_handler(
            lambda o: self.seen.append(("add", o["metadata"]["resourceVersion"])),
            lambda _o, n: self.seen.append(("update", n["metadata"]["resourceVersion"])),
            lambda o: self.seen.append(("delete", o["metadata"]["resourceVersion"])),
        )


def test_unusable_update_is_a_delete_until_fixed(caplog: pytest.LogCaptureFixture) -> None:
    inf = Informer(None, "Service", check=shape.checker("Service"))  # type: ignore[arg-type]
    events = Events(inf)
    inf._upsert(svc("1"))
    with caplog.at_level(logging.WARNING, "kubesvc.informer"):
        inf._upsert(svc("2", labels="x"))
        inf._upsert(svc("2", labels="x"))  # the same revision again (a relist): no new line
        inf._upsert(svc("3", labels=5))
    assert events.seen == [("add", "1"), ("delete", "1")]
    assert inf.get("default/web") is None and inf.rejected == {"default/web": "3"}
    lines = [r for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(lines) == 2
    assert "metadata.labels: expected map of strings" in str(lines[0].__dict__["kv"]["error"])
    inf._upsert(svc("4"))
    assert events.seen[-1] == ("add", "4") and not inf.rejected
    inf._upsert(svc("5", labels="x"))
    inf._remove(svc("6", labels="x"))  # deleted while unusable: nothing more to tell
    assert events.seen[-1] == ("delete", "4") and not inf.rejected and not inf.cache


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param({"spec": {}}, id="no-metadata"),
        pytest.param({"metadata": "x"}, id="metadata-string"),
        pytest.param({"metadata": {"name": 5, "namespace": "default"}}, id="name-number"),
        pytest.param({"metadata": {"namespace": "default"}}, id="no-name"),
        pytest.param([1, 2], id="a-list"),
    ],
)
def test_objects_without_a_usable_name_never_enter(obj: Any) -> None:
    inf = Informer(None, "Service")  # type: ignore[arg-type]
    events = Events(inf)
    inf._upsert(obj)
    inf._upsert(obj)
    assert not inf.cache and not events.seen and object_key(obj) == ""
    assert len(inf.rejected) == 1


def test_a_transform_that_fails_rejects_only_its_object() -> None:
    def transform(o: dict[str, Any]) -> dict[str, Any]:
        if o["metadata"]["name"] == "bad":
            raise KeyError("boom")
        return o

    inf = Informer(None, "Service", transform=transform)  # type: ignore[arg-type]
    inf._replace(
        {
            k: inf._ingest(o)[1]
            for o in (svc("1"), {"metadata": {"name": "bad", "namespace": "default"}})
            if (k := object_key(o))
        }
    )
    assert list(inf.cache) == ["default/web"] and list(inf.rejected) == ["default/bad"]


def test_index_functions_that_fail_leave_the_object_out_of_the_index() -> None:
    inf = Informer(None, "Service")  # type: ignore[arg-type]
    inf.add_indexer("app", lambda o: [o["metadata"]["labels"]["app"]])
    inf._upsert(svc("1", labels={"app": "a"}))
    inf._upsert({"metadata": {"name": "x", "namespace": "default", "resourceVersion": "2"}})
    assert [object_key(o) for o in inf.by_index("app", "a")] == ["default/web"]
    assert set(inf.cache) == {"default/web", "default/x"}
    inf._remove({"metadata": {"name": "x", "namespace": "default"}})
    assert set(inf.cache) == {"default/web"}


def test_invalid_sync_is_not_retried_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def sync(key: str) -> None:
        calls.append(key)
        raise Invalid("expected integer, got number", ("spec", "replicas"))

    async def main() -> None:
        queue = WorkQueue("test", base_delay=0.001)
        runner = asyncio.ensure_future(run_workers(queue, sync))
        for _ in range(3):
            queue.add("ns/a")
            await asyncio.sleep(0.02)
        await queue.shutdown()
        await runner

    with caplog.at_level(logging.WARNING, "kubesvc.workqueue"):
        asyncio.run(main())
    assert calls == ["ns/a"] * 3  # once per add: never retried by itself
    lines = [r for r in caplog.records if "cannot be used" in r.getMessage()]
    assert (
        len(lines) == 1
        and lines[0].__dict__["kv"]["error"] == "spec.replicas: expected integer, got number"
    )


def test_repeated_failures_are_logged_at_powers_of_two(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def sync(key: str) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("api down")

    async def main() -> None:
        queue = WorkQueue("test", base_delay=0.0001, max_delay=0.0005)
        runner = asyncio.ensure_future(run_workers(queue, sync))
        queue.add("k")
        while calls < 20:
            await asyncio.sleep(0.005)
        await queue.shutdown()
        await runner

    with caplog.at_level(logging.WARNING, "kubesvc.workqueue"):
        asyncio.run(main())
    logged = [r.__dict__["kv"]["retries"] for r in caplog.records if "will retry" in r.getMessage()]
    assert logged[:5] == [0, 1, 3, 7, 15]
