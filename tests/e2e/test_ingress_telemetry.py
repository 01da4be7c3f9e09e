"""What the ingress controller tells about the traffic: HAProxy's Prometheus metrics beside
the controller's own counters on the pod's :10255/metrics, and an access log line per
request in `kubectl logs` of the controller's Deployment."""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, pod_ready, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.test_ingress import CONTROLLER, NS, controller_pod, deploy, get, node_url

pytestmark = pytest.mark.e2e

ROUTES = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: tele}
spec:
  rules:
  - host: tele.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-ingtele-", dir="/tmp"))
    try:
        with running_cluster(tmp, "tele") as c:
            deploy(c, "web", 2)
            c.out("apply", "-f", "-", input=ROUTES)
            c.running("app=web", 2)
            wait_for(lambda: pod_ready(controller_pod(c)), timeout=60, what="the controller")
            url = node_url(c)
            wait_for(lambda: get(url + "/hostname", "tele.test")[0] == 200, what="tele.test")
            yield c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def metrics(c: Cluster) -> str:
    pod = controller_pod(c)["metadata"]["name"]
    return c.out("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{pod}:10255/proxy/metrics")


def sample(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in:\n{text[:3000]}"
    return float(m.group(1))


def test_haproxy_metrics_beside_the_controller_s(cluster: Cluster) -> None:
    c = cluster
    url = node_url(c)
    first = metrics(c)
    assert sample(first, "kubesvc_ingress_reloads_total") >= 0
    assert sample(first, "kubesvc_ingress_runtime_updates_total") >= 0
    assert "# TYPE haproxy_frontend_http_requests_total counter" in first
    assert sample(first, "haproxy_process_nbthread") >= 1
    before = sample(first, "haproxy_frontend_http_requests_total", '{proxy="http"}')
    for _ in range(5):
        assert get(url + "/hostname", "tele.test")[0] == 200
    after = sample(metrics(c), "haproxy_frontend_http_requests_total", '{proxy="http"}')
    assert after >= before + 5
    # every sample line is `name{labels} value`: the two expositions were joined cleanly
    for line in metrics(c).splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_:]+(\{.*\})? \S+", line), line


def test_access_log_in_kubectl_logs(cluster: Cluster) -> None:
    c = cluster
    url = node_url(c)
    probe = secrets.token_hex(4)
    assert get(url + f"/hostname?probe={probe}", "Tele.test:80")[0] == 200
    ips = {p["status"]["podIP"] for p in c.pods("app=web")}

    def logged() -> str | None:
        out = c.out("logs", "-n", NS, f"deploy/{CONTROLLER}", "--tail=500")
        return next((line for line in out.splitlines() if probe in line), None)

    line = wait_for(logged, what="the request in the controller's log")
    # ingress-nginx's format, the host last
    m = re.fullmatch(
        r"(\S+) - - \[[^]]+\] \"GET /hostname\?probe=\w+ HTTP/1.1\" 200 (\d+) \"-\" \"([^\"]*)\" "
        r"(\d+) (\d+) \[default/web:80\] \[\] (\S+):8080 \d+ (\d+) 200 ([0-9a-f-]{36}) (\S+)",
        line,
    )
    assert m, line
    assert m.group(3).startswith("curl/")
    assert m.group(6) in ips
    assert m.group(9) == "tele.test"
    # what is not routed is logged too, with no Service and no server
    get(url + f"/nothing?probe={probe}x", "nowhere.test")
    probe += "x"
    line = wait_for(logged, what="the 404 in the controller's log")
    assert '" 404 ' in line and " [-] [] -:- " in line and line.endswith(" nowhere.test"), line
