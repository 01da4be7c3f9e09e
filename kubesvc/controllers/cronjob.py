"""The CronJob controller (upstream pkg/controller/cronjob, the v2 controller).

At each time the schedule names (in spec.timeZone, else UTC) a CronJob creates a Job named
`<cronjob>-<minutes since the epoch>` from its jobTemplate, owned by it and annotated with
`batch.kubernetes.io/cronjob-scheduled-timestamp`. Only the most recent missed time is run;
`startingDeadlineSeconds` skips a time that is too late; concurrencyPolicy Forbid skips while
a Job is active and Replace deletes the active ones first; suspend stops new Jobs. Status:
`active` references, `lastScheduleTime`, `lastSuccessfulTime`. Finished Jobs beyond
successfulJobsHistoryLimit / failedJobsHistoryLimit are deleted, oldest first. The pure parts
are `due_time`, `new_job` and `history_to_delete`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubesvc.api import cron, objmeta
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.client.shape import Invalid
from kubesvc.controllers import podutil
from kubesvc.controllers.base import Context, Controller
from kubesvc.controllers.job import finished_condition
from kubesvc.controllers.replicaset import close_recorder, component_recorder

log = logging.getLogger("kubesvc.controllers.cronjob")

API_VERSION = "batch/v1"
KIND = "CronJob"
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100  # upstream reports "too many missed start times" past this
_OWNER_INDEX = "cronjob:controller"


# -- pure ------------------------------------------------------------------------------------
@dataclass
class Due:
    scheduled: datetime | None  # the most recent unmet time, if any
    missed_many: bool  # more than MAX_MISSED times were missed
    next_time: datetime | None  # the first time after now


def zone_of(cj: Obj) -> Any:
    name = (cj.get("spec") or {}).get("timeZone")
    return UTC if name is None else cron.load_zone(name)


def due_time(cj: Obj, now: datetime) -> Due:
    """upstream mostRecentScheduleTime + nextScheduleTime. CronError if the schedule or
    time zone cannot be used."""
    spec = cj.get("spec") or {}
    schedule = cron.parse(spec.get("schedule", ""))
    zone = zone_of(cj)
    status = cj.get("status") or {}
    earliest = objmeta.parse_time(status.get("lastScheduleTime")) or objmeta.parse_time(
        objmeta.meta(cj).get("creationTimestamp")
    )
    if earliest is None:
        earliest = now
    deadline = spec.get("startingDeadlineSeconds")
    if isinstance(deadline, int) and not isinstance(deadline, bool) and deadline < 10**10:
        earliest = max(earliest, now - timedelta(seconds=max(deadline, 0)))
    times, more = schedule.times_between(earliest, now, zone, MAX_MISSED)
    if more:
        # only the most recent one matters: find it walking back from now
        times = [_latest_before(schedule, zone, now, times[-1])]
    scheduled = times[-1] if times else None
    return Due(scheduled, more, schedule.next_after(now, zone))


def _latest_before(schedule: cron.Schedule, zone: Any, now: datetime, floor: datetime) -> datetime:
    window = timedelta(hours=1)
    while True:
        start = max(floor, now - window)
        times, _ = schedule.times_between(start, now, zone, 100000)
        if times or start == floor:
            return times[-1] if times else floor
        window *= 4


def job_name(cj: Obj, scheduled: datetime) -> str:
    """upstream getJobName: the CronJob's name and the scheduled time in minutes."""
    return f"{objmeta.meta(cj).get('name', '')}-{int(scheduled.timestamp()) // 60}"


