"""Node and pod sandboxes: the network, UTS and mount namespaces pods run in.

A pod sandbox is a network namespace with a veth into the node's cbr0 bridge (hairpin on,
so a pod can reach itself through its Service), plus persistent UTS and mount namespaces
(bind-mounted files) that give its processes their own hostname and kubelet-written
/etc/hosts, /etc/hostname and /etc/resolv.conf.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from kubesvc import netns
from kubesvc.node.netplan import pod_gateway, pod_veth
from kubesvc.node.view import Sandbox

# pods reach anything outside the pod network (the API server on the host bridge, hand-written
# endpoints on the node network) from their node's address, as a CNI's ip-masq rule does
NODE_TABLE = "kubesvc-node"
# where in-cluster clients find their credentials (a projected service account volume)
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class NodeNet:
    cluster: str
    name: str
    netns: str
    veth: str  # host side of the node's eth0
    bridge: str  # host bridge
    ip: str
    prefix_len: int
    pod_cidr: str
    cluster_pod_cidr: str
    service_cidr: str


def node_ruleset(node: NodeNet) -> str:
    return f"""table ip {NODE_TABLE} {{}}
delete table ip {NODE_TABLE}
table ip {NODE_TABLE} {{
  chain postrouting {{
    type nat hook postrouting priority srcnat + 10; policy accept;
    ip saddr {node.cluster_pod_cidr} ip daddr != {node.cluster_pod_cidr} masquerade
  }}
  # a Service address that no proxy rule rewrote goes nowhere (ping, unknown ports,
  # services the proxy ignores): it must never leave the node
  chain forward {{
    type filter hook forward priority filter + 10; policy accept;
    ip daddr {node.service_cidr} drop
  }}
  chain output {{
    type filter hook output priority filter + 10; policy accept;
    ip daddr {node.service_cidr} drop
  }}
}}
"""


async def ensure_node(node: NodeNet) -> None:
    """Create (or complete) the node's namespace; safe to run again after a restart."""
    created = not netns.exists(node.netns)
    await netns.add(node.netns)
    if created or not await netns.link_exists(node.veth):
        await netns.ip_batch(
            [
                f"link add {node.veth} type veth peer name eth0 netns {node.netns}",
                f"link set {node.veth} master {node.bridge}",
                f"link set {node.veth} up",
            ]
        )
    gw = pod_gateway(node.pod_cidr)
    prefix = ipaddress.ip_network(node.pod_cidr).prefixlen
    await netns.ip_batch(
        [
            "link set lo up",
            f"addr replace {node.ip}/{node.prefix_len} dev eth0",
            "link set eth0 up",
            "link add cbr0 type bridge",
            f"addr replace {gw}/{prefix} dev cbr0",
            "link set cbr0 up",
            # the node's own processes reach ClusterIPs: locally generated packets need a route
            # before kube-proxy's output DNAT can rewrite them
            f"route replace {node.service_cidr} dev eth0 src {node.ip}",
        ],
        netns=node.netns,
        check=False,
    )
    await netns.sysctl(
        node.netns,
        {
            "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.default.rp_filter": "0",
            "net.ipv4.conf.eth0.rp_filter": "0",
            "net.ipv4.conf.cbr0.rp_filter": "0",
            "net.bridge.bridge-nf-call-iptables": "1",
        },
    )
    await netns.in_netns(node.netns, "nft", "-f", "-", input=node_ruleset(node))


async def set_peer_routes(node: NodeNet, peers: dict[str, str]) -> None:
    """host-gw: `peers` maps other nodes' pod CIDRs to their node IPs."""
    out = await netns.in_netns(node.netns, "ip", "-4", "route", "show", "proto", "static")
    have = {line.split()[0] for line in out.splitlines() if " via " in line}
    commands = [f"route replace {cidr} via {ip} proto static" for cidr, ip in peers.items()]
    commands += [f"route del {cidr} proto static" for cidr in have - set(peers)]
    await netns.ip_batch(commands, netns=node.netns, check=False)


