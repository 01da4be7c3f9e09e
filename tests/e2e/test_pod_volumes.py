"""Pod volumes and env from ConfigMaps/Secrets, seen from inside the pod with kubectl exec.

One 2-node cluster (unique name) is shared by the tests. Mount paths live under a
directory the test creates on the host and removes, since pods share the host filesystem.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import AGNHOST, Cluster, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.podspecs import apply, busybox_pod, cat, uniq, wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Cluster, Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-volumes-", dir="/tmp"))
    try:
        with running_cluster(tmp, "v") as c:
            yield c, tmp / "mnt"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_every_volume_kind_is_seen_inside_the_pod(env: tuple[Cluster, Path]) -> None:
    c, base = env
    name = uniq("vols")
    cm, sec = uniq("cm"), uniq("sec")
    c.out("create", "configmap", cm, "--from-literal=a=alpha", "--from-literal=b=beta")
    c.out("create", "secret", "generic", sec, "--from-literal=password=hunter2")
    host_dir = base / name / "host"
    m = str(base / name)
    vols = [
        {"name": "cm", "configMap": {"name": cm}},
        {
            "name": "cm-items",
            "configMap": {
                "name": cm,
                "items": [{"key": "b", "path": "sub/renamed", "mode": 0o600}],
            },
        },
        {"name": "sec", "secret": {"secretName": sec, "defaultMode": 0o400}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {
            "name": "down",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {
                        "path": "mem_limit",
                        "resourceFieldRef": {
                            "containerName": "main",
                            "resource": "limits.memory",
                            "divisor": "1Mi",
                        },
                    },
                ]
            },
        },
        {
            "name": "proj",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"configMap": {"name": cm, "items": [{"key": "a", "path": "a.txt"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}
                            ]
                        }
                    },
                ]
            },
        },
        {"name": "host", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
    ]
    mounts = [
        {"name": "cm", "mountPath": f"{m}/cm"},
        {"name": "cm-items", "mountPath": f"{m}/items"},
        {"name": "sec", "mountPath": f"{m}/sec", "readOnly": True},
        {"name": "scratch", "mountPath": f"{m}/scratch"},
        {"name": "mem", "mountPath": f"{m}/mem"},
        {"name": "down", "mountPath": f"{m}/down"},
        {"name": "proj", "mountPath": f"{m}/proj"},
        {"name": "host", "mountPath": f"{m}/hostvol"},
        {"name": "cm", "mountPath": f"{m}/only-a", "subPath": "a"},
    ]
    apply(
        c,
        busybox_pod(name, mounts, vols, resources={"limits": {"memory": "64Mi"}}),
    )
    try:
        wait_ready(c, name)
        assert cat(c, name, f"{m}/cm/a") == "alpha"
        assert cat(c, name, f"{m}/cm/b") == "beta"
        assert cat(c, name, f"{m}/only-a") == "alpha"
        assert cat(c, name, f"{m}/items/sub/renamed") == "beta"
        assert c.exec(name, "ls", f"{m}/items").stdout.split() == ["sub"]
        assert (
            c.exec(name, "stat", "-L", "-c", "%a", f"{m}/items/sub/renamed").stdout.strip() == "600"
        )
        # the atomic writer's layout: user-visible names are symlinks into ..data
        listing = c.exec(name, "ls", "-la", f"{m}/cm").stdout
        assert "..data -> ..20" in listing
        assert "a -> ..data/a" in listing
        assert cat(c, name, f"{m}/sec/password") == "hunter2"
        assert (
            c.exec(name, "stat", "-L", "-c", "%a %U", f"{m}/sec/password").stdout.strip()
            == "400 root"
        )
        assert c.exec(name, "touch", f"{m}/sec/new", check=False).returncode != 0  # readOnly
        c.exec(name, "sh", "-c", f"echo hi > {m}/scratch/f")
        assert cat(c, name, f"{m}/scratch/f") == "hi\n"
        mounts_text = cat(c, name, "/proc/mounts")
        # each volume is mounted once, however the agent's start and its tick interleave
        targets = [line.split()[1] for line in mounts_text.splitlines()]
        for sub in ("cm", "items", "sec", "scratch", "mem", "down", "proj", "hostvol", "only-a"):
            assert targets.count(f"{m}/{sub}") == 1, (sub, mounts_text)
        mem_line = next(line for line in mounts_text.splitlines() if f"{m}/mem " in line)
        assert mem_line.startswith("tmpfs ") and "size=16384k" in mem_line
        assert cat(c, name, f"{m}/down/name") == name
        assert 'app="' + name + '"' in cat(c, name, f"{m}/down/labels")
        assert cat(c, name, f"{m}/down/mem_limit") == "64"
        assert cat(c, name, f"{m}/proj/a.txt") == "alpha"
        assert cat(c, name, f"{m}/proj/ns") == "default"
        assert cat(c, name, f"{m}/proj/token")
        assert host_dir.is_dir()  # DirectoryOrCreate made it on the node
        c.exec(name, "sh", "-c", f"echo from-pod > {m}/hostvol/x")
        assert (host_dir / "x").read_text() == "from-pod\n"
        # a pod's mounts are its own: the host does not see them
        assert not (base / name / "cm" / "a").exists()
    finally:
        c.kubectl("delete", "pod", name, "--wait=false", check=False)
        c.kubectl("delete", "configmap", cm, "secret", sec, check=False)


def test_configmap_update_reaches_a_running_pod(env: tuple[Cluster, Path]) -> None:
    c, base = env
    name, cm = uniq("upd"), uniq("cm")
    c.out("create", "configmap", cm, "--from-literal=greeting=hello")
    mounts = [{"name": "cm", "mountPath": f"{base}/{name}"}]
    apply(c, busybox_pod(name, mounts, [{"name": "cm", "configMap": {"name": cm}}]))
    try:
        wait_ready(c, name)
        assert cat(c, name, f"{base}/{name}/greeting") == "hello"
        c.out(
            "patch",
            "configmap",
            cm,
            "-p",
            json.dumps({"data": {"greeting": "bonjour", "new": "1"}}),
        )
        wait_for(
            lambda: cat(c, name, f"{base}/{name}/greeting") == "bonjour" or None,
            timeout=20,
            what="the new ConfigMap content in the pod",
        )
        assert cat(c, name, f"{base}/{name}/new") == "1"
        # the volume's content is on the node, and goes with the pod
        pod = c.json("get", "pod", name)
        pod_dir = (
            c.home / c.name / "nodes" / pod["spec"]["nodeName"] / "pods" / pod["metadata"]["uid"]
        )
        assert (pod_dir / "volumes" / "cm" / "greeting").read_text() == "bonjour"
        c.out("delete", "pod", name, "--wait=true")
        wait_for(lambda: not pod_dir.exists() or None, timeout=10, what="the pod's volumes removed")
    finally:
        c.kubectl("delete", "pod", name, "--wait=false", check=False)
        c.kubectl("delete", "configmap", cm, check=False)


def test_missing_secret_holds_the_pod_until_it_exists(env: tuple[Cluster, Path]) -> None:
    c, base = env
    name, sec = uniq("wait"), uniq("sec")
    mounts = [{"name": "x", "mountPath": f"{base}/{name}"}]
    apply(c, busybox_pod(name, mounts, [{"name": "x", "secret": {"secretName": sec}}]))
    try:
        message = f'MountVolume.SetUp failed for volume "x" : secret "{sec}" not found'

        def failed_mount() -> bool | None:
            events = c.json("get", "events", "--field-selector", f"involvedObject.name={name}")
            return (
                any(
                    e.get("reason") == "FailedMount" and e.get("message") == message
                    for e in events["items"]
                )
                or None
            )

        wait_for(failed_mount, timeout=20, what="a FailedMount event")
        pod = c.json("get", "pod", name)
        state = pod["status"]["containerStatuses"][0]["state"]
        assert state == {"waiting": {"reason": "ContainerCreating"}}
        c.out("create", "secret", "generic", sec, "--from-literal=k=v")
        wait_ready(c, name)
        assert cat(c, name, f"{base}/{name}/k") == "v"
    finally:
        c.kubectl("delete", "pod", name, "--wait=false", check=False)
        c.kubectl("delete", "secret", sec, check=False)


def test_env_from_configmap_and_secret_refs(env: tuple[Cluster, Path]) -> None:
    c, _ = env
    name, cm, sec = uniq("env"), uniq("cm"), uniq("sec")
    pod = busybox_pod(
        name,
        [],
        [],
        env=[
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "k"}}},
            {"name": "FROM_SEC", "valueFrom": {"secretKeyRef": {"name": sec, "key": "p"}}},
            {
                "name": "OPTIONAL",
                "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x", "optional": True}},
            },
        ],
        envFrom=[{"configMapRef": {"name": cm}, "prefix": "CM_"}],
    )
    apply(c, pod)
    try:

        def config_error() -> bool | None:
            st = c.json("get", "pod", name).get("status", {}).get("containerStatuses") or []
            waiting = (st[0].get("state") or {}).get("waiting") or {} if st else {}
            return (
                waiting.get("reason") == "CreateContainerConfigError"
                and waiting.get("message") == f'configmap "{cm}" not found'
            ) or None

        wait_for(config_error, timeout=20, what="CreateContainerConfigError")
        c.out("create", "configmap", cm, "--from-literal=k=from-configmap")
        c.out("create", "secret", "generic", sec, "--from-literal=p=from-secret")
        wait_ready(c, name)
        out = c.exec(name, "env").stdout.splitlines()
        assert "FROM_CM=from-configmap" in out
        assert "FROM_SEC=from-secret" in out
        assert "CM_k=from-configmap" in out
        assert not any(line.startswith("OPTIONAL=") for line in out)
    finally:
        c.kubectl("delete", "pod", name, "--wait=false", check=False)
        c.kubectl("delete", "configmap", cm, "secret", sec, check=False)


def test_downward_labels_follow_the_pod_and_host_path_types_are_checked(
    env: tuple[Cluster, Path],
) -> None:
    c, base = env
    name, bad = uniq("down"), uniq("hostpath")
    vols = [
        {
            "name": "d",
            "downwardAPI": {
                "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
            },
        }
    ]
    apply(c, busybox_pod(name, [{"name": "d", "mountPath": f"{base}/{name}"}], vols))
    missing = base / f"{bad}-missing"
    apply(
        c,
        busybox_pod(
            bad,
            [{"name": "h", "mountPath": f"{base}/{bad}"}],
            [{"name": "h", "hostPath": {"path": str(missing), "type": "Directory"}}],
        ),
    )
    try:
        wait_ready(c, name)
        c.out("label", "pod", name, "color=blue")
        wait_for(
            lambda: 'color="blue"' in cat(c, name, f"{base}/{name}/labels") or None,
            timeout=20,
            what="the new label in the downwardAPI file",
        )
        message = (
            f'MountVolume.SetUp failed for volume "h" : hostPath type check failed: '
            f"{missing} is not a directory"
        )

        def failed_mount() -> bool | None:
            events = c.json("get", "events", "--field-selector", f"involvedObject.name={bad}")
            return any(e.get("message") == message for e in events["items"]) or None

        wait_for(failed_mount, timeout=20, what="a FailedMount event for the hostPath")
        assert not missing.exists()
    finally:
        c.kubectl("delete", "pod", name, bad, "--wait=false", check=False)


def test_upstream_style_mounttest_reads_volumes(env: tuple[Cluster, Path]) -> None:
    """As upstream's ConfigMap and EmptyDir conformance tests check volumes: agnhost
    mounttest in the pod, its output in the container log."""
    c, base = env
    name, cm = uniq("mt"), uniq("cm")
    c.out("create", "configmap", cm, "--from-literal=data-1=value-1")
    cfg, mem = f"{base}/{name}/configmap-volume", f"{base}/{name}/test-volume"
    apply(
        c,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "agnhost-container",
                        "image": AGNHOST,
                        "args": [
                            "mounttest",
                            f"--file_content={cfg}/data-1",
                            f"--file_mode={cfg}/data-1",
                            f"--fs_type={mem}",
                            f"--new_file_0644={mem}/test-file",
                            f"--file_perm={mem}/test-file",
                        ],
                        "volumeMounts": [
                            {"name": "cfg", "mountPath": cfg},
                            {"name": "mem", "mountPath": mem},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "cfg", "configMap": {"name": cm, "defaultMode": 0o400}},
                    {"name": "mem", "emptyDir": {"medium": "Memory"}},
                ],
            },
        },
    )
    try:

        def succeeded() -> bool | None:
            return c.json("get", "pod", name)["status"].get("phase") == "Succeeded" or None

        wait_for(succeeded, timeout=30, what="mounttest to succeed")
        out = c.out("logs", name).splitlines()
        assert f'content of file "{cfg}/data-1": value-1' in out
        assert f'mode of file "{cfg}/data-1": -r--------' in out
        assert f'mount type of "{mem}": tmpfs' in out
        assert f'perms of file "{mem}/test-file": -rw-r--r--' in out
    finally:
        c.kubectl("delete", "pod", name, "--wait=false", check=False)
        c.kubectl("delete", "configmap", cm, check=False)


def test_a_restarted_node_agent_keeps_volumes_current(env: tuple[Cluster, Path]) -> None:
    c, base = env
    name, cm = uniq("adopt"), uniq("cm")
    c.out("create", "configmap", cm, "--from-literal=k=before")
    mount = f"{base}/{name}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": AGNHOST,
                    "args": ["pause"],
                    "volumeMounts": [{"name": "cm", "mountPath": mount}],
                }
            ],
            "volumes": [{"name": "cm", "configMap": {"name": cm}}],
        },
    }
    apply(c, pod)
    try:
        node = wait_ready(c, name)["spec"]["nodeName"]
        pids = c.home / c.name / "pids"
        agent_pid = int((pids / f"{node}.pid").read_text())
        os.kill(agent_pid, signal.SIGKILL)

        def restarted() -> bool | None:
            try:
                pid = int((pids / f"{node}.pid").read_text())
            except (OSError, ValueError):
                return None
            return pid != agent_pid or None

        wait_for(restarted, timeout=30, what="the node agent started again")
        # changed while no agent runs or while the new one starts: it still arrives
        c.out("patch", "configmap", cm, "-p", json.dumps({"data": {"k": "after"}}))
        wait_for(
            lambda: c.exec(name, "cat", f"{mount}/k", check=False).stdout == "after" or None,
            timeout=30,
            what="the update through the new agent",
        )
        out = c.exec(name, "/agnhost", "dns-suffix").stdout
        assert out.startswith("default.svc.cluster.local,")
        assert c.json("get", "pod", name)["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        c.kubectl("delete", "pod", name, "--wait=false", check=False)
        c.kubectl("delete", "configmap", cm, check=False)
