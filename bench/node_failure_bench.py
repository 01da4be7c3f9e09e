"""Benchmark of a node that fails: how long until the control plane notices and replaces.

    python bench/node_failure_bench.py [--runs 3] [--grace 15] [--toleration 5] [--json FILE]

Runs as root. Starts a 2-node cluster with `kubesvc up --node-monitor-grace-period GRACE
--default-unreachable-toleration-seconds TOLERATION` under a unique name (`nfb-<hex>`,
KUBESVC_HOME, KUBECONFIG and KUBECACHEDIR in a temporary directory), an outside host on the
nodes' LAN and a 2-replica agnhost Deployment behind a NodePort (one pod per node). Then,
--runs times: `kubesvc node stop` of the node with a web pod, and, polling every 0.25 s,
the time from the stop until

1. the node is marked (Ready Unknown, unreachable taints) and the pod's IP has left the
   Service's Endpoints; reference: the grace period (an upper bound: it runs from the last
   lease renewal, up to 10 s before the stop);
2. the pod is evicted (deletionTimestamp); reference: grace + tolerationSeconds;
3. its replacement is Ready on the other node (2 Ready pods, none on the stopped node);
4. after `kubesvc node start`: the node is Ready and its NodePort answers the host again.

Upstream's defaults (50 s, 300 s) would take about 350 s for step 2. Progress goes to
stderr, the table to stdout. `kubesvc down` runs on exit, including on errors, Ctrl-C and
SIGTERM. Traffic goes only between the outside host and the cluster's nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common

from kubesvc.node.netplan import ClusterNet

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
POLL = 0.25


@dataclass
class Workload:
    runs: int
    grace: float
    toleration: int


class Bench:
    def __init__(self, tmp: Path, workload: Workload) -> None:
        self.tmp = tmp
        self.w = workload
        self.name = "nfb" + secrets.token_hex(3)
        self.env = dict(
            os.environ,
            KUBESVC_HOME=str(tmp / "home"),
            KUBECONFIG=str(tmp / "kubeconfig"),
            KUBECACHEDIR=str(tmp / "kubecache"),
        )
        self.plan: ClusterNet | None = None
        self.port = 0

    # -- plumbing --------------------------------------------------------------------------
    def kubectl(self, *args: str) -> str:
        res = subprocess.run(["kubectl", *args], env=self.env, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def kubesvc(self, *args: str) -> float:
        """Runs the command; returns how long it took."""
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "kubesvc.cli.main", *args, "--name", self.name],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return time.monotonic() - t0

    def node(self, i: int) -> str:
        return f"{self.name}-node-{i}"

    def nodeport_answers(self, node_index: int) -> bool:
        assert self.plan is not None
        url = f"http://{self.plan.node_ip(node_index)}:{self.port}/hostname"
        res = subprocess.run(
            [sys.executable, "-m", "kubesvc.cli.main", "host", "exec", "client", "--name",
             self.name, "--", "curl", "-s", "-m", "1", url],
            env=self.env, capture_output=True, text=True,
        )  # fmt: skip
        return res.returncode == 0

    def until(self, what: str, predicate: Callable[[], bool], t0: float, limit: float) -> float:
        while not predicate():
            if time.monotonic() - t0 > limit:
                raise RuntimeError(f"{what}: not within {limit:.0f} s")
            time.sleep(POLL)
        return time.monotonic() - t0

    # -- steps -----------------------------------------------------------------------------
    def up(self) -> None:
        common.log(f"kubesvc up --name {self.name}")
        self.kubesvc(
            "up",
            "--nodes",
            "2",
            "--node-monitor-grace-period",
            f"{self.w.grace:g}",
            "--default-unreachable-toleration-seconds",
            str(self.w.toleration),
        )
        state = json.loads((self.tmp / "home" / self.name / "cluster.json").read_text())
        self.plan = ClusterNet(self.name, state["node_cidr"])
        self.kubesvc("host", "add", "client")
        self.kubectl("create", "deployment", "web", f"--image={AGNHOST}", "--replicas=2",
                     "--", "/agnhost", "netexec", "--http-port=8080")  # fmt: skip
        self.kubectl("expose", "deployment", "web", "--type=NodePort", "--port=80",
                     "--target-port=8080")  # fmt: skip
        self.port = int(self.kubectl("get", "svc", "web", "-o",
                                     "jsonpath={.spec.ports[0].nodePort}"))  # fmt: skip
        t0 = time.monotonic()
        self.until("web spread over both nodes", self.spread, t0, 60)

    def web_pods(self) -> list[dict[str, Any]]:
        return list(self.get("pods", "-l", "app=web")["items"])

    def spread(self) -> bool:
        live = [p for p in self.web_pods() if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if _ready(p)]
        return len(ready) == 2 == len(live) and len({p["spec"]["nodeName"] for p in ready}) == 2

    def run_once(self) -> dict[str, float]:
        victim = self.node(2)
        pod = next(p for p in self.web_pods() if p["spec"]["nodeName"] == victim)
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        limit = self.w.grace + self.w.toleration + 60
        common.log(f"kubesvc node stop {victim} (pod {name})")
        t0 = time.monotonic()
        out = {"stop": self.kubesvc("node", "stop", victim)}

        def marked() -> bool:
            node = self.get("node", victim)
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
            eps = self.kubectl("get", "endpoints", "web", "-o",
                               "jsonpath={.subsets[*].addresses[*].ip}").split()  # fmt: skip
            return ready[0]["status"] == "Unknown" and ip not in eps

        out["marked"] = self.until("node marked", marked, t0, limit)
        out["evicted"] = self.until(
            "pod evicted",
            lambda: bool(self.get("pod", name)["metadata"].get("deletionTimestamp")),
            t0,
            limit,
        )

        def replaced() -> bool:
            live = [p for p in self.web_pods() if not p["metadata"].get("deletionTimestamp")]
            return len(live) == 2 and all(_ready(p) and p["spec"]["nodeName"] != victim
                                          for p in live)  # fmt: skip

        out["replaced"] = self.until("replacement Ready", replaced, t0, limit)
        common.log(f"kubesvc node start {victim}")
        t1 = time.monotonic()
        out["start"] = self.kubesvc("node", "start", victim)
        out["back"] = self.until(
            "node back",
            lambda: _node_ready(self.get("node", victim)) and self.nodeport_answers(1),
            t1,
            60,
        )
        # the next run needs a web pod on that node again: one fewer, then one more (the
        # scheduler puts it on the node with fewer pods)
        self.kubectl("scale", "deployment", "web", "--replicas=1")
        self.until("web down to 1", lambda: len(self.web_pods()) == 1, time.monotonic(), 60)
        self.kubectl("scale", "deployment", "web", "--replicas=2")
        try:
            self.until("web spread again", self.spread, time.monotonic(), 60)
        except RuntimeError:
            common.log(self.kubectl("get", "pods", "-o", "wide"))
            raise
        return out

    def down(self) -> None:
        common.log(f"kubesvc down --name {self.name}")
        subprocess.run(
            [sys.executable, "-m", "kubesvc.cli.main", "down", "--name", self.name],
            env=self.env,
            capture_output=True,
        )


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _node_ready(node: dict[str, Any]) -> bool:
    return _ready(node)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--grace", type=float, default=15.0)
    parser.add_argument("--toleration", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the cluster's nodes are network namespaces", file=sys.stderr)
        return 2
    common.catch_signals()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    workload = Workload(args.runs, args.grace, args.toleration)
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-nfbench-", dir="/tmp"))
    bench = Bench(tmp, workload)
    results: common.Results[common.Row] = common.Results()
    runs: list[dict[str, float]] = []

    def work() -> None:
        bench.up()
        for _ in range(args.runs):
            runs.append(bench.run_once())

    interrupted = common.run_then_clean_up(work, bench.down, tmp, results, note_failure=True)
    grace, tol = args.grace, args.toleration

    def row(key: str, what: str, reference: float | None = None, ref_is: str = "") -> None:
        values = [r[key] for r in runs]
        if values:
            results.add(common.Row(f"{what} (median of {len(values)})",
                                   statistics.median(values), "s", reference, ref_is))  # fmt: skip

    row("stop", "`kubesvc node stop` (agent, pods, link)")
    row("marked", "stop -> node Unknown, pod out of the Endpoints", grace,
        f"--node-monitor-grace-period {grace:g} s (upper bound)")  # fmt: skip
    tolerated = f"grace + --default-unreachable-toleration-seconds {tol} (upstream: 50 + 300 s)"
    row("evicted", "stop -> pod evicted", grace + tol, tolerated)
    row("replaced", "stop -> replacement Ready on the other node")
    row("start", "`kubesvc node start` (link, agent adopting its pods)")
    row("back", "start -> node Ready, its NodePort answers the host")
    common.report_rows("node failure", results, workload, started, args.json)
    return common.exit_status(interrupted, results)


if __name__ == "__main__":
    sys.exit(main())
