"""kube-proxy over a real 2-node cluster, in both modes: ClusterIP, NodePort, affinity,
REJECT without endpoints, traffic policies, hairpin, UDP, selectorless Services.

Clients are pods (kubectl exec) and the host shell for NodePorts (node addresses are on the
cluster's own bridge). No traffic leaves the cluster's namespaces and bridge.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import AGNHOST, Cluster, deploy_netexec, running_cluster
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e


# the proxy modes, and the same tests on a cluster whose objects are in etcd
@pytest.fixture(scope="module", params=["nftables", "iptables", "nftables-etcd"])
def proxied(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp(f"proxy-{request.param}")
    mode, _, store = request.param.partition("-")
    store_args = ["--store", store] if store else []
    with running_cluster(tmp, "p", "--proxy-mode", mode, *store_args) as c:
        deploy_netexec(c, "echo", 3, "--udp-port=8081")
        yield c


def _cluster_ip(c: Cluster, svc: str) -> str:
    return str(c.json("get", "svc", svc)["spec"]["clusterIP"])


def _hits(c: Cluster, url: str, n: int, pod: str = "client") -> list[str]:
    script = f"for i in $(seq {n}); do curl -s --max-time 2 {url}; echo; done"
    return [x for x in c.exec(pod, "sh", "-c", script).stdout.splitlines() if x]


def _node_ip(c: Cluster, node: str) -> str:
    n = c.json("get", "node", node)
    return next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")


def test_cluster_ip_spreads_and_is_not_pingable(proxied: Cluster) -> None:
    c = proxied
    ip = _cluster_ip(c, "echo")
    wait_for(lambda: _hits(c, f"http://{ip}/hostname", 1), timeout=15, what="first answer")
    hits = Counter(_hits(c, f"http://{ip}/hostname", 60))
    pods = {p["metadata"]["name"] for p in c.pods("app=echo")}
    assert set(hits) == pods, hits
    assert sum(hits.values()) == 60
    assert c.exec("client", "ping", "-c1", "-W1", ip, check=False).returncode != 0


def test_udp_through_cluster_ip(proxied: Cluster) -> None:
    c = proxied
    c.out(
        "apply",
        "-f",
        "-",
        input="""
apiVersion: v1
kind: Service
metadata: {name: echo-udp}
spec:
  selector: {app: echo}
  ports: [{port: 53, targetPort: 8081, protocol: UDP}]
""",
    )
    ip = _cluster_ip(c, "echo-udp")
    pods = {p["metadata"]["name"] for p in c.pods("app=echo")}

    def answer() -> str:
        res = c.exec(
            "client", "sh", "-c", f"echo hostname | timeout 3 nc -u -w1 {ip} 53", check=False
        )
        return res.stdout.strip()

    assert wait_for(answer, timeout=15, what="UDP answer") in pods


def test_session_affinity_on_and_off(proxied: Cluster) -> None:
    c = proxied
    ip = _cluster_ip(c, "echo")
    c.out("patch", "svc", "echo", "-p", '{"spec":{"sessionAffinity":"ClientIP"}}')
    time.sleep(1)
    hits = _hits(c, f"http://{ip}/hostname", 15)
    assert len(hits) == 15 and len(set(hits)) == 1, hits
    c.out("patch", "svc", "echo", "-p", '{"spec":{"sessionAffinity":"None"}}')
    time.sleep(1)
    assert len(set(_hits(c, f"http://{ip}/hostname", 30))) > 1


def test_no_endpoints_is_refused_at_once(proxied: Cluster) -> None:
    c = proxied
    c.out("create", "service", "clusterip", "nobody", "--tcp=80:8080")
    ip = _cluster_ip(c, "nobody")
    time.sleep(1)
    t0 = time.monotonic()
    res = c.exec("client", "curl", "-s", "--max-time", "5", f"http://{ip}/", check=False)
    assert res.returncode == 7  # couldn't connect: refused
    assert time.monotonic() - t0 < 4


def test_node_port_from_host_and_other_node(proxied: Cluster) -> None:
    c = proxied
    c.out("create", "service", "nodeport", "echo-np", "--tcp=80:8080")
    c.out("patch", "svc", "echo-np", "-p", '{"spec":{"selector":{"app":"echo"}}}')
    port = c.json("get", "svc", "echo-np")["spec"]["ports"][0]["nodePort"]
    pods = {p["metadata"]["name"] for p in c.pods("app=echo")}
    for node in (n["metadata"]["name"] for n in c.json("get", "nodes")["items"]):
        url = f"http://{_node_ip(c, node)}:{port}/hostname"
        got = wait_for(lambda u=url: _host_get(u), timeout=15, what=f"NodePort on {node}")
        assert got in pods


def _host_get(url: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def test_external_traffic_policy_local_keeps_source_and_health_checks(proxied: Cluster) -> None:
    c = proxied
    c.out(
        "apply",
        "-f",
        "-",
        input="""
