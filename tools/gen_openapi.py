#!/usr/bin/env python3
"""Generate the OpenAPI v3 documents kubesvc serves under /openapi/v3.

The schemas come from the pydantic models of the official Python client
(`pip install kubernetes`): every field's JSON name, type annotation and
description.  Facts the client does not carry (upstream schema names and
groups, list-type and patch-strategy markers, Quantity/MicroTime/int64
formats, descriptions of fields that reference other types) are kept in the
tables below.

Output: kubesvc/api/openapi_data/<api__v1 | apis__<group>__<version>>.json.gz

Run:  python tools/gen_openapi.py [OUT_DIR]
"""

from __future__ import annotations

import datetime
import gzip
import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client.models as models
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubesvc.api.catalog import BUILTIN as KINDS  # noqa: E402
from kubesvc.api.kinds import Kind  # noqa: E402

OUT_DIR = ROOT / "kubesvc" / "api" / "openapi_data"

Schema = dict[str, Any]
ModelCls = type[BaseModel]

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
INTSTR = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
TIME = f"{META}.Time"
MICROTIME = f"{META}.MicroTime"
FIELDSV1 = f"{META}.FieldsV1"
RAWEXT = "io.k8s.apimachinery.pkg.runtime.RawExtension"
PATCH = f"{META}.Patch"

# Package of each API group's types (upstream schema name prefix).
GROUP_PACKAGE = {
    "": "io.k8s.api.core.v1",
    "apps": "io.k8s.api.apps.v1",
    "discovery.k8s.io": "io.k8s.api.discovery.v1",
    "networking.k8s.io": "io.k8s.api.networking.v1",
    "coordination.k8s.io": "io.k8s.api.coordination.v1",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
    "batch": "io.k8s.api.batch.v1",
    "autoscaling": "io.k8s.api.autoscaling.v2",
    "policy": "io.k8s.api.policy.v1",
    "scheduling.k8s.io": "io.k8s.api.scheduling.v1",
    "storage.k8s.io": "io.k8s.api.storage.v1",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac.v1",
    "apiregistration.k8s.io": "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1",
    "admissionregistration.k8s.io": "io.k8s.api.admissionregistration.v1",
}

# JSONSchemaProps fields that hold any JSON value (a schema or a bool, a schema or a list of
# schemas, a default or an example): upstream publishes them as schemas without a type.
ANY_JSON_FIELDS = {
    ("V1JSONSchemaProps", name)
    for name in ("additionalItems", "additionalProperties", "items", "default", "example")
}

# Python client class for each served kind (and its list).
KIND_CLASS = {"Event": "CoreV1Event", "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler"}

# Meta types, assigned to the meta package before any kind is walked.
META_CLASSES = (
    "V1ObjectMeta",
    "V1ListMeta",
    "V1LabelSelector",
    "V1Condition",
    "V1Status",
    "V1DeleteOptions",
    "V1APIResourceList",
    "V1WatchEvent",
)

# Core types reached first from apps kinds: walk them as core roots.
EXTRA_CORE_ROOTS = ("V1PodTemplateSpec",)

# Hand-written leaf schemas (upstream v3 shapes).
LEAF_SCHEMAS: dict[str, Schema] = {
    INTSTR: {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in "
        "JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  "
        "This allows you to have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
    QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number. It provides "
        "convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and "
        "AsInt64() accessors.\n\nThe serialization format is:\n\n``` <quantity>        ::= "
        '<signedNumber><suffix>\n\n\t(Note that <suffix> may be empty, from the "" case in '
        "<decimalSI>.)\n\n<digit>           ::= 0 | 1 | ... | 9 <digits>          ::= <digit> | "
        "<digit><digits> <number>          ::= <digits> | <digits>.<digits> | <digits>. | "
        '.<digits> <sign>            ::= "+" | "-" <signedNumber>    ::= <number> | '
        "<sign><number> <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI> "
        "<binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei\n\n\t(International System of units; "
        'See: http://physics.nist.gov/cuu/Units/binary.html)\n\n<decimalSI>       ::= m | "" | '
        "k | M | G | T | P | E\n\n\t(Note that 1024 = 1Ki but 1000 = 1k; I didn't choose the "
        'capitalization.)\n\n<decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber> '
        "```\n\nNo matter which of the three exponent forms is used, no quantity may represent "
        "a number greater than 2^63-1 in magnitude, nor may it have more than 3 decimal places. "
        "Numbers larger or more precise will be capped or rounded up. (E.g.: 0.1m will rounded "
        "up to 1m.) This may be extended in the future if we require larger or smaller "
        "quantities.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
    TIME: {
        "description": "Time is a wrapper around time.Time which supports correct marshaling to "
        "YAML and JSON.  Wrappers are provided for many of the factory methods that the time "
        "package offers.",
        "format": "date-time",
        "type": "string",
    },
    MICROTIME: {
        "description": "MicroTime is version of Time with microsecond level precision.",
        "format": "date-time",
        "type": "string",
    },
    FIELDSV1: {
        "description": "FieldsV1 stores a set of fields in a data structure like a Trie, in "
        "JSON format.\n\nEach key is either a '.' representing the field itself, and will always "
        "map to an empty set, or a string representing a sub-field or item. The string will "
        "follow one of these four formats: 'f:<name>', where <name> is the name of a field in a "
        "struct, or key in a map 'v:<value>', where <value> is the exact json formatted value "
        "of a list item 'i:<index>', where <index> is position of a item in a list 'k:<keys>', "
        "where <keys> is a map of  a list item's key fields to their unique values If a key "
        "maps to an empty Fields value, the field that key represents is part of the set.\n\n"
        "The exact format is defined in sigs.k8s.io/structured-merge-diff",
        "type": "object",
    },
    RAWEXT: {
        "description": "RawExtension is used to hold extensions in external versions.",
        "type": "object",
    },
    PATCH: {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes "
        "PATCH request body.",
        "type": "object",
    },
}

# (client class, json field) -> named leaf schema replacing the client's plain type.
FIELD_REFS: dict[tuple[str, str], str] = {
    ("V1ManagedFieldsEntry", "fieldsV1"): FIELDSV1,
    ("V1WatchEvent", "object"): RAWEXT,
    ("CoreV1Event", "eventTime"): MICROTIME,
    ("CoreV1EventSeries", "lastObservedTime"): MICROTIME,
    ("V1LeaseSpec", "acquireTime"): MICROTIME,
    ("V1LeaseSpec", "renewTime"): MICROTIME,
    ("V1EmptyDirVolumeSource", "sizeLimit"): QUANTITY,
    ("V2MetricTarget", "value"): QUANTITY,
    ("V2MetricTarget", "averageValue"): QUANTITY,
    ("V2MetricValueStatus", "value"): QUANTITY,
    ("V2MetricValueStatus", "averageValue"): QUANTITY,
    ("V1ResourceFieldSelector", "divisor"): QUANTITY,
}

# (client class, json field): map[string]Quantity.
QUANTITY_MAPS = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1VolumeResourceRequirements", "limits"),
    ("V1VolumeResourceRequirements", "requests"),
    ("V1PodSpec", "overhead"),
    ("V1NodeStatus", "capacity"),
    ("V1NodeStatus", "allocatable"),
    ("V1ContainerStatus", "allocatedResources"),
    ("V1PersistentVolumeClaimStatus", "capacity"),
    ("V1PersistentVolumeClaimStatus", "allocatedResources"),
    ("V1PersistentVolumeSpec", "capacity"),
    ("V1ResourceQuotaSpec", "hard"),
    ("V1ResourceQuotaStatus", "hard"),
    ("V1ResourceQuotaStatus", "used"),
    ("V1LimitRangeItem", "max"),
    ("V1LimitRangeItem", "min"),
    ("V1LimitRangeItem", "default"),
    ("V1LimitRangeItem", "defaultRequest"),
    ("V1LimitRangeItem", "maxLimitRequestRatio"),
}

