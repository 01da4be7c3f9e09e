"""`kubesvc trace` against a live cluster, in both proxy modes: the pod it names as the
one that answered is the one that did, and a failed request says why from what the
kernel did."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, deploy_netexec, running_cluster


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    mode = request.param
    with running_cluster(
        tmp_path_factory.mktemp(f"trace-{mode}"), "trc", "--proxy-mode", mode
    ) as c:
        deploy_netexec(c, "web", 2)
        c.out("create", "service", "clusterip", "empty", "--tcp=80:8080")
        client_node = c.json("get", "pod", "client")["spec"]["nodeName"]
        other = next(
            n for n in c.json("get", "nodes")["items"] if n["metadata"]["name"] != client_node
        )
        c.kubectl("apply", "-f", "-", input=_EXTRA.replace("OTHER_NODE", other["metadata"]["name"]))
        c.out(
            "expose",
            "deployment",
            "web",
            "--name=webnp",
            "--type=NodePort",
            "--port=80",
            "--target-port=8080",
        )
        c.kubesvc("host", "add", "laptop", "--name", c.name)
        c.out("create", "ingress", "webing", "--rule=echo.example.com/*=web:80")
        c.out(
            "expose",
            "deployment",
            "web",
            "--name=weblb",
            "--type=LoadBalancer",
            "--port=80",
            "--target-port=8080",
        )
        c.running("app=solo", 1)
        yield c


_EXTRA = """
apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec:
  nodeName: OTHER_NODE
  containers:
  - {name: a, image: "registry.k8s.io/e2e-test-images/agnhost:2.47", args: [netexec]}
---
apiVersion: v1
kind: Service
metadata: {name: solo-local}
spec:
  selector: {app: solo}
  internalTrafficPolicy: Local
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: never, labels: {app: never}}
spec:
  containers:
  - name: a
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: [netexec, --http-port=8080]
    readinessProbe: {exec: {command: ["false"]}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: never}