async def remove_node(node: NodeNet) -> None:
    await netns.delete(node.netns)
    if await netns.link_exists(node.veth):
        await netns.run("ip", "link", "del", node.veth, check=False)


class IPAM:
    """Next-fit allocation from the node's pod CIDR, so a re-created pod gets a new IP."""

    def __init__(self, pod_cidr: str, state_file: Path) -> None:
        self.net = ipaddress.ip_network(pod_cidr)
        self.state_file = state_file
        self.used: dict[str, str] = {}  # ip -> pod uid
        self.cursor = 1
        if state_file.exists():
            data = json.loads(state_file.read_text())
            self.used, self.cursor = data.get("used", {}), int(data.get("cursor", 1))

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"used": self.used, "cursor": self.cursor}))
        tmp.replace(self.state_file)

    def allocate(self, uid: str) -> str:
        for ip, owner in self.used.items():
            if owner == uid:
                return ip
        size = self.net.num_addresses
        for step in range(1, size):
            n = (self.cursor + step) % size
            if n < 2 or n == size - 1:  # network, gateway, broadcast
                continue
            ip = str(self.net.network_address + n)
            if ip not in self.used:
                self.used[ip] = uid
                self.cursor = n
                self._save()
                return ip
        raise RuntimeError(f"no free pod IPs left in {self.net}")

    def release(self, uid: str) -> None:
        for ip in [ip for ip, owner in self.used.items() if owner == uid]:
            del self.used[ip]
        self._save()

    def retain(self, uids: set[str]) -> None:
        self.used = {ip: u for ip, u in self.used.items() if u in uids}
        self._save()


NS_ROOT = Path("/run/kubesvc")


def ns_dir(cluster: str) -> Path:
    return NS_ROOT / cluster / "ns"


