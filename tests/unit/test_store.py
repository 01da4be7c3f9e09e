"""The revisioned store's conformance suite: the same tests against the SQLite backend and
against a real etcd member (Debian's etcd-server, mutual TLS on loopback, a temporary
directory): revisions, compare-and-swap, lists at a revision, watch replay, compaction,
restarts. A property test drives both with random histories against a model.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.cluster.etcd import EtcdFiles, EtcdPlan, ensure_pki
from kubesvc.store.base import (
    Claimed,
    Compacted,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
    StoreUnavailable,
)
from kubesvc.store.etcd import EtcdConfig, EtcdStore
from kubesvc.store.sqlite import SQLiteStore


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _collect(watch, n: int, timeout: float = 10.0) -> list:  # type: ignore[no-untyped-def]
    out: list[Any] = []

    async def take() -> None:
        async for ev in watch:
            out.append(ev)
            if len(out) == n:
                break

    await asyncio.wait_for(take(), timeout)
    watch.close()
    return out


@dataclass
class EtcdMember:
    """One etcd member in a directory of its own, started and killed at will."""

    dir: Path
    files: EtcdFiles
    plan: EtcdPlan
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.dir / "etcd.log").open("ab")
        self.proc = subprocess.Popen(
            self.plan.member_argv(0, self.dir / "data", self.files),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def config(self) -> EtcdConfig:
        return EtcdConfig.parse(
            self.plan.servers,
            cafile=self.files.ca,
            certfile=self.files.client_cert,
            keyfile=self.files.client_key,
        )


@pytest.fixture
def member() -> Iterator[EtcdMember]:
    d = Path(tempfile.mkdtemp(prefix="kubesvc-etcd-test-"))
    m = EtcdMember(d, ensure_pki(d / "pki"), EtcdPlan.new(d.name, 1))
    m.start()
    try:
        yield m
    finally:
        m.kill()
        shutil.rmtree(d, ignore_errors=True)


class Backend:
    """Opens the store under test (again, after a restart) and restarts what backs it."""

    def __init__(self, kind: str, tmp: Path, member: EtcdMember | None) -> None:
        self.kind, self.tmp, self.member = kind, tmp, member

    async def open(self) -> Any:
        if self.member is None:
            return SQLiteStore(self.tmp / "db")
        s = EtcdStore(self.member.config())
        await s.start()
        return s

    def restart(self) -> None:
        """kill -9 of the store's server (etcd) and a start with the same data."""
        if self.member is not None:
            self.member.kill()
            self.member.start()

    @asynccontextmanager
    async def store(self) -> AsyncIterator[Any]:
        s = await self.open()
        try:
            yield s
        finally:
            await s.close()


