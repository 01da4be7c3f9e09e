"""Benchmark of the kubesvc API server against a real server process over HTTPS.

    python bench/apiserver_bench.py [--services N] [--watchers W] [--json FILE]

Starts `kubesvc apiserver` on 127.0.0.1 with a temporary data directory, then measures:
bulk Service creation, list latency (JSON and Table), `kubectl get svc -A`, watch fan-out,
server memory (VmRSS) and restart time on the filled data directory. Each measurement is
printed next to a reference ("the limit") taken in the same run on the same machine.
Progress goes to stderr, the table to stdout. The server is killed and the temporary
directory removed on exit, including on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    ROOT,
    ApiServer,
    Progress,
    Results,
    Row,
    catch_signals,
    child_env,
    cpu_seconds,
    exit_status,
    log,
    report_rows,
    run_then_clean_up,
    runner,
)

RESOURCE_VERSION = re.compile(rb'"resourceVersion":"(\d+)"')
CONTINUE = re.compile(rb'"continue":"([^"]+)"')
SERVICES_PATH = "/api/v1/services"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
PATCH_HEADERS = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}
PATCH_BODY = b'{"metadata":{"labels":{"bench-watch":"1"}}}'
KUBECTL_PAGE = 500  # kubectl get's default --chunk-size
IMPORT_PROBE = (
    "import kubesvc.apiserver.server\n"
    "for line in open('/proc/self/status'):\n"
    "    if line.startswith('VmRSS:'):\n"
    "        print(int(line.split()[1]))\n"
)

REF_RSS = "a python process that has only imported kubesvc.apiserver.server"
REF_SQLITE = (
    "SQLite alone: the same stored JSON bodies, WAL + synchronous=NORMAL, one transaction "
    "per object writing a kv row and a log row, as the store does"
)
REF_JSON_SIZE = "total size of the stored objects' JSON"
REF_ROUNDTRIP = "json.loads + json.dumps of the same response body, in the benchmark process"
REF_KUBECTL = "kubectl get ns: kubectl start-up, TLS and a tiny list (discovery cached)"
REF_DUMPS = "json.dumps of each event's object once per watcher, in the benchmark process"
REF_IMPORT = "python -c 'import kubesvc.apiserver.server': interpreter start-up plus imports"


# -- processes ------------------------------------------------------------------------------


class CpuMeter:
    """CPU use of the server and of this process over a step, in % of one core."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.wall = time.perf_counter()
        self.server = cpu_seconds(server_pid)
        self.client = time.process_time()

    def rows(self) -> list[Row]:
        wall = time.perf_counter() - self.wall
        server = (cpu_seconds(self.pid) - self.server) / wall * 100
        client = (time.process_time() - self.client) / wall * 100
        return [
            Row("  server CPU (100 % = one core)", server, "%"),
            Row("  benchmark client CPU", client, "%"),
        ]


# -- HTTP -----------------------------------------------------------------------------------


def session_for(server: ApiServer, connections: int) -> aiohttp.ClientSession:
    """Keep-alive HTTPS session trusting the cluster CA, authenticating with the token."""
    ctx = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    token = (server.data_dir / "pki" / "token").read_text().strip()
    return aiohttp.ClientSession(
        base_url=server.url,
        connector=aiohttp.TCPConnector(ssl=ctx, limit=connections),
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300),
    )


async def request(
    session: aiohttp.ClientSession, method: str, path: str, want: int = 200, **kw: Any
) -> bytes:
    async with session.request(method, path, **kw) as resp:
        body = await resp.read()
        if resp.status != want:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {body[:400]!r}")
        return body


async def run_workers(
    count: int, clients: int, work: Callable[[int], Awaitable[None]], label: str
) -> float:
    """Run work(0..count-1) on `clients` concurrent tasks; returns the seconds taken."""
    todo: Iterator[int] = iter(range(count))
    progress = Progress(label, count)

    async def worker() -> None:
        for i in todo:
            await work(i)
            progress.tick()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - t0


