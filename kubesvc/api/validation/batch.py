"""batch/v1 Job and CronJob validation (pkg/apis/batch/validation, Kubernetes v1.32)."""

from __future__ import annotations

from typing import Any

from kubesvc.api import cron
from kubesvc.api.errors import GoLiteral, invalid, not_supported, required
from kubesvc.api.validation.core import validate_pod_template_spec
from kubesvc.api.validation.meta import (
    IMMUTABLE,
    Errs,
    Obj,
    as_dict,
    go_label_selector,
    go_string_map,
    name_is_dns_subdomain,
    nonnegative,
    selector_matches,
    validate_label_selector,
    validate_object_meta,
    validate_object_meta_update,
)

_RESTART_POLICIES = ["OnFailure", "Never"]
_COMPLETION_MODES = ["NonIndexed", "Indexed"]
MAX_INDEXED = 100_000  # upstream's maxParallelismForIndexedJob
_CONCURRENCY = ["Allow", "Forbid", "Replace"]
# a CronJob's name plus the 11-character suffix of its Jobs must fit a label value
CRONJOB_NAME_MAX = 52


def _job_template_labels(spec: Obj) -> Obj:
    return as_dict(as_dict(as_dict(spec.get("template")).get("metadata")).get("labels"))


def _job_spec(spec: Obj, path: str, *, require_selector: bool) -> Errs:
    errs: Errs = []
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        if spec.get(key) is not None:
            errs.extend(nonnegative(f"{path}.{key}", spec[key]))
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        errs.append(invalid(f"{path}.activeDeadlineSeconds", deadline, "must be greater than 0"))
    mode = spec.get("completionMode")
    if mode is not None and mode not in _COMPLETION_MODES:
        errs.append(not_supported(f"{path}.completionMode", mode, _COMPLETION_MODES))
    if mode == "Indexed" and spec.get("completions") is None:
        errs.append(required(f"{path}.completions", "when completion mode is Indexed"))
    for key in ("parallelism", "completions"):
        # upstream bounds parallelism; kubesvc bounds completions too (its index
        # bookkeeping is a set, not upstream's intervals)
        value = spec.get(key)
        if mode == "Indexed" and isinstance(value, int) and value > MAX_INDEXED:
            msg = f"must be less than or equal to {MAX_INDEXED} when completion mode is Indexed"
            errs.append(invalid(f"{path}.{key}", value, msg))
    selector = spec.get("selector")
    if selector is None:
        if require_selector:
            errs.append(required(f"{path}.selector"))
    else:
        errs.extend(validate_label_selector(selector, f"{path}.selector"))
        labels = _job_template_labels(spec)
        if not selector_matches(as_dict(selector), labels):
            errs.append(
                invalid(
                    f"{path}.template.metadata.labels",
                    go_string_map(labels),
                    "`selector` does not match template `labels`",
                )
            )
    template = as_dict(spec.get("template"))
    errs.extend(validate_pod_template_spec(template, f"{path}.template"))
    policy = as_dict(template.get("spec")).get("restartPolicy")
    if policy not in _RESTART_POLICIES:
        errs.append(
            not_supported(f"{path}.template.spec.restartPolicy", policy or "", _RESTART_POLICIES)
        )
    return errs


def validate_job(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    return errs + _job_spec(as_dict(obj.get("spec")), "spec", require_selector=True)


def validate_job_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
    errs.extend(_job_spec(spec, "spec", require_selector=True))
    if spec.get("selector") != old_spec.get("selector"):
        errs.append(invalid("spec.selector", spec.get("selector"), IMMUTABLE))
    if spec.get("completions") != old_spec.get("completions"):
        errs.append(invalid("spec.completions", spec.get("completions"), IMMUTABLE))
    if spec.get("completionMode") != old_spec.get("completionMode"):
        errs.append(invalid("spec.completionMode", spec.get("completionMode"), IMMUTABLE))
    template, old_template = spec.get("template"), old_spec.get("template")
    # the template may change only while the Job is suspended (the scheduling directives)
    if template != old_template and not old_spec.get("suspend"):
        errs.append(invalid("spec.template", _shown(template), IMMUTABLE))
    return errs


def _shown(value: Any) -> Any:
    return GoLiteral("core.PodTemplateSpec{...}") if value is not None else value


def validate_job_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    status = as_dict(obj.get("status"))
    for key in ("active", "succeeded", "failed", "ready", "terminating"):
        if status.get(key) is not None:
            errs.extend(nonnegative(f"status.{key}", status[key]))
    return errs


def validate_schedule(schedule: Any, path: str) -> Errs:
    if not isinstance(schedule, str) or schedule == "":
        return [required(path)]
    if "TZ" in schedule:
        return [
            invalid(
                path, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
            )
        ]
    try:
        cron.parse(schedule)
    except cron.CronError as e:
        return [invalid(path, schedule, str(e))]
    return []


def validate_time_zone(zone: Any, path: str) -> Errs:
    if zone is None:
        return []
    if isinstance(zone, str) and zone.lower() == "local":
        return [
            invalid(
                path,
                zone,
                "timeZone must be an explicit time zone as defined in "
                "https://www.iana.org/time-zones",
            )
        ]
    try:
        cron.load_zone(zone)
    except cron.CronError as e:
        return [invalid(path, zone, str(e))]
    return []


def _cron_job_spec(spec: Obj) -> Errs:
    errs = validate_schedule(spec.get("schedule"), "spec.schedule")
    errs.extend(validate_time_zone(spec.get("timeZone"), "spec.timeZone"))
    if spec.get("startingDeadlineSeconds") is not None:
        errs.extend(nonnegative("spec.startingDeadlineSeconds", spec["startingDeadlineSeconds"]))
    policy = spec.get("concurrencyPolicy")
    if policy not in _CONCURRENCY:
        if policy in (None, ""):
            errs.append(required("spec.concurrencyPolicy"))
        else:
            errs.append(not_supported("spec.concurrencyPolicy", policy, _CONCURRENCY))
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        if spec.get(key) is not None:
            errs.extend(nonnegative(f"spec.{key}", spec[key]))
    job_spec = as_dict(as_dict(spec.get("jobTemplate")).get("spec"))
    errs.extend(_job_spec(job_spec, "spec.jobTemplate.spec", require_selector=False))
    # ValidateJobTemplateSpec: each Job gets its own generated selector
    if job_spec.get("selector") is not None:
        errs.append(
            invalid(
                "spec.jobTemplate.spec.selector",
                go_label_selector(as_dict(job_spec["selector"])),
                "`selector` will be auto-generated",
            )
        )
    if job_spec.get("manualSelector") is True:
        errs.append(not_supported("spec.jobTemplate.spec.manualSelector", True, ["nil", "false"]))
    return errs


def _cron_job_name(obj: Obj) -> Errs:
    name = as_dict(obj.get("metadata")).get("name")
    if isinstance(name, str) and len(name) > CRONJOB_NAME_MAX:
        return [
            invalid("metadata.name", name, f"must be no more than {CRONJOB_NAME_MAX} characters")
        ]
    return []


def validate_cron_job(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    errs.extend(_cron_job_name(obj))
    return errs + _cron_job_spec(as_dict(obj.get("spec")))


def validate_cron_job_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    return errs + _cron_job_spec(as_dict(obj.get("spec")))
