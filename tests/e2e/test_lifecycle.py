"""State is kept unless deleted on purpose: `stop`/`start`, `up` on a cluster that exists
(running, stopped, half-running), private files, and `down` that removes everything.

One 2-node cluster (unique name) is shared by the tests, in order. Its KUBESVC_HOME is a
directory any user may enter, so the test of file modes shows what the modes themselves
protect.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesvc import netns
from kubesvc.node.netplan import short_hash
from tests.e2e.cluster import Cluster, deploy_netexec, pod_ready, running_cluster
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e

KINDS = "namespaces,services,endpoints,deployments,replicasets,configmaps,secrets,nodes,pods"
CREDENTIALS = ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-lifecycle-", dir="/tmp"))
    tmp.chmod(0o755)  # others may enter: only the cluster's own modes keep them out
    try:
        with running_cluster(tmp, "l", kubeconfig=tmp / "kube" / "config") as c:
            c.out("create", "configmap", "marker", "--from-literal=k=v")
            c.out("create", "secret", "generic", "s", "--from-literal=password=hunter2")
            deploy_netexec(c, "web", 2)
            yield c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- helpers -------------------------------------------------------------------------------
def cdir(c: Cluster) -> Path:
    return c.home / c.name


def status(c: Cluster) -> str:
    return c.kubesvc("status", "--name", c.name).stdout


def component_pids(c: Cluster) -> dict[str, int]:
    return {
        f.stem: int(f.read_text())
        for f in (cdir(c) / "pids").glob("*.pid")
        if f.stem != "supervisor"
    }


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cluster_processes(c: Cluster) -> list[str]:
    """Command lines of every kubesvc process of this cluster (components, supervisor)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:
            continue
        if argv[1:3] == ["-m", "kubesvc.cli.main"] and (
            str(cdir(c)) in " ".join(argv) or argv[-2:] == ["--name", c.name]
        ):
            out.append(" ".join(argv[argv.index("kubesvc.cli.main") + 1 :]).strip())
    return sorted(out)


def snapshot(c: Cluster) -> dict[str, Any]:
    """What must survive a stop/start: every object (by uid), the addresses, credentials."""
    items = c.json("get", KINDS, "-A")["items"]
    objects = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["metadata"]["uid"]
        for o in items
    }
    services = {
        o["metadata"]["name"]: (o["spec"].get("clusterIP"), o["spec"].get("ports"))
        for o in items
        if o["kind"] == "Service"
    }
    nodes = {
        o["metadata"]["name"]: (o["spec"]["podCIDR"], o["status"]["addresses"])
        for o in items
        if o["kind"] == "Node"
    }
    pods = {
        o["metadata"]["name"]: (o["status"].get("podIP"), o["spec"].get("nodeName"))
        for o in items
        if o["kind"] == "Pod"
    }
    pki = cdir(c) / "apiserver" / "pki"
    secrets_ = {f: (pki / f).read_bytes() for f in (*CREDENTIALS, "token")}
    secrets_["kubeconfig"] = (cdir(c) / "apiserver" / "kubeconfig").read_bytes()
    secret = c.json("get", "secret", "s")["data"]
    return {
        "objects": objects,
        "services": services,
        "nodes": nodes,
        "pods": pods,
        "credentials": secrets_,
        "secret": secret,
    }


def restarts(c: Cluster) -> dict[str, int]:
    return {
        p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
        for p in c.json("get", "pods")["items"]
    }


def service_works(c: Cluster) -> None:
    ip = c.json("get", "svc", "web")["spec"]["clusterIP"]
    names = {p["metadata"]["name"] for p in c.pods("app=web")}
    wait_for(
        lambda: (
            c.exec(
                "client", "curl", "-s", "--max-time", "3", f"http://{ip}/hostname", check=False
            ).stdout
            in names
        ),
        timeout=30,
        what="client -> web through its ClusterIP",
    )
    wait_for(
        lambda: c.exec("client", "getent", "hosts", "web", check=False).stdout.split()[:1] == [ip],
        timeout=30,
        what="web's name through cluster DNS",
    )


def all_ready(c: Cluster) -> None:
    def ready() -> bool:
        pods = c.json("get", "pods", "-A")["items"]
        return bool(pods) and all(pod_ready(p) for p in pods)

    wait_for(ready, timeout=60, what="every pod Ready")


def assert_stopped(c: Cluster) -> None:
    assert cluster_processes(c) == []
    assert netns.names(f"ksv-{c.name}-") == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"ksb-{short_hash(c.name, 5)}" not in links
    assert f"kn{short_hash(c.name, 5)}" not in links
    assert f"/run/kubesvc/{c.name}" not in Path("/proc/self/mountinfo").read_text()
    assert (cdir(c) / "apiserver" / "state.db").exists()
    assert "stopped" in status(c).splitlines()[0]


# -- files ---------------------------------------------------------------------------------
# prints each path the user can read (a file) or list (a directory)
PROBE = """
while IFS= read -r p; do
  if [ -d "$p" ]; then ls "$p" >/dev/null 2>&1 && echo "$p"
  else head -c1 "$p" >/dev/null 2>&1 && echo "$p"; fi
done
"""


