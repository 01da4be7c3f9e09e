"""Benchmark of kubesvc's ingress controller against HAProxy and nginx with static configs.

    python bench/ingress_bench.py [--quick] [--seconds 10] [--rounds 5] [--ingresses 30]
                                  [--churn 60] [--rate 300] [--json FILE]

Runs as root. Needs `wrk` and `nginx` (HAProxy is the controller's own, Debian's package):

    apt-get install -y wrk nginx

Starts a 2-node cluster with `kubesvc up` under a unique name (`ibn<hex>`, KUBESVC_HOME,
KUBECONFIG and KUBECACHEDIR in a temporary directory), with its ingress controller, a
Deployment of 3 nginx pods (Debian's nginx binary answering `200 ok` from memory, a
`preStop` sleep and a readiness probe, as a Deployment meant for zero-downtime rollouts
has) behind a Service, and an Ingress of a few hosts and paths to it. Then measures:

1. **Throughput**: wrk (1 thread, --connections, alone on CPU 0) on the controller's node,
   keep-alive and `Connection: close`, to the controller pod's IP (its HAProxy), and to
   HAProxy and nginx with hand-written static configs for the same routes, the same
   headers and the same endpoints, started in the controller pod's network namespace; and
   to one backend pod directly, the ceiling. The proxies, the rest of the controller pod
   and the backend pods are pinned to CPU 1. Runs are interleaved over --rounds; medians
   of requests/s, latency and the proxy's CPU time per request are shown. kubesvc and the
   static HAProxy run back to back in each round, taking turns to go first; their ratio
   is the median of the rounds' ratios, so the machine's drift between rounds cancels.
2. **Ingress created -> first 200** (--ingresses times each): an Ingress for a new host to
   the existing Service, and an Ingress to a Service created just before it (timed from the
   Service's POST); both POSTed through one `kubectl proxy`, then polled through the
   controller with a new connection every 2 ms until one is served with 200.
3. **Rolling update** (`kubectl rollout restart`) of the 3 backend pods under a constant load
   of --rate requests/s (keep-alive connections and new connections): failed requests.
4. **Endpoint churn**: the backend scaled 3 -> 4 -> 3 ..., one change a second for --churn
   seconds under the same load: failed requests and reloads.
Reloads are `kubesvc_ingress_reloads_total` from the controller's metrics (port 10255, read
through the API server's pod proxy). `--quick` shortens every step for a smoke run.

Progress goes to stderr and one Markdown table to stdout; `--json FILE` writes the same
results. The static proxies, wrk and `kubectl proxy` are killed and `kubesvc down` runs on
exit, including on errors, Ctrl-C and SIGTERM. Traffic stays inside the cluster's network
namespaces (wrk and the load run in the controller's node namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import common

from kubesvc import netns
from kubesvc.ingress.haproxy import ACCESS_LOG
from kubesvc.node.netplan import ClusterNet

INSTALL = "apt-get install -y wrk nginx"
NS = "ingress-kubesvc"
CONTROLLER_PODS = "app.kubernetes.io/name=ingress-kubesvc"
BACKEND = "bench-web"
BACKEND_PORT = 8080
STATIC_HAPROXY_PORT = 8081  # in the controller pod's network namespace
STATIC_NGINX_PORT = 8082
LOADGEN_CPU, PROXY_CPU = 0, 1
HOST, PATH = "b.bench.test", "/api/items"  # a Prefix route, found after an exact-map miss
PRE_STOP_SLEEP = 2
TARGET_RATIO = 0.95
TARGET_FIRST_P99 = 0.100

INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "bench"},
    "spec": {
        "rules": [
            {"host": "a.bench.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {
                    "name": BACKEND, "port": {"number": 80}}}},
            ]}},
            {"host": "b.bench.test", "http": {"paths": [
                {"path": "/api", "pathType": "Prefix", "backend": {"service": {
                    "name": BACKEND, "port": {"name": "http"}}}},
                {"path": "/api/health", "pathType": "Exact", "backend": {"service": {
                    "name": BACKEND, "port": {"number": 80}}}},
            ]}},
            {"host": "*.wild.bench.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {
                    "name": BACKEND, "port": {"number": 80}}}},
            ]}},
            {"http": {"paths": [
                {"path": "/static", "pathType": "Prefix", "backend": {"service": {
                    "name": BACKEND, "port": {"number": 80}}}},
            ]}},
        ]
    },
}  # fmt: skip

# wrk prints one JSON line when it is done (its Lua `done` hook)
WRK_SCRIPT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %.0f, "duration_us": %.0f, "connect": %.0f, ' ..
    '"read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f, "p50_us": %.0f, ' ..
    '"p99_us": %.0f}\\n', summary.requests, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""

BACKEND_CONF = """\
# one backend pod: nginx answering from memory, so the proxies in front are what is measured
worker_processes 1;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    server {{
        listen {port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


@dataclass
class Workload:
    quick: bool
    seconds: int
    rounds: int
    connections: int
    ingresses: int
    churn: int
    rate: int


@dataclass
class WrkRun:
    rps: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    proxy_cpu: float  # % of one core, the proxy's processes during the run
    other_cpu: float  # % of one core, the rest of the controller pod (kubesvc only)

    @property
    def cpu_us(self) -> float:
        """The proxy's CPU time per request, in microseconds: unlike requests/s, hardly
        moved by other work on the machine."""
        return 1e4 * self.proxy_cpu / self.rps if self.rps else 0.0


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
CLOSED_IDLE = "connection closed before a response"


@dataclass
class LoadStats:
    """What the constant load saw: requests, 200s, failures by kind, and the requests
    resent once because the server had closed an idle keep-alive connection before it
    (as HTTP clients do for an idempotent request, RFC 9112 9.3.1)."""

    requests: int = 0
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    resent: int = 0
    first_failures: list[str] = field(default_factory=list)

    def fail(self, kind: str, at: float) -> None:
        self.failed[kind] += 1
        if len(self.first_failures) < 10:
            self.first_failures.append(f"{at:.2f} s: {kind}")


class Load:
    """A constant load in a thread that has joined a network namespace: `keepalive`
    connections sending requests one after another, and `fresh` streams opening a new
    connection (`Connection: close`) per request, `rate` requests/s in all."""

    def __init__(
        self, ns: str, ip: str, port: int, rate: int, keepalive: int = 4, fresh: int = 2
    ) -> None:
        self.ns, self.ip, self.port = ns, ip, port
        self.interval = (keepalive + fresh) / rate  # seconds between requests of one worker
        self.keepalive, self.fresh = keepalive, fresh
        self.stats = LoadStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def start(self) -> None:
        def run() -> None:
            netns.call_in_netns(self.ns, lambda: asyncio.run(self._main()))

        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> LoadStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.stats

    async def _main(self) -> None:
        workers = [self._worker(True) for _ in range(self.keepalive)]
        workers += [self._worker(False) for _ in range(self.fresh)]
        await asyncio.gather(*workers)

    async def _worker(self, keepalive: bool) -> None:
        conn: Conn | None = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            reused = conn is not None
            outcome, conn = await self._exchange(conn, keepalive)
            if outcome == CLOSED_IDLE and reused:  # closed while idle: resent once
                self.stats.resent += 1
                outcome, conn = await self._exchange(None, keepalive)
            self._count(outcome)
            next_at = max(next_at + self.interval, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())
        if conn is not None:
            conn[1].close()

    def _count(self, outcome: str) -> None:
        self.stats.requests += 1
        if outcome == "HTTP 200":
            self.stats.ok += 1
        else:
            self.stats.fail(outcome, time.monotonic() - self._t0)

    async def _exchange(self, conn: Conn | None, keepalive: bool) -> tuple[str, Conn | None]:
        """One request, on `conn` or a new connection: ("HTTP <status>" or what went wrong,
        the connection if it can carry the next request)."""
        if conn is None:
            try:
                conn = await asyncio.wait_for(asyncio.open_connection(self.ip, self.port), 5)
            except TimeoutError:
                return "connect timeout (5 s)", None
            except OSError as e:
                return f"connect: {e.strerror or e}", None
        reader, writer = conn
        close = "" if keepalive else "Connection: close\r\n"
        try:
            writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n{close}\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            status, length, closing = parse_head(head)
            await asyncio.wait_for(reader.readexactly(length), 5)
        except asyncio.IncompleteReadError as e:
            writer.close()
            return (CLOSED_IDLE if not e.partial else "connection cut in a response"), None
        except TimeoutError:
            writer.close()
            return "timeout (5 s)", None
        except (OSError, asyncio.LimitOverrunError, ValueError) as e:
            writer.close()
            return f"{type(e).__name__}: {e}"[:80], None
        if closing or not keepalive:
            writer.close()
            return f"HTTP {status}", None
        return f"HTTP {status}", conn


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, whether the server closes) of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1 response: {lines[0][:80]!r}")
    length, closing = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.lower() == "close":
            closing = True
        elif name == "transfer-encoding":
            raise ValueError("chunked responses are not expected here")
    return int(parts[1]), length, closing


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Bench:
    def __init__(self, tmp: Path, wl: Workload) -> None:
        self.tmp = tmp
        self.wl = wl
        self.name = "ibn" + secrets.token_hex(3)
        self.env = common.cluster_env(tmp)
        self.plan: ClusterNet | None = None
        self.children: list[subprocess.Popen[str]] = []
        self._proxy: subprocess.Popen[str] | None = None
        self._proxy_url = ""
        self.controller = ""  # the controller pod's name
        self.controller_ip = ""
        self.pod_ns = ""  # the controller pod's network namespace
        self.node_ns = ""  # its node's, where wrk and the load run
        self.endpoints: list[str] = []  # the backend pods' IPs
        self.threads = 0  # the controller HAProxy worker's threads

    # -- plumbing --------------------------------------------------------------------------
    def kubesvc(self, *args: str, check: bool = True) -> None:
        res = subprocess.run(
            [sys.executable, "-m", "kubesvc.cli.main", *args],
            env=common.child_env(base=self.env),
            capture_output=True,
            text=True,
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"kubesvc {' '.join(args)}: {res.stdout}{res.stderr}".strip())

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return common.kubectl(self.env, *args, input=input)

    def up(self) -> None:
        common.log(f"kubesvc up --name {self.name} --nodes 2")
        self.kubesvc("up", "--name", self.name, "--nodes", "2")
        state = json.loads((self.tmp / "home" / self.name / "cluster.json").read_text())
        self.plan = ClusterNet(self.name, state["node_cidr"])

    def down(self) -> None:
        for proc in [*self.children, self._proxy]:
            common.terminate(proc)
        common.log(f"kubesvc down --name {self.name}")
        self.kubesvc("down", "--name", self.name, check=False)

    def api(self, method: str, path: str, body: Any = None, patch: bool = False) -> Any:
        """One request to the API through `kubectl proxy` (started once): plain HTTP on
        loopback, so a create costs one local request, not a kubectl process."""
        if self._proxy is None:
            self._proxy = subprocess.Popen(
                ["kubectl", "proxy", "--port=0", "--address=127.0.0.1"],
                env=self.env,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
                preexec_fn=common.die_with_parent,
            )
            assert self._proxy.stdout is not None
            line = self._proxy.stdout.readline()
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            if not m:
                raise RuntimeError(f"kubectl proxy: {line!r}")
            self._proxy_url = f"http://127.0.0.1:{m.group(1)}"
        ctype = "application/merge-patch+json" if patch else "application/json"
        req = urllib.request.Request(
            self._proxy_url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": ctype},
            method=method,
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text.startswith(b"{") else text.decode()

    def reloads(self) -> int:
        text = self.api(
            "GET", f"/api/v1/namespaces/{NS}/pods/{self.controller}:10255/proxy/metrics"
        )
        m = re.search(r"^kubesvc_ingress_reloads_total (\d+)$", str(text), re.M)
        if not m:
            raise RuntimeError(f"no reload count in the controller's metrics: {text!r:.200}")
        return int(m.group(1))

    def spawn(self, cmd: list[str], log_name: str) -> subprocess.Popen[str]:
        out = open(self.tmp / log_name, "w")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            preexec_fn=common.die_with_parent,
        )
        out.close()
        self.children.append(proc)
        return proc

    def get(self, ip: str, port: int, host: str = HOST, path: str = PATH) -> tuple[int, bytes]:
        """(status, body) of one request on a new connection from the controller's node;
        (0, b"") when it fails."""
        sock = netns.socket_in_netns(self.node_ns)
        try:
            sock.settimeout(0.5)
            sock.connect((ip, port))
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        except OSError:
            return 0, b""
        finally:
            sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        try:
            status = parse_head(head + b"\r\n\r\n")[0]
        except ValueError:
            return 0, b""
        return status, body

    def wait_served(self, ip: str, port: int, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.get(ip, port) != (200, b"ok\n"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} ({ip}:{port}) does not answer 200 ok")
            time.sleep(0.1)

    # -- set-up ----------------------------------------------------------------------------
    def deploy_backend(self) -> None:
        conf = self.tmp / "backend.conf"
        conf.write_text(BACKEND_CONF.format(port=BACKEND_PORT))
        (self.tmp / "run").mkdir()
        # the pods share the host's filesystem: each nginx gets its own pid file
        start = (
            f'exec /usr/sbin/nginx -c {conf} -e stderr -g "daemon off; '
            f'pid {self.tmp}/run/$HOSTNAME.pid;"'
        )
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": BACKEND},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": BACKEND}},
                "template": {
                    "metadata": {"labels": {"app": BACKEND}},
                    "spec": {
                        "containers": [
                            {
                                "name": "nginx",
                                "image": "nginx:1.22",
                                "command": ["sh", "-c", start],
                                "ports": [{"containerPort": BACKEND_PORT, "name": "http"}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/", "port": BACKEND_PORT},
                                    "periodSeconds": 1,
                                },
                                # what keeps a Deployment's rollout free of errors upstream
                                "lifecycle": {
                                    "preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SLEEP)]}}
                                },
                            }
                        ]
                    },
                },
            },
        }
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": BACKEND},
            "spec": {
                "selector": {"app": BACKEND},
                "ports": [{"name": "http", "port": 80, "targetPort": BACKEND_PORT}],
            },
        }
        doc = {"apiVersion": "v1", "kind": "List", "items": [deployment, service, INGRESS]}
        common.log(f"deploying {BACKEND} (3 nginx pods) and the Ingress")
        self.kubectl("apply", "-f", "-", input=json.dumps(doc))
        self.kubectl("rollout", "status", f"deployment/{BACKEND}", "--timeout=120s")

    def find_controller(self) -> None:
        assert self.plan is not None
        deadline = time.monotonic() + 120
        while True:
            pods = json.loads(
                self.kubectl("get", "pods", "-n", NS, "-l", CONTROLLER_PODS, "-o", "json")
            )["items"]
            ready = [p for p in pods if pod_ready(p)]
            if ready:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the ingress controller pod is not Ready")
            time.sleep(0.5)
        pod = ready[0]
        self.controller = pod["metadata"]["name"]
        self.controller_ip = pod["status"]["podIP"]
        self.pod_ns = self.plan.pod_netns(pod["metadata"]["uid"])
        self.node_ns = self.plan.node_netns(pod["spec"]["nodeName"])
        pods = json.loads(self.kubectl("get", "pods", "-l", f"app={BACKEND}", "-o", "json"))
        self.endpoints = sorted(p["status"]["podIP"] for p in pods["items"] if pod_ready(p))
        self.wait_served(self.controller_ip, 80, "the controller")
        workers = haproxy_workers(self.pod_ns)
        if len(workers) != 1:
            raise RuntimeError(f"expected one HAProxy worker in {self.pod_ns}, found {workers}")
        self.threads = len(os.listdir(f"/proc/{workers[0]}/task"))
        common.log(
            f"controller {self.controller} at {self.controller_ip} ({self.threads} HAProxy "
            f"threads), backends {', '.join(self.endpoints)}"
        )

    def pin(self) -> None:
        """The controller pod (HAProxy, the controller, the container shim that carries
        their logs) and the backend pods on PROXY_CPU, wrk alone on LOADGEN_CPU: the load
        generator is never what limits a run."""
        pod_pids = pids_in_netns(self.pod_ns)
        for pid in [*pod_pids, *shims_of(pod_pids)]:
            set_cpu(pid, PROXY_CPU)
        assert self.plan is not None
        for ns in backend_namespaces(self.plan, self.endpoints):
            for pid in pids_in_netns(ns):
                set_cpu(pid, PROXY_CPU)

    def start_static(self) -> None:
        haproxy_cfg = self.tmp / "haproxy-static.cfg"
        haproxy_cfg.write_text(static_haproxy(self.endpoints, self.threads, self.tmp))
        nginx_conf = self.tmp / "nginx-static.conf"
        nginx_conf.write_text(static_nginx(self.endpoints, self.threads, self.tmp))
        enter = ["nsenter", f"--net=/run/netns/{self.pod_ns}", "taskset", "-c", str(PROXY_CPU)]
        check = subprocess.run(
            ["haproxy", "-c", "-q", "-f", str(haproxy_cfg)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c: {check.stdout}{check.stderr}")
        check = subprocess.run(
            ["nginx", "-t", "-q", "-c", str(nginx_conf), "-e", "stderr"],
            capture_output=True,
            text=True,
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t: {check.stdout}{check.stderr}")
        self.spawn([*enter, "haproxy", "-f", str(haproxy_cfg)], "haproxy-static.out")
        self.spawn(
            [*enter, "nginx", "-c", str(nginx_conf), "-e", "stderr", "-g", "daemon off;"],
            "nginx-static.out",
        )
        self.wait_served(self.controller_ip, STATIC_HAPROXY_PORT, "the static HAProxy", 10)
        self.wait_served(self.controller_ip, STATIC_NGINX_PORT, "the static nginx", 10)

    # -- 1. throughput ---------------------------------------------------------------------
    def wrk(self, target: str, url: str, close: bool, seconds: int) -> WrkRun:
        script = self.tmp / "report.lua"
        script.write_text(WRK_SCRIPT)
        cmd = ["nsenter", f"--net=/run/netns/{self.node_ns}", "taskset", "-c", str(LOADGEN_CPU)]
        cmd += ["wrk", "-t1", f"-c{self.wl.connections}", f"-d{seconds}s", "--timeout", "5s"]
        cmd += ["-s", str(script), "-H", f"Host: {HOST}"]
        cmd += ["-H", "Connection: close"] if close else []
        proxy, other = self.proxy_pids(target)
        before = cpu_of(proxy), cpu_of(other)
        t0 = time.monotonic()
        res = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60)
        wall = time.monotonic() - t0
        after = cpu_of(proxy), cpu_of(other)
        line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        if res.returncode != 0 or not line.startswith("{"):
            raise RuntimeError(f"wrk {url}: {res.stdout}{res.stderr}".strip())
        r = json.loads(line)
        errors = sum(int(r[k]) for k in ("connect", "read", "write", "status", "timeout"))
        run = WrkRun(
            rps=r["requests"] / (r["duration_us"] / 1e6),
            requests=int(r["requests"]),
            errors=errors,
            p50_ms=r["p50_us"] / 1000,
            p99_ms=r["p99_us"] / 1000,
            proxy_cpu=100 * (after[0] - before[0]) / wall,
            other_cpu=100 * (after[1] - before[1]) / wall,
        )
        common.log(
            f"{target:8} {'close' if close else 'keep-alive':10} {run.rps:9,.0f} req/s, "
            f"p99 {run.p99_ms:.1f} ms, {errors} errors, proxy CPU {run.proxy_cpu:.0f} %"
        )
        return run

    def proxy_pids(self, target: str) -> tuple[list[int], list[int]]:
        """(the proxy's processes, the rest of the controller pod for kubesvc)."""
        if target == "kubesvc":
            proxy = haproxy_workers(self.pod_ns)
            pod = pids_in_netns(self.pod_ns)
            own = {c.pid for c in self.children}
            other = [p for p in pod if p not in proxy and not descends_from(p, own)]
            other += shims_of(other)
            return proxy, other
        if target == "backend":
            assert self.plan is not None
            return pids_in_netns(backend_namespaces(self.plan, self.endpoints[:1])[0]), []
        index = 0 if target == "haproxy" else 1
        return descendants(self.children[index].pid), []

    def throughput(self) -> dict[str, dict[str, list[WrkRun]]]:
        targets = {
            "kubesvc": f"http://{self.controller_ip}{PATH}",
            "haproxy": f"http://{self.controller_ip}:{STATIC_HAPROXY_PORT}{PATH}",
            "nginx": f"http://{self.controller_ip}:{STATIC_NGINX_PORT}{PATH}",
            "backend": f"http://{self.endpoints[0]}:{BACKEND_PORT}{PATH}",
        }
        out: dict[str, dict[str, list[WrkRun]]] = {
            mode: {t: [] for t in targets} for mode in ("keep-alive", "close")
        }
        for r in range(self.wl.rounds):
            common.log(f"throughput, round {r + 1} of {self.wl.rounds}")
            # kubesvc and the static HAProxy back to back, taking turns to go first, so
            # their ratio in a round is not the machine's drift between rounds
            pair = ["kubesvc", "haproxy"] if r % 2 == 0 else ["haproxy", "kubesvc"]
            rest = ["nginx", "backend"] if r % 2 == 0 else ["backend", "nginx"]
            order = pair + rest if r % 4 < 2 else rest + pair
            for mode in out:
                for target in order:
                    run = self.wrk(target, targets[target], mode == "close", self.wl.seconds)
                    out[mode][target].append(run)
        return out

    # -- 2. Ingress created -> first 200 ---------------------------------------------------
    def first_200(self, new_service: bool) -> tuple[list[float], int, int]:
        """Seconds from the first POST until a request through the controller got 200, for
        wl.ingresses Ingresses; the reloads counted meanwhile, and when they were deleted."""
        kind = "svc" if new_service else "ing"
        before, times = self.reloads(), []
        for i in range(self.wl.ingresses):
            name, host = f"first-{kind}-{i}", f"{kind}{i}.first.bench.test"
            service = name if new_service else BACKEND
            t0 = time.monotonic()
            if new_service:
                self.api("POST", "/api/v1/namespaces/default/services", {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": service, "labels": {"bench": "first"}},
                    "spec": {"selector": {"app": BACKEND},
                             "ports": [{"port": 80, "targetPort": BACKEND_PORT}]},
                })  # fmt: skip
            self.api("POST", "/apis/networking.k8s.io/v1/namespaces/default/ingresses", {
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": name, "labels": {"bench": "first"}},
                "spec": {"rules": [{"host": host, "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {
                        "name": service, "port": {"number": 80}}}}]}}]},
            })  # fmt: skip
            while self.get(self.controller_ip, 80, host=host)[0] != 200:
                if time.monotonic() - t0 > 30:
                    raise RuntimeError(f"{host} was not served 30 s after its Ingress")
                time.sleep(0.002)
            times.append(time.monotonic() - t0)
            common.log(f"{name}: first 200 {1000 * times[-1]:.0f} ms after the create")
            time.sleep(0.2)  # let the controller settle (status write) before the next one
        reloads = self.reloads() - before
        self.kubectl("delete", "ingress,service", "-l", "bench=first", "--wait=true")
        removed = self.settle() - before - reloads
        common.log(f"{reloads} reloads for the creates, {removed} for the deletes")
        return times, reloads, removed

    def settle(self) -> int:
        """The reload count, once the controller has stopped reloading (2 s unchanged), so
        what came before is not counted in the next step."""
        count, since = self.reloads(), time.monotonic()
        while time.monotonic() - since < 2:
            time.sleep(0.25)
            if (now := self.reloads()) != count:
                count, since = now, time.monotonic()
        return count

    # -- 3. and 4. under load --------------------------------------------------------------
    def under_load(self, change: str) -> tuple[LoadStats, int, float]:
        """(what the load saw, reloads counted, seconds of changes) for a rolling update
        ("rollout") or endpoint churn ("churn")."""
        self.wait_served(self.controller_ip, 80, "the controller")
        before = self.settle()
        load = Load(self.node_ns, self.controller_ip, 80, self.wl.rate)
        load.start()
        try:
            time.sleep(2)
            t0 = time.monotonic()
            if change == "rollout":
                self.kubectl("rollout", "restart", f"deployment/{BACKEND}")
                self.kubectl("rollout", "status", f"deployment/{BACKEND}", "--timeout=180s")
            else:
                self.churn()
            took = time.monotonic() - t0
            time.sleep(PRE_STOP_SLEEP + 3)  # the last pods finish terminating under load
        finally:
            stats = load.stop()
        reloads = self.reloads() - before
        sizes = Counter(n for n in self.slots().values() if n)
        common.log(
            "the controller's HAProxy backends: "
            + ", ".join(f"{k} with {n} server slots" for n, k in sorted(sizes.items()))
        )
        common.log(
            f"{change}: {took:.1f} s, {stats.requests} requests, {sum(stats.failed.values())} "
            f"failed {dict(stats.failed)}, {stats.resent} resent, {reloads} reloads"
        )
        return stats, reloads, took

    def slots(self) -> dict[str, int]:
        """Server slots of each backend in the controller's haproxy.cfg (a backend that
        outgrows its slots is reloaded, docs/ingress.md)."""
        own = {c.pid for c in self.children}
        for pid in pids_in_netns(self.pod_ns):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if comm(pid) == "haproxy" and b"-W" in argv and not descends_from(pid, own):
                return server_slots(Path(argv[argv.index(b"-f") + 1].decode()).read_text())
        return {}

    def churn(self) -> None:
        """One change of the backend's endpoints a second: scaled to 4, then back to 3."""
        path = f"/apis/apps/v1/namespaces/default/deployments/{BACKEND}/scale"
        start = time.monotonic()
        for i in range(self.wl.churn):
            replicas = 4 if i % 2 == 0 else 3
            self.api("PATCH", path, {"spec": {"replicas": replicas}}, patch=True)
            time.sleep(max(0.0, start + i + 1 - time.monotonic()))
        if self.wl.churn % 2:
            self.api("PATCH", path, {"spec": {"replicas": 3}}, patch=True)
        self.kubectl("rollout", "status", f"deployment/{BACKEND}", "--timeout=120s")


