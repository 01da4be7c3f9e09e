"""Node and pod sandboxes: the namespaces pods run in.

A pod sandbox is a network namespace with a veth into the node's cbr0 bridge (hairpin on,
so a pod can reach itself through its Service), plus persistent UTS, IPC, mount and PID
namespaces (bind-mounted files). The mount namespace holds the pod's own root
(kubesvc/node/podroot.py), built once the pod's volumes can be mounted; the PID namespace
is held by the pod's pause process, as upstream's pause container holds a pod's. Every
container, exec session and probe of the pod enters them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import ipaddress
import json
import os
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubesvc import netns, spawn
from kubesvc.node import podroot, userns
from kubesvc.node.netplan import pod_gateway, pod_veth
from kubesvc.node.runtime import boot_time_ticks
from kubesvc.node.view import Sandbox

# pods reach anything outside the pod network (the API server on the host bridge, hand-written
# endpoints on the node network) from their node's address, as a CNI's ip-masq rule does
NODE_TABLE = "kubesvc-node"
# the pod's pause: PID 1 of its PID namespace, which it holds and whose orphans it reaps
PAUSE = "catatonit"


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


def ns_files(cluster: str, uid: str) -> dict[str, Path]:
    d = ns_dir(cluster)
    return {kind: d / f"{uid}.{kind}" for kind in ("uts", "ipc", "mnt", "pid", "user")}


async def create_pod_sandbox(
    node: NodeNet,
    *,
    namespace: str,
    name: str,
    uid: str,
    ip: str,
    hostname: str,
    pod_netns: str,
    host_network: bool = False,
    host_pid: bool = False,
    host_ipc: bool = False,
    id_base: int = 0,
) -> Sandbox:
    """The pod's network, UTS and IPC namespaces. Its mount and PID namespaces come with
    its root (`build_pod_root`), once its volumes can be mounted. A hostNetwork pod runs
    in its node's network namespace (`pod_netns` is the node's), with the node's address."""
    if not host_network:
        await _pod_network(node, uid, ip, pod_netns)
    await ensure_ns_dir(node.cluster)
    files = ns_files(node.cluster, uid)
    kinds = ["uts", "mnt"] + ([] if host_ipc else ["ipc"]) + ([] if host_pid else ["pid"])
    for kind in kinds:
        files[kind].touch()
    unshare = ["unshare", f"--uts={files['uts']}"]
    if not host_ipc:
        unshare.append(f"--ipc={files['ipc']}")
    await netns.run(*unshare, "hostname", hostname)
    if id_base:
        files["user"].touch()
        await make_user_namespace(files["user"], id_base)
    return Sandbox(
        namespace,
        name,
        uid,
        netns.NETNS_DIR / pod_netns,
        files["uts"],
        files["mnt"],
        ip,
        hostname,
        host_network,
        None if host_ipc else files["ipc"],
        None if host_pid else files["pid"],
        files["user"] if id_base else None,
        id_base,
    )


@functools.cache
def user_namespaces_work() -> bool:
    """Whether this kernel lets the node make user namespaces (not disabled by sysctl)."""
    try:
        limit = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        return False
    return limit > 0 and os.path.exists("/proc/self/ns/user")


async def make_user_namespace(path: Path, id_base: int) -> None:
    """A user namespace whose ids 0-65535 are `id_base`... on the host, bound at `path`.
    A waiting process makes it; its id maps are written from here (root may, for its
    child), as newuidmap would without needing /etc/subuid."""
    proc = subprocess.Popen(
        ["unshare", "--user", "sh", "-c", "read _"], stdin=subprocess.PIPE, start_new_session=True
    )
    try:
        mine = os.readlink("/proc/self/ns/user")
        for _ in range(2000):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{proc.pid}/ns/user") != mine:
                    break
            await asyncio.sleep(0.001)
        else:
            raise RuntimeError("the user namespace did not appear")
        for kind in ("uid_map", "gid_map"):
            Path(f"/proc/{proc.pid}/{kind}").write_text(f"0 {id_base} {userns.SIZE}\n")
        _bind_mount(f"/proc/{proc.pid}/ns/user", path)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(5)


