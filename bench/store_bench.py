"""The API server on its two stores, side by side: SQLite (the default) and etcd v3.

    python bench/store_bench.py [--services 2000] [--watchers 20] [--clients 8] [--json FILE]

Runs one real `kubesvc apiserver` on 127.0.0.1 with the default SQLite store, then another
with `--etcd-servers` pointing at a fresh local etcd member (mutual TLS, as `kubesvc up
--store etcd` runs it), and measures the same work on each over HTTPS: Service creates
from concurrent clients, the full JSON list, and watch fan-out of one merge patch per
Service. The limit of the etcd column is taken in the same run: the store's own client
(`EtcdStore.create`) putting the same keys and stored values into another fresh member,
with the same concurrency. Target: the etcd store's creates/s at least 0.7 of that.

Progress goes to stderr, one Markdown table to stdout. Every process is killed and the
temporary directory removed on exit, including on errors and Ctrl-C. Needs etcd
(`apt-get install etcd-server`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import grpc
from apiserver_bench import (
    JSON_HEADERS,
    SERVICES_PATH,
    Workload,
    last_event_ok,
    open_watchers,
    patch_and_wait,
    request,
    run_workers,
    session_for,
    sqlite_reference,
)
from common import (
    ApiServer,
    Results,
    catch_signals,
    cpu_seconds,
    exit_status,
    fmt,
    log,
    machine_info,
    reference_cell,
    render_table,
    run_then_clean_up,
    runner,
    spawn,
    terminate,
    write_json,
)

from kubesvc.apiserver.keys import resource_prefix
from kubesvc.cluster.etcd import EtcdFiles, EtcdPlan, ensure_pki
from kubesvc.store.base import StoreUnavailable
from kubesvc.store.etcd import EtcdConfig, EtcdStore

TARGET = 0.7  # etcd store creates/s over the raw client's puts/s
SERVICES_PREFIX = resource_prefix("services")  # /registry/services/specs/
IDLE_CPU = 0.1  # the API server counts as idle below this share of one core
ETCD_START_TIMEOUT = 30.0

REF_RAW_PUT = (
    "EtcdStore.create() called directly (the store's client, one create transaction each) "
    "with the same keys, stored values and concurrency, on a fresh etcd member"
)
REF_SQLITE = (
    "SQLite alone: the same stored values, WAL + synchronous=NORMAL, one transaction per "
    "object writing a kv row and a log row (apiserver_bench.py's reference)"
)
REF_RANGE = "EtcdStore.range() of the same keys on that member, median of the same runs"


# -- the table ------------------------------------------------------------------------------


@dataclass
class Cmp:
    """One measurement on each store, with the limit of the etcd column when there is one."""

    measurement: str
    unit: str  # as common.fmt's, and "x" for a ratio
    sqlite: float | None = None
    etcd: float | None = None
    limit: float | None = None
    limit_is: str = ""
    target: float | None = None  # the etcd column must reach at least this

    @property
    def ok(self) -> bool | None:
        if self.target is None:
            return None
        return self.etcd is not None and self.etcd >= self.target


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.0f} µs" if unit == "µs" else fmt(value, unit)


def render(results: Results[Cmp]) -> str:
    legend: list[str] = []
    body = []
    for r in results.rows:
        etcd = cell(r.etcd, r.unit)
        if r.ok is not None and r.etcd is not None:
            etcd += " (met)" if r.ok else " (MISSED)"
        limit = cell(r.limit, r.unit)
        if r.limit is not None:
            limit = reference_cell(limit, r.limit_is, legend)
        body.append([r.measurement, cell(r.sqlite, r.unit), etcd, limit])
    header = ["measurement", "SQLite store", "etcd store", "limit"]
    return render_table(header, body, legend, results.notes)


# -- processes ------------------------------------------------------------------------------


class StoreApiServer(ApiServer):
    """common.ApiServer with extra command-line flags (the store's)."""

    def __init__(self, data_dir: Path, flags: list[str]) -> None:
        super().__init__(data_dir, poll=0.002)
        self.flags = flags

    def start(self, timeout: float = 120.0) -> float:
        self._listening.clear()
        cmd = [sys.executable, "-m", "kubesvc.cli.main", "apiserver"]
        cmd += ["--data-dir", str(self.data_dir), "--port", "0", *self.flags]
        t0 = time.perf_counter()
        self.proc = spawn(cmd, subprocess.PIPE)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        while not self._listening.wait(self.poll):
            if self.proc.poll() is not None or time.perf_counter() - t0 > timeout:
                self.stop()
                raise RuntimeError("API server did not start:\n" + "".join(self.output))
        return time.perf_counter() - t0


class EtcdMember:
    """One etcd member on loopback ports with mutual TLS, its data in a directory of its
    own (a fresh member each time)."""

    def __init__(self, dir: Path, files: EtcdFiles) -> None:
        self.dir, self.files = dir, files
        self.plan = EtcdPlan.new("bench", 1)
        self.proc: subprocess.Popen[str] | None = None
        self._log: TextIO | None = None

    def config(self) -> EtcdConfig:
        f = self.files
        return EtcdConfig.parse(
            self.plan.servers, cafile=f.ca, certfile=f.client_cert, keyfile=f.client_key
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        self.dir.mkdir(parents=True)
        self._log = open(self.dir / "etcd.log", "w")  # noqa: SIM115 (closed by stop)
        self.proc = spawn(self.plan.member_argv(0, self.dir / "data", self.files), self._log)
        deadline = time.monotonic() + ETCD_START_TIMEOUT
        while True:
            store = EtcdStore(self.config())
            try:
                await store.start()  # waits through reconnects for a while
                return
            except StoreUnavailable:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.dir / "etcd.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"etcd did not start:\n{tail}") from None
            finally:
                await store.close()

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


class CpuMeter:
    """CPU use of some processes and of this one over a step, in % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.wall = time.perf_counter()
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.client = time.process_time()

    def read(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        out = {n: (cpu_seconds(p) - self.start[n]) / wall * 100 for n, p in self.pids.items()}
        out["client"] = (time.process_time() - self.client) / wall * 100
        return out


async def wait_idle(pid: int, timeout: float = 15.0) -> None:
    """Until the API server has done its start-up writes (the RBAC bootstrap policy goes in
    after it listens), so they do not land in the create step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(0.3)
        if (cpu_seconds(pid) - before) / 0.3 < IDLE_CPU:
            return
    log("the API server did not go idle; measuring anyway")


# -- one store ------------------------------------------------------------------------------


@dataclass
class StoreRun:
    """What one API server did. None: the step failed (and a note says why)."""

    create_seconds: float | None = None
    create_cpu: dict[str, float] = field(default_factory=dict)
    list_times: list[float] = field(default_factory=list)
    watch_rate: float | None = None
    watch_last: float | None = None
    watch_lag: float | None = None
    patch_rate: float | None = None
    watch_cpu: dict[str, float] = field(default_factory=dict)
    stored: dict[str, bytes] = field(default_factory=dict)  # key -> value in etcd


async def create_services(
    session: aiohttp.ClientSession, wl: Workload, pids: dict[str, int], run: StoreRun
) -> None:
    for n in range(wl.namespaces):
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{n}"}}
        body = json.dumps(ns).encode()
        await request(session, "POST", "/api/v1/namespaces", 201, data=body, headers=JSON_HEADERS)
    bodies = [wl.service(i) for i in range(wl.services)]  # encoded before the clock starts

    async def create(i: int) -> None:
        path = f"/api/v1/namespaces/{wl.where(i)[0]}/services"
        await request(session, "POST", path, 201, data=bodies[i], headers=JSON_HEADERS)

    cpu = CpuMeter(pids)
    label = f"create {wl.services} Services"
    run.create_seconds = await run_workers(wl.services, wl.clients, create, label)
    run.create_cpu = cpu.read()


async def list_services(session: aiohttp.ClientSession, wl: Workload, run: StoreRun) -> str:
    """The JSON list, list_runs times; returns the list's resourceVersion."""
    body = b""
    for _ in range(wl.list_runs):
        t0 = time.perf_counter()
        body = await request(session, "GET", SERVICES_PATH, headers={"Accept": "application/json"})
        run.list_times.append(time.perf_counter() - t0)
    log(f"list: {len(body) / 1e6:.1f} MB, runs {[round(t, 4) for t in run.list_times]}")
    doc = json.loads(body)
    if len(doc["items"]) != wl.services + 1:  # and default/kubernetes
        raise RuntimeError(f"list returned {len(doc['items'])} items, not {wl.services + 1}")
    return str(doc["metadata"]["resourceVersion"])


async def watch_fan_out(
    server: ApiServer, wl: Workload, rv: str, pids: dict[str, int], run: StoreRun, name: str
) -> list[str]:
    """W watchers from the list's revision, one merge patch per Service; returns failures."""
    async with (
        session_for(server, wl.watchers) as watch_session,
        session_for(server, wl.clients) as write_session,
    ):
        responses = await open_watchers(watch_session, wl, rv)
        log(f"{name}: {wl.watchers} watchers open at resourceVersion {rv}")
        try:
            cpu = CpuMeter(pids)
            watched = await patch_and_wait(server, write_session, responses, wl)
            run.watch_cpu = cpu.read()
        finally:
            for r in responses:
                r.close()
    n, problems = wl.services, []
    finished = [s for s in watched.streams if s.done_at]
    delivered = sum(min(s.events, n) for s in watched.streams)
    if len(finished) < wl.watchers:
        problems.append(f"only {len(finished)} of {wl.watchers} watchers got all {n} events")
    bad = sum(not last_event_ok(s.last_line, watched.last_rv) for s in finished)
    if bad:
        problems.append(f"{bad} watchers' last event was not the last patch")
    if finished:
        run.watch_last = max(s.done_at for s in finished) - watched.t0
        run.watch_rate = delivered / run.watch_last
        run.watch_lag = run.watch_last - watched.write_seconds
    run.patch_rate = n / watched.write_seconds
    return problems


async def read_stored(member: EtcdMember) -> dict[str, bytes]:
    """The bench Services' keys and values as the API server stored them in etcd."""
    store = EtcdStore(member.config())
    try:
        await store.start()
        kvs, _ = await store.range(SERVICES_PREFIX)
    finally:
        await store.close()
    return {kv.key: kv.value for kv in kvs if kv.key.startswith(f"{SERVICES_PREFIX}bench-")}


async def run_store(
    name: str,
    server: ApiServer,
    member: EtcdMember | None,
    wl: Workload,
    res: Results[Cmp],
    run: StoreRun,
) -> None:
    """Fills `run` as it goes, so an interrupted run still shows what was measured."""
    try:
        if member is not None:
            log(f"{name}: starting a fresh etcd member at {member.plan.servers}")
            await member.start()
        log(f"{name}: starting the API server")
        server.start()
        pids = {"server": server.pid} | ({"etcd": member.pid} if member else {})
        await wait_idle(server.pid)
        async with session_for(server, wl.clients) as session:
            await create_services(session, wl, pids, run)
            if member is not None:
                run.stored = await read_stored(member)
            rv = await list_services(session, wl, run)
    except Exception as e:  # the other store is still measured
        res.note(f"{name}: FAILED: {type(e).__name__}: {e}")
        return
    if wl.watchers > 0:
        try:
            for problem in await watch_fan_out(server, wl, rv, pids, run, name):
                res.note(f"{name}: watch: {problem}")
        except Exception as e:
            res.note(f"{name}: watch FAILED: {type(e).__name__}: {e}")


# -- the limit ------------------------------------------------------------------------------


@dataclass
class Limit:
    put_seconds: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    range_times: list[float] = field(default_factory=list)
    sqlite_seconds: float | None = None


async def raw_puts(
    member: EtcdMember, stored: dict[str, bytes], wl: Workload, limit: Limit
) -> None:
    """The same keys and values through EtcdStore.create with the same concurrency, then
    the prefix read a list starts with."""
    log(f"limit: starting a fresh etcd member at {member.plan.servers}")
    await member.start()
    items = list(stored.items())
    store = EtcdStore(member.config())
    try:
        await store.start()

        async def put(i: int) -> None:
            await store.create(*items[i])

        cpu = CpuMeter({"etcd": member.pid})
        label = f"limit: {len(items)} EtcdStore.create"
        limit.put_seconds = await run_workers(len(items), wl.clients, put, label)
        limit.cpu = cpu.read()
        for _ in range(wl.list_runs):
            t0 = time.perf_counter()
            kvs, _ = await store.range(SERVICES_PREFIX)
            limit.range_times.append(time.perf_counter() - t0)
        if len(kvs) != len(items):
            raise RuntimeError(f"range returned {len(kvs)} keys, not {len(items)}")
    finally:
        await store.close()


# -- orchestration --------------------------------------------------------------------------


def rows(wl: Workload, sq: StoreRun, et: StoreRun, lim: Limit) -> list[Cmp]:
    n, w, c = wl.services, wl.watchers, wl.clients

    def rate(seconds: float | None) -> float | None:
        return n / seconds if seconds else None

    def ms(times: list[float], of: Callable[[list[float]], float]) -> float | None:
        return of(times) * 1000 if times else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    sq_rate, et_rate, raw = rate(sq.create_seconds), rate(et.create_seconds), rate(lim.put_seconds)
    sqlite_alone = rate(lim.sqlite_seconds)

    def per_create(cpu: dict[str, float], who: str, seconds: float | None) -> float | None:
        """CPU time per object, in µs, from a step's % of one core."""
        return cpu[who] / 100 * seconds / n * 1e6 if who in cpu and seconds else None

    out = [
        Cmp(f"create {n} Services, {c} clients", "s", sq.create_seconds, et.create_seconds,
            lim.put_seconds, REF_RAW_PUT),
        Cmp("  creates/s", "/s", sq_rate, et_rate, raw, REF_RAW_PUT),
        Cmp(f"  etcd store ÷ limit (target ≥ {TARGET:.2f}x)", "x", None, ratio(et_rate, raw),
            target=TARGET),
        Cmp("  SQLite alone, writes/s", "/s", None, None, sqlite_alone, REF_SQLITE),
        Cmp("  SQLite store ÷ SQLite alone", "x", ratio(sq_rate, sqlite_alone)),
        Cmp("  etcd store ÷ SQLite store", "x", None, ratio(et_rate, sq_rate)),
        Cmp("  API server CPU (100 % = one core)", "%", sq.create_cpu.get("server"),
            et.create_cpu.get("server")),
        Cmp("  etcd CPU", "%", None, et.create_cpu.get("etcd"), lim.cpu.get("etcd")),
        Cmp("  benchmark client CPU", "%", sq.create_cpu.get("client"),
            et.create_cpu.get("client"), lim.cpu.get("client")),
        Cmp("  API server CPU per create (limit: the client's per put)", "µs",
            per_create(sq.create_cpu, "server", sq.create_seconds),
            per_create(et.create_cpu, "server", et.create_seconds),
            per_create(lim.cpu, "client", lim.put_seconds)),
        Cmp("  etcd CPU per create", "µs", None,
            per_create(et.create_cpu, "etcd", et.create_seconds),
            per_create(lim.cpu, "etcd", lim.put_seconds)),
        Cmp(f"list {n + 1} Services as JSON, median of {wl.list_runs}", "ms",
            ms(sq.list_times, statistics.median), ms(et.list_times, statistics.median),
            ms(lim.range_times, statistics.median), REF_RANGE),
        Cmp(f"  max of {wl.list_runs}", "ms", ms(sq.list_times, max), ms(et.list_times, max)),
    ]  # fmt: skip
    if w > 0:
        out += [
            Cmp(f"watch: {n} patches x {w} watchers, events/s", "/s", sq.watch_rate,
                et.watch_rate),
            Cmp("  time until the last watcher had the last event", "s", sq.watch_last,
                et.watch_last),
            Cmp("  of which after the last patch was acknowledged", "s", sq.watch_lag,
                et.watch_lag),
            Cmp(f"  writer side: merge patches/s, {c} clients", "/s", sq.patch_rate,
                et.patch_rate),
            Cmp("  API server CPU", "%", sq.watch_cpu.get("server"), et.watch_cpu.get("server")),
            Cmp("  etcd CPU", "%", None, et.watch_cpu.get("etcd")),
        ]  # fmt: skip
    return out


@dataclass
class Measured:
    sqlite: StoreRun = field(default_factory=StoreRun)
    etcd: StoreRun = field(default_factory=StoreRun)
    limit: Limit = field(default_factory=Limit)


async def run(
    wl: Workload, tmp: Path, stops: list[Callable[[], None]], m: Measured, res: Results[Cmp]
) -> None:
    files = ensure_pki(tmp / "etcd-pki")

    sqlite_server = StoreApiServer(tmp / "sqlite-apiserver", [])
    stops.append(sqlite_server.stop)
    await run_store("SQLite store", sqlite_server, None, wl, res, m.sqlite)
    sqlite_server.stop()  # each run has the machine to itself

    member = EtcdMember(tmp / "etcd-apiserver", files)
    etcd_server = StoreApiServer(tmp / "etcd-apiserver-data", member.plan.apiserver_flags(files))
    stops += [etcd_server.stop, member.stop]
    await run_store("etcd store", etcd_server, member, wl, res, m.etcd)
    etcd_server.stop()
    member.stop()

    stored = m.etcd.stored
    if len(stored) != wl.services:
        res.note(f"limit: not measured, {len(stored)} stored values read from etcd")
        return
    sizes = [len(v) for v in stored.values()]
    log(f"stored values: {min(sizes)}-{max(sizes)} bytes, mean {statistics.mean(sizes):.0f}")
    raw_member = EtcdMember(tmp / "etcd-raw", files)
    stops.append(raw_member.stop)
    try:
        await raw_puts(raw_member, stored, wl, m.limit)
    except Exception as e:
        res.note(f"limit: FAILED: {type(e).__name__}: {e}")
    raw_member.stop()
    m.limit.sqlite_seconds = sqlite_reference(list(stored.values()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--services", type=int, default=2000, help="Services to create (2000)")
    p.add_argument("--watchers", type=int, default=20, help="concurrent watchers (20)")
    p.add_argument("--clients", type=int, default=8, help="concurrent writers (8)")
    p.add_argument("--namespaces", type=int, default=4, help="namespaces to spread over (4)")
    p.add_argument("--list-runs", type=int, default=5, help="list repetitions (5)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p.parse_args(argv)


def etcd_version() -> str:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split()
    return out[2] if len(out) > 2 else "?"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("etcd") is None:
        print("store_bench needs etcd: apt-get install etcd-server", file=sys.stderr)
        return 1
    wl = Workload(args.services, args.namespaces, args.clients, args.watchers, args.list_runs)
    catch_signals()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-store-bench-"))
    stops: list[Callable[[], None]] = []
    res: Results[Cmp] = Results()
    started = time.strftime("%Y-%m-%d %H:%M %Z")

    def cleanup() -> None:
        for stop in reversed(stops):  # API servers before their etcd members
            stop()

    m = Measured()
    work = lambda: runner(run(wl, tmp, stops, m, res))  # noqa: E731
    interrupted = run_then_clean_up(work, cleanup, tmp, res, note_failure=True)
    for row in rows(wl, m.sqlite, m.etcd, m.limit):
        res.add(row)
    info = machine_info(etcd=etcd_version(), aiohttp=aiohttp.__version__, grpcio=grpc.__version__)
    print(
        f"kubesvc store benchmark, {started}, {info['cpus']} CPUs ({info['cpu_model']}), "
        f"Python {info['python']}, etcd {info['etcd']}\n"
    )
    print(render(res), flush=True)
    if args.json:
        doc: dict[str, Any] = {
            "date": started,
            "machine": info,
            "workload": asdict(wl),
            "target": TARGET,
            "rows": [asdict(r) | {"ok": r.ok} for r in res.rows],
            "notes": res.notes,
        }
        write_json(args.json, doc)
    return exit_status(interrupted, res)


if __name__ == "__main__":
    sys.exit(main())
