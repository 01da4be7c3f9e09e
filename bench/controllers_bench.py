"""Benchmark of the kubesvc Endpoints and EndpointSlice controllers against real processes.

    python bench/controllers_bench.py [--services 1000] [--pods-per-service 10]
        [--resync-services 10000] [--samples 300] [--json FILE]

Starts `kubesvc apiserver` on 127.0.0.1 with a temporary data directory and
`kubesvc controller-manager --controllers endpoints,endpointslice` against it, then measures:
initial convergence of N Services x M pods, the latency from a pod's Ready flip to its address
in Endpoints and EndpointSlices (seen on watch streams), cold-start and restart reconciliation
with many Services, the informer cache's memory per Service, and the controller-manager's RSS.
Each measurement is printed next to a reference taken in the same run on the same machine.
Progress goes to stderr, the table to stdout. Both processes are killed and the temporary
directory removed on exit, including on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    spawn,
    terminate,
    vm_rss_kb,
)

from kubesvc.client.informer import Informer, Transform, compact
from kubesvc.client.rest import ApiClient

CM_RUNNING = "kubesvc controller-manager running"
CONTROLLERS = "endpoints,endpointslice"
NAMESPACE = "bench"
NODE = "bench-node"
SERVICE_LABEL = "kubernetes.io/service-name"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
PATCH_HEADERS = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}
IDLE_WINDOW = 1.0  # seconds of (almost) no CPU use that count as idle
IDLE_CPU = 0.02  # CPU seconds allowed in that window (2 % of one core)
SETTLE = 0.02  # pause after a Ready=False flip converged, before flipping back
FLIP_WAIT = 60.0  # seconds a flip may take to show in both views before the step fails
IMPORT_PROBE = (
    "import kubesvc.controllers.manager, kubesvc.controllers.endpoints, "
    "kubesvc.controllers.endpointslice\n"
    "for line in open('/proc/self/status'):\n"
    "    if line.startswith('VmRSS:'):\n"
    "        print(int(line.split()[1]))\n"
)

REF_POD_WATCH = (
    "the API server's own latency on the same path: from the same status PATCH being "
    "acknowledged until a watch on pods delivered that MODIFIED event"
)
REF_POD_WATCH_SEND = "the same pod watch event, from just before the PATCH was sent"
REF_LIST = (
    "the benchmark listing the same Services, Pods, Endpoints and EndpointSlices once "
    "(JSON decoded), i.e. what the controller-manager's informers fetch to sync"
)
REF_WRITE_RATE = (
    "the Endpoints + EndpointSlice creates needed, at the pod create rate the benchmark "
    "measured in the same run (an estimate of the write floor)"
)
REF_NO_TRANSFORM = "the same informer with transform=None (objects as decoded from the list)"
REF_JSON = "JSON bytes per Service in the list response"
REF_RSS = "a python process that has only imported the controller-manager and the two controllers"


# -- results --------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of values, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


# -- processes ------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy (not idle, not waiting for I/O), from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU use over a step, in % of one core: of named processes, of this process, and of
    everything else on the machine (other people's work shares the same CPUs)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.wall = time.perf_counter()
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.own = time.process_time()
        self.machine = machine_busy_seconds()

    def rows(self) -> list[Row]:
        wall = time.perf_counter() - self.wall
        used = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        used["benchmark process"] = time.process_time() - self.own
        rest = machine_busy_seconds() - self.machine - sum(used.values())
        rows = [
            Row(f"  {name} CPU (100 % = one core)", s / wall * 100, "%") for name, s in used.items()
        ]
        return [
            *rows,
            Row("  everything else on the machine, CPU", max(0.0, rest) / wall * 100, "%"),
        ]


class ControllerManager:
    """`kubesvc controller-manager` for the two endpoint controllers, output to a log file."""

    def __init__(self, kubeconfig: Path, log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.started_at = 0.0
        self._log_offset = 0

    def spawn(self) -> float:
        """Start the process; returns perf_counter just before the spawn."""
        cmd = [sys.executable, "-m", "kubesvc.cli.main", "controller-manager"]
        cmd += ["--kubeconfig", str(self.kubeconfig), "--controllers", CONTROLLERS]
        with self.log_path.open("a") as out:
            self._log_offset = out.tell()
            self.started_at = time.perf_counter()
            self.proc = spawn(cmd, out)
        return self.started_at

    def log_text(self) -> str:
        with contextlib.suppress(OSError), self.log_path.open() as f:
            f.seek(self._log_offset)
            return f.read()
        return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    async def wait_running(self, timeout: float) -> float:
        """Wait for the "running" line (caches synced); returns perf_counter when seen."""
        next_log = self.started_at + 10
        while CM_RUNNING not in self.log_text():
            self.check_alive()
            now = time.perf_counter()
            if now - self.started_at > timeout:
                raise RuntimeError(f"controller-manager not running after {timeout:.0f} s")
            if now > next_log:
                next_log += 10
                log(f"waiting for 'running': {now - self.started_at:.0f} s, CPU {self.cpu():.0f} s")
            await asyncio.sleep(0.005)
        return time.perf_counter()

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"controller-manager exited:\n{self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        return vm_rss_kb(self.pid) / 1024

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


async def wait_idle(
    cm: ControllerManager, server_pid: int, timeout: float
) -> tuple[float, float] | None:
    """Sample the CPU time of the controller-manager and the API server every 0.1 s until
    each used at most IDLE_CPU in the last IDLE_WINDOW seconds. Returns (perf_counter when
    that quiet window began, controller-manager CPU seconds used up to then), or None when
    that did not happen within `timeout` seconds."""
    samples: deque[tuple[float, float, float]] = deque()
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        cm.check_alive()
        now, cpu, server_cpu = time.perf_counter(), cm.cpu(), cpu_seconds(server_pid)
        samples.append((now, cpu, server_cpu))
        while len(samples) > 1 and now - samples[1][0] >= IDLE_WINDOW:
            samples.popleft()
        first_at, first_cpu, first_server = samples[0]
        quiet = cpu - first_cpu <= IDLE_CPU and server_cpu - first_server <= IDLE_CPU
        if now - first_at >= IDLE_WINDOW and quiet:
            return first_at, first_cpu
        await asyncio.sleep(0.1)
    return None


# -- HTTP -----------------------------------------------------------------------------------


def session_for(server: ApiServer, connections: int) -> aiohttp.ClientSession:
    """Keep-alive HTTPS session trusting the cluster CA, authenticating with the token."""
    ctx = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    token = (server.data_dir / "pki" / "token").read_text().strip()
    return aiohttp.ClientSession(
        base_url=server.url,
        connector=aiohttp.TCPConnector(ssl=ctx, limit=connections),
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None),
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


# -- the objects ----------------------------------------------------------------------------


def service_name(i: int) -> str:
    return f"svc-{i:05d}"


def pod_name(i: int, j: int) -> str:
    return f"{service_name(i)}-{j}"


def pod_ip(k: int) -> str:
    """A unique IPv4 address for pod number k (0-based)."""
    k += 1
    return f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_body() -> bytes:
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
    ready["lastHeartbeatTime"] = ready["lastTransitionTime"] = now_rfc3339()
    return dumps(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
            "status": {
                "conditions": [ready],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            },
        }
    )


def service_body(i: int) -> bytes:
    port = {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    return dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service_name(i), "labels": {"app": service_name(i)}},
            "spec": {"type": "ClusterIP", "selector": {"app": service_name(i)}, "ports": [port]},
        }
    )


def pod_body(i: int, j: int) -> bytes:
    container = {
        "name": "app",
        "image": "registry.invalid/bench:1",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
    }
    return dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name(i, j), "labels": {"app": service_name(i)}},
            "spec": {"nodeName": NODE, "containers": [container]},
        }
    )


def pod_status_patch(ip: str, ready: bool) -> bytes:
    flag = "True" if ready else "False"
    at = now_rfc3339()
    conditions = [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": at},
        {"type": "Ready", "status": flag, "lastTransitionTime": at},
    ]
    status = {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": conditions,
    }
    return dumps({"status": status})


def ns_path(plural: str, name: str = "", sub: str = "") -> str:
    group = "/apis/discovery.k8s.io/v1" if plural == "endpointslices" else "/api/v1"
    path = f"{group}/namespaces/{NAMESPACE}/{plural}"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


@dataclass(frozen=True)
class Workload:
    services: int
    pods_per_service: int
    resync_services: int
    samples: int
    clients: int
    seed: int
    max_wait: float  # for 'running' and for convergence
    idle_wait: float  # for idleness


async def create_base(session: aiohttp.ClientSession) -> None:
    """The namespace and the one Ready Node every pod is bound to."""
    ns = dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    await request(session, "POST", "/api/v1/namespaces", 201, data=ns, headers=JSON_HEADERS)
    await request(session, "POST", "/api/v1/nodes", 201, data=node_body(), headers=JSON_HEADERS)


async def create_services(session: aiohttp.ClientSession, count: int, clients: int) -> float:
    async def create(i: int) -> None:
        body = service_body(i)
        await request(session, "POST", ns_path("services"), 201, data=body, headers=JSON_HEADERS)

    return await run_workers(count, clients, create, f"create {count} Services")


async def create_pods(
    session: aiohttp.ClientSession, services: int, per_service: int, clients: int
) -> float:
    """Create every pod, then patch its status to Running + Ready with its IP."""

    async def create(k: int) -> None:
        i, j = divmod(k, per_service)
        body = pod_body(i, j)
        await request(session, "POST", ns_path("pods"), 201, data=body, headers=JSON_HEADERS)
        path = ns_path("pods", pod_name(i, j), "status")
        patch = pod_status_patch(pod_ip(k), True)
        await request(session, "PATCH", path, data=patch, headers=PATCH_HEADERS)

    total = services * per_service
    return await run_workers(total, clients, create, f"create {total} pods + status patches")


def expected_ips(services: int, per_service: int) -> dict[str, frozenset[str]]:
    return {
        service_name(i): frozenset(pod_ip(i * per_service + j) for j in range(per_service))
        for i in range(services)
    }


# -- watching Endpoints, EndpointSlices and pods --------------------------------------------


class Tracker:
    """The ready pod IPs per Service as Endpoints and EndpointSlices show them, fed by watch
    events; resolves futures when an IP becomes (not) ready in a view, and tracks how many
    Services match their expected IPs in both views."""

    def __init__(self, expected: dict[str, frozenset[str]]) -> None:
        self.expected = expected
        self.ep_ready: dict[str, frozenset[str]] = {}
        self.slices: dict[str, tuple[str, frozenset[str]]] = {}  # slice -> (service, ready)
        self.slice_names: dict[str, set[str]] = {}  # service -> its slices
        self.slice_ready: dict[str, frozenset[str]] = {}
        self.correct: set[str] = set()
        self.all_correct = asyncio.Event()
        self.writes = 0  # Endpoints + EndpointSlice watch events
        self.last_write_at = 0.0
        self._waiters: dict[tuple[str, str, bool], asyncio.Future[float]] = {}
        self._pod_events: dict[tuple[str, str], float] = {}
        self._pod_waiters: dict[tuple[str, str], asyncio.Future[float]] = {}

    # -- expectations -------------------------------------------------------------------------
    def expect(self, view: str, ip: str, ready: bool) -> asyncio.Future[float]:
        """A future for the arrival time of the event in which `ip` becomes (not) ready in
        `view` ("endpoints" or "slices"). Register it before causing the change."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[(view, ip, ready)] = fut
        return fut

    def pod_event(self, name: str, rv: str) -> asyncio.Future[float]:
        """A future for the arrival time of the pod watch event with this resourceVersion."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        at = self._pod_events.pop((name, rv), None)
        if at is not None:
            fut.set_result(at)
        else:
            self._pod_waiters[(name, rv)] = fut
        return fut

    def _resolve(self, view: str, ips: frozenset[str], ready: bool, at: float) -> None:
        for ip in ips:
            fut = self._waiters.pop((view, ip, ready), None)
            if fut is not None and not fut.done():
                fut.set_result(at)

    # -- events -------------------------------------------------------------------------------
    def on_endpoints(self, type_: str, obj: dict[str, Any], at: float) -> None:
        self._count_write(at)
        svc = obj["metadata"]["name"]
        old = self.ep_ready.get(svc, frozenset())
        if type_ == "DELETED":
            self.ep_ready.pop(svc, None)
            new: frozenset[str] = frozenset()
        else:
            new = frozenset(
                a["ip"] for ss in obj.get("subsets") or [] for a in ss.get("addresses") or []
            )
            self.ep_ready[svc] = new
        self._changed("endpoints", svc, old, new, at)

    def on_slice(self, type_: str, obj: dict[str, Any], at: float) -> None:
        self._count_write(at)
        m = obj["metadata"]
        name, svc = m["name"], (m.get("labels") or {}).get(SERVICE_LABEL, "")
        old = self.slice_ready.get(svc, frozenset())
        if type_ == "DELETED":
            self.slices.pop(name, None)
            self.slice_names.get(svc, set()).discard(name)
        else:
            ready = frozenset(
                ip
                for ep in obj.get("endpoints") or []
                if (ep.get("conditions") or {}).get("ready")
                for ip in ep.get("addresses") or []
            )
            self.slices[name] = (svc, ready)
            self.slice_names.setdefault(svc, set()).add(name)
        names = self.slice_names.get(svc, set())
        new = frozenset().union(*(self.slices[n][1] for n in names))
        if names:
            self.slice_ready[svc] = new
        else:
            self.slice_ready.pop(svc, None)
        self._changed("slices", svc, old, new, at)

    def on_pod(self, type_: str, obj: dict[str, Any], at: float) -> None:
        if type_ != "MODIFIED":
            return
        m = obj["metadata"]
        key = (m["name"], m.get("resourceVersion", ""))
        fut = self._pod_waiters.pop(key, None)
        if fut is None:
            self._pod_events[key] = at
        elif not fut.done():
            fut.set_result(at)

    def _count_write(self, at: float) -> None:
        self.writes += 1
        self.last_write_at = at

    def _changed(
        self, view: str, svc: str, old: frozenset[str], new: frozenset[str], at: float
    ) -> None:
        if old != new:
            self._resolve(view, new - old, True, at)
            self._resolve(view, old - new, False, at)
        want = self.expected.get(svc)
        if want is None:
            return
        if self.ep_ready.get(svc) == want and self.slice_ready.get(svc) == want:
            self.correct.add(svc)
            if len(self.correct) == len(self.expected):
                self.all_correct.set()
        else:
            self.correct.discard(svc)
            self.all_correct.clear()


Handler = Callable[[str, dict[str, Any], float], None]


async def list_then_watch(
    session: aiohttp.ClientSession,
    path: str,
    handle: Handler,
    started: asyncio.Event,
    list_params: dict[str, str] | None = None,
) -> None:
    """List `path` into `handle` (as ADDED), then follow its watch from the list's
    resourceVersion for good, reopening the watch when the server ends it. Each event is
    stamped with the perf_counter at which its bytes arrived."""
    body = json.loads(await request(session, "GET", path, params=list_params))
    at = time.perf_counter()
    for item in body.get("items") or []:
        handle("ADDED", item, at)
    rv = body["metadata"]["resourceVersion"]
    while True:
        rv = await follow_watch(session, path, rv, handle, started)


async def follow_watch(
    session: aiohttp.ClientSession, path: str, rv: str, handle: Handler, started: asyncio.Event
) -> str:
    """One watch request; returns the last resourceVersion seen when the server ends it."""
    params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "3600"}
    async with session.get(path, params=params) as resp:
        if resp.status != 200:
            raise RuntimeError(f"watch {path}: HTTP {resp.status}: {(await resp.read())[:300]!r}")
        started.set()
        buf = b""
        async for chunk in resp.content.iter_any():
            at = time.perf_counter()
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch {path}: {event['object']}")
                obj = event["object"]
                rv = obj["metadata"].get("resourceVersion", rv)
                if event["type"] != "BOOKMARK":
                    handle(event["type"], obj, at)
    return rv


class Watches:
    """Background list+watch tasks; any failure surfaces on the next check()."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.tasks: list[asyncio.Task[None]] = []

    async def add(
        self, path: str, handle: Handler, list_params: dict[str, str] | None = None
    ) -> None:
        started = asyncio.Event()
        coro = list_then_watch(self.session, path, handle, started, list_params)
        task = asyncio.create_task(coro)
        self.tasks.append(task)
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        self.check()

    def check(self) -> None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"watch failed: {task.exception()!r}")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def watch_endpoints(watches: Watches, tracker: Tracker) -> None:
    await watches.add(ns_path("endpoints"), tracker.on_endpoints)
    await watches.add(ns_path("endpointslices"), tracker.on_slice)


