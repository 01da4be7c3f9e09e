"""A real cluster: `kubesvc up` with 2 nodes, pods as processes in network namespaces.

Runs as root. Everything lives in namespaces this test creates (a unique cluster name) and
`kubesvc down` must leave nothing behind.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import AGNHOST, Cluster, pod_ready, running_cluster
from tests.e2e.harness import KUBECTL, wait_for

pytestmark = pytest.mark.e2e


# the same tests on the default SQLite store and on etcd (`kubesvc up --store etcd`)
@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    store = ["--store", "etcd"] if request.param == "etcd" else []
    with running_cluster(tmp_path_factory.mktemp("kubesvc"), "e", *store) as c:
        yield c


SERVICE_BEFORE = """
apiVersion: v1
kind: Service
metadata: {name: early-svc}
spec:
  selector: {app: none}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


@pytest.fixture(scope="module")
def web(cluster: Cluster) -> Cluster:
    """A Service created before any pod, and a 3-replica agnhost netexec Deployment."""
    cluster.out("apply", "-f", "-", input=SERVICE_BEFORE)
    cluster.out(
        "create",
        "deployment",
        "web",
        f"--image={AGNHOST}",
        "--replicas=3",
        "--",
        "/agnhost",
        "netexec",
        "--http-port=8080",
        "--udp-port=8081",
    )
    cluster.running("app=web", 3)
    return cluster


