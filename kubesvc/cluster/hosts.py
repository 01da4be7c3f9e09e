"""`kubesvc host`: machines outside the cluster on the nodes' LAN.

An outside host is a network namespace (ksv-<cluster>-h-<name>, so `stop` and `down` find it
with everything else of the cluster) with an eth0 on the cluster's bridge and an address from
.100-.199 of the node network, recorded in cluster.json so that it stays the host's. It has no
route but the node network's own: like a laptop on the nodes' LAN, it reaches node IPs
(NodePorts, announced LoadBalancer IPs) and nothing else; ClusterIPs and pod IPs are not
routed to. `kubesvc stop` removes its namespace with the cluster's; `start` creates it again
with the same address (the processes that ran in it do not come back).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from kubesvc import netns
from kubesvc.cluster.lifecycle import Cluster, ClusterError, home, lifecycle_lock, preflight
from kubesvc.node.netplan import OUTSIDE_HOST_COUNT, ClusterNet, pick_outside_host_index

# a DNS label, short enough for the namespace name to stay readable
HOST_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


def check_name(name: str) -> str | None:
    """Why `name` cannot name a host, or None."""
    if HOST_NAME.match(name):
        return None
    return (
        f"host name {name!r} must be at most 32 lowercase letters, digits and '-', "
        "starting and ending with a letter or digit"
    )


def recorded(state: dict[str, Any]) -> dict[str, int]:
    """The hosts in cluster.json: name -> address slot (what is not one is left out)."""
    hosts = state.get("hosts")
    if not isinstance(hosts, dict):
        return {}
    return {
        str(k): v
        for k, v in hosts.items()
        if isinstance(v, int)
        and not isinstance(v, bool)
        and 0 <= v < OUTSIDE_HOST_COUNT
        and check_name(str(k)) is None
    }


async def ensure(net: ClusterNet, name: str, index: int) -> None:
    """Create (or complete) the host's namespace and its link to the bridge."""
    ns = net.outside_host_netns(name)
    veth = net.outside_host_veth(name)
    await netns.add(ns)
    if not await netns.link_exists(veth):
        await netns.ip_batch(
            [
                f"link add {veth} type veth peer name eth0 netns {ns}",
                f"link set {veth} master {net.bridge}",
                f"link set {veth} up",
            ]
        )
    await netns.ip_batch(
        [
            "link set lo up",
            f"addr replace {net.outside_host_ip(index)}/{net.prefix_len} dev eth0",
            "link set eth0 up",
        ],
        netns=ns,
    )


async def restore(cluster: Cluster) -> None:
    """Every recorded host, after the bridge was made again (`start`, `up`)."""
    net = cluster.net()
    for name, index in recorded(cluster.load()).items():
        await ensure(net, name, index)


async def remove(net: ClusterNet, name: str) -> None:
    """The host's processes, then its namespace (its veth goes with it)."""
    from kubesvc.cluster.lifecycle import kill_in_namespaces

    ns = net.outside_host_netns(name)
    await kill_in_namespaces([ns])
    await netns.delete(ns)
    await netns.run("ip", "link", "del", net.outside_host_veth(name), check=False)


def _known_cluster(cluster_name: str) -> Cluster:
    cluster = Cluster(cluster_name, home() / cluster_name)
    if not cluster.exists():
        raise ClusterError(f"no cluster named {cluster_name!r} (`kubesvc status` lists them)")
    return cluster


async def add(name: str, cluster_name: str) -> int:
    if not preflight("host add"):
        return 1
    why = check_name(name)
    if why:
        print(f"kubesvc host add: {why}", file=sys.stderr)
        return 2
    try:
        cluster = _known_cluster(cluster_name)
        with lifecycle_lock():
            state = cluster.load()
            net = cluster.net()
            if not await netns.link_exists(net.bridge):
                raise ClusterError(
                    f"cluster {cluster_name!r} is stopped; `kubesvc start --name "
                    f"{cluster_name}` first"
                )
            hosts = recorded(state)
            if name in hosts:
                raise ClusterError(f"host {name!r} exists ({net.outside_host_ip(hosts[name])})")
            try:
                index = pick_outside_host_index(hosts.values())
            except ValueError as e:
                raise ClusterError(str(e)) from e
            hosts[name] = index
            state["hosts"] = hosts
            cluster.save(state)
            await ensure(net, name, index)
    except (ClusterError, netns.CommandError) as e:
        print(f"kubesvc host add: {e}", file=sys.stderr)
        return 1
    print(f"host {name} added: {net.outside_host_ip(index)} on {net.node_cidr}")
    return 0


def exec_in(name: str, cluster_name: str, command: list[str]) -> int:
    """Run `command` in the host's namespace in place of this process: its stdin, stdout,
    stderr and exit code are the command's."""
    if not command:
        print("kubesvc host exec: no command (kubesvc host exec NAME -- CMD...)", file=sys.stderr)
        return 2
    cluster = Cluster(cluster_name, home() / cluster_name)
    if not cluster.exists() or name not in recorded(cluster.load()):
        print(f"kubesvc host exec: cluster {cluster_name!r} has no host {name!r}", file=sys.stderr)
        return 1
    ns = cluster.net().outside_host_netns(name)
    if not netns.exists(ns):
        print(
            f"kubesvc host exec: host {name!r} is down with its cluster; `kubesvc start "
            f"--name {cluster_name}` brings it back",
            file=sys.stderr,
        )
        return 1
    sys.stdout.flush()
    os.execvp("nsenter", netns.nsenter(ns) + command)


def list_hosts(cluster_name: str) -> int:
    cluster = Cluster(cluster_name, home() / cluster_name)
    if not cluster.exists():
        print(f"kubesvc host list: no cluster named {cluster_name!r}", file=sys.stderr)
        return 1
    net = cluster.net()
    rows = [("NAME", "IP", "STATE", "NETNS")]
    for name, index in sorted(recorded(cluster.load()).items()):
        ns = net.outside_host_netns(name)
        rows.append((name, net.outside_host_ip(index), "up" if netns.exists(ns) else "down", ns))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "   " + r[3])
    return 0


async def rm(name: str, cluster_name: str) -> int:
    if not preflight("host rm"):
        return 1
    try:
        cluster = _known_cluster(cluster_name)
        with lifecycle_lock():
            state = cluster.load()
            hosts = recorded(state)
            if name not in hosts:
                raise ClusterError(f"cluster {cluster_name!r} has no host {name!r}")
            await remove(cluster.net(), name)
            del hosts[name]
            state["hosts"] = hosts
            cluster.save(state)
    except ClusterError as e:
        print(f"kubesvc host rm: {e}", file=sys.stderr)
        return 1
    print(f"host {name} removed")
    return 0