apiVersion: v1
kind: Service
metadata: {name: echo-local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
""",
    )
    svc = c.json("get", "svc", "echo-local")
    port, hc = svc["spec"]["ports"][0]["nodePort"], svc["spec"]["healthCheckNodePort"]
    host_ip = c.json("get", "endpoints", "kubernetes")["subsets"][0]["addresses"][0]["ip"]
    by_node = Counter(p["spec"]["nodeName"] for p in c.pods("app=echo"))
    for node in by_node:
        ip = _node_ip(c, node)
        got = wait_for(
            lambda i=ip: _host_get(f"http://{i}:{port}/clientip"), timeout=15, what="Local NodePort"
        )
        assert got.split(":")[0] == host_ip  # not masqueraded
        health = json.loads(
            wait_for(lambda i=ip: _host_get(f"http://{i}:{hc}/"), timeout=15, what="health check")
        )
        assert health["localEndpoints"] == by_node[node]
        assert health["service"] == {"namespace": "default", "name": "echo-local"}


def test_internal_traffic_policy_local(proxied: Cluster) -> None:
    c = proxied
    c.out(
        "apply",
        "-f",
        "-",
        input="""
apiVersion: v1
kind: Service
metadata: {name: echo-itp}
spec:
  internalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
""",
    )
    ip = _cluster_ip(c, "echo-itp")
    client_node = c.json("get", "pod", "client")["spec"]["nodeName"]
    local = {
        p["metadata"]["name"] for p in c.pods("app=echo") if p["spec"]["nodeName"] == client_node
    }
    time.sleep(1)
    hits = set(_hits(c, f"http://{ip}/hostname", 20))
    if local:
        assert hits == local
    else:
        assert hits == set()


def test_pod_source_ip_kept_and_hairpin(proxied: Cluster) -> None:
    c = proxied
    ip = _cluster_ip(c, "echo")
    client_ip = c.json("get", "pod", "client")["status"]["podIP"]
    seen = _hits(c, f"http://{ip}/clientip", 5)
    assert seen and all(s.split(":")[0] == client_ip for s in seen)
    c.out(
        "apply",
        "-f",
        "-",
        input="""
apiVersion: v1
kind: Service
metadata: {name: self}
spec:
  selector: {statefulness: self}
  ports: [{port: 80, targetPort: 8080}]
""",
    )
    pod = c.pods("app=echo")[0]["metadata"]["name"]
    c.out("label", "pod", pod, "statefulness=self")
    self_ip = _cluster_ip(c, "self")
    got = wait_for(
        lambda: _hits(c, f"http://{self_ip}/hostname", 3, pod=pod), timeout=15, what="hairpin"
    )
    assert set(got) == {pod}


def test_selectorless_service_reaches_server_outside_pod_network(
    proxied: Cluster, tmp_path: Path
) -> None:
    c = proxied
    host_ip = c.json("get", "endpoints", "kubernetes")["subsets"][0]["addresses"][0]["ip"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"outside"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host_ip, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        c.out(
            "apply",
            "-f",
            "-",
            input=f"""
apiVersion: v1
kind: Service
metadata: {{name: outside}}
spec:
  ports: [{{port: 80, targetPort: {port}}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: outside}}
subsets:
- addresses: [{{ip: {host_ip}}}]
  ports: [{{port: {port}}}]
""",
        )
        ip = _cluster_ip(c, "outside")
        got = wait_for(lambda: _hits(c, f"http://{ip}/", 1), timeout=15, what="outside server")
        assert got == ["outside"]
    finally:
        server.shutdown()


def test_scale_to_zero_refuses_and_proxy_name_label_is_ignored(proxied: Cluster) -> None:
    c = proxied
    c.out(
        "create",
        "deployment",
        "gone",
        f"--image={AGNHOST}",
        "--replicas=1",
        "--",
        "/agnhost",
        "netexec",
        "--http-port=8080",
    )
    c.out("expose", "deployment", "gone", "--port=80", "--target-port=8080")
    c.running("app=gone", 1)
    ip = _cluster_ip(c, "gone")
    wait_for(lambda: _hits(c, f"http://{ip}/hostname", 1), timeout=15, what="answer")
    c.out("scale", "deployment", "gone", "--replicas=0")
    wait_for(lambda: not c.pods("app=gone"), timeout=30, what="scaled to zero")

    def refused() -> bool:
        res = c.exec("client", "curl", "-s", "--max-time", "3", f"http://{ip}/", check=False)
        return res.returncode == 7

    wait_for(refused, timeout=15, what="connection refused")
    c.out("label", "svc", "echo", "service.kubernetes.io/service-proxy-name=other")
    echo_ip = _cluster_ip(c, "echo")

    def ignored() -> bool:
        res = c.exec(
            "client", "curl", "-s", "--max-time", "2", f"http://{echo_ip}/hostname", check=False
        )
        return res.returncode != 0

    wait_for(ignored, timeout=15, what="labelled service ignored")
    c.out("label", "svc", "echo", "service.kubernetes.io/service-proxy-name-")