async def wait_converged(
    tracker: Tracker, watches: Watches, cm: ControllerManager, label: str, timeout: float
) -> float:
    """Wait until every expected Service is correct in both views; logs progress every 3 s.
    Returns the perf_counter of the event that completed it."""
    done = await converged_within(tracker, watches, cm, label, timeout)
    if done is None:
        total = len(tracker.expected)
        raise RuntimeError(
            f"{label}: only {len(tracker.correct)}/{total} Services correct after {timeout:.0f} s"
        )
    return done


async def converged_within(
    tracker: Tracker, watches: Watches, cm: ControllerManager, label: str, timeout: float
) -> float | None:
    """As wait_converged, but None when `timeout` ran out first."""
    deadline = time.perf_counter() + timeout
    total = len(tracker.expected)
    while not tracker.all_correct.is_set():
        watches.check()
        cm.check_alive()
        if time.perf_counter() > deadline:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracker.all_correct.wait(), 3.0)
        log(f"{label}: {len(tracker.correct)}/{total} Services correct, {tracker.writes} writes")
    return tracker.last_write_at


# -- 1. initial convergence -----------------------------------------------------------------


@dataclass
class Cluster:
    """What the first phase leaves for the latency step."""

    server: ApiServer
    cm: ControllerManager
    session: aiohttp.ClientSession
    watches: Watches
    tracker: Tracker
    pod_rate: float = 0.0  # pod create + status patch pairs per second


