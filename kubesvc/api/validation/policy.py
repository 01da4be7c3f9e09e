"""policy/v1 PodDisruptionBudget, scheduling.k8s.io/v1 PriorityClass and autoscaling/v2
HorizontalPodAutoscaler validation (upstream pkg/apis/*/validation, v1.32): the main rules."""

from __future__ import annotations

from typing import Any

from kubesvc.api.errors import forbidden, invalid, not_supported, required
from kubesvc.api.validation.apps import _int_or_percent, _positive_int_or_percent
from kubesvc.api.validation.meta import (
    Errs,
    Obj,
    as_dict,
    as_list,
    is_valid_percent,
    name_is_dns_subdomain,
    validate_label_selector,
    validate_object_meta,
    validate_object_meta_update,
)

# -- PodDisruptionBudget -----------------------------------------------------------------------

_EVICTION_POLICIES = ["AlwaysAllow", "IfHealthyBudget"]


def _percent_over_100(value: Any, path: str) -> Errs:
    if isinstance(value, str) and not is_valid_percent(value) and int(value[:-1]) > 100:
        return [invalid(path, _int_or_percent(value), "must not be greater than 100%")]
    return []


def validate_pod_disruption_budget(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
    if low is not None and high is not None:
        errs.append(invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    if low is not None:
        errs.extend(_positive_int_or_percent(low, "spec.minAvailable"))
        errs.extend(_percent_over_100(low, "spec.minAvailable"))
    if high is not None:
        errs.extend(_positive_int_or_percent(high, "spec.maxUnavailable"))
        errs.extend(_percent_over_100(high, "spec.maxUnavailable"))
    errs.extend(validate_label_selector(spec.get("selector"), "spec.selector"))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in _EVICTION_POLICIES:
        errs.append(not_supported("spec.unhealthyPodEvictionPolicy", policy, _EVICTION_POLICIES))
    return errs


def validate_pod_disruption_budget_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_pod_disruption_budget(obj)


def validate_pod_disruption_budget_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    status = as_dict(obj.get("status"))
    for key in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"):
        value = status.get(key)
        if isinstance(value, int) and value < 0:
            errs.append(invalid(f"status.{key}", value, "must be greater than or equal to 0"))
    return errs


# -- PriorityClass ----------------------------------------------------------------------------

SYSTEM_PRIORITY_CLASSES = {
    "system-cluster-critical": 2000000000,
    "system-node-critical": 2000001000,
}
HIGHEST_USER_PRIORITY = 1000000000
_PREEMPTION = ["Never", "PreemptLowerPriority"]


def validate_priority_class(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, name_is_dns_subdomain)
    name = as_dict(obj.get("metadata")).get("name") or ""
    value = obj.get("value", 0)
    if isinstance(name, str) and name.startswith("system-"):
        known = SYSTEM_PRIORITY_CLASSES.get(name)
        if known is None:
            why = f"{name} is not a known system priority class"
        elif known != value:
            why = f"value of {name} PriorityClass must be {known}"
        elif obj.get("globalDefault"):
            why = f"globalDefault must be false for {name}"
        else:
            why = ""
        if why:
            errs.append(
                forbidden(
                    "metadata.name",
                    "priority class names with 'system-' prefix are reserved for system use "
                    f"only. error: {why}",
                )
            )
    elif isinstance(value, int) and value > HIGHEST_USER_PRIORITY:
        errs.append(
            forbidden("value", "maximum allowed value of a user defined priority is 1000000000")
        )
    policy = obj.get("preemptionPolicy")
    if policy is not None and policy not in _PREEMPTION:
        errs.append(not_supported("preemptionPolicy", policy, _PREEMPTION))
    return errs


def validate_priority_class_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    if obj.get("value") != old.get("value"):
        errs.append(forbidden("value", "may not be changed in an update."))
    if obj.get("preemptionPolicy") != old.get("preemptionPolicy"):
        errs.append(invalid("preemptionPolicy", obj.get("preemptionPolicy"), "field is immutable"))
    return errs


# -- HorizontalPodAutoscaler -------------------------------------------------------------------

_METRIC_TYPES = ["ContainerResource", "External", "Object", "Pods", "Resource"]


def validate_hpa(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    ref = as_dict(spec.get("scaleTargetRef"))
    if not ref.get("kind"):
        errs.append(required("spec.scaleTargetRef.kind"))
    if not ref.get("name"):
        errs.append(required("spec.scaleTargetRef.name"))
    low = spec.get("minReplicas")
    if isinstance(low, int) and low < 1:
        errs.append(invalid("spec.minReplicas", low, "must be greater than or equal to 1"))
    high = spec.get("maxReplicas", 0)
    if isinstance(high, int) and high < 1:
        errs.append(invalid("spec.maxReplicas", high, "must be greater than 0"))
    if isinstance(low, int) and isinstance(high, int) and high < low:
        errs.append(
            invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`")
        )
    for i, metric in enumerate(as_list(spec.get("metrics"))):
        kind = as_dict(metric).get("type")
        path = f"spec.metrics[{i}]"
        if not kind:
            errs.append(required(f"{path}.type", "must specify a metric source type"))
        elif kind not in _METRIC_TYPES:
            errs.append(not_supported(f"{path}.type", kind, _METRIC_TYPES))
        else:
            source = {"ContainerResource": "containerResource"}.get(
                kind, kind[0].lower() + kind[1:]
            )
            if as_dict(metric).get(source) is None:
                errs.append(
                    required(
                        f"{path}.{source}", "must populate information for the given metric source"
                    )
                )
    return errs


def validate_hpa_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_hpa(obj)
