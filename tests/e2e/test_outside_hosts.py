"""Hosts outside the cluster and nodes that fail, on a real 2-node cluster.

`kubesvc host` namespaces on the nodes' LAN reach NodePorts and nothing else; a selectorless
Service sends pods to a server on such a host; client source IPs with externalTrafficPolicy
Local and Cluster; `kubesvc node stop` takes a node off the network, the control plane marks
it unreachable and evicts what does not tolerate that, and `node start` brings it back. The
tests share one cluster and run in order; the last one stops, starts and removes it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesvc import netns
from kubesvc.node.netplan import ClusterNet
from tests.e2e.cluster import AGNHOST, Cluster, deploy_netexec, pod_ready, running_cluster
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e

GRACE = 15  # --node-monitor-grace-period: more than the agents' 10 s lease renewal
TOLERATION = 5  # --default-unreachable-toleration-seconds


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-hosts-", dir="/tmp"))
    try:
        with running_cluster(
            tmp,
            "oh",
            "--node-monitor-grace-period",
            str(GRACE),
            "--default-unreachable-toleration-seconds",
            str(TOLERATION),
            "--default-not-ready-toleration-seconds",
            str(TOLERATION),
        ) as c:
            deploy_netexec(c, "web", 2)
            c.out("expose", "deployment", "web", "--name=web-np", "--type=NodePort",
                  "--port=80", "--target-port=8080")  # fmt: skip
            yield c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def net(c: Cluster) -> ClusterNet:
    state = json.loads((c.home / c.name / "cluster.json").read_text())
    return ClusterNet(c.name, state["node_cidr"])


def node(c: Cluster, i: int) -> str:
    return f"{c.name}-node-{i}"


def host(c: Cluster, name: str, *cmd: str, input: str | None = None, timeout: float = 20) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "kubesvc.cli.main", "host", "exec", name, "--name", c.name,
         "--", *cmd],
        env=c.env, input=input, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def curl(c: Cluster, hostname: str, url: str) -> Any:
    return host(c, hostname, "curl", "-s", "-m", "3", url)


def node_port(c: Cluster, svc: str) -> int:
    return int(c.out("get", "svc", svc, "-o", "jsonpath={.spec.ports[0].nodePort}"))


def test_hosts_are_added_listed_run_commands_and_removed(cluster: Cluster) -> None:
    c, plan = cluster, net(cluster)
    for name in ("laptop", "db", "spare"):
        out = c.kubesvc("host", "add", name, "--name", c.name).stdout
        assert plan.outside_host_ip(["laptop", "db", "spare"].index(name)) in out
    listing = c.kubesvc("host", "list", "--name", c.name).stdout
    assert plan.outside_host_ip(0) in listing and plan.outside_host_ip(1) in listing
    # exit codes and stdin pass through
    assert host(c, "laptop", "sh", "-c", "exit 3").returncode == 3
    assert host(c, "laptop", "cat", input="hello\n").stdout == "hello\n"
    # like a laptop on the nodes' LAN: the node network's own route and nothing else
    routes = [r.strip() for r in host(c, "laptop", "ip", "-4", "route").stdout.splitlines()]
    assert routes == [
        f"{plan.node_cidr} dev eth0 proto kernel scope link src {plan.outside_host_ip(0)}"
    ]
    assert host(c, "laptop", "ping", "-c1", "-W2", plan.node_ip(0)).returncode == 0
    # names and duplicates are refused; a removed host is gone with its namespace
    assert c.kubesvc("host", "add", "laptop", "--name", c.name, check=False).returncode == 1
    assert c.kubesvc("host", "add", "Bad_Name", "--name", c.name, check=False).returncode == 2
    c.kubesvc("host", "rm", "spare", "--name", c.name)
    assert not netns.exists(plan.outside_host_netns("spare"))
    assert "spare" not in c.kubesvc("host", "list", "--name", c.name).stdout
    assert host(c, "spare", "true").returncode == 1


def test_a_host_reaches_node_ports_but_not_cluster_or_pod_ips(cluster: Cluster) -> None:
    c, plan = cluster, net(cluster)
    port = node_port(c, "web-np")
    for i in range(2):
        res = curl(c, "laptop", f"http://{plan.node_ip(i)}:{port}/hostname")
        assert res.returncode == 0 and res.stdout.startswith("web-"), res
    cluster_ip = c.out("get", "svc", "web-np", "-o", "jsonpath={.spec.clusterIP}")
    pod_ip = c.pods("app=web")[0]["status"]["podIP"]
    for addr in (f"{cluster_ip}:80", f"{pod_ip}:8080"):
        res = curl(c, "laptop", f"http://{addr}/hostname")
        assert res.returncode == 7, res  # no route: it fails at once
        assert res.stdout == ""


SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"db on a host, client {self.client_address[0]}".encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer((sys.argv[1], 5432), H).serve_forever()
"""