# -- processes and namespaces ---------------------------------------------------------------


def pod_ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def netns_inode(ns: str) -> int:
    return os.stat(f"/run/netns/{ns}").st_ino


def pids_in_netns(ns: str) -> list[int]:
    inode = netns_inode(ns)
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    out.append(int(entry))
    return out


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def shims_of(pids: list[int]) -> list[int]:
    """The container shims (they carry a container's output to its log) of these pids."""
    out = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"containershim" in Path(f"/proc/{parent(pid)}/cmdline").read_bytes():
                out.add(parent(pid))
    return sorted(out - set(pids))


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descends_from(pid: int, ancestors: set[int]) -> bool:
    while pid > 1:
        if pid in ancestors:
            return True
        pid = parent(pid)
    return False


def descendants(root: int) -> list[int]:
    out = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != root and descends_from(int(entry), {root}):
            out.append(int(entry))
    return out


def haproxy_workers(ns: str) -> list[int]:
    """The controller's HAProxy workers in a pod: haproxy processes whose parent is the
    master, itself an haproxy process (the static HAProxy runs without a master)."""
    pids = [p for p in pids_in_netns(ns) if comm(p) in ("haproxy", "hap")]
    return [p for p in pids if parent(p) in pids]


def backend_namespaces(plan: ClusterNet, ips: list[str]) -> list[str]:
    """The network namespaces of the pods with these IPs."""
    out = []
    for ns in netns.names(plan.netns_prefix):
        if "-p-" not in ns:
            continue
        res = subprocess.run(
            ["ip", "-n", ns, "-4", "-o", "addr", "show", "eth0"], capture_output=True, text=True
        )
        if any(f" {ip}/" in res.stdout for ip in ips):
            out.append(ns)
    return out


