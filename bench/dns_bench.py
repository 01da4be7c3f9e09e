"""Benchmark of the kubesvc cluster DNS server against unbound serving the same zone.

    python bench/dns_bench.py [--services N] [--seconds S] [--json FILE]

Starts `kubesvc apiserver` on 127.0.0.1 with a temporary data directory, creates N ClusterIP
Services through the API, starts `kubesvc dns` against it and unbound with a static
`cluster.local.` zone holding the same A records and SOA, each pinned to one CPU. Measures
the time until `kubesvc dns` has synced and its memory, checks that both servers give the
same answers, then drives both with dnsperf (pinned to another CPU) using three query sets:
hits, a search-path mix and NXDOMAIN only, saturated and at a moderate rate. Progress goes
to stderr, one Markdown table to stdout. Every process is killed and the temporary directory
removed on exit, including on errors, Ctrl-C and SIGTERM. Needs `dnsperf` and `unbound`:

    apt-get install -y dnsperf unbound
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from common import (
    LISTENING,
    ROOT,
    Results,
    catch_signals,
    child_env,
    die_with_parent,
    exit_status,
    log,
    machine_info,
    render_table,
    row_dicts,
    run_then_clean_up,
    spawn,
    terminate,
    vm_rss_kb,
    write_json,
)

ZONE = "cluster.local"
INSTALL = "apt-get install -y dnsperf unbound"
DNS_LISTENING = re.compile(r"kubesvc dns listening on [^\s]+:(\d+)")
DNS_SYNCED = re.compile(r"kubesvc dns: caches synced")
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
API_CLIENTS = 8
BUSY_LIMIT = 15.0  # % of one core used by other work: a run or the machine is disturbed
SAMPLE_PER_SET = 200  # queries per set compared between the two servers
IMPORT_PROBE = (
    "import kubesvc.dns.server\n"
    "for line in open('/proc/self/status'):\n"
    "    if line.startswith('VmRSS:'):\n"
    "        print(int(line.split()[1]))\n"
)

QUERY_SETS = ("hits", "mix", "nxdomain")
SET_TITLES = {
    "hits": "hits (svc-N.ns-M.svc.cluster.local A)",
    "mix": "search-path mix (ndots:5)",
    "nxdomain": "NXDOMAIN only (search-path misses)",
}
EXPECTED_RCODES = {"hits": {"NOERROR"}, "mix": {"NOERROR", "NXDOMAIN"}, "nxdomain": {"NXDOMAIN"}}


# -- results --------------------------------------------------------------------------------


@dataclass
class Row:
    measurement: str
    kubesvc: float | None
    unbound: float | None = None
    unit: str = ""  # "/s", "ms", "s", "MB", "%" or "" (a count)
    target: float | None = None
    cmp: str = "<"  # how kubesvc's value must compare with the target: "<", "<=" or ">="
    target_is: str = ""  # shown after the target, e.g. "0.9 x unbound"

    @property
    def ok(self) -> bool | None:
        if self.target is None or self.kubesvc is None:
            return None
        if self.cmp == ">=":
            return self.kubesvc >= self.target
        if self.cmp == "<=":
            return self.kubesvc <= self.target
        return self.kubesvc < self.target


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "/s":
        return f"{value:,.0f} /s"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "%":
        return f"{value:.0f} %"
    return f"{value:,.0f}"


def table_cells(row: Row) -> list[str]:
    target = "-"
    if row.target is not None:
        sign = {">=": "≥ ", "<=": "≤ ", "<": "< "}[row.cmp]
        target = sign + fmt(row.target, row.unit)
        if row.target_is:
            target += f" ({row.target_is})"
    ok = {None: "-", True: "yes", False: "NO"}[row.ok]
    return [row.measurement, fmt(row.kubesvc, row.unit), fmt(row.unbound, row.unit), target, ok]


def render_results(results: Results[Row]) -> str:
    body = [table_cells(row) for row in results.rows]
    header = ["measurement", "kubesvc", "unbound", "target", "ok?"]
    return render_table(header, body, [], results.notes)


def tool_version(cmd: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else ""


def dns_machine_info() -> dict[str, Any]:
    uvloop_version = ""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop_version = str(getattr(uvloop, "__version__", ""))
    return machine_info(
        uvloop=uvloop_version,
        dnsperf=tool_version(["dnsperf", "-h"], r"Version (\S+)"),
        unbound=tool_version(["unbound", "-V"], r"Version (\S+)"),
    )


# -- processes ------------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[float, float]:
    """user and system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent in user, nice, system, irq and softirq, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pinned(cpu: int | None, cmd: list[str]) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