INT64_FIELDS = {
    ("V1ObjectMeta", "generation"),
    ("V1ObjectMeta", "deletionGracePeriodSeconds"),
    ("V1ListMeta", "remainingItemCount"),
    ("V1DeleteOptions", "gracePeriodSeconds"),
    ("V1Condition", "observedGeneration"),
    ("V1PodSpec", "activeDeadlineSeconds"),
    ("V1PodSpec", "terminationGracePeriodSeconds"),
    ("V1Probe", "terminationGracePeriodSeconds"),
    ("V1PodSecurityContext", "runAsUser"),
    ("V1PodSecurityContext", "runAsGroup"),
    ("V1PodSecurityContext", "fsGroup"),
    ("V1PodSecurityContext", "supplementalGroups"),
    ("V1SecurityContext", "runAsUser"),
    ("V1SecurityContext", "runAsGroup"),
    ("V1Toleration", "tolerationSeconds"),
    ("V1ServiceAccountTokenProjection", "expirationSeconds"),
    ("V1DeploymentStatus", "observedGeneration"),
    ("V1ReplicaSetStatus", "observedGeneration"),
    ("V1PodStatus", "observedGeneration"),
    ("V1PodCondition", "observedGeneration"),
    ("V1ContainerUser", "uid"),
    ("V1ContainerUser", "gid"),
    ("V1LinuxContainerUser", "uid"),
    ("V1LinuxContainerUser", "gid"),
    ("V1LinuxContainerUser", "supplementalGroups"),
    ("V1ContainerImage", "sizeBytes"),
    ("V1JobSpec", "activeDeadlineSeconds"),
    ("V1CronJobSpec", "startingDeadlineSeconds"),
    ("V1DaemonSetStatus", "observedGeneration"),
    ("V1StatefulSetStatus", "observedGeneration"),
    ("V1ReplicationControllerStatus", "observedGeneration"),
    ("V1PodDisruptionBudgetStatus", "observedGeneration"),
    ("V2HorizontalPodAutoscalerStatus", "observedGeneration"),
}


def _map_list(*keys: str, merge: str | None = None, strategy: str = "merge") -> Schema:
    out: Schema = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}
    out["x-kubernetes-patch-merge-key"] = merge or keys[0]
    out["x-kubernetes-patch-strategy"] = strategy
    return out


ATOMIC: Schema = {"x-kubernetes-list-type": "atomic"}
SET: Schema = {"x-kubernetes-list-type": "set"}
CONDITIONS = _map_list("type")
CONTAINER_LISTS: dict[str, Schema] = {
    "ports": _map_list("containerPort", "protocol"),
    "env": _map_list("name"),
    "envFrom": ATOMIC,
    "volumeMounts": _map_list("mountPath"),
    "volumeDevices": _map_list("devicePath"),
    "command": ATOMIC,
    "args": ATOMIC,
    "resizePolicy": ATOMIC,
}

