"""The ingress controller `kubesvc up` deploys, end to end: Ingresses served through the
controller's NodePort from the host and its LoadBalancer IP from an outside host, by host
and path (precedence, element-wise prefix, wildcard), the default backend and 404, 503 with
no endpoints, another class ignored, ADDRESS in `kubectl get ingress`, and a backend scaled
3 -> 0 -> 3 with no HAProxy reload."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import AGNHOST, Cluster, pod_ready, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.test_outside_hosts import host, net

pytestmark = pytest.mark.e2e

NS = "ingress-kubesvc"
CONTROLLER = "ingress-kubesvc-controller"
CONTROLLER_PODS = "app.kubernetes.io/name=ingress-kubesvc"

INGRESSES = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: main}
spec:
  rules:
  - host: foo.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /api/hostname, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /host, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /gone, pathType: Prefix, backend: {service: {name: nothing, port: {number: 80}}}}
  - host: "*.wild.test"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: other-class}
spec:
  ingressClassName: nginx
  rules:
  - host: other.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


def deploy(c: Cluster, name: str, replicas: int) -> None:
    """`web`: agnhost netexec (`/hostname` names the pod); others: http-echo answering
    every path with the Deployment's name."""
    if name == "web":
        c.out("create", "deployment", name, f"--image={AGNHOST}", f"--replicas={replicas}",
              "--", "/agnhost", "netexec", "--http-port=8080")  # fmt: skip
    else:
        echo = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": "echo",
                                "image": "hashicorp/http-echo",
                                "args": [f"-text={name}", "-listen=:8080"],
                            }
                        ]
                    },
                },
            },
        }
        c.out("apply", "-f", "-", input=json.dumps(echo))
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }
    c.out("apply", "-f", "-", input=json.dumps(svc))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-ing-", dir="/tmp"))
    try:
        with running_cluster(tmp, "ing") as c:
            deploy(c, "web", 3)
            deploy(c, "api", 1)
            c.out("apply", "-f", "-", input=INGRESSES)
            c.running("app=web", 3)
            c.running("app=api", 1)
            wait_for(lambda: pod_ready(controller_pod(c)), timeout=60, what="the controller")
            c.kubesvc("host", "add", "laptop", "--name", c.name)
            yield c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def controller_pod(c: Cluster) -> dict[str, Any]:
    pods = c.json("get", "pods", "-n", NS, "-l", CONTROLLER_PODS)["items"]
    return pods[0] if pods else {}


def node_url(c: Cluster) -> str:
    """The controller's NodePort on the node running it (the Service's traffic policy is
    Local: other nodes do not answer)."""
    node_ip = controller_pod(c)["status"]["hostIP"]
    return f"http://{node_ip}:{node_port(c)}"


def node_port(c: Cluster) -> int:
    return int(c.out("get", "svc", "-n", NS, CONTROLLER, "-o",
                     "jsonpath={.spec.ports[0].nodePort}"))  # fmt: skip


def lb_ip(c: Cluster) -> str:
    def assigned() -> str:
        svc = c.json("get", "svc", "-n", NS, CONTROLLER)
        return str(((svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [{}])[0])
                   .get("ip", ""))  # fmt: skip

    return str(wait_for(assigned, what="the controller's LoadBalancer IP"))


