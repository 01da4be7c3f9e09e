"""storage.k8s.io/v1 StorageClass validation (pkg/apis/storage/validation, v1.32)."""

from __future__ import annotations

from kubesvc.api.errors import forbidden, invalid, not_supported, required
from kubesvc.api.validation.meta import (
    Errs,
    Obj,
    as_dict,
    is_qualified_name,
    name_is_dns_subdomain,
    validate_object_meta,
    validate_object_meta_update,
)

_RECLAIM = ["Delete", "Retain"]
_BINDING = ["Immediate", "WaitForFirstConsumer"]


def validate_storage_class(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, name_is_dns_subdomain)
    provisioner = obj.get("provisioner")
    if not provisioner:
        errs.append(required("provisioner"))
    elif isinstance(provisioner, str):
        errs.extend(
            invalid("provisioner", provisioner, m) for m in is_qualified_name(provisioner.lower())
        )
    policy = obj.get("reclaimPolicy")
    if policy is not None and policy not in _RECLAIM:
        errs.append(not_supported("reclaimPolicy", policy, _RECLAIM))
    mode = obj.get("volumeBindingMode")
    if mode is None:
        errs.append(required("volumeBindingMode"))
    elif mode not in _BINDING:
        errs.append(not_supported("volumeBindingMode", mode, _BINDING))
    if len(as_dict(obj.get("parameters"))) > 512:
        errs.append(
            invalid("parameters", len(obj["parameters"]), "must have at most 512 parameters")
        )
    return errs


def validate_storage_class_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old) + validate_storage_class(obj)
    for key, what in (
        ("parameters", "parameters"),
        ("provisioner", "provisioner"),
        ("reclaimPolicy", "reclaimPolicy"),
        ("volumeBindingMode", "volumeBindingMode"),
    ):
        if obj.get(key) != old.get(key):
            errs.append(forbidden(key, f"updates to {what} are forbidden."))
    return errs