# -- the workload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    services: int
    namespaces: int
    clients: int
    watchers: int
    list_runs: int

    def where(self, i: int) -> tuple[str, str]:
        return f"bench-{i % self.namespaces}", f"svc-{i:05d}"

    def service(self, i: int) -> bytes:
        _, name = self.where(i)
        port = {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
        obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": {"app": name, "bench": "apiserver"}},
            "spec": {"type": "ClusterIP", "selector": {"app": name}, "ports": [port]},
        }
        return json.dumps(obj).encode()


@dataclass
class State:
    """What later steps need from earlier ones."""

    stored: list[bytes] = field(default_factory=list)  # the server's create responses
    list_rv: str = ""


# -- 1. create ------------------------------------------------------------------------------


async def step_create(
    server: ApiServer, session: aiohttp.ClientSession, wl: Workload, state: State, res: Results
) -> None:
    for n in range(wl.namespaces):
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{n}"}}
        body = json.dumps(ns).encode()
        await request(session, "POST", "/api/v1/namespaces", 201, data=body, headers=JSON_HEADERS)
    stored: list[bytes] = [b""] * wl.services

    async def create(i: int) -> None:
        path = f"/api/v1/namespaces/{wl.where(i)[0]}/services"
        body = wl.service(i)
        stored[i] = await request(session, "POST", path, 201, data=body, headers=JSON_HEADERS)

    cpu = CpuMeter(server.pid)
    seconds = await run_workers(wl.services, wl.clients, create, f"create {wl.services} Services")
    cpu_rows = cpu.rows()
    state.stored = stored
    n, ref = wl.services, sqlite_reference(stored)
    label = f"create {n} Services, {wl.clients} clients"
    res.add(Row(label, seconds, "s", ref, REF_SQLITE, target=20.0))
    res.add(Row("  creates/s", n / seconds, "/s", n / ref, higher_is_better=True))
    for row in cpu_rows:
        res.add(row)


def sqlite_reference(bodies: list[bytes]) -> float:
    with tempfile.TemporaryDirectory(prefix="kubesvc-bench-sqlite-") as tmp:
        db = sqlite3.connect(str(Path(tmp) / "ref.db"), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB, rev INT) WITHOUT ROWID")
            db.execute("CREATE TABLE log (rev INTEGER PRIMARY KEY, key TEXT, value BLOB)")
            t0 = time.perf_counter()
            for rev, body in enumerate(bodies, 1):
                key = f"/registry/services/{rev:08d}"
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO log VALUES (?,?,?)", (rev, key, body))
                db.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?)", (key, body, rev))
                db.execute("COMMIT")
            return time.perf_counter() - t0
        finally:
            db.close()


# -- 2. list --------------------------------------------------------------------------------


async def timed_get(
    session: aiohttp.ClientSession, accept: str, params: dict[str, str] | None = None
) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    body = await request(session, "GET", SERVICES_PATH, headers={"Accept": accept}, params=params)
    return time.perf_counter() - t0, body