# (client class, json field) -> upstream list / patch markers.
LIST_EXTENSIONS: dict[tuple[str, str], Schema] = {
    ("V1ObjectMeta", "finalizers"): {
        "x-kubernetes-list-type": "set",
        "x-kubernetes-patch-strategy": "merge",
    },
    ("V1ObjectMeta", "ownerReferences"): _map_list("uid"),
    ("V1ObjectMeta", "managedFields"): ATOMIC,
    ("V1LabelSelector", "matchExpressions"): ATOMIC,
    ("V1LabelSelectorRequirement", "values"): ATOMIC,
    ("V1PodSpec", "volumes"): _map_list("name", strategy="merge,retainKeys"),
    ("V1PodSpec", "containers"): _map_list("name"),
    ("V1PodSpec", "initContainers"): _map_list("name"),
    ("V1PodSpec", "ephemeralContainers"): _map_list("name"),
    ("V1PodSpec", "imagePullSecrets"): _map_list("name"),
    ("V1PodSpec", "hostAliases"): _map_list("ip"),
    ("V1PodSpec", "tolerations"): ATOMIC,
    ("V1PodSpec", "readinessGates"): ATOMIC,
    ("V1PodSpec", "topologySpreadConstraints"): _map_list(
        "topologyKey", "whenUnsatisfiable", merge="topologyKey"
    ),
    ("V1PodSpec", "resourceClaims"): _map_list("name", strategy="merge,retainKeys"),
    ("V1PodSpec", "schedulingGates"): _map_list("name"),
    ("V1PodStatus", "conditions"): CONDITIONS,
    ("V1PodStatus", "podIPs"): _map_list("ip"),
    ("V1PodStatus", "hostIPs"): _map_list("ip"),
    ("V1PodStatus", "containerStatuses"): ATOMIC,
    ("V1PodStatus", "initContainerStatuses"): ATOMIC,
    ("V1PodStatus", "ephemeralContainerStatuses"): ATOMIC,
    ("V1ServiceSpec", "ports"): _map_list("port", "protocol", merge="port"),
    ("V1ServiceSpec", "clusterIPs"): ATOMIC,
    ("V1ServiceSpec", "externalIPs"): ATOMIC,
    ("V1ServiceSpec", "ipFamilies"): ATOMIC,
    ("V1ServiceSpec", "loadBalancerSourceRanges"): ATOMIC,
    ("V1ServiceStatus", "conditions"): CONDITIONS,
    ("V1LoadBalancerStatus", "ingress"): ATOMIC,
    ("V1LoadBalancerIngress", "ports"): ATOMIC,
    ("V1NodeSpec", "podCIDRs"): {
        "x-kubernetes-list-type": "set",
        "x-kubernetes-patch-strategy": "merge",
    },
    ("V1NodeSpec", "taints"): ATOMIC,
    ("V1NodeStatus", "conditions"): CONDITIONS,
    ("V1NodeStatus", "addresses"): CONDITIONS,
    ("V1NodeStatus", "images"): ATOMIC,
    ("V1NodeStatus", "volumesInUse"): ATOMIC,
    ("V1NodeStatus", "volumesAttached"): ATOMIC,
    ("V1NamespaceSpec", "finalizers"): ATOMIC,
    ("V1NamespaceStatus", "conditions"): CONDITIONS,
    ("V1Endpoints", "subsets"): ATOMIC,
    ("V1EndpointSubset", "addresses"): ATOMIC,
    ("V1EndpointSubset", "notReadyAddresses"): ATOMIC,
    ("V1EndpointSubset", "ports"): ATOMIC,
    ("V1DeploymentStatus", "conditions"): CONDITIONS,
    ("V1ReplicaSetStatus", "conditions"): CONDITIONS,
    ("V1EndpointSlice", "endpoints"): ATOMIC,
    ("V1EndpointSlice", "ports"): ATOMIC,
    ("V1Endpoint", "addresses"): SET,
    ("V1EndpointHints", "forZones"): ATOMIC,
    ("V1EndpointHints", "forNodes"): ATOMIC,
    ("V1IngressSpec", "rules"): ATOMIC,
    ("V1IngressSpec", "tls"): ATOMIC,
    ("V1IngressTLS", "hosts"): ATOMIC,
    ("V1HTTPIngressRuleValue", "paths"): ATOMIC,
    ("V1IngressLoadBalancerStatus", "ingress"): ATOMIC,
    ("V1IngressLoadBalancerIngress", "ports"): ATOMIC,
    ("V1PodSecurityContext", "supplementalGroups"): ATOMIC,
    ("V1PodSecurityContext", "sysctls"): ATOMIC,
    ("V1ResourceRequirements", "claims"): {
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    },
}
for _cls in ("V1Container", "V1EphemeralContainer"):
    for _field, _ext in CONTAINER_LISTS.items():
        LIST_EXTENSIONS[(_cls, _field)] = _ext

STD_DOC = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
OBJECT_META_DOC = f"Standard object's metadata. More info: {STD_DOC}#metadata"
LIST_META_DOC = f"Standard list metadata. More info: {STD_DOC}#types-kinds"

