"""The ReplicaSet controller (upstream pkg/controller/replicaset).

Keeps spec.replicas active pods that match the selector and are controlled by the ReplicaSet:
adopts matching orphans, releases owned pods that stopped matching, creates pods from the
template in slow-start batches and deletes the least valuable pods first. Expectations stop a
lagging pod informer from causing double creates/deletes. Status is written only on change.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubesvc.api import objmeta
from kubesvc.api.objmeta import object_key
from kubesvc.api.selectors import MATCH_NOTHING, labels_match, selector_from_match_labels
from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.client.shape import Invalid
from kubesvc.controllers import podutil
from kubesvc.controllers.base import Context, Controller

log = logging.getLogger("kubesvc.controllers.replicaset")

API_VERSION = "apps/v1"
KIND = "ReplicaSet"
BURST_REPLICAS = 500  # upstream's --concurrent-... burstReplicas: creates/deletes per sync
EXPECTATIONS_TTL = 300.0  # upstream ExpectationsTimeout (5 minutes)
SLOW_START_INITIAL_BATCH = 1

_OWNER_INDEX = "replicaset:controller"


# -- pure helpers ---------------------------------------------------------------------------
def selector_matches(selector: Obj | None, labels: dict[str, str] | None) -> bool:
    """metav1.LabelSelector matching; an empty or missing selector matches nothing here,
    since apps/v1 validation forbids it and adopting every pod would be harmful."""
    reqs = selector_from_match_labels(selector)
    if not reqs:
        return False
    return labels_match(reqs, labels or {})


@dataclass
class Claim:
    owned: list[Obj] = field(default_factory=list)  # ours and matching (after adoption)
    adopt: list[Obj] = field(default_factory=list)  # orphans to take over
    release: list[Obj] = field(default_factory=list)  # ours but no longer matching


def claim_pods(owner: Obj, pods: list[Obj], selector: Obj | None) -> Claim:
    """Upstream's PodControllerRefManager.ClaimPods, as a plan (no writes)."""
    m = objmeta.meta(owner)
    uid, ns = m.get("uid"), m.get("namespace")
    owner_deleting = bool(m.get("deletionTimestamp"))
    out = Claim()
    for pod in pods:
        pm = objmeta.meta(pod)
        if pm.get("namespace") != ns:
            continue
        matches = selector_matches(selector, pm.get("labels"))
        ref = podutil.controller_ref(pod)
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches:
                out.owned.append(pod)
            elif not pm.get("deletionTimestamp"):
                out.release.append(pod)
            continue
        if owner_deleting or not matches or pm.get("deletionTimestamp"):
            continue
        out.adopt.append(pod)
    return out