def roundtrip_seconds(body: bytes, runs: int = 3) -> float:
    """Median time of json.loads + json.dumps of a response body."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def list_as(
    session: aiohttp.ClientSession, wl: Workload, form: str, state: State, res: Results
) -> None:
    accept, key = ("application/json", "items") if form == "JSON" else (TABLE_ACCEPT, "rows")
    times: list[float] = []
    body = b""
    for _ in range(wl.list_runs):
        dt, body = await timed_get(session, accept)
        times.append(dt)
    log(f"list as {form}: {len(body) / 1e6:.1f} MB, runs {[round(t, 3) for t in times]}")
    doc = json.loads(body)
    expected = wl.services + 1  # and default/kubernetes
    if len(doc[key]) != expected:
        res.note(f"list as {form} returned {len(doc[key])} {key}, expected {expected}")
    if form == "JSON":
        state.list_rv = doc["metadata"]["resourceVersion"]
    median, ref = statistics.median(times), roundtrip_seconds(body)
    label = f"list {expected} Services as {form}, median of {wl.list_runs}"
    res.add(Row(label, median, "s", ref, REF_ROUNDTRIP, target=0.5))
    res.add(Row(f"  max of {wl.list_runs}", max(times), "s", target=0.5))


async def paged_table(session: aiohttp.ClientSession, wl: Workload, res: Results) -> None:
    """The Table list in pages of 500 with continue tokens, as `kubectl get` asks for it."""
    t0 = time.perf_counter()
    rows, pages, token = 0, 0, b""
    while True:
        params = {"limit": str(KUBECTL_PAGE)}
        if token:
            params["continue"] = token.decode()
        _, body = await timed_get(session, TABLE_ACCEPT, params)
        rows, pages = rows + body.count(b'"cells":'), pages + 1
        m = CONTINUE.search(body, 0, 2048)
        if m is None:
            break
        token = m.group(1)
    seconds = time.perf_counter() - t0
    if rows != wl.services + 1:
        res.note(f"paged Table list returned {rows} rows, expected {wl.services + 1}")
    res.add(Row(f"  same in {pages} requests of {KUBECTL_PAGE}, as kubectl asks", seconds, "s"))


def kubectl_seconds(kubectl: str, env: dict[str, str], *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([kubectl, *args], env=env, capture_output=True, text=True, timeout=300)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()[:400]}")
    return dt, proc.stdout


def step_kubectl(server: ApiServer, cache_dir: Path, wl: Workload, res: Results) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        res.note("kubectl not found on PATH; skipped `kubectl get svc -A`")
        return
    kubeconfig = str(server.data_dir / "kubeconfig")
    env = child_env({"KUBECONFIG": kubeconfig, "KUBECACHEDIR": str(cache_dir)})
    kubectl_seconds(kubectl, env, "get", "ns")  # fills the discovery cache
    dt, out = kubectl_seconds(kubectl, env, "get", "svc", "-A")
    rows = len(out.splitlines()) - 1
    if rows != wl.services + 1:
        res.note(f"kubectl get svc -A printed {rows} rows, expected {wl.services + 1}")
    whole, _ = kubectl_seconds(kubectl, env, "get", "svc", "-A", "--chunk-size=0")
    ref, _ = kubectl_seconds(kubectl, env, "get", "ns")
    res.add(Row("kubectl get svc -A (end to end, once)", dt, "s", ref, REF_KUBECTL))
    res.add(Row("  same with --chunk-size=0 (one request)", whole, "s"))


# -- 3. watch fan-out -----------------------------------------------------------------------


@dataclass
class Stream:
    events: int = 0
    done_at: float = 0.0
    last_line: bytes = b""


async def read_stream(resp: aiohttp.ClientResponse, expected: int, out: Stream) -> None:
    """Count newline-delimited events until `expected`; keep the last event's line."""
    prev = b""
    async for chunk in resp.content.iter_any():
        out.events += chunk.count(b"\n")
        if out.events >= expected:
            out.done_at = time.perf_counter()
            out.last_line = (prev + chunk).rstrip(b"\n").rsplit(b"\n", 1)[-1]
            return
        prev = chunk


def last_event_ok(line: bytes, rv: int) -> bool:
    try:
        ev = json.loads(line)
        return ev["type"] == "MODIFIED" and int(ev["object"]["metadata"]["resourceVersion"]) == rv
    except (ValueError, KeyError, TypeError):
        return False


async def open_watchers(
    session: aiohttp.ClientSession, wl: Workload, rv: str
) -> list[aiohttp.ClientResponse]:
    params = {"watch": "1", "resourceVersion": rv}
    opened = await asyncio.gather(
        *(session.get(SERVICES_PATH, params=params) for _ in range(wl.watchers)),
        return_exceptions=True,
    )
    responses = [r for r in opened if isinstance(r, aiohttp.ClientResponse)]
    failed = [r for r in opened if not isinstance(r, aiohttp.ClientResponse)]
    bad = [r for r in responses if r.status != 200]
    if failed or bad:
        for r in responses:
            r.close()
        detail = failed[0] if failed else f"HTTP {bad[0].status}"
        raise RuntimeError(f"{len(failed) + len(bad)} of {wl.watchers} watches failed: {detail}")
    return responses


async def report_watch(streams: list[Stream], per_stream: int, stop: asyncio.Event) -> None:
    total = per_stream * len(streams)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 3.0)
        got = sum(min(s.events, per_stream) for s in streams)
        log(f"watch: {got:,}/{total:,} events delivered")


