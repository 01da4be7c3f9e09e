"""The seed's chapter 6 (Ingress), claim by claim, as docs/chapter6.md walks it through:
one IP address in front of many Services, the host and path of a request choosing the
Service, an Ingress doing nothing without a controller, and the controller sending each
request straight to a pod it found through the endpoints (the Service only selects the
pods), seen from a laptop outside the cluster."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import AGNHOST, Cluster, pod_ready, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.test_ingress import controller_pod, lb_ip
from tests.e2e.test_outside_hosts import host, net

pytestmark = pytest.mark.e2e

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: kubia}
spec:
  rules:
  - host: kubia.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: kubia, port: {number: 80}}}}
      - {path: /echo, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
  - host: echo.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: elsewhere}
spec:
  ingressClassName: nginx
  rules:
  - host: nginx.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: kubia, port: {number: 80}}}}
"""


def service(name: str, headless: bool = False) -> str:
    spec: dict[str, Any] = {
        "selector": {"app": name},
        "ports": [{"port": 80, "targetPort": 8080}],
    }
    if headless:
        spec["clusterIP"] = "None"
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": spec})  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-ch6-", dir="/tmp"))
    try:
        with running_cluster(tmp, "ch6") as c:
            c.out("create", "deployment", "kubia", "--image=luksa/kubia", "--replicas=3")
            c.out("create", "deployment", "echo", f"--image={AGNHOST}", "--",
                  "/agnhost", "netexec", "--http-port=8080")  # fmt: skip
            c.out("apply", "-f", "-", input=service("kubia"))
            # headless: no ClusterIP at all, which the Ingress never needed
            c.out("apply", "-f", "-", input=service("echo", headless=True))
            c.out("apply", "-f", "-", input=INGRESS)
            c.running("app=kubia", 3)
            c.running("app=echo", 1)
            wait_for(lambda: pod_ready(controller_pod(c)), timeout=60, what="the controller")
            c.kubesvc("host", "add", "laptop", "--name", c.name)
            yield c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def on_laptop(c: Cluster, ip: str, hostname: str, path: str = "/") -> str:
    """A GET from the laptop to `ip`, for `hostname`: what a browser does once DNS (or the
    laptop's hosts file) says the name is at `ip` (`curl --resolve`)."""
    res = host(c, "laptop", "curl", "-s", "-m", "3", "--resolve", f"{hostname}:80:{ip}",
               f"http://{hostname}{path}")  # fmt: skip
    return str(res.stdout)


def test_one_ip_many_services_chosen_by_host_and_path(cluster: Cluster) -> None:
    c, ip = cluster, lb_ip(cluster)
    wait_for(lambda: on_laptop(c, ip, "kubia.example.com").startswith("You've hit kubia-"),
             what="kubia.example.com from the laptop")  # fmt: skip
    kubia = {on_laptop(c, ip, "kubia.example.com").strip() for _ in range(12)}
    assert len(kubia) == 3 and all(k.startswith("You've hit kubia-") for k in kubia), kubia
    assert on_laptop(c, ip, "echo.example.com", "/hostname").startswith("echo-")
    # the path is passed on as it is: netexec's /echo answers with its msg
    assert on_laptop(c, ip, "kubia.example.com", "/echo?msg=routed") == "routed"
    # one LoadBalancer IP for both Services: neither needs its own
    lbs = [s for s in c.json("get", "svc", "-A")["items"] if s["spec"]["type"] == "LoadBalancer"]
    assert [s["metadata"]["name"] for s in lbs] == ["ingress-kubesvc-controller"]
    assert c.out("get", "ingress", "kubia", "--no-headers").split()[3] == ip  # ADDRESS


def test_an_ingress_without_its_controller_does_nothing(cluster: Cluster) -> None:
    c, ip = cluster, lb_ip(cluster)
    # class nginx: stored, no controller serves it, so no ADDRESS and no route
    ing = c.json("get", "ingress", "elsewhere")
    assert not ing.get("status", {}).get("loadBalancer", {}).get("ingress")
    assert on_laptop(c, ip, "nginx.example.com") == "default backend - 404"


def test_the_controller_sends_to_the_pod_not_the_service(cluster: Cluster) -> None:
    c, ip = cluster, lb_ip(cluster)
    # the request reaches the pod from the controller pod's own address (no kube-proxy NAT on
    # the way), and the pod sees the laptop as the client in X-Forwarded-For
    controller_ip = controller_pod(c)["status"]["podIP"]
    seen = wait_for(lambda: on_laptop(c, ip, "echo.example.com", "/clientip") or None,
                    what="echo's /clientip")  # fmt: skip
    assert seen.rsplit(":", 1)[0] == controller_ip, seen
    xff = on_laptop(c, ip, "echo.example.com", "/header?key=X-Forwarded-For")
    assert xff.strip() == net(c).outside_host_ip(0)
    # a re-created pod is found through the endpoints at its new address
    old = c.json("get", "pods", "-l", "app=echo")["items"][0]["metadata"]["name"]
    c.out("delete", "pod", old, "--wait=false")
    wait_for(
        lambda: (
            (name := on_laptop(c, ip, "echo.example.com", "/hostname")).startswith("echo-")
            and name != old
        ),
        timeout=60,
        what="the new echo pod through the Ingress",
    )