def readable_by_nobody(paths: list[Path]) -> list[str]:
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c", PROBE],
        input="".join(f"{p}\n" for p in paths),
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert res.returncode in (0, 1), res.stderr
    return [line for line in res.stdout.splitlines() if line]


def test_files_are_private(cluster: Cluster) -> None:
    c = cluster
    d = cdir(c)
    everything = sorted(d.rglob("*"))
    files = [p for p in everything if p.is_file()]
    assert len(files) > 50, "the cluster has written its state"
    # the probe sees what a user can read: a file the cluster does not protect is readable
    control = c.home / "readable-control"
    control.write_text("x")
    control.chmod(0o644)
    assert readable_by_nobody([control]) == [str(control)]
    assert readable_by_nobody([d, *everything]) == []
    # and the modes below the top directory hold on their own
    d.chmod(0o755)
    try:
        assert readable_by_nobody(everything) == []
    finally:
        d.chmod(0o700)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    api = d / "apiserver"
    assert mode(d) == 0o700
    assert mode(api) == 0o700 and mode(api / "pki") == 0o700
    for key in ("ca.key", "apiserver.key", "admin.key", "token", "sa.key"):
        assert mode(api / "pki" / key) == 0o600, key
    dbs = [api / "state.db", api / "state.db-wal", api / "state.db-shm"]
    assert [mode(p) for p in dbs] == [0o600] * 3
    assert mode(api / "kubeconfig") == 0o600
    # each pod's own token, in its kube-api-access volume (the atomic writer's ..data)
    tokens = sorted(d.glob("nodes/*/pods/*/volumes/kube-api-access-*/..data/token"))
    assert len(tokens) >= 5  # client, 2 web, 2 coredns
    for t in tokens:
        assert mode(t) == 0o600, t
    # what the pod reads through its service account mount is its own token, not the admin's
    admin = (api / "pki" / "token").read_text().strip()
    sa = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    token = c.exec("client", "cat", sa).stdout.strip()
    assert token != admin and token.count(".") == 2
    assert token.encode() in {t.read_bytes() for t in tokens}
    assert mode(Path(c.env["KUBECONFIG"])) == 0o600


