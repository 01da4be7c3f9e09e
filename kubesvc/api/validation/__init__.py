"""Validation for every served kind, with upstream Kubernetes field paths and messages.

`validate(kind, obj)` is the registry strategy's Validate; with `old` it is ValidateUpdate.
`validate_status_update` is the status strategy's ValidateUpdate. Objects must already be
defaulted (kubesvc.api.defaults).
"""

from __future__ import annotations

from collections.abc import Callable

from kubesvc.api.errors import FieldError, invalid
from kubesvc.api.validation import (
    admissionregistration,
    apiregistration,
    apps,
    batch,
    coordination,
    core,
    core_resources,
    discovery,
    networking,
    policy,
    rbac,
    storage,
)
from kubesvc.api.validation.meta import (
    Obj,
    is_path_segment_name,
    validate_object_meta_update,
)

Create = Callable[[Obj], list[FieldError]]
Update = Callable[[Obj, Obj], list[FieldError]]


def _crd(name: str) -> Callable[..., list[FieldError]]:
    """A CustomResourceDefinition check of kubesvc.api.crd.validation (imported when first
    used: that module builds on this package's meta helpers)."""

    def check(*args: Obj) -> list[FieldError]:
        from kubesvc.api.crd import validation

        return getattr(validation, name)(*args)  # type: ignore[no-any-return]

    return check


def _meta_then(create: Create) -> Update:
    """The usual ValidateXUpdate: metadata update rules, then the full create rules."""

    def update(obj: Obj, old: Obj) -> list[FieldError]:
        return validate_object_meta_update(obj, old) + create(obj)

    return update


_CREATE: dict[str, Create] = {
    "Namespace": core.validate_namespace,
    "Pod": core.validate_pod,
    "Service": core.validate_service,
    "Endpoints": core.validate_endpoints,
    "Secret": core.validate_secret,
    "ConfigMap": core.validate_config_map,
    "Node": core.validate_node,
    "Event": core.validate_event,
    "Deployment": apps.validate_deployment,
    "ReplicaSet": apps.validate_replica_set,
    "EndpointSlice": discovery.validate_endpoint_slice,
    "Ingress": networking.validate_ingress,
    "IngressClass": networking.validate_ingress_class,
    "Lease": coordination.validate_lease,
    "CustomResourceDefinition": _crd("validate_crd"),
    "ReplicationController": core_resources.validate_replication_controller,
    "PersistentVolumeClaim": core_resources.validate_persistent_volume_claim,
    "PersistentVolume": core_resources.validate_persistent_volume,
    "ServiceAccount": core_resources.validate_service_account,
    "ResourceQuota": core_resources.validate_resource_quota,
    "LimitRange": core_resources.validate_limit_range,
    "DaemonSet": apps.validate_daemon_set,
    "StatefulSet": apps.validate_stateful_set,
    "Job": batch.validate_job,
    "CronJob": batch.validate_cron_job,
    "HorizontalPodAutoscaler": policy.validate_hpa,
    "PodDisruptionBudget": policy.validate_pod_disruption_budget,
    "NetworkPolicy": networking.validate_network_policy,
    "PriorityClass": policy.validate_priority_class,
    "StorageClass": storage.validate_storage_class,
    "Role": rbac.validate_role,
    "ClusterRole": rbac.validate_cluster_role,
    "RoleBinding": rbac.validate_role_binding,
    "ClusterRoleBinding": rbac.validate_cluster_role_binding,
    "APIService": apiregistration.validate_api_service,
    "ValidatingAdmissionPolicy": admissionregistration.validate_validating_admission_policy,
    "ValidatingAdmissionPolicyBinding": (
        admissionregistration.validate_validating_admission_policy_binding
    ),
}