async def step_setup(cluster: Cluster, wl: Workload, res: Results) -> None:
    server, cm, session = cluster.server, cluster.cm, cluster.session
    cpu = CpuMeter({"controller-manager": cm.pid, "API server": server.pid})
    t0 = time.perf_counter()
    await create_base(session)
    svc_seconds = await create_services(session, wl.services, wl.clients)
    pods = wl.services * wl.pods_per_service
    pod_seconds = await create_pods(session, wl.services, wl.pods_per_service, wl.clients)
    written = time.perf_counter()
    label = "initial convergence"
    done = await wait_converged(cluster.tracker, cluster.watches, cm, label, wl.max_wait)
    cluster.pod_rate = pods / pod_seconds
    label = f"setup: create 1 Node + {wl.services} Services, {wl.clients} clients"
    res.add(Row(label, svc_seconds, "s"))
    res.add(Row(f"setup: create {pods} pods + their status patches", pod_seconds, "s"))
    res.add(Row("  pods/s (create + status patch)", cluster.pod_rate, "/s"))
    label = f"initial convergence: {wl.services} Endpoints + slices, {wl.pods_per_service} IPs each"
    res.add(Row(f"{label}, from the first write", done - t0, "s"))
    res.add(Row("  after the last status patch was acknowledged", max(0.0, done - written), "s"))
    res.add(Row("  Endpoints + EndpointSlice writes seen", cluster.tracker.writes, ""))
    res.rows += cpu.rows()


