"""Pods and their ServiceAccounts on a real 2-node cluster: the admission's projected token
volume, the node's bound token inside the pod (it authenticates as the pod's ServiceAccount
and dies with the pod), automount turned off, a missing ServiceAccount refused, and the
cluster's own in-cluster clients (DNS, the ingress controller) on their own accounts."""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import Cluster, running_cluster
from tests.e2e.harness import KUBECTL, wait_for
from tests.e2e.podspecs import apply, busybox_pod, uniq, wait_ready

pytestmark = pytest.mark.e2e

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("kubesvc"), "sa") as c:
        yield c


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    pod = busybox_pod(name, [], [])
    pod["spec"].update(spec)
    return pod


def _whoami(c: Cluster, token: str) -> dict[str, Any] | None:
    """`kubectl auth whoami` holding only `token`."""
    config = yaml.safe_load(Path(c.env["KUBECONFIG"]).read_text())
    context = next(x for x in config["contexts"] if x["name"] == config["current-context"])
    cluster = next(x for x in config["clusters"] if x["name"] == context["context"]["cluster"])
    with tempfile.NamedTemporaryFile("wb", suffix=".crt") as ca:
        ca.write(base64.b64decode(cluster["cluster"]["certificate-authority-data"]))
        ca.flush()
        res = subprocess.run(
            [
                KUBECTL,
                "--kubeconfig=/dev/null",
                f"--server={cluster['cluster']['server']}",
                f"--certificate-authority={ca.name}",
                f"--token={token}",
                "auth",
                "whoami",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**c.env, "KUBECONFIG": "/dev/null"},
        )
    if res.returncode != 0:
        return None
    return json.loads(res.stdout)["status"]["userInfo"]  # type: ignore[no-any-return]


def test_a_pods_token_is_its_own_bound_to_it(cluster: Cluster) -> None:
    name = uniq("tok")
    apply(cluster, _pod(name))
    pod = wait_ready(cluster, name)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default"
    [volume] = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert volume["projected"]["sources"][0] == {
        "serviceAccountToken": {"path": "token", "expirationSeconds": 3607}
    }
    assert {
        "name": volume["name"],
        "readOnly": True,
        "mountPath": SA_DIR,
    } in spec["containers"][0]["volumeMounts"]
    token = cluster.exec(name, "cat", f"{SA_DIR}/token").stdout.strip()
    claims = _claims(token)
    uid = pod["metadata"]["uid"]
    assert claims["kubernetes.io"]["pod"] == {"name": name, "uid": uid}
    assert claims["kubernetes.io"]["node"]["name"] == spec["nodeName"]
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "default"
    # upstream extends the kubelet's 3607 s tokens to a year, warning after the hour
    assert claims["exp"] - claims["iat"] == 365 * 24 * 3600
    assert claims["kubernetes.io"]["warnafter"] == claims["iat"] + 3607
    ca = cluster.exec(name, "cat", f"{SA_DIR}/ca.crt").stdout
    cm = cluster.json("get", "configmap", "kube-root-ca.crt")
    assert ca == cm["data"]["ca.crt"]
    assert cluster.exec(name, "cat", f"{SA_DIR}/namespace").stdout == "default"
    assert cluster.exec(name, "stat", "-L", "-c", "%a", f"{SA_DIR}/token").stdout.strip() == "600"
    assert cluster.exec(name, "touch", f"{SA_DIR}/x", check=False).returncode != 0  # read-only
    user = _whoami(cluster, token)
    assert user is not None
    assert user["username"] == "system:serviceaccount:default:default"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == [name]
    cluster.out("delete", "pod", name, "--wait=true")
    wait_for(lambda: _whoami(cluster, token) is None, timeout=30, what="the token refused")


def test_automount_off_leaves_no_token(cluster: Cluster) -> None:
    name = uniq("notok")
    apply(cluster, _pod(name, automountServiceAccountToken=False))
    pod = wait_ready(cluster, name)
    try:
        assert not [v for v in pod["spec"].get("volumes") or [] if v["name"].startswith("kube-")]
        res = cluster.exec(name, "ls", "-A", SA_DIR, check=False)
        assert res.stdout.strip() == ""
    finally:
        cluster.kubectl("delete", "pod", name, "--wait=false", check=False)


def test_a_pod_of_a_missing_account_is_refused(cluster: Cluster) -> None:
    name = uniq("ghost")
    res = cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(_pod(name, serviceAccountName="ghost")),
        check=False,
    )
    assert res.returncode != 0
    assert (
        f'pods "{name}" is forbidden: error looking up service account default/ghost: '
        'serviceaccount "ghost" not found'
    ) in res.stderr


def test_cluster_components_use_their_own_accounts(cluster: Cluster) -> None:
    dns = cluster.json("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns")["items"]
    assert dns and all(p["spec"]["serviceAccountName"] == "coredns" for p in dns)
    wait_for(
        lambda: all(
            c.get("ready")
            for p in cluster.json("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns")[
                "items"
            ]
            for c in p["status"].get("containerStatuses") or [{}]
        ),
        timeout=60,
        what="cluster DNS ready",
    )
    ingress = cluster.json("-n", "ingress-kubesvc", "get", "pods")["items"]
    assert ingress and all(p["spec"]["serviceAccountName"] == "ingress-kubesvc" for p in ingress)
    # the ingress controller reads the API in-cluster too: it becomes Ready only once its
    # informers have synced
    wait_for(
        lambda: all(
            c.get("ready")
            for p in cluster.json("-n", "ingress-kubesvc", "get", "pods")["items"]
            for c in p["status"].get("containerStatuses") or [{}]
        ),
        timeout=60,
        what="the ingress controller ready",
    )
    # a name served by the DNS pods, which read the API as system:serviceaccount:kube-system:coredns
    name = uniq("dns")
    apply(cluster, _pod(name))
    wait_ready(cluster, name)
    try:
        out = wait_for(
            lambda: (
                cluster.exec(
                    name, "nslookup", "kubernetes.default.svc.cluster.local", check=False
                ).stdout
            ),
            timeout=30,
            what="an answer",
        )
        assert "10.96.0.1" in out
    finally:
        cluster.kubectl("delete", "pod", name, "--wait=false", check=False)
