"""The SQLite revisioned store: revisions, compare-and-swap, watch replay, compaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubesvc.store.base import Compacted, KeyExists, KeyNotFound, RevisionMismatch
from kubesvc.store.sqlite import SQLiteStore


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _collect(watch, n: int) -> list:  # type: ignore[no-untyped-def]
    out = []
    async for ev in watch:
        out.append(ev)
        if len(out) == n:
            break
    watch.close()
    return out


def test_revisions_and_cas(tmp_path: Path) -> None:
    async def body() -> None:
        s = SQLiteStore(tmp_path / "db")
        a = await s.create("/registry/services/default/a", b"1")
        b = await s.create("/registry/services/default/b", b"2")
        assert (a.mod_revision, b.mod_revision) == (1, 2)
        with pytest.raises(KeyExists):
            await s.create("/registry/services/default/a", b"x")
        a2 = await s.update(a.key, b"11", a.mod_revision)
        assert (a2.create_revision, a2.mod_revision, a2.version) == (1, 3, 2)
        with pytest.raises(RevisionMismatch):
            await s.update(a.key, b"12", a.mod_revision)
        gone = await s.delete(b.key)
        assert gone.mod_revision == 4 and gone.value == b"2"
        with pytest.raises(KeyNotFound):
            await s.delete(b.key)
        items, rev = await s.range("/registry/services/")
        assert [kv.key for kv in items] == [a.key] and rev == 4
        await s.close()

    run(body())


def test_survives_reopen(tmp_path: Path) -> None:
    async def write() -> None:
        s = SQLiteStore(tmp_path / "db")
        for i in range(5):
            await s.create(f"/registry/pods/ns/p{i}", b"{}")
        await s.delete("/registry/pods/ns/p0")
        await s.close()

    async def read() -> None:
        s = SQLiteStore(tmp_path / "db")
        items, rev = await s.range("/registry/pods/")
        assert len(items) == 4 and rev == 6
        kv = await s.create("/registry/pods/ns/p9", b"{}")
        assert kv.mod_revision == 7
        # a watcher resumes from an old revision after the restart
        events = await _collect(s.watch("/registry/pods/", 3), 4)
        assert [(e.type, e.kv.mod_revision) for e in events] == [
            ("PUT", 4),
            ("PUT", 5),
            ("DELETE", 6),
            ("PUT", 7),
        ]
        await s.close()

    run(write())
    run(read())


def test_watch_live_and_prefix(tmp_path: Path) -> None:
    async def body() -> None:
        s = SQLiteStore(tmp_path / "db")
        await s.create("/registry/services/a/x", b"1")
        w = s.watch("/registry/services/b/", s.revision)
        await s.create("/registry/services/a/y", b"2")  # other prefix: not delivered
        kv = await s.create("/registry/services/b/z", b"3")
        await s.update(kv.key, b"4", kv.mod_revision)
        events = await _collect(w, 2)
        assert [(e.type, e.created, e.kv.value) for e in events] == [
            ("PUT", True, b"3"),
            ("PUT", False, b"4"),
        ]
        assert events[1].prev is not None and events[1].prev.value == b"3"
        await s.close()

    run(body())


def test_compaction_expires_old_watches(tmp_path: Path) -> None:
    async def body() -> None:
        s = SQLiteStore(tmp_path / "db")
        kv = await s.create("/registry/leases/ns/l", b"0")
        for i in range(5):
            kv = await s.update(kv.key, str(i).encode(), kv.mod_revision)
        await s.compact(4)
        with pytest.raises(Compacted):
            s.watch("/registry/", 2)
        events = await _collect(s.watch("/registry/", 4), 2)
        assert [e.kv.mod_revision for e in events] == [5, 6]
        await s.close()
        s2 = SQLiteStore(tmp_path / "db")
        assert s2.compacted_revision == 4 and s2.revision == 6
        await s2.close()

    run(body())


def test_large_writes_are_committed_off_the_loop_in_revision_order(tmp_path: Path) -> None:
    async def body() -> None:
        s = SQLiteStore(tmp_path / "db")
        prefix = "/registry/configmaps/default/"
        live = s.watch(prefix, 0)
        big = b"x" * (16 * 1024 * 1024)
        large = asyncio.create_task(s.create(prefix + "big", big))
        await asyncio.sleep(0)
        # the loop runs on while the large value commits, and nothing of it is visible yet
        small = [
            asyncio.create_task(s.create(prefix + "a", b"1")),
            asyncio.create_task(s.create(prefix + "b", b"2")),
        ]
        await asyncio.sleep(0)
        assert not large.done() and s.revision == 0
        assert await s.get(prefix + "big") is None
        # the small writes waited: each write has the revision of the order it started in
        results = [await large, *[await t for t in small]]
        assert [kv.mod_revision for kv in results] == [1, 2, 3]
        # a watch opened now replays each change once, in order; the live one saw the same
        replayed = await _collect(s.watch(prefix, 0), 3)
        seen = await _collect(live, 3)
        for events in (replayed, seen):
            assert [(e.kv.key.rsplit("/", 1)[1], e.kv.mod_revision) for e in events] == [
                ("big", 1),
                ("a", 2),
                ("b", 3),
            ]
        assert (await s.get(prefix + "big")).value == big  # type: ignore[union-attr]
        await s.close()
        reopened = SQLiteStore(tmp_path / "db")
        assert reopened.revision == 3
        assert (await reopened.get(prefix + "big")).value == big  # type: ignore[union-attr]
        await reopened.close()

    run(body())
