"""`kubesvc up`, `down` and `status`: a whole cluster on this machine, in the background.

State lives in /var/lib/kubesvc/NAME (or $KUBESVC_HOME/NAME): cluster.json, the API server's
data directory, each node's state, logs and pid files. Everything the cluster creates in the
kernel carries the cluster's name or id, so `down` finds all of it even after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubesvc.cluster import addons, kubeconfig
from kubesvc.node import netns
from kubesvc.node.netplan import ClusterNet, pick_node_cidr

API_PORT = 6443
REQUIRED_TOOLS = ("ip", "nsenter", "unshare", "nft", "mount")


def home() -> Path:
    return Path(os.environ.get("KUBESVC_HOME", "/var/lib/kubesvc"))


@dataclass
class Cluster:
    name: str
    dir: Path

    @property
    def state_file(self) -> Path:
        return self.dir / "cluster.json"

    def load(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    def exists(self) -> bool:
        return self.state_file.exists()

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def pids(self) -> Path:
        return self.dir / "pids"

    @property
    def api_dir(self) -> Path:
        return self.dir / "apiserver"

    def net(self) -> ClusterNet:
        return ClusterNet(self.name, self.load()["node_cidr"])

    def process_pids(self) -> dict[str, int]:
        out = {}
        for f in sorted(self.pids.glob("*.pid")) if self.pids.exists() else []:
            with contextlib.suppress(ValueError, OSError):
                out[f.stem] = int(f.read_text())
        return out

    def running(self) -> dict[str, bool]:
        return {name: _alive(pid) for name, pid in self.process_pids().items()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


class Progress:
    """One line per step, with how long it took."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def step(self, text: str) -> None:
        print(f" \u2713 {text} ({time.monotonic() - self.t0:.2f}s)", flush=True)

    def info(self, text: str) -> None:
        print(f"   {text}", flush=True)


