"""A self-healing cluster: `kill -9` each of its processes and the cluster repairs itself.

One 2-node cluster (unique name, its own KUBESVC_HOME and kubeconfig) is shared by the tests,
in this order: the controller-manager, a cluster DNS pod's process, a node agent (with a
half-made sandbox and an unrecorded process left behind), then the API server. After each,
the component must be back by itself and the cluster must work again: objects reconciled,
Endpoints and EndpointSlices correct, connections through ClusterIPs, DNS answers.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubesvc import netns
from kubesvc.node import sandbox
from tests.e2e.cluster import Cluster, deploy_netexec, pod_ready, running_cluster
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e

COME_BACK = 30.0  # generous: each comes back in well under a few seconds here


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("faults"), "f") as c:
        deploy_netexec(c, "web", 3)
        yield c


# -- helpers -------------------------------------------------------------------------------
def cdir(c: Cluster) -> Path:
    return c.home / c.name


def pid_of(c: Cluster, component: str) -> int:
    return int((cdir(c) / "pids" / f"{component}.pid").read_text())


def supervised(c: Cluster, component: str) -> dict[str, Any]:
    data = json.loads((cdir(c) / "supervisor.json").read_text())
    return dict(data["components"][component])


def kill9_and_wait(c: Cluster, component: str) -> tuple[int, float]:
    """SIGKILL the component's process (just it, as `kill -9 PID`); wait until the
    supervisor runs a new one. Returns the new pid and how long that took."""
    old = pid_of(c, component)
    restarts = supervised(c, component)["restarts"]
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)

    def back() -> int | None:
        st = supervised(c, component)
        new = pid_of(c, component)
        alive = Path(f"/proc/{new}").exists()
        ok = new != old and alive and st["state"] == "running" and st["pid"] == new
        return new if ok else None

    new = wait_for(back, timeout=COME_BACK, what=f"{component} started again")
    st = supervised(c, component)
    assert st["restarts"] == restarts + 1
    assert st["last_exit"] == "killed by SIGKILL"
    return int(new), time.monotonic() - t0


def curl(c: Cluster, pod: str, url: str) -> str:
    res = c.exec(pod, "curl", "-s", "--max-time", "3", url, check=False)
    return res.stdout if res.returncode == 0 else ""


def web_ips(c: Cluster) -> set[str]:
    return {
        p["status"]["podIP"]
        for p in c.pods("app=web")
        if pod_ready(p) and not p["metadata"].get("deletionTimestamp")
    }


def endpoint_ips(c: Cluster, svc: str) -> set[str]:
    ep = c.json("get", "endpoints", svc)
    return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}


def slice_ips(c: Cluster, svc: str) -> set[str]:
    slices = c.json("get", "endpointslices", "-l", f"kubernetes.io/service-name={svc}")
    return {
        a
        for s in slices["items"]
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready")
        for a in e.get("addresses") or []
    }


def endpoints_follow(c: Cluster, svc: str, want: set[str]) -> None:
    wait_for(
        lambda: endpoint_ips(c, svc) == want and slice_ips(c, svc) == want,
        timeout=COME_BACK,
        what=f"Endpoints and EndpointSlices of {svc} == {sorted(want)}",
    )


def through_cluster_ip(c: Cluster, svc: str, port: int = 80) -> None:
    ip = c.json("get", "svc", svc)["spec"]["clusterIP"]
    names = {p["metadata"]["name"] for p in c.pods("app=web")}
    wait_for(
        lambda: curl(c, "client", f"http://{ip}:{port}/hostname") in names,
        timeout=COME_BACK,
        what=f"client -> {svc} ({ip}:{port})",
    )


# -- the faults ----------------------------------------------------------------------------
def test_controller_manager_comes_back(cluster: Cluster) -> None:
    c = cluster
    kill9_and_wait(c, "controller-manager")
    # the dead one cannot have done this: a deleted pod is replaced and leaves the endpoints
    pods = c.running("app=web", 3)
    victim = pods[0]
    c.out("delete", "pod", victim["metadata"]["name"])
    fresh = c.running("app=web", 3)
    assert victim["metadata"]["name"] not in {p["metadata"]["name"] for p in fresh}
    ips = {p["status"]["podIP"] for p in fresh}
    assert victim["status"]["podIP"] not in ips
    endpoints_follow(c, "web", ips)
    through_cluster_ip(c, "web")


def test_dns_pod_process_comes_back(cluster: Cluster) -> None:
    """coredns pods run kubesvc's DNS server as their container: the node agent restarts it."""
    c = cluster

    def dns_pods() -> list[dict[str, Any]]:
        items = c.json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
        return items if len(items) == 2 and all(pod_ready(p) for p in items) else []

    pod = wait_for(dns_pods, timeout=COME_BACK, what="kube-dns pods ready")[0]
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    st = pod["status"]["containerStatuses"][0]
    pid = int(st["containerID"].split("://")[1])
    assert b"dns" in Path(f"/proc/{pid}/cmdline").read_bytes()
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        p = c.json("get", "pod", "-n", "kube-system", name)
        now = p["status"]["containerStatuses"][0]
        return now["restartCount"] == st["restartCount"] + 1 and pod_ready(p)

    wait_for(restarted, timeout=COME_BACK, what=f"{name} restarted and Ready")
    web_ip = c.json("get", "svc", "web")["spec"]["clusterIP"]

    def answers(server: str) -> bool:
        res = c.exec(
            "client",
            "dig",
            "+short",
            "+time=1",
            "+tries=1",
            f"@{server}",
            "web.default.svc.cluster.local",
            check=False,
        )
        return res.stdout.split() == [web_ip]

    wait_for(lambda: answers(ip), timeout=COME_BACK, what=f"the restarted {name} answers")
    wait_for(lambda: answers("10.96.0.10"), timeout=COME_BACK, what="kube-dns answers")