@pytest.fixture(params=["sqlite", "etcd"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    member = request.getfixturevalue("member") if request.param == "etcd" else None
    return Backend(request.param, tmp_path, member)


def test_revisions_and_cas(backend: Backend) -> None:
    async def body() -> None:
        async with backend.store() as s:
            base = s.revision
            a = await s.create("/registry/services/specs/default/a", b"1")
            b = await s.create("/registry/services/specs/default/b", b"2")
            assert (a.mod_revision, b.mod_revision) == (base + 1, base + 2)
            assert (a.create_revision, a.version) == (base + 1, 1)
            with pytest.raises(KeyExists):
                await s.create("/registry/services/specs/default/a", b"x")
            a2 = await s.update(a.key, b"11", a.mod_revision)
            assert (a2.create_revision, a2.mod_revision, a2.version) == (base + 1, base + 3, 2)
            with pytest.raises(RevisionMismatch) as mismatch:
                await s.update(a.key, b"12", a.mod_revision)
            assert mismatch.value.current == a2
            with pytest.raises(KeyNotFound):
                await s.update("/registry/services/specs/default/none", b"", 1)
            gone = await s.delete(b.key)
            assert gone.mod_revision == base + 4 and gone.value == b"2"
            with pytest.raises(KeyNotFound):
                await s.delete(b.key)
            with pytest.raises(RevisionMismatch):
                await s.delete(a.key, a.mod_revision)
            assert await s.get(a.key) == a2 and await s.get(b.key) is None
            items, rev = await s.range("/registry/services/specs/")
            assert items == [a2] and rev == base + 4 == s.revision

    run(body())


def test_claims_and_releases_ride_in_the_write(backend: Backend) -> None:
    """A write's claims are created with it or not at all, and its releases deleted with it:
    what a Service's ClusterIP is held by across API servers."""
    svc, ip = "/registry/services/specs/default/", "/registry/ipaddresses/10.96.0."

    async def body() -> None:
        async with backend.store() as s:
            a = await s.create(svc + "a", b"a", claims=[(ip + "10", b"a")])
            assert (await s.get(ip + "10")).value == b"a"  # type: ignore[union-attr]
            with pytest.raises(Claimed) as taken:
                await s.create(svc + "b", b"b", claims=[(ip + "11", b"b"), (ip + "10", b"b")])
            assert taken.value.key == ip + "10"
            assert await s.get(svc + "b") is None and await s.get(ip + "11") is None
            with pytest.raises(KeyExists):  # the object's own key is reported first
                await s.create(svc + "a", b"x", claims=[(ip + "10", b"x")])

            a2 = await s.update(a.key, b"a2", a.mod_revision, [(ip + "12", b"a")], [ip + "10"])
            assert a2.mod_revision > a.mod_revision and a2.version == 2
            assert await s.get(ip + "10") is None and await s.get(ip + "12") is not None
            b = await s.create(svc + "b", b"b", claims=[(ip + "13", b"b")])
            with pytest.raises(Claimed):
                await s.update(a.key, b"a3", a2.mod_revision, [(ip + "13", b"a")], [ip + "12"])
            assert await s.get(a.key) == a2 and await s.get(ip + "12") is not None
            with pytest.raises(RevisionMismatch):  # a stale write: its mismatch, not the claim
                await s.update(a.key, b"a3", a.mod_revision, [(ip + "13", b"a")])

            gone = await s.delete(a.key, a2.mod_revision, releases=[ip + "12", ip + "99"])
            assert gone.mod_revision == s.revision > b.mod_revision
            assert await s.get(ip + "12") is None and await s.get(a.key) is None
            claims, _ = await s.range("/registry/ipaddresses/")
            assert [kv.key for kv in claims] == [ip + "13"]

            # many writers claiming one value at once: exactly one holds it
            results = await asyncio.gather(
                *(s.create(f"{svc}race-{i}", b"r", claims=[(ip + "50", b"r")]) for i in range(12)),
                return_exceptions=True,
            )
            assert sum(not isinstance(r, BaseException) for r in results) == 1
            assert all(isinstance(r, Claimed) for r in results if isinstance(r, BaseException))

    run(body())


def test_lists_read_at_a_revision_page_a_snapshot(backend: Backend) -> None:
    async def body() -> None:
        async with backend.store() as s:
            p = "/registry/pods/ns/"
            first = [await s.create(f"{p}p{i}", str(i).encode()) for i in range(6)]
            snapshot, rev = await s.range(p)
            assert snapshot == first
            # the world moves on: one changed, one deleted, one created, one of another prefix
            await s.update(first[1].key, b"changed", first[1].mod_revision)
            await s.delete(first[2].key)
            await s.create(f"{p}p9", b"new")
            await s.create("/registry/pods/other/p0", b"x")
            at, got = await s.range(p, rev)
            assert at == first and got == rev
            page, _ = await s.range(p, rev, first[2].key)  # the next page after p2
            assert page == first[3:]
            now, now_rev = await s.range(p)
            assert [kv.key.rsplit("/", 1)[1] for kv in now] == ["p0", "p1", "p3", "p4", "p5", "p9"]
            assert now_rev == s.revision
            # compaction keeps what a later revision needs, and drops the older ones
            await s.compact(rev + 1)
            at, _ = await s.range(p, rev + 1)
            assert [kv.value for kv in at] == [b"0", b"changed", b"2", b"3", b"4", b"5"]
            with pytest.raises(Compacted):
                await s.range(p, rev)

    run(body())


def test_survives_restart_and_watchers_resume(backend: Backend) -> None:
    async def write() -> int:
        async with backend.store() as s:
            base = s.revision
            for i in range(5):
                await s.create(f"/registry/pods/ns/p{i}", b"{}")
            await s.delete("/registry/pods/ns/p0")
            return base

    async def read(base: int) -> None:
        async with backend.store() as s:
            items, rev = await s.range("/registry/pods/")
            assert len(items) == 4 and rev == base + 6
            kv = await s.create("/registry/pods/ns/p9", b"{}")
            assert kv.mod_revision == base + 7
            # a watcher resumes from an old revision after the restart
            events = await _collect(await s.watch("/registry/pods/", base + 3), 4)
            assert [(e.type, e.kv.mod_revision) for e in events] == [
                ("PUT", base + 4),
                ("PUT", base + 5),
                ("DELETE", base + 6),
                ("PUT", base + 7),
            ]
            assert events[2].kv.key.endswith("/p0") and events[2].prev is not None

    base = run(write())
    backend.restart()
    run(read(base))


def test_watch_live_and_prefix(backend: Backend) -> None:
    async def body() -> None:
        async with backend.store() as s:
            await s.create("/registry/services/specs/a/x", b"1")
            w = await s.watch("/registry/services/specs/b/", s.revision)
            await s.create("/registry/services/specs/a/y", b"2")  # other prefix: not delivered
            kv = await s.create("/registry/services/specs/b/z", b"3")
            await s.update(kv.key, b"4", kv.mod_revision)
            events = await _collect(w, 2)
            assert [(e.type, e.created, e.kv.value) for e in events] == [
                ("PUT", True, b"3"),
                ("PUT", False, b"4"),
            ]
            assert events[1].prev is not None and events[1].prev.value == b"3"
            assert w.progress_revision >= events[1].kv.mod_revision

    run(body())


def test_compaction_expires_old_watches(backend: Backend) -> None:
    async def body() -> None:
        async with backend.store() as s:
            base = s.revision
            kv = await s.create("/registry/leases/ns/l", b"0")
            for i in range(5):
                kv = await s.update(kv.key, str(i).encode(), kv.mod_revision)
            await s.compact(base + 4)
            with pytest.raises(Compacted):
                await s.watch("/registry/", base + 2)
            events = await _collect(await s.watch("/registry/", base + 4), 2)
            assert [e.kv.mod_revision for e in events] == [base + 5, base + 6]
        async with backend.store() as s2:
            assert s2.revision == base + 6
            with pytest.raises(Compacted):
                await s2.watch("/registry/", base + 2)

    run(body())


def test_an_etcd_watch_carries_on_across_an_etcd_restart(member: EtcdMember) -> None:
    """kill -9 of etcd under an open watch: the watch is re-created from the last revision
    it delivered, so nothing is lost or delivered twice."""

    async def body() -> None:
        async with Backend("etcd", member.dir, member).store() as s:
            prefix = "/registry/configmaps/default/"
            w = await s.watch(prefix, s.revision)
            before = await s.create(prefix + "a", b"1")
            got = await _collect_some(w, 1)
            member.kill()
            member.start()
            after = await _create_as_a_client_would(s, prefix + "b", b"2")
            got += await _collect_some(w, 1)
            assert [e.kv.mod_revision for e in got] == [before.mod_revision, after.mod_revision]
            w.close()

    run(body())


async def _create_as_a_client_would(s: Any, key: str, value: bytes) -> Any:
    """A create while etcd comes back: one sent on the connection etcd's restart broke
    fails with StoreUnavailable (the API server's 503), which may or may not have been
    applied, so it is tried again, as the API's clients do, and a try that finds the key
    made by an earlier one takes it."""
    for _ in range(50):
        try:
            return await s.create(key, value)
        except StoreUnavailable:
            await asyncio.sleep(0.2)
        except KeyExists:
            kv = await s.get(key)
            assert kv is not None and kv.value == value
            return kv
    raise AssertionError(f"etcd did not take {key} in 10 s")


async def _collect_some(watch: Any, n: int) -> list[Any]:
    """n events, leaving the watch open."""
    it = watch.__aiter__()  # a new iterator over the same queue
    return [await asyncio.wait_for(it.__anext__(), 30) for _ in range(n)]


def test_sqlite_migrates_legacy_keys_once(tmp_path: Path) -> None:
    from kubesvc.apiserver import keys

    async def body() -> None:
        s = SQLiteStore(tmp_path / "db")
        await s.create("/registry/services/default/kubia", b"svc")
        await s.create("/registry/nodes/n1", b"node")
        await s.create("/registry/deployments.apps/default/d", b"deploy")
        await s.create("/registry/widgets.example.com/default/w", b"cr")
        assert s.migrate_keys(keys.LAYOUT, keys.legacy_key) == 4
        assert s.migrate_keys(keys.LAYOUT, keys.legacy_key) == 0  # once
        items, _ = await s.range("/registry/")
        assert {kv.key: kv.value for kv in items} == {
            "/registry/services/specs/default/kubia": b"svc",
            "/registry/minions/n1": b"node",
            "/registry/deployments/default/d": b"deploy",
            "/registry/example.com/widgets/default/w": b"cr",
        }
        with pytest.raises(Compacted):  # watchers from before relist
            await s.watch("/registry/", 1)
        await s.close()
        reopened = SQLiteStore(tmp_path / "db")
        assert reopened.migrate_keys(keys.LAYOUT, keys.legacy_key) == 0
        assert (await reopened.get("/registry/minions/n1")) is not None
        await reopened.close()

    run(body())


def test_large_writes_are_committed_off_the_loop_in_revision_order(tmp_path: Path) -> None:
    async def body() -> None:
        s = SQLiteStore(tmp_path / "db")
        prefix = "/registry/configmaps/default/"
        live = await s.watch(prefix, 0)
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
        replayed = await _collect(await s.watch(prefix, 0), 3)
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


# -- random histories against a model ------------------------------------------------------
NAMES = st.sampled_from(["a", "b", "c", "d"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), NAMES, st.binary(max_size=8)),
        st.tuples(st.just("update"), NAMES, st.binary(max_size=8)),
        st.tuples(st.just("stale-update"), NAMES, st.binary(max_size=8)),
        st.tuples(st.just("delete"), NAMES, st.just(b"")),
        st.tuples(st.just("compact"), st.just(""), st.just(b"")),
    ),
    max_size=25,
)


