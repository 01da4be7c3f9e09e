"""The DaemonSet controller (upstream pkg/controller/daemon).

One pod per eligible node: a node is eligible when the pod template's nodeSelector and
required node affinity match it and its NoSchedule/NoExecute taints are tolerated (by the
template's tolerations plus the ones upstream adds to every daemon pod). Pods are created
with a required node affinity on the node's name (matchFields metadata.name), as upstream
does since v1.12, and the scheduler binds them. RollingUpdate replaces pods whose
`controller-revision-hash` is not the template's, at most maxUnavailable unavailable at a
time; OnDelete replaces only pods that are gone. Status: desired/current/ready/updated/
available/unavailable/misscheduled numbers and observedGeneration, so `kubectl rollout
status ds/NAME` works. `plan_daemon_set` is the pure part.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubesvc.api import objmeta
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.client.shape import Invalid
from kubesvc.controllers import podutil
from kubesvc.controllers.base import Context
from kubesvc.controllers.podowner import PodOwnerController, template_problem
from kubesvc.controllers.scheduler import matches_node_affinity, untolerated_taint

log = logging.getLogger("kubesvc.controllers.daemonset")

API_VERSION = "apps/v1"
KIND = "DaemonSet"
HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"

# what every daemon pod tolerates (upstream util.AddOrUpdateDaemonPodTolerations)
DAEMON_TOLERATIONS: list[Obj] = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION: Obj = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": "Exists",
    "effect": "NoSchedule",
}


# -- pure ------------------------------------------------------------------------------------
def template_hash(ds: Obj) -> str:
    """A short stable hash of the pod template (the role of upstream's ControllerRevision)."""
    template = (ds.get("spec") or {}).get("template") or {}
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return str(int(digest[:12], 16) % 10**10)


def daemon_tolerations(spec: Obj) -> list[Obj]:
    tolerations = [t for t in spec.get("tolerations") or [] if isinstance(t, dict)]
    extra = list(DAEMON_TOLERATIONS)
    if spec.get("hostNetwork"):
        extra.append(HOST_NETWORK_TOLERATION)
    for t in extra:
        if not any(
            o.get("key") == t["key"] and o.get("effect") == t["effect"] for o in tolerations
        ):
            tolerations.append(dict(t))
    return tolerations


def should_run(ds: Obj, node: Obj) -> bool:
    """upstream NodeShouldRunDaemonPod: selector/affinity match and taints tolerated."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    pod = {"spec": {**spec, "tolerations": daemon_tolerations(spec)}}
    if not matches_node_affinity(pod, node):
        return False
    taints = (node.get("spec") or {}).get("taints") or []
    return untolerated_taint(pod, taints) is None


def node_of(pod: Obj) -> str:
    """The node a daemon pod is for: its nodeName, or the node its affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            values = req.get("values") or []
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and values:
                return str(values[0])
    return ""


def new_daemon_pod(ds: Obj, node: str, revision: str) -> Obj:
    m = objmeta.meta(ds)
    template = (ds.get("spec") or {}).get("template") or {}
    tm = template.get("metadata") or {}
    labels = dict(tm.get("labels") or {})
    labels[HASH_LABEL] = revision
    labels[GENERATION_LABEL] = str(m.get("generation") or 1)
    spec = copy.deepcopy(template.get("spec") or {})
    spec["tolerations"] = daemon_tolerations(spec)
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    # ReplaceDaemonSetPodNodeNameNodeAffinity: the pod may only go to its node
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
    }
    pod_meta: Obj = {
        "generateName": f"{m.get('name', '')}-",
        "namespace": m.get("namespace"),
        "labels": labels,
        "ownerReferences": [podutil.make_controller_ref(ds, API_VERSION, KIND)],
    }
    if tm.get("annotations"):
        pod_meta["annotations"] = dict(tm["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def scaled(value: Any, total: int, default: int) -> int:
    """GetScaledValueFromIntOrPercent with rounding up."""
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, str) and value.endswith("%"):
        try:
            return max(0, math.ceil(int(value[:-1]) * total / 100))
        except ValueError:
            return default
    return default


@dataclass
class DaemonPlan:
    create_on: list[str] = field(default_factory=list)  # node names
    delete: list[Obj] = field(default_factory=list)
    status: Obj = field(default_factory=dict)
    requeue_after: float | None = None


def plan_daemon_set(ds: Obj, nodes: list[Obj], pods: list[Obj], now: datetime) -> DaemonPlan:
    """Pods to create and delete, and the status, for one DaemonSet. `pods` are the pods it
    controls."""
    spec = ds.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    revision = template_hash(ds)
    by_node: dict[str, list[Obj]] = {}
    plan = DaemonPlan()
    for pod in pods:
        if objmeta.meta(pod).get("deletionTimestamp"):
            continue
        if (pod.get("status") or {}).get("phase") == "Failed":
            plan.delete.append(pod)  # upstream kills failed daemon pods and starts anew
            continue
        by_node.setdefault(node_of(pod), []).append(pod)
    eligible = {str(objmeta.meta(n).get("name")) for n in nodes if should_run(ds, n)}
    desired = current = misscheduled = ready = updated = available = 0
    unavailable_nodes = 0
    old_pods: list[tuple[Obj, bool]] = []  # (pod, available)
    for name in sorted({*eligible, *by_node}):
        on_node = sorted(
            by_node.get(name, []), key=lambda p: str(objmeta.meta(p).get("creationTimestamp"))
        )
        if name not in eligible:
            if on_node:
                misscheduled += 1
                plan.delete.extend(on_node)
            continue
        desired += 1
        if not on_node:
            plan.create_on.append(name)
            unavailable_nodes += 1
            continue
        current += 1
        plan.delete.extend(on_node[1:])  # one daemon pod per node
        pod = on_node[0]
        is_updated = (objmeta.meta(pod).get("labels") or {}).get(HASH_LABEL) == revision
        is_available = podutil.is_available(pod, min_ready, now)
        ready += podutil.is_ready(pod)
        updated += is_updated
        available += is_available
        if not is_available:
            unavailable_nodes += 1
            wait = podutil.seconds_until_available(pod, min_ready, now)
            if wait is not None and wait > 0:
                plan.requeue_after = min(plan.requeue_after or wait + 0.5, wait + 0.5)
        if not is_updated:
            old_pods.append((pod, is_available))
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and old_pods:
        budget = scaled(
            (strategy.get("rollingUpdate") or {}).get("maxUnavailable"), desired, default=1
        )
        budget = max(budget, 1)
        # old pods that are not available anyway go first, then as many as the budget allows
        for pod, is_available in sorted(old_pods, key=lambda x: x[1]):
            if not is_available:
                plan.delete.append(pod)
            elif unavailable_nodes < budget:
                plan.delete.append(pod)
                unavailable_nodes += 1
    status = copy.deepcopy(ds.get("status") or {})
    status.update(
        desiredNumberScheduled=desired,
        currentNumberScheduled=current,
        numberMisscheduled=misscheduled,
        numberReady=ready,
        updatedNumberScheduled=updated,
        numberAvailable=available,
        numberUnavailable=max(0, desired - available),
    )
    generation = objmeta.meta(ds).get("generation")
    if generation is not None:
        status["observedGeneration"] = int(generation)
    for key in ("updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
        if status[key] == 0:
            status.pop(key)  # omitempty
    plan.status = status
    return plan


def spec_problem(ds: Obj) -> str | None:
    return template_problem(ds, KIND)


# -- controller ------------------------------------------------------------------------------
class DaemonSetController(PodOwnerController):
    name = "daemonset"
    kind = KIND

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.sets = self.owners
        self.nodes = ctx.factory.informer("Node")
        self.nodes.add_handler(self._all, lambda o, n: self._node_changed(o, n), self._all)

    def _all(self, _node: Obj) -> None:
        for ds in self.sets.list():
            self.enqueue(ds)

    def _node_changed(self, old: Obj, new: Obj) -> None:
        def relevant(n: Obj) -> Any:
            return (objmeta.meta(n).get("labels"), (n.get("spec") or {}).get("taints"))

        if relevant(old) != relevant(new):
            self._all(new)

    async def sync(self, key: str) -> None:
        cached = self.sets.get(key)
        if cached is None:
            self.expectations.delete(key)
            return
        ds = copy.deepcopy(cached)
        problem = spec_problem(ds)
        if problem:
            raise Invalid(problem)
        pods = self.owned_pods(ds)
        plan = plan_daemon_set(ds, self.nodes.list(), pods, objmeta.now_utc())
        if not objmeta.meta(ds).get("deletionTimestamp") and self.expectations.satisfied(key):
            revision = template_hash(ds)
            if plan.create_on:
                self.expectations.expect_creations(key, len(plan.create_on))
                await asyncio.gather(
                    *(self._create(key, ds, node, revision) for node in plan.create_on)
                )
            await asyncio.gather(*(self.delete_pod(ds, p) for p in plan.delete))
        await self._write_status(ds, plan.status)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)

    async def _create(self, key: str, ds: Obj, node: str, revision: str) -> None:
        ns = objmeta.meta(ds).get("namespace")
        try:
            pod = await self.client.create("Pod", ns, new_daemon_pod(ds, node, revision))
        except ApiException as e:
            self.expectations.creation_observed(key)
            self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {e.message}")
            return
        self.recorder.event(
            ds, "Normal", "SuccessfulCreate", f"Created pod: {objmeta.meta(pod).get('name')}"
        )

    async def _write_status(self, ds: Obj, status: Obj) -> None:
        if status == (ds.get("status") or {}):
            return
        body = dict(ds)
        body["status"] = status
        try:
            await self.client.update("DaemonSet", body, subresource="status")
        except ApiException as e:
            if e.status != 404:
                raise
