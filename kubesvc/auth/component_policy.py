"""RBAC for kubesvc's components that upstream's bootstrap policy does not cover: MetalLB's
controller (the LoadBalancer IP allocator in the controller-manager) and its layer-2 speaker
(in each node agent), with the rules of MetalLB's manifests (config/rbac/role.yaml).

MetalLB grants what it reads of its own kinds (IPAddressPools, L2Advertisements) in Roles
in `metallb-system`; the API server writes these objects before it serves, when that
namespace may not exist yet, so those reads are in the ClusterRoles here. The controller
also patches a Service's `metallb.io/ip-allocated-from-pool` annotation, as MetalLB's
controller does since v0.14. The speaker is the user `system:metallb-speaker` (a client
certificate: the node agents that run it are no pods with a ServiceAccount); the controller
is MetalLB's ServiceAccount `controller` in metallb-system.
"""

from __future__ import annotations

import copy
from typing import Any

from kubesvc.auth.bootstrap import AUTOUPDATE

RBAC = "rbac.authorization.k8s.io"
SPEAKER_USER = "system:metallb-speaker"
SPEAKER_ROLE = "metallb-system:speaker"
CONTROLLER_ROLE = "metallb-system:controller"
_READ = ["get", "list", "watch"]
_POOLS = {
    "apiGroups": ["metallb.io"],
    "resources": ["ipaddresspools", "l2advertisements"],
    "verbs": _READ,
}


def _object(kind: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "labels": {"app": "metallb"},
            "annotations": {AUTOUPDATE: "true"},
        },
    }


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {**_object("ClusterRole", name), "rules": rules}


def _binding(name: str, subject: dict[str, Any]) -> dict[str, Any]:
    return {
        **_object("ClusterRoleBinding", name),
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
        "subjects": [subject],
    }


_OBJECTS: list[dict[str, Any]] = [
    _cluster_role(
        SPEAKER_ROLE,
        [
            {"apiGroups": [""], "resources": ["services", "endpoints", "nodes"], "verbs": _READ},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            _POOLS,
        ],
    ),
    _cluster_role(
        CONTROLLER_ROLE,
        [
            {"apiGroups": [""], "resources": ["services"], "verbs": [*_READ, "patch"]},
            {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            _POOLS,
        ],
    ),
    _binding(SPEAKER_ROLE, {"apiGroup": RBAC, "kind": "User", "name": SPEAKER_USER}),
    _binding(
        CONTROLLER_ROLE,
        {"kind": "ServiceAccount", "name": "controller", "namespace": "metallb-system"},
    ),
]


def component_objects() -> list[dict[str, Any]]:
    """The objects to create or reconcile at every start (fresh copies), roles first."""
    return copy.deepcopy(_OBJECTS)