spec:
  selector: {app: never}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: alias}
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
"""


def _trace(c: Cluster, target: str, *args: str) -> tuple[int, Any]:
    res = c.kubesvc(
        "trace", "--name", c.name, "--from", "client", target, "-o", "json", *args, check=False
    )
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads(res.stdout)


def _step(doc: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [s for s in doc["steps"] if s["title"].startswith(prefix)]


def test_the_pod_named_is_the_pod_that_answered(cluster: Cluster) -> None:
    for _ in range(6):
        rc, doc = _trace(cluster, "web/hostname")
        assert rc == 0 and doc["ok"], doc
        answer = _step(doc, "Answer")[0]
        assert answer["status"] == "HTTP/1.1 200 OK"
        # agnhost's /hostname is the pod's own name: the trace's endpoint must be that pod
        assert doc["answeredBy"] == f"default/{answer['body']}"
        conntrack = _step(doc, "Endpoint chosen")[0]["conntrack"]
        pod = cluster.json("get", "pod", answer["body"])
        assert conntrack["reply"]["src"] == pod["status"]["podIP"]
        assert (
            conntrack["original"]["dst"] == cluster.json("get", "svc", "web")["spec"]["clusterIP"]
        )
        # the DNS step went through the search list to the Service's name
        queries = _step(doc, "DNS")[0]["queries"]
        assert (
            queries[-1]["name"] == "web.default.svc.cluster.local."
            and queries[-1]["rcode"] == "NOERROR"
        )
        # the source node's rules include the DNAT that chose it
        rules = _step(doc, "kube-proxy rules on")[0]
        dnat = [
            e
            for e in rules.get("events", [])
            if e["kind"] == "rule" and e["text"].startswith("dnat")
        ] or [r for r in rules.get("rules", []) if "-j DNAT" in r[1]]
        assert dnat, rules
    text = cluster.kubesvc(
        "trace", "--name", cluster.name, "--from", "client", "web/hostname"
    ).stdout
    body = next(line.split("body: ", 1)[1] for line in text.splitlines() if "body: " in line)
    assert text.rstrip().endswith(f"OK: answered by default/{body}")


def test_from_a_node(cluster: Cluster) -> None:
    node = cluster.json("get", "pod", "client")["spec"]["nodeName"]
    res = cluster.kubesvc(
        "trace", "--name", cluster.name, "--from", f"node/{node}",
        "web.default.svc.cluster.local/hostname", "-o", "json",
    )  # fmt: skip
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["answeredBy"] == f"default/{_step(doc, 'Answer')[0]['body']}"


def test_a_name_that_does_not_resolve(cluster: Cluster) -> None:
    rc, doc = _trace(cluster, "nosuch")
    assert rc == 1 and not doc["ok"]
    names = [q["name"] for q in _step(doc, "DNS")[0]["queries"]]
    assert names == [
        "nosuch.default.svc.cluster.local.",
        "nosuch.svc.cluster.local.",
        "nosuch.cluster.local.",
        "nosuch.",
    ]
    assert "nosuch does not resolve" in doc["why"][0]


def test_a_service_without_endpoints_is_rejected_by_the_proxy(cluster: Cluster) -> None:
    rc, doc = _trace(cluster, "empty")
    assert rc == 1
    assert doc["why"] == [
        "default/empty has no ready endpoints (no pod matches its selector): the proxy rejected"
    ]
    assert _step(doc, "Answer")[0]["error"] == "connection refused"


def test_a_port_the_service_does_not_have(cluster: Cluster) -> None:
    rc, doc = _trace(cluster, "web:81")
    assert rc == 1
    assert doc["why"][0].endswith("default/web has no port 81")


def test_a_target_outside_the_cluster_is_not_sent(cluster: Cluster) -> None:
    rc, doc = _trace(cluster, "192.0.2.1:80")
    assert rc == 1
    assert "outside the cluster" in _step(doc, "Answer")[0]["error"]


def test_an_unready_endpoint_is_named(cluster: Cluster) -> None:
    rc, doc = _trace(cluster, "never")
    assert rc == 1
    assert doc["why"] == [
        "default/never has no ready endpoints (its endpoints are not ready: never): "
        "the proxy rejected"
    ]
    assert any(
        "(never on " in line and "NOT ready" in line for line in _step(doc, "Service")[0]["lines"]
    )


def test_a_local_policy_without_a_local_endpoint_drops(cluster: Cluster) -> None:
    rc, doc = _trace(cluster, "solo-local")
    assert rc == 1
    node = cluster.json("get", "pod", "client")["spec"]["nodeName"]
    assert doc["why"] == [
        "the proxy dropped the packet: default/solo-local's traffic policy is Local and no "
        f"endpoint is on {node}"
    ]


def test_an_external_name_is_a_cname(cluster: Cluster) -> None:
    rc, doc = _trace(cluster, "alias/hostname")
    assert rc == 0
    dns = _step(doc, "DNS")[0]
    assert (
        "alias.default.svc.cluster.local. is the ExternalName Service default/alias: a CNAME"
        in dns["lines"]
    )
    assert _step(doc, "Service")[0]["service"] == "default/web"


def test_a_node_port_from_an_outside_host(cluster: Cluster) -> None:
    port = cluster.json("get", "svc", "webnp")["spec"]["ports"][0]["nodePort"]
    node = cluster.json("get", "nodes")["items"][0]
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    res = cluster.kubesvc(
        "trace",
        "--name",
        cluster.name,
        "--from",
        "host/laptop",
        f"{ip}:{port}/hostname",
        "-o",
        "json",
    )
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["answeredBy"] == f"default/{_step(doc, 'Answer')[0]['body']}"
    assert _step(doc, "Service")[0]["match"] == "NodePort"
    conntrack = _step(doc, "Endpoint chosen")[0]["conntrack"]
    # the node masqueraded the outside client, as externalTrafficPolicy Cluster does
    assert conntrack["reply"]["dst"] != conntrack["original"]["src"]


def test_explain_svc_shows_the_whole_state_and_flags_problems(cluster: Cluster) -> None:
    res = cluster.kubesvc("explain", "svc", "web", "--name", cluster.name, "-o", "json")
    doc = json.loads(res.stdout)
    assert doc["problems"] == []
    sections = {s["title"]: s["lines"] for s in doc["sections"]}
    ip = cluster.json("get", "svc", "web")["spec"]["clusterIP"]
    assert sections["DNS, as the cluster DNS answers now"] == [
        f"web.default.svc.cluster.local. -> web.default.svc.cluster.local. A {ip}"
    ]
    pods = sections["Pods its selector app=web matches"]
    assert len(pods) == 2 and all(line.endswith(": ready") for line in pods)
    nodes = [n["metadata"]["name"] for n in cluster.json("get", "nodes")["items"]]
    for node in nodes:
        assert any(ip in line for line in sections[f"Rules on {node}"])
    # a port nobody listens on, a named port no pod defines, a selector matching nothing
    cluster.kubectl(
        "apply", "-f", "-",
        input=json.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "wrong"},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "a", "port": 80, "targetPort": 9999},
                {"name": "b", "port": 81, "targetPort": "nosuch"},
            ]},
        }),
    )  # fmt: skip
    res = cluster.kubesvc("explain", "svc", "wrong", "--name", cluster.name, check=False)
    assert res.returncode == 1
    for pod in cluster.pods("app=web"):
        name = pod["metadata"]["name"]
        assert f"! port 9999: no process in pod {name} listens on it" in res.stdout
        assert f"! targetPort 'nosuch': pod {name} defines no port of that name" in res.stdout
    res = cluster.kubesvc("explain", "svc", "empty", "--name", cluster.name, check=False)
    assert (
        res.returncode == 1 and "! the selector app=empty matches no pod in default" in res.stdout
    )
    res = cluster.kubesvc("explain", "svc", "nosuch", "--name", cluster.name, check=False)
    assert res.returncode == 2 and "no Service default/nosuch" in res.stderr


def _lb_ip(c: Cluster, kind: str, name: str) -> str:
    def ip() -> str:
        status = c.json("get", kind, name).get("status", {})
        return ((status.get("loadBalancer", {}).get("ingress") or [{}])[0]).get("ip", "")

    deadline = time.monotonic() + 30
    while not (got := ip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got, f"{kind}/{name} has no address"
    return got


def _from_laptop(c: Cluster, target: str, *args: str) -> dict[str, Any]:
    for _ in range(20):  # until the address is announced and the controller has the route
        res = c.kubesvc("trace", "--name", c.name, "--from", "host/laptop", target, "-o", "json",
                        *args, check=False)  # fmt: skip
        doc = json.loads(res.stdout)
        if doc["ok"]:
            return doc
        time.sleep(0.5)
    return doc


def test_an_ingress_request_names_its_rule_and_the_pod_from_the_access_log(
    cluster: Cluster,
) -> None:
    ip = _lb_ip(cluster, "ingress", "webing")
    doc = _from_laptop(
        cluster, "http://echo.example.com/hostname", "--resolve", f"echo.example.com:80:{ip}"
    )
    assert doc["ok"], doc
    body = _step(doc, "Answer")[0]["body"]
    assert doc["answeredBy"] == f"default/{body}"
    ingress = _step(doc, "Ingress")[0]
    assert ingress["route"] == "default/webing"
    pod_ip = cluster.json("get", "pod", body)["status"]["podIP"]
    assert ingress["accessLog"]["endpoint"] == f"{pod_ip}:8080"
    assert ingress["accessLog"]["service"] == "default/web:80"


def test_a_load_balancer_ip_names_the_node_that_announces_it(cluster: Cluster) -> None:
    ip = _lb_ip(cluster, "svc", "weblb")
    doc = _from_laptop(cluster, f"{ip}:80/hostname")
    assert doc["ok"] and doc["answeredBy"] == f"default/{_step(doc, 'Answer')[0]['body']}"
    lines = _step(doc, "Endpoint chosen")[0]["lines"]
    announced = next(line for line in lines if "announces" in line).split()[0]
    events = cluster.json(
        "get", "events", "--field-selector", "involvedObject.name=weblb,reason=nodeAssigned"
    )
    last = sorted(events["items"], key=lambda e: e.get("lastTimestamp") or "")[-1]
    assert f'node "{announced}"' in last["message"], last["message"]