# Descriptions of reference-typed fields (the client drops them).
REF_DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("V1Pod", "spec"): f"Specification of the desired behavior of the pod. More info: "
    f"{STD_DOC}#spec-and-status",
    ("V1Pod", "status"): "Most recently observed status of the pod. This data may not be up to "
    f"date. Populated by the system. Read-only. More info: {STD_DOC}#spec-and-status",
    ("V1PodTemplateSpec", "spec"): "Specification of the desired behavior of the pod. More "
    f"info: {STD_DOC}#spec-and-status",
    ("V1Service", "spec"): f"Spec defines the behavior of a service. {STD_DOC}#spec-and-status",
    ("V1Service", "status"): "Most recently observed status of the service. Populated by the "
    f"system. Read-only. More info: {STD_DOC}#spec-and-status",
    ("V1Namespace", "spec"): "Spec defines the behavior of the Namespace. More info: "
    f"{STD_DOC}#spec-and-status",
    ("V1Namespace", "status"): "Status describes the current status of a Namespace. More info: "
    f"{STD_DOC}#spec-and-status",
    ("V1Node", "spec"): f"Spec defines the behavior of a node. {STD_DOC}#spec-and-status",
    ("V1Node", "status"): "Most recently observed status of the node. Populated by the system. "
    f"Read-only. More info: {STD_DOC}#spec-and-status",
    ("V1Deployment", "spec"): "Specification of the desired behavior of the Deployment.",
    ("V1Deployment", "status"): "Most recently observed status of the Deployment.",
    ("V1ReplicaSet", "spec"): "Spec defines the specification of the desired behavior of the "
    f"ReplicaSet. More info: {STD_DOC}#spec-and-status",
    ("V1ReplicaSet", "status"): "Status is the most recently observed status of the ReplicaSet. "
    "This data may be out of date by some window of time. Populated by the system. Read-only. "
    f"More info: {STD_DOC}#spec-and-status",
    ("V1Ingress", "spec"): "spec is the desired state of the Ingress. More info: "
    f"{STD_DOC}#spec-and-status",
    ("V1Ingress", "status"): "status is the current state of the Ingress. More info: "
    f"{STD_DOC}#spec-and-status",
    ("V1IngressClass", "spec"): "spec is the desired state of the IngressClass. More info: "
    f"{STD_DOC}#spec-and-status",
    ("V1Lease", "spec"): "spec contains the specification of the Lease. More info: "
    f"{STD_DOC}#spec-and-status",
    ("CoreV1Event", "involvedObject"): "The object that this event is about.",
    ("CoreV1Event", "related"): "Optional secondary object for more complex actions.",
    ("CoreV1Event", "series"): "Data about the Event series this event represents or nil if "
    "it's a singleton Event.",
    ("CoreV1Event", "source"): "The component reporting this event. Should be a short machine "
    "understandable string.",
    ("V1DeploymentSpec", "selector"): "Label selector for pods. Existing ReplicaSets whose pods "
    "are selected by this will be the ones affected by this deployment. It must match the pod "
    "template's labels.",
    ("V1DeploymentSpec", "template"): "Template describes the pods that will be created. The "
    'only allowed template.spec.restartPolicy value is "Always".',
    ("V1DeploymentSpec", "strategy"): "The deployment strategy to use to replace existing pods "
    "with new ones.",
    ("V1DeploymentStrategy", "rollingUpdate"): "Rolling update config params. Present only if "
    "DeploymentStrategyType = RollingUpdate.",
    ("V1ReplicaSetSpec", "selector"): "Selector is a label query over pods that should match "
    "the replica count. Label keys and values that must match in order to be controlled by "
    "this replica set. It must match the pod template's labels. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ("V1ReplicaSetSpec", "template"): "Template is the object that describes the pod that will "
    "be created if insufficient replicas are detected. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#pod-template",
    ("V1Container", "livenessProbe"): "Periodic probe of container liveness. Container will be "
    "restarted if the probe fails. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle#container-probes",
    ("V1Container", "readinessProbe"): "Periodic probe of container service readiness. "
    "Container will be removed from service endpoints if the probe fails. Cannot be updated. "
    "More info: https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle#container-probes",
    ("V1Container", "startupProbe"): "StartupProbe indicates that the Pod has successfully "
    "initialized. If specified, no other probes are executed until this completes successfully. "
    "If this probe fails, the Pod will be restarted, just as if the livenessProbe failed. "
    "Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle#container-probes",
    ("V1Container", "resources"): "Compute Resources required by this container. Cannot be "
    "updated. More info: "
    "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/",
    ("V1Container", "securityContext"): "SecurityContext defines the security options the "
    "container should be run with. If set, the fields of SecurityContext override the "
    "equivalent fields of PodSecurityContext. More info: "
    "https://kubernetes.io/docs/tasks/configure-pod-container/security-context/",
    ("V1Container", "lifecycle"): "Actions that the management system should take in response "
    "to container lifecycle events. Cannot be updated.",
    ("V1PodSpec", "securityContext"): "SecurityContext holds pod-level security attributes and "
    "common container settings. Optional: Defaults to empty.  See type description for default "
    "values of each field.",
    ("V1PodSpec", "affinity"): "If specified, the pod's scheduling constraints",
    ("V1PodSpec", "dnsConfig"): "Specifies the DNS parameters of a pod. Parameters specified "
    "here will be merged to the generated DNS configuration based on DNSPolicy.",
    ("V1PodSpec", "os"): "Specifies the OS of the containers in the pod.",
    ("V1PodSpec", "resources"): "Resources is the total amount of CPU and Memory resources "
    "required by all containers in the pod.",
    ("V1IngressSpec", "defaultBackend"): "defaultBackend is the backend that should handle "
    "requests that don't match any rule. If Rules are not specified, DefaultBackend must be "
    "specified. If DefaultBackend is not set, the handling of requests that do not match any of "
    "the rules will be up to the Ingress controller.",
    ("V1IngressBackend", "service"): "service references a service as a backend. This is a "
    'mutually exclusive setting with "Resource".',
    ("V1IngressBackend", "resource"): "resource is an ObjectRef to another Kubernetes resource "
    "in the namespace of the Ingress object. If resource is specified, a service.Name and "
    'service.Port must not be specified. This is a mutually exclusive setting with "Service".',
    ("V1IngressServiceBackend", "port"): "port of the referenced service. A port name or port "
    "number is required for a IngressServiceBackend.",
    ("V1HTTPIngressPath", "backend"): "backend defines the referenced service endpoint to which "
    "the traffic will be forwarded to.",
    ("V1IngressStatus", "loadBalancer"): "loadBalancer contains the current status of the "
    "load-balancer.",
    ("V1IngressClassSpec", "parameters"): "parameters is a link to a custom resource containing "
    "additional configuration for the controller. This is optional if the controller does not "
    "require extra parameters.",
    ("V1Endpoint", "conditions"): "conditions contains information about the current status of "
    "the endpoint.",
    ("V1Endpoint", "hints"): "hints contains information associated with how an endpoint "
    "should be consumed.",
    ("V1Endpoint", "targetRef"): "targetRef is a reference to a Kubernetes object that "
    "represents this endpoint.",
    ("V1EndpointAddress", "targetRef"): "Reference to object providing the endpoint.",
}
for _field in ("livenessProbe", "readinessProbe", "startupProbe", "resources", "lifecycle"):
    REF_DESCRIPTIONS[("V1EphemeralContainer", _field)] = REF_DESCRIPTIONS[("V1Container", _field)]