# -- 2. readiness latency -------------------------------------------------------------------


@dataclass
class Flip:
    """perf_counter stamps of one Ready flip: PATCH sent and acknowledged, and the arrival
    of the Endpoints, EndpointSlice and pod watch events that show it."""

    send: float
    ack: float
    endpoints: float
    slices: float
    pod: float


async def flip(cluster: Cluster, name: str, ip: str, ready: bool) -> Flip:
    tracker = cluster.tracker
    views = [tracker.expect("endpoints", ip, ready), tracker.expect("slices", ip, ready)]
    body = pod_status_patch(ip, ready)
    path = ns_path("pods", name, "status")
    send = time.perf_counter()
    resp = await request(cluster.session, "PATCH", path, data=body, headers=PATCH_HEADERS)
    ack = time.perf_counter()
    pod = tracker.pod_event(name, json.loads(resp)["metadata"]["resourceVersion"])
    try:
        ep_at, slice_at, pod_at = await asyncio.wait_for(asyncio.gather(*views, pod), FLIP_WAIT)
    except TimeoutError:
        seen = [f.done() and not f.cancelled() for f in [*views, pod]]
        raise RuntimeError(
            f"pod {name} ({ip}) Ready={ready}: not seen within {FLIP_WAIT:.0f} s "
            f"(endpoints, slices, pod watch seen: {seen})"
        ) from None
    return Flip(send, ack, ep_at, slice_at, pod_at)


