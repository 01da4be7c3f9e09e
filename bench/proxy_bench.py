"""Benchmark of kubesvc's kube-proxy: rule programming, one-Service changes, data-plane
latency, and end-to-end network programming latency on a real cluster.

    python bench/proxy_bench.py [--services 1000,10000] [--endpoints 5] [--upstream-10k]
                                [--changes 10] [--connects 2000] [--e2e-runs 30]
                                [--e2e-modes nftables,iptables] [--json FILE]

Runs as root. Steps 1-3 load rules into scratch network namespaces created here
(`ksvt-<hex>-*`); step 4 starts a real 2-node cluster with `kubesvc up` under a unique name
with KUBESVC_HOME, KUBECONFIG and KUBECACHEDIR in a temporary directory. Every namespace is
deleted and the cluster is brought down on exit, including on errors, Ctrl-C and SIGTERM.
All traffic stays inside those namespaces and the cluster's own bridge. Progress goes to
stderr, one Markdown table with both proxy modes side by side to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import common
from common import (
    ROOT,
    catch_signals,
    child_env,
    exit_status,
    log,
    machine_info,
    reference_cell,
    render_table,
    row_dicts,
    run_then_clean_up,
    write_json,
)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubesvc.client.rest import ApiClient
from kubesvc.proxy.iptables import render as ipt_render
from kubesvc.proxy.iptables.backend import IptablesBackend
from kubesvc.proxy.model import ChangeTracker, Endpoint, ProxyState, ServicePort, build_state
from kubesvc.proxy.nftables import render as nft_render
from kubesvc.proxy.nftables.backend import NftBackend
from kubesvc.proxy.proxier import read_metrics

NODE_IP, GW, CLUSTER_CIDR = "172.31.0.10", "10.244.0.1", "10.244.0.0/16"
CLIENT_IP, SERVER_IP, SERVER_PORT = "10.244.0.2", "10.244.0.3", 8080
SERVICE_NS = "bench"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
E2E_IP_BASE = "10.110.0."  # explicit ClusterIPs inside 10.96.0.0/12, one per run
CHANGE_TARGET_MS = 20.0
FULL_SYNC_TARGET_S = 1.0  # nftables, 10,000 Services
LATENCY_TARGET_PCT = 5.0
UPSTREAM_10K_NOTE = "skipped (93 s measured, dataplane-facts.md)"

REF_UPSTREAM = (
    "upstream kube-proxy's nftables layout for the same Services (per-service chains "
    "`service-<hash>-ns/name/tcp/` with `numgen random mod N vmap` to per-endpoint chains "
    "doing `dnat to`, `service-ips` vmap; generated here after pkg/proxy/nftables/proxier.go): "
    "`nft -f` into an empty namespace"
)
REF_FLOOR = (
    "process floor: `nsenter --net=NS nft -f -` / `iptables-legacy-restore -w 5 --noflush` "
    "with empty input (nftables value in this column; iptables in the note)"
)
REF_NFT_PROCESS = (
    "the endpoint-replaced transactions (there and back) replayed through `nsenter --net=NS "
    "nft -f -`, a new process each time, as kubesvc applied them before it kept a libnftables "
    "context open; closing nft's netlink socket waits for the kernel to destroy deleted "
    "elements (an RCU grace period)"
)
REF_REBUILD = (
    "the whole state rebuilt from every Service and EndpointSlice (model.build_state), "
    "as a proxier without a change tracker would do on every sync"
)
REF_ONE_DNAT = (
    "the same connects with only `ip daddr CLUSTER_IP tcp dport 80 dnat to POD:PORT` loaded "
    "in the node namespace (a nat prerouting chain, so conntrack and NAT are on): the "
    "kernel's floor for any ClusterIP, whatever the rules around it"
)
REF_NO_RULES = "the same connect() with no proxy rules loaded in the node namespace"

# -- scripts run inside namespaces and pods -------------------------------------------------

SERVER = r"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(__import__("sys").argv[1]))); s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

# round-robin over the targets so all of them see the same machine noise; RST on close
# (SO_LINGER 0) so thousands of connects leave no TIME_WAIT behind
CONNECT = r"""
import json, socket, statistics, struct, sys, time
n = int(sys.argv[1]); targets = sys.argv[2:]
addrs = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in targets]
linger = struct.pack("ii", 1, 0)
times = {t: [] for t in targets}
fails = {t: 0 for t in targets}
for i in range(n + 100):
    for t, a in zip(targets, addrs):
        s = socket.socket(); s.settimeout(2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        t0 = time.perf_counter_ns()
        try:
            s.connect(a)
            dt = time.perf_counter_ns() - t0
            if i >= 100:
                times[t].append(dt / 1000)
        except OSError:
            fails[t] += 1
        s.close()
out = {t: [statistics.median(v) if v else None, fails[t]] for t, v in times.items()}
print(json.dumps(out))
"""

# non-blocking connect attempts every ~2 ms until one succeeds; prints the wall-clock time
# of the first success (the host and the pods share the clock)
PROBE = r"""
import errno, selectors, socket, sys, time
ip, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sel = selectors.DefaultSelector()
refused = 0
print("ready", flush=True)
end = time.monotonic() + limit
while time.monotonic() < end:
    s = socket.socket(); s.setblocking(False)
    rc = s.connect_ex((ip, port))
    if rc not in (0, errno.EINPROGRESS):
        s.close()
    else:
        sel.register(s, selectors.EVENT_WRITE, time.monotonic())
    for key, _ in sel.select(0.002):
        sock = key.fileobj
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        sel.unregister(sock); sock.close()
        if err == 0:
            print(f"ok {time.time():.6f} {refused}", flush=True)
            sys.exit(0)
        refused += 1
    now = time.monotonic()
    for key in list(sel.get_map().values()):
        if now - key.data > 0.1:
            sel.unregister(key.fileobj); key.fileobj.close()
print("timeout", flush=True)
"""


# -- results --------------------------------------------------------------------------------

Cell = float | str | None


@dataclass
class Row:
    measurement: str
    nft: Cell
    ipt: Cell
    unit: str  # "s", "ms", "us", "%", "KiB" or "" (a count)
    reference: Cell = None
    reference_is: str = ""
    target: float | None = None  # for the nftables column

    @property
    def ok(self) -> bool | None:
        if self.target is None or not isinstance(self.nft, float | int):
            return None
        return self.nft <= self.target


@dataclass
class Results(common.Results[Row]):
    facts: list[str] = field(default_factory=list)  # context, not a failure

    def fact(self, text: str) -> None:
        log(text)
        self.facts.append(text)


def fmt(value: Cell, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "us":
        return f"{value:.0f} us"
    if unit == "%":
        return f"{value:+.1f} %"
    if unit == "KiB":
        return f"{value:,.0f} KiB"
    return f"{value:,.0f}"


def table_cells(row: Row, legend: list[str]) -> list[str]:
    ref = "-"
    if row.reference is not None:
        ref = reference_cell(fmt(row.reference, row.unit), row.reference_is, legend)
    target = "-" if row.target is None else "< " + fmt(row.target, row.unit).lstrip("+")
    ok = {None: "-", True: "yes", False: "NO"}[row.ok]
    return [row.measurement, fmt(row.nft, row.unit), fmt(row.ipt, row.unit), ref, target, ok]


def render_results(results: Results) -> str:
    legend: list[str] = []
    body = [table_cells(row, legend) for row in results.rows]
    header = ["measurement", "nftables", "iptables", "reference", "target (nft)", "ok?"]
    return render_table(header, body, legend, [*results.facts, *results.notes])


def proxy_machine_info() -> dict[str, Any]:
    return machine_info(
        memory=False,
        nft=run(["nft", "--version"]).stdout.strip(),
        iptables=run(["iptables-legacy", "--version"], check=False).stdout.strip(),
    )


# -- commands and namespaces ----------------------------------------------------------------


def run(
    argv: list[str],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, input=input, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-600:]
        raise RuntimeError(f"{' '.join(argv[:5])}...: exit {proc.returncode}: {detail}")
    return proc


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", "--", *argv]


def timed(argv: list[str], input: str | None = None) -> float:
    t0 = time.perf_counter()
    run(argv, input=input)
    return time.perf_counter() - t0


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


@dataclass
class Scratch:
    """Namespaces named `ksvt-<hex>-*`, all deleted by `cleanup()`."""

    prefix: str = field(default_factory=lambda: f"ksvt-{secrets.token_hex(3)}")
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def add(self, suffix: str) -> str:
        name = f"{self.prefix}-{suffix}"
        run(["ip", "netns", "add", name])
        return name

    def delete(self, name: str) -> None:
        run(["ip", "netns", "del", name], check=False)

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        self.procs.clear()
        names = [n for n in list_netns() if n.startswith(self.prefix + "-")]
        if names:
            batch = "".join(f"netns delete {n}\n" for n in names)
            run(["ip", "-force", "-b", "-"], input=batch, check=False)


# -- states ---------------------------------------------------------------------------------


def addr(base: int, n: int) -> str:
    return f"10.{base + n // 65536}.{n // 256 % 256}.{n % 256}"


def service(i: int) -> ServicePort:
    # zero-padded names: key order (iptables KUBE-SERVICES order) is index order
    return ServicePort(SERVICE_NS, f"s{i:05d}", "", "TCP", addr(96, i), 80)


def big_state(n: int, per: int, server_in: tuple[int, ...] = ()) -> ProxyState:
    """n Services x per endpoints (nodes n0..n{per-1}); services listed in `server_in`
    get the benchmark server as their only endpoint."""
    services, endpoints = {}, {}
    for i in range(n):
        sp = service(i)
        services[sp.key] = sp
        if i in server_in:
            endpoints[sp.key] = (Endpoint(SERVER_IP, SERVER_PORT, node="n0"),)
        else:
            endpoints[sp.key] = tuple(
                Endpoint(addr(128, i * per + j), SERVER_PORT, node=f"n{j}") for j in range(per)
            )
    return ProxyState("n0", (NODE_IP,), CLUSTER_CIDR, services, endpoints)


# -- upstream kube-proxy's nftables layout (reference) --------------------------------------


def _hash_name(name: str) -> str:
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    return f"{digest[:8]}-{name}"


def upstream_nft_text(state: ProxyState) -> str:
    """What upstream's nftables proxier writes on a first sync for ClusterIP-only services
    with Cluster traffic policies (setupNFTables + the per-service part of syncProxyRules)."""
    t = "ip kube-proxy"
    out = [f'add table {t} {{ comment "rules for kube-proxy" ; }}']
    base = [
        ("filter-prerouting", "filter", "prerouting", -110),
        ("filter-input", "filter", "input", -110),
        ("filter-forward", "filter", "forward", -110),
        ("filter-output", "filter", "output", -110),
        ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
    ]
    for name, kind, hook, prio in base:
        out.append(f"add chain {t} {name} {{ type {kind} hook {hook} priority {prio} ; }}")
        out.append(f"flush chain {t} {name}")
    jumps = [
        ("endpoints-check", "filter-input", "ct state new "),
        ("endpoints-check", "filter-forward", "ct state new "),
        ("endpoints-check", "filter-output", "ct state new "),
        ("firewall-check", "filter-prerouting", "ct state new "),
        ("firewall-check", "filter-output", "ct state new "),
        ("services", "nat-output", ""),
        ("services", "nat-prerouting", ""),
        ("masquerading", "nat-postrouting", ""),
    ]
    made: set[str] = set()

    def ensure(chain: str) -> None:
        if chain not in made:
            made.add(chain)
            out.extend([f"add chain {t} {chain}", f"flush chain {t} {chain}"])

    for dst, src, extra in jumps:
        ensure(dst)
        out.append(f"add rule {t} {src} {extra}jump {dst}")
    for chain in ("services", "masquerading", "mark-for-masquerade"):
        ensure(chain)
    v_ip = "ipv4_addr . inet_proto . inet_service : verdict"
    v_np = "inet_proto . inet_service : verdict"
    out += [
        f"add rule {t} mark-for-masquerade mark set mark or 0x4000",
        f"add rule {t} masquerading mark and 0x4000 == 0 return",
        f"add rule {t} masquerading mark set mark xor 0x4000",
        f"add rule {t} masquerading masquerade fully-random",
        f"add map {t} no-endpoint-services {{ type {v_ip} ; }}",
        f"add map {t} no-endpoint-nodeports {{ type {v_np} ; }}",
        f"add chain {t} reject-chain",
        f"flush chain {t} reject-chain",
        f"add rule {t} reject-chain reject",
        f"add rule {t} endpoints-check ip daddr . meta l4proto . th dport vmap "
        "@no-endpoint-services",
        f"add rule {t} endpoints-check fib daddr type local ip daddr != 127.0.0.0/8 "
        "meta l4proto . th dport vmap @no-endpoint-nodeports",
        f"add map {t} firewall-ips {{ type {v_ip} ; }}",
        f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        f"add map {t} service-ips {{ type {v_ip} ; }}",
        f"add map {t} service-nodeports {{ type {v_np} ; }}",
        f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} services fib daddr type local ip daddr != 127.0.0.0/8 "
        "meta l4proto . th dport vmap @service-nodeports",
    ]
    for m in ("firewall-ips", "no-endpoint-services", "no-endpoint-nodeports"):
        out.append(f"flush map {t} {m}")
    out += [f"flush map {t} service-ips", f"flush map {t} service-nodeports"]
    for key in sorted(state.services):
        sp = state.services[key]
        eps = state.endpoints.get(key, ())
        proto = sp.protocol.lower()
        spn = f"{sp.namespace}/{sp.name}/{proto}/{sp.port_name}"
        svc_chain = "service-" + _hash_name(spn)
        ep_chains = [f"endpoint-{_hash_name(f'{spn}__{e.ip}/{e.port}')}" for e in eps]
        for c in ep_chains:
            ensure(c)
        ensure(svc_chain)
        out.append(
            f"add element {t} service-ips {{ {sp.cluster_ip} . {proto} . {sp.port} : "
            f"goto {svc_chain} }}"
        )
        out.append(
            f"add rule {t} {svc_chain} ip daddr {sp.cluster_ip} {proto} dport {sp.port} "
            f"ip saddr != {state.cluster_cidr} jump mark-for-masquerade"
        )
        vmap = " , ".join(f"{i} : goto {c}" for i, c in enumerate(ep_chains))
        out.append(f"add rule {t} {svc_chain} numgen random mod {len(eps)} vmap {{ {vmap} }}")
        for e, c in zip(eps, ep_chains, strict=True):
            out.append(f"add rule {t} {c} ip saddr {e.ip} jump mark-for-masquerade")
            out.append(f"add rule {t} {c} meta l4proto {proto} dnat to {e.ip}:{e.port}")
    return "\n".join(out) + "\n"


# -- the benchmark context ------------------------------------------------------------------


@dataclass
class Config:
    services: list[int]
    endpoints: int
    upstream_10k: bool
    changes: int
    connects: int
    e2e_runs: int
    e2e_modes: list[str]
    steps: list[str]


@dataclass
class Bench:
    cfg: Config
    tmp: Path
    scratch: Scratch = field(default_factory=Scratch)
    res: Results = field(default_factory=Results)
    cluster: str = field(default_factory=lambda: f"pb{secrets.token_hex(3)}")
    cluster_up: bool = False
    # backends left loaded at the largest N by step 1, reused by step 2
    loaded: dict[str, tuple[NftBackend | IptablesBackend, ProxyState]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return child_env(
            {
                "KUBESVC_HOME": str(self.tmp / "home"),
                "KUBECONFIG": str(self.tmp / "kubeconfig"),
                "KUBECACHEDIR": str(self.tmp / "kubecache"),
            }
        )

    def kubesvc(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "kubesvc.cli.main", *args], env=self.env, timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120.0) -> str:
        return run(["kubectl", *args], input=input, env=self.env, timeout=timeout).stdout

    def down(self) -> None:
        if self.cluster_up:
            log(f"kubesvc down --name {self.cluster}")
            try:
                self.kubesvc("down", "--name", self.cluster)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                self.res.note(f"cleanup: kubesvc down failed: {e}")
            self.cluster_up = False

    def cleanup(self) -> None:
        self.scratch.cleanup()
        self.down()
        left = [n for n in list_netns() if n.startswith(f"ksv-{self.cluster}-")]
        if left:
            self.res.note(f"cleanup: `kubesvc down` left {len(left)} namespaces: {left[:3]}")


# -- 1. full sync ---------------------------------------------------------------------------


@dataclass
class FullSync:
    render: float
    sync: float
    kernel: float
    kib: float


async def full_sync_nft(b: Bench, st: ProxyState, n: int, keep: bool) -> FullSync:
    t0 = time.perf_counter()
    nft_render.render_full(st)
    render_s = time.perf_counter() - t0
    ns = b.scratch.add(f"nft{n}")
    be = NftBackend(ns)
    t0 = time.perf_counter()
    await be.sync(st)
    sync_s = time.perf_counter() - t0
    text = be.last_input
    raw = b.scratch.add(f"nftraw{n}")
    kernel = timed(in_ns(raw, "nft", "-f", "-"), text)
    b.scratch.delete(raw)
    if keep:
        b.loaded["nft"] = (be, st)
    else:
        be.close()
        b.scratch.delete(ns)
    return FullSync(render_s, sync_s, kernel, len(text.encode()) / 1024)


async def full_sync_ipt(b: Bench, st: ProxyState, n: int, keep: bool) -> FullSync:
    t0 = time.perf_counter()
    ipt_render.render(st)
    render_s = time.perf_counter() - t0
    ns = b.scratch.add(f"ipt{n}")
    be = IptablesBackend(ns, "legacy")
    t0 = time.perf_counter()
    await be.sync(st)
    sync_s = time.perf_counter() - t0
    text = be.last_input
    raw = b.scratch.add(f"iptraw{n}")
    argv = in_ns(raw, "iptables-legacy-restore", "-w", "5", "--noflush")
    kernel = timed(argv, text)
    b.scratch.delete(raw)
    if keep:
        b.loaded["ipt"] = (be, st)
    else:
        b.scratch.delete(ns)
    return FullSync(render_s, sync_s, kernel, len(text.encode()) / 1024)


def upstream_load(b: Bench, st: ProxyState, n: int) -> tuple[float, float]:
    text = upstream_nft_text(st)
    ns = b.scratch.add(f"up{n}")
    try:
        return timed(in_ns(ns, "nft", "-f", "-"), text), len(text.encode()) / 1024
    finally:
        b.scratch.delete(ns)


async def step_full(b: Bench) -> None:
    per, largest = b.cfg.endpoints, max(b.cfg.services)
    for n in b.cfg.services:
        st = big_state(n, per)
        keep = n == largest
        log(f"full sync: {n:,} Services x {per} endpoints, nftables")
        nf = await full_sync_nft(b, st, n, keep)
        log(f"  nft: render {nf.render:.3f} s, sync {nf.sync:.3f} s, nft -f {nf.kernel:.3f} s")
        log(f"full sync: {n:,} Services x {per} endpoints, iptables-legacy")
        ip = await full_sync_ipt(b, st, n, keep)
        log(f"  ipt: render {ip.render:.3f} s, sync {ip.sync:.3f} s, restore {ip.kernel:.3f} s")
        up_s: Cell
        up_kib: Cell
        if n > 1000 and not b.cfg.upstream_10k:
            up_s, up_kib = UPSTREAM_10K_NOTE, None
        else:
            log(f"upstream nftables layout: nft -f of {n:,} Services (slow at scale)")
            up_s, up_kib = upstream_load(b, st, n)
            log(f"  upstream layout: nft -f {up_s:.3f} s")
        label = f"{n:,} Services x {per} endpoints"
        b.res.add(Row(f"{label}: render (pure Python)", nf.render, ip.render, "s"))
        b.res.add(
            Row(
                "  full sync from empty (backend.sync: render + apply)",
                nf.sync,
                ip.sync,
                "s",
                target=FULL_SYNC_TARGET_S if n >= 10_000 else None,
            )
        )
        b.res.add(
            Row(
                "  kernel only: `nft -f` / `iptables-legacy-restore` of that text",
                nf.kernel,
                ip.kernel,
                "s",
                up_s,
                REF_UPSTREAM,
            )
        )
        b.res.add(Row("  rendered text", nf.kib, ip.kib, "KiB", up_kib, REF_UPSTREAM))


# -- 2. one-Service changes -----------------------------------------------------------------


def with_endpoints(st: ProxyState, key: str, eps: tuple[Endpoint, ...]) -> ProxyState:
    endpoints = dict(st.endpoints)
    endpoints[key] = eps
    return replace(st, endpoints=endpoints)


def with_service(
    st: ProxyState, sp: ServicePort | None, key: str, eps: tuple[Endpoint, ...]
) -> ProxyState:
    services, endpoints = dict(st.services), dict(st.endpoints)
    if sp is None:
        services.pop(key, None)
        endpoints.pop(key, None)
    else:
        services[key], endpoints[key] = sp, eps
    return replace(st, services=services, endpoints=endpoints)


@dataclass
class ChangeTimes:
    ep_replaced: list[float] = field(default_factory=list)
    ep_added: list[float] = field(default_factory=list)
    ep_removed: list[float] = field(default_factory=list)
    svc_added: list[float] = field(default_factory=list)
    svc_removed: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    diff: list[float] = field(default_factory=list)  # nftables: NftTracker.diff alone
    # nftables: the endpoint-replaced transactions again, each through its own `nft -f -`
    via_process: list[float] = field(default_factory=list)
    full: int = 0

    def all(self) -> list[float]:
        return [
            *self.ep_replaced,
            *self.ep_added,
            *self.ep_removed,
            *self.svc_added,
            *self.svc_removed,
        ]


async def changes(
    be: NftBackend | IptablesBackend, st: ProxyState, reps: int, n: int, per: int
) -> ChangeTimes:
    out = ChangeTimes()

    async def sync(state: ProxyState, into: list[float], key: str) -> None:
        # the proxier's change tracker tells the backend which service port changed
        changed = frozenset({key})
        t0 = time.perf_counter()
        if isinstance(be, NftBackend):
            # computed plans are cached per state object, so sync() below reuses this one
            be.tracker.diff(state, changed)
            out.diff.append((time.perf_counter() - t0) * 1000)
        await be.sync(state, changed)
        into.append((time.perf_counter() - t0) * 1000)
        out.full += be.last_sync_full

    for i in range(reps):
        key = service((i * 997 + 13) % n).key
        eps = st.endpoints[key]
        extra = Endpoint(f"10.250.{i // 256}.{i % 256}", SERVER_PORT, node="n1")
        # same endpoint count (a pod replaced by one with a new IP), and back
        st = with_endpoints(st, key, (*eps[1:], extra))
        await sync(st, out.ep_replaced, key)
        out.lines.append(be.last_input.count("\n"))
        forward = be.last_input
        st = with_endpoints(st, key, eps)
        await sync(st, out.ep_replaced, key)
        if isinstance(be, NftBackend) and be.netns:
            # the same two transactions (there and back) as the `nft` command would apply them
            for text in (forward, be.last_input):
                out.via_process.append(timed(in_ns(be.netns, "nft", "-f", "-"), text) * 1000)
        # one more endpoint: no other Service has per+1, so a new shared pick chain in nft
        st = with_endpoints(st, key, (*eps, extra))
        await sync(st, out.ep_added, key)
        st = with_endpoints(st, key, eps)
        await sync(st, out.ep_removed, key)
        sp = service(n + 1000 + i)
        new_eps = tuple(
            Endpoint(f"10.251.{i}.{j + 1}", SERVER_PORT, node=f"n{j}") for j in range(per)
        )
        st = with_service(st, sp, sp.key, new_eps)
        await sync(st, out.svc_added, sp.key)
        st = with_service(st, None, sp.key, ())
        await sync(st, out.svc_removed, sp.key)
    return out


def service_obj(i: int) -> dict[str, Any]:
    sp = service(i)
    return {
        "metadata": {"namespace": sp.namespace, "name": sp.name},
        "spec": {"clusterIP": sp.cluster_ip, "ports": [{"port": sp.port, "protocol": "TCP"}]},
    }


def slice_obj(i: int, per: int, extra: str | None = None) -> dict[str, Any]:
    name = service(i).name
    ips = [addr(128, i * per + j) for j in range(per)] + ([extra] if extra else [])
    return {
        "metadata": {
            "namespace": SERVICE_NS,
            "name": f"{name}-abcde",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": True}, "nodeName": f"n{k % per}"}
            for k, ip in enumerate(ips)
        ],
        "ports": [{"port": SERVER_PORT, "protocol": "TCP"}],
    }


def tracker_costs(n: int, per: int, reps: int) -> tuple[float, float]:
    """(median ms for the proxier's change tracker to fold one EndpointSlice change into
    the state, ms to rebuild the whole state instead)."""
    services = [service_obj(i) for i in range(n)]
    slices = [slice_obj(i, per) for i in range(n)]
    tracker = ChangeTracker("n0", (NODE_IP,), CLUSTER_CIDR)
    for obj in services:
        tracker.service(obj)
    for obj in slices:
        tracker.slice(obj)
    tracker.take()
    times = []
    for i in range(reps):
        obj = slice_obj((i * 997 + 13) % n, per, extra=f"10.250.0.{i % 250}")
        t0 = time.perf_counter()
        tracker.slice(obj)
        tracker.take()
        times.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    build_state("n0", (NODE_IP,), CLUSTER_CIDR, services, slices)
    return statistics.median(times), (time.perf_counter() - t0) * 1000


def floor_ms(argv: list[str], reps: int = 10) -> float:
    return statistics.median(timed(argv, "") * 1000 for _ in range(reps))


async def step_changes(b: Bench) -> None:
    n, per, reps = max(b.cfg.services), b.cfg.endpoints, b.cfg.changes
    got: dict[str, ChangeTimes] = {}
    floors: dict[str, float] = {}
    for mode in ("nft", "ipt"):
        if mode not in b.loaded:
            b.res.note(f"one-Service changes: no {mode} backend loaded with {n:,} Services")
            continue
        be, st = b.loaded[mode]
        log(f"one-Service changes at {n:,} Services, {mode}: {reps} x 6 syncs")
        got[mode] = await changes(be, st, reps, n, per)
        ns = be.netns or ""
        argv = (
            in_ns(ns, "nft", "-f", "-")
            if mode == "nft"
            else in_ns(ns, "iptables-legacy-restore", "-w", "5", "--noflush")
        )
        floors[mode] = floor_ms(argv)
        if got[mode].full:
            b.res.note(f"one-Service changes ({mode}): {got[mode].full} syncs were full syncs")
        be.close()
        b.scratch.delete(ns)
    b.loaded.clear()

    def med(mode: str, attr: str) -> float | None:
        ct = got.get(mode)
        return statistics.median(getattr(ct, attr)) if ct else None

    label = f"one-Service change at {n:,} Services, diff+apply, median of {reps}"
    b.res.add(
        Row(
            label + ": endpoint replaced (new IP, same count)",
            med("nft", "ep_replaced"),
            med("ipt", "ep_replaced"),
            "ms",
            floors.get("nft"),
            REF_FLOOR,
            CHANGE_TARGET_MS,
        )
    )
    b.res.add(
        Row(
            f"  endpoint added ({per} -> {per + 1}, count no other Service has)",
            med("nft", "ep_added"),
            med("ipt", "ep_added"),
            "ms",
            target=CHANGE_TARGET_MS,
        )
    )
    b.res.add(
        Row(
            f"  endpoint removed ({per + 1} -> {per})",
            med("nft", "ep_removed"),
            med("ipt", "ep_removed"),
            "ms",
            target=CHANGE_TARGET_MS,
        )
    )
    b.res.add(
        Row(
            f"  new Service ({per} endpoints) added",
            med("nft", "svc_added"),
            med("ipt", "svc_added"),
            "ms",
            target=CHANGE_TARGET_MS,
        )
    )
    b.res.add(
        Row(
            "  Service removed",
            med("nft", "svc_removed"),
            med("ipt", "svc_removed"),
            "ms",
            target=CHANGE_TARGET_MS,
        )
    )
    worst = {m: max(ct.all()) for m, ct in got.items()}
    b.res.add(Row("  max over all those changes", worst.get("nft"), worst.get("ipt"), "ms"))
    b.res.add(
        Row("  of which computing the diff (NftTracker.diff)", med("nft", "diff"), None, "ms")
    )
    take_ms, rebuild_ms = tracker_costs(n, per, reps)
    b.res.add(
        Row(
            "  before that, folding the EndpointSlice change into the state (ChangeTracker)",
            take_ms,
            take_ms,
            "ms",
            rebuild_ms,
            REF_REBUILD,
        )
    )
    b.res.add(
        Row(
            "  endpoint replaced: the same transactions through `nft -f -`, one process each",
            None,
            None,
            "ms",
            med("nft", "via_process"),
            REF_NFT_PROCESS,
        )
    )
    b.res.add(
        Row(
            "  lines in the transaction (endpoint replaced)",
            med("nft", "lines"),
            med("ipt", "lines"),
            "",
        )
    )
    if "ipt" in floors:
        b.res.fact(
            f"process floor for iptables-legacy-restore with empty input: {floors['ipt']:.1f} ms"
        )


# -- 3. connect latency ---------------------------------------------------------------------


@dataclass
class Topology:
    node: str
    client: str
    server: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)


def build_topology(b: Bench) -> Topology:
    topo = Topology(b.scratch.add("node"), b.scratch.add("cli"), b.scratch.add("srv"))
    batch = [
        "link set lo up",
        "link add eth0 type veth peer name eth0p",  # the peer stays unused: no way out
        "link set eth0p up",
        f"addr add {NODE_IP}/24 dev eth0",
        "link set eth0 up",
        "link add cbr0 type bridge",
        f"addr add {GW}/24 dev cbr0",
        "link set cbr0 up",
        f"route add 10.96.0.0/12 dev eth0 src {NODE_IP}",
    ]
    for pod, ns in (("cli", topo.client), ("srv", topo.server)):
        batch += [
            f"link add v{pod} type veth peer name eth0 netns {ns}",
            f"link set v{pod} master cbr0",
            f"link set v{pod} type bridge_slave hairpin on",
            f"link set v{pod} up",
        ]
    run(in_ns(topo.node, "ip", "-b", "-"), input="\n".join(batch) + "\n")
    run(
        in_ns(
            topo.node,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward; "
            "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables",
        )
    )
    for ns, ip in ((topo.client, CLIENT_IP), (topo.server, SERVER_IP)):
        cmds = [
            "link set lo up",
            f"addr add {ip}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {GW}",
        ]
        run(in_ns(ns, "ip", "-b", "-"), input="\n".join(cmds) + "\n")
    run(
        in_ns(topo.client, "sh", "-c", "echo '1024 65535' > /proc/sys/net/ipv4/ip_local_port_range")
    )
    proc = subprocess.Popen(
        in_ns(topo.server, sys.executable, "-c", SERVER, str(SERVER_PORT)),
        stdout=subprocess.PIPE,
        text=True,
    )
    b.scratch.procs.append(proc)
    topo.procs.append(proc)
    if proc.stdout is None or proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the TCP server in the server pod did not start")
    return topo


def connect_medians(
    topo: Topology, n: int, targets: list[str]
) -> dict[str, tuple[float | None, int]]:
    out = run(in_ns(topo.client, sys.executable, "-c", CONNECT, str(n), *targets)).stdout
    data = json.loads(out)
    return {t: (v[0], int(v[1])) for t, v in data.items()}


async def step_latency(b: Bench) -> None:
    n = max(b.cfg.services)
    topo = build_topology(b)
    last = n - 1
    st = big_state(n, b.cfg.endpoints, server_in=(0, last))
    direct = f"{SERVER_IP}:{SERVER_PORT}"
    first_ip, last_ip = f"{service(0).cluster_ip}:80", f"{service(last).cluster_ip}:80"
    k = b.cfg.connects
    log(f"connect latency: {k} connects per target, no rules")
    base = connect_medians(topo, k, [direct])
    results: dict[str, dict[str, tuple[float | None, int]]] = {}
    for mode in ("nft", "ipt"):
        be: NftBackend | IptablesBackend = (
            NftBackend(topo.node) if mode == "nft" else IptablesBackend(topo.node, "legacy")
        )
        log(f"connect latency: loading {n:,} Services ({mode})")
        await be.sync(st)
        log(f"connect latency: {k} connects per target x 3 targets ({mode})")
        results[mode] = connect_medians(topo, k, [direct, first_ip, last_ip])
        await be.cleanup()
        be.close()
    # the floor of any ClusterIP: conntrack plus one DNAT rule and nothing else
    floor_table = (
        "table ip kubesvc-bench-floor {\n"
        "  chain pre { type nat hook prerouting priority dstnat; "
        f"ip daddr {service(0).cluster_ip} tcp dport 80 dnat to {direct}; }}\n"
        "}\n"
    )
    run(in_ns(topo.node, "nft", "-f", "-"), input=floor_table)
    log(f"connect latency: {k} connects per target x 2 targets (one DNAT rule)")
    floor = connect_medians(topo, k, [direct, first_ip])
    run(in_ns(topo.node, "nft", "delete", "table", "ip", "kubesvc-bench-floor"))
    for mode, r in [("none", base), ("one DNAT rule", floor), *results.items()]:
        for t, (_, fails) in r.items():
            if fails:
                b.res.note(f"connect latency ({mode}): {fails} failed connects to {t}")

    def cell(mode: str, target: str) -> float | None:
        return results.get(mode, {}).get(target, (None, 0))[0]

    def pct(mode: str, target: str, against: float | None) -> float | None:
        v = cell(mode, target)
        return None if v is None or not against else (v - against) / against * 100

    label = f"connect() median at {n:,} Services, {k} each"
    b.res.add(
        Row(
            f"{label}: direct to the pod IP",
            cell("nft", direct),
            cell("ipt", direct),
            "us",
            base[direct][0],
            REF_NO_RULES,
        )
    )
    b.res.add(
        Row("  first Service's ClusterIP", cell("nft", first_ip), cell("ipt", first_ip), "us")
    )
    b.res.add(Row("  last Service's ClusterIP", cell("nft", last_ip), cell("ipt", last_ip), "us"))
    for name, tgt in (("first", first_ip), ("last", last_ip)):
        b.res.add(
            Row(
                f"  {name} Service vs direct (same rules)",
                pct("nft", tgt, cell("nft", direct)),
                pct("ipt", tgt, cell("ipt", direct)),
                "%",
                target=LATENCY_TARGET_PCT,
            )
        )
    floor_pct = None
    if floor[direct][0] and floor[first_ip][0] is not None:
        floor_pct = (floor[first_ip][0] - floor[direct][0]) / floor[direct][0] * 100
    b.res.add(
        Row(
            "  ClusterIP vs direct with one DNAT rule and nothing else",
            None,
            None,
            "%",
            floor_pct,
            REF_ONE_DNAT,
        )
    )
    b.res.add(
        Row(
            "  last Service vs direct without rules",
            pct("nft", last_ip, base[direct][0]),
            pct("ipt", last_ip, base[direct][0]),
            "%",
        )
    )
    for proc in topo.procs:
        proc.kill()
        proc.wait()
    for ns in (topo.client, topo.server, topo.node):
        b.scratch.delete(ns)


# -- 4. network programming latency on a real cluster ---------------------------------------


def pod_manifest() -> str:
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "netexec", "labels": {"app": "bench-netexec"}},
            "spec": {
                "containers": [
                    {"name": "netexec", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}
                ]
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client"},
            "spec": {
                "containers": [{"name": "client", "image": "busybox", "command": ["sleep", "3600"]}]
            },
        },
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": pods})


def service_body(name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "clusterIP": ip,
            "selector": {"app": "bench-netexec"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


_SAMPLE = re.compile(r"^(\w+?)(_bucket|_sum|_count)(?:\{le=\"([^\"]+)\"\})? (\S+)$")


def scrape(netns: str) -> dict[str, float]:
    """Histogram samples by `name_sum`, `name_count`, `name_bucket:le`, from the metrics of
    the proxy of the node whose namespace is `netns` (it listens on that namespace's
    127.0.0.1:10249, as upstream's default --metrics-bind-address)."""
    text = read_metrics(netns)
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            name, kind, le, value = m.groups()
            out[f"{name}{kind}" + (f":{le}" if le else "")] = float(value)
    return out


@dataclass
class HistDelta:
    count: int
    mean: float | None
    p50: str
    p99: str


def hist_delta(before: dict[str, float], after: dict[str, float], name: str) -> HistDelta:
    count = int(after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0))
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    buckets = sorted(
        (float(k.split(":", 1)[1]), after[k] - before.get(k, 0.0))
        for k in after
        if k.startswith(f"{name}_bucket:") and not k.endswith("+Inf")
    )

    def quantile(q: float) -> str:
        for le, c in buckets:
            if count and c >= q * count:
                return f"<= {le:g} s"
        return "n/a" if not count else "> last bucket"

    return HistDelta(count, total / count if count else None, quantile(0.5), quantile(0.99))


@dataclass
class E2E:
    latencies: list[float]
    refused: list[int]
    programming: HistDelta | None
    sync: HistDelta | None
    placement: str


def start_probe(b: Bench, ip: str) -> subprocess.Popen[str]:
    argv = ["kubectl", "exec", "client", "--", "python3", "-c", PROBE, ip, "80", "15"]
    proc = subprocess.Popen(
        argv, env=b.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    b.scratch.procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"probe in the client pod did not start: {line!r} {err[-300:]}")
    return proc


async def e2e_mode(b: Bench, mode: str) -> E2E:
    log(f"e2e ({mode}): kubesvc up --name {b.cluster} --nodes 2 --proxy-mode {mode}")
    b.cluster_up = True
    b.kubesvc("up", "--name", b.cluster, "--nodes", "2", "--proxy-mode", mode)
    b.kubectl("apply", "-f", "-", input=pod_manifest())
    b.kubectl("wait", "--for=condition=Ready", "pod/netexec", "pod/client", "--timeout=90s")
    pods = json.loads(b.kubectl("get", "pods", "-o", "json"))["items"]
    where = {p["metadata"]["name"]: p["spec"].get("nodeName", "?") for p in pods}
    placement = f"client on {where.get('client')}, server on {where.get('netexec')}"
    log(f"e2e ({mode}): {placement}")
    metrics_netns = f"ksv-{b.cluster}-{where['client']}"
    metrics_url = f"http://127.0.0.1:10249/metrics in {metrics_netns}"
    before: dict[str, float] = {}
    try:
        before = scrape(metrics_netns)
    except OSError as e:
        b.res.note(f"e2e ({mode}): metrics endpoint {metrics_url} unreachable: {e}")
    latencies: list[float] = []
    refused: list[int] = []
    async with ApiClient.from_kubeconfig(str(b.tmp / "kubeconfig")) as api:
        for i in range(b.cfg.e2e_runs):
            ip, name = f"{E2E_IP_BASE}{10 + i}", f"bench-{i}"
            probe = start_probe(b, ip)
            await api.create("Service", "default", service_body(name, ip))
            created = time.time()
            out, _ = await asyncio.to_thread(probe.communicate, None, 30)
            fields = out.split()
            if fields[:1] == ["ok"]:
                latencies.append(float(fields[1]) - created)
                refused.append(int(fields[2]))
                log(f"e2e ({mode}) {i + 1}/{b.cfg.e2e_runs}: {latencies[-1] * 1000:.0f} ms")
            else:
                b.res.note(f"e2e ({mode}) run {i + 1}: no connection within 15 s ({out.strip()!r})")
            await api.delete("Service", "default", name)
    prog = sync = None
    if before:
        try:
            after = scrape(metrics_netns)
            prog = hist_delta(before, after, "kubeproxy_network_programming_duration_seconds")
            sync = hist_delta(before, after, "kubeproxy_sync_proxy_rules_duration_seconds")
        except OSError as e:
            b.res.note(f"e2e ({mode}): metrics endpoint unreachable after the runs: {e}")
    b.down()
    return E2E(latencies, refused, prog, sync, placement)


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]


