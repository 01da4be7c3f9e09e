"""Upstream's bootstrap policy: what the roles a cluster starts with allow."""

from __future__ import annotations

from typing import Any

import pytest

from kubesvc.auth.bootstrap import AUTOUPDATE, bootstrap_policy
from kubesvc.auth.forbidden import forbidden
from kubesvc.auth.rbac import Policy
from kubesvc.auth.request import (
    non_resource_attributes,
    request_info,
    resource_attributes,
)
from kubesvc.auth.user import AUTHENTICATED, NODES, SYSTEM_MASTERS, UserInfo, service_account_user

BOOT = bootstrap_policy()
POLICY = BOOT.policy()
ROLES = {r["metadata"]["name"]: r for r in BOOT.cluster_roles}


def bound(role: str, ns: str = "team-a") -> tuple[Policy, UserInfo]:
    """The bootstrap policy plus a RoleBinding of `role` to a ServiceAccount in `ns`."""
    user = service_account_user(ns, "worker")
    binding = {
        "metadata": {"namespace": ns, "name": f"worker-{role}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": ns}],
    }
    policy = Policy(
        BOOT.roles, BOOT.cluster_roles, [*BOOT.role_bindings, binding], BOOT.cluster_role_bindings
    )
    return policy, user


def can(policy: Policy, user: UserInfo, verb: str, resource: str, ns: str = "", **kw: Any) -> bool:
    return policy.authorize(user, resource_attributes(verb, resource, namespace=ns, **kw)).allowed


def test_upstream_names_labels_and_annotations() -> None:
    for name in (
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:node",
        "system:node-proxier",
        "system:kube-dns",
        "system:kube-controller-manager",
        "system:kube-scheduler",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:controller:deployment-controller",
        "system:controller:endpointslice-controller",
        "system:controller:namespace-controller",
    ):
        assert name in ROLES, name
    for obj in BOOT.objects():
        meta = obj["metadata"]
        assert meta["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert meta["annotations"][AUTOUPDATE] == "true"
        assert "creationTimestamp" not in meta
    assert len(BOOT.objects()) == len(
        {
            (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
            for o in BOOT.objects()
        }
    )


def test_every_binding_finds_its_role() -> None:
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in BOOT.roles}
    for b in BOOT.cluster_role_bindings:
        assert b["roleRef"]["name"] in ROLES
    for b in BOOT.role_bindings:
        assert (b["metadata"]["namespace"], b["roleRef"]["name"]) in roles


def test_controller_roles_are_bound_to_their_service_accounts() -> None:
    bindings = {b["metadata"]["name"]: b for b in BOOT.cluster_role_bindings}
    controllers = [n for n in ROLES if n.startswith("system:controller:")]
    assert len(controllers) > 30
    for name in controllers:
        assert bindings[name]["subjects"] == [
            {"kind": "ServiceAccount", "name": name.split(":")[-1], "namespace": "kube-system"}
        ]


def test_aggregated_roles_have_their_rules() -> None:
    def rules(name: str) -> list[dict[str, Any]]:
        return ROLES[name]["rules"]

    assert rules("view") == rules("system:aggregate-to-view")
    assert rules("edit") == rules("system:aggregate-to-edit") + rules("view")
    # the selected roles in name order: edit before system:aggregate-to-admin
    assert rules("admin") == rules("edit") + rules("system:aggregate-to-admin")


def test_copies_are_fresh() -> None:
    bootstrap_policy().cluster_roles.clear()
    assert bootstrap_policy().cluster_roles


@pytest.mark.parametrize(
    ("role", "verb", "resource", "group", "allowed"),
    [
        ("view", "list", "pods", "", True),
        ("view", "get", "pods", "", True),
        ("view", "get", "secrets", "", False),
        ("view", "create", "pods", "", False),
        ("view", "list", "deployments", "apps", True),
        ("view", "list", "rolebindings", "rbac.authorization.k8s.io", False),
        ("edit", "get", "secrets", "", True),
        ("edit", "create", "deployments", "apps", True),
        ("edit", "create", "rolebindings", "rbac.authorization.k8s.io", False),
        ("admin", "create", "rolebindings", "rbac.authorization.k8s.io", True),
        ("admin", "delete", "secrets", "", True),
    ],
)
def test_user_facing_roles_in_their_namespace(
    role: str, verb: str, resource: str, group: str, allowed: bool
) -> None:
    policy, user = bound(role)
    assert can(policy, user, verb, resource, "team-a", group=group) is allowed
    # a RoleBinding grants nothing elsewhere
    assert not can(policy, user, verb, resource, "team-b", group=group)


def test_edit_reaches_subresources() -> None:
    policy, user = bound("edit")
    assert can(policy, user, "create", "pods", "team-a", subresource="exec")
    assert can(policy, user, "update", "deployments", "team-a", group="apps", subresource="scale")
    assert not can(policy, user, "update", "pods", "team-a", subresource="status")


def test_default_service_account_gets_upstreams_403_listing_secrets() -> None:
    user = service_account_user("default", "default")
    attrs = request_info("GET", "/api/v1/namespaces/default/secrets", {})
    decision = POLICY.authorize(user, attrs)
    assert not decision.allowed
    assert forbidden(user, attrs, decision.reason).message == (
        'secrets is forbidden: User "system:serviceaccount:default:default" cannot list '
        'resource "secrets" in API group "" in the namespace "default"'
    )


def test_every_authenticated_user_may_discover_and_review_itself() -> None:
    user = UserInfo("jane", groups=(AUTHENTICATED,))
    for path in ("/api", "/apis/apps/v1", "/healthz", "/version", "/openapi/v3"):
        assert POLICY.authorize(user, non_resource_attributes("get", path)).allowed, path
    assert not POLICY.authorize(user, non_resource_attributes("get", "/metrics")).allowed
    assert can(POLICY, user, "create", "selfsubjectaccessreviews", group="authorization.k8s.io")
    assert can(POLICY, user, "create", "selfsubjectrulesreviews", group="authorization.k8s.io")
    assert not can(POLICY, user, "list", "pods", "default")


def test_admin_group_through_cluster_admin() -> None:
    admin = UserInfo("kubernetes-admin", groups=(SYSTEM_MASTERS, AUTHENTICATED))
    review = POLICY.rules_for(admin, "default")
    assert {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]} in review.status()[
        "resourceRules"
    ]
    assert POLICY.authorize(admin, non_resource_attributes("get", "/metrics")).allowed


