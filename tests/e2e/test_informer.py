"""Informers against a real API server: sync, events, and recovery from restarts and 410."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from kubesvc.client.informer import Informer
from kubesvc.client.rest import ApiClient
from tests.e2e.harness import ApiServerProcess

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def test_informer_follows_changes_and_survives_restart(tmp_path: Path) -> None:
    server = ApiServerProcess(
        tmp_path / "data", port=_free_port(), extra_args=("--etcd-compaction-interval", "0.5")
    )
    server.start()

    async def body() -> None:
        events: list[tuple[str, str]] = []
        async with ApiClient.from_kubeconfig(str(server.kubeconfig)) as client:
            inf = Informer(client, "ConfigMap", namespace="default")
            inf.add_handler(
                on_add=lambda o: events.append(("add", o["metadata"]["name"])),
                on_update=lambda old, new: events.append(("update", new["metadata"]["name"])),
                on_delete=lambda o: events.append(("delete", o["metadata"]["name"])),
            )
            await client.create("ConfigMap", "default", {"metadata": {"name": "before"}})
            inf.start()
            await asyncio.wait_for(inf.wait_for_sync(), 10)
            assert set(inf.cache) == {"default/before"}
            await client.create("ConfigMap", "default", {"metadata": {"name": "live"}})
            await client.patch("ConfigMap", "default", "live", {"data": {"a": "b"}})
            await _until(lambda: ("update", "live") in events)

            # the server dies; while it is down nothing is seen; changes made after its
            # restart, and long enough for history to be compacted, still reach the cache
            await asyncio.to_thread(server.kill9)
            await asyncio.to_thread(server.start)
            await client.delete("ConfigMap", "default", "before")
            await client.create("ConfigMap", "default", {"metadata": {"name": "after"}})
            await _until(lambda: set(inf.cache) == {"default/live", "default/after"}, 30)
            assert ("delete", "before") in events and ("add", "after") in events
            # a late handler gets synthetic adds for what is cached
            late: list[str] = []
            inf.add_handler(on_add=lambda o: late.append(o["metadata"]["name"]))
            assert sorted(late) == ["after", "live"]
            await inf.stop()

    try:
        asyncio.run(body())
    finally:
        server.stop()


def test_informer_lists_in_pages_and_misses_nothing_changed_meanwhile(tmp_path: Path) -> None:
    server = ApiServerProcess(tmp_path / "data", port=_free_port())
    server.start()

    async def body() -> None:
        async with ApiClient.from_kubeconfig(str(server.kubeconfig)) as client:
            for i in range(7):
                await client.create("ConfigMap", "default", {"metadata": {"name": f"cm-{i}"}})
            requests: list[dict[str, object]] = []
            real_list = client.list

            async def list_and_change(*args: object, **kw: object) -> dict[str, object]:
                page = await real_list(*args, **kw)  # type: ignore[arg-type]
                requests.append(kw)
                if len(requests) == 1:
                    # between the first page and the rest: one object gone, one new, one
                    # changed; the watch from the first page's revision must bring them in
                    await client.delete("ConfigMap", "default", "cm-6")
                    await client.create("ConfigMap", "default", {"metadata": {"name": "cm-7"}})
                    await client.patch("ConfigMap", "default", "cm-0", {"data": {"k": "v"}})
                return page

            client.list = list_and_change  # type: ignore[method-assign]
            inf = Informer(client, "ConfigMap", namespace="default", page_size=3)
            inf.start()
            await asyncio.wait_for(inf.wait_for_sync(), 10)
            assert [r["limit"] for r in requests] == [3, 3, 3]
            assert [bool(r["continue_token"]) for r in requests] == [False, True, True]
            want = {f"default/cm-{i}" for i in range(8) if i != 6}
            await _until(lambda: set(inf.cache) == want)
            await _until(lambda: (inf.cache["default/cm-0"].get("data") or {}) == {"k": "v"})
            await inf.stop()

    try:
        asyncio.run(body())
    finally:
        server.stop()