async def ensure_ns_dir(cluster: str) -> Path:
    """A private mount for namespace files: bind-mounting a mount namespace needs one.
    Node agents of one cluster start together, so the check-and-mount holds a lock."""
    d = ns_dir(cluster)
    d.mkdir(parents=True, exist_ok=True)
    with open(d.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not netns.is_mountpoint(d):
            await netns.run("mount", "--bind", str(d), str(d))
            await netns.run("mount", "--make-private", str(d))
    return d


async def create_pod_sandbox(
    node: NodeNet,
    *,
    namespace: str,
    name: str,
    uid: str,
    ip: str,
    hostname: str,
    files_dir: Path,
    pod_netns: str,
    host_network: bool = False,
    service_account_dir: Path | None = None,
) -> Sandbox:
    """A hostNetwork pod gets UTS and mount namespaces only: it runs in its node's network
    namespace (`pod_netns` is the node's), with the node's address."""
    if not host_network:
        await _pod_network(node, uid, ip, pod_netns)
    d = await ensure_ns_dir(node.cluster)
    uts, mnt = d / f"{uid}.uts", d / f"{uid}.mnt"
    for f in (uts, mnt):
        f.touch()
    # the mount point is on the host's filesystem, as it would be made from inside
    Path(SA_DIR).mkdir(parents=True, exist_ok=True)
    fstab = files_dir / "sandbox.fstab"
    fstab.write_text(sandbox_fstab(files_dir, service_account_dir))
    await netns.run(
        "unshare",
        f"--uts={uts}",
        f"--mount={mnt}",
        "--propagation",
        "private",
        "sh",
        "-c",
        sandbox_script(hostname, fstab),
    )
    return Sandbox(
        namespace, name, uid, netns.NETNS_DIR / pod_netns, uts, mnt, ip, hostname, host_network
    )


def fstab_path(path: str) -> str:
    """A path as an fstab field: whitespace and backslashes octal-escaped (libmount reads
    them back)."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def sandbox_fstab(files_dir: Path, service_account_dir: Path | None = None) -> str:
    """The kubelet-written files bind-mounted over the host's in a pod's mount namespace.
    The service-account path gets the pod's token volume when it has one
    (`service_account_dir`, read-only, as its volumeMount): bound here with the rest, it
    needs no mount of its own later; without one, an empty directory."""
    binds = [
        (files_dir / "hosts", "/etc/hosts", "bind"),
        (files_dir / "resolv.conf", "/etc/resolv.conf", "bind"),
        (files_dir / "hostname", "/etc/hostname", "bind"),
        (service_account_dir, SA_DIR, "bind,ro")
        if service_account_dir is not None
        else (files_dir / "serviceaccount", SA_DIR, "bind"),
    ]
    return "".join(
        f"{fstab_path(str(src))} {fstab_path(dst)} none {opts} 0 0\n" for src, dst, opts in binds
    )


def sandbox_script(hostname: str, fstab: Path) -> str:
    """What runs inside a new pod's UTS and mount namespaces: its hostname, the binds of
    `fstab` (one `mount -a` for all of them), and the copies of other namespaces' files
    dropped so no namespace keeps another one alive: /run/netns and each cluster's
    /run/kubesvc/CLUSTER/ns (their mount points; /run/kubesvc itself is not one). Five
    processes in all (there were ten, one per step)."""
    return (
        f"hostname {_q(hostname)}; "
        f"mount -a -T {_q(str(fstab))}; "
        f"umount -R -l {netns.NETNS_DIR} {NS_ROOT}/*/ns 2>/dev/null; true"
    )


async def _pod_network(node: NodeNet, uid: str, ip: str, pod_netns: str) -> None:
    prefix = ipaddress.ip_network(node.pod_cidr).prefixlen
    veth = pod_veth(uid)
    await netns.add(pod_netns)
    await netns.ip_batch(
        [
            f"link add {veth} type veth peer name eth0 netns {pod_netns}",
            f"link set {veth} master cbr0",
            f"link set dev {veth} type bridge_slave hairpin on",
            f"link set {veth} up",
        ],
        netns=node.netns,
    )
    await netns.ip_batch(
        [
            "link set lo up",
            f"addr add {ip}/{prefix} dev eth0",
            "link set eth0 up",
            f"route add default via {pod_gateway(node.pod_cidr)}",
        ],
        netns=pod_netns,
    )


def processes_in_mount_ns(mnt_files: list[Path]) -> list[int]:
    """The pids whose mount namespace is one of `mnt_files`: every process a pod's
    containers, probes and exec sessions started (all enter it), also in a hostNetwork
    pod, whose network namespace it shares with its node."""
    inodes = set()
    for f in mnt_files:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f).st_ino)
    if not inodes:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/mnt").st_ino in inodes:
                    out.append(int(entry))
    return out


async def remove_pod_sandbox(
    cluster: str, uid: str, pod_netns: str, node_netns: str, host_network: bool = False
) -> None:
    """Remove a pod's sandbox, whatever is left of it. Processes still in its namespaces
    (none a container of the pod started, or they would have been stopped) are killed
    first: they would keep the namespaces alive after their names are gone. A hostNetwork
    pod's network namespace is its node's, which stays."""
    host_network = host_network or pod_netns == node_netns
    d = ns_dir(cluster)
    pids = processes_in_mount_ns([d / f"{uid}.mnt"])
    if not host_network:
        pids += [p.pid for p in netns.processes_in([netns.NETNS_DIR / pod_netns])]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    files = [f for f in (d / f"{uid}.uts", d / f"{uid}.mnt") if f.exists()]
    if files:
        # one umount for both (a file no longer mounted fails alone)
        await netns.run("umount", *(str(f) for f in files), check=False)
        for f in files:
            with contextlib.suppress(OSError):
                f.unlink()
    if host_network:
        return
    await netns.delete(pod_netns)
    # the veth goes with the pod's namespace once the kernel frees it, maybe later: delete
    # it now (one command, failing harmlessly when it is gone, instead of a check and a del)
    await netns.run("ip", "-n", node_netns, "link", "del", pod_veth(uid), check=False)


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
