"""The cluster's network plan: names and addresses, computed (no I/O).

Layout, all inside namespaces kubesvc creates:

    host:  bridge ksb-<id>  172.31.K.1/24        (route to the node network only)
    node:  netns ksv-<cluster>-<node>, eth0 172.31.K.(10+i)/24 on the host bridge,
           cbr0 10.244.i.1/24 for its pods, host-gw routes to the other nodes' pod CIDRs
    pod:   netns ksv-<cluster>-p-<uid8>, eth0 10.244.i.x/24 (veth into cbr0, hairpin on),
           default via 10.244.i.1
    outside host (`kubesvc host add`): netns ksv-<cluster>-h-<name>, eth0 172.31.K.(100+j)/24
           on the host bridge and no other route, like a laptop on the nodes' LAN
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_NODE_RANGE = "172.31.0.0/16"  # one /24 per cluster is taken from here
DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DNS_SERVICE_IP = "10.96.0.10"
OUTSIDE_HOST_FIRST = 100  # outside hosts take .100-.199 of the node network
OUTSIDE_HOST_COUNT = 100


def short_hash(text: str, n: int = 6) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class ClusterNet:
    name: str
    node_cidr: str  # e.g. 172.31.5.0/24
    pod_cidr: str = DEFAULT_POD_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR

    @property
    def id(self) -> str:
        return short_hash(self.name, 5)

    @property
    def bridge(self) -> str:
        return f"ksb-{self.id}"

    @property
    def host_ip(self) -> str:
        return str(ipaddress.ip_network(self.node_cidr).network_address + 1)

    def apiserver_ip(self, index: int) -> str:
        """API server `index`'s address on the host: the host's (.1), then .2, .3, ..."""
        return str(ipaddress.ip_network(self.node_cidr).network_address + 1 + index)

    @property
    def prefix_len(self) -> int:
        return ipaddress.ip_network(self.node_cidr).prefixlen

    def node_ip(self, index: int) -> str:
        return str(ipaddress.ip_network(self.node_cidr).network_address + 10 + index)

    def node_pod_cidr(self, index: int) -> str:
        net = ipaddress.ip_network(self.pod_cidr)
        return str(list(net.subnets(new_prefix=24))[index])

    def node_netns(self, node: str) -> str:
        return f"ksv-{self.name}-{node}"

    def node_veth(self, node: str) -> str:
        """Host-side end of the node's eth0 (interface names are at most 15 bytes)."""
        return f"kn{self.id}{short_hash(node, 4)}"

    def pod_netns(self, uid: str) -> str:
        return f"ksv-{self.name}-p-{uid[:8]}"

    @property
    def netns_prefix(self) -> str:
        return f"ksv-{self.name}-"

    def outside_host_ip(self, index: int) -> str:
        if not 0 <= index < OUTSIDE_HOST_COUNT:
            raise ValueError(f"outside host index {index} is not in 0-{OUTSIDE_HOST_COUNT - 1}")
        net = ipaddress.ip_network(self.node_cidr)
        return str(net.network_address + OUTSIDE_HOST_FIRST + index)

    def outside_host_netns(self, host: str) -> str:
        return f"ksv-{self.name}-h-{host}"

    def outside_host_veth(self, host: str) -> str:
        """Bridge-side end of an outside host's eth0."""
        return f"kh{self.id}{short_hash(host, 4)}"


def pick_outside_host_index(taken: Iterable[int]) -> int:
    """The lowest free outside-host slot (each is one address of .100-.199)."""
    used = set(taken)
    for index in range(OUTSIDE_HOST_COUNT):
        if index not in used:
            return index
    raise ValueError(f"all {OUTSIDE_HOST_COUNT} outside host addresses are taken")


def pod_veth(uid: str) -> str:
    """Node-side end of a pod's eth0."""
    return f"vp{short_hash(uid, 10)}"


def pod_gateway(pod_cidr: str) -> str:
    return str(ipaddress.ip_network(pod_cidr).network_address + 1)


def overlapping(cidr: str, routes: list[str]) -> list[str]:
    """Host routes (other than the default route) that overlap `cidr`."""
    net = ipaddress.ip_network(cidr)
    out = []
    for r in routes:
        if r in ("default", "0.0.0.0/0"):
            continue
        try:
            if ipaddress.ip_network(r, strict=False).overlaps(net):
                out.append(r)
        except ValueError:
            continue
    return out


def pick_node_cidr(
    routes: list[str], taken: list[str], node_range: str = DEFAULT_NODE_RANGE
) -> str:
    """The first /24 of `node_range` that no host route and no other cluster uses."""
    for sub in ipaddress.ip_network(node_range).subnets(new_prefix=24):
        cidr = str(sub)
        if cidr in taken or overlapping(cidr, routes):
            continue
        return cidr
    raise ValueError(
        f"every /24 in {node_range} overlaps a route this host already has; "
        "choose another range with --node-cidr"
    )


def lb_pool_range(net: ClusterNet) -> str:
    """The addresses LoadBalancer Services get by default: .240-.254 of the node network,
    clear of the host (.1), the nodes (.10 up) and outside hosts (.100-.199)."""
    base = ipaddress.ip_network(net.node_cidr).network_address
    return f"{base + 240}-{base + 254}"
