"""`kubesvc node stop` and `node start`: a node that fails as a machine does, and comes back.

Stopping a node records it in cluster.json (`stopped_nodes`, so that neither the supervisor
nor a later `start` runs its agent), tells the supervisor (SIGHUP) to stop its agent and hold
it, stops every process of its pods (their namespaces stay, as a powered-off machine's disk
does) and sets the bridge end of its eth0 down: nothing on the node network reaches it and it
reaches nothing. The control plane notices as upstream's does, from the lease that is no
longer renewed.

Starting it sets the link up again and releases the agent, which adopts its pods: the
containers whose processes died are started again (restartCount counts them), and pods
deleted meanwhile (evicted) are torn down and their deletion finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kubesvc import netns
from kubesvc.cluster.lifecycle import (
    STOP_GRACE,
    Cluster,
    ClusterError,
    agent_ready,
    home,
    kill_in_namespaces,
    lifecycle_lock,
    preflight,
    stopped_nodes,
)

AGENT_START_WAIT = 30.0


def pod_namespaces(cluster: Cluster, node: str) -> list[str]:
    """The network namespaces of the node's pods, from the sandboxes its agent recorded, and
    the node's own (hostNetwork pods run there)."""
    out = [cluster.net().node_netns(node)]
    pods = cluster.node_dir(node) / "pods"
    for f in sorted(pods.glob("*/sandbox.json")) if pods.exists() else []:
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        ns = info.get("netns") if isinstance(info, dict) else None
        if isinstance(ns, str) and ns:
            name = Path(ns).name
            if name.startswith(cluster.net().netns_prefix) and name not in out:
                out.append(name)
    return out


def _find(cluster_name: str, node: str) -> tuple[Cluster, dict[str, Any]]:
    cluster = Cluster(cluster_name, home() / cluster_name)
    if not cluster.exists():
        raise ClusterError(f"no cluster named {cluster_name!r} (`kubesvc status` lists them)")
    state = cluster.load()
    if node not in state["nodes"]:
        raise ClusterError(
            f"cluster {cluster_name!r} has no node {node!r}; nodes: {', '.join(state['nodes'])}"
        )
    return cluster, state


def _tell_supervisor(cluster: Cluster) -> int | None:
    pid = cluster.supervisor_pid()
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
    return pid


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def stop(node: str, cluster_name: str) -> int:
    if not preflight("node stop"):
        return 1
    try:
        cluster, state = _find(cluster_name, node)
        with lifecycle_lock():
            stopped = stopped_nodes(state)
            if node in stopped:
                print(f"node {node} is already stopped")
                return 0
            state["stopped_nodes"] = [*stopped, node]
            cluster.save(state)
            agent = cluster.process_pids().get(node, 0)
            if _tell_supervisor(cluster) is None:
                print(f"cluster {cluster_name!r} is not running; node {node} stays stopped")
                return 0
            if agent and not await _until(lambda: not cluster.owns(agent), STOP_GRACE + 5):
                raise ClusterError(f"the agent of node {node} (pid {agent}) did not stop")
            killed = await kill_in_namespaces(pod_namespaces(cluster, node))
            await netns.run("ip", "link", "set", cluster.net().node_veth(node), "down", check=False)
    except ClusterError as e:
        print(f"kubesvc node stop: {e}", file=sys.stderr)
        return 1
    print(
        f"node {node} stopped: agent gone, {killed} pod processes stopped, link "
        f"{cluster.net().node_veth(node)} down"
    )
    return 0


async def start(node: str, cluster_name: str) -> int:
    if not preflight("node start"):
        return 1
    try:
        cluster, state = _find(cluster_name, node)
        with lifecycle_lock():
            stopped = stopped_nodes(state)
            if node not in stopped:
                print(f"node {node} is not stopped")
                return 0
            state["stopped_nodes"] = [n for n in stopped if n != node]
            cluster.save(state)
            await netns.run("ip", "link", "set", cluster.net().node_veth(node), "up", check=False)
            if _tell_supervisor(cluster) is None:
                print(f"cluster {cluster_name!r} is not running; node {node} starts with it")
                return 0
            if not await _until(lambda: agent_ready(cluster, node), AGENT_START_WAIT):
                raise ClusterError(
                    f"the agent of node {node} did not start in {AGENT_START_WAIT:.0f}s; "
                    f"see {cluster.logs / (node + '.log')}"
                )
    except ClusterError as e:
        print(f"kubesvc node start: {e}", file=sys.stderr)
        return 1
    print(f"node {node} started")
    return 0


def list_nodes(cluster_name: str) -> int:
    cluster = Cluster(cluster_name, home() / cluster_name)
    if not cluster.exists():
        print(f"kubesvc node list: no cluster named {cluster_name!r}", file=sys.stderr)
        return 1
    state = cluster.load()
    net = cluster.net()
    stopped = set(stopped_nodes(state))
    live = cluster.live_pids()
    rows = [("NAME", "IP", "STATE", "AGENT")]
    for i, node in enumerate(state["nodes"]):
        what = "stopped" if node in stopped else "running" if node in live else "down"
        rows.append((node, net.node_ip(i), what, str(live.get(node, "-"))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