def ms_since(flips: list[Flip], what: str, since: str) -> list[float]:
    return [(getattr(f, what) - getattr(f, since)) * 1000 for f in flips]


async def sample_flips(cluster: Cluster, wl: Workload) -> tuple[list[Flip], list[Flip]]:
    """For randomly chosen pods: Ready=False, wait until it left both views, pause, then
    Ready=True and wait until it is back in both. Returns (to-False flips, to-True flips)."""
    total = wl.services * wl.pods_per_service
    rng = random.Random(wl.seed)
    if wl.samples <= total:
        picks = rng.sample(range(total), wl.samples)
    else:
        picks = [rng.randrange(total) for _ in range(wl.samples)]
    progress = Progress("readiness flips", len(picks))
    downs: list[Flip] = []
    ups: list[Flip] = []
    for k in picks:
        name, ip = pod_name(*divmod(k, wl.pods_per_service)), pod_ip(k)
        downs.append(await flip(cluster, name, ip, False))
        await asyncio.sleep(SETTLE)
        ups.append(await flip(cluster, name, ip, True))
        await asyncio.sleep(SETTLE)
        progress.tick()
    return downs, ups


def latency_rows(label: str, ups: list[Flip], what: str) -> list[Row]:
    """p50/p99/max from the PATCH ack and p50/p99 from the send, next to the pod watch's."""
    rows: list[Row] = []
    specs = [
        ("ack", 50, f"{label}, from PATCH ack: p50"),
        ("ack", 99, "  p99"),
        ("ack", 100, "  max"),
    ]
    specs += [
        ("send", 50, "  p50 from just before sending"),
        ("send", 99, "  p99 from just before sending"),
    ]
    for since, p, name in specs:
        ours = percentile(ms_since(ups, what, since), p)
        floor = percentile(ms_since(ups, "pod", since), p)
        ref = REF_POD_WATCH if since == "ack" else REF_POD_WATCH_SEND
        target = 50.0 if (since, p) == ("ack", 99) else None
        rows.append(Row(name, ours, "ms", floor, ref, target=target))
    return rows


