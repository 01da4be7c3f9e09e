"""The Job controller (upstream pkg/controller/job) and the TTL-after-finished rule.

Runs `parallelism` pods at a time until `completions` have succeeded (without completions,
until one has succeeded and the others are gone), counts failed pods (and, for
restartPolicy OnFailure, container restarts) against `backoffLimit`, fails the Job after
`activeDeadlineSeconds`, and writes upstream's status: active/ready/succeeded/failed,
startTime, completionTime and the SuccessCriteriaMet+Complete or FailureTarget+Failed
conditions. A finished Job with ttlSecondsAfterFinished is deleted that long after it
finished (foreground, as the ttl-after-finished controller does). `plan_job` is the pure
part: what the Job should look like and which pods to create or delete.

In Indexed completion mode each pod runs one index from 0 to completions-1 (annotation
and label `batch.kubernetes.io/job-completion-index`, env JOB_COMPLETION_INDEX, hostname
`JOB-INDEX`), a failed index is run again, and the Job is complete once every index has
succeeded; status.completedIndexes lists them as intervals ("0-2,4").
"""

from __future__ import annotations

import asyncio
import copy
import logging
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
from kubesvc.controllers.replicaset import new_pod

log = logging.getLogger("kubesvc.controllers.job")

API_VERSION = "batch/v1"
KIND = "Job"
MAX_CREATES_PER_SYNC = 500
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
MAX_INDEXED = 100_000  # the API refuses an Indexed Job with more (api/validation/batch.py)


# -- pure ------------------------------------------------------------------------------------
@dataclass
class JobPlan:
    status: Obj
    create: int = 0
    indexes: list[int] = field(default_factory=list)  # Indexed mode: what the creates run
    delete: list[Obj] = field(default_factory=list)  # active pods to remove
    finished: bool = False
    requeue_after: float | None = None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _terminal(pod: Obj) -> str | None:
    phase = (pod.get("status") or {}).get("phase")
    return phase if phase in ("Succeeded", "Failed") else None


def _restarts(pod: Obj) -> int:
    total = 0
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        total += _int(cs.get("restartCount"), 0)
    return total


def _condition(type_: str, reason: str, message: str, now: str) -> Obj:
    return {
        "type": type_,
        "status": "True",
        "lastProbeTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def finished_condition(job: Obj) -> Obj | None:
    """The Complete or Failed condition that is True, if the Job has finished."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def pod_index(pod: Obj, completions: int) -> int | None:
    """The completion index a pod runs, if it has a valid one (upstream getCompletionIndex)."""
    text = (objmeta.meta(pod).get("annotations") or {}).get(INDEX_KEY)
    if not isinstance(text, str) or not text.isdigit() or len(text) > 9:
        return None
    index = int(text)
    return index if index < completions else None


def parse_indexes(text: Any, completions: int) -> set[int]:
    """status.completedIndexes ("1,3-5") as a set; what does not parse is left out."""
    out: set[int] = set()
    if not isinstance(text, str):
        return out
    for part in text.split(",")[:completions]:
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or len(part) > 19:
            continue
        first, last = int(low), int(high or low)
        out.update(range(first, min(last, completions - 1) + 1))
    return out


def format_indexes(indexes: set[int]) -> str:
    """A set of indexes as upstream writes completedIndexes: ascending intervals."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def _plan_indexes(
    plan: JobPlan, active: list[Obj], pods: list[Obj], completions: int, want: int
) -> set[int]:
    """Indexed mode: fill in which indexes to start and which active pods to remove (a
    second pod of an index, one whose index has succeeded, one without a valid index);
    return the succeeded indexes."""
    status = plan.status
    done = parse_indexes(status.get("completedIndexes"), completions)
    done |= {
        i
        for p in pods
        if _terminal(p) == "Succeeded" and (i := pod_index(p, completions)) is not None
    }
    running: dict[int, Obj] = {}
    oldest_first = sorted(active, key=lambda p: str(objmeta.meta(p).get("creationTimestamp", "")))
    for p in oldest_first:
        i = pod_index(p, completions)
        if i is None or i in done or i in running:
            plan.delete.append(p)
        else:
            running[i] = p
    for i in sorted(running)[want:]:  # fewer wanted (suspended, parallelism lowered)
        plan.delete.append(running.pop(i))
    missing = [i for i in range(completions) if i not in done and i not in running]
    room = max(0, want - len(running))
    plan.indexes = missing[: min(room, MAX_CREATES_PER_SYNC)]
    plan.create = len(plan.indexes)
    return done