async def _check_history(s: Any, prefix: str, ops: list[tuple[str, str, bytes]]) -> None:
    """Apply ops to the store and to a dict; at every revision seen, a list at that revision
    (if not compacted) equals the model's state then, and a watch replays every change."""
    model: dict[str, bytes] = {}
    history: list[tuple[int, dict[str, bytes]]] = [(s.revision, {})]
    mods: dict[str, int] = {}
    start = s.revision
    compacted = 0
    for op, name, value in ops:
        key = prefix + name
        if op == "create":
            if key in model:
                with pytest.raises(KeyExists):
                    await s.create(key, value)
                continue
            mods[key] = (await s.create(key, value)).mod_revision
            model[key] = value
        elif op in ("update", "stale-update"):
            if key not in model:
                with pytest.raises(KeyNotFound):
                    await s.update(key, value, 0)
                continue
            if op == "stale-update":
                with pytest.raises(RevisionMismatch):
                    await s.update(key, value, mods[key] - 1)
                continue
            mods[key] = (await s.update(key, value, mods[key])).mod_revision
            model[key] = value
        elif op == "delete":
            if key not in model:
                with pytest.raises(KeyNotFound):
                    await s.delete(key)
                continue
            await s.delete(key, mods.pop(key))
            del model[key]
        else:
            compacted = history[len(history) // 2][0]
            await s.compact(compacted)
            continue
        history.append((s.revision, dict(model)))
    for rev, state in history:
        if rev == 0:
            continue  # revision 0 asks for the newest state
        if rev < compacted:
            with pytest.raises(Compacted):
                await s.range(prefix, rev)
            continue
        items, got = await s.range(prefix, rev)
        assert {kv.key: kv.value for kv in items} == state and got == rev
    changes = len(history) - 1
    if changes and start >= compacted:
        events = await _collect(await s.watch(prefix, start), changes)
        assert [e.kv.mod_revision for e in events] == [r for r, _ in history[1:]]


_examples = iter(range(1_000_000))
# the model tests: both backends, 40 histories each, on one store per backend
on_both_stores = pytest.mark.parametrize("kind", ["sqlite", "etcd"])
model_settings = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _model_test(kind: str, tmp_path: Path, check: Any) -> None:
    shared = _shared_stores(kind, tmp_path)
    prefix = f"/registry/m{next(_examples)}/"
    run(_with_store(shared, lambda s: check(s, prefix)))


@on_both_stores
@model_settings
@given(ops=OPS)
def test_random_histories_match_a_model(kind: str, ops: list[Any], tmp_path: Path) -> None:
    _model_test(kind, tmp_path, lambda s, prefix: _check_history(s, prefix, ops))


_shared: dict[str, Backend] = {}


def _shared_stores(kind: str, tmp_path: Path) -> Backend:
    """One backend per kind for all examples (an etcd member takes a second to start)."""
    if kind not in _shared:
        if kind == "sqlite":
            _shared[kind] = Backend(kind, tmp_path, None)
        else:
            d = Path(tempfile.mkdtemp(prefix="kubesvc-etcd-test-"))
            m = EtcdMember(d, ensure_pki(d / "pki"), EtcdPlan.new(d.name, 1))
            m.start()
            _shared[kind] = Backend(kind, d, m)
    return _shared[kind]


async def _with_store(backend: Backend, check: Any) -> None:
    async with backend.store() as s:
        await check(s)


@pytest.fixture(scope="module", autouse=True)
def _stop_shared() -> Iterator[None]:
    yield
    for b in _shared.values():
        if b.member is not None:
            b.member.kill()
            with suppress(OSError):
                shutil.rmtree(b.member.dir, ignore_errors=True)
    _shared.clear()


def test_etcd_watchers_share_one_watch_and_start_where_they_asked(member: EtcdMember) -> None:
    """Watchers are served from one etcd watch: one that starts a little behind is served
    from its history, one that starts ahead of it gets nothing older than it asked for."""

    async def body() -> None:
        async with Backend("etcd", member.dir, member).store() as s:
            p = "/registry/configmaps/ns/"
            r0 = s.revision
            first = await s.watch(p, r0)
            kvs = [await s.create(f"{p}c{i}", b"x") for i in range(3)]
            behind = await s.watch(p, kvs[0].mod_revision)  # from the shared history
            assert [e.kv.key for e in await _collect_some(first, 3)] == [kv.key for kv in kvs]
            ahead = await s.watch(p, kvs[-1].mod_revision + 2)  # a list read from later
            more = [await s.create(f"{p}d{i}", b"y") for i in range(4)]
            got_behind = [e.kv.mod_revision for e in await _collect_some(behind, 6)]
            assert got_behind == [kv.mod_revision for kv in kvs[1:] + more]
            got_ahead = [e.kv.mod_revision for e in await _collect_some(ahead, 2)]
            assert got_ahead == [kv.mod_revision for kv in more[2:]]
            assert ahead.progress_revision >= more[-1].mod_revision
            other = await s.watch("/registry/secrets/", s.revision)
            await s.create("/registry/secrets/ns/s", b"z")
            assert [e.kv.key for e in await _collect_some(other, 1)] == ["/registry/secrets/ns/s"]
            for w in (first, behind, ahead, other):
                w.close()

    run(body())


_CLAIM_OPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "update", "stale-update", "delete"]),
        st.sampled_from(["a", "b", "c"]),
        st.lists(st.integers(0, 5), max_size=3, unique=True),  # claims
        st.lists(st.integers(0, 5), max_size=3, unique=True),  # releases
    ),
    max_size=20,
)