@dataclass
class WatchRun:
    streams: list[Stream]
    last_rv: int
    t0: float
    write_seconds: float
    cpu_rows: list[Row]


async def step_watch(server: ApiServer, wl: Workload, state: State, res: Results) -> None:
    async with (
        session_for(server, wl.watchers) as watch_session,
        session_for(server, wl.clients) as write_session,
    ):
        responses = await open_watchers(watch_session, wl, state.list_rv)
        log(f"watch: {wl.watchers} watchers open at resourceVersion {state.list_rv}")
        try:
            run = await patch_and_wait(server, write_session, responses, wl)
        finally:
            for r in responses:
                r.close()
    record_watch(run, wl, state, res)


async def patch_and_wait(
    server: ApiServer,
    session: aiohttp.ClientSession,
    responses: list[aiohttp.ClientResponse],
    wl: Workload,
) -> WatchRun:
    """One label patch per Service while the watchers count events."""
    n = wl.services
    streams = [Stream() for _ in responses]
    pairs = zip(responses, streams, strict=True)
    readers = [asyncio.create_task(read_stream(r, n, s)) for r, s in pairs]
    stop = asyncio.Event()
    reporter = asyncio.create_task(report_watch(streams, n, stop))
    rvs = [0] * n

    async def patch(i: int) -> None:
        ns, name = wl.where(i)
        path = f"/api/v1/namespaces/{ns}/services/{name}"
        body = await request(session, "PATCH", path, data=PATCH_BODY, headers=PATCH_HEADERS)
        m = RESOURCE_VERSION.search(body)
        rvs[i] = int(m.group(1)) if m else 0

    try:
        cpu = CpuMeter(server.pid)
        t0 = time.perf_counter()
        write_seconds = await run_workers(n, wl.clients, patch, f"watch: {n} label patches")
        done, _ = await asyncio.wait(readers, timeout=max(120.0, write_seconds * 10))
        for task in done:
            task.result()
        return WatchRun(streams, max(rvs), t0, write_seconds, cpu.rows())
    finally:
        stop.set()
        for task in [*readers, reporter]:
            task.cancel()
        await asyncio.gather(*readers, reporter, return_exceptions=True)


def record_watch(run: WatchRun, wl: Workload, state: State, res: Results) -> None:
    n, w = wl.services, wl.watchers
    finished = [s for s in run.streams if s.done_at]
    delivered = sum(min(s.events, n) for s in run.streams)
    if len(finished) < len(run.streams):
        res.note(
            f"watch: only {len(finished)} of {w} watchers got all {n} events "
            f"({delivered:,} of {n * w:,} delivered before the timeout)"
        )
    verified = sum(last_event_ok(s.last_line, run.last_rv) for s in finished)
    if verified != len(finished):
        bad = len(finished) - verified
        res.note(f"watch: {bad} watchers' last event was not the last patch ({run.last_rv})")
    last = max(s.done_at for s in finished) - run.t0 if finished else None
    rate = delivered / last if last else None
    lag = last - run.write_seconds if last is not None else None
    ref = dumps_rate([json.loads(b) for b in state.stored])
    label = f"watch: {n} patches x {w} watchers, events/s delivered"
    res.add(Row(label, rate, "/s", ref, REF_DUMPS, higher_is_better=True))
    res.add(Row("  time until the last watcher had the last event", last, "s"))
    res.add(Row("  of which after the last patch was acknowledged", lag, "s"))
    label = f"  writer side: merge patches/s, {wl.clients} clients"
    res.add(Row(label, n / run.write_seconds, "/s", higher_is_better=True))
    for row in run.cpu_rows:
        res.add(row)