def test_system_components() -> None:
    proxy = UserInfo("system:kube-proxy", groups=(AUTHENTICATED,))
    assert can(POLICY, proxy, "watch", "endpointslices", group="discovery.k8s.io")
    assert can(POLICY, proxy, "list", "services")
    assert not can(POLICY, proxy, "list", "secrets")
    dns = service_account_user("kube-system", "kube-dns")
    assert can(POLICY, dns, "watch", "services")
    assert not can(POLICY, dns, "get", "secrets", "default")
    node = UserInfo("system:node:n1", groups=(NODES, AUTHENTICATED))
    # the system:node binding has no subjects: upstream leaves nodes to the Node authorizer
    assert not can(POLICY, node, "get", "secrets", "default")
    deployments = service_account_user("kube-system", "deployment-controller")
    assert can(
        POLICY, deployments, "update", "deployments", "x", group="apps", subresource="status"
    )
    assert can(POLICY, deployments, "create", "replicasets", "x", group="apps")
    assert not can(POLICY, deployments, "get", "secrets", "x")
    reason = POLICY.authorize(
        deployments, resource_attributes("create", "replicasets", group="apps", namespace="x")
    ).reason
    assert reason == (
        'RBAC: allowed by ClusterRoleBinding "system:controller:deployment-controller" of '
        'ClusterRole "system:controller:deployment-controller" to ServiceAccount '
        '"deployment-controller/kube-system"'
    )
    manager = UserInfo("system:kube-controller-manager", groups=(AUTHENTICATED,))
    assert can(POLICY, manager, "get", "leases", "kube-system", group="coordination.k8s.io")
