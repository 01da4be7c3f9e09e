"""Benchmark of a whole kubesvc cluster: `kubesvc up`, pod start rate, Deployments, memory.

    python bench/cluster_bench.py [--runs 3] [--pods 100] [--replicas 10] [--json FILE]

Runs as root. Starts real clusters with `kubesvc up --nodes 2` under a unique name
(`bench-<hex>`), with KUBESVC_HOME, KUBECONFIG and KUBECACHEDIR in a temporary directory, then
measures: the wall time of `kubesvc up` (run --runs times, `kubesvc down` in between), the
time from one `kubectl apply` of N bare busybox pods until all are Ready (each in a user
namespace of its own, then again with `hostUsers: true`), a Deployment of
agnhost netexec with a readiness probe until all replicas are Ready (--runs times), and the
memory of the cluster's processes and of the pods' processes. Each measurement is printed
next to a reference taken in the same run on the same machine. Progress goes to stderr, the
table to stdout. `kubesvc down` runs for the cluster and every scratch namespace is deleted
on exit, including on errors, Ctrl-C and SIGTERM.

Nothing here sends traffic to pods: the benchmark only talks to the cluster's API server
(on the cluster's own bridge) and to processes it starts on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    Results,
    Row,
    catch_signals,
    child_env,
    exit_status,
    log,
    machine_info,
    render_rows,
    row_dicts,
    run_then_clean_up,
    write_json,
)

from kubesvc.client.rest import ApiClient, ApiException
from kubesvc.node.netplan import DEFAULT_POD_CIDR

NAMESPACE = "default"
NODES = 2
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
POD_LABEL = "bench-cluster=pods"
DEPLOYMENT = "bench-web"
DEPLOYMENT_LABEL = f"app={DEPLOYMENT}"
UP_TARGET = 2.0
DEPLOYMENT_WAIT = 60.0
HEALTHZ = "http://127.0.0.1:8080/healthz"
# netexec's /healthz is 200 once its UDP server runs (--udp-port is not -1). "exec" asks from
# inside the pod's own network namespace; "http" is the kubelet's httpGet, which is only safe
# with a prober that dials from inside the node's namespace (see host_cannot_reach).
PROBES: dict[str, dict[str, Any]] = {
    "exec": {"exec": {"command": ["curl", "-sf", "-o", "/dev/null", "-m", "1", HEALTHZ]}},
    "http": {"httpGet": {"path": "/healthz", "port": 8080}},
}
STEP_LINE = re.compile(r"^\s*\u2713 (.*) \((\d+(?:\.\d+)?)s\)\s*$")
MEM_PROBES = {
    "apiserver": "kubesvc.apiserver.server",
    "controller-manager": "kubesvc.controllers.manager",
    "node": "kubesvc.node.agent",
}
RSS_PROBE = (
    "import importlib, sys\n"
    "importlib.import_module(sys.argv[1])\n"
    "for line in open('/proc/self/status'):\n"
    "    if line.startswith('VmRSS:'):\n"
    "        print(int(line.split()[1]))\n"
)

REF_HELP = "4 x `python -m kubesvc.cli.main --help` in parallel (the same four interpreters)"
REF_TOPOLOGY = (
    "the same topology by hand with `ip`, in a scratch namespace standing in for the host: "
    "bridge + address, then per node `ip netns add`, a veth into the bridge, eth0 address, "
    "cbr0 bridge + address"
)
REF_TOPOLOGY_DEL = "deleting that hand-made topology (`ip netns delete` x 2, `ip link del`)"
REF_SANDBOX = (
    "kernel part of the same number of pod sandboxes, in a scratch node namespace: one "
    "`ip -b` of `netns add`, one `ip -n NODE -b` of veths into cbr0 (hairpin, up), one "
    "`ip -n POD -b` per pod (lo up, address, eth0 up, default route), 2 at a time"
)
REF_SANDBOX_DEL = "one `ip -b` of `netns delete` for those scratch pod namespaces"
REF_AGNHOST = (
    "the same number of agnhost netexec processes started directly on 127.0.0.1, until "
    "each answers GET /healthz with 200 (polled every 10 ms)"
)
REF_MEM = "a python process that has only imported {module}"
REF_POD_MEM = (
    "`sh -c '\"$@\" & wait' x sleep 3600` (a shim shell and its container) started "
    "directly, times the number of pods"
)


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values))


def add_spread(
    res: Results,
    label: str,
    values: list[float],
    ref: float | None = None,
    ref_is: str = "",
    target: float | None = None,
) -> None:
    """Three rows: median (with the reference and the target), min and max."""
    s = Spread.of(values)
    n = len(values)
    res.add(Row(f"{label}, median of {n}", s.median if s else None, "s", ref, ref_is, target))
    res.add(Row("  min", s.min if s else None, "s"))
    res.add(Row("  max", s.max if s else None, "s", target=target))


# -- pure helpers ---------------------------------------------------------------------------


def parse_up_steps(stdout: str) -> list[tuple[str, float]]:
    """kubesvc up's progress lines (` ✓ text (1.23s)`) as (text, seconds since start)."""
    out = []
    for line in stdout.splitlines():
        m = STEP_LINE.match(line)
        if m:
            out.append((m.group(1), float(m.group(2))))
    return out


