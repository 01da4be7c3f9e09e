"""hostNetwork pods (the node's network namespace and address, DNS policy as upstream) and
the built-in agnhost at /agnhost inside its pods, for the command and for kubectl exec.

One 2-node cluster (unique name) is shared by the tests.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesvc import netns
from tests.e2e.cluster import AGNHOST, Cluster, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.podspecs import apply, busybox_pod, cat, uniq, wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-podnet-", dir="/tmp"))
    try:
        with running_cluster(tmp, "n") as c:
            yield c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def node_ip(c: Cluster, node: str) -> str:
    addrs = c.json("get", "node", node)["status"]["addresses"]
    return str(next(a["address"] for a in addrs if a["type"] == "InternalIP"))


def host_network_pod(name: str, **spec: Any) -> dict[str, Any]:
    pod = busybox_pod(name, [], [])
    pod["spec"].update(hostNetwork=True, **spec)
    return pod


def test_host_network_pod_runs_in_its_nodes_namespace(cluster: Cluster) -> None:
    c = cluster
    with_net, plain = uniq("hostnet"), uniq("hostnet-cf")
    apply(c, host_network_pod(with_net, dnsPolicy="ClusterFirstWithHostNet"))
    apply(c, host_network_pod(plain))
    try:
        pod = wait_ready(c, with_net)
        node = pod["spec"]["nodeName"]
        ip = node_ip(c, node)
        assert pod["status"]["podIP"] == ip
        assert pod["status"]["hostIP"] == ip
        assert pod["status"]["podIPs"] == [{"ip": ip}]
        assert c.exec(with_net, "hostname").stdout.strip() == node
        assert f"inet {ip}/" in c.exec(with_net, "ip", "-4", "addr").stdout
        # DNS: ClusterFirstWithHostNet uses the cluster's, ClusterFirst the node's
        assert "nameserver 10.96.0.10" in cat(c, with_net, "/etc/resolv.conf")
        wait_ready(c, plain)
        assert "10.96.0.10" not in cat(c, plain, "/etc/resolv.conf")
        hosts = cat(c, plain, "/etc/hosts")
        assert hosts.startswith("# Kubernetes-managed hosts file (host network).\n")
    finally:
        c.kubectl("delete", "pod", with_net, plain, "--grace-period=0", "--force", check=False)
    c.out("wait", "--for=delete", f"pod/{with_net}", f"pod/{plain}", "--timeout=20s")
    # the node's namespace outlives the pod, and the node is still Ready
    ns_names = {p.name for p in netns.NETNS_DIR.iterdir()}
    assert f"ksv-{c.name}-{node}" in ns_names
    c.out("wait", "--for=condition=Ready", f"node/{node}", "--timeout=10s")


def test_host_network_ports_bind_on_the_node(cluster: Cluster) -> None:
    c = cluster
    name = uniq("hostport")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": True,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "web",
                    "image": AGNHOST,
                    "args": ["netexec", "--http-port=18080", "--udp-port=-1"],
                    "ports": [{"containerPort": 18080}],
                    "readinessProbe": {"httpGet": {"port": 18080}, "periodSeconds": 1},
                }
            ],
        },
    }
    apply(c, pod)
    try:
        got = wait_ready(c, name)
        ip = node_ip(c, got["spec"]["nodeName"])

        def fetch() -> str | None:
            try:
                with urllib.request.urlopen(f"http://{ip}:18080/hostname", timeout=2) as r:
                    return str(r.read().decode())
            except OSError:
                return None

        assert (
            wait_for(fetch, timeout=10, what="netexec on the node's address")
            == (got["spec"]["nodeName"])
        )
    finally:
        c.kubectl("delete", "pod", name, "--grace-period=0", "--force", check=False)


def test_agnhost_is_at_slash_agnhost_for_the_command_and_for_exec(cluster: Cluster) -> None:
    c = cluster
    name, web = uniq("agn"), uniq("agn-web")
    for pod_name, command in ((name, ["/agnhost", "pause"]), (web, None)):
        container: dict[str, Any] = {"name": "main", "image": AGNHOST}
        if command:
            container["command"] = command
        else:
            container["args"] = ["test-webserver", "--port=8000"]
        apply(
            c,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod_name},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
            },
        )
    try:
        wait_ready(c, name)
        out = c.exec(name, "/agnhost", "dns-suffix").stdout
        assert out == "default.svc.cluster.local,svc.cluster.local,cluster.local\n"
        assert c.exec(name, "/agnhost", "dns-server-list").stdout == "10.96.0.10\n"
        bad = c.exec(name, "/agnhost", "no-such-thing", check=False)
        assert bad.returncode != 0
        assert 'Error: unknown command "no-such-thing" for "app"' in bad.stderr
        # test-webserver serves the pod's files
        wait_ready(c, web)
        page = wait_for(
            lambda: (
                c.exec(web, "curl", "-s", "http://127.0.0.1:8000/etc/hostname", check=False).stdout
                or None
            ),
            timeout=10,
            what="test-webserver",
        )
        assert page == f"{web}\n"
    finally:
        c.kubectl("delete", "pod", name, web, "--grace-period=0", "--force", check=False)