def dumps_rate(objs: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    for obj in objs:
        json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return len(objs) / (time.perf_counter() - t0)


# -- 4. memory and 5. restart ---------------------------------------------------------------


@dataclass
class ImportProbe:
    seconds: float | None = None
    rss_mb: float | None = None


def probe_import(runs: int = 3) -> ImportProbe:
    """Wall time of `python -c "import kubesvc.apiserver.server"` and that process's RSS."""
    times: list[float] = []
    rss = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        cmd = [sys.executable, "-c", IMPORT_PROBE]
        proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            log(f"import probe failed: {proc.stderr.strip().splitlines()[-1:]}")
            return ImportProbe()
        rss = int(proc.stdout.split()[-1])
    return ImportProbe(statistics.median(times), rss / 1024)


async def first_full_list(server: ApiServer, expected: int, timeout: float = 120.0) -> float:
    """Poll GET /api/v1/services until it answers 200; returns perf_counter at that point."""
    deadline = time.perf_counter() + timeout
    async with session_for(server, 1) as session:
        while True:
            try:
                body = await request(session, "GET", SERVICES_PATH)
                at = time.perf_counter()
                break
            except (aiohttp.ClientError, RuntimeError):
                if time.perf_counter() > deadline:
                    raise
                await asyncio.sleep(0.005)
    items = len(json.loads(body)["items"])
    if items != expected:
        raise RuntimeError(f"list after restart returned {items} Services, expected {expected}")
    return at


async def step_restart(server: ApiServer, wl: Workload, probe: ImportProbe, res: Results) -> None:
    server.kill9()
    log("restart: server killed with SIGKILL, starting it again on the same data dir")
    t0 = time.perf_counter()
    listening = server.start()
    ready = await first_full_list(server, wl.services + 1) - t0
    label = f"restart with {wl.services}+ objects: until 'listening'"
    res.add(Row(label, listening, "s", probe.seconds, REF_IMPORT))
    res.add(Row("  until the first successful full list", ready, "s"))
    res.add(Row("RSS after restart (idle, objects loaded)", server.rss_mb(), "MB"))


# -- orchestration --------------------------------------------------------------------------


async def guarded(res: Results, name: str, step: Awaitable[None]) -> bool:
    try:
        await step
        return True
    except Exception as e:
        res.note(f"{name} FAILED: {type(e).__name__}: {e}")
        return False


async def run(wl: Workload, tmp: Path, server: ApiServer, res: Results) -> None:
    probe = probe_import()
    log("starting the API server")
    server.start()
    res.add(Row("RSS idle at start", server.rss_mb(), "MB", probe.rss_mb, REF_RSS))
    state = State()
    async with session_for(server, wl.clients) as session:
        if not await guarded(res, "create", step_create(server, session, wl, state, res)):
            return
        json_mb = sum(map(len, state.stored)) / 1e6
        label = f"RSS after {wl.services} Services"
        res.add(Row(label, server.rss_mb(), "MB", json_mb, REF_JSON_SIZE))
        listed = await guarded(res, "list", list_as(session, wl, "JSON", state, res))
        await guarded(res, "list as Table", list_as(session, wl, "Table", state, res))
        await guarded(res, "paged Table list", paged_table(session, wl, res))
    kubectl = asyncio.to_thread(step_kubectl, server, tmp / "kubecache", wl, res)
    await guarded(res, "kubectl", kubectl)
    if listed and wl.watchers > 0:
        await guarded(res, "watch", step_watch(server, wl, state, res))
        res.add(Row("RSS after the watch test", server.rss_mb(), "MB"))
    await guarded(res, "restart", step_restart(server, wl, probe, res))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--services", type=int, default=10_000, help="Services to create (10000)")
    p.add_argument("--watchers", type=int, default=50, help="concurrent watchers (50)")
    p.add_argument("--clients", type=int, default=8, help="concurrent writers (8)")
    p.add_argument("--namespaces", type=int, default=4, help="namespaces to spread over (4)")
    p.add_argument("--list-runs", type=int, default=5, help="list repetitions (5)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wl = Workload(args.services, args.namespaces, args.clients, args.watchers, args.list_runs)
    catch_signals()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-bench-"))
    server = ApiServer(tmp / "data", poll=0.002)
    res: Results[Row] = Results()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    interrupted = run_then_clean_up(
        lambda: runner(run(wl, tmp, server, res)), server.stop, tmp, res
    )
    report_rows("apiserver", res, wl, started, args.json, aiohttp=aiohttp.__version__)
    return exit_status(interrupted, res)


if __name__ == "__main__":
    sys.exit(main())