def test_kube_proxy_reads_as_itself(cluster: Cluster) -> None:
    """kube-proxy has its own credentials (the user system:kube-proxy, which the bootstrap
    binding system:node-proxier grants what it reads, and nothing else), and uses them: with
    the binding gone, a restarted node's kube-proxy is refused as that user."""
    c = cluster
    kcfg = cdir(c) / "apiserver" / "kube-proxy.kubeconfig"
    assert stat.S_IMODE(kcfg.stat().st_mode) == 0o600
    as_proxy = f"--kubeconfig={kcfg}"
    who = json.loads(c.out("auth", "whoami", "-o", "json", as_proxy))
    assert who["status"]["userInfo"]["username"] == "system:kube-proxy"

    def can_i(*args: str) -> str:
        return c.kubectl("auth", "can-i", *args, as_proxy, check=False).stdout.strip()

    assert can_i("watch", "endpointslices.discovery.k8s.io", "-A") == "yes"
    assert can_i("list", "services", "-A") == "yes"
    assert can_i("get", "secrets", "-A") == "no"
    assert can_i("list", "pods", "-A") == "no"
    node = sorted(c.json("get", "nodes")["items"], key=lambda n: n["metadata"]["name"])[0]
    name = node["metadata"]["name"]
    argv = Path(f"/proc/{component_pids(c)[name]}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"--proxy-kubeconfig") + 1] == str(kcfg).encode()

    binding = c.json("get", "clusterrolebinding", "system:node-proxier")
    log = cdir(c) / "logs" / f"{name}.log"
    seen = log.stat().st_size
    c.out("delete", "clusterrolebinding", "system:node-proxier")
    try:
        os.kill(component_pids(c)[name], signal.SIGKILL)  # the supervisor starts it again

        def refused() -> bool:
            with log.open("rb") as f:
                f.seek(seen)
                text = f.read().decode(errors="replace")
            return 'User \\"system:kube-proxy\\" cannot list resource' in text

        wait_for(refused, timeout=30, what="the restarted kube-proxy to be refused as itself")
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            binding["metadata"].pop(key, None)
        c.kubectl("apply", "-f", "-", input=json.dumps(binding))
    wait_for(
        lambda: all(pod_ready(p) for p in c.json("get", "pods", "-l", "app=web")["items"]),
        timeout=60,
        what="the web pods to be ready again",
    )


# -- up on a cluster that exists -----------------------------------------------------------
def test_up_on_a_running_cluster_changes_nothing(cluster: Cluster) -> None:
    c = cluster
    before, processes = component_pids(c), cluster_processes(c)
    res = c.kubesvc("up", "--name", c.name, "--nodes", "3")
    assert "--nodes 3 ignored" in res.stdout
    assert f"cluster {c.name!r} is running" in res.stdout
    assert component_pids(c) == before
    assert cluster_processes(c) == processes
    assert len(c.json("get", "nodes")["items"]) == 2


# -- stop, start ---------------------------------------------------------------------------
def test_stop_start_keeps_objects_credentials_and_addresses(cluster: Cluster) -> None:
    c = cluster
    all_ready(c)
    before = snapshot(c)
    counts = restarts(c)
    t0 = time.monotonic()
    c.kubesvc("stop", "--name", c.name)
    stop_took = time.monotonic() - t0
    assert_stopped(c)
    assert c.kubectl("get", "pods", check=False, timeout=15).returncode != 0
    t0 = time.monotonic()
    res = c.kubesvc("start", "--name", c.name)
    start_took = time.monotonic() - t0
    assert "ready" in res.stdout
    all_ready(c)
    after = snapshot(c)
    for key in ("nodes", "services", "pods", "credentials", "secret"):
        assert after[key] == before[key], key
    missing = set(before["objects"].items()) - set(after["objects"].items())
    assert missing == set()
    # the pods are the same objects in new sandboxes: their containers ran again. The pods
    # still read Ready from before the stop until the agents of now publish their new
    # statuses, which can be just after `start` returns (the agents start them then)
    want = {n: counts[n] + 1 for n in counts}
    wait_for(lambda: restarts(c) == want, timeout=30, what=f"restart counts {want}")
    service_works(c)
    print(f"stop {stop_took:.2f}s, start {start_took:.2f}s")


def test_up_resumes_a_stopped_cluster(cluster: Cluster) -> None:
    c = cluster
    marker = c.json("get", "configmap", "marker")["metadata"]["uid"]
    c.kubesvc("stop", "--name", c.name)
    assert_stopped(c)
    res = c.kubesvc("up", "--name", c.name)
    assert "ready" in res.stdout
    assert c.json("get", "configmap", "marker")["metadata"]["uid"] == marker
    all_ready(c)
    service_works(c)


def test_up_repairs_a_half_running_cluster(cluster: Cluster) -> None:
    """The supervisor and the API server die; `up` starts a new supervisor that keeps the
    live processes (no second copy) and starts the API server again, with all the state."""
    c = cluster
    marker = c.json("get", "configmap", "marker")["metadata"]["uid"]
    pids = component_pids(c)
    supervisor = int((cdir(c) / "pids" / "supervisor.pid").read_text())
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not alive(supervisor), timeout=10, what="the supervisor gone")
    os.kill(pids["apiserver"], signal.SIGKILL)
    wait_for(lambda: not alive(pids["apiserver"]), timeout=10, what="the API server gone")
    time.sleep(0.5)  # nothing restarts it now
    assert not any(alive(p) for p in [int((cdir(c) / "pids" / "apiserver.pid").read_text())])
    first = status(c).splitlines()[0]
    assert "degraded" in first
    res = c.kubesvc("up", "--name", c.name)
    assert "half-running" in res.stdout and "ready" in res.stdout
    now = component_pids(c)
    assert now["apiserver"] != pids["apiserver"]
    assert {k: v for k, v in now.items() if k != "apiserver"} == {
        k: v for k, v in pids.items() if k != "apiserver"
    }
    kinds = [p.split()[0] for p in cluster_processes(c)]
    assert sorted(kinds) == sorted(["apiserver", "controller-manager", "node", "node", "supervise"])
    assert c.json("get", "configmap", "marker")["metadata"]["uid"] == marker
    state = json.loads((cdir(c) / "supervisor.json").read_text())["components"]
    assert state["apiserver"]["restarts"] == 1
    assert "running" in status(c).splitlines()[0]
    service_works(c)


def test_start_and_stop_explain_unknown_clusters(cluster: Cluster) -> None:
    c = cluster
    res = c.kubesvc("start", "--name", "nosuch" + c.name, check=False)
    assert res.returncode == 1 and "kubesvc up --name nosuch" in res.stderr
    res = c.kubesvc("stop", "--name", "nosuch" + c.name, check=False)
    assert res.returncode == 1 and "kubesvc status" in res.stderr


# -- down ----------------------------------------------------------------------------------
def test_down_removes_everything_and_its_kubeconfig_entries(cluster: Cluster) -> None:
    c = cluster
    kubeconfig = Path(c.env["KUBECONFIG"])
    cfg = yaml.safe_load(kubeconfig.read_text())
    context = f"kubesvc-{c.name}"
    assert cfg["current-context"] == context
    c.kubesvc("down", "--name", c.name)
    assert cluster_processes(c) == []
    assert netns.names(f"ksv-{c.name}-") == []
    assert not cdir(c).exists()
    cfg = yaml.safe_load(kubeconfig.read_text())
    assert context not in [x["name"] for x in cfg.get("contexts") or []]
    assert context not in [x["name"] for x in cfg.get("clusters") or []]
    assert f"{context}-admin" not in [x["name"] for x in cfg.get("users") or []]
    assert cfg["current-context"] == ""
    assert sorted(os.listdir(kubeconfig.parent)) == [".config.kubesvc-lock", "config"]
    assert "no cluster named" in c.kubesvc("down", "--name", c.name).stdout