def server_slots(config: str) -> dict[str, int]:
    """Backend name -> its `server` lines, in an HAProxy configuration."""
    counts: dict[str, int] = {}
    backend = ""
    for line in config.splitlines():
        words = line.split()
        if line.startswith("backend ") and len(words) > 1:
            backend = words[1]
            counts[backend] = 0
        elif backend and words[:1] == ["server"]:
            counts[backend] += 1
    return counts


def set_cpu(pid: int, cpu: int) -> None:
    """Every thread of pid on one CPU (a process that is gone is skipped)."""
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True)


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += common.cpu_seconds(pid)
    return total


# -- the static configurations --------------------------------------------------------------


def static_haproxy(endpoints: list[str], threads: int, tmp: Path) -> str:
    """What one would write by hand for the bench Ingress's routes, behaving as the
    controller's configuration does (the same headers, timeouts, retries of requests to a
    pod that is gone, and access log), routing by ACLs: so the comparison is the
    controller's way of routing and of being driven, not features one of them lacks."""
    servers = "".join(f"    server s{i} {ip}:{BACKEND_PORT}\n" for i, ip in enumerate(endpoints, 1))
    return f"""\
global
    nbthread {threads}
    stats socket {tmp}/haproxy-static.sock mode 600 level admin
    log stdout format raw local0
    maxconn 4000

defaults
    mode http
    log global
    log-format "{ACCESS_LOG}"
    option forwardfor
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend http
    bind :{STATIC_HAPROXY_PORT}
    http-request disable-l7-retry unless METH_GET or METH_OPTIONS or {{ method PUT DELETE TRACE }}
    unique-id-format %[uuid()]
    http-request set-header X-Request-ID %[unique-id] unless {{ req.hdr(x-request-id) -m found }}
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-after-response set-header Server haproxy unless {{ res.hdr(server) -m found }}
    http-request set-var(txn.referer) req.hdr(referer)
    http-request set-var(txn.ua) req.hdr(user-agent)
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    http-request capture str(default/{BACKEND}:80) len 160
    acl host_a var(txn.host) -m str a.bench.test
    acl host_b var(txn.host) -m str b.bench.test
    acl host_wild var(txn.host) -m reg ^[a-z0-9-]+\\.wild\\.bench\\.test$
    acl api_health path /api/health
    acl api path /api
    acl api path_beg /api/
    acl static path /static
    acl static path_beg /static/
    use_backend web if host_b api_health
    use_backend web_http if host_b api
    use_backend web if host_a
    use_backend web if host_wild
    use_backend web if static
    default_backend default_404

backend default_404
    http-request return status 404 content-type text/plain string "default backend - 404"

backend web
    balance roundrobin
{servers}
backend web_http
    balance roundrobin
{servers}"""