def step_at(steps: list[tuple[str, float]], prefix: str, last: bool = False) -> float | None:
    hits = [t for text, t in steps if text.startswith(prefix)]
    if not hits:
        return None
    return hits[-1] if last else hits[0]


def is_ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def bare_pods(n: int, host_users: bool | None = None) -> dict[str, Any]:
    """A List of n busybox pods running `sleep 3600`, for one `kubectl apply -f -`;
    `host_users` sets their spec.hostUsers."""
    key, value = POD_LABEL.split("=")
    spec: dict[str, Any] = {
        "containers": [{"name": "sleep", "image": "busybox", "command": ["sleep", "3600"]}]
    }
    if host_users is not None:
        spec["hostUsers"] = host_users
    items = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"bench-pod-{i:04d}", "labels": {key: value}},
            "spec": spec,
        }
        for i in range(n)
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def netexec_deployment(replicas: int, probe_kind: str = "exec") -> dict[str, Any]:
    probe = {**PROBES[probe_kind], "periodSeconds": 1}
    container = {
        "name": "netexec",
        "image": AGNHOST,
        "args": ["netexec", "--http-port=8080"],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": probe,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": DEPLOYMENT}},
            "template": {
                "metadata": {"labels": {"app": DEPLOYMENT}},
                "spec": {"containers": [container]},
            },
        },
    }


def topology_commands(prefix: str, nodes: int) -> list[tuple[str | None, list[str]]]:
    """The `ip -b` batches that build a cluster's kernel topology, as (netns, commands).
    netns None is the plain `ip -b`; `prefix-h` stands in for the host namespace."""
    host = f"{prefix}-h"
    out: list[tuple[str | None, list[str]]] = [
        (host, ["link add br0 type bridge", "addr add 172.31.0.1/24 dev br0", "link set br0 up"])
    ]
    for i in range(nodes):
        node = f"{prefix}-n{i}"
        out.append((None, [f"netns add {node}"]))
        veth = f"nv{i}"
        out.append(
            (
                host,
                [
                    f"link add {veth} type veth peer name eth0 netns {node}",
                    f"link set {veth} master br0",
                    f"link set {veth} up",
                ],
            )
        )
        out.append(
            (
                node,
                [
                    "link set lo up",
                    f"addr add 172.31.0.{10 + i}/24 dev eth0",
                    "link set eth0 up",
                    "link add cbr0 type bridge",
                    f"addr add 10.244.{i}.1/24 dev cbr0",
                    "link set cbr0 up",
                ],
            )
        )
    return out


def pod_address(i: int, pod_cidr: str = "10.244.0.0/16") -> str:
    net = ipaddress.ip_network(pod_cidr)
    return f"{net.network_address + 2 + i}/{net.prefixlen}"