def test_deployment_spreads_and_pods_reach_each_other(web: Cluster) -> None:
    cluster = web
    pods = cluster.running("app=web", 3)
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert len(nodes) == 2, nodes
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}

    def run(src: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return cluster.exec(src, *cmd, check=False)

    for src in ips:
        for dst, ip in ips.items():
            # a first packet can be lost to neighbour discovery: allow a retry, not a failure
            wait_for(
                lambda s=src, i=ip, d=dst: (
                    run(s, "curl", "-s", "--max-time", "3", f"http://{i}:8080/hostname").stdout == d
                ),
                timeout=10,
                what=f"TCP {src} -> {dst}",
            )
            wait_for(
                lambda s=src, i=ip: run(s, "ping", "-c1", "-W2", i).returncode == 0,
                timeout=10,
                what=f"ping {src} -> {dst}",
            )
            wait_for(
                lambda s=src, i=ip, d=dst: (
                    run(
                        s, "sh", "-c", f"echo hostname | timeout 3 nc -u -w1 {i} 8081"
                    ).stdout.strip()
                    == d
                ),
                timeout=10,
                what=f"UDP {src} -> {dst}",
            )


def test_env_hostname_and_resolv_conf(web: Cluster) -> None:
    cluster = web
    cluster.out("run", "envpod", "--image=busybox", "--command", "--", "sleep", "3600")
    cluster.running("run=envpod", 1)
    cluster.out("create", "service", "clusterip", "late-svc", "--tcp=80:8080")
    env = cluster.exec("envpod", "env").stdout
    svc = cluster.json("get", "svc", "early-svc")
    assert f"EARLY_SVC_SERVICE_HOST={svc['spec']['clusterIP']}" in env
    assert "EARLY_SVC_SERVICE_PORT=80" in env
    assert f"EARLY_SVC_PORT=tcp://{svc['spec']['clusterIP']}:80" in env
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in env
    assert "LATE_SVC" not in env
    assert cluster.exec("envpod", "hostname").stdout.strip() == "envpod"
    resolv = cluster.exec("envpod", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.96.0.10" in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv
    hosts = cluster.exec("envpod", "cat", "/etc/hosts").stdout
    assert hosts.startswith("# Kubernetes-managed hosts file.")


def test_killed_process_restarts_and_deleted_pod_gets_new_ip(web: Cluster) -> None:
    cluster = web
    pods = cluster.running("app=web", 3)
    victim = pods[0]
    cid = victim["status"]["containerStatuses"][0]["containerID"]
    pid = int(cid.split("://")[1])
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        p = cluster.json("get", "pod", victim["metadata"]["name"])
        st = p["status"]["containerStatuses"][0]
        return st["restartCount"] >= 1 and pod_ready(p)

    wait_for(restarted, timeout=30, what="restart after SIGKILL")
    old_ip = pods[1]["status"]["podIP"]
    cluster.out("delete", "pod", pods[1]["metadata"]["name"])
    fresh = cluster.running("app=web", 3)
    names = {p["metadata"]["name"] for p in fresh}
    assert pods[1]["metadata"]["name"] not in names
    new = [p for p in fresh if p["metadata"]["name"] not in {q["metadata"]["name"] for q in pods}]
    assert new and new[0]["status"]["podIP"] != old_ip


def test_logs_exec_port_forward(web: Cluster) -> None:
    cluster = web
    pod = cluster.running("app=web", 3)[0]["metadata"]["name"]
    cluster.exec(pod, "curl", "-s", "http://127.0.0.1:8080/echo?msg=marker123")
    logs = cluster.out("logs", pod)
    assert "/echo" in logs
    res = cluster.kubectl("exec", "-i", pod, "--", "cat", input="through stdin\n")
    assert res.stdout == "through stdin\n"
    assert cluster.exec(pod, "sh", "-c", "exit 3", check=False).returncode == 3
    proc = subprocess.Popen(
        [KUBECTL, "port-forward", f"pod/{pod}", "18080:8080"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        wait_for(
            lambda: "Forwarding" in (proc.stdout.readline() or ""), timeout=15, what="port-forward"
        )
        got = subprocess.run(
            ["curl", "-s", "--max-time", "5", "http://127.0.0.1:18080/hostname"],
            capture_output=True,
            text=True,
        ).stdout
        assert got == pod
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_node_agent_restart_keeps_pods(web: Cluster) -> None:
    cluster = web
    pods = cluster.running("app=web", 3)
    node = pods[0]["spec"]["nodeName"]
    pidfile = cluster.home / cluster.name / "pids" / f"{node}.pid"
    pid = int(pidfile.read_text())
    os.killpg(pid, signal.SIGKILL)
    # the cluster's supervisor starts the agent again; it adopts the running pods
    agent = cluster.home / cluster.name / "nodes" / node / "agent.json"
    wait_for(
        lambda: (
            int(pidfile.read_text()) != pid
            and agent.exists()
            and json.loads(agent.read_text())["pid"] == int(pidfile.read_text())
        ),
        timeout=30,
        what=f"{node}'s agent started again",
    )
    time.sleep(3)
    after = cluster.running("app=web", 3)
    before = {p["metadata"]["name"]: p["status"]["containerStatuses"][0] for p in pods}
    for p in after:
        st = p["status"]["containerStatuses"][0]
        assert st["restartCount"] == before[p["metadata"]["name"]]["restartCount"]
        assert st["containerID"] == before[p["metadata"]["name"]]["containerID"]


def test_down_leaves_nothing(tmp_path: Path) -> None:
    name = "d" + secrets.token_hex(3)
    env = dict(
        os.environ,
        KUBESVC_HOME=str(tmp_path / "home"),
        KUBECONFIG=str(tmp_path / "kubeconfig"),
        KUBECACHEDIR=str(tmp_path / "cache"),
    )
    c = Cluster(name, env, tmp_path / "home")
    try:
        c.kubesvc("up", "--name", name, "--nodes", "2")
        c.out("run", "p", "--image=busybox", "--command", "--", "sleep", "3600")
        c.running("run=p", 1)
    finally:
        c.kubesvc("down", "--name", name)
    netns_left = (
        [n for n in os.listdir("/run/netns") if n.startswith(f"ksv-{name}-")]
        if os.path.isdir("/run/netns")
        else []
    )
    assert netns_left == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"/run/kubesvc/{name}" not in mounts
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    from kubesvc.node.netplan import short_hash

    assert f"ksb-{short_hash(name, 5)}" not in links and f"kn{short_hash(name, 5)}" not in links
    procs = subprocess.run(["pgrep", "-f", f"--cluster {name} "], capture_output=True, text=True)
    assert procs.stdout.strip() == ""
    assert not (tmp_path / "home" / name).exists()


def test_exec_interactive_tty(web: Cluster) -> None:
    cluster = web
    """`kubectl exec -it` with a real terminal: a shell prompt, a command, its exit code."""
    import pty
    import select

    pod = cluster.running("app=web", 3)[0]["metadata"]["name"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [KUBECTL, "exec", "-it", pod, "--", "sh"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cluster.env,
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    try:
        os.write(master, b"echo $((6*7)); hostname; exit 5\n")
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
        assert proc.wait(timeout=10) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = out.decode(errors="replace")
    assert "42" in text and pod in text


PROBED = """
apiVersion: v1
kind: Pod
metadata: {name: probed, labels: {probe: "yes"}}
spec:
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: [netexec, --http-port=8080]
    startupProbe: {exec: {command: [sh, -c, "true"]}, periodSeconds: 1}
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
    livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: never-ready, labels: {probe: "no"}}
spec:
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: [netexec, --http-port=8080]
    readinessProbe: {httpGet: {path: /healthz, port: 9999}, periodSeconds: 1}
    livenessProbe: {tcpSocket: {port: 9998}, periodSeconds: 1, failureThreshold: 2}
"""


def test_probes_run_inside_the_pod_network(cluster: Cluster) -> None:
    cluster.out("apply", "-f", "-", input=PROBED)
    cluster.running("probe=yes", 1)

    def restarted_and_unready() -> bool:
        pod = cluster.json("get", "pod", "never-ready")
        st = (pod["status"].get("containerStatuses") or [{}])[0]
        return st.get("restartCount", 0) >= 1 and not pod_ready(pod)

    wait_for(restarted_and_unready, timeout=40, what="liveness restart of never-ready")
    events = cluster.out("get", "events", "--field-selector", "involvedObject.name=never-ready")
    assert "Readiness probe failed" in events and "Liveness probe failed" in events


def _dns_ready(cluster: Cluster) -> None:
    def ready() -> bool:
        pods = cluster.json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
        return len(pods) == 2 and all(pod_ready(p) for p in pods)

    wait_for(ready, timeout=30, what="kube-dns pods ready")


def test_cluster_dns_from_pods(web: Cluster) -> None:
    cluster = web
    cluster.out("run", "dnsclient", "--image=busybox", "--command", "--", "sleep", "3600")
    cluster.running("run=dnsclient", 1)
    _dns_ready(cluster)
    cluster.out("expose", "deployment", "web", "--name=web-dns", "--port=80", "--target-port=8080")
    cluster.out(
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=web-dns.default.svc.cluster.local",
    )
    pods = {p["metadata"]["name"] for p in cluster.pods("app=web")}
    for name in ("web-dns", "web-dns.default", "web-dns.default.svc.cluster.local"):
        got = wait_for(
            lambda n=name: (
                cluster.exec(
                    "dnsclient",
                    "curl",
                    "-s",
                    "--max-time",
                    "3",
                    f"http://{n}/hostname",
                    check=False,
                ).stdout
            ),
            timeout=15,
            what=f"curl http://{name}",
        )
        assert got in pods
    ip = cluster.json("get", "svc", "web-dns")["spec"]["clusterIP"]
    assert cluster.exec("dnsclient", "getent", "hosts", "web-dns").stdout.split()[0] == ip
    cname = cluster.exec(
        "dnsclient", "dig", "+short", "ext.default.svc.cluster.local"
    ).stdout.split()
    assert cname[:2] == ["web-dns.default.svc.cluster.local.", ip]
    # DNS keeps working when a kube-dns pod is replaced
    victim = cluster.json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"][0]
    cluster.out("-n", "kube-system", "delete", "pod", victim["metadata"]["name"])
    _dns_ready(cluster)
    for _ in range(5):
        assert cluster.exec("dnsclient", "getent", "hosts", "web-dns").stdout.split()[0] == ip
