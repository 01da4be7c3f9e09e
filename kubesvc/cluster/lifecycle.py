"""`kubesvc up`, `start`, `stop`, `down` and `status`: a whole cluster on this machine.

State lives in /var/lib/kubesvc/NAME (or $KUBESVC_HOME/NAME, mode 0700): cluster.json, the API
server's data directory (database, CA, tokens, kubeconfig), each node's state, logs, pid files
and supervisor.json. A per-cluster supervisor (`kubesvc supervise`, detached) runs the API
server, the controller-manager and one agent per node, and starts again any that exits.

`stop` ends the cluster's processes and removes what it created in the kernel but keeps the
state; `start` (or `up` on a cluster that exists) brings it back with the same objects,
credentials and addresses. `down` removes everything. Everything the cluster creates in the
kernel carries the cluster's name or id, so `stop` and `down` find all of it even after a
crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kubesvc import netns
from kubesvc.cluster import etcd, kubeconfig
from kubesvc.cluster.supervisor import (
    STOP_GRACE,
    Component,
    hold_pid_lock,
    is_process,
    locked_pid,
    start_ticks,
    write_atomic,
)
from kubesvc.node.netplan import ClusterNet, overlapping, pick_node_cidr

if TYPE_CHECKING:
    from kubesvc.client.rest import ApiClient

API_PORT = 6443
REQUIRED_TOOLS = ("ip", "nsenter", "unshare", "setpriv", "pivot_root", "nft", "mount", "catatonit")
POD_STOP_GRACE = 3.0  # pods' processes get SIGTERM, then SIGKILL after this long


class ClusterError(RuntimeError):
    """A lifecycle step that cannot go on; the message says what to do."""


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
        return json.loads(self.state_file.read_text())  # type: ignore[no-any-return]

    def save(self, state: dict[str, Any]) -> None:
        write_atomic(self.state_file, json.dumps(state))

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

    @property
    def etcd_dir(self) -> Path:
        return self.dir / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.api_dir / "kubeconfig"

    @property
    def supervisor_file(self) -> Path:
        """What the supervisor knows: pid, state, restarts and last exit per component."""
        return self.dir / "supervisor.json"

    @property
    def supervisor_pid_file(self) -> Path:
        return self.pids / "supervisor.pid"

    def node_dir(self, node: str) -> Path:
        return self.dir / "nodes" / node

    def net(self) -> ClusterNet:
        return ClusterNet(self.name, self.load()["node_cidr"])

    def supervisor_pid(self) -> int | None:
        return locked_pid(self.supervisor_pid_file)

    def process_pids(self) -> dict[str, int]:
        """The components' last pids (not necessarily alive), by component name."""
        out = {}
        for f in sorted(self.pids.glob("*.pid")) if self.pids.exists() else []:
            if f.stem == "supervisor":
                continue
            with contextlib.suppress(ValueError, OSError):
                out[f.stem] = int(f.read_text())
        return out

    def live_pids(self) -> dict[str, int]:
        """The components whose recorded process is alive and is this cluster's."""
        return {n: p for n, p in self.process_pids().items() if self.owns(p)}

    def owns(self, pid: int) -> bool:
        """True when `pid` is a kubesvc process (or an etcd member) of this cluster (pid
        files outlive reboots, and their pids can belong to anything by then)."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return (
            start_ticks(pid) is not None
            and (argv[1:3] == [b"-m", b"kubesvc.cli.main"] or argv[0].endswith(b"etcd"))
            and any(str(self.dir).encode() in a for a in argv)
        )

    def supervisor_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.supervisor_file.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}


class Progress:
    """One line per step, with how long it took."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def step(self, text: str) -> None:
        print(f" \u2713 {text} ({time.monotonic() - self.t0:.2f}s)", flush=True)

    def info(self, text: str) -> None:
        print(f"   {text}", flush=True)


def _kubesvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubesvc.cli.main", *args]


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _secure(cluster: Cluster) -> None:
    """The cluster directory is its owner's alone: keys, tokens and the database are in it."""
    _private_dir(cluster.dir)
    for d in (cluster.logs, cluster.pids, cluster.api_dir, cluster.dir / "nodes"):
        _private_dir(d)