def test_a_selectorless_service_reaches_a_server_on_a_host(cluster: Cluster) -> None:
    c, plan = cluster, net(cluster)
    db_ip = plan.outside_host_ip(1)
    server = subprocess.Popen(
        [sys.executable, "-m", "kubesvc.cli.main", "host", "exec", "db", "--name", c.name,
         "--", "python3", "-c", SERVER, db_ip],
        env=c.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: curl(c, "laptop", f"http://{db_ip}:5432/").returncode == 0,
            what="the server on host db",
        )
        c.out("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "extdb"},
                 "spec": {"ports": [{"port": 5432, "targetPort": 5432}]}},
                {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "extdb"},
                 "subsets": [{"addresses": [{"ip": db_ip}], "ports": [{"port": 5432}]}]},
            ]}))  # fmt: skip
        cluster_ip = c.out("get", "svc", "extdb", "-o", "jsonpath={.spec.clusterIP}")
        node_ips = {plan.node_ip(0), plan.node_ip(1)}
        for url in ("http://extdb:5432/", f"http://{cluster_ip}:5432/"):
            out = wait_for(
                lambda url=url: (
                    c.exec("client", "wget", "-qO-", "-T", "3", url, check=False).stdout
                ),
                what=f"{url} from a pod",
            )
            assert out.startswith("db on a host, client "), out
            # the pod's address is masqueraded to its node's: the host has no route back to pods
            assert out.rsplit(" ", 1)[1] in node_ips, out
    finally:
        server.kill()
        server.wait()
        c.kubectl("delete", "svc,endpoints", "extdb", check=False)


def test_client_source_ip_with_local_and_cluster_policies(cluster: Cluster) -> None:
    c, plan = cluster, net(cluster)
    c.out("create", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "echo"}},
                 "template": {"metadata": {"labels": {"app": "echo"}}, "spec": {
                     "nodeSelector": {"kubernetes.io/hostname": node(c, 2)},
                     "containers": [{"name": "echo", "image": AGNHOST,
                                     "args": ["netexec", "--http-port=8080"]}]}}}}))  # fmt: skip
    c.out("expose", "deployment", "echo", "--type=NodePort", "--port=80", "--target-port=8080")
    try:
        c.running("app=echo", 1)
        port = node_port(c, "echo")

        def client_ip(via: int) -> str:
            res = curl(c, "laptop", f"http://{plan.node_ip(via)}:{port}/clientip")
            return str(res.stdout).rsplit(":", 1)[0] if res.returncode == 0 else ""

        # Cluster: the node that took the connection masquerades it (the pod is on the other)
        assert wait_for(lambda: client_ip(0), what="echo via node 1") == plan.node_ip(0)
        c.out("patch", "svc", "echo", "-p", '{"spec":{"externalTrafficPolicy":"Local"}}')
        # Local: the pod's own node delivers it with the client's address
        wait_for(
            lambda: client_ip(1) == plan.outside_host_ip(0),
            what="the laptop's own address with externalTrafficPolicy Local",
        )
    finally:
        c.kubectl("delete", "deployment,svc", "echo", check=False)


def test_a_node_agent_reports_again_what_others_overwrote(cluster: Cluster) -> None:
    """A lease renewed late makes the node controller mark a healthy node's pods not Ready;
    their agent reports them Ready again (the kubelet's status manager reconciles too), or
    their endpoints would stay gone."""
    c = cluster
    pod = c.pods("app=web")[0]["metadata"]["name"]
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    c.out("patch", "pod", pod, "--subresource=status", "-p", json.dumps(not_ready))
    wait_for(lambda: pod_ready(c.json("get", "pod", pod)), what=f"{pod} Ready again")
    c.running("app=web", 2)