async def step_latency(cluster: Cluster, wl: Workload, res: Results) -> None:
    tracker = cluster.tracker
    log("readiness: waiting until the controller-manager and the API server are idle")
    t0 = time.perf_counter()
    idle = await wait_idle(cluster.cm, cluster.server.pid, wl.idle_wait)
    busy = (idle[0] if idle else time.perf_counter()) - t0
    label = "  then busy (CM or server CPU > 2 %) for"
    res.add(Row(label, busy, "s", at_least=idle is None))
    if idle is None:
        res.note(f"readiness: still busy {busy:.0f} s after convergence; sampled anyway")
    await cluster.watches.add(ns_path("pods"), tracker.on_pod, {"limit": "1"})
    cpu = CpuMeter({"controller-manager": cluster.cm.pid, "API server": cluster.server.pid})
    downs, ups = await sample_flips(cluster, wl)
    n = len(ups)
    res.add(Row(f"readiness flips sampled (pods picked at random, seed {wl.seed})", n, ""))
    res.rows += cpu.rows()
    res.rows += latency_rows("Ready=True → IP in Endpoints addresses", ups, "endpoints")
    res.rows += latency_rows("Ready=True → EndpointSlice ready: true", ups, "slices")
    for what, label in (("endpoints", "Endpoints addresses"), ("slices", "slice ready")):
        ms = ms_since(downs, what, "ack")
        res.add(Row(f"Ready=False → out of {label}, from ack: p50", percentile(ms, 50), "ms"))
        res.add(Row("  p99", percentile(ms, 99), "ms"))
    early = sum(f.pod < f.ack for f in ups)
    if early:
        res.note(
            f"readiness: in {early} of {n} samples the pod watch event arrived before the "
            "PATCH response was read (negative latency from ack)"
        )


# -- 3. cold start and restart at scale -----------------------------------------------------


async def list_seconds(session: aiohttp.ClientSession) -> float:
    """Time to list (and decode) what the controller-manager's informers list at start."""
    paths = [
        "/api/v1/services",
        "/api/v1/pods",
        "/api/v1/endpoints",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "/api/v1/nodes",
    ]
    t0 = time.perf_counter()
    for path in paths:
        json.loads(await request(session, "GET", path))
    return time.perf_counter() - t0


@dataclass
class ColdStart:
    running: float
    converged: float | None  # None: not converged (or not asked)
    waited: float  # how long convergence was waited for
    correct: int  # Services correct at the end of that wait
    sync_failures: int  # "sync failed" lines in the controller-manager's log
    idle: float  # until idle, or how long it was watched without becoming idle
    idle_reached: bool
    cpu: float  # controller-manager CPU seconds until idle (or until given up)
    writes: int
    rss_mb: float
    cpu_rows: list[Row]


async def cold_start(
    cm: ControllerManager,
    server: ApiServer,
    tracker: Tracker,
    watches: Watches,
    wl: Workload,
    converge: bool,
) -> ColdStart:
    """Spawn the controller-manager; time until 'running', until every Service is correct
    (when `converge`), and until it and the server are idle."""
    writes0 = tracker.writes
    t0 = cm.spawn()
    meter = CpuMeter({"controller-manager": cm.pid, "API server": server.pid})
    running = await cm.wait_running(wl.max_wait) - t0
    log(f"controller-manager running after {running:.2f} s")
    converged = None
    if converge:
        done = await converged_within(tracker, watches, cm, "cold start", wl.max_wait)
        converged = None if done is None else done - t0
    waited, correct = time.perf_counter() - t0, len(tracker.correct)
    log("waiting until the controller-manager and the API server are idle")
    idle = await wait_idle(cm, server.pid, wl.idle_wait)
    if idle is None:
        idle_at, cpu = time.perf_counter(), cm.cpu()
    else:
        idle_at, cpu = idle
    writes = tracker.writes - writes0
    state = "idle" if idle is not None else "still busy"
    log(f"controller-manager {state} after {idle_at - t0:.1f} s, {writes} writes seen")
    failures = cm.log_text().count("sync failed")
    return ColdStart(
        running,
        converged,
        waited,
        correct,
        failures,
        idle_at - t0,
        idle is not None,
        cpu,
        writes,
        cm.rss_mb(),
        meter.rows(),
    )