REF_DESCRIPTIONS[("V1EphemeralContainer", "securityContext")] = (
    "Optional: SecurityContext defines the security options the ephemeral container should be "
    "run with. If set, the fields of SecurityContext override the equivalent fields of "
    "PodSecurityContext."
)

API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject "
    f"unrecognized values. More info: {STD_DOC}#resources"
)
KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers "
    "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
    f"CamelCase. More info: {STD_DOC}#types-kinds"
)


# --------------------------------------------------------------------------- naming


def model(name: str) -> ModelCls:
    cls = getattr(models, name)
    assert isinstance(cls, type) and issubclass(cls, BaseModel), name
    return cls


_VERSION_PART = re.compile(r"V[0-9]+(?:(?:alpha|beta)[0-9]+)?(?=[A-Z])")


def short_name(cls: ModelCls) -> str:
    """V1Service -> Service; CoreV1Event -> Event; V2MetricSpec -> MetricSpec."""
    name = cls.__name__
    match = _VERSION_PART.search(name)
    assert match is not None, name
    return name[match.end() :]


def kind_class(kind: Kind) -> ModelCls:
    return model(KIND_CLASS.get(kind.kind, f"V1{kind.kind}"))


def list_class(kind: Kind) -> ModelCls:
    return model(KIND_CLASS.get(kind.kind, f"V1{kind.kind}") + "List")


# --------------------------------------------------------------------------- type walking


def strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def non_none_args(tp: Any) -> list[Any]:
    return [strip_annotated(a) for a in typing.get_args(tp) if a is not type(None)]


def is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def unwrap_optional(tp: Any) -> Any:
    tp = strip_annotated(tp)
    if is_union(tp):
        args = non_none_args(tp)
        if len(args) == 1:
            return args[0]
    return tp


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def referenced_models(tp: Any) -> Iterator[ModelCls]:
    tp = strip_annotated(tp)
    if is_model(tp):
        yield tp
        return
    for arg in typing.get_args(tp):
        if arg is not Ellipsis:
            yield from referenced_models(arg)


def json_name(field_name: str, info: Any) -> str:
    return info.serialization_alias or info.alias or field_name


def assign_packages() -> dict[ModelCls, str]:
    """Walk every served kind and decide each reachable class's upstream package."""
    packages: dict[ModelCls, str] = {}

    def walk(cls: ModelCls, pkg: str) -> None:
        if cls in packages:
            return
        packages[cls] = pkg
        for info in cls.model_fields.values():
            for sub in referenced_models(info.annotation):
                walk(sub, pkg)

    for name in META_CLASSES:
        walk(model(name), META)
    roots: list[tuple[ModelCls, str]] = []
    for kind in KINDS:
        pkg = GROUP_PACKAGE[kind.group]
        roots += [(kind_class(kind), pkg), (list_class(kind), pkg)]
        if kind.group == "":
            roots += [(model(n), pkg) for n in EXTRA_CORE_ROOTS]
    roots.sort(key=lambda r: r[1] != GROUP_PACKAGE[""])
    for cls, pkg in roots:
        walk(cls, pkg)
    return packages


# --------------------------------------------------------------------------- schemas


