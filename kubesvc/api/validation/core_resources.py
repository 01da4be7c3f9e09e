"""core/v1 ReplicationController, ServiceAccount, ResourceQuota, LimitRange,
PersistentVolumeClaim and PersistentVolume validation (pkg/apis/core/validation, v1.32):
the main rules, with upstream's field paths and messages."""

from __future__ import annotations

from typing import Any

from kubesvc.api.errors import GoLiteral, forbidden, invalid, not_supported, required
from kubesvc.api.validation.core import validate_pod_template_spec
from kubesvc.api.validation.meta import (
    Errs,
    Obj,
    as_dict,
    as_list,
    go_string_map,
    name_is_dns_subdomain,
    nonnegative,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
)

# -- ReplicationController ----------------------------------------------------------------------


def _rc_spec(spec: Obj) -> Errs:
    errs = nonnegative("spec.replicas", spec.get("replicas", 0))
    errs.extend(nonnegative("spec.minReadySeconds", spec.get("minReadySeconds", 0)))
    selector = as_dict(spec.get("selector"))
    if not selector:
        errs.append(required("spec.selector"))
    else:
        errs.extend(validate_labels(selector, "spec.selector"))
    template = spec.get("template")
    if template is None:
        errs.append(required("spec.template"))
        return errs
    template = as_dict(template)
    labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        errs.append(
            invalid(
                "spec.template.metadata.labels",
                go_string_map(labels),
                "`selector` does not match template `labels`",
            )
        )
    errs.extend(validate_pod_template_spec(template, "spec.template"))
    policy = as_dict(template.get("spec")).get("restartPolicy")
    if policy != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", policy or "", ["Always"]))
    return errs


def validate_replication_controller(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    return errs + _rc_spec(as_dict(obj.get("spec")))


def validate_replication_controller_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + _rc_spec(as_dict(obj.get("spec")))


def validate_counted_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    for key, value in as_dict(obj.get("status")).items():
        if isinstance(value, int) and not isinstance(value, bool):
            errs.extend(nonnegative(f"status.{key}", value))
    return errs


# -- ServiceAccount -----------------------------------------------------------------------------


def validate_service_account(obj: Obj) -> Errs:
    return validate_object_meta(obj, True, name_is_dns_subdomain)


def validate_service_account_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_service_account(obj)


# -- ResourceQuota and LimitRange ---------------------------------------------------------------

_QUOTA_SCOPES = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
]


def _negative_quantity(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("-")


def _quantities(values: Any, path: str) -> Errs:
    errs: Errs = []
    for name, value in as_dict(values).items():
        if _negative_quantity(value) or (isinstance(value, (int, float)) and value < 0):
            errs.append(invalid(f"{path}[{name}]", value, "must be greater than or equal to 0"))
    return errs


def validate_resource_quota(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    errs.extend(_quantities(spec.get("hard"), "spec.hard"))
    for i, scope in enumerate(as_list(spec.get("scopes"))):
        if scope not in _QUOTA_SCOPES:
            errs.append(not_supported(f"spec.scopes[{i}]", scope, _QUOTA_SCOPES))
    return errs


def validate_resource_quota_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_resource_quota(obj)


def validate_resource_quota_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    status = as_dict(obj.get("status"))
    errs.extend(_quantities(status.get("hard"), "status.hard"))
    errs.extend(_quantities(status.get("used"), "status.used"))
    return errs


_LIMIT_TYPES = ["Pod", "Container", "PersistentVolumeClaim"]


def validate_limit_range(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    for i, item in enumerate(as_list(as_dict(obj.get("spec")).get("limits"))):
        item = as_dict(item)
        path = f"spec.limits[{i}]"
        kind = item.get("type")
        if not kind:
            errs.append(required(f"{path}.type"))
        elif kind not in _LIMIT_TYPES:
            errs.append(not_supported(f"{path}.type", kind, _LIMIT_TYPES))
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            errs.extend(_quantities(item.get(key), f"{path}.{key}"))
        if kind == "Pod" and (item.get("default") or item.get("defaultRequest")):
            errs.append(forbidden(f"{path}.default", "may not be specified when `type` is 'Pod'"))
    return errs


def validate_limit_range_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_limit_range(obj)


# -- PersistentVolumeClaim and PersistentVolume -------------------------------------------------

_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
_VOLUME_MODES = ["Block", "Filesystem"]
_RECLAIM = ["Delete", "Recycle", "Retain"]
_PV_SOURCES = (
    "hostPath",
    "local",
    "nfs",
    "csi",
    "iscsi",
    "fc",
    "rbd",
    "cephfs",
    "cinder",
    "glusterfs",
    "flexVolume",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "photonPersistentDisk",
    "flocker",
)


def _access_modes(modes: Any, path: str) -> Errs:
    modes = as_list(modes)
    if not modes:
        return [required(path, "at least 1 access mode is required")]
    errs: Errs = []
    for mode in modes:
        if mode not in _ACCESS_MODES:
            errs.append(not_supported(path, mode, _ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def validate_pvc_spec(spec: Obj, path: str) -> Errs:
    errs = _access_modes(spec.get("accessModes"), f"{path}.accessModes")
    requests = as_dict(as_dict(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        errs.append(required(f"{path}.resources[storage]"))
    else:
        errs.extend(_quantities({"storage": requests["storage"]}, f"{path}.resources"))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in _VOLUME_MODES:
        errs.append(not_supported(f"{path}.volumeMode", mode, _VOLUME_MODES))
    return errs


def validate_persistent_volume_claim(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    return errs + validate_pvc_spec(as_dict(obj.get("spec")), "spec")


def validate_persistent_volume_claim_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old) + validate_persistent_volume_claim(obj)
    spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))

    def fixed(s: Obj) -> Obj:
        rest = {k: v for k, v in s.items() if k not in ("resources", "volumeAttributesClassName")}
        if not old_spec.get("volumeName"):
            rest.pop("volumeName", None)  # binding sets it once
        return rest

    if fixed(spec) != fixed(old_spec):
        errs.append(
            forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
            )
        )
    return errs


def validate_persistent_volume(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    errs.extend(_access_modes(spec.get("accessModes"), "spec.accessModes"))
    capacity = as_dict(spec.get("capacity"))
    if not capacity:
        errs.append(required("spec.capacity"))
    if "storage" not in capacity or len(capacity) > 1:
        errs.append(not_supported("spec.capacity", GoLiteral(str(capacity)), ["storage"]))
    errs.extend(_quantities(capacity, "spec.capacity"))
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy is not None and policy not in _RECLAIM:
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, _RECLAIM))
    sources = [s for s in _PV_SOURCES if spec.get(s) is not None]
    if not sources:
        errs.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        errs.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    host_path = as_dict(spec.get("hostPath"))
    if spec.get("hostPath") is not None and not host_path.get("path"):
        errs.append(required("spec.hostPath.path"))
    return errs


def validate_persistent_volume_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_persistent_volume(obj)
