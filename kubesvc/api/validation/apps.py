"""apps/v1 Deployment and ReplicaSet validation (pkg/apis/apps/validation, Kubernetes v1.32)."""

from __future__ import annotations

from typing import Any

from kubesvc.api.errors import GoLiteral, forbidden, invalid, not_supported, required
from kubesvc.api.validation.core import validate_pod_template_spec
from kubesvc.api.validation.meta import (
    IMMUTABLE,
    Errs,
    Obj,
    as_dict,
    as_list,
    go_label_selector,
    go_quote,
    go_string_map,
    is_valid_percent,
    name_is_dns_subdomain,
    nonnegative,
    selector_matches,
    validate_label_selector,
    validate_object_meta,
    validate_object_meta_update,
)


def _int_or_percent(value: Any) -> GoLiteral:
    if isinstance(value, str):
        return GoLiteral(f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{go_quote(value)}}}")
    return GoLiteral(f'intstr.IntOrString{{Type:0, IntVal:{value or 0}, StrVal:""}}')


def _percent_value(value: Any) -> int | None:
    if isinstance(value, str) and not is_valid_percent(value):
        return int(value[:-1])
    return None


def _int_or_percent_value(value: Any) -> int:
    pct = _percent_value(value)
    if pct is not None:
        return pct
    if isinstance(value, int):
        return value
    return 0  # IntOrString.IntValue() of a non-numeric string


def _positive_int_or_percent(value: Any, path: str) -> Errs:
    if isinstance(value, str):
        return [invalid(path, _int_or_percent(value), m) for m in is_valid_percent(value)]
    return nonnegative(path, value)


def _not_more_than_100(value: Any, path: str) -> Errs:
    pct = _percent_value(value)
    if pct is None or pct <= 100:
        return []
    return [invalid(path, _int_or_percent(value), "must not be greater than 100%")]


def _template_and_selector(spec: Obj, kind: str) -> Errs:
    errs: Errs = []
    selector = spec.get("selector")
    if selector is None:
        errs.append(required("spec.selector"))
    else:
        sel = as_dict(selector)
        errs.extend(validate_label_selector(sel, "spec.selector"))
        if not sel.get("matchLabels") and not sel.get("matchExpressions"):
            # upstream says "deployment" for ReplicaSets too
            errs.append(
                invalid(
                    "spec.selector",
                    go_label_selector(sel),
                    "empty selector is invalid for deployment",
                )
            )
    template = as_dict(spec.get("template"))
    labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    sel = as_dict(selector)
    if (sel.get("matchLabels") or sel.get("matchExpressions")) and not selector_matches(
        sel, labels
    ):
        shown = go_string_map(as_dict(template.get("metadata")).get("labels"))
        errs.append(
            invalid(
                "spec.template.metadata.labels",
                shown,
                "`selector` does not match template `labels`",
            )
        )
    errs.extend(validate_pod_template_spec(template, "spec.template"))
    tspec = as_dict(template.get("spec"))
    policy = tspec.get("restartPolicy")
    if policy != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", policy or "", ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(
            forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                f"activeDeadlineSeconds in {kind} is not Supported",
            )
        )
    return errs