class Builder:
    def __init__(self, packages: dict[ModelCls, str]) -> None:
        self.packages = packages
        self.schemas: dict[str, Schema] = {}
        self.deps: dict[str, set[str]] = {}

    def name(self, cls: ModelCls) -> str:
        return f"{self.packages[cls]}.{short_name(cls)}"

    def build_all(self) -> None:
        for cls in self.packages:
            name = self.name(cls)
            deps: set[str] = set()
            self.schemas[name] = self.object_schema(cls, deps)
            self.deps[name] = deps
        for name, leaf in LEAF_SCHEMAS.items():
            self.schemas[name] = leaf
            self.deps[name] = set()

    def object_schema(self, cls: ModelCls, deps: set[str]) -> Schema:
        props: dict[str, Schema] = {}
        required: list[str] = []
        for field_name, info in cls.model_fields.items():
            jname = json_name(field_name, info)
            key = (cls.__name__, jname)
            prop = self.field_schema(key, info.annotation, deps)
            prop = self.describe(key, prop, info.description, info.annotation)
            prop.update(LIST_EXTENSIONS.get(key, {}))
            props[jname] = dict(sorted(prop.items()))
            if info.is_required():
                required.append(jname)
        out: Schema = {"description": class_description(cls), "properties": props}
        if required:
            out["required"] = required
        out["type"] = "object"
        return out

    def describe(self, key: tuple[str, str], prop: Schema, desc: str | None, tp: Any) -> Schema:
        if not desc:
            desc = self.fallback_description(key, tp)
        if not desc:
            return prop
        if "$ref" in prop:
            # OpenAPI 3.0 ignores siblings of $ref: wrap as upstream does.
            return {"allOf": [{"$ref": prop["$ref"]}], "description": desc}
        return {**prop, "description": desc}

    def fallback_description(self, key: tuple[str, str], tp: Any) -> str | None:
        if key in REF_DESCRIPTIONS:
            return REF_DESCRIPTIONS[key]
        if key[1] == "metadata":
            target = unwrap_optional(tp)
            return LIST_META_DOC if target is models.V1ListMeta else OBJECT_META_DOC
        if key[1] == "apiVersion":
            return API_VERSION_DOC
        if key[1] == "kind":
            return KIND_DOC
        target = unwrap_optional(tp)
        if is_model(target):
            return first_sentence(class_description(target))
        return None

    def ref(self, name: str, deps: set[str]) -> Schema:
        deps.add(name)
        return {"$ref": f"#/components/schemas/{name}"}

    def field_schema(self, key: tuple[str, str], tp: Any, deps: set[str]) -> Schema:
        if key in ANY_JSON_FIELDS:
            return {}
        if key == ("V1JSONSchemaProps", "dependencies"):  # values: a schema or a string list
            return {"additionalProperties": {}, "type": "object"}
        if key in FIELD_REFS:
            return self.ref(FIELD_REFS[key], deps)
        tp = unwrap_optional(tp)
        origin = typing.get_origin(tp)
        if origin in (list, typing.List):  # noqa: UP006
            item = self.type_schema(key, typing.get_args(tp)[0], deps)
            if "$ref" in item:
                item["default"] = {}
            return {"items": item, "type": "array"}
        if origin in (dict, typing.Dict):  # noqa: UP006
            value_tp = typing.get_args(tp)[1]
            if value_tp is Any:
                return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            if key in QUANTITY_MAPS:
                return {"additionalProperties": self.ref(QUANTITY, deps), "type": "object"}
            return {"additionalProperties": self.type_schema(key, value_tp, deps), "type": "object"}
        return self.type_schema(key, tp, deps)

    def type_schema(self, key: tuple[str, str], tp: Any, deps: set[str]) -> Schema:
        tp = unwrap_optional(tp)
        if is_model(tp):
            return self.ref(self.name(tp), deps)
        if tp is datetime.datetime:
            return self.ref(TIME, deps)
        if is_union(tp):
            args = set(non_none_args(tp))
            if args == {int, str}:
                return self.ref(INTSTR, deps)
            if args == {bytes, str}:
                return {"format": "byte", "type": "string"}
            if args == {float, int}:
                return {"format": "double", "type": "number"}
            raise TypeError(f"unsupported union {tp} at {key}")
        return scalar_schema(key, tp)


def scalar_schema(key: tuple[str, str], tp: Any) -> Schema:
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"format": "int64" if key in INT64_FIELDS else "int32", "type": "integer"}
    if tp is float:
        return {"format": "double", "type": "number"}
    if tp is bytes:
        return {"format": "byte", "type": "string"}
    if tp is Any or tp is object:
        return {"type": "object"}
    raise TypeError(f"unsupported type {tp} at {key}")


def class_description(cls: ModelCls) -> str:
    doc = cls.__doc__ or ""
    doc = doc.split("Attributes:")[0]
    return " ".join(line.strip() for line in doc.strip().splitlines()).strip()


def first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".") + "." if text else text


# --------------------------------------------------------------------------- paths

PARAM_DOCS = {
    "pretty": "If 'true', then the output is pretty printed.",
    "dryRun": "When present, indicates that modifications should not be persisted. An invalid or "
    "unrecognized dryRun directive will result in an error response and no further processing "
    "of the request. Valid values are: - All: all dry run stages will be processed",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making "
    "these changes. The value must be less than or 128 characters long, and only contain "
    "printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
    "fieldValidation": "fieldValidation instructs the server on how to handle objects in the "
    "request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - "
    "Ignore: This will ignore any unknown fields that are silently dropped from the object, and "
    "will ignore all but the last duplicate field that the decoder encounters. This is the "
    "default behavior prior to v1.23. - Warn: This will send a warning via the standard warning "
    "response header for each unknown field that is dropped from the object, and for each "
    "duplicate field that is encountered. The request will still succeed if there are no other "
    "errors, and will only persist the last of any duplicate fields. This is the default in "
    "v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields "
    "would be dropped from the object, or if any duplicate fields are present. The error "
    "returned from the server will contain all unknown and duplicate fields encountered.",
    "force": 'Force is going to "force" Apply requests. It means user will re-acquire '
    "conflicting fields owned by other people. Force flag must be unset for non-apply patch "
    "requests.",
    "gracePeriodSeconds": "The duration in seconds before the object should be deleted. Value "
    "must be non-negative integer. The value zero indicates delete immediately. If this value "
    "is nil, the default grace period for the specified type will be used. Defaults to a per "
    "object value if not specified. zero means delete immediately.",
    "propagationPolicy": "Whether and how garbage collection will be performed. Either this "
    "field or OrphanDependents may be set, but not both. The default policy is decided by the "
    "existing finalizer set in the metadata.finalizers and the resource-specific default "
    "policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the "
    "garbage collector to delete the dependents in the background; 'Foreground' - a cascading "
    "policy that deletes all dependents in the foreground.",
    "labelSelector": "A selector to restrict the list of returned objects by their labels. "
    "Defaults to everything.",
    "fieldSelector": "A selector to restrict the list of returned objects by their fields. "
    "Defaults to everything.",
    "watch": "Watch for changes to the described resources and return them as a stream of add, "
    "update, and remove notifications. Specify resourceVersion.",
    "allowWatchBookmarks": 'allowWatchBookmarks requests watch events with type "BOOKMARK".',
    "resourceVersion": "resourceVersion sets a constraint on what resource versions a request "
    "may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/"
    "#resource-versions for details.\n\nDefaults to unset",
    "resourceVersionMatch": "resourceVersionMatch determines how resourceVersion is applied to "
    "list calls.",
    "timeoutSeconds": "Timeout for the list/watch call. This limits the duration of the call, "
    "regardless of any activity or inactivity.",
    "limit": "limit is a maximum number of responses to return for a list call.",
    "continue": "The continue option should be set when retrieving more results from the server.",
    "sendInitialEvents": "`sendInitialEvents=true` may be set together with `watch=true`.",
}
PARAM_TYPES = {
    "force": "boolean",
    "watch": "boolean",
    "allowWatchBookmarks": "boolean",
    "sendInitialEvents": "boolean",
    "gracePeriodSeconds": "integer",
    "timeoutSeconds": "integer",
    "limit": "integer",
}
LIST_PARAMS = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)
WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "propagationPolicy")
PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
OP_GROUP = {
    "": "CoreV1",
    "apps": "AppsV1",
    "discovery.k8s.io": "DiscoveryV1",
    "networking.k8s.io": "NetworkingV1",
    "coordination.k8s.io": "CoordinationV1",
    "apiextensions.k8s.io": "ApiextensionsV1",
    "batch": "BatchV1",
    "autoscaling": "AutoscalingV2",
    "policy": "PolicyV1",
    "scheduling.k8s.io": "SchedulingV1",
    "storage.k8s.io": "StorageV1",
    "rbac.authorization.k8s.io": "RbacAuthorizationV1",
    "apiregistration.k8s.io": "ApiregistrationV1",
    "admissionregistration.k8s.io": "AdmissionregistrationV1",
}