_UPDATE: dict[str, Update] = {
    # upstream's ValidateNamespaceUpdate checks metadata only
    "Namespace": validate_object_meta_update,
    "Pod": core.validate_pod_update,
    "Service": core.validate_service_update,
    "Endpoints": _meta_then(core.validate_endpoints),
    "Secret": core.validate_secret_update,
    "ConfigMap": core.validate_config_map_update,
    "Node": core.validate_node_update,
    "Event": core.validate_event_update,
    "Deployment": apps.validate_deployment_update,
    "ReplicaSet": apps.validate_replica_set_update,
    "EndpointSlice": discovery.validate_endpoint_slice_update,
    "Ingress": networking.validate_ingress_update,
    "IngressClass": networking.validate_ingress_class_update,
    "Lease": coordination.validate_lease_update,
    "CustomResourceDefinition": _crd("validate_crd_update"),
    "ReplicationController": core_resources.validate_replication_controller_update,
    "PersistentVolumeClaim": core_resources.validate_persistent_volume_claim_update,
    "PersistentVolume": core_resources.validate_persistent_volume_update,
    "ServiceAccount": core_resources.validate_service_account_update,
    "ResourceQuota": core_resources.validate_resource_quota_update,
    "LimitRange": core_resources.validate_limit_range_update,
    "DaemonSet": apps.validate_daemon_set_update,
    "StatefulSet": apps.validate_stateful_set_update,
    "Job": batch.validate_job_update,
    "CronJob": batch.validate_cron_job_update,
    "HorizontalPodAutoscaler": policy.validate_hpa_update,
    "PodDisruptionBudget": policy.validate_pod_disruption_budget_update,
    "NetworkPolicy": networking.validate_network_policy_update,
    "PriorityClass": policy.validate_priority_class_update,
    "StorageClass": storage.validate_storage_class_update,
    "Role": rbac.validate_role_update,
    "ClusterRole": rbac.validate_cluster_role_update,
    "RoleBinding": rbac.validate_role_binding_update,
    "ClusterRoleBinding": rbac.validate_cluster_role_binding_update,
    "APIService": apiregistration.validate_api_service_update,
    "ValidatingAdmissionPolicy": (
        admissionregistration.validate_validating_admission_policy_update
    ),
    "ValidatingAdmissionPolicyBinding": (
        admissionregistration.validate_validating_admission_policy_binding_update
    ),
}

_STATUS: dict[str, Update] = {
    "Namespace": core.validate_namespace_status,
    "Pod": core.validate_pod_status,
    "Service": core.validate_service_status,
    "Node": core.validate_node_update,
    "Deployment": apps.validate_deployment_status,
    "ReplicaSet": apps.validate_replica_set_status,
    "Ingress": networking.validate_ingress_status,
    "CustomResourceDefinition": _crd("validate_crd_status"),
    "ReplicationController": core_resources.validate_counted_status,
    "ResourceQuota": core_resources.validate_resource_quota_status,
    "DaemonSet": apps.validate_workload_status,
    "StatefulSet": apps.validate_workload_status,
    "Job": batch.validate_job_status,
    "PodDisruptionBudget": policy.validate_pod_disruption_budget_status,
}


def validate(kind: str, obj: Obj, old: Obj | None = None) -> list[FieldError]:
    """Errors for a create (`old` is None) or an update of `kind`; empty when valid."""
    if old is None:
        errs = _CREATE[kind](obj)
        if not errs:
            errs = _path_segment_name(obj)
        return errs
    return _UPDATE[kind](obj, old)


def validate_status_update(kind: str, obj: Obj, old: Obj) -> list[FieldError]:
    """Errors for a write to the status subresource (metadata rules plus status rules)."""
    check = _STATUS.get(kind, validate_object_meta_update)
    return check(obj, old)


def _path_segment_name(obj: Obj) -> list[FieldError]:
    """The generic store's last check on create: the name must be usable in a URL path."""
    meta = obj.get("metadata")
    name = meta.get("name", "") if isinstance(meta, dict) else ""
    return [invalid("metadata.name", name, m) for m in is_path_segment_name(str(name or ""))]


__all__ = ["validate", "validate_status_update"]
