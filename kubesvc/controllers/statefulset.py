"""The StatefulSet controller (upstream pkg/controller/statefulset).

Pods `<set>-0 .. <set>-(N-1)` (from spec.ordinals.start), each with a stable name, the
hostname of its name and the subdomain of spec.serviceName (so a headless Service of that
name publishes `<pod>.<service>.<ns>.svc.cluster.local`), and the labels
`statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
`controller-revision-hash`. OrderedReady creates one pod at a time, each only once the
previous ones are Running and Ready, and removes pods from the highest ordinal down, one at a
time; Parallel does both at once. RollingUpdate replaces pods whose revision is not the
template's from the highest ordinal down to the partition, one at a time, each once the
others are Ready. volumeClaimTemplates become PersistentVolumeClaims `<template>-<pod>` as
upstream creates them; no storage is provisioned, so the pod mounts an emptyDir under the
template's name. `plan_stateful_set` is the pure part.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import re
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

log = logging.getLogger("kubesvc.controllers.statefulset")

API_VERSION = "apps/v1"
KIND = "StatefulSet"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
MAX_REPLICAS_PER_SYNC = 500


# -- pure ------------------------------------------------------------------------------------
def revision_of(sts: Obj) -> str:
    template = (sts.get("spec") or {}).get("template") or {}
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return f"{objmeta.meta(sts).get('name', '')}-{int(digest[:12], 16) % 10**10}"


def ordinal_of(sts_name: str, pod: Obj) -> int | None:
    name = str(objmeta.meta(pod).get("name") or "")
    match = re.fullmatch(re.escape(sts_name) + r"-(0|[1-9][0-9]{0,8})", name)
    return int(match.group(1)) if match else None


def _spec_int(spec: Obj, key: str, default: int) -> int:
    value = spec.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def claim_name(template: Obj, pod_name: str) -> str:
    return f"{(template.get('metadata') or {}).get('name', '')}-{pod_name}"


def new_claims(sts: Obj, pod_name: str) -> list[Obj]:
    """The PersistentVolumeClaims a pod of the set has (upstream getPersistentVolumeClaims)."""
    m = objmeta.meta(sts)
    spec = sts.get("spec") or {}
    selector_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    out = []
    for template in spec.get("volumeClaimTemplates") or []:
        if not isinstance(template, dict):
            continue
        tm = template.get("metadata") or {}
        claim_meta: Obj = {
            "name": claim_name(template, pod_name),
            "namespace": m.get("namespace"),
            "labels": {**(tm.get("labels") or {}), **selector_labels},
        }
        if tm.get("annotations"):
            claim_meta["annotations"] = dict(tm["annotations"])
        out.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": claim_meta,
                "spec": copy.deepcopy(template.get("spec") or {}),
            }
        )
    return out


def new_stateful_pod(sts: Obj, ordinal: int, revision: str) -> Obj:
    m = objmeta.meta(sts)
    spec = sts.get("spec") or {}
    template = spec.get("template") or {}
    tm = template.get("metadata") or {}
    name = f"{m.get('name', '')}-{ordinal}"
    labels = dict(tm.get("labels") or {})
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[REVISION_LABEL] = revision
    pod_spec = copy.deepcopy(template.get("spec") or {})
    pod_spec["hostname"] = name
    if spec.get("serviceName"):
        pod_spec["subdomain"] = spec["serviceName"]
    volumes = [v for v in pod_spec.get("volumes") or [] if isinstance(v, dict)]
    have = {v.get("name") for v in volumes if isinstance(v.get("name"), str)}
    for claim in spec.get("volumeClaimTemplates") or []:
        cname = (
            ((claim or {}).get("metadata") or {}).get("name") if isinstance(claim, dict) else None
        )
        if isinstance(cname, str) and cname and cname not in have:
            # the claim is created, but nothing provisions storage: a pod-local directory
            volumes.append({"name": cname, "emptyDir": {}})
    if volumes:
        pod_spec["volumes"] = volumes
    pod_meta: Obj = {
        "name": name,
        "namespace": m.get("namespace"),
        "labels": labels,
        "ownerReferences": [podutil.make_controller_ref(sts, API_VERSION, KIND)],
    }
    if tm.get("annotations"):
        pod_meta["annotations"] = dict(tm["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}


@dataclass
class StatefulPlan:
    create: list[int] = field(default_factory=list)  # ordinals
    delete: list[Obj] = field(default_factory=list)
    status: Obj = field(default_factory=dict)
    requeue_after: float | None = None


def _healthy(pod: Obj, min_ready: int, now: datetime) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and podutil.is_available(
        pod, min_ready, now
    )


def plan_stateful_set(sts: Obj, pods: list[Obj], now: datetime) -> StatefulPlan:
    """Pods to create and delete next, and the status. `pods` are the pods it controls."""
    m = objmeta.meta(sts)
    spec = sts.get("spec") or {}
    name = str(m.get("name") or "")
    replicas = max(0, _spec_int(spec, "replicas", 1))
    start = max(0, _spec_int(spec.get("ordinals") or {}, "start", 0))
    min_ready = max(0, _spec_int(spec, "minReadySeconds", 0))
    ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    update = revision_of(sts)
    wanted = range(start, start + replicas)
    by_ordinal: dict[int, Obj] = {}
    condemned: list[tuple[int, Obj]] = []
    for pod in pods:
        ordinal = ordinal_of(name, pod)
        if ordinal is None:
            continue
        if ordinal in wanted:
            by_ordinal[ordinal] = pod
        else:
            condemned.append((ordinal, pod))
    condemned.sort(key=lambda x: -x[0])
    plan = StatefulPlan()
    blocked = False
    for ordinal in wanted:
        pod = by_ordinal.get(ordinal)
        if pod is None:
            plan.create.append(ordinal)
            blocked = True  # nothing is replaced while the set is incomplete
            if ordered or len(plan.create) >= MAX_REPLICAS_PER_SYNC:
                break
            continue
        terminating = bool(objmeta.meta(pod).get("deletionTimestamp"))
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Failed", "Succeeded") and not terminating:
            plan.delete.append(pod)  # recreated once it is gone
            blocked = True
            if ordered:
                break
            continue
        if terminating or not _healthy(pod, min_ready, now):
            wait = podutil.seconds_until_available(pod, min_ready, now)
            if wait is not None and wait > 0:
                plan.requeue_after = wait + 0.5
            blocked = True
            if ordered:
                break
    if not (ordered and blocked):
        gone = [p for _, p in condemned if not objmeta.meta(p).get("deletionTimestamp")]
        if ordered:
            if gone and len(gone) == len(condemned):
                plan.delete.append(gone[0])  # the highest ordinal, once nothing else is going
        else:
            plan.delete.extend(gone)
    strategy = spec.get("updateStrategy") or {}
    if not blocked and not condemned and strategy.get("type", "RollingUpdate") == "RollingUpdate":
        partition = max(0, _spec_int(strategy.get("rollingUpdate") or {}, "partition", 0))
        for ordinal in sorted(by_ordinal, reverse=True):
            if ordinal < partition:
                break
            pod = by_ordinal[ordinal]
            if (objmeta.meta(pod).get("labels") or {}).get(REVISION_LABEL) != update:
                plan.delete.append(pod)
                break
    plan.status = _status(sts, pods, update, replicas, min_ready, now)
    return plan


def _status(
    sts: Obj, pods: list[Obj], update: str, replicas: int, min_ready: int, now: datetime
) -> Obj:
    status = copy.deepcopy(sts.get("status") or {})
    live = [p for p in pods if not objmeta.meta(p).get("deletionTimestamp")]
    current = str(status.get("currentRevision") or update)

    def revision(p: Obj) -> Any:
        return (objmeta.meta(p).get("labels") or {}).get(REVISION_LABEL)

    ready = sum(1 for p in live if podutil.is_ready(p))
    updated = sum(1 for p in live if revision(p) == update)
    if updated == replicas and ready == replicas and len(live) == replicas:
        current = update  # the rollout is done
    status.update(
        replicas=len(live),
        readyReplicas=ready,
        currentReplicas=sum(1 for p in live if revision(p) == current),
        updatedReplicas=updated,
        availableReplicas=sum(1 for p in live if podutil.is_available(p, min_ready, now)),
        currentRevision=current,
        updateRevision=update,
        collisionCount=int(status.get("collisionCount") or 0),
    )
    generation = objmeta.meta(sts).get("generation")
    if generation is not None:
        status["observedGeneration"] = int(generation)
    for key in ("readyReplicas", "currentReplicas", "updatedReplicas"):
        if status[key] == 0:
            status.pop(key)  # omitempty
    return status


def spec_problem(sts: Obj) -> str | None:
    return template_problem(sts, KIND)


# -- controller ------------------------------------------------------------------------------
class StatefulSetController(PodOwnerController):
    name = "statefulset"
    kind = KIND

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.sets = self.owners

    async def sync(self, key: str) -> None:
        cached = self.sets.get(key)
        if cached is None:
            self.expectations.delete(key)
            return
        sts = copy.deepcopy(cached)
        problem = spec_problem(sts)
        if problem:
            raise Invalid(problem)
        pods = self.owned_pods(sts)
        plan = plan_stateful_set(sts, pods, objmeta.now_utc())
        if not objmeta.meta(sts).get("deletionTimestamp") and self.expectations.satisfied(key):
            revision = revision_of(sts)
            if plan.create:
                self.expectations.expect_creations(key, len(plan.create))
                await asyncio.gather(*(self._create(key, sts, o, revision) for o in plan.create))
            await asyncio.gather(*(self.delete_pod(sts, p) for p in plan.delete))
        await self._write_status(sts, plan.status)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)

    async def _create(self, key: str, sts: Obj, ordinal: int, revision: str) -> None:
        ns = objmeta.meta(sts).get("namespace")
        pod = new_stateful_pod(sts, ordinal, revision)
        pod_name = pod["metadata"]["name"]
        try:
            for claim in new_claims(sts, pod_name):
                try:
                    await self.client.create("PersistentVolumeClaim", ns, claim)
                    self.recorder.event(
                        sts,
                        "Normal",
                        "SuccessfulCreate",
                        f"create Claim {claim['metadata']['name']} Pod {pod_name} in StatefulSet "
                        f"{objmeta.meta(sts).get('name')} success",
                    )
                except ApiException as e:
                    if e.status != 409:
                        raise
            await self.client.create("Pod", ns, pod)
        except ApiException as e:
            self.expectations.creation_observed(key)
            if e.status == 409:
                return  # the old pod of that name is still going away
            self.recorder.event(
                sts, "Warning", "FailedCreate", f"create Pod {pod_name} failed error: {e.message}"
            )
            return
        self.recorder.event(
            sts,
            "Normal",
            "SuccessfulCreate",
            f"create Pod {pod_name} in StatefulSet {objmeta.meta(sts).get('name')} successful",
        )

    async def _write_status(self, sts: Obj, status: Obj) -> None:
        if status == (sts.get("status") or {}):
            return
        body = dict(sts)
        body["status"] = status
        try:
            await self.client.update("StatefulSet", body, subresource="status")
        except ApiException as e:
            if e.status != 404:
                raise