def new_pod(rs: Obj, api_version: str = API_VERSION, kind: str = KIND) -> Obj:
    """A pod from the ReplicaSet's template (upstream GetPodFromTemplate)."""
    m = objmeta.meta(rs)
    template = (rs.get("spec") or {}).get("template") or {}
    tm = template.get("metadata") or {}
    pod_meta: Obj = {
        "generateName": f"{m.get('name', '')}-",
        "namespace": m.get("namespace"),
        "labels": dict(tm.get("labels") or {}),
        "ownerReferences": [podutil.make_controller_ref(rs, api_version, kind)],
    }
    if tm.get("annotations"):
        pod_meta["annotations"] = dict(tm["annotations"])
    if tm.get("finalizers"):
        pod_meta["finalizers"] = list(tm["finalizers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def spec_problem(rs: Obj, kind: str = KIND) -> str | None:
    """Why a ReplicaSet cannot be run at all (the API requires what is checked here, but a
    stored object can lack it): without a selector it would own nothing and create pods
    forever; without a template it has nothing to create."""
    spec = rs.get("spec") or {}
    reqs = selector_from_match_labels(spec.get("selector"))
    if not reqs or reqs is MATCH_NOTHING:
        return f"spec.selector: a {kind} needs a non-empty, readable selector"
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        return f"spec.template.spec.containers: a {kind} needs a pod template"
    if replicas_of(rs) < 0:
        return "spec.replicas: must be zero or more"
    return None


def replicas_of(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def slow_start_batches(count: int, initial: int = SLOW_START_INITIAL_BATCH) -> list[int]:
    """Batch sizes 1, 2, 4, ... summing to count: a failing template costs one call, not N."""
    sizes: list[int] = []
    size, remaining = initial, count
    while remaining > 0:
        batch = min(size, remaining)
        sizes.append(batch)
        remaining -= batch
        size *= 2
    return sizes


def _conditions_without(conditions: list[Obj], type_: str) -> list[Obj]:
    return [c for c in conditions if c.get("type") != type_]


def replica_set_status(
    rs: Obj, pods: list[Obj], now: datetime, manage_error: str | None = None
) -> Obj:
    """Upstream calculateStatus + the observedGeneration that updateReplicaSetStatus sets.

    `pods` are the active pods the ReplicaSet controls."""
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    status = copy.deepcopy(rs.get("status") or {})
    fully_labeled = ready = available = 0
    for pod in pods:
        labels = objmeta.meta(pod).get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully_labeled += 1
        if podutil.is_ready(pod):
            ready += 1
            if podutil.is_available(pod, min_ready, now):
                available += 1
    conditions = list(status.get("conditions") or [])
    failure = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
    if manage_error is not None and failure is None:
        diff = len(pods) - replicas_of(rs)
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        conditions.append(
            {
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": objmeta.format_time(now),
                "reason": reason,
                "message": manage_error,
            }
        )
    elif manage_error is None and failure is not None:
        conditions = _conditions_without(conditions, "ReplicaFailure")
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)
    status["replicas"] = len(pods)
    status["fullyLabeledReplicas"] = fully_labeled
    status["readyReplicas"] = ready
    status["availableReplicas"] = available
    generation = objmeta.meta(rs).get("generation")
    if generation is not None:
        status["observedGeneration"] = int(generation)
    return status


def status_changed(old: Obj, new: Obj) -> bool:
    """Zero-valued counters are omitted on the wire, so compare with zeros filled in."""

    def norm(s: Obj) -> Obj:
        return {k: v for k, v in s.items() if v not in (0, None, [], {})}

    return norm(old) != norm(new)


def requeue_for_availability(rs: Obj, pods: list[Obj], now: datetime) -> float | None:
    """When ready pods still wait out minReadySeconds, how long until the next one counts."""
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    waits = [
        w
        for p in pods
        if (w := podutil.seconds_until_available(p, min_ready, now)) is not None and w > 0
    ]
    return min(waits) + 0.5 if waits else None


# -- expectations ---------------------------------------------------------------------------
@dataclass
class _Expectation:
    add: int
    deletes: set[str]
    stamp: float


class Expectations:
    """Upstream's UIDTrackingControllerExpectations: after asking for N creates (or deletes of
    given pods) a controller waits until its informer has seen them, or the TTL expires."""

    def __init__(self, ttl: float = EXPECTATIONS_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._data: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        exp = self._data.get(key)
        if exp is None:
            return True
        if exp.add <= 0 and not exp.deletes:
            return True
        return self.clock() - exp.stamp > self.ttl

    def expect_creations(self, key: str, n: int) -> None:
        self._data[key] = _Expectation(n, set(), self.clock())

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        self._data[key] = _Expectation(0, set(pod_keys), self.clock())

    def creation_observed(self, key: str) -> None:
        exp = self._data.get(key)
        if exp is not None:
            exp.add -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        exp = self._data.get(key)
        if exp is not None:
            exp.deletes.discard(pod_key)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def pending(self, key: str) -> tuple[int, int]:
        exp = self._data.get(key)
        return (0, 0) if exp is None else (exp.add, len(exp.deletes))


# -- controller -----------------------------------------------------------------------------
def _owner_index(pod: Obj) -> list[str]:
    ref = podutil.controller_ref(pod)
    if ref is not None:
        return [str(ref.get("uid", ""))]
    return ["orphan/" + str(objmeta.meta(pod).get("namespace", ""))]


def component_recorder(ctx: Context, component: str, controller: str) -> Any:
    """Events name their source as upstream does ("replicaset-controller", ...), written
    with `controller`'s client."""
    return ctx.recorder_for(controller, component)


async def close_recorder(ctx: Context, recorder: Any) -> None:
    if recorder is not ctx.recorder and isinstance(recorder, EventRecorder):
        await recorder.close()


def _namespace_terminating(e: ApiException) -> bool:
    return e.status == 403 and "being terminated" in str(e.message)


class ReplicaSetController(Controller):
    name = "replicaset"
    requeue_conflicts = True
    workers = 4
    # what it controls (the ReplicationController controller runs the same loop)
    kind = KIND
    api_version = API_VERSION
    component = "replicaset-controller"
    owner_index = _OWNER_INDEX

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.recorder = component_recorder(ctx, self.component, self.name)
        self.expectations = Expectations()
        self.rs_informer = ctx.factory.informer(self.kind)
        self.pod_informer = ctx.factory.informer("Pod")
        self.pod_informer.add_indexer(self.owner_index, _owner_index)
        self.rs_informer.add_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pod_informer.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    async def stop(self) -> None:
        await super().stop()
        await close_recorder(self.ctx, self.recorder)

    # -- event handlers (only enqueue and account expectations) ------------------------------
    def _rs_added(self, rs: Obj) -> None:
        self.enqueue(rs)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _rs_deleted(self, rs: Obj) -> None:
        key = object_key(rs)
        self.expectations.delete(key)
        self.queue.add(key)

    def _resolve(self, pod: Obj, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != self.kind:
            return None
        rs = self.rs_informer.get(f"{objmeta.meta(pod).get('namespace')}/{ref.get('name')}")
        if rs is None or objmeta.meta(rs).get("uid") != ref.get("uid"):
            return None
        return rs

    def _matching_rss(self, pod: Obj) -> list[Obj]:
        pm = objmeta.meta(pod)
        return [
            rs
            for rs in self.rs_informer.list()
            if objmeta.meta(rs).get("namespace") == pm.get("namespace")
            and selector_matches(
                (self._view(rs).get("spec") or {}).get("selector"), pm.get("labels")
            )
        ]

    def _view(self, obj: Obj) -> Obj:
        """The object as a ReplicaSet (a ReplicationController's map selector differs)."""
        return obj

    def _unview(self, view: Obj) -> Obj:
        """The object to write back, from its view."""
        return dict(view)

    def _pod_added(self, pod: Obj) -> None:
        if objmeta.meta(pod).get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        ref = podutil.controller_ref(pod)
        if ref is not None:
            rs = self._resolve(pod, ref)
            if rs is not None:
                key = object_key(rs)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for rs in self._matching_rss(pod):
            self.enqueue(rs)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        om, nm = objmeta.meta(old), objmeta.meta(new)
        if om.get("resourceVersion") == nm.get("resourceVersion"):
            return  # periodic resync: the ReplicaSet resync covers it
        labels_changed = om.get("labels") != nm.get("labels")
        if nm.get("deletionTimestamp"):
            # a graceful delete: the pod stops counting now, not when it finally goes away
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, new_ref = podutil.controller_ref(old), podutil.controller_ref(new)
        if old_ref != new_ref and old_ref is not None:
            rs = self._resolve(old, old_ref)
            if rs is not None:
                self.enqueue(rs)
        if new_ref is not None:
            rs = self._resolve(new, new_ref)
            if rs is not None:
                self.enqueue(rs)
                min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
                if min_ready > 0 and not podutil.is_ready(old) and podutil.is_ready(new):
                    self.queue.add_after(object_key(rs), min_ready + 0.5)
            return
        if labels_changed or old_ref != new_ref:
            for rs in self._matching_rss(new):
                self.enqueue(rs)

    def _pod_deleted(self, pod: Obj) -> None:
        rs = self._resolve(pod, podutil.controller_ref(pod))
        if rs is None:
            return
        key = object_key(rs)
        self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    # -- reconcile ---------------------------------------------------------------------------
    def _candidate_pods(self, rs: Obj) -> list[Obj]:
        m = objmeta.meta(rs)
        owned = self.pod_informer.by_index(self.owner_index, str(m.get("uid", "")))
        orphans = self.pod_informer.by_index(self.owner_index, f"orphan/{m.get('namespace', '')}")
        return owned + orphans

    async def sync(self, key: str) -> None:
        cached = self.rs_informer.get(key)
        if cached is None:
            self.expectations.delete(key)
            return
        rs = self._view(copy.deepcopy(cached))
        needs_sync = self.expectations.satisfied(key)
        selector = (rs.get("spec") or {}).get("selector")
        unusable = spec_problem(rs, self.kind)
        if unusable:
            self.expectations.delete(key)
            raise Invalid(unusable)
        active = [p for p in self._candidate_pods(rs) if podutil.is_active(p)]
        pods = await self._claim(rs, active, selector)
        manage_error: str | None = None
        if needs_sync and not objmeta.meta(rs).get("deletionTimestamp"):
            try:
                await self._manage_replicas(key, rs, pods)
            except ApiException as e:
                manage_error = str(e.message) or str(e)
        now = objmeta.now_utc()
        await self._write_status(rs, replica_set_status(rs, pods, now, manage_error))
        if manage_error is not None:
            raise RuntimeError(manage_error)
        wait = requeue_for_availability(rs, pods, now)
        if wait is not None:
            self.queue.add_after(key, wait)

    async def _claim(self, rs: Obj, pods: list[Obj], selector: Obj | None) -> list[Obj]:
        plan = claim_pods(rs, pods, selector)
        owned = list(plan.owned)
        ref = podutil.make_controller_ref(rs, self.api_version, self.kind)
        for pod in plan.adopt:
            refs = [*(objmeta.meta(pod).get("ownerReferences") or []), ref]
            patched = await self._patch_owner_refs(pod, refs)
            if patched is not None:
                owned.append(patched)
        uid = objmeta.meta(rs).get("uid")
        for pod in plan.release:
            refs = [
                r for r in objmeta.meta(pod).get("ownerReferences") or [] if r.get("uid") != uid
            ]
            await self._patch_owner_refs(pod, refs)
        return owned

    async def _patch_owner_refs(self, pod: Obj, refs: list[Obj]) -> Obj | None:
        """Set ownerReferences guarded by resourceVersion; a lost race is retried on the next
        sync (the update event requeues us), a vanished pod is simply skipped."""
        pm = objmeta.meta(pod)
        body = {
            "metadata": {
                "ownerReferences": refs or None,
                "resourceVersion": pm.get("resourceVersion"),
            }
        }
        try:
            return await self.client.patch("Pod", pm.get("namespace"), pm.get("name"), body)
        except ApiException as e:
            if e.status in (404, 409, 422):
                return None
            raise

    async def _manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> None:
        diff = len(pods) - replicas_of(rs)
        if diff < 0:
            await self._create_pods(key, rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            await self._delete_pods(key, rs, pods, min(diff, BURST_REPLICAS))

    async def _create_pods(self, key: str, rs: Obj, count: int) -> None:
        self.expectations.expect_creations(key, count)
        created = 0
        error: ApiException | None = None
        for size in slow_start_batches(count):
            results = await asyncio.gather(
                *(self._create_one(rs) for _ in range(size)), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            created += size - len(failures)
            if failures:
                first = failures[0]
                if not isinstance(first, ApiException):
                    raise first
                error = first
                break
        for _ in range(count - created):
            self.expectations.creation_observed(key)  # will never be seen by the informer
        if error is not None and not _namespace_terminating(error):
            raise error

    async def _create_one(self, rs: Obj) -> None:
        ns = objmeta.meta(rs).get("namespace")
        try:
            pod = await self.client.create("Pod", ns, new_pod(rs, self.api_version, self.kind))
        except ApiException as e:
            if not _namespace_terminating(e):
                self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        self.recorder.event(
            rs, "Normal", "SuccessfulCreate", f"Created pod: {objmeta.meta(pod).get('name')}"
        )

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """Pods of every ReplicaSet sharing this one's controller (a Deployment's history)."""
        owner = podutil.controller_ref(rs)
        if owner is None:
            return self.pod_informer.by_index(self.owner_index, str(objmeta.meta(rs).get("uid")))
        ns = objmeta.meta(rs).get("namespace")
        out: list[Obj] = []
        for other in self.rs_informer.list():
            ref = podutil.controller_ref(other)
            if (
                objmeta.meta(other).get("namespace") == ns
                and ref
                and ref.get("uid") == owner.get("uid")
            ):
                out += self.pod_informer.by_index(
                    self.owner_index, str(objmeta.meta(other).get("uid"))
                )
        return out

    async def _delete_pods(self, key: str, rs: Obj, pods: list[Obj], count: int) -> None:
        victims = podutil.pods_to_delete(pods, count, self._related_pods(rs), objmeta.now_utc())
        self.expectations.expect_deletions(key, [object_key(p) for p in victims])
        results = await asyncio.gather(
            *(self._delete_one(key, rs, p) for p in victims), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _delete_one(self, key: str, rs: Obj, pod: Obj) -> None:
        pm = objmeta.meta(pod)
        try:
            await self.client.delete("Pod", pm.get("namespace"), pm.get("name"))
        except ApiException as e:
            self.expectations.deletion_observed(key, object_key(pod))
            if e.status == 404:
                return
            self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {e.message}")
            raise
        self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pm.get('name')}")

    async def _write_status(self, rs: Obj, status: Obj) -> None:
        if not status_changed(rs.get("status") or {}, status):
            return
        body = self._unview(rs)
        body["status"] = status
        try:
            await self.client.update(self.kind, body, subresource="status")
        except ApiException as e:
            if e.status == 404:
                return
            raise  # 409: the newer object is already on its way to us; retry from it
