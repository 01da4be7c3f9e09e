"""The node lifecycle controller: notice nodes whose kubelet went quiet.

A node's heartbeat is the newest of its Lease's renewTime (kube-node-lease/NAME) and its Ready
condition's lastHeartbeatTime. Once that is older than the grace period (upstream's
--node-monitor-grace-period, 50 s since 1.32; --node-startup-grace-period, 60 s, for a node
that never posted a Ready condition) the controller sets Ready, MemoryPressure, DiskPressure and
PIDPressure to Unknown and, when that takes Ready away from True, marks the node's pods not
Ready so that endpoint controllers stop sending traffic there (MarkPodsNotReady). Pods newly
bound to a node that is not Ready are marked too. The taints follow the Ready condition
(not-ready / unreachable, NoSchedule and NoExecute) and spec.unschedulable; they are removed
once the kubelet reports Ready again. Pods are never set Ready again here: that is the node
agent's job. Evicting pods after their tolerationSeconds is the taint eviction
controller's (tainteviction.py).

Nothing polls: each node is re-checked when it, its Lease or its pods change, and once more
when its grace period would run out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubesvc.api.objmeta import format_time, object_key, parse_time
from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers.base import Context, Controller, split_key

log = logging.getLogger("kubesvc.nodelifecycle")

LEASE_NAMESPACE = "kube-node-lease"
DEFAULT_GRACE_PERIOD = 50.0
DEFAULT_STARTUP_GRACE_PERIOD = 60.0
GRACE_ENV = "KUBESVC_NODE_MONITOR_GRACE_PERIOD"
STARTUP_GRACE_ENV = "KUBESVC_NODE_STARTUP_GRACE_PERIOD"
NODE_NAME_INDEX = "spec.nodeName"

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

# condition type -> {status: taint key}, as upstream's nodeConditionToTaintKeyStatusMap
CONDITION_TAINTS: dict[str, dict[str, str]] = {
    "Ready": {"False": TAINT_NOT_READY, "Unknown": TAINT_UNREACHABLE},
    "MemoryPressure": {"True": "node.kubernetes.io/memory-pressure"},
    "DiskPressure": {"True": "node.kubernetes.io/disk-pressure"},
    "NetworkUnavailable": {"True": "node.kubernetes.io/network-unavailable"},
    "PIDPressure": {"True": "node.kubernetes.io/pid-pressure"},
}
MANAGED_NO_SCHEDULE = {k for m in CONDITION_TAINTS.values() for k in m.values()} | {
    TAINT_UNSCHEDULABLE
}
MANAGED_NO_EXECUTE = {TAINT_NOT_READY, TAINT_UNREACHABLE}
# NetworkUnavailable is the network plugin's to set, so it is left alone
UNKNOWN_CONDITION_TYPES = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


# -- pure functions ------------------------------------------------------------------------
def _conditions(obj: Mapping[str, Any]) -> list[Obj]:
    return list((obj.get("status") or {}).get("conditions") or [])


def get_condition(obj: Mapping[str, Any], type_: str) -> Obj | None:
    return next((c for c in _conditions(obj) if c.get("type") == type_), None)


def ready_status(obj: Mapping[str, Any]) -> str | None:
    cond = get_condition(obj, "Ready")
    return None if cond is None else str(cond.get("status", "Unknown"))


@dataclass(frozen=True)
class NodeHealth:
    heartbeat: datetime  # newest sign of life (or when watching began, if later)
    grace: float  # the grace period that applies
    remaining: float  # seconds until the heartbeat is too old; <= 0 once it is

    @property
    def expired(self) -> bool:
        return self.remaining <= 0


def node_health(
    node: Mapping[str, Any],
    lease: Mapping[str, Any] | None,
    now: datetime,
    grace: float,
    startup_grace: float | None = None,
    since: datetime | None = None,
) -> NodeHealth:
    """How long ago the node's kubelet was last heard from, against its grace period.

    `since` (when this controller began watching the node) bounds the heartbeat from below,
    so that a restarted controller gives every node a full grace period, as upstream does.
    """
    signals = [parse_time(((lease or {}).get("spec") or {}).get("renewTime"))]
    ready = get_condition(node, "Ready")
    if ready is not None:
        signals.append(parse_time(ready.get("lastHeartbeatTime")))
    else:
        grace = startup_grace if startup_grace is not None else grace
    signals.append(parse_time((node.get("metadata") or {}).get("creationTimestamp")))
    signals.append(since)
    known = [s for s in signals if s is not None]
    heartbeat = max(known) if known else now
    return NodeHealth(
        heartbeat, grace, (heartbeat + timedelta(seconds=grace) - now).total_seconds()
    )


def unknown_conditions(node: Mapping[str, Any], now: datetime) -> list[Obj] | None:
    """The conditions to write for a node whose kubelet stopped posting, or None if the Ready
    condition is already Unknown (upstream only writes when Ready changes)."""
    stamp = format_time(now)
    created = (node.get("metadata") or {}).get("creationTimestamp")
    out: list[Obj] = []
    for type_ in UNKNOWN_CONDITION_TYPES:
        cond = get_condition(node, type_)
        if cond is None:
            out.append(
                {
                    "type": type_,
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": created,
                    "lastTransitionTime": stamp,
                }
            )
        elif cond.get("status") != "Unknown":
            out.append(
                {
                    **cond,
                    "status": "Unknown",
                    "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastTransitionTime": stamp,
                }
            )
    ready = get_condition(node, "Ready")
    if ready is not None and ready.get("status") == "Unknown":
        return None
    return out


def _taint_id(t: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(t.get("key", "")), str(t.get("effect", "")), str(t.get("value") or ""))


def desired_taints(node: Mapping[str, Any], now: datetime) -> list[Obj]:
    """The node's taints with the controller's own ones brought in line with its conditions.

    Taints that stay keep their timeAdded; NoExecute ones added now get one.
    """
    wanted: list[tuple[str, str]] = []
    for cond in _conditions(node):
        key = CONDITION_TAINTS.get(str(cond.get("type")), {}).get(str(cond.get("status")))
        if key:
            wanted.append((key, "NoSchedule"))
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append((TAINT_UNSCHEDULABLE, "NoSchedule"))
    ready = ready_status(node)
    if ready == "False":
        wanted.append((TAINT_NOT_READY, "NoExecute"))
    elif ready == "Unknown":
        wanted.append((TAINT_UNREACHABLE, "NoExecute"))

    existing = [dict(t) for t in (node.get("spec") or {}).get("taints") or []]

    def managed(t: Mapping[str, Any]) -> bool:
        key, effect = t.get("key"), t.get("effect")
        return (effect == "NoSchedule" and key in MANAGED_NO_SCHEDULE) or (
            effect == "NoExecute" and key in MANAGED_NO_EXECUTE
        )

    out = [t for t in existing if not managed(t) or (t.get("key"), t.get("effect")) in wanted]
    have = {(t.get("key"), t.get("effect")) for t in out}
    for key, effect in wanted:
        if (key, effect) in have:
            continue
        taint: Obj = {"key": key, "effect": effect}
        if effect == "NoExecute":
            taint["timeAdded"] = format_time(now)
        out.append(taint)
        have.add((key, effect))
    return out


def taints_differ(node: Mapping[str, Any], taints: list[Obj]) -> bool:
    current = (node.get("spec") or {}).get("taints") or []
    return sorted(map(_taint_id, current)) != sorted(map(_taint_id, taints))


def pod_not_ready_patch(pod: Mapping[str, Any], now: datetime) -> Obj | None:
    """Status patch turning a Ready=True pod's Ready condition False (nothing else)."""
    cond = get_condition(pod, "Ready")
    if cond is None or cond.get("status") == "False":
        return None
    return {
        "metadata": {"resourceVersion": (pod.get("metadata") or {}).get("resourceVersion", "")},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": format_time(now)}
            ]
        },
    }


