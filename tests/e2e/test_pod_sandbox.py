"""The pod sandbox as a boundary, on a real 2-node cluster: what a pod can see and do of the
host (its own root, processes and capabilities, nothing of kubesvc's state, kubeconfigs or
other pods), and the securityContext fields, each tried from inside the pod."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesvc.node import sandbox
from kubesvc.node.agent import RUNTIME_DIRS
from tests.e2e.cluster import Cluster, pod_ready, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.podspecs import apply, busybox_pod, uniq, wait_ready

pytestmark = pytest.mark.e2e

DOCKER_CAPS = "00000000a80425fb"  # Docker's 14 default capabilities, as /proc shows them


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("kubesvc"), "sbx") as c:
        yield c


def _pod(c: Cluster, name: str, pod_sc: dict[str, Any] | None = None, **ctr: Any) -> None:
    pod = busybox_pod(
        name,
        [{"name": "scratch", "mountPath": "/scratch"}],
        [{"name": "scratch", "emptyDir": {}}],
        **ctr,
    )
    if pod_sc is not None:
        pod["spec"]["securityContext"] = pod_sc
    apply(c, pod)


def _sh(c: Cluster, pod: str, script: str, check: bool = True) -> str:
    res = c.exec(pod, "sh", "-c", script, check=check)
    return res.stdout + res.stderr


def _status_field(c: Cluster, pod: str, field: str) -> str:
    for line in _sh(c, pod, "cat /proc/self/status").splitlines():
        if line.startswith(field + ":"):
            return line.split()[1]
    raise AssertionError(f"no {field} in /proc/self/status")


def _made_since(path: str, since: float) -> bool:
    try:
        return os.stat(path).st_ctime >= since
    except FileNotFoundError:
        return False


def test_a_pod_sees_nothing_of_the_host_or_other_pods(cluster: Cluster) -> None:
    started = time.time() - 1
    a, b = uniq("iso-a"), uniq("iso-b")
    _pod(cluster, a)
    _pod(cluster, b)
    wait_ready(cluster, a)
    wait_ready(cluster, b)
    _sh(cluster, b, "echo b-secret > /tmp/b-file && echo b-secret > /scratch/b-file")
    ca_keys = list(cluster.home.rglob("ca.key"))
    assert ca_keys, "the cluster has a CA key"
    kubeconfig = cluster.env["KUBECONFIG"]
    b_uid = cluster.json("get", "pod", b)["metadata"]["uid"]
    b_volume = next(cluster.home.rglob(f"pods/{b_uid}/volumes/scratch"))
    assert (b_volume / "b-file").read_text() == "b-secret\n"  # it is there, on the host
    for path in [*map(str, ca_keys), kubeconfig, "/root/.kube/config", f"{b_volume}/b-file"]:
        out = _sh(cluster, a, f"cat '{path}'", check=False)
        assert "No such file or directory" in out, (path, out)
    # its own /tmp, not b's and not the host's
    assert "No such file" in _sh(cluster, a, "cat /tmp/b-file", check=False)
    # (only what the built-in images run from, when kubesvc itself lives under /tmp)
    runtime = {d.split("/")[2] for d in RUNTIME_DIRS if d.startswith("/tmp/")}
    assert set(_sh(cluster, a, "ls /tmp").split()) == runtime
    for host_dir in (str(cluster.home), "/run/netns", "/run/kubesvc", "/var/lib/kubesvc"):
        assert "No such file" in _sh(cluster, a, f"ls {host_dir}", check=False), host_dir
    # the host's /etc is not there: only the files programs read
    assert "No such file" in _sh(cluster, a, "cat /etc/shadow", check=False)
    assert _sh(cluster, a, "head -1 /etc/passwd").startswith("root:")
    # nothing of it is made on the host either
    assert not _made_since("/var/run/secrets/kubernetes.io/serviceaccount", started)
    assert not _made_since("/scratch", started)


def test_a_pod_sees_its_own_processes_only(cluster: Cluster) -> None:
    name = uniq("ps")
    _pod(cluster, name)
    wait_ready(cluster, name)
    procs = _sh(cluster, name, "ps -o pid,comm").splitlines()[1:]
    commands = {line.split()[1] for line in procs}
    # the pause (PID 1), the container's sleep, and this exec's shell and ps
    assert commands == {"catatonit", "sleep", "sh", "ps"}, procs
    assert procs[0].split() == ["1", "catatonit"]


def test_a_pod_cannot_reach_into_the_host(cluster: Cluster) -> None:
    name = uniq("caps")
    _pod(cluster, name)
    wait_ready(cluster, name)
    assert _status_field(cluster, name, "CapEff") == DOCKER_CAPS
    assert _status_field(cluster, name, "CapBnd") == DOCKER_CAPS
    assert _status_field(cluster, name, "NoNewPrivs") == "1"
    # no namespace of the host to enter, and no right to make or enter one
    out = _sh(cluster, name, "nsenter -t 1 -m -n true", check=False)
    assert "Permission denied" in out or "Operation not permitted" in out, out
    out = _sh(cluster, name, "unshare -m true", check=False)
    assert "Operation not permitted" in out, out
    out = _sh(cluster, name, "mount -t tmpfs none /scratch", check=False)
    assert "permission denied" in out.lower(), out
    # the kernel's knobs are read-only
    out = _sh(cluster, name, "echo x > /proc/sys/kernel/core_pattern", check=False)
    assert "Read-only file system" in out, out


def test_run_as_user_group_and_capabilities(cluster: Cluster) -> None:
    name = uniq("user")
    _pod(
        cluster,
        name,
        {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]},
        securityContext={"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
    )
    wait_ready(cluster, name)
    assert _sh(cluster, name, "id -u; id -g; id -G").split() == ["1000", "3000", "3000", "4000"]
    # a user other than root holds no capability; the bounding set is what was asked
    assert _status_field(cluster, name, "CapEff") == "0000000000000000"
    assert _status_field(cluster, name, "CapBnd") == "0000000000000400"
    # the container's process itself, not only what exec runs
    assert _sh(cluster, name, "stat -c %u /proc/$(pgrep sleep)") == "1000\n"
    # its token is its user's alone
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert _sh(cluster, name, f"stat -L -c '%u %a' {token}") == "1000 600\n"
    assert _sh(cluster, name, f"head -c 3 {token}") == "eyJ"


def test_read_only_root_filesystem(cluster: Cluster) -> None:
    name = uniq("ro")
    _pod(cluster, name, securityContext={"readOnlyRootFilesystem": True})
    wait_ready(cluster, name)
    assert "Read-only file system" in _sh(cluster, name, "touch /x", check=False)
    assert "Read-only file system" in _sh(cluster, name, "touch /tmp/x", check=False)
    _sh(cluster, name, "touch /scratch/x")  # a volume stays writable


def test_allow_privilege_escalation_leaves_no_new_privs_off(cluster: Cluster) -> None:
    name = uniq("esc")
    _pod(cluster, name, securityContext={"allowPrivilegeEscalation": True})
    wait_ready(cluster, name)
    assert _status_field(cluster, name, "NoNewPrivs") == "0"


def test_run_as_non_root_refuses_root(cluster: Cluster) -> None:
    name = uniq("nonroot")
    _pod(cluster, name, {"runAsNonRoot": True})
    uid = cluster.json("get", "pod", name)["metadata"]["uid"]

    def refused() -> dict[str, Any] | None:
        statuses = cluster.json("get", "pod", name).get("status", {}).get("containerStatuses")
        waiting = ((statuses or [{}])[0].get("state") or {}).get("waiting") or {}
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    waiting = wait_for(refused, timeout=30, what="CreateContainerConfigError")
    assert waiting["message"] == (
        f'container has runAsNonRoot and image will run as root (pod: "{name}_default({uid})", '
        "container: main)"
    )
    events = cluster.out("get", "events", "--field-selector", f"involvedObject.name={name}")
    assert "Error: container has runAsNonRoot and image will run as root" in events
    # a non-root user is let through
    ok = uniq("nonroot-ok")
    _pod(cluster, ok, {"runAsNonRoot": True, "runAsUser": 1000})
    wait_ready(cluster, ok)


def test_a_privileged_pod_with_host_pid_gets_the_host(cluster: Cluster) -> None:
    name = uniq("priv")
    pod = busybox_pod(name, [], [], securityContext={"privileged": True})
    pod["spec"]["hostPID"] = True
    apply(cluster, pod)
    wait_ready(cluster, name)
    # every capability the host's root has
    host = next(x for x in Path("/proc/self/status").read_text().splitlines() if "CapEff" in x)
    assert _status_field(cluster, name, "CapEff") == host.split()[1]
    assert _status_field(cluster, name, "NoNewPrivs") == "0"
    # the host's processes (this test's own), and through them the host's namespaces
    me = os.getpid()
    assert _sh(cluster, name, f"cat /proc/{me}/comm") == Path(f"/proc/{me}/comm").read_text()
    host = _sh(cluster, name, f"nsenter -t {me} -m -u -n -- sh -c 'hostname; ls -d /root'")
    assert host.split() == [socket.gethostname(), "/root"]


def test_host_users_false_runs_the_pod_in_a_user_namespace(cluster: Cluster) -> None:
    name = uniq("userns")
    pod = busybox_pod(
        name,
        [{"name": "scratch", "mountPath": "/scratch"}],
        [{"name": "scratch", "emptyDir": {}}],
        command=["sh", "-c", "nc -l -p 80 & exec sleep 3600"],
    )
    pod["spec"]["hostUsers"] = False
    apply(cluster, pod)
    wait_ready(cluster, name)
    # root in the pod, with its capabilities and a writable root and volume...
    assert _sh(cluster, name, "id -u; touch /x /scratch/y && echo ok").split() == ["0", "ok"]
    assert _status_field(cluster, name, "CapEff") == DOCKER_CAPS
    uid_map = _sh(cluster, name, "cat /proc/self/uid_map").split()
    assert uid_map[0] == "0" and uid_map[2] == "65536" and int(uid_map[1]) >= 65536
    # ...is an unprivileged user on the host: its processes and the files it makes
    base = int(uid_map[1])
    sleep_pid = _sh(cluster, name, "pgrep -x sleep").strip()
    pod_uid = cluster.json("get", "pod", name)["metadata"]["uid"]
    volume = next(cluster.home.rglob(f"pods/{pod_uid}/volumes/scratch"))
    assert (volume / "y").stat().st_uid == base
    host_sleeps = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _owner(p) == base and _comm(p) == "sleep"
    ]
    assert host_sleeps, f"no sleep of uid {base} on the host (the pod's is {sleep_pid})"
    # its token is its root's, and a port below 1024 is its to bind
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert _sh(cluster, name, f"stat -L -c '%u %a' {token}") == "0 600\n"
    assert ":80 " in _sh(cluster, name, "netstat -ltn 2>/dev/null || ss -ltn")


def test_every_pod_gets_a_user_namespace_unless_it_needs_the_hosts_users(
    cluster: Cluster,
) -> None:
    secret = uniq("key")
    cluster.out("create", "secret", "generic", secret, "--from-literal=k=v")
    name = uniq("default-userns")
    apply(
        cluster,
        busybox_pod(
            name,
            [{"name": "scratch", "mountPath": "/scratch"}, {"name": "s", "mountPath": "/s"}],
            [
                {"name": "scratch", "emptyDir": {}},
                {"name": "s", "secret": {"secretName": secret, "defaultMode": 0o400}},
            ],
        ),
    )
    host_path = uniq("hostpath")
    apply(
        cluster,
        busybox_pod(
            host_path,
            [{"name": "h", "mountPath": "/h"}],
            [
                {
                    "name": "h",
                    "hostPath": {
                        "path": str(cluster.home / host_path),
                        "type": "DirectoryOrCreate",
                    },
                }
            ],
        ),
    )
    host_users = uniq("hostusers")
    pod = busybox_pod(host_users, [], [])
    pod["spec"]["hostUsers"] = True
    apply(cluster, pod)
    for n in (name, host_path, host_users):
        wait_ready(cluster, n)
    # a pod that asks for nothing is root in a user namespace of its own...
    base = int(_sh(cluster, name, "cat /proc/self/uid_map").split()[1])
    assert base >= 65536 and base % 65536 == 0
    # ...whose root owns its volumes, as upstream's idmapped mounts show them: a 0400
    # Secret is readable, the emptyDir is root's
    assert _sh(cluster, name, "cat /s/k; stat -c %u /scratch") == "v0\n"
    # its pause is its own root's process, and ICMP echo sockets work without NET_RAW in
    # the host-owned network namespace
    assert _sh(cluster, name, "ps -o user,comm | grep catatonit").split() == ["root", "catatonit"]
    ip = cluster.json("get", "pod", host_users)["status"]["podIP"]
    assert "1 received" in _sh(cluster, name, f"ping -c 1 -W 5 {ip}")
    # hostUsers: true, and a hostPath volume (whose files keep host owners), keep the host's
    for n in (host_path, host_users):
        assert _sh(cluster, n, "cat /proc/self/uid_map").split() == ["0", "0", "4294967295"]
    # upstream refuses a user namespace together with a host namespace
    bad = busybox_pod(uniq("bad"), [], [])
    bad["spec"].update(hostUsers=False, hostNetwork=True)
    res = cluster.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0
    assert "spec.securityContext.hostNetwork: Forbidden: when `pod.Spec.HostUsers` is false" in (
        res.stderr
    )


def _owner(p: Path) -> int:
    try:
        return p.stat().st_uid
    except OSError:
        return -1


def _comm(p: Path) -> str:
    try:
        return (p / "comm").read_text().strip()
    except OSError:
        return ""


def test_a_killed_pause_gets_the_pod_a_new_sandbox(cluster: Cluster) -> None:
    name = uniq("pause")
    _pod(cluster, name)
    pod = wait_ready(cluster, name)
    mnt = sandbox.ns_files(cluster.name, pod["metadata"]["uid"])["mnt"]
    pause = sandbox.pause_pid(mnt)
    assert pause is not None
    os.kill(pause, signal.SIGKILL)  # and with it, the kernel ends every process of the pod

    def back() -> dict[str, Any] | None:
        p = cluster.json("get", "pod", name)
        restarts = p["status"]["containerStatuses"][0]["restartCount"]
        return p if restarts >= 1 and pod_ready(p) else None

    wait_for(back, timeout=30, what="the pod running again in a new sandbox")
    new = sandbox.pause_pid(mnt)
    assert new is not None and new != pause
    procs = _sh(cluster, name, "ps -o pid,comm").splitlines()[1:]
    assert procs[0].split() == ["1", "catatonit"]
    # the new root has the pod's files and volumes again
    _sh(cluster, name, "cat /etc/hosts /var/run/secrets/kubernetes.io/serviceaccount/token")
    _sh(cluster, name, "touch /scratch/again")