async def step_e2e(b: Bench) -> None:
    got: dict[str, E2E] = {}
    for mode in b.cfg.e2e_modes:
        try:
            got[mode] = await e2e_mode(b, mode)
        except Exception as e:
            b.res.note(f"e2e ({mode}) FAILED: {type(e).__name__}: {e}")
            b.down()

    def col(mode: str, fn: Callable[[E2E], Cell]) -> Cell:
        return fn(got[mode]) if mode in got else None

    def both(fn: Callable[[E2E], Cell]) -> tuple[Cell, Cell]:
        return col("nftables", fn), col("iptables", fn)

    runs = b.cfg.e2e_runs
    label = f"Service create -> first connection to its ClusterIP (2 nodes), p50 of {runs}"
    b.res.add(Row(label, *both(lambda e: quantile(e.latencies, 0.5)), "s"))
    b.res.add(Row("  p99", *both(lambda e: quantile(e.latencies, 0.99)), "s"))
    b.res.add(Row("  min", *both(lambda e: min(e.latencies, default=None)), "s"))
    b.res.add(
        Row(
            "  connects refused before the first success (sum)",
            *both(lambda e: float(sum(e.refused))),
            "",
        )
    )
    b.res.add(
        Row(
            "  kubeproxy_network_programming_duration_seconds: count",
            *both(lambda e: float(e.programming.count) if e.programming else None),
            "",
        )
    )
    b.res.add(Row("    mean", *both(lambda e: e.programming.mean if e.programming else None), "s"))
    b.res.add(
        Row(
            "    p50 / p99 (histogram buckets)",
            *both(
                lambda e: f"{e.programming.p50} / {e.programming.p99}" if e.programming else None
            ),
            "s",
        )
    )
    b.res.add(
        Row(
            "  kubeproxy_sync_proxy_rules_duration_seconds: count",
            *both(lambda e: float(e.sync.count) if e.sync else None),
            "",
        )
    )
    b.res.add(Row("    mean", *both(lambda e: e.sync.mean if e.sync else None), "s"))
    for mode, e in got.items():
        b.res.fact(f"e2e ({mode}): {e.placement}; metrics from the client's node")