async def populate_resync(session: aiohttp.ClientSession, wl: Workload) -> float:
    """Services with one ready pod each; returns pods (create + status patch) per second."""
    n = wl.resync_services
    await create_base(session)
    await create_services(session, n, wl.clients)
    return n / await create_pods(session, n, 1, wl.clients)


@dataclass
class Prepared:
    """The second server's contents and the references taken on it."""

    pod_rate: float = 0.0  # pod create + status patch pairs per second
    listed: float = 0.0  # seconds to list what the informers list


async def prepare_resync(server: ApiServer, wl: Workload, out: Prepared) -> None:
    async with session_for(server, wl.clients + 4) as session:
        out.pod_rate = await populate_resync(session, wl)
        out.listed = await list_seconds(session)


async def step_resync(
    server: ApiServer, cm: ControllerManager, wl: Workload, ref: Prepared, res: Results
) -> None:
    n = wl.resync_services
    async with session_for(server, 4) as session:
        tracker = Tracker(expected_ips(n, 1))
        watches = Watches(session)
        try:
            await watch_endpoints(watches, tracker)
            log("resync: starting the controller-manager cold")
            cold = await cold_start(cm, server, tracker, watches, wl, converge=True)
            label = f"  until all {n} Endpoints + EndpointSlices correct"
            value = cold.converged if cold.converged is not None else cold.waited
            floor = 2 * n / ref.pod_rate
            converged = Row(
                label, value, "s", floor, REF_WRITE_RATE, at_least=cold.converged is None
            )
            record_start(res, f"cold start, {n} Services x 1 ready pod", cold, ref, converged)
            if cold.converged is None:
                res.note(
                    f"cold start: {cold.correct} of {n} Services correct after {cold.waited:.0f} s"
                )
            rss = "controller-manager RSS after the cold start"
            res.add(Row(rss, cold.rss_mb, "MB", probe_import_rss(), REF_RSS))
            cm.stop()
            log("resync: restarting the controller-manager with everything converged")
            warm = await cold_start(cm, server, tracker, watches, wl, converge=False)
            record_start(res, "restart, all converged", warm, ref, writes_target=0)
            res.add(Row("controller-manager RSS after the restart", warm.rss_mb, "MB"))
        finally:
            await watches.close()


def record_start(
    res: Results,
    label: str,
    run: ColdStart,
    ref: Prepared,
    converged: Row | None = None,
    writes_target: float | None = None,
) -> None:
    running = f"{label}: until 'running' (caches synced)"
    res.add(Row(running, run.running, "s", ref.listed, REF_LIST))
    if converged is not None:
        res.add(converged)
    idle = "  until idle (CM and server CPU ≤ 2 % for 1 s)"
    res.add(Row(idle, run.idle, "s", at_least=not run.idle_reached))
    cpu = "  controller-manager CPU time until idle"
    res.add(Row(cpu, run.cpu, "s", at_least=not run.idle_reached))
    writes = "  Endpoints + EndpointSlice writes seen"
    res.add(Row(writes, run.writes, "", target=writes_target))
    res.add(Row("  controller-manager 'sync failed' log lines", run.sync_failures, ""))
    res.rows += run.cpu_rows
    if not run.idle_reached:
        res.note(f"{label}: controller-manager or API server still busy after {run.idle:.0f} s")


# -- 4. informer cache memory ---------------------------------------------------------------


async def informer_bytes(kubeconfig: Path, transform: Transform | None) -> tuple[float, int]:
    """Bytes per cached Service for an Informer with `transform`, with tracemalloc: traced
    memory with the synced cache minus traced memory after clearing it."""
    gc.collect()
    tracemalloc.start()
    try:
        async with ApiClient.from_kubeconfig(str(kubeconfig)) as client:
            informer = Informer(client, "Service", transform=transform)
            informer.start()
            await informer.wait_for_sync()
            await informer.stop()
            gc.collect()
            full = tracemalloc.get_traced_memory()[0]
            count = len(informer.cache)
            informer.cache.clear()
            gc.collect()
            empty = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (full - empty) / max(1, count), count