def grace_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        log.warning("ignoring bad %s=%r", name, raw)
        return default
    return value if value > 0 else default


def _node_ref(node: Mapping[str, Any]) -> Obj:
    meta = node.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": meta.get("name", ""), "uid": meta.get("uid", "")},
    }


def _pod_ref(pod: Mapping[str, Any]) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": dict(pod.get("metadata") or {})}


# -- the controller ------------------------------------------------------------------------
class NodeLifecycleController(Controller):
    """Queue keys: a node name, or "ns/name" of a pod just bound to a node."""

    name = "nodelifecycle"
    workers = 4

    def __init__(
        self,
        ctx: Context,
        grace_period: float | None = None,
        startup_grace_period: float | None = None,
    ) -> None:
        super().__init__(ctx)
        self.grace = (
            grace_period
            or ctx.settings.get("node_monitor_grace_period")
            or grace_from_env(GRACE_ENV, DEFAULT_GRACE_PERIOD)
        )
        # upstream's defaults keep startup grace at 1.2x the monitor grace (60 s vs 50 s)
        self.startup_grace = startup_grace_period or grace_from_env(
            STARTUP_GRACE_ENV, self.grace * DEFAULT_STARTUP_GRACE_PERIOD / DEFAULT_GRACE_PERIOD
        )
        self.nodes = ctx.factory.informer("Node")
        self.leases = ctx.factory.informer("Lease", LEASE_NAMESPACE)
        self.pods = ctx.factory.informer("Pod")
        self.pods.add_indexer(NODE_NAME_INDEX, _node_name_index)
        self.events = EventRecorder(self.client, "node-controller")
        self._since: dict[str, datetime] = {}  # when each node was first seen
        self._retry_pods: set[str] = set()  # nodes whose pods still need marking
        # resourceVersions this controller wrote over, per node: a cached copy at one of them
        # is stale, and the informer is about to deliver the newer one (and requeue the node)
        self._superseded: dict[str, set[str]] = {}
        self.nodes.add_handler(self.enqueue, lambda _o, n: self.enqueue(n), self._node_deleted)
        self.leases.add_handler(self._lease_changed, lambda _o, n: self._lease_changed(n), None)
        self.pods.add_handler(self._pod_added, self._pod_updated, None)

    # -- handlers ------------------------------------------------------------------------
    def _node_deleted(self, node: Obj) -> None:
        name = object_key(node)
        self._since.pop(name, None)
        self._retry_pods.discard(name)
        self._superseded.pop(name, None)

    def _lease_changed(self, lease: Obj) -> None:
        self.queue.add(str((lease.get("metadata") or {}).get("name", "")))

    def _pod_added(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self.enqueue(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        node = (new.get("spec") or {}).get("nodeName")
        if node and node != (old.get("spec") or {}).get("nodeName"):
            self.enqueue(new)

    # -- sync ----------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        if ns is None:
            await self._sync_node(name)
        else:
            await self._sync_pod(key)

    async def _sync_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        rv = _rv(node)
        if rv in self._superseded.get(name, ()):
            return
        self._superseded.pop(name, None)
        now = datetime.now(UTC)
        if name not in self._since:
            self._since[name] = now
            self.events.event(
                _node_ref(node),
                "Normal",
                "RegisteredNode",
                f"Node {name} event: Registered Node {name} in Controller",
            )
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
        health = node_health(node, lease, now, self.grace, self.startup_grace, self._since[name])
        observed = ready_status(node)
        if health.expired:
            node = await self._mark_unknown(node, now)
        else:
            self.queue.add_after(name, health.remaining + 0.05)
        current = ready_status(node)
        if observed == "True" and current != "True":
            self.events.event(
                _node_ref(node),
                "Normal",
                "NodeNotReady",
                f"Node {name} status is now: NodeNotReady",
            )
            self._retry_pods.add(name)
        if current == "True":
            self._retry_pods.discard(name)
        if name in self._retry_pods:
            # before the taints: endpoints should stop using these pods as soon as possible
            await self._mark_pods_not_ready(name, now)
            self._retry_pods.discard(name)
        await self._reconcile_taints(node, now)

    async def _mark_unknown(self, node: Obj, now: datetime) -> Obj:
        conditions = unknown_conditions(node, now)
        if not conditions:
            return node
        meta = node.get("metadata") or {}
        log.info(
            "kubelet stopped posting node status",
            extra={"kv": {"node": meta.get("name"), "ready": ready_status(node)}},
        )
        patch = {
            "metadata": {"resourceVersion": meta.get("resourceVersion", "")},
            "status": {"conditions": conditions},
        }
        updated = await self.client.patch(
            "Node", None, meta.get("name", ""), patch, patch_type="strategic", subresource="status"
        )
        self._superseded.setdefault(meta.get("name", ""), set()).add(_rv(node))
        return updated

    async def _reconcile_taints(self, node: Obj, now: datetime) -> None:
        taints = desired_taints(node, now)
        if not taints_differ(node, taints):
            return
        meta = node.get("metadata") or {}
        patch = {
            "metadata": {"resourceVersion": meta.get("resourceVersion", "")},
            "spec": {"taints": taints or None},
        }
        await self.client.patch("Node", None, meta.get("name", ""), patch, patch_type="merge")
        self._superseded.setdefault(meta.get("name", ""), set()).add(_rv(node))

    async def _mark_pods_not_ready(self, node_name: str, now: datetime) -> None:
        failed = 0
        for pod in self.pods.by_index(NODE_NAME_INDEX, node_name):
            try:
                await self._mark_pod_not_ready(pod, now)
            except ApiException as e:
                failed += 1
                log.info(
                    "could not mark pod not ready",
                    extra={"kv": {"pod": object_key(pod), "error": str(e)}},
                )
        if failed:
            raise RuntimeError(f"{failed} pod(s) on node {node_name} not marked NotReady yet")

    async def _mark_pod_not_ready(self, pod: Obj, now: datetime) -> None:
        patch = pod_not_ready_patch(pod, now)
        if patch is None:
            return
        meta = pod.get("metadata") or {}
        try:
            await self.client.patch(
                "Pod",
                meta.get("namespace"),
                meta.get("name", ""),
                patch,
                patch_type="strategic",
                subresource="status",
            )
        except ApiException as e:
            if e.status == 404:
                return
            raise
        self.events.event(_pod_ref(pod), "Warning", "NodeNotReady", "Node is not ready")

    async def _sync_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        node = self.nodes.get(str((pod.get("spec") or {}).get("nodeName") or ""))
        if node is None or ready_status(node) in (None, "True"):
            return
        await self._mark_pod_not_ready(pod, datetime.now(UTC))

    async def stop(self) -> None:
        await super().stop()
        await self.events.close()


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _node_name_index(pod: Obj) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [str(node)] if node else []