@contextlib.contextmanager
def lifecycle_lock() -> Iterator[None]:
    """One lifecycle change at a time on this host (two `up`s must not pick one network)."""
    home().mkdir(parents=True, exist_ok=True)
    fd = os.open(home() / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def preflight(command: str) -> bool:
    if os.geteuid() != 0:
        print(
            f"kubesvc {command} needs root: nodes and pods are network namespaces", file=sys.stderr
        )
        return False
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        print(
            f"kubesvc {command} needs {', '.join(missing)}: "
            "apt-get install iproute2 nftables util-linux catatonit",
            file=sys.stderr,
        )
        return False
    return True


# -- the components ------------------------------------------------------------------------
def components(cluster: Cluster) -> list[Component]:
    """What the supervisor runs for this cluster, computed from cluster.json."""
    state = cluster.load()
    net = cluster.net()

    def component(name: str, argv: list[str]) -> Component:
        return Component(name, argv, cluster.logs / f"{name}.log", cluster.pids / f"{name}.pid")

    tunables = tunable_flags(state)
    stopped = set(stopped_nodes(state))
    members, store_flags = _store(cluster, state)
    out = [component(name, argv) for name, argv in members]
    servers = apiservers(state)
    peers = [f"https://{net.apiserver_ip(i)}:{API_PORT}" for i in range(servers)]
    for i in range(servers):
        out.append(
            component(
                "apiserver" if i == 0 else f"apiserver-{i + 1}",
                _kubesvc(
                    "apiserver",
                    "--data-dir",
                    str(cluster.api_dir),
                    "--bind",
                    net.apiserver_ip(i),
                    "--port",
                    str(API_PORT),
                    "--advertise-address",
                    net.apiserver_ip(i),
                    "--service-cluster-ip-range",
                    net.service_cidr,
                    *tunables["apiserver"],
                    *store_flags,
                    *(["--apiserver-peers", ",".join(peers)] if servers > 1 else []),
                    # each node's own credential (system:node:NAME): kubelet-NAME.kubeconfig
                    *(arg for node in state["nodes"] for arg in ("--node", node)),
                ),
            )
        )
    # all start at once: the controller-manager and the agents wait for the API server
    # themselves (kubeconfig.wait_for_server), so their imports overlap the server's start
    managers = controller_managers(state)
    for i in range(managers):
        out.append(
            component(
                "controller-manager" if i == 0 else f"controller-manager-{i + 1}",
                # as system:kube-controller-manager, each controller with its ServiceAccount's
                # token, the scheduler as system:kube-scheduler (kubeconfigs the API server
                # wrote); several elect a leader on the Lease kube-system/kube-controller-manager
                _kubesvc(
                    "controller-manager",
                    "--kubeconfig",
                    str(cluster.api_dir / "kube-controller-manager.kubeconfig"),
                    "--use-service-account-credentials",
                    "--scheduler-kubeconfig",
                    str(cluster.api_dir / "kube-scheduler.kubeconfig"),
                    *tunables["controller-manager"],
                    *([] if managers > 1 else ["--leader-elect=false"]),
                ),
            )
        )
    for i, node in enumerate(state["nodes"]):
        argv = _kubesvc(
            "node",
            "--name",
            node,
            "--cluster",
            cluster.name,
            # the node's own credential: system:node:NAME in system:nodes
            "--kubeconfig",
            str(cluster.api_dir / f"kubelet-{node}.kubeconfig"),
            "--node-ip",
            net.node_ip(i),
            "--node-cidr",
            net.node_cidr,
            "--pod-cidr",
            net.node_pod_cidr(i),
            "--state-dir",
            str(cluster.node_dir(node)),
            "--proxy-mode",
            state.get("proxy_mode", "nftables"),
            # written by the API server with the admin's; its user is system:kube-proxy
            "--proxy-kubeconfig",
            str(cluster.api_dir / "kube-proxy.kubeconfig"),
            # the speaker's and the routes' reads: system:metallb-speaker
            "--speaker-kubeconfig",
            str(cluster.api_dir / "metallb-speaker.kubeconfig"),
        )
        agent = component(node, argv)
        agent.held = node in stopped  # `kubesvc node stop`
        out.append(agent)
    return out


def _store(
    cluster: Cluster, state: dict[str, Any]
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """The etcd members to run (name, argv) and the API server's store flags: none for
    SQLite, the members' for `--store etcd`, the user's for `--etcd-servers`."""
    if state.get("store") != "etcd":
        return [], []
    external = state.get("etcd_servers")
    if isinstance(external, dict) and isinstance(external.get("servers"), str):
        flags = ["--etcd-servers", external["servers"]]
        for name in ("cafile", "certfile", "keyfile"):
            if isinstance(external.get(name), str) and external[name]:
                flags += [f"--etcd-{name}", external[name]]
        return [], flags
    plan = etcd_plan(cluster, state)
    if plan is None:
        raise ClusterError(f"cluster.json of {cluster.name!r} names no etcd members")
    files = etcd.EtcdFiles(cluster.etcd_dir / "pki")
    members = [
        (plan.name(i), plan.member_argv(i, cluster.etcd_dir / plan.name(i), files))
        for i in range(plan.members)
    ]
    return members, plan.apiserver_flags(files)


def apiservers(state: dict[str, Any]) -> int:
    """How many API servers run (`kubesvc up --apiservers N`, on an etcd store)."""
    n = state.get("apiservers")
    ok = isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 5
    return n if ok and state.get("store") == "etcd" else 1  # type: ignore[return-value]


def controller_managers(state: dict[str, Any]) -> int:
    """How many controller-managers run (`kubesvc up --controller-managers N`)."""
    n = state.get("controller_managers")
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 5 else 1


def etcd_plan(cluster: Cluster, state: dict[str, Any]) -> etcd.EtcdPlan | None:
    return etcd.EtcdPlan.load(cluster.name, state.get("etcd"))


# cluster.json keys set by `kubesvc up` flags -> the component and flag they are passed as
TUNABLES = {
    "node_monitor_grace_period": ("controller-manager", "--node-monitor-grace-period"),
    "default_not_ready_toleration_seconds": (
        "apiserver",
        "--default-not-ready-toleration-seconds",
    ),
    "default_unreachable_toleration_seconds": (
        "apiserver",
        "--default-unreachable-toleration-seconds",
    ),
    "leader_elect_lease_duration": ("controller-manager", "--leader-elect-lease-duration"),
    "leader_elect_renew_deadline": ("controller-manager", "--leader-elect-renew-deadline"),
    "leader_elect_retry_period": ("controller-manager", "--leader-elect-retry-period"),
}


def tunable_flags(state: dict[str, Any]) -> dict[str, list[str]]:
    """The extra flags of the API server and the controller-manager (unset: their defaults,
    which are upstream's)."""
    out: dict[str, list[str]] = {"apiserver": [], "controller-manager": []}
    for key, (comp, flag) in TUNABLES.items():
        value = state.get(key)
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0
        ):
            out[comp] += [flag, f"{value:g}"]
    return out


def stopped_nodes(state: dict[str, Any]) -> list[str]:
    """The nodes stopped with `kubesvc node stop` (what is not a node name is left out)."""
    raw = state.get("stopped_nodes")
    nodes = state.get("nodes") or []
    if not isinstance(raw, list):
        return []
    return [n for n in raw if isinstance(n, str) and n in nodes]


def running_nodes(state: dict[str, Any]) -> list[str]:
    stopped = set(stopped_nodes(state))
    return [n for n in state["nodes"] if n not in stopped]


async def _api_answers(cluster: Cluster) -> bool:
    """The API server accepts connections (and has written its kubeconfig)."""
    if not cluster.kubeconfig.exists():
        return False
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(cluster.net().host_ip, API_PORT), 1.0
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def supervise(name: str) -> int:
    """`kubesvc supervise --name NAME`: run the cluster's components until SIGTERM."""
    from kubesvc.cluster.supervisor import Supervisor

    # a SIGHUP (`kubesvc node stop/start`) before the loop handles it must not end us; the
    # components are computed from cluster.json when the loop starts anyway
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    cluster = Cluster(name, home() / name)
    if not cluster.exists():
        print(f"kubesvc supervise: no cluster named {name!r}", file=sys.stderr)
        return 1
    cluster.pids.mkdir(parents=True, exist_ok=True)
    lock = hold_pid_lock(cluster.supervisor_pid_file)
    if lock is None:
        other = cluster.supervisor_pid()
        print(f"kubesvc supervise: cluster {name!r} already has a supervisor (pid {other})")
        return 1

    async def main() -> None:
        sup = Supervisor(components(cluster), cluster.supervisor_file)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sup.stop)
        # `kubesvc node stop/start` changed which agents are held
        loop.add_signal_handler(
            signal.SIGHUP, lambda: sup.set_held({c.name for c in components(cluster) if c.held})
        )
        print(f"kubesvc supervise: cluster {name} (pid {os.getpid()})", flush=True)
        await sup.run()

    try:
        asyncio.run(main())
    finally:
        os.close(lock)
    return 0