async def step_informer(server: ApiServer, res: Results) -> None:
    log("informer: listing Services into an Informer cache under tracemalloc")
    per_service, count = await informer_bytes(server.kubeconfig, compact)
    raw, _ = await informer_bytes(server.kubeconfig, None)
    async with session_for(server, 1) as session:
        body = await request(session, "GET", "/api/v1/services")
    json_per_service = len(body) / max(1, len(json.loads(body)["items"]))
    label = f"informer cache per Service, default transform ({count} Services)"
    res.add(Row(label, per_service, "B", raw, REF_NO_TRANSFORM, target=2048))
    res.add(Row("  cache in total", per_service * count / 1e6, "MB", raw * count / 1e6))
    res.add(Row("  JSON per Service in the list response", json_per_service, "B"))


# -- orchestration --------------------------------------------------------------------------


def probe_import_rss() -> float | None:
    """VmRSS in MB of a python process that only imported the controller-manager."""
    cmd = [sys.executable, "-c", IMPORT_PROBE]
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"import probe failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return int(proc.stdout.split()[-1]) / 1024


async def guarded(res: Results, name: str, step: Awaitable[None]) -> bool:
    try:
        await step
        return True
    except Exception as e:
        res.note(f"{name} FAILED: {type(e).__name__}: {e}")
        return False


@dataclass
class Processes:
    """Everything started, so that it can be stopped on any exit."""

    servers: list[ApiServer] = field(default_factory=list)
    cms: list[ControllerManager] = field(default_factory=list)

    def stop(self) -> None:
        for cm in self.cms:
            cm.stop()
        for server in self.servers:
            server.stop()


async def phase_latency(tmp: Path, wl: Workload, procs: Processes, res: Results) -> None:
    """Steps 1 and 2: one server, the controller-manager running from the start."""
    server = ApiServer(tmp / "data")
    procs.servers.append(server)
    log("starting the API server and the controller-manager")
    server.start()
    cm = ControllerManager(server.kubeconfig, tmp / "controller-manager.log")
    procs.cms.append(cm)
    cm.spawn()
    await cm.wait_running(wl.max_wait)
    async with session_for(server, wl.clients + 4) as session:
        watches = Watches(session)
        tracker = Tracker(expected_ips(wl.services, wl.pods_per_service))
        cluster = Cluster(server, cm, session, watches, tracker)
        try:
            await watch_endpoints(watches, tracker)
            if await guarded(res, "setup", step_setup(cluster, wl, res)):
                await guarded(res, "readiness latency", step_latency(cluster, wl, res))
        finally:
            await watches.close()
    cm.stop()
    server.stop()


async def phase_resync(tmp: Path, wl: Workload, procs: Processes, res: Results) -> None:
    """Steps 3 and 4 on a second server holding `resync_services` Services (the informer
    memory first: it needs no controller-manager)."""
    server = ApiServer(tmp / "data-resync")
    procs.servers.append(server)
    log("starting a second API server for the resync steps")
    server.start()
    cm = ControllerManager(server.kubeconfig, tmp / "controller-manager-resync.log")
    procs.cms.append(cm)
    prepared = Prepared()
    if await guarded(res, "resync setup", prepare_resync(server, wl, prepared)):
        await guarded(res, "informer memory", step_informer(server, res))
        await guarded(res, "resync", step_resync(server, cm, wl, prepared, res))
    cm.stop()
    server.stop()


async def run(wl: Workload, tmp: Path, procs: Processes, res: Results) -> None:
    await phase_latency(tmp, wl, procs, res)
    await phase_resync(tmp, wl, procs, res)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--services", type=int, default=1000, help="Services for steps 1-2 (1000)")
    p.add_argument("--pods-per-service", type=int, default=10, help="pods per Service (10)")
    p.add_argument(
        "--resync-services", type=int, default=10_000, help="Services for steps 3-4 (10000)"
    )
    p.add_argument("--samples", type=int, default=300, help="readiness flips to time (300)")
    p.add_argument("--clients", type=int, default=8, help="concurrent writers in setup (8)")
    p.add_argument("--seed", type=int, default=1, help="random seed for picking pods (1)")
    p.add_argument(
        "--max-wait",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="give up waiting for 'running' or for convergence after this long (1800)",
    )
    p.add_argument(
        "--idle-wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="give up waiting for the controller-manager to go idle after this long (600)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wl = Workload(
        args.services,
        args.pods_per_service,
        args.resync_services,
        args.samples,
        args.clients,
        args.seed,
        args.max_wait,
        args.idle_wait,
    )
    catch_signals()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-bench-cm-"))
    procs = Processes()
    res: Results[Row] = Results()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    interrupted = run_then_clean_up(lambda: runner(run(wl, tmp, procs, res)), procs.stop, tmp, res)
    report_rows("controllers", res, wl, started, args.json, aiohttp=aiohttp.__version__)
    return exit_status(interrupted, res)


if __name__ == "__main__":
    sys.exit(main())
