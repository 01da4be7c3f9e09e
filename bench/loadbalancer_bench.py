"""Benchmark of LoadBalancer IPs on the node network (the layer-2 speaker).

    python bench/loadbalancer_bench.py [--runs 5] [--services 20] [--json FILE]

Runs as root. Starts a 3-node cluster with `kubesvc up` under a unique name (`lbb-<hex>`,
KUBESVC_HOME, KUBECONFIG and KUBECACHEDIR in a temporary directory) and an outside host on
the nodes' LAN (`kubesvc host add client`), then measures:

1. **Failover** (--runs times): a LoadBalancer Service over 3 agnhost netexec pods; the
   client opens a new connection to the LB IP every 20 ms (100 ms timeout, one HTTP request
   each) and, beside it, to the NodePort on the announcing node. The announcing node's
   bridge port is set down (what a failed node looks like to the network); measured: time
   from the link going down to the first successful new connection, and the requests lost
   meanwhile. The NodePort on the dead node is the reference: it stays lost for as long as
   the node is down (5 s here). The link is set up again and the cluster left to settle
   before the next run.
2. **ARP reply time**: `arping` from the client, 20 broadcast requests for an announced
   IP, one `arping` each.
3. **Service created -> first successful request** (--services times): a LoadBalancer
   Service POSTed to the API (through one `kubectl proxy`, so no kubectl process per
   Service), the allocator writes the IP, a speaker announces it, and the client polls it
   with new connections every 10 ms until one is served. p50 and p99 (target p99 < 200
   ms), and how long the POST itself took.
Progress goes to stderr, the table to stdout. `kubesvc down` (which removes the host too)
runs on exit, including on errors, Ctrl-C and SIGTERM. Traffic goes only between the
outside host and the cluster's nodes, on the cluster's own bridge.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common

from kubesvc import netns
from kubesvc.node.netplan import ClusterNet

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
DOWN_FOR = 5.0


@dataclass
class Workload:
    runs: int
    services: int


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.name = "lbb" + secrets.token_hex(3)
        self.env = common.cluster_env(tmp)
        self.client_ns = ""
        self.plan: ClusterNet | None = None
        self._proxy: subprocess.Popen[str] | None = None
        self._proxy_url = ""

    # -- plumbing --------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None) -> str:
        return common.kubectl(self.env, *args, input=input)

    def up(self) -> None:
        common.log(f"kubesvc up --name {self.name} --nodes 3")
        subprocess.run(
            # without the ingress controller, whose Service would hold the pool's first IP
            [
                sys.executable,
                "-m",
                "kubesvc.cli.main",
                "up",
                "--name",
                self.name,
                "--nodes",
                "3",
                "--no-ingress",
            ],
            env=self.env,
            check=True,
            capture_output=True,
        )
        state = json.loads((self.tmp / "home" / self.name / "cluster.json").read_text())
        self.plan = ClusterNet(self.name, state["node_cidr"])
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kubesvc.cli.main",
                "host",
                "add",
                "client",
                "--name",
                self.name,
            ],
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.client_ns = self.plan.outside_host_netns("client")

    def down(self) -> None:
        if self._proxy is not None:
            self._proxy.kill()
            self._proxy.wait()
        subprocess.run(
            [sys.executable, "-m", "kubesvc.cli.main", "down", "--name", self.name],
            env=self.env,
            capture_output=True,
        )

    def addr(self, last: int) -> str:
        assert self.plan is not None
        return str(ipaddress.ip_network(self.plan.node_cidr).network_address + last)

    def deploy(self, replicas: int = 3) -> None:
        self.kubectl(
            "create", "deployment", "web", f"--image={AGNHOST}", f"--replicas={replicas}",
            "--", "/agnhost", "netexec", "--http-port=8080",
        )  # fmt: skip
        self.kubectl("rollout", "status", "deployment/web", "--timeout=60s")

    def api_base(self) -> str:
        """The API through `kubectl proxy` (started once): plain HTTP on loopback, so a
        create costs one local request, not a kubectl process and its discovery."""
        if self._proxy is None:
            self._proxy = subprocess.Popen(
                ["kubectl", "proxy", "--port=0", "--address=127.0.0.1"],
                env=self.env,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self._proxy.stdout is not None
            line = self._proxy.stdout.readline()
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            if not m:
                raise RuntimeError(f"kubectl proxy: {line!r}")
            self._proxy_url = f"http://127.0.0.1:{m.group(1)}"
        return self._proxy_url

    def create_service(self, name: str, ip: str) -> None:
        """A LoadBalancer Service over the web pods asking for `ip`, POSTed to the API."""
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerIP": ip,
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        }
        req = urllib.request.Request(
            self.api_base() + "/api/v1/namespaces/default/services",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()

    def service(self, name: str, ip: str) -> None:
        self.kubectl(
            "expose", "deployment", "web", f"--name={name}", "--type=LoadBalancer",
            f"--load-balancer-ip={ip}", "--port=80", "--target-port=8080",
        )  # fmt: skip

    def owner_by_arp(self, ip: str, timeout: float = 30) -> str:
        """The node whose eth0 answers who-has `ip` (the Events may lag a reconnection)."""
        assert self.plan is not None
        macs = {}
        for i in range(1, 4):
            node = f"{self.name}-node-{i}"
            out = subprocess.run(
                ["ip", "-n", self.plan.node_netns(node), "-br", "link", "show", "eth0"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            macs[out.split()[2].lower()] = node
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = subprocess.run(
                ["ip", "netns", "exec", self.client_ns, "arping", "-b", "-c", "2", "-w", "3", ip],
                capture_output=True,
                text=True,
            )
            found = {m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", res.stdout)}
            if len(found) == 1 and (mac := found.pop()) in macs:
                return macs[mac]
        raise RuntimeError(f"no single node answers ARP for {ip}")

    def request(self, ip: str, port: int, timeout: float) -> bool:
        """One new connection from the client and one HTTP request on it."""
        sock = netns.socket_in_netns(self.client_ns)
        try:
            sock.settimeout(timeout)
            sock.connect((ip, port))
            sock.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
        finally:
            sock.close()

    # -- measurements --------------------------------------------------------------------------
    def failover(self, runs: int) -> tuple[list[float], list[int], list[tuple[int, int]]]:
        ip = self.addr(241)
        self.service("failover", ip)
        svc = json.loads(self.kubectl("get", "svc", "failover", "-o", "json"))
        node_port = svc["spec"]["ports"][0]["nodePort"]
        times, lost, nodeport = [], [], []
        for run in range(runs):
            owner = self.owner_by_arp(ip)
            node = json.loads(self.kubectl("get", "node", owner, "-o", "json"))
            addresses = node["status"]["addresses"]
            owner_ip = next(a["address"] for a in addresses if a["type"] == "InternalIP")
            deadline = time.monotonic() + 30
            while not self.request(ip, 80, 0.5):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{ip} does not answer")
                time.sleep(0.1)
            assert self.plan is not None
            port = self.plan.node_veth(owner)
            np_results: list[bool] = []
            stop = threading.Event()

            subprocess.run(["ip", "link", "set", port, "down"], check=True)
            t0 = time.monotonic()
            side = threading.Thread(
                target=self._probe, args=(owner_ip, node_port, np_results, stop)
            )
            side.start()
            failed, resumed = 0, None
            try:
                while time.monotonic() - t0 < DOWN_FOR:
                    if self.request(ip, 80, 0.1):
                        if resumed is None:
                            resumed = time.monotonic() - t0
                    elif resumed is None:
                        failed += 1
                    time.sleep(0.02)
            finally:
                stop.set()
                side.join()
                subprocess.run(["ip", "link", "set", port, "up"], check=False)
            common.log(
                f"failover run {run + 1}: {owner} down, served again after "
                f"{resumed if resumed is None else round(resumed, 3)} s, {failed} lost; "
                f"NodePort on {owner}: {np_results.count(False)} of {len(np_results)} lost"
            )
            if resumed is not None:
                times.append(resumed)
            lost.append(failed)
            nodeport.append((np_results.count(False), len(np_results)))
            time.sleep(3)  # the node is back: it announces its IPs again
        return times, lost, nodeport

    def _probe(self, ip: str, port: int, results: list[bool], stop: threading.Event) -> None:
        while not stop.is_set():
            results.append(self.request(ip, port, 0.1))
            time.sleep(0.02)

    def first_request(self, n: int) -> tuple[list[float], list[float]]:
        out, created = [], []
        for i in range(n):
            name, ip = f"fresh{i}", self.addr(242 + i % 12)
            t0 = time.monotonic()
            self.create_service(name, ip)
            created.append(time.monotonic() - t0)
            while not self.request(ip, 80, 0.1):
                if time.monotonic() - t0 > 30:
                    raise RuntimeError(f"{name} ({ip}) never answered")
                time.sleep(0.01)
            out.append(time.monotonic() - t0)
            common.log(f"{name} ({ip}): first request served {out[-1]:.3f} s after create")
            self.kubectl("delete", "svc", name, "--wait=true")
            time.sleep(0.5)
        return out, created

    def arp_reply(self, n: int = 20) -> list[float]:
        """The round trip arping reports for n broadcast who-has, one arping each."""
        out = []
        for _ in range(n):
            res = subprocess.run(
                ["ip", "netns", "exec", self.client_ns, "arping", "-b", "-c", "1", "-w", "2",
                 self.addr(241)],
                capture_output=True,
                text=True,
            )  # fmt: skip
            out += [float(ms) for ms in re.findall(r"\]\s+([0-9.]+)ms", res.stdout)]
        return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the cluster's nodes are network namespaces", file=sys.stderr)
        return 2
    common.catch_signals()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-lbbench-", dir="/tmp"))
    bench = Bench(tmp)
    results: common.Results[Any] = common.Results()
    out: dict[str, Any] = {}

    def work() -> None:
        bench.up()
        bench.deploy()
        out["failover"] = bench.failover(args.runs)
        out["arp"] = bench.arp_reply()
        out["first"] = bench.first_request(args.services)

    interrupted = common.run_then_clean_up(work, bench.down, tmp, results, note_failure=True)
    rows: list[list[str]] = []
    if "failover" in out:
        times, lost, nodeport = out["failover"]
        np_lost = ", ".join(f"{a}/{b}" for a, b in nodeport)
        if times:
            rows.append(
                [
                    f"failover: link down -> first new connection served ({args.runs} runs)",
                    f"{statistics.median(times):.2f} s p50, {max(times):.2f} s max",
                    f"never while the node is down ({DOWN_FOR:.0f} s here)",
                ]
            )
        if len(times) < len(lost):
            results.note(f"{len(lost) - len(times)} failover runs never resumed in {DOWN_FOR} s")
        rows.append(
            [
                "  requests lost (a new connection every 20 ms, 100 ms timeout)",
                f"{statistics.median(lost):.0f} p50, {max(lost)} max",
                f"all: {np_lost}",
            ]
        )
    if out.get("arp"):
        arp = out["arp"]
        rows.append(
            [
                f"ARP reply to a broadcast who-has (arping, {len(arp)} replies)",
                f"{statistics.median(arp):.2f} ms p50, {max(arp):.2f} ms max",
                "-",
            ]
        )
    if "first" in out:
        first, created = out["first"]
        rows.append(
            [
                f"Service created (POST) -> first request served ({len(first)} Services)",
                f"{pct(first, 50) * 1000:.0f} ms p50, {pct(first, 99) * 1000:.0f} ms p99"
                f" (target p99 < 200 ms)",
                "-",
            ]
        )
        if pct(first, 99) >= 0.2:
            results.note("Service created -> first request: p99 missed its 200 ms target")
        rows.append(
            [
                "  of which the POST itself (until the API answered)",
                f"{pct(created, 50) * 1000:.0f} ms p50, {pct(created, 99) * 1000:.0f} ms p99",
                "-",
            ]
        )
    info = common.machine_info()
    print(
        f"kubesvc LoadBalancer (layer 2) benchmark, {started}, {info['cpus']} CPUs "
        f"({info['cpu_model']}), Python {info['python']}\n"
    )
    header = ["measurement", "LB IP (layer 2)", "NodePort on the dead node"]
    print(common.render_table(header, rows, [], results.notes), flush=True)
    if args.json:
        common.write_json(
            args.json,
            {
                "date": started,
                "machine": info,
                "workload": asdict(Workload(args.runs, args.services)),
                "raw": {k: v for k, v in out.items()},
                "notes": results.notes,
            },
        )
    return common.exit_status(interrupted, results)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