# -- up, start ----------------------------------------------------------------------------
async def up(
    name: str,
    nodes: int | None = None,
    wait: float = 60.0,
    proxy_mode: str | None = None,
    tunables: dict[str, float] | None = None,
    ingress: bool = True,
    store: dict[str, Any] | None = None,
) -> int:
    """Create the cluster, or bring back the one that exists (never wiping it). `store`:
    {"members": N} runs N etcd members, {"servers": URLs, "cafile": ...} uses the user's
    etcd, None keeps SQLite."""
    if not preflight("up"):
        return 1
    cluster = Cluster(name, home() / name)
    progress = Progress()
    created = False
    try:
        with lifecycle_lock():
            if cluster.exists():
                state = cluster.load()
                if nodes is not None and nodes != len(state["nodes"]):
                    progress.info(
                        f"--nodes {nodes} ignored: cluster {name!r} exists with "
                        f"{len(state['nodes'])} nodes (`kubesvc down --name {name}` deletes it)"
                    )
                if proxy_mode is not None and proxy_mode != state.get("proxy_mode"):
                    progress.info(
                        f"--proxy-mode {proxy_mode} ignored: cluster {name!r} exists with "
                        f"{state.get('proxy_mode')}"
                    )
                if store is not None and state.get("store") != "etcd":
                    progress.info(
                        f"--store etcd ignored: cluster {name!r} exists with its SQLite store"
                    )
                for key, value in (tunables or {}).items():
                    if state.get(key) != value:
                        progress.info(
                            f"--{key.replace('_', '-')} {value:g} ignored: cluster {name!r} "
                            "exists; it applies to new clusters"
                        )
            else:
                await _create(cluster, nodes or 2, proxy_mode or "nftables", progress)
                if store is not None:
                    _plan_store(cluster, store, progress)
                if tunables or not ingress:
                    opt_out = {} if ingress else {"no_ingress": True}
                    cluster.save({**cluster.load(), **(tunables or {}), **opt_out})
                created = True
            supervisor, fresh = await _bring_back(cluster, progress)
    except ClusterError as e:
        print(f"kubesvc up: {e}", file=sys.stderr)
        return 1
    # a new cluster has no Ready condition from before: any there is, is of now
    return await _wait_ready(cluster, wait, progress, supervisor, fresh and not created)


