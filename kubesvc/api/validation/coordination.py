"""coordination.k8s.io/v1 Lease validation (pkg/apis/coordination/validation, v1.32)."""

from __future__ import annotations

from kubesvc.api.errors import forbidden, invalid, not_supported
from kubesvc.api.validation.meta import (
    Errs,
    Obj,
    as_dict,
    name_is_dns_subdomain,
    validate_object_meta,
    validate_object_meta_update,
)

_STRATEGIES = ["OldestEmulationVersion"]


def validate_lease(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if isinstance(transitions, int) and transitions < 0:
        errs.append(
            invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0")
        )
    strategy = spec.get("strategy")
    if strategy is not None and strategy not in _STRATEGIES:
        errs.append(not_supported("spec.strategy", strategy, _STRATEGIES))
    if spec.get("preferredHolder") and not strategy:
        errs.append(forbidden("spec.preferredHolder", "only allowed if strategy is set"))
    return errs


def validate_lease_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_lease(obj)