def get(url: str, host_header: str) -> tuple[int, str]:
    """(status, body) of a GET from this machine."""
    res = subprocess.run(
        ["curl", "-s", "-m", "5", "-H", f"Host: {host_header}", "-w", "\n%{http_code}", url],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    body, _, code = res.stdout.rpartition("\n")
    return int(code or 0), body


def pod_of(c: Cluster, url: str, host_header: str, path: str) -> str:
    """The pod answering (its name's Deployment prefix), or the status when not 200."""
    status, body = get(url + path if path != "/" else url + "/hostname", host_header)
    if status != 200:
        return str(status)
    return body.split("-", 1)[0]


def reloads(c: Cluster) -> int:
    pod = controller_pod(c)["metadata"]["name"]
    text = c.out("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{pod}:10255/proxy/metrics")
    m = re.search(r"^kubesvc_ingress_reloads_total (\d+)$", text, re.M)
    assert m, text
    return int(m.group(1))


def test_routing_through_the_node_port(cluster: Cluster) -> None:
    c = cluster
    url = node_url(c)
    wait_for(lambda: pod_of(c, url, "foo.test", "/") == "web", what="foo.test served")

    def body(path: str, host: str = "foo.test") -> str:
        status, text = get(url + path, host)
        return text.strip() if status == 200 else str(status)

    assert body("/hostname").startswith("web-")
    assert body("/api") == "api"
    assert body("/api/x") == "api"
    # netexec (web) answers a path it does not know with the time: Exact beats Prefix /api
    assert body("/api/hostname").startswith("NOW: ")
    assert body("/host/x") == "api"
    assert body("/hostname").startswith("web-")  # element-wise: /host is not /hostname
    assert body("/hostname", "a.wild.test") == "api"
    assert body("/hostname", "FOO.test:80").startswith("web-")
    assert get(url + "/hostname", "a.b.wild.test") == (404, "default backend - 404")
    assert get(url + "/hostname", "other.test") == (404, "default backend - 404")  # nginx's
    assert get(url + "/gone", "foo.test")[0] == 503  # a Service that does not exist
    events = c.out("get", "events", "--field-selector", "involvedObject.name=main")
    assert "Service default/nothing not found" in events
    # netexec's /header?key= answers with one request header
    assert body("/header?key=X-Forwarded-Host") == "foo.test"
    assert body("/header?key=X-Forwarded-Proto") == "http"
    assert len(body("/header?key=X-Request-ID")) == 36


def test_status_address_and_the_lb_ip_from_outside(cluster: Cluster) -> None:
    c, ip = cluster, lb_ip(cluster)
    wait_for(
        lambda: c.out("get", "ingress", "main", "--no-headers").split()[3] == ip,
        what="ADDRESS of the Ingress",
    )
    res = wait_for(
        lambda: (
            (
                r := host(
                    c,
                    "laptop",
                    "curl",
                    "-s",
                    "-m",
                    "3",
                    "-H",
                    "Host: foo.test",
                    f"http://{ip}/hostname",
                )
            ).returncode
            == 0
            and r
        ),
        what="the LB IP from the laptop",
    )
    assert res.stdout.startswith("web-")
    # the client's own address, as the backend sees it
    laptop = net(c).outside_host_ip(0)
    for header in ("X-Forwarded-For", "X-Real-IP"):
        res = host(c, "laptop", "curl", "-s", "-m", "3", "-H", "Host: foo.test",
                   f"http://{ip}/header?key={header}")  # fmt: skip
        assert res.stdout.strip() == laptop, (header, res)
    other = c.json("get", "ingress", "other-class")
    assert not other.get("status", {}).get("loadBalancer", {}).get("ingress")


def test_scaling_3_0_3_goes_through_the_runtime_api(cluster: Cluster) -> None:
    c = cluster
    url = node_url(c)
    wait_for(lambda: pod_of(c, url, "foo.test", "/") == "web", what="foo.test served")
    before = reloads(c)
    c.out("scale", "deployment", "web", "--replicas=0")
    wait_for(lambda: get(url + "/hostname", "foo.test")[0] == 503, what="503 with no endpoints")
    c.out("scale", "deployment", "web", "--replicas=3")

    def three() -> bool:
        seen = {get(url + "/hostname", "foo.test")[1] for _ in range(15)}
        return len(seen) == 3 and all(s.startswith("web-") for s in seen)

    wait_for(three, timeout=120, what="three web pods answering")
    assert reloads(c) == before


def test_default_backend_of_an_ingress(cluster: Cluster) -> None:
    c = cluster
    url = node_url(c)
    default = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "fallback"},
        "spec": {"defaultBackend": {"service": {"name": "api", "port": {"number": 80}}}},
    }
    c.out("apply", "-f", "-", input=json.dumps(default))
    try:
        wait_for(lambda: get(url + "/x", "nowhere.test") == (200, "api\n"), what="defaultBackend")
        assert get(url + "/hostname", "foo.test")[1].startswith("web-")  # rules still first
    finally:
        c.out("delete", "ingress", "fallback")
    wait_for(lambda: get(url + "/x", "nowhere.test")[0] == 404, what="the built-in 404 again")


def test_no_ingress_opts_out() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-noing-", dir="/tmp"))
    try:
        with running_cluster(tmp, "noing", "--no-ingress") as c:
            assert c.kubectl("get", "ns", NS, check=False).returncode != 0
            assert c.out("get", "ingressclass", "-o", "name").strip() == ""
            assert (
                c.out("get", "ns", "metallb-system", "-o", "name").strip()
                == "namespace/metallb-system"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