def _strategy(strategy: Obj) -> Errs:
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    path = "spec.strategy"
    if kind == "Recreate":
        if rolling is not None:
            return [
                forbidden(
                    f"{path}.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                )
            ]
        return []
    if kind == "RollingUpdate":
        if rolling is None:
            return [required(f"{path}.rollingUpdate", "this should be defaulted and never be nil")]
        return _rolling_update(as_dict(rolling), f"{path}.rollingUpdate")
    shown = GoLiteral(
        f"apps.DeploymentStrategy{{Type:{go_quote(str(kind or ''))}, "
        "RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}"
    )
    return [not_supported(path, shown, ["Recreate", "RollingUpdate"])]


def _rolling_update(rolling: Obj, path: str) -> Errs:
    unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
    errs = _positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    errs.extend(_positive_int_or_percent(surge, f"{path}.maxSurge"))
    if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
        errs.append(
            invalid(
                f"{path}.maxUnavailable",
                _int_or_percent(unavailable),
                "may not be 0 when `maxSurge` is 0",
            )
        )
    errs.extend(_not_more_than_100(unavailable, f"{path}.maxUnavailable"))
    return errs


def validate_deployment(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    return errs + _deployment_spec(as_dict(obj.get("spec")))


def _deployment_spec(spec: Obj) -> Errs:
    errs = nonnegative("spec.replicas", spec.get("replicas", 0))
    errs.extend(_template_and_selector(spec, "Deployment"))
    errs.extend(_strategy(as_dict(spec.get("strategy"))))
    min_ready = spec.get("minReadySeconds", 0)
    errs.extend(nonnegative("spec.minReadySeconds", min_ready))
    if spec.get("revisionHistoryLimit") is not None:
        errs.extend(nonnegative("spec.revisionHistoryLimit", spec["revisionHistoryLimit"]))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        errs.extend(nonnegative("spec.progressDeadlineSeconds", deadline))
        if isinstance(deadline, int) and isinstance(min_ready, int) and deadline <= min_ready:
            errs.append(
                invalid(
                    "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
                )
            )
    return errs


def validate_replica_set(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    return errs + _replica_set_spec(as_dict(obj.get("spec")))


def _replica_set_spec(spec: Obj) -> Errs:
    errs = nonnegative("spec.replicas", spec.get("replicas", 0))
    errs.extend(nonnegative("spec.minReadySeconds", spec.get("minReadySeconds", 0)))
    errs.extend(_template_and_selector(spec, "ReplicaSet"))
    return errs


def _selector_immutable(obj: Obj, old: Obj) -> Errs:
    """apps/v1 registry strategies forbid changing spec.selector."""
    new_sel = as_dict(obj.get("spec")).get("selector")
    old_sel = as_dict(old.get("spec")).get("selector")
    if _normal_selector(new_sel) == _normal_selector(old_sel):
        return []
    return [invalid("spec.selector", go_label_selector(as_dict(new_sel)), IMMUTABLE)]


def _normal_selector(selector: Any) -> tuple[Any, Any]:
    sel = as_dict(selector)
    return (sel.get("matchLabels") or {}, sel.get("matchExpressions") or [])


def validate_deployment_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    errs.extend(_deployment_spec(as_dict(obj.get("spec"))))
    errs.extend(_selector_immutable(obj, old))
    return errs


def validate_replica_set_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    errs.extend(_replica_set_spec(as_dict(obj.get("spec"))))
    errs.extend(_selector_immutable(obj, old))
    return errs


def _status_counts(status: Obj, keys: tuple[str, ...], replicas_key: str) -> Errs:
    errs: Errs = []
    for key in keys:
        errs.extend(nonnegative(f"status.{key}", status.get(key, 0)))
    replicas = status.get(replicas_key, 0) or 0
    msg = "cannot be greater than status.replicas"
    for key in keys:
        if key in (replicas_key, "observedGeneration", "unavailableReplicas", "collisionCount"):
            continue
        value = status.get(key, 0) or 0
        if isinstance(value, int) and isinstance(replicas, int) and value > replicas:
            errs.append(invalid(f"status.{key}", value, msg))
    ready, available = status.get("readyReplicas", 0) or 0, status.get("availableReplicas", 0) or 0
    if isinstance(ready, int) and isinstance(available, int) and available > ready:
        errs.append(
            invalid("status.availableReplicas", available, "cannot be greater than readyReplicas")
        )
    return errs


def validate_deployment_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    status, old_status = as_dict(obj.get("status")), as_dict(old.get("status"))
    keys = (
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
        "collisionCount",
    )
    errs.extend(_status_counts(status, keys, "replicas"))
    new_count, old_count = status.get("collisionCount"), old_status.get("collisionCount")
    if old_count is not None and (new_count is None or new_count < old_count):
        errs.append(invalid("status.collisionCount", new_count or 0, "cannot be decremented"))
    return errs


def validate_replica_set_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    keys = (
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    )
    errs.extend(_status_counts(as_dict(obj.get("status")), keys, "replicas"))
    return errs


# -- DaemonSet and StatefulSet ----------------------------------------------------------------


def _daemon_set_spec(spec: Obj) -> Errs:
    errs = _template_and_selector(spec, "DaemonSet")
    errs.extend(nonnegative("spec.minReadySeconds", spec.get("minReadySeconds", 0)))
    if spec.get("revisionHistoryLimit") is not None:
        errs.extend(nonnegative("spec.revisionHistoryLimit", spec["revisionHistoryLimit"]))
    strategy = as_dict(spec.get("updateStrategy"))
    kind = strategy.get("type")
    path = "spec.updateStrategy"
    if kind == "RollingUpdate":
        rolling = as_dict(strategy.get("rollingUpdate"))
        unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
        errs.extend(_positive_int_or_percent(unavailable, f"{path}.rollingUpdate.maxUnavailable"))
        errs.extend(_positive_int_or_percent(surge, f"{path}.rollingUpdate.maxSurge"))
        if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
            errs.append(
                invalid(
                    f"{path}.rollingUpdate.maxUnavailable",
                    _int_or_percent(unavailable),
                    "may not be 0 when `maxSurge` is 0",
                )
            )
        errs.extend(_not_more_than_100(unavailable, f"{path}.rollingUpdate.maxUnavailable"))
    elif kind != "OnDelete":
        errs.append(not_supported(f"{path}.type", kind or "", ["OnDelete", "RollingUpdate"]))
    return errs


def validate_daemon_set(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    return errs + _daemon_set_spec(as_dict(obj.get("spec")))


def validate_daemon_set_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    errs.extend(_daemon_set_spec(as_dict(obj.get("spec"))))
    errs.extend(_selector_immutable(obj, old))
    return errs


_POD_MANAGEMENT = ["OrderedReady", "Parallel"]


def _stateful_set_spec(spec: Obj) -> Errs:
    errs: Errs = []
    policy = spec.get("podManagementPolicy")
    if policy not in _POD_MANAGEMENT:
        errs.append(not_supported("spec.podManagementPolicy", policy or "", _POD_MANAGEMENT))
    strategy = as_dict(spec.get("updateStrategy"))
    kind = strategy.get("type")
    if kind == "RollingUpdate":
        rolling = as_dict(strategy.get("rollingUpdate"))
        errs.extend(
            nonnegative("spec.updateStrategy.rollingUpdate.partition", rolling.get("partition", 0))
        )
        if rolling.get("maxUnavailable") is not None:
            errs.extend(
                _positive_int_or_percent(
                    rolling["maxUnavailable"], "spec.updateStrategy.rollingUpdate.maxUnavailable"
                )
            )
    elif kind == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            errs.append(
                invalid(
                    "spec.updateStrategy.rollingUpdate",
                    GoLiteral("apps.RollingUpdateStatefulSetStrategy{...}"),
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    else:
        errs.append(
            invalid(
                "spec.updateStrategy",
                GoLiteral(f"apps.StatefulSetUpdateStrategy{{Type:{go_quote(str(kind or ''))}}}"),
                "must be 'RollingUpdate' or 'OnDelete'",
            )
        )
    errs.extend(nonnegative("spec.replicas", spec.get("replicas", 0)))
    errs.extend(nonnegative("spec.minReadySeconds", spec.get("minReadySeconds", 0)))
    errs.extend(_template_and_selector(_with_claim_volumes(spec), "StatefulSet"))
    for i, claim in enumerate(as_list(spec.get("volumeClaimTemplates"))):
        name = as_dict(as_dict(claim).get("metadata")).get("name")
        if not name:
            errs.append(required(f"spec.volumeClaimTemplates[{i}].metadata.name"))
    return errs


def _with_claim_volumes(spec: Obj) -> Obj:
    """The spec as its pods will have it: each volumeClaimTemplate is a volume of the pod
    (upstream leaves the mounts unchecked for this reason), so mounts of them are valid."""
    claims = [
        as_dict(as_dict(c).get("metadata")).get("name")
        for c in as_list(spec.get("volumeClaimTemplates"))
    ]
    template = as_dict(spec.get("template"))
    pod_spec = as_dict(template.get("spec"))
    volumes = as_list(pod_spec.get("volumes"))
    have = {n for v in volumes if isinstance(n := as_dict(v).get("name"), str)}
    extra = [
        {"name": n, "emptyDir": {}} for n in claims if isinstance(n, str) and n and n not in have
    ]
    if not extra:
        return spec
    return {**spec, "template": {**template, "spec": {**pod_spec, "volumes": [*volumes, *extra]}}}


def validate_stateful_set(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    return errs + _stateful_set_spec(as_dict(obj.get("spec")))


_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def validate_stateful_set_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
    errs.extend(_stateful_set_spec(spec))
    rest = {k: v for k, v in spec.items() if k not in _STS_MUTABLE}
    old_rest = {k: v for k, v in old_spec.items() if k not in _STS_MUTABLE}
    if rest != old_rest:
        errs.append(
            forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                "'minReadySeconds' are forbidden",
            )
        )
    return errs


def validate_workload_status(obj: Obj, old: Obj) -> Errs:
    """Counters in a DaemonSet's or StatefulSet's status are never negative."""
    errs = validate_object_meta_update(obj, old)
    for key, value in as_dict(obj.get("status")).items():
        if isinstance(value, int) and not isinstance(value, bool):
            errs.extend(nonnegative(f"status.{key}", value))
    return errs
