"""Layer-2 announcement of LoadBalancer IPs (kubesvc/speaker): a client on the node network
reaches a Service's LB IP, exactly one node answers ARP for it, the IP moves when that
node's link goes down, and with externalTrafficPolicy Local only a node with an endpoint
announces and the pod sees the client's address.

One 3-node cluster (unique name) is shared by the tests, with the IPAddressPool and
L2Advertisement `kubesvc up` installs (.240-.254 of the node network); the client is an
outside host on the nodes' LAN (`kubesvc host add`), removed with the cluster.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubesvc.node.netplan import ClusterNet
from tests.e2e.cluster import AGNHOST, Cluster, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.podspecs import uniq

pytestmark = pytest.mark.e2e

ASSIGNED = re.compile(r'announcing from node "(.+)" with protocol "layer2"')


@dataclass
class Net:
    cluster: Cluster
    plan: ClusterNet
    client_ns: str
    client_ip: str

    def lb_ip(self, last: int) -> str:
        return str(ipaddress.ip_network(self.plan.node_cidr).network_address + last)

    def in_client(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.client_ns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def node_mac(self, node: str) -> str:
        out = subprocess.run(
            ["ip", "-n", self.plan.node_netns(node), "-br", "link", "show", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()[2].lower()


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-l2-", dir="/tmp"))
    try:
        # no ingress controller: its LoadBalancer Service would hold .240, which a test asks for
        with running_cluster(tmp, "l2", "--nodes", "3", "--no-ingress") as c:
            state = json.loads((c.home / c.name / "cluster.json").read_text())
            plan = ClusterNet(c.name, state["node_cidr"])
            added = c.kubesvc("host", "add", "client", "--name", c.name).stdout
            client_ip = re.search(r"added: ([0-9.]+) ", added)
            assert client_ip, added
            yield Net(c, plan, plan.outside_host_netns("client"), client_ip.group(1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _lb_service(n: Net, name: str, ip: str, replicas: int, *, local: bool = False) -> None:
    c = n.cluster
    c.out(
        "create",
        "deployment",
        name,
        f"--image={AGNHOST}",
        f"--replicas={replicas}",
        "--",
        "/agnhost",
        "netexec",
        "--http-port=8080",
    )
    c.out(
        "expose",
        "deployment",
        name,
        "--type=LoadBalancer",
        f"--load-balancer-ip={ip}",
        "--port=80",
        "--target-port=8080",
    )
    if local:
        c.out("patch", "svc", name, "-p", '{"spec":{"externalTrafficPolicy":"Local"}}')
    # the allocator honours the requested IP (from the default pool `kubesvc up` installs)
    wait_for(
        lambda: ip in c.out("get", "svc", name, "-o", "jsonpath={.status.loadBalancer}"),
        timeout=20,
        what=f"{ip} in the status of {name}",
    )
    c.running(f"app={name}", replicas)


def _announcer(n: Net, service: str, *, other_than: str = "") -> str:
    """The node the latest nodeAssigned Event on `service` names."""

    def latest() -> str:
        events = n.cluster.json(
            "get", "events", "--field-selector", f"involvedObject.name={service}"
        )["items"]
        found = [
            # the latest write wins: timestamps are whole seconds, resourceVersions grow
            (e.get("lastTimestamp") or "", int(e["metadata"]["resourceVersion"]), m.group(1))
            for e in events
            if e.get("reason") == "nodeAssigned" and (m := ASSIGNED.fullmatch(e["message"]))
        ]
        found = [f for f in found if f[2] != other_than]
        return max(found)[2] if found else ""

    return str(wait_for(latest, timeout=30, what=f"a nodeAssigned Event on {service}"))


def _curl(n: Net, ip: str, path: str = "hostname", timeout: float = 2) -> str | None:
    res = n.in_client("curl", "-s", "-m", str(timeout), f"http://{ip}/{path}")
    return res.stdout if res.returncode == 0 else None


def _arp_answers(n: Net, ip: str, count: int = 3) -> tuple[int, set[str]]:
    """(replies, MACs that replied) to `count` broadcast who-has from the client."""
    res = n.in_client("arping", "-b", "-c", str(count), "-w", str(count + 1), ip)
    macs = {m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", res.stdout)}
    replies = len(re.findall(r"reply from", res.stdout))
    return replies, macs


def _neigh_mac(n: Net, ip: str) -> str:
    out = n.in_client("ip", "neigh", "show", ip).stdout.split()
    return out[out.index("lladdr") + 1].lower() if "lladdr" in out else ""


def test_the_lb_ip_answers_from_exactly_one_node(net: Net) -> None:
    name, ip = uniq("lb"), net.lb_ip(240)
    _lb_service(net, name, ip, replicas=2)
    owner = _announcer(net, name)
    body = wait_for(lambda: _curl(net, ip), timeout=20, what=f"curl {ip} from the client")
    assert body.startswith(f"{name}-")
    assert _neigh_mac(net, ip) == net.node_mac(owner)
    replies, macs = _arp_answers(net, ip)
    assert (replies, macs) == (3, {net.node_mac(owner)}), "exactly one node answers ARP"
    describe = net.cluster.out("describe", "svc", name)
    assert f'announcing from node "{owner}" with protocol "layer2"' in describe
    assert "nodeAssigned" in describe


def test_failover_when_the_announcing_node_goes_down(net: Net) -> None:
    name, ip = uniq("fo"), net.lb_ip(241)
    _lb_service(net, name, ip, replicas=3)
    owner = _announcer(net, name)
    wait_for(lambda: _curl(net, ip), timeout=20, what=f"curl {ip} from the client")
    port = net.plan.node_veth(owner)
    failed, ok_after = 0, 0
    try:
        subprocess.run(["ip", "link", "set", port, "down"], check=True)
        down_at = time.monotonic()
        resumed = None
        while time.monotonic() - down_at < 20 and ok_after < 3:
            if _curl(net, ip, timeout=0.3) is None:
                failed += 1
            else:
                ok_after += 1
                resumed = resumed or time.monotonic() - down_at
            time.sleep(0.05)
        print(f"\nfailover: {failed} requests failed, served again after {resumed} s")
        assert ok_after == 3, "requests resume once another node announces the IP"
        new_owner = _announcer(net, name, other_than=owner)
        assert _neigh_mac(net, ip) == net.node_mac(new_owner)
        replies, macs = _arp_answers(net, ip)
        assert (replies, macs) == (3, {net.node_mac(new_owner)})
    finally:
        subprocess.run(["ip", "link", "set", port, "up"], check=False)

    # back on the network, the cut-off node (which announced everything alone) and the
    # others settle on one answer again
    def one_answer() -> str:
        replies, macs = _arp_answers(net, ip)
        return macs.pop() if replies == 3 and len(macs) == 1 else ""

    mac = wait_for(one_answer, timeout=20, what="one node answering ARP after the link came back")
    assert wait_for(lambda: _curl(net, ip), timeout=20, what="curl after the link came back")
    # and the latest nodeAssigned Event names that node
    nodes = [f"{net.cluster.name}-node-{i}" for i in (1, 2, 3)]
    answering = next(node for node in nodes if net.node_mac(node) == mac)
    wait_for(lambda: _announcer(net, name) == answering, timeout=20, what=f"{answering} in Events")


def test_local_policy_announces_from_the_endpoints_node_and_keeps_the_client_ip(
    net: Net,
) -> None:
    name, ip = uniq("loc"), net.lb_ip(242)
    _lb_service(net, name, ip, replicas=1, local=True)
    pod = net.cluster.pods(f"app={name}")[0]
    owner = pod["spec"]["nodeName"]
    # (exposed with the Cluster policy first, so another node may have announced meanwhile)
    wait_for(lambda: _announcer(net, name) == owner, timeout=20, what=f"{owner} announcing")
    seen = wait_for(lambda: _curl(net, ip, "clientip"), timeout=20, what="curl /clientip")
    assert seen.rsplit(":", 1)[0] == net.client_ip
    replies, macs = _arp_answers(net, ip)
    assert (replies, macs) == (3, {net.node_mac(owner)})
    # the pod moves to another node: so does the announcement
    net.cluster.out("cordon", owner)
    try:
        net.cluster.out("delete", "pod", pod["metadata"]["name"], "--wait=false")
        moved = net.cluster.running(f"app={name}", 1)[0]["spec"]["nodeName"]
        assert moved != owner
        wait_for(lambda: _announcer(net, name) == moved, timeout=20, what=f"{moved} announcing")
        assert wait_for(lambda: _arp_answers(net, ip)[1] == {net.node_mac(moved)}, timeout=20)
    finally:
        with contextlib.suppress(AssertionError):
            net.cluster.out("uncordon", owner)


def test_failover_when_the_announcing_node_is_stopped(net: Net) -> None:
    """`kubesvc node stop`: the agent (and its speaker) gone and the link down, as a node
    that fails; `node start` brings it back and one node answers again."""
    name, ip = uniq("ns"), net.lb_ip(243)
    _lb_service(net, name, ip, replicas=3)
    owner = _announcer(net, name)
    wait_for(lambda: _curl(net, ip), timeout=20, what=f"curl {ip} from the client")
    c = net.cluster
    try:
        c.kubesvc("node", "stop", owner, "--name", c.name)
        failed = 0
        while _curl(net, ip, timeout=0.3) is None:
            failed += 1
            assert failed < 100, "requests resume once another node announces the IP"
            time.sleep(0.05)
        print(f"\nnode stop: {failed} requests failed before one was served")
        replies, macs = _arp_answers(net, ip)
        assert replies == 3 and len(macs) == 1 and net.node_mac(owner) not in macs
    finally:
        c.kubesvc("node", "start", owner, "--name", c.name)
    # back, the node wins its IP again (the same hash order) and says so
    wait_for(
        lambda: _arp_answers(net, ip) == (3, {net.node_mac(owner)}),
        timeout=30,
        what=f"{owner} alone answering ARP after node start",
    )
    wait_for(lambda: _announcer(net, name) == owner, timeout=20, what=f"{owner} in Events")
    assert wait_for(lambda: _curl(net, ip), timeout=20, what="curl after node start")