def new_job(cj: Obj, scheduled: datetime) -> Obj:
    m = objmeta.meta(cj)
    template = (cj.get("spec") or {}).get("jobTemplate") or {}
    tm = template.get("metadata") or {}
    annotations = dict(tm.get("annotations") or {})
    local = scheduled.astimezone(zone_of(cj))
    annotations[SCHEDULED_ANNOTATION] = local.isoformat().replace("+00:00", "Z")
    meta: Obj = {
        "name": job_name(cj, scheduled),
        "namespace": m.get("namespace"),
        "labels": dict(tm.get("labels") or {}),
        "annotations": annotations,
        "ownerReferences": [podutil.make_controller_ref(cj, API_VERSION, KIND)],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def job_ref(job: Obj) -> Obj:
    m = objmeta.meta(job)
    return {
        "kind": "Job",
        "namespace": m.get("namespace"),
        "name": m.get("name"),
        "uid": m.get("uid"),
        "apiVersion": "batch/v1",
        "resourceVersion": m.get("resourceVersion"),
    }


def _finished_at(job: Obj) -> str:
    status = job.get("status") or {}
    cond = finished_condition(job) or {}
    return str(
        status.get("completionTime")
        or cond.get("lastTransitionTime")
        or objmeta.meta(job).get("creationTimestamp")
        or ""
    )


def history_to_delete(cj: Obj, jobs: list[Obj]) -> list[Obj]:
    """Finished Jobs beyond the history limits, oldest first."""
    spec = cj.get("spec") or {}
    out: list[Obj] = []
    for kind, key in (
        ("Complete", "successfulJobsHistoryLimit"),
        ("Failed", "failedJobsHistoryLimit"),
    ):
        limit = spec.get(key)
        if not isinstance(limit, int) or isinstance(limit, bool):
            continue
        done = [j for j in jobs if (finished_condition(j) or {}).get("type") == kind]
        done.sort(key=_finished_at)
        out += done[: max(0, len(done) - max(0, limit))]
    return out


def active_status(cj: Obj, jobs: list[Obj]) -> Obj:
    """The status with `active` listing the owned Jobs still running and
    lastSuccessfulTime moved to the newest completion."""
    status = copy.deepcopy(cj.get("status") or {})
    running = [j for j in jobs if finished_condition(j) is None]
    known = {r.get("uid"): r for r in status.get("active") or [] if isinstance(r, dict)}
    refs = [
        known.get(objmeta.meta(j).get("uid")) or job_ref(j)
        for j in sorted(running, key=lambda j: str(objmeta.meta(j).get("name")))
    ]
    if refs:
        status["active"] = refs
    else:
        status.pop("active", None)
    for j in jobs:
        cond = finished_condition(j)
        if cond is not None and cond.get("type") == "Complete":
            done = (j.get("status") or {}).get("completionTime")
            if done and str(done) > str(status.get("lastSuccessfulTime") or ""):
                status["lastSuccessfulTime"] = done
    return status


# -- controller ------------------------------------------------------------------------------
def _owner_index(job: Obj) -> list[str]:
    ref = podutil.controller_ref(job)
    if ref is not None and ref.get("kind") == KIND:
        return [str(ref.get("uid", ""))]
    return []


class CronJobController(Controller):
    name = "cronjob"
    requeue_conflicts = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.recorder = component_recorder(ctx, "cronjob-controller", self.name)
        self.cronjobs = ctx.factory.informer("CronJob")
        self.jobs = ctx.factory.informer("Job")
        self.jobs.add_indexer(_OWNER_INDEX, _owner_index)
        self.cronjobs.add_handler(self.enqueue, lambda _o, n: self.enqueue(n), lambda _o: None)
        self.jobs.add_handler(self._job_event, lambda _o, n: self._job_event(n), self._job_event)

    async def stop(self) -> None:
        await super().stop()
        await close_recorder(self.ctx, self.recorder)

    def _job_event(self, job: Obj) -> None:
        ref = podutil.controller_ref(job)
        if ref is not None and ref.get("kind") == KIND:
            self.queue.add(f"{objmeta.meta(job).get('namespace')}/{ref.get('name')}")

    async def sync(self, key: str) -> None:
        cached = self.cronjobs.get(key)
        if cached is None:
            return
        cj = copy.deepcopy(cached)
        uid = str(objmeta.meta(cj).get("uid", ""))
        jobs = [
            j
            for j in self.jobs.by_index(_OWNER_INDEX, uid)
            if not objmeta.meta(j).get("deletionTimestamp")
        ]
        status = active_status(cj, jobs)
        now = objmeta.now_utc()
        if objmeta.meta(cj).get("deletionTimestamp"):
            await self._write_status(cj, status)
            return
        try:
            due = due_time(cj, now)
        except cron.CronError as e:
            self.recorder.event(cj, "Warning", "UnparseableSchedule", f"unparseable schedule: {e}")
            await self._write_status(cj, status)
            raise Invalid(f"spec.schedule/timeZone: {e}") from None
        spec = cj.get("spec") or {}
        if due.missed_many:
            self.recorder.event(
                cj,
                "Warning",
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or "
                "check clock skew",
            )
        if not spec.get("suspend") and due.scheduled is not None:
            await self._run(cj, jobs, status, due.scheduled, now)
        await asyncio.gather(*(self._delete_job(cj, j) for j in history_to_delete(cj, jobs)))
        await self._write_status(cj, status)
        if due.next_time is not None:
            wait = (due.next_time - now).total_seconds()
            self.queue.add_after(key, max(wait, 0) + 0.1)

    async def _run(
        self, cj: Obj, jobs: list[Obj], status: Obj, scheduled: datetime, now: datetime
    ) -> None:
        spec = cj.get("spec") or {}
        deadline = spec.get("startingDeadlineSeconds")
        late = isinstance(deadline, int) and deadline < 10**10
        if late and scheduled.timestamp() + deadline < now.timestamp():
            self.recorder.event(
                cj, "Warning", "MissSchedule", f"Missed scheduled time to start a job: {scheduled}"
            )
            return
        name = job_name(cj, scheduled)
        if any(objmeta.meta(j).get("name") == name for j in jobs):
            return  # this time has its Job
        last = objmeta.parse_time(status.get("lastScheduleTime"))
        if last is not None and last >= scheduled:
            return
        running = [j for j in jobs if finished_condition(j) is None]
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and running:
            log.info("skipping a scheduled run: a job is active (concurrencyPolicy Forbid)")
            return
        if policy == "Replace":
            for job in running:
                await self._delete_job(cj, job)
                self.recorder.event(
                    cj, "Normal", "SuccessfulDelete", f"Deleted job {objmeta.meta(job).get('name')}"
                )
        ns = objmeta.meta(cj).get("namespace")
        try:
            job = await self.client.create("Job", ns, new_job(cj, scheduled))
        except ApiException as e:
            if e.status != 409:
                self.recorder.event(
                    cj, "Warning", "FailedCreate", f"Error creating job: {e.message}"
                )
                raise
            return
        self.recorder.event(
            cj, "Normal", "SuccessfulCreate", f"Created job {objmeta.meta(job).get('name')}"
        )
        status["active"] = [*(status.get("active") or []), job_ref(job)]
        status["lastScheduleTime"] = objmeta.format_time(scheduled)

    async def _delete_job(self, cj: Obj, job: Obj) -> None:
        m = objmeta.meta(job)
        try:
            await self.client.delete(
                "Job", m.get("namespace"), m.get("name"), propagation="Background"
            )
        except ApiException as e:
            if e.status != 404:
                raise

    async def _write_status(self, cj: Obj, status: Obj) -> None:
        if status == (cj.get("status") or {}):
            return
        body = dict(cj)
        body["status"] = status
        try:
            await self.client.update("CronJob", body, subresource="status")
        except ApiException as e:
            if e.status != 404:
                raise