def _spawn(cluster: Cluster, name: str, argv: list[str]) -> int:
    cluster.logs.mkdir(parents=True, exist_ok=True)
    cluster.pids.mkdir(parents=True, exist_ok=True)
    with open(cluster.logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (cluster.pids / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _kubesvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubesvc.cli.main", *args]


async def up(name: str, nodes: int, wait: float = 60.0, proxy_mode: str = "nftables") -> int:
    if os.geteuid() != 0:
        print("kubesvc up needs root: nodes and pods are network namespaces", file=sys.stderr)
        return 1
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        print(
            f"kubesvc up needs {', '.join(missing)}: apt-get install iproute2 nftables util-linux",
            file=sys.stderr,
        )
        return 1
    cluster = Cluster(name, home() / name)
    if cluster.exists():
        state = cluster.running()
        if state and all(state.values()):
            print(f"cluster {name!r} is already running; `kubesvc down --name {name}` stops it")
            return 0
        print(f"cluster {name!r} was left half-running; cleaning it up first")
        await down(name, quiet=True)
    progress = Progress()
    taken = [json.loads(p.read_text())["node_cidr"] for p in home().glob("*/cluster.json")]
    try:
        node_cidr = pick_node_cidr(await netns.host_routes(), taken)
    except ValueError as e:
        print(f"kubesvc up: {e}", file=sys.stderr)
        return 1
    net = ClusterNet(name, node_cidr)
    cluster.dir.mkdir(parents=True, exist_ok=True)
    node_names = [f"{name}-node-{i + 1}" for i in range(nodes)]
    cluster.state_file.write_text(
        json.dumps(
            {
                "name": name,
                "node_cidr": node_cidr,
                "nodes": node_names,
                "proxy_mode": proxy_mode,
                "created": time.time(),
            }
        )
    )
    await netns.ip_batch(
        [
            f"link add {net.bridge} type bridge",
            # traffic between nodes is the cluster's own business: keep the host's firewall out
            f"link set {net.bridge} type bridge nf_call_iptables 0",
            f"addr add {net.host_ip}/{net.prefix_len} dev {net.bridge}",
            f"link set {net.bridge} up",
        ]
    )
    progress.step(f"network {node_cidr} on bridge {net.bridge}, host at {net.host_ip}")
    _spawn(
        cluster,
        "apiserver",
        _kubesvc(
            "apiserver",
            "--data-dir",
            str(cluster.api_dir),
            "--bind",
            net.host_ip,
            "--port",
            str(API_PORT),
            "--advertise-address",
            net.host_ip,
            "--service-cluster-ip-range",
            net.service_cidr,
        ),
    )
    kcfg = cluster.api_dir / "kubeconfig"
    if not await _wait_for(
        lambda: kcfg.exists() and _log_has(cluster, "apiserver", "listening"), wait
    ):
        print(
            f"the API server did not start; see {cluster.logs / 'apiserver.log'}", file=sys.stderr
        )
        return 1
    progress.step(f"API server https://{net.host_ip}:{API_PORT}")
    from kubesvc.client.rest import ApiClient

    async with ApiClient.from_kubeconfig(str(kcfg)) as client:
        await addons.install(client)
    _spawn(cluster, "controller-manager", _kubesvc("controller-manager", "--kubeconfig", str(kcfg)))
    for i, node in enumerate(node_names):
        _spawn(
            cluster,
            node,
            _kubesvc(
                "node",
                "--name",
                node,
                "--cluster",
                name,
                "--kubeconfig",
                str(kcfg),
                "--node-ip",
                net.node_ip(i),
                "--node-cidr",
                node_cidr,
                "--pod-cidr",
                net.node_pod_cidr(i),
                "--state-dir",
                str(cluster.dir / "nodes" / node),
                "--proxy-mode",
                proxy_mode,
            ),
        )
    ready = await _wait_nodes_ready(kcfg, node_names, wait, progress)
    admin = yaml.safe_load(kcfg.read_text())
    kubeconfig.merge(kubeconfig.default_path(), kubeconfig.named(admin, name))
    if not ready:
        print(f"nodes did not become Ready in {wait:.0f}s; see {cluster.logs}", file=sys.stderr)
        return 1
    progress.step(f"cluster {name!r} ready: kubectl context {kubeconfig.context_name(name)}")
    return 0


def _log_has(cluster: Cluster, name: str, text: str) -> bool:
    try:
        return text in (cluster.logs / f"{name}.log").read_text(errors="replace")
    except OSError:
        return False


async def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def _wait_nodes_ready(
    kcfg: Path, names: list[str], timeout: float, progress: Progress
) -> bool:
    from kubesvc.client.rest import ApiClient, ApiException

    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    async with ApiClient.from_kubeconfig(str(kcfg)) as client:
        while time.monotonic() < deadline:
            try:
                items = (await client.list("Node"))["items"]
            except (ApiException, OSError):
                items = []
            for n in items:
                conds = (n.get("status") or {}).get("conditions") or []
                ok = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
                if ok and n["metadata"]["name"] in names and n["metadata"]["name"] not in seen:
                    seen.add(n["metadata"]["name"])
                    progress.step(f"node {n['metadata']['name']} Ready")
            if seen >= set(names):
                return True
            await asyncio.sleep(0.05)
    return False


async def down(name: str, quiet: bool = False, keep_data: bool = False) -> int:
    cluster = Cluster(name, home() / name)
    if not cluster.exists() and not netns.names(f"ksv-{name}-"):
        if not quiet:
            print(f"no cluster named {name!r}")
        return 0
    pids = cluster.process_pids()
    for pid in pids.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for pid in pids.values():
        _signal_group(pid, signal.SIGKILL)
    prefix = f"ksv-{name}-"
    _kill_in_namespaces(netns.names(prefix))
    ns_dir = Path("/run/kubesvc") / name
    for _ in range(8):  # nested and stacked mounts: unmount until nothing is left
        if not netns.is_mountpoint(ns_dir / "ns"):
            break
        await netns.run("umount", "-R", str(ns_dir / "ns"), check=False)
    shutil.rmtree(ns_dir, ignore_errors=True)
    for ns in netns.names(prefix):
        await netns.delete(ns)
    if cluster.exists():
        net = cluster.net()
        links = await netns.run("ip", "-o", "link", "show", check=False)
        for line in links.splitlines():
            link = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if link.startswith(f"kn{net.id}") or link == net.bridge:
                await netns.run("ip", "link", "del", link, check=False)
    kubeconfig.remove(kubeconfig.default_path(), name)
    if not keep_data:
        shutil.rmtree(cluster.dir, ignore_errors=True)
    if not quiet:
        print(f"cluster {name!r} removed")
    return 0


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _kill_in_namespaces(names: list[str]) -> None:
    """Kill every process whose network namespace is one of the cluster's (pods' processes)."""
    inodes = set()
    for n in names:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(netns.NETNS_DIR / n).st_ino)
    if not inodes:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                os.kill(int(entry), signal.SIGKILL)


def status(name: str | None) -> int:
    clusters = (
        [Cluster(name, home() / name)]
        if name
        else [Cluster(p.parent.name, p.parent) for p in sorted(home().glob("*/cluster.json"))]
    )
    if not clusters or not any(c.exists() for c in clusters):
        print("no kubesvc clusters; `kubesvc up` starts one")
        return 0
    for c in clusters:
        if not c.exists():
            continue
        net = c.net()
        print(
            f"cluster {c.name}: nodes on {net.node_cidr} (bridge {net.bridge}), "
            f"API https://{net.host_ip}:{API_PORT}, context {kubeconfig.context_name(c.name)}"
        )
        for proc, pid in c.process_pids().items():
            state = "running" if _alive(pid) else "stopped"
            print(f"  {proc:<28} pid {pid:<8} {state}   log {c.logs / (proc + '.log')}")
    return 0


def print_kubeconfig(name: str) -> int:
    cluster = Cluster(name, home() / name)
    kcfg = cluster.api_dir / "kubeconfig"
    if not kcfg.exists():
        print(f"no cluster named {name!r}", file=sys.stderr)
        return 1
    print(
        yaml.safe_dump(kubeconfig.named(yaml.safe_load(kcfg.read_text()), name), sort_keys=False),
        end="",
    )
    return 0