def query_param(name: str) -> Schema:
    return {
        "description": PARAM_DOCS[name],
        "in": "query",
        "name": name,
        "schema": {"type": PARAM_TYPES.get(name, "string"), "uniqueItems": True},
    }


def path_param(name: str, desc: str) -> Schema:
    return {
        "description": desc,
        "in": "path",
        "name": name,
        "required": True,
        "schema": {"type": "string", "uniqueItems": True},
    }


def schema_ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def responses(name: str, codes: dict[str, str], watch: bool = False) -> Schema:
    content = {"application/json": {"schema": schema_ref(name)}}
    if watch:
        content["application/json;stream=watch"] = {"schema": schema_ref(name)}
    content["application/yaml"] = {"schema": schema_ref(name)}
    return {code: {"content": content, "description": desc} for code, desc in codes.items()}


def operation(
    action: str,
    op_id: str,
    desc: str,
    tag: str,
    gvk_entry: Schema,
    *,
    params: tuple[str, ...] = (),
    body: Schema | None = None,
    resp: Schema,
) -> Schema:
    op: Schema = {"description": desc, "operationId": op_id}
    if params:
        op["parameters"] = [query_param(p) for p in params]
    if body is not None:
        op["requestBody"] = body
    op["responses"] = resp
    op["tags"] = [tag]
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = gvk_entry
    return op


def json_body(name: str) -> Schema:
    return {"content": {"application/json": {"schema": schema_ref(name)}}, "required": True}


def patch_body() -> Schema:
    return {"content": {t: {"schema": schema_ref(PATCH)} for t in PATCH_TYPES}, "required": True}


def item_ops(names: dict[str, str], kind: Kind, gvk_entry: Schema, sub: str) -> Schema:
    """get/put/patch/delete on /<plural>/{name}[/status]."""
    obj = names["obj"]
    base = f"{names['scope']}{kind.kind}{sub.capitalize()}"
    what = f"status of the specified {kind.kind}" if sub else f"the specified {kind.kind}"
    tag = names["tag"]
    ok = {"200": "OK"}
    ops: Schema = {
        "get": operation(
            "get", f"read{base}", f"read {what}", tag, gvk_entry, resp=responses(obj, ok)
        ),
        "put": operation(
            "put",
            f"replace{base}",
            f"replace {what}",
            tag,
            gvk_entry,
            params=WRITE_PARAMS,
            body=json_body(obj),
            resp=responses(obj, {"200": "OK", "201": "Created"}),
        ),
        "patch": operation(
            "patch",
            f"patch{base}",
            f"partially update {what}",
            tag,
            gvk_entry,
            params=(*WRITE_PARAMS, "force"),
            body=patch_body(),
            resp=responses(obj, {"200": "OK", "201": "Created"}),
        ),
    }
    if not sub:
        ops["delete"] = operation(
            "delete",
            f"delete{base}",
            f"delete {what}",
            tag,
            gvk_entry,
            params=DELETE_PARAMS,
            body={"content": {"application/json": {"schema": schema_ref(f"{META}.DeleteOptions")}}},
            resp=responses(obj, {"200": "OK", "202": "Accepted"}),
        )
    return ops


def collection_ops(names: dict[str, str], kind: Kind, gvk_entry: Schema) -> Schema:
    base = f"{names['scope']}{kind.kind}"
    tag = names["tag"]
    return {
        "get": operation(
            "list",
            f"list{base}",
            f"list or watch objects of kind {kind.kind}",
            tag,
            gvk_entry,
            params=LIST_PARAMS,
            resp=responses(names["list"], {"200": "OK"}, watch=True),
        ),
        "post": operation(
            "post",
            f"create{base}",
            f"create {article(kind.kind)} {kind.kind}",
            tag,
            gvk_entry,
            params=WRITE_PARAMS,
            body=json_body(names["obj"]),
            resp=responses(names["obj"], {"200": "OK", "201": "Created", "202": "Accepted"}),
        ),
        "delete": operation(
            "deletecollection",
            f"delete{names['op']}Collection{base[len(names['op']) :]}",
            f"delete collection of {kind.kind}",
            tag,
            gvk_entry,
            params=(*DELETE_PARAMS, *LIST_PARAMS),
            body={"content": {"application/json": {"schema": schema_ref(f"{META}.DeleteOptions")}}},
            resp=responses(f"{META}.Status", {"200": "OK"}),
        ),
    }


