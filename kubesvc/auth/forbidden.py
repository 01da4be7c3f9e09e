"""The 403 a denied request gets, worded as upstream's (k8s.io/apiserver's
responsewriters.Forbidden and forbiddenMessage, apimachinery's errors.NewForbidden):

    secrets is forbidden: User "system:serviceaccount:default:default" cannot list
    resource "secrets" in API group "" in the namespace "default"

with `at the cluster scope` for cluster-wide requests, `resource/subresource` for a
subresource, `NAME` after the resource for a named object, and `forbidden: User "x" cannot
get path "/p"` for a non-resource URL. The authorizer's reason, when it has one, follows
after a colon.
"""

from __future__ import annotations

from typing import Any

from kubesvc.api.errors import ApiError
from kubesvc.api.validation.meta import go_quote
from kubesvc.auth.request import RequestInfo
from kubesvc.auth.user import UserInfo

# upstream escapes these in the message (not in the reason), so no client renders HTML
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def forbidden_message(user: UserInfo, attrs: RequestInfo) -> str:
    """forbiddenMessage: who cannot do what, where."""
    who = f"User {go_quote(user.name)} cannot {attrs.verb}"
    if not attrs.is_resource_request:
        return f"{who} path {go_quote(attrs.path)}"
    resource = attrs.resource
    if attrs.subresource:
        resource = f"{resource}/{attrs.subresource}"
    what = f"{who} resource {go_quote(resource)} in API group {go_quote(attrs.api_group)}"
    if attrs.namespace:
        return f"{what} in the namespace {go_quote(attrs.namespace)}"
    return f"{what} at the cluster scope"


def forbidden(user: UserInfo, attrs: RequestInfo, reason: str = "") -> ApiError:
    """The Status error for a request the authorizer denied."""
    why = forbidden_message(user, attrs).translate(_ESCAPES)
    if reason:
        why = f"{why}: {reason}"
    group, resource, name = attrs.api_group, attrs.resource, attrs.name
    if not group and not resource:
        message = f"forbidden: {why}"
    else:
        qualified = f"{resource}.{group}" if group else resource
        target = f"{qualified} {go_quote(name)}" if name else qualified
        message = f"{target} is forbidden: {why}"
    # metav1.StatusDetails: every field omitempty, in the struct's order
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if resource:
        details["kind"] = resource
    return ApiError(403, "Forbidden", message, details)


def admission_forbidden(group: str, resource: str, name: str, reason: str) -> ApiError:
    """admission.NewForbidden: `RESOURCE[.GROUP] "NAME" is forbidden: REASON`."""
    qualified = f"{resource}.{group}" if group else resource
    target = f"{qualified} {go_quote(name)}" if name else qualified
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = resource
    return ApiError(403, "Forbidden", f"{target} is forbidden: {reason}", details)
