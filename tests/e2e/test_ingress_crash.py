"""kill -9 of the ingress controller's process, of its HAProxy master and of a HAProxy
worker: each time the node agent restarts the container, the routes come back exactly as
they were, the Ingress's status is left alone, and nothing of the killed HAProxy listens
any more (it dies with its controller)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, pod_ready, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.test_ingress import NS, controller_pod, deploy, get, node_url

pytestmark = pytest.mark.e2e

ROUTES = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: crash}
spec:
  rules:
  - host: crash.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /api/hostname, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
  - http:
      paths:
      - {path: /any, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
"""
# (host, path) -> what answers: the Deployment's name, or the status when not 200
REQUESTS = [
    ("crash.test", "/hostname"),
    ("crash.test", "/api"),
    ("crash.test", "/api/x"),
    ("crash.test", "/api/hostname"),
    ("other.test", "/any/thing"),
    ("other.test", "/hostname"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-ingcrash-", dir="/tmp"))
    try:
        with running_cluster(tmp, "crash") as c:
            deploy(c, "web", 2)
            deploy(c, "api", 1)
            c.out("apply", "-f", "-", input=ROUTES)
            c.running("app=web", 2)
            c.running("app=api", 1)
            wait_for(lambda: pod_ready(controller_pod(c)), timeout=60, what="the controller")
            yield c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def answers(c: Cluster) -> dict[tuple[str, str], str]:
    url = node_url(c)
    out = {}
    for host, path in REQUESTS:
        status, body = get(url + path, host)
        out[(host, path)] = body.split("-", 1)[0].strip() if status == 200 else str(status)
    return out


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def gone(pid: int) -> bool:
    """Exited (a zombie no one has collected yet holds no socket)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def listeners(c: Cluster) -> set[int]:
    """The processes listening on port 80 in the controller pod's network namespace, as
    the host numbers them (inside the pod, its own PID namespace numbers them)."""
    uid = controller_pod(c)["metadata"]["uid"]
    pod_netns = f"/run/netns/ksv-{c.name}-p-{uid[:8]}"
    res = subprocess.run(
        ["nsenter", f"--net={pod_netns}", "ss", "-Hltnp", "sport = :80"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return {int(p) for p in re.findall(r"pid=(\d+)", res.stdout)}


def processes(c: Cluster) -> tuple[int, int, set[int]]:
    """(controller, HAProxy master, HAProxy workers) of the running controller pod."""
    workers = wait_for(lambda: listeners(c) or None, what="HAProxy listening")
    masters = {ppid(w) for w in workers}
    assert len(masters) == 1, (workers, masters)
    master = masters.pop()
    assert "haproxy" in Path(f"/proc/{master}/cmdline").read_text()
    controller = ppid(master)
    assert "ingress-controller" in Path(f"/proc/{controller}/cmdline").read_text()
    return controller, master, set(workers)


def restarts(c: Cluster) -> int:
    statuses = controller_pod(c).get("status", {}).get("containerStatuses") or [{}]
    return int(statuses[0].get("restartCount", 0))


def ingress_status(c: Cluster) -> tuple[str, str]:
    ing = c.json("get", "ingress", "crash")
    return ing["metadata"]["resourceVersion"], json.dumps(ing.get("status"), sort_keys=True)


@pytest.mark.parametrize("victim", ["controller", "haproxy-master", "haproxy-worker"])
def test_kill_9_and_the_routes_come_back_as_they_were(cluster: Cluster, victim: str) -> None:
    c = cluster
    wait_for(lambda: "200" not in answers(c).values() or None, what="routes served")
    expected = wait_for(lambda: (a := answers(c)) == answers(c) and a, what="stable answers")
    assert expected[("crash.test", "/hostname")] == "web"
    assert expected[("crash.test", "/api/x")] == "api"
    assert expected[("other.test", "/hostname")] == "404"
    wait_for(lambda: "ip" in ingress_status(c)[1] or None, what="the Ingress's ADDRESS")
    status = ingress_status(c)
    before = restarts(c)
    controller, master, workers = processes(c)
    pid = {"controller": controller, "haproxy-master": master}.get(victim, min(workers))
    os.kill(pid, signal.SIGKILL)

    wait_for(lambda: restarts(c) == before + 1, timeout=60, what="the container restarted")
    wait_for(lambda: pod_ready(controller_pod(c)), timeout=60, what="the controller Ready")
    # nothing of the old HAProxy is left: not listening, not running
    wait_for(lambda: all(gone(p) for p in (controller, master, *workers)), timeout=15,
             what="the old processes gone")  # fmt: skip
    new_controller, new_master, new_workers = processes(c)
    assert not {new_controller, new_master, *new_workers} & {controller, master, *workers}
    wait_for(lambda: answers(c) == expected, timeout=30, what="the same answers as before")
    assert ingress_status(c) == status  # not rewritten, not even to the same value
    if victim != "controller":
        pod = controller_pod(c)["metadata"]["name"]
        previous = c.out("logs", "-n", NS, pod, "--previous")
        assert "kubesvc ingress: haproxy exited" in previous, previous[-2000:]