def static_nginx(endpoints: list[str], workers: int, tmp: Path) -> str:
    """nginx for the same routes: as many workers as HAProxy has threads, keep-alive to
    the backends, the same request headers, an access log."""
    servers = "".join(f"        server {ip}:{BACKEND_PORT};\n" for ip in endpoints)
    return f"""\
worker_processes {workers};
pid {tmp}/nginx-static.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log {tmp}/nginx-static-access.log combined;
    default_type text/plain;
    keepalive_requests 1000000;
    map $http_x_request_id $req_id {{ default $http_x_request_id; "" $request_id; }}
    upstream web {{
{servers}        keepalive 64;
    }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Request-ID $req_id;
    server {{
        listen {STATIC_NGINX_PORT} default_server;
        server_name _;
        location = /static {{ proxy_pass http://web; }}
        location /static/ {{ proxy_pass http://web; }}
        location / {{ return 404 "default backend - 404\\n"; }}
    }}
    server {{
        listen {STATIC_NGINX_PORT};
        server_name a.bench.test ~^[a-z0-9-]+\\.wild\\.bench\\.test$;
        location / {{ proxy_pass http://web; }}
    }}
    server {{
        listen {STATIC_NGINX_PORT};
        server_name b.bench.test;
        location = /api/health {{ proxy_pass http://web; }}
        location = /api {{ proxy_pass http://web; }}
        location /api/ {{ proxy_pass http://web; }}
        location = /static {{ proxy_pass http://web; }}
        location /static/ {{ proxy_pass http://web; }}
        location / {{ return 404 "default backend - 404\\n"; }}
    }}
}}
"""