def sandbox_commands(prefix: str, n: int) -> tuple[list[str], list[str], list[list[str]]]:
    """(netns adds, node-side veth commands, per-pod commands) for n scratch pod sandboxes."""
    adds = [f"netns add {prefix}-p{i}" for i in range(n)]
    node_side: list[str] = []
    for i in range(n):
        veth = f"vp{i}"
        node_side += [
            f"link add {veth} type veth peer name eth0 netns {prefix}-p{i}",
            f"link set {veth} master cbr0",
            f"link set dev {veth} type bridge_slave hairpin on",
            f"link set {veth} up",
        ]
    pod_side = [
        [
            "link set lo up",
            f"addr add {pod_address(i)} dev eth0",
            "link set eth0 up",
            "route add default via 10.244.0.1",
        ]
        for i in range(n)
    ]
    return adds, node_side, pod_side


# -- processes ------------------------------------------------------------------------------


def status_kb(pid: int, key: str = "VmRSS") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return 0


def pss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return 0


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU of a process and of its children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat; idle and iowait are not busy."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])  # guest time is already counted in user
    return total - values[3] - values[4], total


class CpuMeter:
    """CPU used by each named process (with its children) over a step, in % of one core,
    and by the whole machine, in % of all CPUs."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.wall = time.perf_counter()
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.machine = machine_busy()

    def rows(self) -> list[Row]:
        wall = time.perf_counter() - self.wall
        out = []
        for name, pid in self.pids.items():
            now, then = cpu_seconds(pid), self.start[name]
            pct = (now - then) / wall * 100 if now is not None and then is not None else None
            label = f"  CPU of {name} and its children (100 % = one core)"
            out.append(Row(label, pct, "%"))
        busy, total = machine_busy()
        pct = (busy - self.machine[0]) / max(1, total - self.machine[1]) * 100
        out.append(Row("  whole machine busy (100 % = all CPUs)", pct, "%"))
        return out


def run(
    argv: list[str],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, input=input, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-600:]
        raise RuntimeError(f"{' '.join(argv[:4])}...: exit {proc.returncode}: {detail}")
    return proc


def ip_batch(commands: list[str], netns: str | None = None) -> None:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-b", "-"]
    run(argv, input="\n".join(commands) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the benchmark context ------------------------------------------------------------------


@dataclass
class Bench:
    runs: int
    pods: int
    replicas: int
    tmp: Path
    probe: str = "exec"
    name: str = field(default_factory=lambda: f"bench-{secrets.token_hex(3)}")
    scratch: str = field(default_factory=lambda: f"ksvt-{secrets.token_hex(3)}")
    cluster_started: bool = False
    res: Results = field(default_factory=Results)

    @property
    def env(self) -> dict[str, str]:
        return child_env(
            {
                "KUBESVC_HOME": str(self.tmp / "home"),
                "KUBECONFIG": str(self.tmp / "kubeconfig"),
                "KUBECACHEDIR": str(self.tmp / "kubecache"),
            },
        )

    @property
    def cluster_dir(self) -> Path:
        return self.tmp / "home" / self.name

    @property
    def admin_kubeconfig(self) -> str:
        return str(self.cluster_dir / "apiserver" / "kubeconfig")

    def kubesvc(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "kubesvc.cli.main", *args], env=self.env, timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 300.0) -> str:
        return run(["kubectl", *args], input=input, env=self.env, timeout=timeout).stdout

    def cluster_pids(self) -> dict[str, int]:
        out = {}
        for f in sorted((self.cluster_dir / "pids").glob("*.pid")):
            with contextlib.suppress(OSError, ValueError):
                out[f.stem.removeprefix(self.name + "-")] = int(f.read_text())
        return out

    def down(self) -> float:
        t0 = time.perf_counter()
        self.kubesvc("down", "--name", self.name)
        self.cluster_started = False
        return time.perf_counter() - t0

    def cleanup(self) -> None:
        """`kubesvc down` if a cluster may be up, and delete every scratch namespace."""
        if self.cluster_started:
            log(f"cleanup: kubesvc down --name {self.name}")
            try:
                self.down()
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                self.res.note(f"cleanup: kubesvc down failed: {e}")
        left = [n for n in list_netns() if n.startswith(f"ksv-{self.name}-")]
        if left:
            self.res.note(f"cleanup: `kubesvc down` left {len(left)} namespaces: {left[:3]}")
        delete_scratch(self.scratch)


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def delete_scratch(prefix: str) -> None:
    names = [n for n in list_netns() if n.startswith(prefix + "-")]
    if names:
        subprocess.run(
            ["ip", "-force", "-b", "-"],
            input="".join(f"netns delete {n}\n" for n in names),
            capture_output=True,
            text=True,
            check=False,
        )


# -- 1. kubesvc up --------------------------------------------------------------------------


@dataclass
class UpRun:
    seconds: float
    api_at: float | None
    nodes_at: float | None


def timed_up(b: Bench) -> UpRun:
    b.cluster_started = True  # a failed `up` may have left something: `down` it anyway
    t0 = time.perf_counter()
    proc = b.kubesvc("up", "--name", b.name, "--nodes", str(NODES))
    seconds = time.perf_counter() - t0
    steps = parse_up_steps(proc.stdout)
    return UpRun(seconds, step_at(steps, "API server"), step_at(steps, "node ", last=True))


def help_floor() -> float:
    """Four interpreters running `kubesvc --help` at once: the process start-up floor."""
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kubesvc.cli.main", "--help"],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.DEVNULL,
        )
        for _ in range(4)
    ]
    for p in procs:
        p.wait()
    return time.perf_counter() - t0


def topology_by_hand(prefix: str) -> tuple[float, float]:
    """Seconds to create and to delete the 2-node topology with `ip` (as kubesvc's steps)."""
    host = f"{prefix}-h"
    ip_batch([f"netns add {host}"])
    try:
        t0 = time.perf_counter()
        for netns, commands in topology_commands(prefix, NODES):
            ip_batch(commands, netns)
        created = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(NODES):
            run(["ip", "netns", "delete", f"{prefix}-n{i}"])
        run(["ip", "-n", host, "link", "del", "br0"])
        deleted = time.perf_counter() - t0
    finally:
        delete_scratch(prefix)
    return created, deleted


def step_up(b: Bench) -> None:
    ups: list[UpRun] = []
    downs: list[float] = []
    for i in range(b.runs):
        log(f"up: run {i + 1}/{b.runs}: kubesvc up --name {b.name} --nodes {NODES}")
        ups.append(timed_up(b))
        log(f"up: returned after {ups[-1].seconds:.3f} s")
        if i < b.runs - 1:
            downs.append(b.down())
            log(f"up: kubesvc down took {downs[-1]:.3f} s")
    floors = [help_floor() for _ in range(b.runs)]
    by_hand = [topology_by_hand(f"{b.scratch}-t{i}") for i in range(b.runs)]
    res = b.res
    label = f"kubesvc up --nodes {NODES} until it returns (all Ready)"
    seconds = [u.seconds for u in ups]
    add_spread(res, label, seconds, statistics.median(floors), REF_HELP, UP_TARGET)
    api = [u.api_at for u in ups if u.api_at is not None]
    nodes = [u.nodes_at for u in ups if u.nodes_at is not None]
    ref_create = statistics.median([c for c, _ in by_hand])
    if api:
        label = "  API server listening (up's own progress line), median"
        res.add(Row(label, statistics.median(api), "s", ref_create, REF_TOPOLOGY))
    if nodes:
        label = "  last node Ready (up's own progress line), median"
        res.add(Row(label, statistics.median(nodes), "s"))
    if downs:
        label = f"kubesvc down (idle cluster), median of {len(downs)}"
        ref_delete = statistics.median([d for _, d in by_hand])
        res.add(Row(label, statistics.median(downs), "s", ref_delete, REF_TOPOLOGY_DEL))


# -- watching pods --------------------------------------------------------------------------


@dataclass
class PodTimes:
    """When each pod was first seen scheduled and Ready (perf_counter), and the live set."""

    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    scheduled_at: dict[str, float] = field(default_factory=dict)
    ready_at: dict[str, float] = field(default_factory=dict)

    def observe(self, kind: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        now = time.perf_counter()
        if kind == "DELETED":
            self.live.pop(name, None)
            return
        self.live[name] = pod
        if (pod.get("spec") or {}).get("nodeName"):
            self.scheduled_at.setdefault(name, now)
        if is_ready(pod):
            self.ready_at.setdefault(name, now)

    def ready_count(self) -> int:
        return sum(1 for p in self.live.values() if is_ready(p))


async def follow(
    client: ApiClient,
    selector: str,
    times: PodTimes,
    until: Callable[[PodTimes], bool],
    timeout: float,
    watching: asyncio.Event | None = None,
) -> None:
    """List then watch pods matching `selector` until `until(times)`; re-lists if the watch
    ends. Raises TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            listed = await client.list("Pod", NAMESPACE, label_selector=selector)
            for pod in listed["items"]:
                times.observe("ADDED", pod)
            names = {p["metadata"]["name"] for p in listed["items"]}
            for gone in set(times.live) - names:
                times.live.pop(gone)
            if watching is not None:
                watching.set()
            if until(times):
                return
            rv = listed["metadata"]["resourceVersion"]
            with contextlib.suppress(ApiException, OSError):
                async for kind, pod in client.watch(
                    "Pod", NAMESPACE, resource_version=rv, label_selector=selector
                ):
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        times.observe(kind, pod)
                        if until(times):
                            return
                    elif kind == "ERROR":
                        break


async def kubectl_async(b: Bench, *args: str, input: str | None = None) -> float:
    """Runs kubectl; returns perf_counter when it exited."""
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        *args,
        env=b.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = await proc.communicate(input.encode() if input is not None else None)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {err.decode().strip()[-600:]}")
    return time.perf_counter()


@dataclass
class Rollout:
    t0: float
    applied: float
    times: PodTimes


async def apply_and_wait(
    b: Bench, manifest: dict[str, Any], selector: str, n: int, timeout: float
) -> Rollout:
    """One `kubectl apply -f -`, timed from just before kubectl starts until n pods Ready."""
    times = PodTimes()
    async with ApiClient.from_kubeconfig(b.admin_kubeconfig) as client:
        watching = asyncio.Event()

        def done(t: PodTimes) -> bool:
            return t.ready_count() >= n

        follower = asyncio.create_task(follow(client, selector, times, done, timeout, watching))
        waiter = asyncio.create_task(watching.wait())
        await asyncio.wait([follower, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if follower.done():
            follower.result()
        t0 = time.perf_counter()
        try:
            applied = await kubectl_async(b, "apply", "-f", "-", input=json.dumps(manifest))
            await follower
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower
    return Rollout(t0, applied, times)


async def delete_and_wait(b: Bench, what: list[str], selector: str) -> float:
    """`kubectl delete --wait=false ...`, then until no pod matches: seconds."""
    async with ApiClient.from_kubeconfig(b.admin_kubeconfig) as client:
        t0 = time.perf_counter()
        await kubectl_async(b, "delete", "--wait=false", *what)
        await follow(client, selector, PodTimes(), lambda t: not t.live, 300)
        return time.perf_counter() - t0


# -- 2. pod start rate ----------------------------------------------------------------------


def sandboxes_by_hand(prefix: str, n: int) -> tuple[float, float]:
    """Seconds to create and delete n pod network sandboxes with `ip -b` batches."""
    node = f"{prefix}-node"
    ip_batch([f"netns add {node}"])
    ip_batch(
        [
            "link set lo up",
            "link add cbr0 type bridge",
            "addr add 10.244.0.1/16 dev cbr0",
            "link set cbr0 up",
        ],
        node,
    )
    adds, node_side, pod_side = sandbox_commands(prefix, n)
    try:
        t0 = time.perf_counter()
        ip_batch(adds)
        ip_batch(node_side, node)
        with ThreadPoolExecutor(NODES) as pool:
            jobs = [
                pool.submit(ip_batch, cmds, f"{prefix}-p{i}") for i, cmds in enumerate(pod_side)
            ]
            for job in jobs:
                job.result()
        created = time.perf_counter() - t0
        t0 = time.perf_counter()
        ip_batch([f"netns delete {prefix}-p{i}" for i in range(n)])
        deleted = time.perf_counter() - t0
    finally:
        delete_scratch(prefix)
    return created, deleted


def step_pods(b: Bench) -> None:
    n = b.pods
    log(f"pods: kubectl apply of {n} busybox pods, waiting for all Ready")
    cpu = CpuMeter(b.cluster_pids())
    ro = asyncio.run(apply_and_wait(b, bare_pods(n), POD_LABEL, n, 120 + n))
    cpu_rows = cpu.rows()
    ready = sorted(ro.times.ready_at.values())
    last = ready[-1] - ro.t0
    log(f"pods: {n} Ready after {last:.2f} s")
    scheduled = max(ro.times.scheduled_at.values()) - ro.t0
    ref_create, ref_delete = sandboxes_by_hand(f"{b.scratch}-s", n)
    res = b.res
    res.add(
        Row(
            f"{n} bare pods, one kubectl apply: until all Ready", last, "s", ref_create, REF_SANDBOX
        )
    )
    res.add(Row("  pods/s", n / last, "/s", n / ref_create, higher_is_better=True))
    res.add(Row("  kubectl apply returned", ro.applied - ro.t0, "s"))
    res.add(Row("  last pod scheduled (nodeName set)", scheduled, "s"))
    res.add(Row("  first pod Ready", ready[0] - ro.t0, "s"))
    res.add(Row("  half of the pods Ready", ready[len(ready) // 2] - ro.t0, "s"))
    for row in cpu_rows:
        res.add(row)
    step_memory(b)
    log(f"pods: deleting the {n} pods")
    gone = asyncio.run(delete_and_wait(b, ["pods", "-l", POD_LABEL], POD_LABEL))
    res.add(Row(f"delete the {n} pods until all are gone", gone, "s", ref_delete, REF_SANDBOX_DEL))
    # the same pods without their own user namespaces: what those cost to start
    log(f"pods: the same {n} pods with hostUsers: true")
    ro = asyncio.run(apply_and_wait(b, bare_pods(n, host_users=True), POD_LABEL, n, 120 + n))
    last_host = max(ro.times.ready_at.values()) - ro.t0
    res.add(Row(f"{n} bare pods with hostUsers: true (no user namespace)", last_host, "s"))
    res.add(Row("  pods/s", n / last_host, "/s", higher_is_better=True))
    asyncio.run(delete_and_wait(b, ["pods", "-l", POD_LABEL], POD_LABEL))


# -- 4. memory ------------------------------------------------------------------------------


def import_rss_mb(module: str) -> float | None:
    proc = run([sys.executable, "-c", RSS_PROBE, module], env=child_env(), check=False)
    if proc.returncode != 0:
        return None
    return int(proc.stdout.split()[-1]) / 1024


def pod_processes(cluster: str) -> list[int]:
    """Pids whose network namespace is one of the cluster's pod namespaces."""
    inodes = set()
    for n in list_netns():
        if n.startswith(f"ksv-{cluster}-p-"):
            with contextlib.suppress(OSError):
                inodes.add(os.stat(f"/run/netns/{n}").st_ino)
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    pids.append(int(entry))
    return pids


def shim_reference_kb() -> int | None:
    """RSS of a shim-like `sh` with a `sleep` child, started directly."""
    proc = subprocess.Popen(["sh", "-c", '"$@" & wait', "shim", "sleep", "3600"])
    children: list[str] = []
    try:
        deadline = time.monotonic() + 5
        while not children and time.monotonic() < deadline:
            time.sleep(0.05)
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if not children:
            return None
        time.sleep(0.1)  # let sleep finish exec'ing
        sizes = [status_kb(proc.pid), status_kb(int(children[0]))]
        return sum(s for s in sizes if s is not None)
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGKILL)
        proc.kill()
        proc.wait()


def step_memory(b: Bench) -> None:
    res = b.res
    for name, pid in b.cluster_pids().items():
        kind = "node" if name.startswith("node-") else name
        module = MEM_PROBES.get(kind, "")
        rss = status_kb(pid)
        ref = import_rss_mb(module) if module else None
        label = f"RSS of {name} with {b.pods} pods running"
        res.add(
            Row(
                label,
                rss / 1024 if rss is not None else None,
                "MB",
                ref,
                REF_MEM.format(module=module),
            )
        )
    pids = pod_processes(b.name)
    pods_rss = sum(status_kb(p) or 0 for p in pids) / 1024
    pods_pss = sum(pss_kb(p) or 0 for p in pids) / 1024
    one = shim_reference_kb()
    ref = one * b.pods / 1024 if one is not None else None
    label = f"{b.pods} pods' processes ({len(pids)} processes): total RSS"
    res.add(Row(label, pods_rss, "MB", ref, REF_POD_MEM))
    res.add(Row("  total PSS (shared pages split between processes)", pods_pss, "MB"))
    # the sandbox's own processes: each pod's pause and the unshare that waits for it
    sandbox = [p for p in pids if _comm(p) in ("catatonit", "unshare")]
    if sandbox:
        per_pod = sum(status_kb(p) or 0 for p in sandbox) / 1024 / b.pods
        res.add(Row("  of which a pod's sandbox (pause + unshare), per pod", per_pod, "MB"))
    log(f"memory: {len(pids)} pod processes, RSS {pods_rss:.1f} MB, PSS {pods_pss:.1f} MB")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# -- 3. Deployment to Ready -----------------------------------------------------------------


def agnhost_floor(n: int) -> float:
    """n agnhost netexec processes on 127.0.0.1: seconds until all answer /healthz."""
    env = child_env({"KUBESVC_IMAGE_BIND_ADDRESS": "127.0.0.1"})
    ports = [(free_port(), free_port()) for _ in range(n)]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubesvc.node.images.agnhost",
                "netexec",
                f"--http-port={http}",
                f"--udp-port={udp}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for http, udp in ports
    ]
    try:
        waiting = {http for http, _ in ports}
        deadline = t0 + 60
        while waiting and time.perf_counter() < deadline:
            for port in list(waiting):
                with contextlib.suppress(OSError, urllib.error.URLError):
                    url = f"http://127.0.0.1:{port}/healthz"
                    with urllib.request.urlopen(url, timeout=1) as resp:
                        if resp.status == 200:
                            waiting.discard(port)
            time.sleep(0.01)
        if waiting:
            raise RuntimeError(f"{len(waiting)} agnhost processes never answered /healthz")
        return time.perf_counter() - t0
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@contextlib.contextmanager
def host_cannot_reach(cidr: str) -> Iterator[None]:
    """The host has no route to pod IPs, so a packet for one from the host's namespace would
    follow the host's default route off the machine. While httpGet probes run, such packets
    are refused on the host instead."""
    added = run(["ip", "route", "add", "unreachable", cidr], check=False).returncode == 0
    try:
        yield
    finally:
        if added:
            run(["ip", "route", "del", "unreachable", cidr], check=False)