def test_node_agent_comes_back(cluster: Cluster) -> None:
    """The restarted agent adopts its pods (same processes, no second copy), removes what
    its previous incarnation left half done, heartbeats, and its kube-proxy programs new
    Services."""
    c = cluster
    client = c.json("get", "pod", "client")
    node = client["spec"]["nodeName"]
    on_node = {
        p["metadata"]["uid"]: p
        for p in c.json("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}")["items"]
    }
    before = {uid: p["status"]["containerStatuses"][0] for uid, p in on_node.items()}
    namespaces = set(netns.names(f"ksv-{c.name}-"))
    agent_pid = pid_of(c, node)

    # freeze the agent and leave what a crash mid-work leaves: a sandbox being created
    # (pod directory and network namespace, no sandbox.json yet) and a process in a pod
    # that no container of it started (a container not recorded yet, an exec session)
    os.kill(agent_pid, signal.SIGSTOP)
    half = "deadbeef-0000-4000-8000-" + secrets.token_hex(6)
    half_dir = cdir(c) / "nodes" / node / "pods" / half
    half_netns = f"ksv-{c.name}-p-{half[:8]}"
    stray = None
    try:
        (half_dir / "files").mkdir(parents=True)
        subprocess.run(["ip", "netns", "add", half_netns], check=True)
        client_netns = netns.NETNS_DIR / f"ksv-{c.name}-p-{client['metadata']['uid'][:8]}"
        stray = subprocess.Popen(
            ["nsenter", f"--net={client_netns}", "--", "sleep", "3600"], start_new_session=True
        )
        killed_at = datetime.now(UTC).replace(microsecond=0)
        new_pid, took = kill9_and_wait(c, node)
        agent = cdir(c) / "nodes" / node / "agent.json"
        wait_for(
            lambda: agent.exists() and json.loads(agent.read_text())["pid"] == new_pid,
            timeout=COME_BACK,
            what=f"{node}'s new agent took over",
        )
        wait_for(lambda: stray.poll() is not None, timeout=10, what="the stray process killed")
        assert not netns.exists(half_netns)
        assert not half_dir.exists()
    finally:
        if stray is not None and stray.poll() is None:
            stray.kill()
        if stray is not None:
            stray.wait()
        subprocess.run(["ip", "netns", "delete", half_netns], capture_output=True)

    # adopted, not restarted: same processes and restart counts; one copy each
    for uid, st in before.items():
        p = c.json("get", "pod", "-n", on_node[uid]["metadata"]["namespace"],
                   on_node[uid]["metadata"]["name"])  # fmt: skip
        now = p["status"]["containerStatuses"][0]
        assert now["containerID"] == st["containerID"]
        assert now["restartCount"] == st["restartCount"]
        pod_ns = netns.NETNS_DIR / f"ksv-{c.name}-p-{uid[:8]}"
        # the pod's pause (and the unshare that waits for it) are a session of their own
        pause = sandbox.pause_pid(sandbox.ns_files(c.name, uid)["mnt"])
        assert pause is not None, p["metadata"]["name"]
        sessions = {proc.session for proc in netns.processes_in([pod_ns])} - {os.getsid(pause)}
        assert len(sessions) == 1, (p["metadata"]["name"], sessions)
    assert set(netns.names(f"ksv-{c.name}-")) == namespaces

    # heartbeats again
    def renewed() -> bool:
        lease = c.json("get", "lease", "-n", "kube-node-lease", node)
        t = datetime.strptime(lease["spec"]["renewTime"][:19], "%Y-%m-%dT%H:%M:%S")
        n = c.json("get", "node", node)
        ready = any(
            x["type"] == "Ready" and x["status"] == "True" for x in n["status"]["conditions"]
        )
        return ready and t.replace(tzinfo=UTC) >= killed_at

    wait_for(renewed, timeout=COME_BACK, what=f"{node} Ready with a new heartbeat")
    # its kube-proxy: old Services still work, a Service created now is programmed too
    through_cluster_ip(c, "web")
    c.out("expose", "deployment", "web", "--name=after-agent", "--port=81", "--target-port=8080")
    through_cluster_ip(c, "after-agent", 81)
    assert took < COME_BACK