MS_BIND = 4096


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _bind_mount(source: str, target: Path) -> None:
    """`mount --bind` as one system call of this process (a pod start spawns one process
    fewer); the node agent runs in the host's mount namespace."""
    if _libc().mount(source.encode(), str(target).encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"binding {source}: {os.strerror(err)}", str(target))


@functools.cache
def host_facts() -> podroot.HostFacts:
    """What the pod root's script needs to know of this host (read once)."""
    links = {}
    for name in podroot.TOP_LINKS:
        with contextlib.suppress(OSError):
            links[name] = os.readlink(f"/{name}")
    etc = {e for e in (*podroot.ETC_FILES, *podroot.ETC_DIRS) if os.path.lexists(f"/etc/{e}")}
    proc = {
        p for p in (*podroot.PROC_MASKED, *podroot.PROC_READ_ONLY) if os.path.exists(f"/proc/{p}")
    }
    dirs = {p for p in proc if os.path.isdir(f"/proc/{p}")}
    return podroot.HostFacts(links, frozenset(etc), frozenset(proc), frozenset(dirs))


def built(sb: Sandbox) -> bool:
    """Whether the pod's root has been built (its mount namespace exists)."""
    return _bound(sb.mnt)


def write_skeleton(path: Path) -> None:
    """Make (again) the skeleton every pod's root is copied from (podroot.Skeleton):
    built beside `path` and renamed over it, so a pod being built meanwhile copies a whole
    one."""
    sk = podroot.skeleton(host_facts())
    tmp = path.with_name(path.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    for d, mode in sk.dirs:
        (tmp / d).mkdir(parents=True, exist_ok=True)
        os.chmod(tmp / d, mode)
    for link, target in sk.links:
        os.symlink(target, tmp / link)
    for dev in sk.devices:
        st = os.stat(f"/dev/{dev}")
        os.mknod(tmp / "dev" / dev, st.st_mode, st.st_rdev)
        os.chmod(tmp / "dev" / dev, stat.S_IMODE(st.st_mode))
    for e in sk.etc:
        src, dst = Path("/etc", e), tmp / "etc" / e
        with contextlib.suppress(OSError):
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            elif src.is_dir():
                shutil.copytree(src, dst, symlinks=True)
            else:
                shutil.copy2(src, dst)
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


async def build_pod_root(
    sb: Sandbox, root: podroot.PodRoot, fstab_file: Path, skeleton_dir: Path
) -> str | None:
    """Make the pod's mount (and PID) namespace: its pause first, which holds the PID
    namespace, then the root, built and pivoted into from inside. The error, if any; a
    half-built root is taken down, so a later call starts afresh."""
    await discard_pod_root(sb)
    fstab_file.write_text(podroot.fstab(root, host_facts()))
    enter = ["nsenter", f"--net={sb.netns}", f"--uts={sb.uts}"]
    enter += [f"--ipc={sb.ipc}"] if sb.ipc is not None else []
    unshare = ["unshare", f"--mount={sb.mnt}", "--propagation", "private"]
    if sb.pid is not None:
        # setsid -f: the pause is nobody's child here, and outlives the agent; it keeps no
        # pipe of ours open
        # in a user namespace, the pause is the pod's root: the pod sees it as upstream's
        # (its namespaces stay the host users', so the agent can bind them)
        pause = [PAUSE, "-P"] if sb.user is None else ["nsenter", f"--user={sb.user}", PAUSE, "-P"]
        await spawn.run(
            ["setsid", "-f", *enter, "--", *unshare, f"--pid={sb.pid}", "--fork", *pause]
        )
        if not await _wait_bound([sb.mnt, sb.pid]):
            await discard_pod_root(sb)
            return "the pod's namespaces did not appear"
    else:
        await netns.run(*enter, "--", *unshare, "true")
    script = podroot.script(root, str(skeleton_dir), str(fstab_file))
    done = await spawn.run(
        [*sb.nsenter(user=False), "sh", "-c", script],
        stdout=spawn.DEVNULL,
        stderr=spawn.PIPE,
        limit=8192,
    )
    if done.returncode != 0:
        await discard_pod_root(sb)
        return done.stderr.decode(errors="replace").strip()[-1024:] or "building the root failed"
    return None


def _bound(f: Path) -> bool:
    """A namespace is bound on `f` (the nsfs file is on another device than its directory)."""
    try:
        return os.stat(f).st_dev != os.stat(f.parent).st_dev
    except OSError:
        return False


async def _wait_bound(files: list[Path], timeout: float = 5.0) -> bool:
    """unshare binds the namespace files once its child runs: wait for that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(_bound(f) for f in files):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


async def discard_pod_root(sb: Sandbox) -> None:
    """Kill what runs in the pod's mount namespace (its pause) and drop the namespaces."""
    kinds = [f for f in (sb.mnt, sb.pid) if f is not None]
    for pid in processes_in_mount_ns([sb.mnt]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    mounted = [str(f) for f in kinds if _bound(f)]
    if mounted:
        await netns.run("umount", *mounted, check=False)


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
    return [pid for pids in mount_ns_members(mnt_files).values() for pid in pids]


def mount_ns_members(mnt_files: list[Path]) -> dict[Path, list[int]]:
    """The pids in each of the mount namespaces bound at `mnt_files`, in one pass over
    /proc; a file nothing is bound on (a root not built yet) has none, and costs no pass."""
    by_inode: dict[int, Path] = {}
    for f in mnt_files:
        with contextlib.suppress(OSError):
            st = os.stat(f)
            if st.st_dev != os.stat(f.parent).st_dev:  # an nsfs file, bound there
                by_inode[st.st_ino] = f
    out: dict[Path, list[int]] = {f: [] for f in by_inode.values()}
    if not by_inode:
        return out
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                f = by_inode.get(os.stat(f"/proc/{entry}/ns/mnt").st_ino)
                if f is not None:
                    out[f].append(int(entry))
    return out


async def remove_pod_sandbox(
    cluster: str, uid: str, pod_netns: str, node_netns: str, host_network: bool = False
) -> None:
    """Remove a pod's sandbox, whatever is left of it. Processes still in its namespaces
    (none a container of the pod started, or they would have been stopped) are killed
    first: they would keep the namespaces alive after their names are gone. A hostNetwork
    pod's network namespace is its node's, which stays."""
    host_network = host_network or pod_netns == node_netns
    files = ns_files(cluster, uid)
    pids = processes_in_mount_ns([files["mnt"]])
    if not host_network:
        pids += [p.pid for p in netns.processes_in([netns.NETNS_DIR / pod_netns])]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    present = [f for f in files.values() if f.exists()]
    if present:
        # one umount for all (a file no longer mounted fails alone)
        await netns.run("umount", *(str(f) for f in present), check=False)
        for f in present:
            with contextlib.suppress(OSError):
                f.unlink()
    if host_network:
        return
    await netns.delete(pod_netns)
    # the veth goes with the pod's namespace once the kernel frees it, maybe later: delete
    # it now (one command, failing harmlessly when it is gone, instead of a check and a del)
    await netns.run("ip", "-n", node_netns, "link", "del", pod_veth(uid), check=False)


def pause_pid(mnt: Path) -> int | None:
    """The pod's pause (PID 1 of its PID namespace), found among the processes in its
    mount namespace; None when there is none."""
    return pauses([mnt]).get(mnt)


def pause_alive(pause: tuple[int, int | None]) -> bool:
    """Whether the pause found as (pid, start ticks) still runs (not a reused pid)."""
    pid, ticks = pause
    return ticks is not None and boot_time_ticks(pid) == ticks


def pause_identity(pid: int) -> tuple[int, int | None]:
    return pid, boot_time_ticks(pid)


def pauses(mnt_files: list[Path]) -> dict[Path, int]:
    """Each pod's pause, for the pods whose mount namespaces are bound at `mnt_files`."""
    out = {}
    for f, pids in mount_ns_members(mnt_files).items():
        for pid in pids:
            if _is_pid_one(pid):
                out[f] = pid
                break
    return out


def _is_pid_one(pid: int) -> bool:
    """Whether `pid` is PID 1 of a PID namespace below this one."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                return len(ids) > 1 and ids[-1] == "1"
    except OSError:
        pass
    return False
