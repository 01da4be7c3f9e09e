"""A cluster whose objects are in etcd (`kubesvc up --store etcd --etcd-members 3`): the
Services are at kube-apiserver's keys for `etcdctl`, acknowledged writes survive kill -9 of
etcd members and of the API server, a watch carries on across them, and one member of three
can be lost without the API noticing. (The Service and proxy tests run on an etcd cluster
too: tests/e2e/test_proxy.py.)
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster, running_cluster
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("etcd-store")
    with running_cluster(tmp, "e", "--store", "etcd", "--etcd-members", "3") as c:
        yield c


def etcdctl(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return c.kubesvc("etcdctl", "--name", c.name, "--", *args, check=False)


def pid(c: Cluster, component: str) -> int:
    return int((c.home / c.name / "pids" / f"{component}.pid").read_text())


def kill9(c: Cluster, component: str) -> int:
    old = pid(c, component)
    os.kill(old, signal.SIGKILL)
    return old


def restarted(c: Cluster, component: str, old: int) -> None:
    wait_for(lambda: pid(c, component) != old, timeout=30, what=f"{component} restarted")


class Writer:
    """Creates ConfigMaps one after another; remembers the ones the API acknowledged."""

    def __init__(self, c: Cluster, prefix: str) -> None:
        self.c, self.prefix = c, prefix
        self.acked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            name = f"{self.prefix}-{i}"
            res = self.c.kubectl("create", "configmap", name, "--request-timeout=5s", check=False)
            if res.returncode == 0:
                self.acked.append(name)
            i += 1

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stored_names(c: Cluster) -> set[str]:
    return {cm["metadata"]["name"] for cm in c.json("get", "configmaps")["items"]}


def test_etcdctl_shows_the_service_at_upstreams_key(cluster: Cluster) -> None:
    c = cluster
    c.out("create", "service", "clusterip", "kubia", "--tcp=80:8080")
    svc = c.json("get", "svc", "kubia")
    keys = etcdctl(c, "get", "--prefix", "--keys-only", "/registry/services/specs/default/")
    assert "/registry/services/specs/default/kubia" in keys.stdout.split(), keys
    got = json.loads(
        etcdctl(c, "get", "/registry/services/specs/default/kubia", "-w", "json").stdout
    )
    kv = got["kvs"][0]
    stored = json.loads(base64.b64decode(kv["value"]))
    assert stored["metadata"]["uid"] == svc["metadata"]["uid"]
    assert stored["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
    assert str(kv["mod_revision"]) == svc["metadata"]["resourceVersion"]
    # the Endpoints at theirs, the node under its historical name
    keys = etcdctl(c, "get", "--prefix", "--keys-only", "/registry/")
    assert "/registry/services/endpoints/default/kubernetes" in keys.stdout.split()
    assert any(k.startswith("/registry/minions/") for k in keys.stdout.split())
    # its ClusterIP is held by an IPAddress object, written with it and deleted with it
    claim = f"/registry/ipaddresses/{svc['spec']['clusterIP']}"
    got = json.loads(etcdctl(c, "get", claim, "-w", "json").stdout)
    assert got["kvs"][0]["mod_revision"] == kv["mod_revision"]  # one transaction
    ip_address = json.loads(base64.b64decode(got["kvs"][0]["value"]))
    assert ip_address["kind"] == "IPAddress"
    assert ip_address["spec"]["parentRef"] == {
        "group": "", "resource": "services", "namespace": "default", "name": "kubia"
    }  # fmt: skip
    c.out("delete", "service", "kubia")
    assert etcdctl(c, "get", claim, "--keys-only").stdout.strip() == ""


def test_acknowledged_writes_survive_kill_9_of_etcd_and_of_the_api_server(
    cluster: Cluster,
) -> None:
    c = cluster
    with Writer(c, "w") as w:
        wait_for(lambda: len(w.acked) >= 3, what="writes going")
        # the leader or not: every member and then the API server die once under writes
        for component in ("etcd-1", "etcd-2", "etcd-3", "apiserver"):
            old = kill9(c, component)
            restarted(c, component, old)
            before = len(w.acked)
            wait_for(lambda before=before: len(w.acked) > before + 2, timeout=60,
                     what=f"writes acknowledged again after {component} died")  # fmt: skip
    missing = set(w.acked) - stored_names(c)
    assert not missing, f"acknowledged but lost: {sorted(missing)}"


def test_a_watch_carries_on_across_an_etcd_restart(cluster: Cluster) -> None:
    """The official client watches from a resourceVersion while every member is killed:
    it sees each change once, in order, on the same stream."""
    from kubernetes import client, config, watch

    c = cluster
    c.out("create", "configmap", "watch-before")
    rv = c.json("get", "configmap", "watch-before")["metadata"]["resourceVersion"]
    api = client.CoreV1Api(
        config.new_client_from_config(c.env["KUBECONFIG"], context=f"kubesvc-{c.name}")
    )
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    done = threading.Event()

    def follow() -> None:
        try:
            for ev in w.stream(api.list_namespaced_config_map, "default", resource_version=rv,
                               timeout_seconds=90):  # fmt: skip
                name = ev["object"].metadata.name
                if name.startswith("watch-"):
                    seen.append((ev["type"], name))
        except Exception:
            if not done.is_set():  # the stream broke while the test still watched it
                seen.append(("ERROR", "the watch stream broke"))

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        c.out("create", "configmap", "watch-a")
        wait_for(lambda: seen, what="the first event")
        for member in ("etcd-1", "etcd-2", "etcd-3"):
            restarted(c, member, kill9(c, member))
        c.out("create", "configmap", "watch-b")
        c.out("delete", "configmap", "watch-a")
        wait_for(lambda: len(seen) >= 3, timeout=30, what="the events after the restarts")
        time.sleep(0.5)  # nothing more (no duplicate) arrives
        assert seen == [
            ("ADDED", "watch-a"),
            ("ADDED", "watch-b"),
            ("DELETED", "watch-a"),
        ], seen
    finally:
        done.set()
        w.stop()


def test_one_member_of_three_lost_and_back(cluster: Cluster) -> None:
    c = cluster
    supervisor = json.loads((c.home / c.name / "cluster.json").read_text())
    assert len(supervisor["etcd"]["client_ports"]) == 3
    # hold etcd-3 down: the supervisor restarts what dies, so stop it and keep it stopped
    os.kill(pid(c, "etcd-3"), signal.SIGSTOP)
    try:
        # two of three members are a quorum: writes and reads go on (a request that was on
        # its way to the frozen member fails over once its connection is found dead)
        c.out("create", "configmap", "while-one-is-down")
        for _ in range(5):
            assert "while-one-is-down" in stored_names(c)
    finally:
        os.kill(pid(c, "etcd-3"), signal.SIGCONT)
    # it catches up: a read from that member alone sees the write it missed
    port = supervisor["etcd"]["client_ports"][2]

    def caught_up() -> bool:
        res = etcdctl(c, "--endpoints", f"https://127.0.0.1:{port}", "get",
                      "--consistency=s", "/registry/configmaps/default/while-one-is-down",
                      "--keys-only")  # fmt: skip
        return "while-one-is-down" in res.stdout

    wait_for(caught_up, timeout=30, what="etcd-3 caught up")


def test_racing_writes_without_a_resource_version_all_land(cluster: Cluster) -> None:
    """Patches and a delete that race other writes to the same object are applied to what
    is stored when they land (upstream's GuaranteedUpdate), not refused with 409."""
    c = cluster
    c.out("create", "configmap", "raced")
    results: list[subprocess.CompletedProcess[str]] = []

    def patch(i: int) -> None:
        body = json.dumps({"data": {f"k{i}": str(i)}})
        results.append(c.kubectl("patch", "configmap", "raced", "--type=merge", "-p", body,
                                 check=False))  # fmt: skip

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0] * 12, [r.stderr for r in results if r.returncode]
    data = c.json("get", "configmap", "raced")["data"]
    assert data == {f"k{i}": str(i) for i in range(12)}
    # a delete while the object keeps changing
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            c.kubectl("label", "configmap", "raced", f"n={i}", "--overwrite", check=False)
            i += 1

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        time.sleep(0.5)
        res = c.kubectl("delete", "configmap", "raced", "--wait=false", check=False)
    finally:
        stop.set()
        churner.join()
    assert res.returncode == 0, res.stderr