class Daemon:
    """A long-running child whose merged output is drained by a thread; `wait_for(key)`
    returns the seconds from spawn until a line matched `patterns[key]`."""

    def __init__(self, name: str, cmd: list[str], patterns: dict[str, re.Pattern[str]]) -> None:
        self.name = name
        self.cmd = cmd
        self.patterns = patterns
        self.proc: subprocess.Popen[str] | None = None
        self.output: deque[str] = deque(maxlen=200)
        self.matched: dict[str, tuple[float, re.Match[str]]] = {}
        self._changed = threading.Condition()
        self.started = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()
        self.proc = spawn(self.cmd, subprocess.PIPE)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            at = time.perf_counter() - self.started
            self.output.append(line)
            for key, pattern in self.patterns.items():
                m = pattern.search(line)
                if m and key not in self.matched:
                    with self._changed:
                        self.matched[key] = (at, m)
                        self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, key: str, timeout: float = 120.0) -> tuple[float, re.Match[str]]:
        deadline = time.perf_counter() + timeout
        with self._changed:
            while key not in self.matched:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise RuntimeError(f"{self.name}: no {key!r} after {timeout:.0f} s")
                self._changed.wait(min(left, 0.05))
            return self.matched[key]

    def tail(self) -> str:
        return "".join(list(self.output)[-30:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        return vm_rss_kb(self.pid) / 1024

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (checked, then released)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port on 127.0.0.1")


def query(port: int, name: str, rdtype: str = "A", timeout: float = 2.0) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    q.flags &= ~dns.flags.RD
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)


# -- the workload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    services: int
    namespaces: int
    seconds: int
    clients: int  # dnsperf -c
    outstanding: int  # dnsperf -q
    moderate_qps: int  # dnsperf -Q for the runs below saturation
    queries: int  # lines per query file (dnsperf loops over the file)
    repeat: int
    seed: int

    def namespace(self, i: int) -> str:
        return f"ns-{i % self.namespaces}"

    def fqdn(self, i: int) -> str:
        return f"svc-{i}.{self.namespace(i)}.svc.{ZONE}"


@dataclass
class Setup:
    """What later steps need from earlier ones."""

    cluster_ips: list[str] = field(default_factory=list)
    soa: str = ""  # the SOA kubesvc answers with, copied into unbound's zone
    files: dict[str, Path] = field(default_factory=dict)
    kubesvc_port: int = 0
    unbound_port: int = 0


def query_sets(wl: Workload) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Lines for dnsperf per set, and the share of hits in the mix.

    The mix is what a pod in namespace ns-X (resolv.conf `search ns-X.svc.cluster.local
    svc.cluster.local cluster.local`, `options ndots:5`) sends for three kinds of lookups,
    in equal numbers: `svc-N` in its own namespace (1 query, a hit), `svc-N.ns-M`
    (`svc-N.ns-M.ns-X.svc.cluster.local` NXDOMAIN, then the hit) and
    `svc-N.ns-M.svc.cluster.local` without the final dot (three search-path NXDOMAINs,
    then the hit): 3 hits and 4 NXDOMAINs per 7 queries.
    """
    rng = random.Random(wl.seed)
    n, nss = wl.services, wl.namespaces
    hits = [f"{wl.fqdn(rng.randrange(n))} A" for _ in range(wl.queries)]

    def misses(i: int, client_ns: str) -> list[str]:
        short, fqdn = f"svc-{i}.{wl.namespace(i)}", wl.fqdn(i)
        return [
            f"{short}.{client_ns}.svc.{ZONE}",
            f"{fqdn}.{client_ns}.svc.{ZONE}",
            f"{fqdn}.svc.{ZONE}",
            f"{fqdn}.{ZONE}",
        ]

    mix: list[str] = []
    while len(mix) < wl.queries:
        client = rng.randrange(nss)
        client_ns = f"ns-{client}"
        kind = rng.randrange(3)
        if kind == 0:  # same namespace, short name: the first search domain hits
            i = rng.randrange(n // nss) * nss + client
            i = i if i < n else client
            mix.append(f"{wl.fqdn(i)} A")
            continue
        i = rng.randrange(n)
        miss = misses(i, client_ns)
        names = miss[:1] if kind == 1 else miss[1:]
        mix += [f"{name} A" for name in names] + [f"{wl.fqdn(i)} A"]
    nxdomain: list[str] = []
    for _ in range(wl.queries):
        i = rng.randrange(n)
        nxdomain.append(f"{rng.choice(misses(i, f'ns-{rng.randrange(nss)}'))} A")
    hit_share = sum(1 for line in mix if line.count(".") == 4) / len(mix)
    return {"hits": hits, "mix": mix, "nxdomain": nxdomain}, {"mix": hit_share}


# -- 1. the API server and the Services -----------------------------------------------------


def session_for(data_dir: Path, url: str) -> aiohttp.ClientSession:
    ctx = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
    token = (data_dir / "pki" / "token").read_text().strip()
    return aiohttp.ClientSession(
        base_url=url,
        connector=aiohttp.TCPConnector(ssl=ctx, limit=API_CLIENTS),
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300),
    )


async def post(session: aiohttp.ClientSession, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(obj).encode()
    async with session.post(path, data=body, headers=JSON_HEADERS) as resp:
        text = await resp.read()
        if resp.status != 201:
            raise RuntimeError(f"POST {path}: HTTP {resp.status}: {text[:400]!r}")
        result: dict[str, Any] = json.loads(text)
        return result


async def create_services(data_dir: Path, url: str, wl: Workload) -> tuple[list[str], float]:
    """Namespaces ns-0.. and Services svc-N (ClusterIP, one port); returns their cluster IPs
    and the seconds the Services took."""
    ips = [""] * wl.services
    todo = iter(range(wl.services))
    step = max(1, wl.services // 10)
    done = 0
    async with session_for(data_dir, url) as session:
        for k in range(wl.namespaces):
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{k}"}}
            await post(session, "/api/v1/namespaces", ns)

        async def worker() -> None:
            nonlocal done
            for i in todo:
                port = {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
                svc = {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": f"svc-{i}"},
                    "spec": {"type": "ClusterIP", "selector": {"app": f"svc-{i}"}, "ports": [port]},
                }
                path = f"/api/v1/namespaces/{wl.namespace(i)}/services"
                ips[i] = (await post(session, path, svc))["spec"]["clusterIP"]
                done += 1
                if done % step == 0:
                    log(f"create: {done}/{wl.services} Services")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(API_CLIENTS)))
        seconds = time.perf_counter() - t0
    return ips, seconds


def start_apiserver(tmp: Path) -> tuple[Daemon, str]:
    cmd = [sys.executable, "-m", "kubesvc.cli.main", "apiserver"]
    cmd += ["--data-dir", str(tmp / "data"), "--port", "0"]
    api = Daemon("kubesvc apiserver", cmd, {"listening": LISTENING})
    api.start()
    _, m = api.wait_for("listening")
    return api, f"https://127.0.0.1:{m.group(1)}"


# -- 2. the two DNS servers -----------------------------------------------------------------


def start_kubesvc_dns(tmp: Path, cpu: int | None, wl: Workload, res: Results) -> Daemon:
    cmd = [sys.executable, "-m", "kubesvc.cli.main", "dns"]
    cmd += ["--kubeconfig", str(tmp / "data" / "kubeconfig"), "--listen", "127.0.0.1:0"]
    cmd += ["--metrics", "", "--health", "", "--ready", ""]
    server = Daemon("kubesvc dns", pinned(cpu, cmd), {"listening": DNS_LISTENING})
    server.patterns["synced"] = DNS_SYNCED
    log("starting kubesvc dns")
    server.start()
    listening, _ = server.wait_for("listening")
    synced, _ = server.wait_for("synced", timeout=300)
    rss = server.rss_mb()
    log(f"kubesvc dns: listening after {listening:.3f} s, synced after {synced:.3f} s")
    res.add(Row("kubesvc dns start: until listening", listening, None, "s"))
    label = f"start until answering for {wl.services:,} Services (kubesvc: 'caches synced')"
    res.add(Row(label, synced, None, "s"))
    res.add(Row("RSS when synced / zone loaded", rss, None, "MB", 100.0))
    return server


def kubesvc_soa(port: int) -> str:
    reply = query(port, f"{ZONE}.", "SOA")
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return f"{ZONE}. {rrset.ttl} IN SOA {rrset[0].to_text()}"
    raise RuntimeError(f"kubesvc dns gave no SOA for {ZONE}.: {reply}")


def unbound_config(tmp: Path, port: int, setup: Setup, wl: Workload, threads: int = 1) -> Path:
    lines = [
        "server:",
        "    interface: 127.0.0.1",
        f"    port: {port}",
        "    do-ip4: yes",
        "    do-ip6: no",
        "    do-udp: yes",
        "    do-tcp: yes",
        "    do-daemonize: no",
        f"    num-threads: {threads}",
        "    so-reuseport: yes",
        '    username: ""',
        '    chroot: ""',
        f'    directory: "{tmp}"',
        '    pidfile: ""',
        "    use-syslog: no",
        '    logfile: ""',
        "    verbosity: 0",
        "    access-control: 127.0.0.0/8 allow",
        '    module-config: "iterator"',
        f'    local-zone: "{ZONE}." static',
        f'    local-data: "{setup.soa}"',
    ]
    ttl = int(setup.soa.split()[1])
    for i, ip in enumerate(setup.cluster_ips):
        lines.append(f'    local-data: "{wl.fqdn(i)}. {ttl} IN A {ip}"')
    lines += ["remote-control:", "    control-enable: no", ""]
    conf = tmp / f"unbound-{threads}.conf"
    conf.write_text("\n".join(lines))
    check = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True)
    if check.returncode != 0 and shutil.which("unbound-checkconf"):
        raise RuntimeError(f"unbound-checkconf: {check.stdout}{check.stderr}".strip())
    return conf


def start_unbound(tmp: Path, cpu: int | None, setup: Setup, wl: Workload, res: Results) -> Daemon:
    port = free_port()
    conf = unbound_config(tmp, port, setup, wl)
    server = Daemon("unbound", pinned(cpu, ["unbound", "-d", "-c", str(conf)]), {})
    log(f"starting unbound on 127.0.0.1:{port}")
    server.start()
    probe = f"{wl.fqdn(wl.services - 1)}."
    deadline = time.perf_counter() + 60
    while True:
        if not server.alive():
            raise RuntimeError(f"unbound exited:\n{server.tail()}")
        try:
            reply = query(port, probe, timeout=0.05)
            if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                break
        except (OSError, dns.exception.Timeout):
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"unbound did not answer {probe} within 60 s:\n{server.tail()}")
        time.sleep(0.005)
    answering = time.perf_counter() - server.started
    setup.unbound_port = port
    rows = {r.measurement: r for r in res.rows}
    label = f"start until answering for {wl.services:,} Services (kubesvc: 'caches synced')"
    rows[label].unbound = answering
    rows["RSS when synced / zone loaded"].unbound = server.rss_mb()
    log(f"unbound answering after {answering:.3f} s")
    return server


# -- 3. the answers are the same ------------------------------------------------------------


def answer_key(reply: dns.message.Message) -> tuple[Any, ...]:
    answer = sorted(
        (rr.name.to_text().lower(), rr.ttl, rr.rdtype, rd.to_text())
        for rr in reply.answer
        for rd in rr
    )
    authority = sorted(
        (rr.name.to_text().lower(), rr.ttl, rr.rdtype, rd.to_text())
        for rr in reply.authority
        for rd in rr
    )
    return reply.rcode(), bool(reply.flags & dns.flags.AA), answer, authority


def compare_answers(setup: Setup, sets: dict[str, list[str]], res: Results) -> None:
    rng = random.Random(7)
    checked = same = 0
    first_diff = ""
    for lines in sets.values():
        for line in rng.sample(lines, min(SAMPLE_PER_SET, len(lines))):
            name, rdtype = line.split()
            a = answer_key(query(setup.kubesvc_port, name + ".", rdtype))
            b = answer_key(query(setup.unbound_port, name + ".", rdtype))
            checked += 1
            if a == b:
                same += 1
            elif not first_diff:
                first_diff = f"{name} {rdtype}: kubesvc {a} / unbound {b}"
    label = "sampled answers equal to unbound's (rcode, AA, answer, SOA)"
    res.add(Row(label, same, checked, "", float(checked), ">="))
    if first_diff:
        res.note(f"{checked - same} of {checked} sampled answers differ, e.g. {first_diff}")
    else:
        log(f"answers: {same} of {checked} sampled queries identical on both servers")


# -- 4. dnsperf -----------------------------------------------------------------------------


@dataclass
class Perf:
    qps: float = 0.0
    sent: int = 0
    completed: int = 0
    lost: int = 0
    avg_ms: float = 0.0
    max_ms: float = 0.0
    stddev_ms: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)
    server_cpu: float = 0.0  # user + system, % of one core
    server_sys_cpu: float = 0.0  # system alone
    dnsperf_cpu: float = 0.0
    other_cpu: float = 0.0  # the rest of the machine: softirq, other processes


def parse_dnsperf(out: str) -> Perf:
    def number(pattern: str) -> float:
        m = re.search(pattern, out)
        if m is None:
            raise RuntimeError(f"dnsperf output without {pattern!r}:\n{out[-2000:]}")
        return float(m.group(1))

    perf = Perf(
        qps=number(r"Queries per second:\s+([\d.]+)"),
        sent=int(number(r"Queries sent:\s+(\d+)")),
        completed=int(number(r"Queries completed:\s+(\d+)")),
        lost=int(number(r"Queries lost:\s+(\d+)")),
        avg_ms=number(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        max_ms=number(r"Average Latency \(s\):.*max ([\d.]+)\)") * 1000,
        stddev_ms=number(r"Latency StdDev \(s\):\s+([\d.]+)") * 1000,
    )
    m = re.search(r"Response codes:\s+(.*)", out)
    if m:
        perf.rcodes = {k: int(v) for k, v in re.findall(r"([A-Z]+) (\d+) \(", m.group(1))}
    return perf


def run_dnsperf(
    server: Daemon,
    port: int,
    file: Path,
    wl: Workload,
    cpu: int | None,
    qps: int | None,
    during: Callable[[], None] | None = None,
) -> Perf:
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(file)]
    cmd += ["-c", str(wl.clients), "-q", str(wl.outstanding), "-l", str(wl.seconds)]
    if qps:
        cmd += ["-Q", str(qps)]
    (user, system), own_cpu = cpu_times(server.pid), children_cpu_seconds()
    busy = machine_busy_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        pinned(cpu, cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        if during is not None:
            during()
        out, _ = proc.communicate(timeout=wl.seconds + 60)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dnsperf exited with {proc.returncode}:\n{out[-2000:]}")
    perf = parse_dnsperf(out)
    user_after, system_after = cpu_times(server.pid)
    perf.server_cpu = (user_after + system_after - user - system) / wall * 100
    perf.server_sys_cpu = (system_after - system) / wall * 100
    perf.dnsperf_cpu = (children_cpu_seconds() - own_cpu) / wall * 100
    busy = (machine_busy_seconds() - busy) / wall * 100
    perf.other_cpu = max(0.0, busy - perf.server_cpu - perf.dnsperf_cpu)
    return perf


def median_run(runs: list[Perf]) -> Perf:
    """The run with the median queries/s among the undisturbed runs (the rest of the machine
    under BUSY_LIMIT), or among all runs when every one was disturbed."""
    clean = [p for p in runs if p.other_cpu < BUSY_LIMIT] or runs
    ordered = sorted(clean, key=lambda p: p.qps)
    return ordered[(len(ordered) - 1) // 2]


def check_rcodes(name: str, server: str, kind: str, perf: Perf, res: Results) -> None:
    unexpected = {k: v for k, v in perf.rcodes.items() if k not in EXPECTED_RCODES[kind]}
    if unexpected:
        res.note(f"{name}, {server}: unexpected response codes {unexpected}")


@dataclass
class Servers:
    kubesvc: Daemon
    unbound: Daemon
    ports: dict[str, int]


def measure(
    servers: Servers,
    setup: Setup,
    wl: Workload,
    cpu: int | None,
    qps: int | None,
    res: Results,
) -> dict[str, dict[str, Perf]]:
    """dnsperf against both servers for every query set; kubesvc and unbound alternate."""
    out: dict[str, dict[str, Perf]] = {}
    for kind in QUERY_SETS:
        runs: dict[str, list[Perf]] = {"kubesvc": [], "unbound": []}
        mode = f"-Q {qps}" if qps else "saturated"
        for r in range(wl.repeat):
            for name in ("kubesvc", "unbound"):
                daemon = servers.kubesvc if name == "kubesvc" else servers.unbound
                perf = run_dnsperf(daemon, servers.ports[name], setup.files[kind], wl, cpu, qps)
                if not daemon.alive():
                    raise RuntimeError(f"{name} died during dnsperf:\n{daemon.tail()}")
                runs[name].append(perf)
                log(
                    f"dnsperf {kind} {mode} run {r + 1}/{wl.repeat} {name}: "
                    f"{perf.qps:,.0f} qps, lost {perf.lost}, avg {perf.avg_ms:.3f} ms, "
                    f"max {perf.max_ms:.3f} ms, server CPU {perf.server_cpu:.0f} %, "
                    f"dnsperf CPU {perf.dnsperf_cpu:.0f} %, rest {perf.other_cpu:.0f} %"
                )
        out[kind] = {name: median_run(v) for name, v in runs.items()}
        for name, perfs in runs.items():
            busy = [p.other_cpu for p in perfs]
            if min(busy) >= BUSY_LIMIT:
                res.note(
                    f"dnsperf {kind} {mode}, {name}: every run shared the machine with other "
                    f"work (rest of the machine {min(busy):.0f}-{max(busy):.0f} % of one core)"
                )
    return out


def saturated_rows(results: dict[str, dict[str, Perf]], wl: Workload, res: Results) -> None:
    for kind in QUERY_SETS:
        k, u = results[kind]["kubesvc"], results[kind]["unbound"]
        check_rcodes(kind, "kubesvc", kind, k, res)
        check_rcodes(kind, "unbound", kind, u, res)
        title = f"{SET_TITLES[kind]}: queries/s, -c {wl.clients} -q {wl.outstanding}"
        res.add(Row(title, k.qps, u.qps, "/s", 0.9 * u.qps, ">=", "0.9 x unbound"))
        res.add(Row("  lost queries", k.lost, u.lost, ""))
        res.add(Row("  average latency", k.avg_ms, u.avg_ms, "ms"))
        res.add(Row("  max latency", k.max_ms, u.max_ms, "ms"))
        res.add(
            Row("  server CPU, user + system (100 % = one core)", k.server_cpu, u.server_cpu, "%")
        )
        res.add(Row("    of which system (syscalls)", k.server_sys_cpu, u.server_sys_cpu, "%"))
        res.add(Row("  dnsperf CPU", k.dnsperf_cpu, u.dnsperf_cpu, "%"))
        res.add(
            Row("  rest of the machine (softirq, other processes)", k.other_cpu, u.other_cpu, "%")
        )


def moderate_rows(results: dict[str, dict[str, Perf]], wl: Workload, res: Results) -> None:
    for kind in QUERY_SETS:
        k, u = results[kind]["kubesvc"], results[kind]["unbound"]
        check_rcodes(kind, "kubesvc", kind, k, res)
        check_rcodes(kind, "unbound", kind, u, res)
        title = f"{SET_TITLES[kind]} at -Q {wl.moderate_qps}: average latency"
        res.add(Row(title, k.avg_ms, u.avg_ms, "ms", 1.0))
        res.add(Row("  lost queries", k.lost, u.lost, "", 0.0, "<="))
        res.add(Row("  max latency", k.max_ms, u.max_ms, "ms"))
        res.add(Row("  queries/s answered", k.qps, u.qps, "/s"))
        res.add(Row("  server CPU (100 % = one core)", k.server_cpu, u.server_cpu, "%"))


# -- 5. how fast changes show up ------------------------------------------------------------

PROPAGATION_RUNS = 30


def first_answer(port: int, name: str, ip: str, timeout: float = 10.0) -> float:
    """perf_counter() when `name` first answers with `ip` (a query every ~1 ms)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with contextlib.suppress(OSError, dns.exception.Timeout):
            reply = query(port, name, timeout=0.05)
            if any(rd.to_text() == ip for rr in reply.answer for rd in rr):
                return time.perf_counter()
        time.sleep(0.001)
    raise RuntimeError(f"{name} did not answer {ip} within {timeout:.0f} s")


class WatchClock:
    """When a watch on the API delivered each object name (the informer's own latency)."""

    def __init__(self, session: aiohttp.ClientSession, path: str) -> None:
        self.session, self.path = session, path
        self.seen: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.session.get(self.path) as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        url = f"{self.path}?watch=1&resourceVersion={rv}&allowWatchBookmarks=false"
        async with self.session.get(url) as resp:
            async for line in resp.content:
                if line.strip():
                    event = json.loads(line)
                    self.seen[event["object"]["metadata"]["name"]] = time.perf_counter()

    async def when(self, name: str, after: float, timeout: float = 10.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            t = self.seen.get(name)
            if t is not None and t >= after:
                return t
            await asyncio.sleep(0.001)
        raise RuntimeError(f"no watch event for {name} within {timeout:.0f} s")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def propagation(
    data_dir: Path, url: str, port: int, ns: str = "ns-0"
) -> dict[str, list[float]]:
    """Milliseconds from the API's response to the first DNS answer with the change, and
    to the watch event reaching a client, for Services created and for an EndpointSlice
    address changed."""
    out: dict[str, list[float]] = {"svc_dns": [], "svc_watch": [], "ep_dns": [], "ep_watch": []}
    async with session_for(data_dir, url) as session:
        services = WatchClock(session, f"/api/v1/namespaces/{ns}/services")
        slices = WatchClock(session, f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices")
        await services.start()
        await slices.start()
        try:
            headless = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "prop-hl"},
                "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
            }
            await post(session, f"/api/v1/namespaces/{ns}/services", headless)
            slice_path = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
            await post(session, slice_path, prop_slice("10.250.1.1"))
            await asyncio.to_thread(first_answer, port, f"prop-hl.{ns}.svc.{ZONE}.", "10.250.1.1")
            for i in range(PROPAGATION_RUNS):
                svc = {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": f"prop-{i}"},
                    "spec": {"ports": [{"port": 80}]},
                }
                created = await post(session, f"/api/v1/namespaces/{ns}/services", svc)
                acked = time.perf_counter()
                name = f"prop-{i}.{ns}.svc.{ZONE}."
                ip = created["spec"]["clusterIP"]
                answered = await asyncio.to_thread(first_answer, port, name, ip)
                watched = await services.when(f"prop-{i}", acked - 5)
                out["svc_dns"].append((answered - acked) * 1000)
                out["svc_watch"].append((watched - acked) * 1000)

                new_ip = f"10.250.2.{i + 1}"
                body = json.dumps(prop_slice(new_ip)).encode()
                headers = {**JSON_HEADERS, "Content-Type": "application/merge-patch+json"}
                async with session.patch(
                    f"{slice_path}/prop-hl-1", data=body, headers=headers
                ) as r:
                    if r.status != 200:
                        raise RuntimeError(f"PATCH slice: HTTP {r.status}: {await r.text()}")
                acked = time.perf_counter()
                hl = f"prop-hl.{ns}.svc.{ZONE}."
                answered = await asyncio.to_thread(first_answer, port, hl, new_ip)
                watched = await slices.when("prop-hl-1", acked - 5)
                out["ep_dns"].append((answered - acked) * 1000)
                out["ep_watch"].append((watched - acked) * 1000)
        finally:
            await services.stop()
            await slices.stop()
    return out


def prop_slice(ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "prop-hl-1", "labels": {"kubernetes.io/service-name": "prop-hl"}},
        "addressType": "IPv4",
        "ports": [{"port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
    }


def step_propagation(b: Bench, url: str, port: int) -> None:
    log(f"propagation: {PROPAGATION_RUNS} Services created and slice addresses changed")
    got = asyncio.run(propagation(b.tmp / "data", url, port))
    b.facts["propagation_ms"] = {k: [round(x, 2) for x in v] for k, v in got.items()}

    def q(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    for key, title in (
        ("svc", f"Service created -> its name answers, {PROPAGATION_RUNS} runs: p50"),
        ("ep", "EndpointSlice address changed -> the new address answers: p50"),
    ):
        dns_ms, watch_ms = got[f"{key}_dns"], got[f"{key}_watch"]
        b.res.add(Row(title, q(dns_ms, 0.5), None, "ms"))
        b.res.add(Row("  p99", q(dns_ms, 0.99), None, "ms"))
        label = "  reference: until a watch on the API delivered it to a client: p50"
        b.res.add(Row(label, q(watch_ms, 0.5), None, "ms"))
        b.res.add(Row("    p99", q(watch_ms, 0.99), None, "ms"))


# -- 6. more cores ---------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def step_workers(b: Bench, setup: Setup) -> None:
    """`kubesvc dns --workers 2` (SO_REUSEPORT processes) against unbound with 2 threads,
    nothing pinned: on a 2-CPU machine dnsperf shares the CPUs with the servers."""
    wl, tmp, res = b.wl, b.tmp, b.res
    cmd = [sys.executable, "-m", "kubesvc.cli.main", "dns", "--workers", "2"]
    cmd += ["--kubeconfig", str(tmp / "data" / "kubeconfig"), "--listen", "127.0.0.1:0"]
    cmd += ["--metrics", "", "--health", "", "--ready", ""]
    kubesvc = Daemon("kubesvc dns --workers 2", cmd, {"listening": DNS_LISTENING})
    b.daemons.append(kubesvc)
    log("more cores: kubesvc dns --workers 2 and unbound num-threads 2, nothing pinned")
    kubesvc.start()
    kubesvc.wait_for("listening")
    deadline = time.perf_counter() + 300
    while sum("caches synced" in line for line in kubesvc.output) < 2:
        if not kubesvc.alive() or time.perf_counter() > deadline:
            raise RuntimeError(f"kubesvc dns --workers 2 did not sync:\n{kubesvc.tail()}")
        time.sleep(0.05)
    port = int(kubesvc.matched["listening"][1].group(1))
    uport = free_port()
    conf = unbound_config(tmp, uport, setup, wl, threads=2)
    unbound = Daemon("unbound (2 threads)", ["unbound", "-d", "-c", str(conf)], {})
    b.daemons.append(unbound)
    unbound.start()
    probe = f"{wl.fqdn(wl.services - 1)}."
    deadline = time.perf_counter() + 60
    while True:
        with contextlib.suppress(OSError, dns.exception.Timeout):
            if query(uport, probe, timeout=0.05).answer:
                break
        if not unbound.alive() or time.perf_counter() > deadline:
            raise RuntimeError(f"unbound (2 threads) did not answer:\n{unbound.tail()}")
        time.sleep(0.005)
    k = run_dnsperf(kubesvc, port, setup.files["hits"], wl, None, None)
    u = run_dnsperf(unbound, uport, setup.files["hits"], wl, None, None)
    check_rcodes("hits", "kubesvc --workers 2", "hits", k, res)
    title = f"{SET_TITLES['hits']}, 2 processes / 2 threads, nothing pinned: queries/s"
    res.add(Row(title, k.qps, u.qps, "/s"))
    res.add(Row("  lost queries", k.lost, u.lost, ""))
    res.add(Row("  average latency", k.avg_ms, u.avg_ms, "ms"))
    rss = sum(vm_rss_kb(pid) for pid in [kubesvc.pid, *children_of(kubesvc.pid)]) / 1024
    res.add(Row("  RSS of all the server's processes", rss, unbound.rss_mb(), "MB"))
    for daemon in (unbound, kubesvc):
        daemon.stop()
        b.daemons.remove(daemon)


# -- 7. where kubesvc's time goes -----------------------------------------------------------

# (part, test on the sampled stack's frames, leaf first); the first match wins
PROFILE_PARTS: tuple[tuple[str, Callable[[list[str]], bool]], ...] = (
    ("sendmmsg: the replies' send syscall (kernel UDP + loopback)", lambda f: "sendmmsg" in f[0]),
    ("recvmmsg: the queries' receive syscall", lambda f: "recvmmsg" in f[0]),
    (
        "answers.py: AnswerTable.answer (question walk, lookup, reply bytes)",
        lambda f: any("AnswerTable." in x for x in f),
    ),
    (
        "udp.py: BatchUdp._batch around it (slots, copies, ctypes calls)",
        lambda f: any("_batch" in x for x in f),
    ),
    ("event loop (uvloop/libuv: epoll) and the rest", lambda f: True),
)


def summarize_profile(raw: str) -> dict[str, float]:
    """Share of the samples per part, from py-spy's `--format raw` (collapsed stacks)."""
    counts = dict.fromkeys((name for name, _ in PROFILE_PARTS), 0)
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")[::-1]
        total += int(n)
        for name, test in PROFILE_PARTS:
            if test(frames):
                counts[name] += int(n)
                break
    return {name: 100 * c / total for name, c in counts.items()} if total else {}


def step_profile(b: Bench, server: Daemon, port: int, file: Path, cpu: int | None) -> None:
    """One more saturated run of the mix against kubesvc under `py-spy record --native`;
    the run's numbers are not used (sampling pauses the process)."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        log("py-spy not on PATH: no profile of kubesvc dns (pip install py-spy)")
        return
    out = b.tmp / "profile.txt"
    seconds = max(2, b.wl.seconds - 2)
    cmd = [py_spy, "record", "-p", str(server.pid), "-d", str(seconds), "-r", "200"]
    cmd += ["--native", "-f", "raw", "-o", str(out)]
    result: list[subprocess.CompletedProcess[str]] = []

    def record() -> None:
        time.sleep(1)  # past dnsperf's start-up
        result.append(subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60))

    log(f"profile: py-spy record --native on kubesvc dns for {seconds} s of a saturated mix run")
    run_dnsperf(server, port, file, b.wl, cpu, None, during=record)
    if not result or result[0].returncode != 0 or not out.exists():
        detail = result[0].stderr.strip()[-400:] if result else "did not run"
        log(f"profile: py-spy failed: {detail}")
        return
    b.profile = summarize_profile(out.read_text())
    for name, share in b.profile.items():
        log(f"profile: {share:5.1f} % {name}")


def render_profile(profile: dict[str, float]) -> str:
    header = ["where kubesvc dns spends its CPU, saturated mix (py-spy --native)", "samples"]
    body = [[name, f"{share:.1f} %"] for name, share in profile.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(2)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(r) for r in body])


# -- orchestration --------------------------------------------------------------------------


def import_rss_mb() -> float | None:
    cmd = [sys.executable, "-c", IMPORT_PROBE]
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return int(proc.stdout.split()[-1]) / 1024


def background_load(seconds: float = 2.0) -> float:
    """CPU used by the whole machine over `seconds` while this benchmark waits, in % of one
    core (the idle servers and the API server included)."""
    busy, t0 = machine_busy_seconds(), time.perf_counter()
    time.sleep(seconds)
    return (machine_busy_seconds() - busy) / (time.perf_counter() - t0) * 100


def pick_cpus(res: Results) -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return cpus[0], cpus[1]
    res.note(f"only CPU {cpus} available: servers and dnsperf share it (no pinning)")
    return None, None


@dataclass
class Bench:
    wl: Workload
    tmp: Path
    res: Results = field(default_factory=Results)
    profile_run: bool = True
    daemons: list[Daemon] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, float] = field(default_factory=dict)
    api_url: str = ""

    def cleanup(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()


def run(b: Bench) -> None:
    wl, res, tmp, setup = b.wl, b.res, b.tmp, Setup()
    server_cpu, client_cpu = pick_cpus(res)
    b.facts["cpus"] = {"servers": server_cpu, "dnsperf": client_cpu}
    sets, shares = query_sets(wl)
    for kind, lines in sets.items():
        setup.files[kind] = tmp / f"queries-{kind}.txt"
        setup.files[kind].write_text("\n".join(lines) + "\n")
    b.facts["mix_hit_share"] = round(shares["mix"], 4)
    log(f"query files: {wl.queries:,} lines each; mix is {shares['mix']:.1%} hits")

    log("starting the API server")
    api, url = start_apiserver(tmp)
    b.api_url = url
    b.daemons.append(api)
    ips, seconds = asyncio.run(create_services(tmp / "data", url, wl))
    setup.cluster_ips = ips
    b.facts["create_seconds"] = round(seconds, 3)
    log(f"created {wl.services:,} Services in {seconds:.1f} s")

    kubesvc = start_kubesvc_dns(tmp, server_cpu, wl, res)
    b.daemons.append(kubesvc)
    setup.kubesvc_port = int(kubesvc.matched["listening"][1].group(1))
    setup.soa = kubesvc_soa(setup.kubesvc_port)
    unbound = start_unbound(tmp, server_cpu, setup, wl, res)
    b.daemons.append(unbound)
    label = "  reference: a python process that has only imported kubesvc.dns.server"
    res.add(Row(label, import_rss_mb(), None, "MB"))

    compare_answers(setup, sets, res)
    background = background_load()
    b.facts["background_cpu"] = round(background, 1)
    if background > BUSY_LIMIT:
        log(
            f"the machine is busy with other work ({background:.0f} % of one core while both "
            "servers are idle): disturbed dnsperf runs are left out where possible"
        )
    servers = Servers(
        kubesvc, unbound, {"kubesvc": setup.kubesvc_port, "unbound": setup.unbound_port}
    )
    saturated = measure(servers, setup, wl, client_cpu, None, res)
    moderate = measure(servers, setup, wl, client_cpu, wl.moderate_qps, res)
    saturated_rows(saturated, wl, res)
    moderate_rows(moderate, wl, res)
    res.add(Row("RSS after the dnsperf runs", kubesvc.rss_mb(), unbound.rss_mb(), "MB", 100.0))
    if b.profile_run:
        step_profile(b, kubesvc, setup.kubesvc_port, setup.files["mix"], client_cpu)
    step_propagation(b, b.api_url, setup.kubesvc_port)
    if len(os.sched_getaffinity(0)) >= 2:
        for daemon in (unbound, kubesvc):
            daemon.stop()
            b.daemons.remove(daemon)
        step_workers(b, setup)
    b.facts["runs"] = {
        "saturated": {k: {n: asdict(p) for n, p in v.items()} for k, v in saturated.items()},
        "moderate": {k: {n: asdict(p) for n, p in v.items()} for k, v in moderate.items()},
    }


def report(b: Bench, started: str, json_path: str | None) -> None:
    info = dns_machine_info()
    wl = b.wl
    print(
        f"kubesvc dns benchmark, {started}, {info['cpus']} CPUs ({info['cpu_model']}), "
        f"Linux {info['kernel']}, Python {info['python']}, dnsperf {info['dnsperf']}, "
        f"unbound {info['unbound']}; {wl.services:,} Services in {wl.namespaces} namespaces, "
        f"{wl.seconds} s per dnsperf run, median of {wl.repeat} (undisturbed runs)\n"
    )
    print(render_results(b.res), flush=True)
    if b.profile:
        print("\n" + render_profile(b.profile), flush=True)
    if json_path:
        doc = {
            "date": started,
            "machine": info,
            "workload": asdict(wl),
            "rows": row_dicts(b.res.rows),
            "notes": b.res.notes,
            "facts": b.facts,
            "profile": b.profile,
        }
        write_json(json_path, doc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--services", type=int, default=10_000, help="Services to create (10000)")
    p.add_argument("--namespaces", type=int, default=10, help="namespaces to spread over (10)")
    p.add_argument("--seconds", type=int, default=10, help="length of each dnsperf run (10)")
    p.add_argument("--clients", type=int, default=10, help="dnsperf -c (10)")
    p.add_argument("--outstanding", type=int, default=100, help="dnsperf -q (100)")
    p.add_argument("--moderate-qps", type=int, default=20_000, help="dnsperf -Q (20000)")
    p.add_argument("--queries", type=int, default=100_000, help="lines per query file (100000)")
    p.add_argument("--repeat", type=int, default=1, help="runs per server and set; median (1)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the query files (1)")
    p.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy run of kubesvc dns at the end"
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [t for t in ("dnsperf", "unbound", "taskset") if not shutil.which(t)]
    if missing:
        print(f"dns_bench.py needs {', '.join(missing)} on PATH; install with:", file=sys.stderr)
        print(f"    {INSTALL}", file=sys.stderr)
        return 2
    if args.services < args.namespaces or args.namespaces < 1:
        print("--services must be at least --namespaces, which must be >= 1", file=sys.stderr)
        return 2
    wl = Workload(
        services=args.services,
        namespaces=args.namespaces,
        seconds=args.seconds,
        clients=args.clients,
        outstanding=args.outstanding,
        moderate_qps=args.moderate_qps,
        queries=args.queries,
        repeat=max(1, args.repeat),
        seed=args.seed,
    )
    catch_signals()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-dns-bench-"))
    b = Bench(wl, tmp, profile_run=not args.no_profile)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    interrupted = run_then_clean_up(lambda: run(b), b.cleanup, tmp, b.res, note_failure=True)
    report(b, started, args.json)
    return exit_status(interrupted, b.res)


if __name__ == "__main__":
    sys.exit(main())