async def start(name: str, wait: float = 60.0) -> int:
    """Bring back a stopped (or half-running) cluster with its state."""
    if not preflight("start"):
        return 1
    cluster = Cluster(name, home() / name)
    if not cluster.exists():
        print(
            f"kubesvc start: no cluster named {name!r}; `kubesvc up --name {name}` creates one",
            file=sys.stderr,
        )
        return 1
    progress = Progress()
    try:
        with lifecycle_lock():
            supervisor, fresh = await _bring_back(cluster, progress)
    except ClusterError as e:
        print(f"kubesvc start: {e}", file=sys.stderr)
        return 1
    return await _wait_ready(cluster, wait, progress, supervisor, fresh)


async def _create(cluster: Cluster, nodes: int, proxy_mode: str, progress: Progress) -> None:
    taken = []
    for p in home().glob("*/cluster.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            taken.append(json.loads(p.read_text())["node_cidr"])
    try:
        node_cidr = pick_node_cidr(await netns.host_routes(), taken)
    except ValueError as e:
        raise ClusterError(str(e)) from e
    _secure(cluster)
    cluster.save(
        {
            "name": cluster.name,
            "node_cidr": node_cidr,
            "nodes": [f"{cluster.name}-node-{i + 1}" for i in range(nodes)],
            "proxy_mode": proxy_mode,
            "created": time.time(),
        }
    )


def _plan_store(cluster: Cluster, store: dict[str, Any], progress: Progress) -> None:
    """Write the new cluster's etcd into cluster.json (and its members' certificates)."""
    state = cluster.load()
    if "servers" in store:
        state.update(store="etcd", etcd_servers=store)
    else:
        progress.step(f"etcd: {store['members']} member(s) on loopback, mutual TLS")
        _private_dir(cluster.etcd_dir)
        etcd.ensure_pki(cluster.etcd_dir / "pki")
        plan = etcd.EtcdPlan.new(cluster.name, int(store["members"]))
        state.update(store="etcd", etcd=plan.state())
    cluster.save(state)


async def _bring_back(cluster: Cluster, progress: Progress) -> tuple[int, bool]:
    """Make the cluster run: nothing to do if it does, start it if it is stopped, repair it
    if it is half-running. Returns the supervisor's pid, and True when it is a new one (so
    the nodes' Ready must come from agents of now)."""
    name = cluster.name
    supervisor = cluster.supervisor_pid()
    network = await _network_intact(cluster)
    if supervisor and network:
        progress.info(f"cluster {name!r} is running (supervisor pid {supervisor})")
        return supervisor, False
    live = cluster.live_pids()
    if (supervisor or live) and not network:
        progress.info(f"cluster {name!r} lost part of its network; restarting it (state kept)")
        await _teardown(cluster, None)
    elif live:
        progress.info(
            f"cluster {name!r} was half-running (its supervisor is gone); repairing it (state kept)"
        )
    _secure(cluster)
    await _ensure_network(cluster)
    from kubesvc.cluster import hosts

    await hosts.restore(cluster)
    net = cluster.net()
    progress.step(f"network {net.node_cidr} on bridge {net.bridge}, host at {net.host_ip}")
    _seed_supervisor_state(cluster)
    pid = _spawn_supervisor(cluster)
    progress.step(f"supervisor pid {pid}, logs in {cluster.logs}")
    return pid, True


async def _network_intact(cluster: Cluster) -> bool:
    net = cluster.net()
    if not await netns.link_exists(net.bridge):
        return False
    # a stopped node's namespace is gone after a `stop`, and comes back with its agent
    return all(netns.exists(net.node_netns(n)) for n in running_nodes(cluster.load()))


async def _ensure_network(cluster: Cluster) -> None:
    net = cluster.net()
    if not await netns.link_exists(net.bridge):
        clash = overlapping(net.node_cidr, await netns.host_routes())
        if clash:
            raise ClusterError(
                f"cluster {cluster.name!r}'s node network {net.node_cidr} now overlaps host "
                f"routes {', '.join(clash)}; remove them, or `kubesvc down --name "
                f"{cluster.name}` and `kubesvc up` for a new cluster on a free network"
            )
        await netns.ip_batch(
            [
                f"link add {net.bridge} type bridge",
                # traffic between nodes is the cluster's own business: keep the host's
                # firewall out
                f"link set {net.bridge} type bridge nf_call_iptables 0",
            ]
        )
    servers = apiservers(cluster.load())
    await netns.ip_batch(
        [
            *(
                f"addr replace {net.apiserver_ip(i)}/{net.prefix_len} dev {net.bridge}"
                for i in range(servers)
            ),
            f"link set {net.bridge} up",
        ]
    )


def _seed_supervisor_state(cluster: Cluster) -> None:
    """Processes running without any supervisor.json (started by a kubesvc from before the
    supervisor) are recorded there, so that the supervisor adopts them instead of starting
    second copies."""
    if cluster.supervisor_file.exists():
        return
    live = cluster.live_pids()
    if live:
        components = {
            name: {"pid": pid, "start_ticks": start_ticks(pid), "state": "running"}
            for name, pid in live.items()
        }
        state = {"stopped": False, "components": components}
        write_atomic(cluster.supervisor_file, json.dumps(state, indent=1) + "\n")


def _spawn_supervisor(cluster: Cluster) -> int:
    with open(cluster.logs / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            _kubesvc("supervise", "--name", cluster.name),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


async def _wait_ready(
    cluster: Cluster, wait: float, progress: Progress, supervisor: int, fresh: bool
) -> int:
    name = cluster.name
    net = cluster.net()
    deadline = time.monotonic() + wait
    # the supervisor imports this module too: the client (aiohttp) only where it is used,
    # imported while the API server starts rather than after
    from kubesvc.client.rest import ApiClient
    from kubesvc.cluster import addons

    while not await _api_answers(cluster):
        if time.monotonic() > deadline or start_ticks(supervisor) is None:
            what = "in time" if time.monotonic() > deadline else "(its supervisor exited)"
            _explain_failure(cluster, f"the API server did not start {what}", "apiserver")
            return 1
        await asyncio.sleep(0.02)
    progress.step(f"API server https://{net.host_ip}:{API_PORT}")
    state = cluster.load()
    async with ApiClient.from_kubeconfig(str(cluster.kubeconfig)) as client:
        nodes = asyncio.ensure_future(
            _wait_nodes_ready(client, cluster, running_nodes(state), deadline, progress, fresh)
        )
        if not state.get("addons_installed"):
            # the add-ons go in while the nodes come up (their CRDs take a moment to be served)
            try:
                await addons.install(client, net, ingress=not state.get("no_ingress"))
            except BaseException:
                nodes.cancel()
                raise
            state["addons_installed"] = True
            cluster.save(state)
        ready = await nodes
    for node in stopped_nodes(state):
        progress.info(
            f"node {node} is stopped (`kubesvc node start {node} --name {cluster.name}` starts it)"
        )
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    try:
        kubeconfig.merge(kubeconfig.default_path(), kubeconfig.named(admin, name))
    except (kubeconfig.KubeconfigError, OSError) as e:
        print(
            f"kubesvc: {kubeconfig.default_path()} was not updated: {e}\n"
            f"  `kubesvc kubeconfig --name {name}` prints the cluster's kubeconfig",
            file=sys.stderr,
        )
    if not ready:
        _explain_failure(cluster, f"nodes did not become Ready in {wait:.0f}s", None)
        return 1
    progress.step(f"cluster {name!r} ready: kubectl context {kubeconfig.context_name(name)}")
    return 0


def _explain_failure(cluster: Cluster, what: str, component: str | None) -> None:
    print(f"kubesvc: {what}", file=sys.stderr)
    logs = [component] if component else [n for n in cluster.load()["nodes"]]
    for c in logs:
        try:
            tail = (cluster.logs / f"{c}.log").read_text(errors="replace").splitlines()[-5:]
        except OSError:
            continue
        print(f"  last lines of {cluster.logs / (c + '.log')}:", file=sys.stderr)
        for line in tail:
            print(f"    {line}", file=sys.stderr)
    print(
        f"  `kubesvc status --name {cluster.name}` shows every process and its log",
        file=sys.stderr,
    )


def agent_ready(cluster: Cluster, node: str) -> bool:
    """The node's agent that runs now has registered the node and taken over its pods
    (a Ready condition left from before a stop says nothing about the agent of now)."""
    try:
        info = json.loads((cluster.node_dir(node) / "agent.json").read_text())
    except (OSError, ValueError):
        return False
    return is_process(int(info.get("pid") or 0), info.get("start_ticks"))


async def _wait_nodes_ready(
    client: ApiClient,
    cluster: Cluster,
    names: list[str],
    deadline: float,
    progress: Progress,
    fresh: bool,
) -> bool:
    from kubesvc.client.rest import ApiException

    seen: set[str] = set()
    while time.monotonic() < deadline:
        try:
            items = (await client.list("Node"))["items"]
        except (ApiException, OSError):
            items = []
        for n in items:
            node = n["metadata"]["name"]
            conds = (n.get("status") or {}).get("conditions") or []
            ok = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
            if ok and node in names and node not in seen:
                if fresh and not agent_ready(cluster, node):
                    continue
                seen.add(node)
                progress.step(f"node {node} Ready")
        if seen >= set(names):
            return True
        await asyncio.sleep(0.05)
    return False


# -- stop, down ----------------------------------------------------------------------------
async def stop(name: str) -> int:
    """End the cluster's processes and kernel objects; keep its state for `start`."""
    if not preflight("stop"):
        return 1
    cluster = Cluster(name, home() / name)
    if not cluster.exists():
        print(
            f"kubesvc stop: no cluster named {name!r} (`kubesvc status` lists them)",
            file=sys.stderr,
        )
        return 1
    progress = Progress()
    with lifecycle_lock():
        if not _anything_left(cluster):
            print(f"cluster {name!r} is not running; `kubesvc start --name {name}` starts it")
            return 0
        await _teardown(cluster, progress)
    progress.step(f"cluster {name!r} stopped; its state is kept in {cluster.dir}")
    progress.info(
        f"`kubesvc start --name {name}` brings it back, `kubesvc down --name {name}` deletes it"
    )
    return 0


def _anything_left(cluster: Cluster) -> bool:
    return bool(
        cluster.supervisor_pid()
        or cluster.live_pids()
        or netns.names(f"ksv-{cluster.name}-")
        or (Path("/run/kubesvc") / cluster.name).exists()
    )


async def down(name: str, quiet: bool = False) -> int:
    """Remove everything the cluster created: processes, kernel objects, state, and its
    entries in ~/.kube/config."""
    cluster = Cluster(name, home() / name)
    if not cluster.exists() and not netns.names(f"ksv-{name}-"):
        if not quiet:
            print(f"no cluster named {name!r}")
        return 0
    with lifecycle_lock():
        await _teardown(cluster, None)
        try:
            kubeconfig.remove(kubeconfig.default_path(), name)
        except (kubeconfig.KubeconfigError, OSError) as e:
            print(
                f"kubesvc: context {kubeconfig.context_name(name)} is still in "
                f"{kubeconfig.default_path()}: {e}",
                file=sys.stderr,
            )
        shutil.rmtree(cluster.dir, ignore_errors=True)
    if not quiet:
        print(f"cluster {name!r} removed")
    return 0


async def _teardown(cluster: Cluster, progress: Progress | None) -> None:
    """Every process of the cluster, then everything it made in the kernel; state stays."""
    name = cluster.name
    # the supervisor first, so that nothing is started again behind our back; it stops the
    # components it runs
    supervisor = cluster.supervisor_pid()
    if supervisor:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGTERM)
        if not await _until(lambda: cluster.supervisor_pid() is None, STOP_GRACE + 3):
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor, signal.SIGKILL)
            await _until(lambda: cluster.supervisor_pid() is None, 2)
    # components it did not stop (it had died, and they ran on)
    live = cluster.live_pids()
    for pid in live.values():
        _signal_group(pid, signal.SIGTERM)
    await _until(lambda: not any(cluster.owns(p) for p in live.values()), STOP_GRACE)
    for pid in live.values():
        if cluster.owns(pid):
            _signal_group(pid, signal.SIGKILL)
    if progress is not None:
        progress.step("stopped the supervisor, the API server, the controllers and the agents")
    prefix = f"ksv-{name}-"
    pods = await kill_in_namespaces(netns.names(prefix))
    if progress is not None and pods:
        progress.step(f"stopped {pods} pod processes")
    ns_dir = Path("/run/kubesvc") / name
    for _ in range(8):  # nested and stacked mounts: unmount until nothing is left
        if not netns.is_mountpoint(ns_dir / "ns"):
            break
        await netns.run("umount", "-R", str(ns_dir / "ns"), check=False)
    shutil.rmtree(ns_dir, ignore_errors=True)
    left = netns.names(prefix)
    for ns in left:
        await netns.delete(ns)
    if cluster.exists():
        net = cluster.net()
        links = await netns.run("ip", "-o", "link", "show", check=False)
        for line in links.splitlines():
            link = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if link.startswith((f"kn{net.id}", f"kh{net.id}")) or link == net.bridge:
                await netns.run("ip", "link", "del", link, check=False)
    _mark_stopped(cluster)
    if progress is not None:
        progress.step(f"removed {len(left)} network namespaces, the bridge and the mounts")