# -- orchestration --------------------------------------------------------------------------

STEPS: dict[str, Callable[[Bench], Awaitable[None]]] = {
    "full": step_full,
    "changes": step_changes,
    "latency": step_latency,
    "e2e": step_e2e,
}


async def run_all(b: Bench) -> None:
    for name, step in STEPS.items():
        if name not in b.cfg.steps:
            continue
        if name == "changes" and "full" not in b.cfg.steps:
            b.res.note("changes: needs the `full` step (it reuses its loaded rules)")
            continue
        try:
            await step(b)
        except Exception as e:
            b.res.note(f"{name} FAILED: {type(e).__name__}: {e}")


def report(b: Bench, started: str, json_path: str | None) -> None:
    info = proxy_machine_info()
    c = b.cfg
    print(
        f"kubesvc kube-proxy benchmark, {started}, {info['cpus']} CPUs ({info['cpu_model']}), "
        f"Linux {info['kernel']}, Python {info['python']}, {info['nft']}, {info['iptables']}; "
        f"Services {', '.join(f'{n:,}' for n in c.services)} x {c.endpoints} endpoints\n"
    )
    print(render_results(b.res), flush=True)
    if json_path:
        doc = {
            "date": started,
            "machine": info,
            "workload": asdict(c),
            "rows": row_dicts(b.res.rows),
            "notes": b.res.notes,
            "facts": b.res.facts,
        }
        write_json(json_path, doc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--services", default="1000,10000", help="Service counts (1000,10000)")
    p.add_argument("--endpoints", type=int, default=5, help="endpoints per Service (5)")
    p.add_argument(
        "--upstream-10k",
        action="store_true",
        help="also load upstream's nftables layout above 1,000 Services (~90 s at 10,000)",
    )
    p.add_argument("--changes", type=int, default=10, help="one-Service changes of each kind (10)")
    p.add_argument("--connects", type=int, default=2000, help="connects per target (2000)")
    p.add_argument("--e2e-runs", type=int, default=30, help="Services created per mode (30)")
    p.add_argument("--e2e-modes", default="nftables,iptables", help="cluster proxy modes")
    p.add_argument("--steps", default=",".join(STEPS), help=f"steps to run ({','.join(STEPS)})")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("proxy_bench.py needs root: it creates network namespaces", file=sys.stderr)
        return 2
    missing = [t for t in ("nft", "iptables-legacy-restore", "kubectl") if not shutil.which(t)]
    if missing:
        print(f"proxy_bench.py needs {', '.join(missing)} on PATH", file=sys.stderr)
        return 2
    cfg = Config(
        services=sorted(int(x) for x in args.services.split(",") if x),
        endpoints=args.endpoints,
        upstream_10k=args.upstream_10k,
        changes=args.changes,
        connects=args.connects,
        e2e_runs=args.e2e_runs,
        e2e_modes=[m for m in args.e2e_modes.split(",") if m],
        steps=[s for s in args.steps.split(",") if s],
    )
    catch_signals()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-proxy-bench-"))
    b = Bench(cfg, tmp)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    log(f"scratch namespaces {b.scratch.prefix}-*, cluster {b.cluster}, state in {tmp}")
    interrupted = run_then_clean_up(lambda: asyncio.run(run_all(b)), b.cleanup, tmp, b.res)
    report(b, started, args.json)
    return exit_status(interrupted, b.res)


if __name__ == "__main__":
    sys.exit(main())
