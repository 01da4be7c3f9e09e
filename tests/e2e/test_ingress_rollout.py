"""Rolling updates of a backend behind the ingress controller, under constant load through
the controller's NodePort (keep-alive clients and one-request-per-connection clients):
no request is lost. With a preStop sleep, as upstream users are told to add, nothing fails,
POSTs included; without one, the backend exits on SIGTERM while it is still in HAProxy's
pool, and idempotent requests caught by that are retried on another pod."""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import AGNHOST, Cluster, pod_ready, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.podspecs import uniq
from tests.e2e.test_ingress import controller_pod, get, node_port, reloads

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-ingroll-", dir="/tmp"))
    try:
        with running_cluster(tmp, "roll") as c:
            wait_for(lambda: pod_ready(controller_pod(c)), timeout=60, what="the controller")
            yield c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def backend(c: Cluster, name: str, *, pre_stop: bool, strategy: dict[str, Any] | None) -> str:
    """A 3-replica agnhost netexec Deployment, its Service and an Ingress for host
    `<name>.test`; returns the host."""
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "netexec",
                "image": AGNHOST,
                "command": ["/agnhost", "netexec", "--http-port=8080"],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080},
                    "periodSeconds": 1,
                },
            }
        ]
    }
    if pre_stop:
        spec["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 5}}}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }
    if strategy is not None:
        deployment["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": strategy}
    host = f"{name}.test"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": name, "port": {"number": 80}}},
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {"rules": [{"host": host, "http": {"paths": [path]}}]},
    }
    for obj in (deployment, service, ingress):
        c.out("apply", "-f", "-", input=json.dumps(obj))
    c.running(f"app={name}", 3)
    return host


@dataclass
class Load:
    """Clients sending requests in a loop until stopped: `keepalive` on one connection each
    (a new one after any failure), `closing` with a new connection per request; `post`
    of them send POSTs (not idempotent) instead of GETs."""

    address: tuple[str, int]
    host: str
    keepalive: int = 3
    closing: int = 2
    post: int = 0
    ok: int = 0
    answered_by: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        kinds = [True] * self.keepalive + [False] * self.closing
        for i, keep in enumerate(kinds):
            t = threading.Thread(target=self._client, args=(keep, i < self.post), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _client(self, keep: bool, post: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Host": self.host}
        if not keep:
            headers["Connection"] = "close"
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(*self.address, timeout=15)
            try:
                if post:
                    conn.request("POST", "/echo?msg=posted", body=b"x" * 64, headers=headers)
                else:
                    conn.request("GET", "/hostname", headers=headers)
                res = conn.getresponse()
                body = res.read().decode(errors="replace")
                failed = "" if res.status == 200 else f"{res.status} {body[:80]!r}"
            except (OSError, http.client.HTTPException) as e:
                failed, body = f"{type(e).__name__}: {e}", ""
            with self._lock:
                if failed:
                    how = f"{'POST' if post else 'GET'} {'keep-alive' if keep else 'close'}"
                    self.failures.append(f"{time.strftime('%T')} {how}: {failed}")
                else:
                    self.ok += 1
                    if not post:
                        self.answered_by[body] += 1
            if failed or not keep:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


def roll(c: Cluster, name: str, load: Load) -> None:
    """An env change rolls the Deployment out; returns once the rollout is complete and the
    load has gone on a moment longer."""
    c.out("set", "env", f"deployment/{name}", f"ROLL={time.time()}")
    c.kubectl("rollout", "status", f"deployment/{name}", "--timeout=180s", timeout=200)
    wait_for(lambda: len(c.pods(f"app={name}")) == 3, timeout=60, what="old pods gone")
    time.sleep(1)


def cleanup(c: Cluster, name: str) -> None:
    for kind in ("ingress", "service", "deployment"):
        c.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false", check=False)


def started(c: Cluster, host: str) -> tuple[str, int]:
    node_ip = controller_pod(c)["status"]["hostIP"]
    url = f"http://{node_ip}:{node_port(c)}"
    wait_for(lambda: get(url + "/hostname", host)[0] == 200, what=f"{host} served")
    return node_ip, node_port(c)


def test_rollout_with_pre_stop_loses_no_request(cluster: Cluster) -> None:
    c, name = cluster, uniq("prestop")
    try:
        host = backend(c, name, pre_stop=True, strategy={"maxSurge": 1, "maxUnavailable": 0})
        address = started(c, host)
        old = {p["metadata"]["name"] for p in c.pods(f"app={name}")}
        before = reloads(c)
        with Load(address, host, keepalive=4, closing=2, post=2) as load:
            time.sleep(1)
            roll(c, name, load)
        new = {p["metadata"]["name"] for p in c.pods(f"app={name}")}
        assert not old & new
        assert load.failures == [], (load.ok, load.failures)
        assert load.ok > 100
        # the load ran through the whole rollout: old and new pods both answered it
        assert old & set(load.answered_by) and new & set(load.answered_by), load.answered_by
        assert reloads(c) == before  # endpoints change through the runtime API
    finally:
        cleanup(c, name)


def test_rollout_without_pre_stop_loses_no_idempotent_request(cluster: Cluster) -> None:
    """The default strategy (25 %) and a backend that exits as soon as it gets SIGTERM."""
    c, name = cluster, uniq("nohook")
    try:
        host = backend(c, name, pre_stop=False, strategy=None)
        address = started(c, host)
        old = {p["metadata"]["name"] for p in c.pods(f"app={name}")}
        with Load(address, host, keepalive=4, closing=2) as load:
            time.sleep(1)
            roll(c, name, load)
        new = {p["metadata"]["name"] for p in c.pods(f"app={name}")}
        assert load.failures == [], (load.ok, load.failures)
        assert old & set(load.answered_by) and new & set(load.answered_by), load.answered_by
    finally:
        cleanup(c, name)