def step_deployment(b: Bench) -> None:
    guard = host_cannot_reach(DEFAULT_POD_CIDR) if b.probe == "http" else contextlib.nullcontext()
    with guard:
        deployment_runs(b)


def last_unhealthy(b: Bench) -> str:
    """The newest Unhealthy event's message: why probes failed."""
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired, ValueError):
        out = b.kubectl("get", "events", "--field-selector=reason=Unhealthy", "-o", "json")
        items = json.loads(out)["items"]
        if items:
            return str(items[-1].get("message", ""))
    return "none"


def deployment_runs(b: Bench) -> None:
    n = b.replicas
    ready: list[float] = []
    first: list[float] = []
    deletes: list[float] = []
    manifest = netexec_deployment(n, b.probe)
    for i in range(b.runs):
        log(f"deployment: run {i + 1}/{b.runs}: {n} replicas of agnhost netexec")
        try:
            ro = asyncio.run(apply_and_wait(b, manifest, DEPLOYMENT_LABEL, n, DEPLOYMENT_WAIT))
        except TimeoutError:
            why = last_unhealthy(b)
            msg = f"{n} replicas not Ready within {DEPLOYMENT_WAIT:.0f} s; last event: {why}"
            raise RuntimeError(msg) from None
        times = sorted(ro.times.ready_at.values())
        ready.append(times[-1] - ro.t0)
        first.append(times[0] - ro.t0)
        log(f"deployment: {n} Ready after {ready[-1]:.2f} s; deleting it")
        what = ["deployment", DEPLOYMENT]
        deletes.append(asyncio.run(delete_and_wait(b, what, DEPLOYMENT_LABEL)))
    ref = statistics.median([agnhost_floor(n) for _ in range(b.runs)])
    label = f"Deployment of {n} agnhost netexec ({b.probe} probe) to all Ready"
    add_spread(b.res, label, ready, ref, REF_AGNHOST)
    b.res.add(Row("  first replica Ready, median", statistics.median(first), "s"))
    label = "  delete the Deployment until its pods are gone, median"
    b.res.add(Row(label, statistics.median(deletes), "s"))


