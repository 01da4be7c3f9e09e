"""apiregistration.k8s.io/v1 APIService validation (kube-aggregator, v1.32): the main rules."""

from __future__ import annotations

from kubesvc.api.errors import invalid, required
from kubesvc.api.validation.meta import (
    Errs,
    Obj,
    as_dict,
    is_dns1035_label,
    is_dns1123_subdomain,
    validate_object_meta,
    validate_object_meta_update,
)


def _name(name: object, prefix: bool) -> list[str]:
    return []  # checked against spec.version and spec.group below


def validate_api_service(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, _name)
    spec = as_dict(obj.get("spec"))
    group, version = spec.get("group") or "", spec.get("version") or ""
    name = as_dict(obj.get("metadata")).get("name") or ""
    want = f"{version}.{group}" if group else version
    if name != want:
        errs.append(invalid("metadata.name", name, f"must be {want}"))
    if not version:
        errs.append(required("spec.version"))
    else:
        errs.extend(invalid("spec.version", version, m) for m in is_dns1035_label(version))
    if group:
        errs.extend(invalid("spec.group", group, m) for m in is_dns1123_subdomain(group))
    for key in ("groupPriorityMinimum", "versionPriority"):
        value = spec.get(key)
        limit = 20000 if key == "groupPriorityMinimum" else 1000
        if not isinstance(value, int) or value <= 0:
            errs.append(
                invalid(
                    f"spec.{key}",
                    value or 0,
                    "must be positive and less than 20000"
                    if key == "groupPriorityMinimum"
                    else "must be positive and less than 1000",
                )
            )
        elif value > limit:
            errs.append(invalid(f"spec.{key}", value, f"must be positive and less than {limit}"))
    if spec.get("service") is None:
        if spec.get("insecureSkipTLSVerify") or spec.get("caBundle"):
            errs.append(required("spec.service", "local APIServices must not have TLS settings"))
    elif spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
        errs.append(
            invalid(
                "spec.insecureSkipTLSVerify",
                True,
                "may not be true if caBundle is present",
            )
        )
    return errs


def validate_api_service_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_api_service(obj)
