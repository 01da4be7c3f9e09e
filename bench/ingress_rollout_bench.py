"""Benchmark of pod termination behind the ingress controller.

    python bench/ingress_rollout_bench.py [--runs 10] [--rollouts 3] [--json FILE]

Runs as root. Starts a 2-node cluster with `kubesvc up` under a unique name (`irb-<hex>`,
KUBESVC_HOME, KUBECONFIG and KUBECACHEDIR in a temporary directory), two 3-replica agnhost
netexec Deployments behind one Ingress each (one with a 5 s `preStop` sleep, one without),
and measures:

1. **Endpoint removal** (--runs times): a pod of the preStop Deployment is deleted (one
   DELETE through `kubectl proxy`); HAProxy's runtime API (`show servers state`, on the
   controller's admin socket) is polled every millisecond until the pod's server is in
   maintenance or gone. Measured: DELETE sent -> server out of HAProxy's pool.
2. **Rollouts under load** (--rollouts times for each Deployment): `kubectl set env`
   rolls it out while 4 keep-alive and 2 one-request-per-connection clients send GETs
   through the controller's NodePort. Measured: requests sent, failed (target 0), and
   HAProxy's retries and redispatches during the rollout (its exporter's
   `haproxy_backend_retry_warnings_total` and `haproxy_backend_redispatch_warnings_total`):
   the requests that met a pod that had already exited and were sent to another.
Progress goes to stderr, the table to stdout. `kubesvc down` runs on exit, including on
errors, Ctrl-C and SIGTERM. Traffic goes only to the cluster's node addresses.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
NS = "ingress-kubesvc"
CONTROLLER_PODS = "app.kubernetes.io/name=ingress-kubesvc"


@dataclass
class Workload:
    runs: int
    rollouts: int


@dataclass
class Load:
    """GETs in a loop from `keepalive` clients on one connection each and `closing`
    clients with a new connection per request, until stopped."""

    address: tuple[str, int]
    host: str
    keepalive: int = 4
    closing: int = 2
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for keep in [True] * self.keepalive + [False] * self.closing:
            t = threading.Thread(target=self._client, args=(keep,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _client(self, keep: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Host": self.host} | ({} if keep else {"Connection": "close"})
        while not self._stop.is_set():
            conn = conn or http.client.HTTPConnection(*self.address, timeout=15)
            try:
                conn.request("GET", "/hostname", headers=headers)
                res = conn.getresponse()
                res.read()
                failed = "" if res.status == 200 else str(res.status)
            except (OSError, http.client.HTTPException) as e:
                failed = type(e).__name__
            with self._lock:
                if failed:
                    self.failed.append(failed)
                else:
                    self.ok += 1
            if failed or not keep:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.name = "irb" + secrets.token_hex(3)
        self.env = common.cluster_env(tmp)
        self._proxy: subprocess.Popen[str] | None = None
        self._proxy_url = ""

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return common.kubectl(self.env, *args, input=input)

    def kubesvc(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "kubesvc.cli.main", *args], env=self.env,
                       check=True, capture_output=True)  # fmt: skip

    def up(self) -> None:
        common.log(f"kubesvc up --name {self.name} --nodes 2")
        self.kubesvc("up", "--name", self.name, "--nodes", "2")
        self._proxy = subprocess.Popen(
            ["kubectl", "proxy", "--port=0"], env=self.env, stdout=subprocess.PIPE, text=True
        )
        assert self._proxy.stdout is not None
        line = self._proxy.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not m:
            raise RuntimeError(f"kubectl proxy said {line!r}")
        self._proxy_url = f"http://127.0.0.1:{m.group(1)}"

    def down(self) -> None:
        if self._proxy is not None:
            self._proxy.kill()
            self._proxy.wait()
        subprocess.run([sys.executable, "-m", "kubesvc.cli.main", "down", "--name", self.name],
                       env=self.env, capture_output=True)  # fmt: skip

    def pods(self, selector: str, ns: str = "default") -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", "pods", "-n", ns, "-l", selector,
                                            "-o", "json"))["items"])  # fmt: skip

    def wait(self, what: str, cond: Any, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if got := cond():
                return got
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def ready(self, name: str, n: int = 3) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            pods = self.pods(f"app={name}")
            ok = [p for p in pods if _ready(p) and not p["metadata"].get("deletionTimestamp")]
            return ok if len(ok) == n == len(pods) else None

        return list(self.wait(f"{n} ready {name} pods", check))

    def deploy(self, name: str, pre_stop: bool) -> None:
        container: dict[str, Any] = {
            "name": "netexec",
            "image": AGNHOST,
            "command": ["/agnhost", "netexec", "--http-port=8080"],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
        }
        if pre_stop:
            container["lifecycle"] = {"preStop": {"sleep": {"seconds": 5}}}
        labels = {"app": name}
        objs = [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
             "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                      "template": {"metadata": {"labels": labels},
                                   "spec": {"containers": [container]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
             "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
             "spec": {"rules": [{"host": f"{name}.test", "http": {"paths": [
                 {"path": "/", "pathType": "Prefix", "backend": {
                     "service": {"name": name, "port": {"number": 80}}}}]}}]}},
        ]  # fmt: skip
        for obj in objs:
            self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    # -- the controller's HAProxy ------------------------------------------------------------
    def controller(self) -> dict[str, Any]:
        pods = [p for p in self.pods(CONTROLLER_PODS, NS) if _ready(p)]
        if not pods:
            raise RuntimeError("no ready ingress controller")
        return pods[0]

    def address(self) -> tuple[str, int]:
        svc = json.loads(self.kubectl("get", "svc", "-n", NS, "ingress-kubesvc-controller",
                                      "-o", "json"))  # fmt: skip
        return self.controller()["status"]["hostIP"], int(svc["spec"]["ports"][0]["nodePort"])

    def admin_socket(self) -> str:
        pod = self.controller()["metadata"]["name"]
        out = self.kubectl("exec", "-n", NS, pod, "--", "ss", "-Hltnp", "sport = :80")
        pid = re.search(r"pid=(\d+)", out)
        if not pid:
            raise RuntimeError(f"no HAProxy listening in the controller's pod: {out!r}")
        argv = Path(f"/proc/{pid.group(1)}/cmdline").read_bytes().split(b"\0")
        master = argv[argv.index(b"-S") + 1].decode()
        return str(Path(master).with_name("admin.sock"))

    def metrics(self) -> str:
        pod = self.controller()["metadata"]["name"]
        return self.kubectl("get", "--raw",
                            f"/api/v1/namespaces/{NS}/pods/{pod}:10255/proxy/metrics")  # fmt: skip

    # -- measurements --------------------------------------------------------------------------
    def endpoint_removal(self, runs: int) -> list[float]:
        self.ready("prestop")
        # `kubesvc up` does not wait for the controller's pod
        self.wait("the ingress controller Ready",
                  lambda: any(_ready(p) for p in self.pods(CONTROLLER_PODS, NS)))  # fmt: skip
        address = self.address()
        self.wait("prestop.test served", lambda: _get(address, "prestop.test") == 200)
        admin = self.admin_socket()
        delays = []
        for i in range(runs):
            pod = self.ready("prestop")[0]
            ip, name = pod["status"]["podIP"], pod["metadata"]["name"]
            self.wait(f"{ip} in HAProxy", lambda ip=ip: _in_pool(admin, ip))
            req = urllib.request.Request(
                f"{self._proxy_url}/api/v1/namespaces/default/pods/{name}", method="DELETE"
            )
            sent = time.monotonic()
            with urllib.request.urlopen(req, timeout=10):
                pass
            while _in_pool(admin, ip):
                if time.monotonic() - sent > 30:
                    raise RuntimeError(f"{ip} still in HAProxy's pool 30 s after its DELETE")
                time.sleep(0.001)
            delays.append(time.monotonic() - sent)
            common.log(f"endpoint removal {i + 1}/{runs}: {delays[-1] * 1000:.0f} ms")
        return delays

    def rollouts(self, name: str, n: int) -> list[tuple[int, int, int, int]]:
        """(requests served, failed, retries, redispatches) per rollout."""
        address = self.address()
        out = []
        for i in range(n):
            self.ready(name)
            before = _retries(self.metrics())
            load = Load(address, f"{name}.test")
            load.start()
            time.sleep(1)
            self.kubectl("set", "env", f"deployment/{name}", f"ROLL={time.time()}")
            self.kubectl("rollout", "status", f"deployment/{name}", "--timeout=180s")
            self.ready(name)
            time.sleep(1)
            load.stop()
            after = _retries(self.metrics())
            row = (load.ok, len(load.failed), after[0] - before[0], after[1] - before[1])
            common.log(f"rollout {name} {i + 1}/{n}: {row} {sorted(set(load.failed))}")
            out.append(row)
        return out


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _get(address: tuple[str, int], host: str) -> int:
    conn = http.client.HTTPConnection(*address, timeout=5)
    try:
        conn.request("GET", "/hostname", headers={"Host": host})
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def _in_pool(admin: str, ip: str) -> bool:
    """Whether a server at `ip` is in HAProxy's pool, neither in maintenance nor parked."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(admin)
        s.sendall(b"show servers state\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        f = line.split()
        # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
        if len(f) > 6 and f[4] == ip and f[6].isdigit() and not int(f[6]) & 0x01:
            return True
    return False


def _retries(metrics: str) -> tuple[float, float]:
    sums = []
    for name in (
        "haproxy_backend_retry_warnings_total",
        "haproxy_backend_redispatch_warnings_total",
    ):
        sums.append(
            sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", metrics, re.M))
        )
    return sums[0], sums[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rollouts", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the cluster's nodes are network namespaces", file=sys.stderr)
        return 2
    common.catch_signals()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-irbench-", dir="/tmp"))
    bench = Bench(tmp)
    results: common.Results[common.Row] = common.Results()

    def work() -> None:
        bench.up()
        bench.deploy("prestop", True)
        bench.deploy("nohook", False)
        delays = bench.endpoint_removal(args.runs)
        ms = [d * 1000 for d in delays]
        results.add(common.Row(f"pod DELETE -> out of HAProxy's pool, p50 ({len(ms)} pods)",
                               statistics.median(ms), "ms"))  # fmt: skip
        results.add(common.Row("  max", max(ms), "ms"))
        for name, what in (("prestop", "with a 5 s preStop sleep"), ("nohook", "no preStop")):
            rows = bench.rollouts(name, args.rollouts)
            n = len(rows)
            results.add(common.Row(f"rollout {what}: requests served ({n} rollouts)",
                                   sum(r[0] for r in rows), ""))  # fmt: skip
            results.add(common.Row("  failed", sum(r[1] for r in rows), "", target=0))
            results.add(common.Row("  retried (HAProxy retries)", sum(r[2] for r in rows), ""))
            results.add(common.Row("  redispatched to another pod", sum(r[3] for r in rows), ""))

    interrupted = common.run_then_clean_up(work, bench.down, tmp, results, note_failure=True)
    common.report_rows("ingress rollout", results, Workload(args.runs, args.rollouts), started,
                       args.json)  # fmt: skip
    return common.exit_status(interrupted, results)


if __name__ == "__main__":
    sys.exit(main())