async def _check_claims(
    s: Any, prefix: str, ops: list[tuple[str, str, list[int], list[int]]]
) -> None:
    """Writes with claims and releases against a model: a write whose claim is taken changes
    nothing, one that lands creates its claims and deletes its releases with it."""
    objects, claims = f"{prefix}obj/", f"{prefix}claim/"
    model: dict[str, bytes] = {}
    held: dict[str, bytes] = {}
    mods: dict[str, int] = {}
    for op, name, claim, release in ops:
        key = objects + name
        want = [(f"{claims}{c}", name.encode()) for c in claim]
        gone = [f"{claims}{r}" for r in release]
        taken = next((k for k, _ in want if k in held), None)
        if op in ("update", "stale-update") and set(claim) & set(release):
            with pytest.raises(ValueError):  # refused before anything is asked of the store
                await s.update(key, b"u", 1, want, gone)
            continue
        if op == "create":
            if key in model:
                with pytest.raises(KeyExists):
                    await s.create(key, b"v", want)
            elif taken is not None:
                with pytest.raises(Claimed) as e:
                    await s.create(key, b"v", want)
                assert e.value.key == taken
            else:
                mods[key] = (await s.create(key, b"v", want)).mod_revision
                model[key] = b"v"
                held.update(want)
        elif op in ("update", "stale-update"):
            stale = op == "stale-update" and key in model
            expected = mods[key] - 1 if stale else mods.get(key, 1)
            if key not in model:
                with pytest.raises(KeyNotFound):
                    await s.update(key, b"u", expected, want, gone)
            elif stale:
                with pytest.raises(RevisionMismatch):
                    await s.update(key, b"u", expected, want, gone)
            elif taken is not None:
                with pytest.raises(Claimed):
                    await s.update(key, b"u", expected, want, gone)
            else:
                mods[key] = (await s.update(key, b"u", expected, want, gone)).mod_revision
                model[key] = b"u"
                held.update(want)
                for g in gone:
                    held.pop(g, None)
        else:
            if key not in model:
                with pytest.raises(KeyNotFound):
                    await s.delete(key, None, gone)
                continue
            await s.delete(key, mods.pop(key), gone + gone)  # a key released twice is once
            del model[key]
            for g in gone:
                held.pop(g, None)
        got_objects, _ = await s.range(objects)
        got_claims, _ = await s.range(claims)
        assert {kv.key: kv.value for kv in got_objects} == model
        assert {kv.key: kv.value for kv in got_claims} == held


@on_both_stores
@model_settings
@given(ops=_CLAIM_OPS)
def test_claims_match_a_model(kind: str, ops: list[Any], tmp_path: Path) -> None:
    _model_test(kind, tmp_path, lambda s, prefix: _check_claims(s, prefix, ops))
