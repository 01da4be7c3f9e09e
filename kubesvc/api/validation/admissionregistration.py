"""admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy and its Binding (upstream
pkg/apis/admissionregistration/validation, v1.32): the structural rules. The CEL
expressions are stored, not compiled: kubesvc does not enforce these policies."""

from __future__ import annotations

from kubesvc.api.errors import duplicate, forbidden, invalid, not_supported, required
from kubesvc.api.validation.meta import (
    Errs,
    Obj,
    as_dict,
    as_list,
    name_is_dns_subdomain,
    validate_object_meta,
    validate_object_meta_update,
)

_FAILURE_POLICIES = ["Fail", "Ignore"]
_REASONS = ["Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"]
_ACTIONS = ["Deny", "Warn", "Audit"]
_MATCH_POLICIES = ["Exact", "Equivalent"]


def _match_resources(match: Obj, path: str, rules_required: bool) -> Errs:
    errs: Errs = []
    policy = match.get("matchPolicy")
    if policy is not None and policy not in _MATCH_POLICIES:
        errs.append(not_supported(f"{path}.matchPolicy", policy, _MATCH_POLICIES))
    if rules_required and not as_list(match.get("resourceRules")):
        errs.append(required(f"{path}.resourceRules", ""))
    for i, rule in enumerate(as_list(match.get("resourceRules"))):
        at = f"{path}.resourceRules[{i}]"
        rule = as_dict(rule)
        for key in ("apiGroups", "apiVersions", "operations", "resources"):
            if not as_list(rule.get(key)):
                errs.append(required(f"{at}.{key}", ""))
    return errs


def validate_validating_admission_policy(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    failure = spec.get("failurePolicy")
    if failure is not None and failure not in _FAILURE_POLICIES:
        errs.append(not_supported("spec.failurePolicy", failure, _FAILURE_POLICIES))
    validations = as_list(spec.get("validations"))
    if not validations and not as_list(spec.get("auditAnnotations")):
        errs.append(
            required(
                "spec.validations", "validations or auditAnnotations must contain at least one item"
            )
        )
    for i, v in enumerate(validations):
        at = f"spec.validations[{i}]"
        v = as_dict(v)
        if not str(v.get("expression") or "").strip():
            errs.append(required(f"{at}.expression", ""))
        message = v.get("message")
        if isinstance(message, str) and ("\n" in message or "\r" in message):
            errs.append(invalid(f"{at}.message", message, "message must not contain line breaks"))
        reason = v.get("reason")
        if reason is not None and reason not in _REASONS:
            errs.append(not_supported(f"{at}.reason", reason, _REASONS))
    match = spec.get("matchConstraints")
    if match is None:
        errs.append(required("spec.matchConstraints", ""))
    else:
        errs.extend(_match_resources(as_dict(match), "spec.matchConstraints", True))
    return errs


def validate_validating_admission_policy_update(new: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(new, old) + validate_validating_admission_policy(new)


def validate_validating_admission_policy_binding(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    if not spec.get("policyName"):
        errs.append(required("spec.policyName", ""))
    actions = as_list(spec.get("validationActions"))
    if not actions:
        errs.append(
            required("spec.validationActions", "at least one validation action is required")
        )
    seen: set[str] = set()
    for i, action in enumerate(actions):
        at = f"spec.validationActions[{i}]"
        if action not in _ACTIONS:
            errs.append(not_supported(at, action, _ACTIONS))
        elif action in seen:
            errs.append(duplicate(at, action))
        seen.add(str(action))
    if {"Deny", "Warn"} <= seen:
        errs.append(
            forbidden(
                "spec.validationActions",
                'must not contain both "Deny" and "Warn" (repeating the same validation failure '
                "information in the API response and headers serves no purpose)",
            )
        )
    match = spec.get("matchResources")
    if match is not None:
        errs.extend(_match_resources(as_dict(match), "spec.matchResources", False))
    return errs


def validate_validating_admission_policy_binding_update(new: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(new, old) + validate_validating_admission_policy_binding(new)
