"""No component but the admin's kubeconfig holds admin rights: each node agent is
`system:node:NAME` (group `system:nodes`), limited by the Node authorizer and NodeRestriction
to its own Node, Lease and pods and to what its pods refer to; the controller-manager is
`system:kube-controller-manager` and each controller writes with its own ServiceAccount's
token (`system:controller:*` roles); the scheduler is `system:kube-scheduler`; the
layer-2 speaker `system:metallb-speaker`. Each credential is a client certificate in a 0600
kubeconfig the API server writes.

One 2-node cluster (unique name) is shared by the tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesvc.client.rest import ApiClient, ApiException
from tests.e2e.cluster import AGNHOST, Cluster, pod_ready, running_cluster
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-ident-", dir="/tmp"))
    try:
        with running_cluster(tmp, "id", "--no-ingress") as c:
            yield c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def api_dir(c: Cluster) -> Path:
    return c.home / c.name / "apiserver"


def nodes(c: Cluster) -> list[str]:
    return sorted(n["metadata"]["name"] for n in c.json("get", "nodes")["items"])


def kubeconfig(c: Cluster, stem: str) -> str:
    path = api_dir(c) / f"{stem}.kubeconfig"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    return f"--kubeconfig={path}"


def component_argv(c: Cluster, name: str) -> list[bytes]:
    pid = int((c.home / c.name / "pids" / f"{name}.pid").read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


def flag(argv: list[bytes], name: str) -> str:
    return argv[argv.index(name.encode()) + 1].decode()


def whoami(c: Cluster, kcfg: str) -> dict[str, object]:
    info: dict[str, object] = json.loads(c.out("auth", "whoami", "-o", "json", kcfg))["status"][
        "userInfo"
    ]
    return info


def pod_with_volumes(name: str, node: str, configmap: str, secret: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "containers": [
                    {
                        "name": "c",
                        "image": AGNHOST,
                        "args": ["pause"],
                        "volumeMounts": [
                            {"name": "cm", "mountPath": "/etc/cm"},
                            {"name": "s", "mountPath": "/etc/s"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "cm", "configMap": {"name": configmap}},
                    {"name": "s", "secret": {"secretName": secret}},
                ],
            },
        }
    )


@pytest.fixture(scope="module")
def mounted(cluster: Cluster) -> tuple[str, str]:
    """Pod `vol` on the first node mounts ConfigMap `cm1` and Secret `s1`; Secret `other`
    is used by no pod. (first node, second node)"""
    c = cluster
    first, second = nodes(c)
    c.out("create", "configmap", "cm1", "--from-literal=a=1")
    c.out("create", "secret", "generic", "s1", "--from-literal=k=one")
    c.out("create", "secret", "generic", "other", "--from-literal=k=x")
    c.kubectl("apply", "-f", "-", input=pod_with_volumes("vol", first, "cm1", "s1"))
    wait_for(lambda: pod_ready(c.json("get", "pod", "vol")), timeout=60, what="pod vol Ready")
    return first, second


def test_node_agents_are_their_nodes(cluster: Cluster) -> None:
    c = cluster
    for node in nodes(c):
        kcfg = kubeconfig(c, f"kubelet-{node}")
        info = whoami(c, kcfg)
        assert info["username"] == f"system:node:{node}"
        assert "system:nodes" in info["groups"]  # type: ignore[operator]
        assert "system:masters" not in info["groups"]  # type: ignore[operator]
        argv = component_argv(c, node)
        assert flag(argv, "--kubeconfig") == kcfg.split("=", 1)[1]
        assert flag(argv, "--speaker-kubeconfig") == str(api_dir(c) / "metallb-speaker.kubeconfig")
    # the admin token is not what a node's kubelet API accepts, nor anything a node holds
    admin = (api_dir(c) / "pki" / "token").read_text().strip()
    for node in nodes(c):
        assert admin not in (api_dir(c) / f"kubelet-{node}.kubeconfig").read_text()


def test_a_node_reads_only_what_its_pods_refer_to(
    cluster: Cluster, mounted: tuple[str, str]
) -> None:
    c = cluster
    first, second = mounted
    as_first, as_second = kubeconfig(c, f"kubelet-{first}"), kubeconfig(c, f"kubelet-{second}")

    def denied(*args: str) -> str:
        res = c.kubectl(*args, check=False)
        assert res.returncode != 0, f"allowed: kubectl {' '.join(args)}"
        return res.stderr

    err = denied("get", "secrets", "-A", as_first)
    assert f'User "system:node:{first}" cannot list resource "secrets"' in err
    denied("get", "configmaps", "-A", as_first)
    err = denied("get", "secret", "other", as_first)
    assert f"no relationship found between node '{first}' and this object" in err
    # the Secret and ConfigMap its pod mounts: get, and a list or watch by name
    assert c.json("get", "secret", "s1", as_first)["data"]["k"]
    c.out("get", "configmap", "cm1", as_first)
    c.out("get", "secrets", "--field-selector=metadata.name=s1", as_first)
    # the other node runs no pod that mounts them
    denied("get", "secret", "s1", as_second)
    denied("get", "configmap", "cm1", as_second)
    # nodes: its own only
    c.out("get", "node", first, as_first)
    err = denied("get", "nodes", as_first)
    assert "cannot read all nodes, only its own Node object" in err
    denied("get", "node", second, as_first)


def refusal(c: Cluster, stem: str, call: Callable[[ApiClient], Awaitable[object]]) -> str:
    """The message of the API server's refusal of `call` made with `stem`'s kubeconfig."""

    async def run() -> str:
        async with ApiClient.from_kubeconfig(str(api_dir(c) / f"{stem}.kubeconfig")) as client:
            try:
                await call(client)
            except ApiException as e:
                assert e.status == 403, e
                return str(e.message)
        raise AssertionError("allowed")

    return asyncio.run(run())


def test_a_node_writes_only_its_own(cluster: Cluster, mounted: tuple[str, str]) -> None:
    c = cluster
    first, second = mounted
    stem = f"kubelet-{second}"
    label = {"metadata": {"labels": {"kubernetes.io/hostname": "x"}}}
    err = refusal(c, stem, lambda api: api.patch("Node", None, first, label))
    assert f'node "{second}" is not allowed to modify node "{first}"' in err
    status = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    err = refusal(c, stem, lambda api: api.patch("Node", None, first, status, subresource="status"))
    assert f'node "{second}" is not allowed to modify node "{first}"' in err
    err = refusal(
        c,
        stem,
        lambda api: api.patch(
            "Pod", "default", "vol", {"status": {"message": "x"}}, subresource="status"
        ),
    )
    assert (
        f'node "{second}" can only update pod status for pods with spec.nodeName set to itself'
        in err
    )
    err = refusal(c, stem, lambda api: api.delete("Pod", "default", "vol"))
    assert f'node "{second}" can only delete pods with spec.nodeName set to itself' in err
    lease = {"spec": {"holderIdentity": "x"}}
    err = refusal(c, stem, lambda api: api.patch("Lease", "kube-node-lease", first, lease))
    assert "can only access node lease with the same name as the requesting node" in err
    assert c.json("get", "pod", "vol")["spec"]["nodeName"] == first
    assert c.json("get", "lease", first, "-n", "kube-node-lease")["spec"]["holderIdentity"] == first


def test_can_i_as_a_node(cluster: Cluster, mounted: tuple[str, str]) -> None:
    c = cluster
    first, second = mounted
    as_node = ("--as", f"system:node:{first}", "--as-group", "system:nodes")

    def answer(*args: str) -> str:
        return c.kubectl("auth", "can-i", *args, *as_node, check=False).stdout.strip()

    def can_i(*args: str) -> str:
        return answer(*args).split(" - ", 1)[0]  # kubectl adds the reason to a "no"

    node_reason = f"no relationship found between node '{first}' and this object"
    assert answer("get", "secret/other") == f"no - {node_reason}"
    assert answer("list", "nodes") == (
        f"no - node '{first}' cannot read all nodes, only its own Node object"
    )
    assert can_i("get", "secret/s1") == "yes"
    assert can_i("get", "configmap/cm1") == "yes"
    assert can_i("get", "secret/other") == "no"
    assert can_i("list", "secrets", "-A") == "no"
    assert can_i("list", "configmaps") == "no"
    assert can_i("get", f"nodes/{first}") == "yes"
    assert can_i("get", f"nodes/{second}") == "no"
    assert can_i("list", "nodes") == "no"
    assert can_i("list", "services", "-A") == "yes"
    assert can_i("create", "events") == "yes"
    assert can_i("patch", "pods", "--subresource=status") == "yes"  # admission narrows it
    assert can_i("create", "serviceaccounts/default", "--subresource=token") == "yes"
    assert can_i("create", "serviceaccounts/other", "--subresource=token") == "no"
    assert can_i("create", "deployments") == "no"
    assert can_i("list", "endpointslices.discovery.k8s.io", "-A") == "no"


def test_volumes_follow_updates_through_per_object_watches(
    cluster: Cluster, mounted: tuple[str, str]
) -> None:
    c = cluster
    assert c.exec("vol", "cat", "/etc/cm/a").stdout == "1"
    c.out("patch", "configmap", "cm1", "-p", json.dumps({"data": {"a": "2"}}))
    c.out("patch", "secret", "s1", "-p", json.dumps({"stringData": {"k": "two"}}))
    wait_for(
        lambda: c.exec("vol", "cat", "/etc/cm/a", "/etc/s/k").stdout == "2two",
        timeout=10,
        what="the ConfigMap and Secret changes in the running pod",
    )
    # a pod whose Secret does not exist yet waits for it, and starts once it is created
    first = mounted[0]
    c.kubectl("apply", "-f", "-", input=pod_with_volumes("late", first, "cm1", "late-secret"))
    c.out("create", "secret", "generic", "late-secret", "--from-literal=k=late")
    wait_for(lambda: pod_ready(c.json("get", "pod", "late")), timeout=60, what="pod late Ready")
    assert c.exec("late", "cat", "/etc/s/k").stdout == "late"


def test_controller_manager_and_its_controllers(cluster: Cluster) -> None:
    c = cluster
    kcfg = kubeconfig(c, "kube-controller-manager")
    assert whoami(c, kcfg)["username"] == "system:kube-controller-manager"
    argv = component_argv(c, "controller-manager")
    assert flag(argv, "--kubeconfig") == kcfg.split("=", 1)[1]
    assert b"--use-service-account-credentials" in argv
    assert whoami(c, kubeconfig(c, "kube-scheduler"))["username"] == "system:kube-scheduler"

    def can_i(*args: str) -> str:
        return c.kubectl("auth", "can-i", *args, check=False).stdout.strip()

    # upstream's system:kube-controller-manager: reads everything, writes next to nothing
    assert can_i("list", "pods", "-A", kcfg) == "yes"
    assert can_i("create", "pods", kcfg) == "no"
    assert can_i("delete", "nodes", kcfg) == "no"
    assert can_i("update", "deployments", kcfg) == "no"
    assert can_i("create", "serviceaccounts/x", "--subresource=token", "-n", "kube-system", kcfg)
    rs = ("--as", "system:serviceaccount:kube-system:replicaset-controller")
    assert can_i("create", "pods", *rs) == "yes"
    assert can_i("list", "secrets", "-A", *rs) == "no"
    assert can_i("delete", "nodes", *rs) == "no"
    accounts = {a["metadata"]["name"] for a in c.json("get", "sa", "-n", "kube-system")["items"]}
    assert {"replicaset-controller", "deployment-controller", "endpointslice-controller"} <= (
        accounts
    )

    # the ReplicaSet controller writes as its ServiceAccount: without its binding, a new
    # ReplicaSet gets no pods and its refusals name that account; with it back, it does
    log = c.home / c.name / "logs" / "controller-manager.log"
    seen = log.stat().st_size
    binding = c.json("get", "clusterrolebinding", "system:controller:replicaset-controller")
    c.out("delete", "clusterrolebinding", "system:controller:replicaset-controller")
    try:
        c.out("create", "deployment", "held", f"--image={AGNHOST}", "--", "/agnhost", "pause")

        def refused() -> bool:
            with log.open("rb") as f:
                f.seek(seen)
                text = f.read().decode(errors="replace")
            return (
                'User \\"system:serviceaccount:kube-system:replicaset-controller\\" cannot' in text
            )

        wait_for(refused, timeout=30, what="the ReplicaSet controller refused as its account")
        assert c.json("get", "pods", "-l", "app=held")["items"] == []
    finally:
        restore(c, binding)
    wait_for(
        lambda: any(pod_ready(p) for p in c.json("get", "pods", "-l", "app=held")["items"]),
        timeout=60,
        what="the held Deployment's pod once the binding is back",
    )


def restore(c: Cluster, obj: dict[str, Any]) -> None:
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        obj["metadata"].pop(key, None)
    c.kubectl("apply", "-f", "-", input=json.dumps(obj))


def test_speaker_reads_as_itself(cluster: Cluster) -> None:
    c = cluster
    kcfg = kubeconfig(c, "metallb-speaker")
    assert whoami(c, kcfg)["username"] == "system:metallb-speaker"

    def can_i(*args: str) -> str:
        return c.kubectl("auth", "can-i", *args, kcfg, check=False).stdout.strip()

    assert can_i("list", "nodes") == "yes"
    assert can_i("watch", "endpointslices.discovery.k8s.io", "-A") == "yes"
    assert can_i("list", "ipaddresspools.metallb.io", "-n", "metallb-system") == "yes"
    assert can_i("get", "secrets", "-A") == "no"
    assert can_i("update", "services") == "no"
    # it and the node's routes use it: without its binding a restarted agent cannot list
    node = nodes(c)[0]
    log = c.home / c.name / "logs" / f"{node}.log"
    binding = c.json("get", "clusterrolebinding", "metallb-system:speaker")
    seen = log.stat().st_size
    c.out("delete", "clusterrolebinding", "metallb-system:speaker")
    try:
        pid = int((c.home / c.name / "pids" / f"{node}.pid").read_text())
        os.kill(pid, signal.SIGKILL)  # the supervisor starts it again

        def refused() -> bool:
            with log.open("rb") as f:
                f.seek(seen)
                text = f.read().decode(errors="replace")
            return 'User \\"system:metallb-speaker\\" cannot list resource' in text

        wait_for(refused, timeout=30, what="the restarted speaker to be refused as itself")
    finally:
        restore(c, binding)
    # its restarted agent runs once its reads are allowed again (agent.json rewritten)
    agent = c.home / c.name / "nodes" / node / "agent.json"
    wait_for(
        lambda: json.loads(agent.read_text())["pid"] != pid,
        timeout=60,
        what="the restarted agent running",
    )
