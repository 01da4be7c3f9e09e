"""The roles `kubesvc up` gives cluster DNS and the ingress controller allow what those
components ask of the API server, and nothing like Secrets for DNS, under the bootstrap
policy plus the addons' objects."""

from __future__ import annotations

from typing import Any

import pytest

from kubesvc.auth.bootstrap import bootstrap_policy
from kubesvc.auth.rbac import Policy
from kubesvc.auth.request import resource_attributes
from kubesvc.auth.user import service_account_user
from kubesvc.cluster import addons


def policy(objects: list[tuple[str, dict[str, Any]]]) -> Policy:
    boot = bootstrap_policy()
    roles = [o for k, o in objects if k == "ClusterRole"]
    bindings = [o for k, o in objects if k == "ClusterRoleBinding"]
    return Policy(
        boot.roles,
        boot.cluster_roles + roles,
        boot.role_bindings,
        boot.cluster_role_bindings + bindings,
    )


DNS = service_account_user("kube-system", addons.DNS_ACCOUNT)
INGRESS = service_account_user(addons.INGRESS_NAMESPACE, addons.INGRESS_ACCOUNT)


@pytest.mark.parametrize(
    ("verb", "group", "resource"),
    [
        (verb, group, resource)
        for verb in ("list", "watch")
        for group, resource in (
            ("", "services"),
            ("", "namespaces"),
            ("", "endpoints"),
            ("", "pods"),
            ("discovery.k8s.io", "endpointslices"),
        )
    ],
)
def test_dns_reads_what_it_serves(verb: str, group: str, resource: str) -> None:
    attrs = resource_attributes(verb, resource, group=group)
    assert policy(addons.dns_rbac()).authorize(DNS, attrs).allowed


def test_dns_reads_no_secret_and_writes_nothing() -> None:
    p = policy(addons.dns_rbac())
    assert not p.authorize(DNS, resource_attributes("list", "secrets")).allowed
    assert not p.authorize(DNS, resource_attributes("create", "services", namespace="x")).allowed


@pytest.mark.parametrize(
    ("verb", "group", "resource", "subresource"),
    [
        *(
            (verb, group, resource, "")
            for verb in ("list", "watch")
            for group, resource in (
                ("networking.k8s.io", "ingresses"),
                ("networking.k8s.io", "ingressclasses"),
                ("", "services"),
                ("", "nodes"),
                ("", "secrets"),
                ("discovery.k8s.io", "endpointslices"),
            )
        ),
        ("patch", "networking.k8s.io", "ingresses", "status"),
        ("update", "networking.k8s.io", "ingresses", "status"),
        ("create", "", "events", ""),
        ("patch", "", "events", ""),
    ],
)
def test_ingress_controller_can_do_its_work(
    verb: str, group: str, resource: str, subresource: str
) -> None:
    attrs = resource_attributes(
        verb, resource, group=group, namespace="web", subresource=subresource
    )
    assert policy(addons.ingress_rbac()).authorize(INGRESS, attrs).allowed


def test_ingress_controller_cannot_change_ingresses() -> None:
    p = policy(addons.ingress_rbac())
    attrs = resource_attributes("update", "ingresses", group="networking.k8s.io", namespace="web")
    assert not p.authorize(INGRESS, attrs).allowed


def test_the_pods_run_as_those_accounts() -> None:
    dns = addons.dns_deployment()["spec"]["template"]["spec"]
    assert dns["serviceAccountName"] == addons.DNS_ACCOUNT
    ingress = addons.ingress_deployment()["spec"]["template"]["spec"]
    assert ingress["serviceAccountName"] == addons.INGRESS_ACCOUNT