def plan_job(job: Obj, pods: list[Obj], now: datetime) -> JobPlan:
    """The Job's next status and the pod creates/deletes that get it there. `pods` are the
    pods the Job controls (any phase)."""
    spec = job.get("spec") or {}
    status = copy.deepcopy(job.get("status") or {})
    stamp = objmeta.format_time(now)
    if finished_condition(job) is not None:
        return JobPlan(status, finished=True)
    active = [
        p for p in pods if _terminal(p) is None and not objmeta.meta(p).get("deletionTimestamp")
    ]
    succeeded = sum(1 for p in pods if _terminal(p) == "Succeeded")
    failed = sum(1 for p in pods if _terminal(p) == "Failed")
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    restarts = sum(_restarts(p) for p in pods) if policy == "OnFailure" else 0
    # counts only grow: a succeeded pod that was deleted still counts
    succeeded = max(succeeded, _int(status.get("succeeded"), 0))
    failed = max(failed, _int(status.get("failed"), 0))
    completions = spec.get("completions")
    completions = completions if isinstance(completions, int) else None
    parallelism = max(0, _int(spec.get("parallelism"), 1))
    backoff = max(0, _int(spec.get("backoffLimit"), 6))
    suspended = spec.get("suspend") is True
    if "startTime" not in status and not suspended:
        status["startTime"] = stamp
    plan = JobPlan(status)
    conditions: list[Obj] = list(status.get("conditions") or [])
    start = objmeta.parse_time(status.get("startTime"))
    deadline = spec.get("activeDeadlineSeconds")
    failure: tuple[str, str] | None = None
    if failed + restarts > backoff:
        failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    elif isinstance(deadline, int) and start is not None and not suspended:
        left = start.timestamp() + deadline - now.timestamp()
        if left <= 0:
            failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        else:
            plan.requeue_after = left + 0.5
    indexed = spec.get("completionMode") == "Indexed" and completions is not None
    if indexed and completions is not None:
        done = _plan_indexes(plan, active, pods, completions, 0 if suspended else parallelism)
        succeeded = len(done)
        status["completedIndexes"] = format_indexes(done)
        if not done:
            status.pop("completedIndexes")  # omitempty
        complete = succeeded >= completions
    elif completions is None:
        complete = succeeded >= 1 and not active
        want = 0 if succeeded >= 1 else parallelism
    else:
        complete = succeeded >= completions
        want = min(parallelism, max(0, completions - succeeded))
    if suspended and not indexed:
        want = 0
    if failure is not None or complete:
        plan.create, plan.indexes = 0, []
    if failure is not None:
        plan.delete = active
        if not active:
            conditions.append(_condition("FailureTarget", *failure, stamp))
            conditions.append(_condition("Failed", *failure, stamp))
            plan.finished = True
    elif complete:
        plan.delete = active
        if not active:
            why = ("CompletionsReached", "Reached expected number of succeeded pods")
            conditions.append(_condition("SuccessCriteriaMet", *why, stamp))
            conditions.append(_condition("Complete", "", "", stamp))
            conditions[-1].pop("reason")
            conditions[-1].pop("message")
            status["completionTime"] = stamp
            plan.finished = True
    elif indexed:
        pass  # _plan_indexes chose the creates and deletes
    elif len(active) < want:
        plan.create = min(want - len(active), MAX_CREATES_PER_SYNC)
    elif len(active) > want:
        newest = sorted(active, key=lambda p: str(objmeta.meta(p).get("creationTimestamp", "")))
        plan.delete = newest[want:]
    remaining = [p for p in active if p not in plan.delete]
    status["active"] = len(remaining) + plan.create if not plan.finished else 0
    status["ready"] = sum(1 for p in remaining if podutil.is_ready(p))
    status["succeeded"] = succeeded
    status["failed"] = failed
    status["terminating"] = sum(
        1 for p in pods if objmeta.meta(p).get("deletionTimestamp") and _terminal(p) is None
    )
    status.setdefault("uncountedTerminatedPods", {})
    for key in ("active", "succeeded", "failed"):
        if status[key] == 0:
            status.pop(key)
    if conditions:
        status["conditions"] = conditions
    return plan