def test_a_stopped_node_goes_dark_is_marked_unreachable_and_its_pods_evicted(
    cluster: Cluster,
) -> None:
    c, plan = cluster, net(cluster)
    n1, n2 = node(c, 1), node(c, 2)
    # a pod that tolerates an unreachable node for good stays bound to it
    c.out("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stay"},
        "spec": {"nodeName": n2,
                 "tolerations": [{"key": "node.kubernetes.io/unreachable",
                                  "operator": "Exists", "effect": "NoExecute"}],
                 "containers": [{"name": "c", "image": AGNHOST, "args": ["pause"]}]}}))  # fmt: skip
    c.running("app=web", 2)
    wait_for(lambda: pod_ready(c.json("get", "pod", "stay")), what="pod stay Ready")
    web_on_n2 = [p["metadata"]["name"] for p in c.pods("app=web") if p["spec"]["nodeName"] == n2]
    assert web_on_n2, "the scheduler spreads web over both nodes"
    port = node_port(c, "web-np")
    try:
        c.kubesvc("node", "stop", n2, "--name", c.name)
        assert n2 in c.kubesvc("node", "list", "--name", c.name).stdout
        assert "node stopped" in c.kubesvc("status", "--name", c.name).stdout
        link = subprocess.run(["ip", "-o", "link", "show", plan.node_veth(n2)],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert "state DOWN" in link
        assert curl(c, "laptop", f"http://{plan.node_ip(1)}:{port}/hostname").returncode != 0
        # (until the node is marked, the other node still sends some connections to the pod
        # on the stopped one, as upstream's kube-proxy does: those time out)

        def unreachable() -> bool:
            n = c.json("get", "node", n2)
            ready = [x for x in n["status"]["conditions"] if x["type"] == "Ready"]
            taints = {(t["key"], t["effect"]) for t in n["spec"].get("taints") or []}
            return ready[0]["status"] == "Unknown" and taints == {
                ("node.kubernetes.io/unreachable", "NoSchedule"),
                ("node.kubernetes.io/unreachable", "NoExecute"),
            }

        wait_for(unreachable, timeout=GRACE + 20, what=f"{n2} unreachable and tainted")
        # evicted after tolerationSeconds, replaced on the node that is left
        wait_for(
            lambda: all(
                c.json("get", "pod", p)["metadata"].get("deletionTimestamp") for p in web_on_n2
            ),
            timeout=TOLERATION + 15,
            what="the web pods on the stopped node evicted",
        )
        events = c.out("get", "events", "--field-selector", "reason=TaintManagerEviction")
        assert f"Marking for deletion Pod default/{web_on_n2[0]}" in events
        pods = c.running("app=web", 2)
        assert {p["spec"]["nodeName"] for p in pods} == {n1}
        ips = {p["status"]["podIP"] for p in pods}
        wait_for(
            lambda: set(c.out("get", "endpoints", "web-np", "-o",
                              "jsonpath={.subsets[*].addresses[*].ip}").split()) == ips,
            what="endpoints of the pods on the node that is left",
        )  # fmt: skip
        for _ in range(5):  # every connection via the node that is left is answered now
            res = curl(c, "laptop", f"http://{plan.node_ip(0)}:{port}/hostname")
            assert res.returncode == 0 and res.stdout.startswith("web-"), res
        assert curl(c, "laptop", f"http://{plan.node_ip(1)}:{port}/hostname").returncode != 0
        stay = c.json("get", "pod", "stay")
        assert not stay["metadata"].get("deletionTimestamp") and not pod_ready(stay)
    finally:
        c.kubesvc("node", "start", n2, "--name", c.name)
    # back: Ready and untainted, the evicted pods' deletion finished, the pod that stayed
    # runs again (its container died with the node: a restart), NodePorts answer again
    wait_for(lambda: not c.json("get", "node", n2)["spec"].get("taints"), timeout=30,
             what=f"{n2} untainted")  # fmt: skip
    wait_for(lambda: not [p for p in c.pods("app=web") if p["spec"]["nodeName"] == n2],
             timeout=30, what="the evicted pods gone")  # fmt: skip

    def stay_restarted() -> bool:
        p = c.json("get", "pod", "stay")
        return pod_ready(p) and p["status"]["containerStatuses"][0]["restartCount"] >= 1

    wait_for(stay_restarted, timeout=30, what="pod stay running again")
    res = wait_for(
        lambda: curl(c, "laptop", f"http://{plan.node_ip(1)}:{port}/hostname").returncode == 0,
        what=f"the NodePort via {n2}",
    )
    assert res
    c.kubectl("delete", "pod", "stay", "--wait=false", check=False)


def test_stop_and_start_bring_hosts_back_and_down_removes_them(cluster: Cluster) -> None:
    c, plan = cluster, net(cluster)
    c.kubesvc("stop", "--name", c.name)
    assert not netns.names(plan.netns_prefix)
    c.kubesvc("start", "--name", c.name)
    assert netns.exists(plan.outside_host_netns("laptop"))
    assert plan.outside_host_ip(0) in host(c, "laptop", "ip", "-4", "addr").stdout
    port = node_port(c, "web-np")
    wait_for(
        lambda: curl(c, "laptop", f"http://{plan.node_ip(0)}:{port}/hostname").returncode == 0,
        timeout=30,
        what="the NodePort from the laptop after start",
    )
    c.kubesvc("down", "--name", c.name)
    assert not netns.names(plan.netns_prefix)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"kh{plan.id}" not in links and plan.bridge not in links