def test_apiserver_comes_back(cluster: Cluster) -> None:
    """Every informer (controllers, node agents' pods and kube-proxy, cluster DNS) resumes
    once the API server is back: changes made afterwards propagate everywhere."""
    c = cluster
    kill9_and_wait(c, "apiserver")
    wait_for(
        lambda: c.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
        timeout=COME_BACK,
        what="the API server answers",
    )
    c.out("scale", "deployment", "web", "--replicas=4")
    pods = c.running("app=web", 4)
    endpoints_follow(c, "web", {p["status"]["podIP"] for p in pods})
    c.out("expose", "deployment", "web", "--name=after-api", "--port=82", "--target-port=8080")
    through_cluster_ip(c, "after-api", 82)
    ip = c.json("get", "svc", "after-api")["spec"]["clusterIP"]
    wait_for(
        lambda: (
            c.exec("client", "getent", "hosts", "after-api", check=False).stdout.split()[:1] == [ip]
        ),
        timeout=COME_BACK,
        what="cluster DNS knows the new Service",
    )


def test_supervisor_killed_leaves_the_cluster_running_and_up_adopts_it(cluster: Cluster) -> None:
    """kill -9 of the supervisor: every component goes on serving; `kubesvc up` starts a new
    supervisor that adopts the running processes instead of starting second copies."""
    c = cluster
    components = ("apiserver", "controller-manager", f"{c.name}-node-1", f"{c.name}-node-2")
    before = {name: pid_of(c, name) for name in components}
    os.kill(pid_of(c, "supervisor"), signal.SIGKILL)
    wait_for(
        lambda: "degraded" in c.kubesvc("status", "--name", c.name).stdout,
        timeout=COME_BACK,
        what="status to say the cluster is degraded",
    )
    through_cluster_ip(c, "web")  # nothing it supervised went away
    c.kubesvc("up", "--name", c.name)
    assert "running" in c.kubesvc("status", "--name", c.name).stdout.splitlines()[0]
    assert {name: pid_of(c, name) for name in components} == before
    assert all(supervised(c, name)["pid"] == before[name] for name in components)
    # the new supervisor watches what it adopted: a component killed now comes back (the
    # exit of a process that is not its child is seen through a pidfd, without its status)
    old = before["controller-manager"]
    restarts = supervised(c, "controller-manager")["restarts"]
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: (
            (st := supervised(c, "controller-manager"))["pid"] != old
            and st["state"] == "running"
            and st["restarts"] == restarts + 1
            and st["last_exit"] == "exited"
        ),
        timeout=COME_BACK,
        what="the adopted controller-manager started again",
    )