def _mark_stopped(cluster: Cluster) -> None:
    """Record in supervisor.json that everything stopped on purpose (the supervisor does
    this itself when it is the one stopping them), so a start counts no restarts."""
    state = cluster.supervisor_state()
    if not state or state.get("stopped"):
        return
    state["stopped"] = True
    for info in (state.get("components") or {}).values():
        if isinstance(info, dict):
            info["state"] = "stopped"
    write_atomic(cluster.supervisor_file, json.dumps(state, indent=1) + "\n")


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def kill_in_namespaces(names: list[str]) -> int:
    """Stop every process in the cluster's network namespaces (the pods' processes):
    SIGTERM, then SIGKILL for what is left after POD_STOP_GRACE. Returns how many there were."""
    files = [netns.NETNS_DIR / n for n in names]
    procs = netns.processes_in(files)
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    await _until(lambda: not netns.processes_in(files), POD_STOP_GRACE)
    for p in netns.processes_in(files):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
    await _until(lambda: not netns.processes_in(files), 2)
    return len(procs)


# -- status, kubeconfig --------------------------------------------------------------------
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
        if c.exists():
            _print_status(c)
    return 0


def _print_status(c: Cluster) -> None:
    net = c.net()
    supervisor = c.supervisor_pid()
    known = c.supervisor_state().get("components") or {}
    pids = c.process_pids()
    cluster_state = c.load()
    held = set(stopped_nodes(cluster_state))
    rows = []
    for comp in [x.name for x in components(c)]:
        info = known.get(comp) or {}
        pid = int(info.get("pid") or pids.get(comp) or 0)
        alive = c.owns(pid) if pid else False
        if alive:
            state = "running"
        elif supervisor and info.get("state") in ("restarting", "waiting"):
            state = str(info["state"])
        else:
            state = "stopped"
        rows.append((comp, pid, state, int(info.get("restarts") or 0)))
    running = sum(1 for r in rows if r[2] == "running")
    if supervisor and running == len(rows) - len(held):
        overall = "running"
    elif not supervisor and running == 0:
        overall = "stopped"
    else:
        overall = "degraded"
    print(
        f"cluster {c.name}: {overall}; nodes on {net.node_cidr} (bridge {net.bridge}), "
        f"API https://{net.host_ip}:{API_PORT}, context {kubeconfig.context_name(c.name)}"
    )
    sup_state = "running" if supervisor else "stopped"
    sup_log = c.logs / "supervisor.log"
    print(f"  {'supervisor':<28} pid {supervisor or '-':<8} {sup_state:<10} {'':<12} log {sup_log}")
    for comp, pid, state, restarts in rows:
        log = c.logs / f"{comp}.log"
        note = f"  (node stopped: `kubesvc node start {comp}`)" if comp in held else ""
        print(
            f"  {comp:<28} pid {pid or '-':<8} {state:<10} restarts {restarts:<3} log {log}{note}"
        )
    from kubesvc.cluster import hosts

    for host, index in sorted(hosts.recorded(cluster_state).items()):
        ns = net.outside_host_netns(host)
        up = "up" if netns.exists(ns) else "down"
        print(f"  host {host:<23} ip  {net.outside_host_ip(index):<12} {up:<10} netns {ns}")
    if overall == "stopped":
        print(f"  `kubesvc start --name {c.name}` brings it back")
    elif not supervisor:
        print(f"  no supervisor: `kubesvc up --name {c.name}` repairs it")


def print_kubeconfig(name: str) -> int:
    cluster = Cluster(name, home() / name)
    kcfg = cluster.kubeconfig
    if not kcfg.exists():
        print(f"no cluster named {name!r}", file=sys.stderr)
        return 1
    print(
        yaml.safe_dump(kubeconfig.named(yaml.safe_load(kcfg.read_text()), name), sort_keys=False),
        end="",
    )
    return 0