# -- the table ------------------------------------------------------------------------------

TARGETS = ("kubesvc", "haproxy", "nginx", "backend")


def paired_ratio(kubesvc: list[WrkRun], static: list[WrkRun]) -> float:
    """The median of each round's kubesvc / static HAProxy requests/s (measured back to
    back in the round)."""
    return statistics.median(k.rps / h.rps for k, h in zip(kubesvc, static, strict=True))


def table_rows(wl: Workload, out: dict[str, Any], results: common.Results[Any]) -> list[list[str]]:
    rows: list[list[str]] = []

    def row(label: str, cells: list[str], target: str = "-", ok: bool | None = None) -> None:
        cells = cells + ["-"] * (len(TARGETS) - len(cells))
        rows.append([label, *cells, target, {None: "-", True: "yes", False: "NO"}[ok]])

    runs: dict[str, dict[str, list[WrkRun]]] = out.get("throughput", {})
    for mode, by_target in runs.items():
        if not all(by_target.values()):
            continue
        med = {t: statistics.median(r.rps for r in by_target[t]) for t in TARGETS}
        ratio = paired_ratio(by_target["kubesvc"], by_target["haproxy"])
        label = "keep-alive" if mode == "keep-alive" else "`Connection: close`"
        row(
            f"requests/s, {label} (median of {len(by_target['kubesvc'])})",
            [f"{med[t]:,.0f} /s" for t in TARGETS],
            f"≥ {TARGET_RATIO} x HAProxy",
            ratio >= TARGET_RATIO,
        )
        row("  kubesvc / static HAProxy (median of the rounds' ratios)", [f"{ratio:.2f} x"])
        row(
            "  latency p50 / p99 (median)",
            [
                f"{statistics.median(r.p50_ms for r in by_target[t]):.1f} / "
                f"{statistics.median(r.p99_ms for r in by_target[t]):.1f} ms"
                for t in TARGETS
            ],
        )
        errors = {t: sum(r.errors for r in by_target[t]) for t in TARGETS}
        row(
            "  errors (all runs)",
            [f"{errors[t]:,}" for t in TARGETS],
            "0",
            not any(errors.values()),
        )
        row(
            "  CPU of the proxy, last column the backend (100 % = one core)",
            [f"{statistics.median(r.proxy_cpu for r in by_target[t]):.0f} %" for t in TARGETS],
        )
        us = {t: statistics.median(r.cpu_us for r in by_target[t]) for t in TARGETS}
        row("  CPU time of the proxy per request", [f"{us[t]:.1f} µs" for t in TARGETS])
        row(
            "  CPU of the rest of the controller pod (log shim, controller)",
            [f"{statistics.median(r.other_cpu for r in by_target['kubesvc']):.0f} %"],
        )
        if ratio < TARGET_RATIO:
            results.note(f"{mode}: kubesvc's ingress at {ratio:.2f} x the static HAProxy")
    for key, what in (
        ("first_existing", "Ingress created -> first 200, existing Service"),
        ("first_new", "Service + Ingress created -> first 200"),
    ):
        if key not in out:
            continue
        times, reloads, removed = out[key]
        p99 = pct(times, 99)
        row(
            f"{what} ({len(times)} Ingresses)",
            [f"{1000 * pct(times, 50):.0f} ms p50, {1000 * p99:.0f} ms p99"],
            f"p99 < {1000 * TARGET_FIRST_P99:.0f} ms",
            p99 < TARGET_FIRST_P99,
        )
        row("  reloads counted meanwhile / when they were deleted", [f"{reloads} / {removed}"])
        if p99 >= TARGET_FIRST_P99:
            results.note(f"{what}: p99 {1000 * p99:.0f} ms missed its target")
    for key, what in (
        ("rollout", "rolling update of 3 replicas under load"),
        ("churn", f"endpoint churn, 1 change/s for {wl.churn} s under load"),
    ):
        if key not in out:
            continue
        stats, reloads, took = out[key]
        failed = sum(stats.failed.values())
        row(
            f"{what} ({took:.0f} s): failed / requests",
            [f"{failed:,} / {stats.requests:,}"],
            "0 failed",
            failed == 0,
        )
        if failed:
            kinds = ", ".join(f"{n} {k}" for k, n in stats.failed.most_common())
            row("  failures", [kinds])
            results.note(f"{what}: {failed} failed ({kinds}); first: {stats.first_failures}")
        row("  idle keep-alive connections closed by the proxy (resent)", [f"{stats.resent:,}"])
        row("  reloads counted meanwhile", [str(reloads)], "0" if key == "churn" else "-",
            reloads == 0 if key == "churn" else None)  # fmt: skip
        if key == "churn" and reloads:
            results.note(f"{what}: {reloads} reloads")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short steps, for a smoke run")
    parser.add_argument("--seconds", type=int, help="each wrk run (default 10, quick 3)")
    parser.add_argument("--rounds", type=int, help="interleaved wrk rounds (default 5, quick 1)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--ingresses", type=int, help="per kind (default 30, quick 5)")
    parser.add_argument("--churn", type=int, help="seconds of churn (default 60, quick 10)")
    parser.add_argument("--rate", type=int, default=300, help="requests/s of the load")
    parser.add_argument("--json")
    args = parser.parse_args()
    q = args.quick
    wl = Workload(
        quick=q,
        seconds=args.seconds or (3 if q else 10),
        rounds=args.rounds or (1 if q else 5),
        connections=args.connections,
        ingresses=args.ingresses or (5 if q else 30),
        churn=args.churn or (10 if q else 60),
        rate=args.rate,
    )
    if os.geteuid() != 0:
        print("run as root: the cluster's nodes are network namespaces", file=sys.stderr)
        return 2
    missing = [t for t in ("wrk", "nginx", "haproxy", "taskset", "nsenter") if not shutil.which(t)]
    if missing:
        print(f"missing {', '.join(missing)}; install them with:\n    {INSTALL}", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("needs 2 CPUs: the load generator and the proxies are pinned apart", file=sys.stderr)
        return 2
    common.catch_signals()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-ingbench-", dir="/tmp"))
    bench = Bench(tmp, wl)
    results: common.Results[Any] = common.Results()
    out: dict[str, Any] = {}

    def work() -> None:
        bench.up()
        bench.deploy_backend()
        bench.find_controller()
        bench.start_static()
        bench.pin()
        out["throughput"] = bench.throughput()
        common.log("Ingress created -> first 200, to the existing Service")
        out["first_existing"] = bench.first_200(new_service=False)
        common.log("Service and Ingress created -> first 200")
        out["first_new"] = bench.first_200(new_service=True)
        common.log("rolling update under load")
        out["rollout"] = bench.under_load("rollout")
        common.log(f"endpoint churn under load, {wl.churn} s")
        out["churn"] = bench.under_load("churn")

    interrupted = common.run_then_clean_up(work, bench.down, tmp, results, note_failure=True)
    rows = table_rows(wl, out, results)
    info = common.machine_info(
        load_average=f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        haproxy=tool_version(["haproxy", "-v"], r"version (\S+)"),
        nginx=tool_version(["nginx", "-v"], r"nginx/(\S+)"),
        wrk=tool_version(["wrk", "-v"], r"wrk (\S+)"),
    )
    print(
        f"kubesvc ingress benchmark, {started}, {info['cpus']} CPUs ({info['cpu_model']}), "
        f"Python {info['python']}, HAProxy {info['haproxy']}, nginx {info['nginx']}, "
        f"load average {info['load_average']}\n"
    )
    pinning = (
        f"wrk: 1 thread, {wl.connections} connections, {wl.seconds} s a run, on CPU "
        f"{LOADGEN_CPU} alone; the proxies ({bench.threads} threads or workers each), the "
        f"controller pod and the backend pods on CPU {PROXY_CPU}; load in steps 3-4: "
        f"{wl.rate} requests/s, 4 keep-alive connections and 2 streams of new ones"
    )
    header = ["measurement", "kubesvc ingress", "HAProxy, static config",
              "nginx, static config", "backend pod directly", "target", "ok?"]  # fmt: skip
    print(common.render_table(header, rows, [pinning], results.notes), flush=True)
    if args.json:
        raw = {
            k: (
                {m: {t: [asdict(r) for r in rs] for t, rs in by.items()} for m, by in v.items()}
                if k == "throughput"
                else (asdict(v[0]) | {"reloads": v[1], "seconds": v[2]})
                if k in ("rollout", "churn")
                else {"seconds": v[0], "reloads": v[1], "reloads_deleting": v[2]}
            )
            for k, v in out.items()
        }
        common.write_json(
            args.json,
            {
                "date": started,
                "machine": info,
                "workload": asdict(wl),
                "raw": raw,
                "notes": results.notes,
            },
        )
    return common.exit_status(interrupted, results)


def tool_version(cmd: list[str], pattern: str) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(pattern, res.stdout + res.stderr)
    return m.group(1) if m else ""


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
