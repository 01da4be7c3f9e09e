"""Per-kind storage rules (upstream's registry strategies): what create and update reset,
which kinds count generations, and how deletion is staged."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from kubesvc.api.crd import objects as custom
from kubesvc.api.crd.kinds import CustomKind
from kubesvc.api.defaults import prepare_for_update as normalize_service_update
from kubesvc.api.kinds import Kind
from kubesvc.apiserver.services import patch_allocated_values

# kinds whose strategy sets metadata.generation and bumps it on spec changes
GENERATION_KINDS = {
    "Deployment",
    "ReplicaSet",
    "Ingress",
    "IngressClass",
    "EndpointSlice",
    "CustomResourceDefinition",
    "DaemonSet",
    "StatefulSet",
    "Job",
    "CronJob",
    "ReplicationController",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
}
# kinds whose PUT creates a missing object (AllowCreateOnUpdate)
CREATE_ON_UPDATE = {"Endpoints", "Event", "Lease", "EndpointSlice"}

_EMPTY_STATUS: dict[str, dict[str, Any]] = {
    "Service": {"loadBalancer": {}},
    "Ingress": {"loadBalancer": {}},
    "Deployment": {},
    "ReplicaSet": {"replicas": 0},
    "ReplicationController": {"replicas": 0},
    "DaemonSet": {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    },
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "Job": {},
    "CronJob": {},
    "HorizontalPodAutoscaler": {"desiredReplicas": 0},
    "PodDisruptionBudget": {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    },
    "ResourceQuota": {},
    "PersistentVolumeClaim": {},
    "PersistentVolume": {},
    "APIService": {},
    "ValidatingAdmissionPolicy": {},
}

# the labels a Job's generated selector and its pods carry (batch/v1 jobStrategy)
JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"


def prepare_for_create(kind: Kind, obj: dict[str, Any]) -> None:
    if isinstance(kind, CustomKind):
        custom.prepare_for_create(kind, obj)
        return
    if kind.kind == "CustomResourceDefinition":
        custom.crd_prepare_for_create(obj)
        return
    m = obj["metadata"]
    if kind.kind in GENERATION_KINDS:
        m["generation"] = 1
    else:
        m.pop("generation", None)
    if kind.kind in _EMPTY_STATUS:
        obj["status"] = copy.deepcopy(_EMPTY_STATUS[kind.kind])
    elif kind.kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}
    elif kind.kind == "Namespace":
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        obj["status"] = {"phase": "Active"}
    if kind.kind == "Job":
        generate_job_selector(obj)


def generate_job_selector(job: dict[str, Any]) -> None:
    """jobStrategy.PrepareForCreate: unless spec.manualSelector, the selector is the Job's
    uid and the pod template carries it and the Job's name."""
    spec = job.get("spec")
    if not isinstance(spec, dict) or spec.get("manualSelector") is True:
        return
    m = job["metadata"]
    uid, name = str(m.get("uid", "")), str(m.get("name", ""))
    template = spec.get("template")
    if not isinstance(template, dict):
        template = spec["template"] = {}
    tmeta = template.get("metadata")
    if not isinstance(tmeta, dict):
        tmeta = template["metadata"] = {}
    labels = tmeta.get("labels")
    if not isinstance(labels, dict):
        labels = tmeta["labels"] = {}
    labels[LEGACY_CONTROLLER_UID_LABEL] = uid
    labels[LEGACY_JOB_NAME_LABEL] = name
    labels[JOB_CONTROLLER_UID_LABEL] = uid
    labels[JOB_NAME_LABEL] = name
    if spec.get("selector") is None:
        spec["selector"] = {"matchLabels": {JOB_CONTROLLER_UID_LABEL: uid}}


def _qos_class(pod: dict[str, Any]) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        r.get("limits", {}).get(res)
        and r.get("requests", r.get("limits", {})).get(res) == r["limits"][res]
        for r in resources
        for res in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def prepare_for_update(
    kind: Kind, new: dict[str, Any], old: dict[str, Any], subresource: str
) -> None:
    m, om = new["metadata"], old["metadata"]
    # system fields never change through an update
    for name in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if name in om:
            m[name] = om[name]
        else:
            m.pop(name, None)
    if "generation" in om:
        m["generation"] = om["generation"]
    else:
        m.pop("generation", None)
    if subresource == "status":
        status = new.get("status")
        keep_meta = {k: m[k] for k in ("labels", "annotations", "managedFields") if k in m}
        new.clear()
        new.update(copy.deepcopy(old))
        new["metadata"].update(keep_meta)
        if status is not None:
            new["status"] = status
        else:
            new.pop("status", None)
    elif kind.has_status:
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
    if kind.kind == "CustomResourceDefinition" and subresource != "status":
        custom.crd_prepare_for_update(new, old)
    if kind.kind == "Namespace" and old.get("status", {}).get("phase") == "Terminating":
        new.setdefault("status", {})["phase"] = "Terminating"


def service_update_fixups(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Upstream's beginUpdate + PrepareForUpdate: keep allocated values the client omitted,
    sync clusterIP/clusterIPs, drop fields the new type does not use."""
    patch_allocated_values(new, old)
    normalize_service_update("Service", new, old)


def bump_generation(kind: Kind, new: dict[str, Any], old: dict[str, Any]) -> None:
    if isinstance(kind, CustomKind):
        custom.bump_generation(kind, new, old)
        return
    if kind.kind not in GENERATION_KINDS:
        return
    if _spec_part(kind, new) != _spec_part(kind, old):
        new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1


def _spec_part(kind: Kind, obj: dict[str, Any]) -> Any:
    if kind.kind == "EndpointSlice":
        return {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    return obj.get("spec")


def allow_create_on_update(kind: Kind) -> bool:
    return kind.kind in CREATE_ON_UPDATE and not isinstance(kind, CustomKind)


def default_propagation(kind: Kind) -> str:
    # upstream orphans the dependents of a ReplicaSet/Deployment only for old API groups;
    # apps/v1 and everything else default to background deletion
    return "Background"


def grace_period(kind: Kind, obj: dict[str, Any], requested: Any) -> int:
    if kind.kind != "Pod" or isinstance(kind, CustomKind):
        return 0
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    if requested is not None:
        try:
            return max(0, int(requested))
        except (TypeError, ValueError):
            return 0
    value = spec.get("terminationGracePeriodSeconds")
    return int(value) if value is not None else 30


def deletion_time(grace: int) -> str:
    when = datetime.now(UTC) + timedelta(seconds=grace)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def finalize_now(kind: Kind, obj: dict[str, Any]) -> bool:
    """An object marked for deletion whose last finalizer went away is removed, unless it is a
    pod still in its grace period (the node agent removes it) or a namespace being emptied."""
    if isinstance(kind, CustomKind):
        return True
    if kind.kind == "Pod":
        return int(obj["metadata"].get("deletionGracePeriodSeconds") or 0) == 0
    if kind.kind == "Namespace":
        return not (obj.get("spec") or {}).get("finalizers")
    return True