def article(word: str) -> str:
    return "an" if word[0] in "AEIOU" else "a"


def common_params(namespaced: bool, item: bool, kind: Kind) -> list[Schema]:
    params = []
    if item:
        params.append(path_param("name", f"name of the {kind.kind}"))
    if namespaced:
        params.append(
            path_param("namespace", "object name and auth scope, such as for teams and projects")
        )
    params.append(query_param("pretty"))
    return params


def kind_paths(builder: Builder, group: str, version: str, kind: Kind) -> dict[str, Schema]:
    prefix = f"/{doc_key(group, version)}"
    op = OP_GROUP[group]
    names = {
        "obj": builder.name(kind_class(kind)),
        "list": builder.name(list_class(kind)),
        "tag": f"{op[: -len('V1')].lower()}_{version}",
        "op": op,
        "scope": f"{op}Namespaced" if kind.namespaced else op,
    }
    gvk_entry = gvk(group, version, kind.kind)
    scope = f"{prefix}/namespaces/{{namespace}}" if kind.namespaced else prefix
    coll = f"{scope}/{kind.plural}"
    out = {
        coll: {
            **collection_ops(names, kind, gvk_entry),
            "parameters": common_params(kind.namespaced, False, kind),
        },
        f"{coll}/{{name}}": {
            **item_ops(names, kind, gvk_entry, ""),
            "parameters": common_params(kind.namespaced, True, kind),
        },
    }
    if kind.has_status:
        out[f"{coll}/{{name}}/status"] = {
            **item_ops(names, kind, gvk_entry, "status"),
            "parameters": common_params(kind.namespaced, True, kind),
        }
    if kind.namespaced:
        all_ns = f"{op}{kind.kind}ForAllNamespaces"
        out[f"{prefix}/{kind.plural}"] = {
            "get": operation(
                "list",
                f"list{all_ns}",
                f"list or watch objects of kind {kind.kind}",
                names["tag"],
                gvk_entry,
                params=LIST_PARAMS,
                resp=responses(names["list"], {"200": "OK"}, watch=True),
            ),
            "parameters": [query_param("pretty")],
        }
    return out


def build_paths(builder: Builder, group: str, version: str, kinds: list[Kind]) -> Schema:
    op = OP_GROUP[group]
    paths: Schema = {
        f"/{doc_key(group, version)}/": {
            "get": {
                "description": "get available resources",
                "operationId": f"get{op}APIResources",
                "responses": responses(f"{META}.APIResourceList", {"200": "OK"}),
                "tags": [f"{op[: -len('V1')].lower()}_{version}"],
            }
        }
    }
    for kind in kinds:
        paths.update(kind_paths(builder, group, version, kind))
    return dict(sorted(paths.items()))


# --------------------------------------------------------------------------- documents


def closure(builder: Builder, roots: list[str]) -> list[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(builder.deps[name])
    return sorted(seen)


def gvk(group: str, version: str, kind: str) -> Schema:
    return {"group": group, "kind": kind, "version": version}


def doc_key(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def file_stem(group: str, version: str) -> str:
    return doc_key(group, version).replace("/", "__")


def build_document(builder: Builder, group: str, version: str, kinds: list[Kind]) -> Schema:
    roots = [f"{META}.{n}" for n in ("Status", "DeleteOptions", "APIResourceList", "WatchEvent")]
    roots.append(PATCH)
    for kind in kinds:
        roots += [builder.name(kind_class(kind)), builder.name(list_class(kind))]
    schemas: dict[str, Schema] = {}
    for name in closure(builder, roots):
        schemas[name] = dict(builder.schemas[name])
    for kind in kinds:
        add_gvk(schemas[builder.name(kind_class(kind))], gvk(group, version, kind.kind))
        add_gvk(schemas[builder.name(list_class(kind))], gvk(group, version, kind.kind + "List"))
    for meta_kind in ("Status", "DeleteOptions", "APIResourceList", "WatchEvent"):
        add_gvk(schemas[f"{META}.{meta_kind}"], gvk("", "v1", meta_kind))
        if group:
            add_gvk(schemas[f"{META}.{meta_kind}"], gvk(group, version, meta_kind))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": build_paths(builder, group, version, kinds),
        "components": {"schemas": schemas},
    }


def add_gvk(schema: Schema, entry: Schema) -> None:
    entries = list(schema.get("x-kubernetes-group-version-kind", []))
    if entry not in entries:
        entries.append(entry)
    schema["x-kubernetes-group-version-kind"] = entries


def generate() -> dict[str, bytes]:
    """File name -> gzip bytes of every document."""
    builder = Builder(assign_packages())
    builder.build_all()
    by_gv: dict[tuple[str, str], list[Kind]] = {}
    for kind in KINDS:
        by_gv.setdefault((kind.group, kind.version), []).append(kind)
    out: dict[str, bytes] = {}
    for (group, version), kinds in by_gv.items():
        doc = build_document(builder, group, version, kinds)
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        out[f"{file_stem(group, version)}.json.gz"] = gzip.compress(data, 9, mtime=0)
    return out


def main(argv: list[str]) -> None:
    out_dir = Path(argv[0]) if argv else OUT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, blob in generate().items():
        (out_dir / name).write_bytes(blob)
        print(f"{out_dir / name}: {len(blob)} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
