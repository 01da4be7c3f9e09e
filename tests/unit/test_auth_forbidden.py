"""The 403 of a denied request, in upstream's words (responsewriters.forbiddenMessage,
errors.NewForbidden)."""

from __future__ import annotations

from typing import Any

import pytest

from kubesvc.auth.forbidden import forbidden
from kubesvc.auth.request import RequestInfo, request_info
from kubesvc.auth.user import UserInfo, service_account_user

SA = service_account_user("default", "default")


@pytest.mark.parametrize(
    ("method", "path", "message", "details"),
    [
        pytest.param(
            "GET",
            "/api/v1/namespaces/default/secrets",
            'secrets is forbidden: User "system:serviceaccount:default:default" cannot list '
            'resource "secrets" in API group "" in the namespace "default"',
            {"kind": "secrets"},
            id="list-in-namespace",
        ),
        pytest.param(
            "GET",
            "/api/v1/nodes",
            'nodes is forbidden: User "system:serviceaccount:default:default" cannot list '
            'resource "nodes" in API group "" at the cluster scope',
            {"kind": "nodes"},
            id="cluster-scope",
        ),
        pytest.param(
            "GET",
            "/apis/apps/v1/namespaces/prod/deployments/web",
            'deployments.apps "web" is forbidden: User "system:serviceaccount:default:default" '
            'cannot get resource "deployments" in API group "apps" in the namespace "prod"',
            {"name": "web", "group": "apps", "kind": "deployments"},
            id="named-in-group",
        ),
        pytest.param(
            "GET",
            "/api/v1/namespaces/default/pods/web-0/log",
            'pods "web-0" is forbidden: User "system:serviceaccount:default:default" cannot get '
            'resource "pods/log" in API group "" in the namespace "default"',
            {"name": "web-0", "kind": "pods"},
            id="subresource",
        ),
        pytest.param(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            'serviceaccounts "default" is forbidden: User "system:serviceaccount:default:default" '
            'cannot create resource "serviceaccounts/token" in API group "" in the namespace '
            '"default"',
            {"name": "default", "kind": "serviceaccounts"},
            id="create-subresource",
        ),
        pytest.param(
            "GET",
            "/api/v1/watch/namespaces/kube-system/configmaps",
            'configmaps is forbidden: User "system:serviceaccount:default:default" cannot watch '
            'resource "configmaps" in API group "" in the namespace "kube-system"',
            {"kind": "configmaps"},
            id="watch-path",
        ),
        pytest.param(
            "GET",
            "/metrics",
            'forbidden: User "system:serviceaccount:default:default" cannot get path "/metrics"',
            {},
            id="non-resource",
        ),
        pytest.param(
            "GET",
            "/<b>&",
            'forbidden: User "system:serviceaccount:default:default" cannot get path '
            '"/&lt;b&gt;&amp;"',
            {},
            id="escaped",
        ),
    ],
)
def test_forbidden_status(method: str, path: str, message: str, details: dict[str, Any]) -> None:
    err = forbidden(SA, request_info(method, path, {}))
    assert err.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    }


def test_the_reason_follows_unescaped() -> None:
    attrs = request_info("GET", "/api/v1/namespaces/default/pods", {})
    reason = 'RBAC: clusterrole.rbac.authorization.k8s.io "<x>" not found'
    err = forbidden(UserInfo("jane"), attrs, reason)
    assert err.message == (
        'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the '
        f'namespace "default": {reason}'
    )


def test_odd_names_are_quoted_as_go_does() -> None:
    attrs = RequestInfo(True, "", "get", resource="pods", namespace='a"b')
    assert forbidden(UserInfo('x"y'), attrs).message == (
        'pods is forbidden: User "x\\"y" cannot get resource "pods" in API group "" in the '
        'namespace "a\\"b"'
    )