def ttl_left(job: Obj, now: datetime) -> float | None:
    """Seconds until a finished Job's ttlSecondsAfterFinished expires (<= 0: delete now);
    None when it has no TTL or has not finished."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    cond = finished_condition(job)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or cond is None:
        return None
    finished = objmeta.parse_time(
        (job.get("status") or {}).get("completionTime") or cond.get("lastTransitionTime")
    )
    if finished is None:
        return 0.0
    return finished.timestamp() + ttl - now.timestamp()


def new_job_pod(job: Obj, index: int | None = None) -> Obj:
    """A pod from the Job's template, as a ReplicaSet's (upstream GetPodFromTemplate); in
    Indexed mode one that runs `index`, as upstream's addCompletionIndex* do."""
    pod = new_pod(job, API_VERSION, KIND)
    if index is None:
        return pod
    m = pod["metadata"]
    m["generateName"] = f"{objmeta.meta(job).get('name', '')}-{index}-"
    m.setdefault("annotations", {})[INDEX_KEY] = str(index)
    m["labels"][INDEX_KEY] = str(index)
    spec = pod["spec"]
    if not spec.get("hostname"):
        spec["hostname"] = f"{objmeta.meta(job).get('name', '')}-{index}"
    ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        env = c.setdefault("env", [])
        if not any(isinstance(e, dict) and e.get("name") == INDEX_ENV for e in env):
            env.append({"name": INDEX_ENV, "valueFrom": ref})
    return pod


def spec_problem(job: Obj) -> str | None:
    spec = job.get("spec") or {}
    completions = spec.get("completions")
    if spec.get("completionMode") == "Indexed" and (
        not isinstance(completions, int) or completions > MAX_INDEXED
    ):
        return f"spec.completions: an Indexed Job needs completions from 0 to {MAX_INDEXED}"
    return template_problem(job, KIND)


# -- controller ------------------------------------------------------------------------------
TTL_CONTROLLER = "ttl-after-finished"  # whose credentials delete a Job past its TTL


class JobController(PodOwnerController):
    name = "job"
    kind = KIND
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.jobs = self.owners
        # a finished Job's TTL deletion is upstream's ttl-after-finished controller's, with
        # its own account (the job controller's role may not delete Jobs)
        self.ttl_client = ctx.client_for(TTL_CONTROLLER)

    async def sync(self, key: str) -> None:
        cached = self.jobs.get(key)
        if cached is None:
            self.expectations.delete(key)
            return
        job = copy.deepcopy(cached)
        if objmeta.meta(job).get("deletionTimestamp"):
            return
        now = objmeta.now_utc()
        left = ttl_left(job, now)
        if left is not None:
            if left <= 0:
                await self._expire(job)
            else:
                self.queue.add_after(key, left + 0.5)
            return
        problem = spec_problem(job)
        if problem:
            raise Invalid(problem)
        pods = self.owned_pods(job)
        if not self.expectations.satisfied(key):
            return
        plan = plan_job(job, pods, now)
        if plan.create:
            await self._create(key, job, plan.indexes or [None] * plan.create)
        if plan.delete:
            await asyncio.gather(*(self.delete_pod(job, p) for p in plan.delete))
        await self._write_status(job, plan.status)
        if plan.finished:
            cond = finished_condition({"status": plan.status})
            if cond is not None and cond.get("type") == "Complete":
                self.recorder.event(job, "Normal", "Completed", "Job completed")
            elif cond is not None:
                self.recorder.event(
                    job, "Warning", str(cond.get("reason")), str(cond.get("message"))
                )
            left = ttl_left({**job, "status": plan.status}, now)
            if left is not None:
                self.queue.add_after(key, max(left, 0) + 0.5)
        elif plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)

    async def _create(self, key: str, job: Obj, indexes: list[int | None]) -> None:
        self.expectations.expect_creations(key, len(indexes))
        ns = objmeta.meta(job).get("namespace")
        results = await asyncio.gather(
            *(self.client.create("Pod", ns, new_job_pod(job, i)) for i in indexes),
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, BaseException):
                self.expectations.creation_observed(key)
                if isinstance(r, ApiException):
                    self.recorder.event(
                        job, "Warning", "FailedCreate", f"Error creating: {r.message}"
                    )
                    continue
                raise r
            self.recorder.event(
                job, "Normal", "SuccessfulCreate", f"Created pod: {objmeta.meta(r).get('name')}"
            )

    async def _expire(self, job: Obj) -> None:
        m = objmeta.meta(job)
        try:
            await self.ttl_client.delete(
                "Job",
                m.get("namespace"),
                m.get("name"),
                propagation="Foreground",
                preconditions={"uid": str(m.get("uid", ""))},
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    async def _write_status(self, job: Obj, status: Obj) -> None:
        if status == (job.get("status") or {}):
            return
        body = dict(job)
        body["status"] = status
        try:
            await self.client.update("Job", body, subresource="status")
        except ApiException as e:
            if e.status != 404:
                raise