# -- orchestration --------------------------------------------------------------------------


def guarded(b: Bench, name: str, step: Callable[[Bench], None]) -> bool:
    try:
        step(b)
        return True
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        b.res.note(f"{name} FAILED: {type(e).__name__}: {e}")
        return False


def run_all(b: Bench) -> None:
    if not guarded(b, "kubesvc up", step_up):
        return
    if b.pods > 0:
        guarded(b, "pods", step_pods)
    if b.replicas > 0:
        guarded(b, "deployment", step_deployment)


def report(b: Bench, started: str, json_path: str | None) -> None:
    info = machine_info()
    print(
        f"kubesvc cluster benchmark, {started}, {info['cpus']} CPUs ({info['cpu_model']}), "
        f"Python {info['python']}; {NODES} nodes, {b.pods} pods, {b.replicas} replicas, "
        f"{b.runs} runs\n"
    )
    print(render_rows(b.res), flush=True)
    if json_path:
        doc = {
            "date": started,
            "machine": info,
            "workload": {
                "runs": b.runs,
                "pods": b.pods,
                "replicas": b.replicas,
                "nodes": NODES,
                "probe": b.probe,
            },
            "rows": row_dicts(b.res.rows),
            "notes": b.res.notes,
        }
        write_json(json_path, doc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="repetitions of up and Deployment (3)")
    p.add_argument("--pods", type=int, default=100, help="bare pods in one apply (100)")
    p.add_argument("--replicas", type=int, default=10, help="Deployment replicas (10)")
    p.add_argument(
        "--probe",
        choices=sorted(PROBES),
        default="exec",
        help="the Deployment's readiness probe: exec (curl inside the pod, default) or http\n"
        "(httpGet; pod IPs are made unreachable from the host meanwhile)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("cluster_bench.py needs root: nodes and pods are network namespaces", file=sys.stderr)
        return 2
    if shutil.which("kubectl") is None:
        print("cluster_bench.py needs kubectl on PATH", file=sys.stderr)
        return 2
    catch_signals()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-cluster-bench-"))
    b = Bench(max(1, args.runs), args.pods, args.replicas, tmp, args.probe)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    log(f"cluster {b.name}, scratch namespaces {b.scratch}-*, state in {tmp}")
    interrupted = run_then_clean_up(lambda: run_all(b), b.cleanup, tmp, b.res)
    report(b, started, args.json)
    return exit_status(interrupted, b.res)


if __name__ == "__main__":
    sys.exit(main())
