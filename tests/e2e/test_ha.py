"""A highly available control plane on one etcd (`kubesvc up --store etcd --apiservers 2
--controller-managers 2`): a write through one API server is seen by a watch on the other,
the `kubernetes` Service lists every live API server, the controller-managers elect one
leader on a Lease, and kill -9 of an API server and of the leader during a rollout loses
nothing: the rollout completes, kubectl on the other server and the node agents carry on.

Short leader-election timings (lease 4 s, renew 3 s, retry 1 s) keep the hand-over short;
bench/ measures it with upstream's defaults.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import KUBECTL, Cluster, pod_ready, running_cluster
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("ha")
    with running_cluster(
        tmp, "ha", "--store", "etcd", "--apiservers", "2", "--controller-managers", "2",
        "--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3",
        "--leader-elect-retry-period", "1",
    ) as c:  # fmt: skip
        yield c


def servers(c: Cluster) -> list[str]:
    cfg = c.json("config", "view", "--raw", "--minify")
    ext = cfg["clusters"][0]["cluster"]["extensions"][0]
    assert ext["name"] == "kubesvc.io/servers"
    return list(ext["extension"]["servers"])


def on(c: Cluster, server: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """kubectl pointed at one API server."""
    return c.kubectl("--server", server, *args, check=check)


def pid(c: Cluster, component: str) -> int:
    return int((c.home / c.name / "pids" / f"{component}.pid").read_text())


def holder(c: Cluster) -> str:
    lease = c.json("-n", "kube-system", "get", "lease", "kube-controller-manager")
    return str(lease["spec"].get("holderIdentity") or "")


def leader_component(c: Cluster) -> str:
    """The controller-manager process that leads (the one that started its controllers)."""
    logs = c.home / c.name / "logs"

    def running() -> str:
        mark = f"leading as {holder(c)}"  # the identity the Lease names
        for name in ("controller-manager", "controller-manager-2"):
            if mark in (logs / f"{name}.log").read_text(errors="replace"):
                return name
        return ""

    return str(wait_for(running, what="a leading controller-manager"))


def test_two_api_servers_serve_one_store(cluster: Cluster) -> None:
    c = cluster
    one, two = servers(c)
    assert one != two
    ips = sorted(
        a["ip"] for a in c.json("get", "endpoints", "kubernetes")["subsets"][0]["addresses"]
    )
    assert ips == sorted(s.split("//")[1].split(":")[0] for s in (one, two))
    # a write through one is seen by a watch on the other
    for server in (one, two):
        wait_for(lambda s=server: on(c, s, "get", "--raw", "/readyz", check=False).returncode == 0,
                 what=f"{server} ready")  # fmt: skip
    watch = subprocess.Popen(
        [KUBECTL, "--server", two, "get", "configmaps", "--watch-only", "-o", "name"],
        env=c.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)  # kubectl lists, then watches
        started = time.monotonic()
        on(c, one, "create", "configmap", "through-one")
        assert watch.stdout is not None
        line = watch.stdout.readline().strip()
        assert line == "configmap/through-one", (line, watch.poll(), _stderr(watch))
        print(f"\nseen on the other server {time.monotonic() - started:.3f} s after the create")
    finally:
        watch.kill()
        watch.wait()


def test_two_api_servers_never_hand_out_one_value_twice(cluster: Cluster) -> None:
    """The same ClusterIP and NodePort asked of both servers at the same instant: one
    Service gets them, the other upstream's 422; Services made through both at once get
    distinct values."""
    from kubernetes import client, config

    c = cluster
    apis = []
    for server in servers(c):
        api_client = config.new_client_from_config(c.env["KUBECONFIG"])
        api_client.configuration.host = server
        api = client.CoreV1Api(api_client)
        api.list_namespaced_service("default")  # a connection, ready before the race
        apis.append(api)

    def service(name: str, ip: str | None, node_port: int | None) -> dict[str, Any]:
        port: dict[str, Any] = {"port": 80, **({"nodePort": node_port} if node_port else {})}
        spec = {"type": "NodePort", "ports": [port], **({"clusterIP": ip} if ip else {})}
        return {"metadata": {"name": name}, "spec": spec}

    def race(bodies: list[tuple[client.CoreV1Api, dict[str, Any]]]) -> list[Any]:
        start = threading.Barrier(len(bodies))
        results: list[Any] = [None] * len(bodies)

        def create(i: int, api: client.CoreV1Api, body: dict[str, Any]) -> None:
            start.wait()
            try:
                results[i] = api.create_namespaced_service("default", body)
            except client.ApiException as e:
                results[i] = e

        threads = [threading.Thread(target=create, args=(i, *b)) for i, b in enumerate(bodies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    for i in range(8):
        ip, node_port = f"10.96.250.{10 + i}", 31000 + i
        results = race(
            [(api, service(f"race-{i}-{n}", ip, node_port)) for n, api in enumerate(apis)]
        )
        won = [r for r in results if not isinstance(r, client.ApiException)]
        lost = [r for r in results if isinstance(r, client.ApiException)]
        assert len(won) == 1 and len(lost) == 1, results
        assert won[0].spec.cluster_ip == ip and won[0].spec.ports[0].node_port == node_port
        assert lost[0].status == 422, lost[0].body
        assert "already allocated" in lost[0].body, lost[0].body

    results = race([(apis[n % 2], service(f"many-{n}", None, None)) for n in range(16)])
    assert not [r for r in results if isinstance(r, client.ApiException)], results
    assert len({r.spec.cluster_ip for r in results}) == 16
    assert len({r.spec.ports[0].node_port for r in results}) == 16
    made = c.json("get", "services")["items"]
    c.out(
        "delete", "service", *[s["metadata"]["name"] for s in made if "-" in s["metadata"]["name"]]
    )


def test_one_leader_among_the_controller_managers(cluster: Cluster) -> None:
    c = cluster
    leader = leader_component(c)
    assert holder(c)
    others = {"controller-manager", "controller-manager-2"} - {leader}
    other_log = (c.home / c.name / "logs" / f"{others.pop()}.log").read_text()
    assert "controller-manager running" not in other_log  # it waits as a candidate
    events = c.json("-n", "kube-system", "get", "events", "--field-selector",
                    "reason=LeaderElection")["items"]  # fmt: skip
    assert any(holder(c) in e["message"] for e in events)


def test_kill_9_of_an_api_server_and_the_leader_during_a_rollout(cluster: Cluster) -> None:
    c = cluster
    one, two = servers(c)
    c.out("create", "deployment", "web", "--image=kubia", "--replicas=4")
    wait_for(lambda: len([p for p in c.pods("app=web") if pod_ready(p)]) == 4,
             timeout=60, what="4 pods Ready")  # fmt: skip
    before = holder(c)
    leader = leader_component(c)
    # Endpoints of a Service on the pods must not flap while the control plane changes hands
    c.out("expose", "deployment", "web", "--port=80", "--target-port=8080")
    wait_for(lambda: _ready_ips(c, one) == 4, what="4 endpoints")
    dips: list[int] = []
    stop = threading.Event()

    def watch_endpoints() -> None:
        while not stop.is_set():
            n = _ready_ips(c, two)
            if n is not None and n < 3:
                dips.append(n)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_endpoints, daemon=True)
    watcher.start()
    try:
        on(c, two, "set", "env", "deployment/web", "ROLLOUT=2")
        os.kill(pid(c, "apiserver"), signal.SIGKILL)
        os.kill(pid(c, leader), signal.SIGKILL)
        started = time.monotonic()
        res = on(c, two, "rollout", "status", "deployment/web", "--timeout=90s")
        print(f"\nrollout completed {time.monotonic() - started:.1f} s after the kills")
        assert "successfully rolled out" in res.stdout
    finally:
        stop.set()
        watcher.join()
    # another controller-manager leads; nothing was created twice
    wait_for(lambda: holder(c) not in ("", before), timeout=30, what="a new leader")
    pods = [p for p in c.pods("app=web") if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 4, [p["metadata"]["name"] for p in pods]
    rs = [r for r in c.json("get", "rs", "-l", "app=web")["items"] if r["spec"]["replicas"]]
    assert len(rs) == 1 and rs[0]["status"].get("readyReplicas") == 4
    assert not dips, f"the Service's ready endpoints dropped to {dips}"
    # the node agents carried on: both nodes Ready, through the other server
    nodes = json.loads(on(c, two, "get", "nodes", "-o", "json").stdout)["items"]
    assert all(
        any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"]["conditions"])
        for n in nodes
    )


def test_a_dead_api_server_leaves_the_kubernetes_endpoints(cluster: Cluster) -> None:
    """Held stopped (SIGSTOP: the supervisor restarts what dies), the first API server's
    key expires and the other drops it from the `kubernetes` Service; back, it returns."""
    c = cluster
    one, two = servers(c)
    ip_one = one.split("//")[1].split(":")[0]

    def addresses() -> list[str]:
        ep = json.loads(on(c, two, "get", "endpoints", "kubernetes", "-o", "json").stdout)
        return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses", []))

    wait_for(lambda: ip_one in addresses(), what="both API servers listed")
    os.kill(pid(c, "apiserver"), signal.SIGSTOP)
    try:
        wait_for(lambda: ip_one not in addresses(), timeout=45, what="the stopped one dropped")
    finally:
        os.kill(pid(c, "apiserver"), signal.SIGCONT)
    wait_for(lambda: ip_one in addresses(), timeout=30, what="it is listed again")


def _ready_ips(c: Cluster, server: str) -> int | None:
    res = on(c, server, "get", "endpoints", "web", "-o", "json", check=False)
    if res.returncode:
        return None  # that server is restarting: not a flap of the Endpoints
    ep = json.loads(res.stdout)
    return sum(len(s.get("addresses") or []) for s in ep.get("subsets") or [])


def _stderr(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None or proc.stderr is None:
        return ""
    return proc.stderr.read()
