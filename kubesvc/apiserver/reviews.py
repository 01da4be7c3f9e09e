"""authorization.k8s.io/v1: the access reviews (upstream's pkg/registry/authorization):
SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview and
LocalSubjectAccessReview (may a given user...; creating them is itself authorized, so only
those granted it, admins included, can ask), and SelfSubjectRulesReview (`kubectl auth can-i
--list`). Nothing is stored; the answer is the request with its status."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kubesvc.api import errors
from kubesvc.apiserver import offload
from kubesvc.apiserver.authz import USER, RbacAuthorizer
from kubesvc.apiserver.decoding import decode_as, decode_body, field_validation, read_body
from kubesvc.apiserver.http import json_response
from kubesvc.auth.request import RequestInfo, non_resource_attributes, resource_attributes
from kubesvc.auth.user import UserInfo

GROUP = "authorization.k8s.io"
API_VERSION = f"{GROUP}/v1"
PREFIX = f"/apis/{API_VERSION}/"
RESOURCES = {
    "selfsubjectaccessreviews": "SelfSubjectAccessReview",
    "subjectaccessreviews": "SubjectAccessReview",
    "localsubjectaccessreviews": "LocalSubjectAccessReview",
    "selfsubjectrulesreviews": "SelfSubjectRulesReview",
}
MAX_GROUPS = 1000  # bounds a SubjectAccessReview's user (upstream has no limit)


def route(path: str) -> tuple[str, str] | None:
    """(kind, namespace) of a review's path; None when the path is not one."""
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].split("/")
    if len(parts) == 1 and parts[0] in RESOURCES and parts[0] != "localsubjectaccessreviews":
        return RESOURCES[parts[0]], ""
    if len(parts) == 3 and parts[0] == "namespaces" and parts[2] == "localsubjectaccessreviews":
        return "LocalSubjectAccessReview", parts[1]
    return None


async def review(
    request: web.Request, authz: RbacAuthorizer, kind: str, namespace: str
) -> web.Response:
    if request.method != "POST":
        raise errors.method_not_allowed(
            "the server does not allow this method on the requested resource"
        )
    raw = await read_body(request)
    ctype = request.headers.get("Content-Type", "application/json")
    parsed = await offload.run(len(raw) > offload.HEAVY_BYTES, decode_body, raw, ctype)
    obj = decode_as(API_VERSION, kind, parsed, field_validation(request)).obj
    spec = obj.get("spec") or {}
    user = request[USER]
    if kind == "SelfSubjectRulesReview":
        status = authz.rules_for(user, spec.get("namespace", "")).status()
    else:
        if kind != "SelfSubjectAccessReview":
            user = _subject(kind, spec)
        attrs = _attributes(kind, spec, namespace)
        decision = authz.authorize(user, attrs)
        status = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
    meta = obj.get("metadata") or {}
    if namespace:
        meta["namespace"] = namespace
    meta["creationTimestamp"] = None
    body = {"kind": kind, "apiVersion": API_VERSION, "metadata": meta, "spec": spec}
    body["status"] = status
    return json_response(body, 201)


def _invalid(kind: str, errs: list[errors.FieldError]) -> errors.ApiError:
    return errors.invalid_error(kind, GROUP, "", errs)


def _subject(kind: str, spec: dict[str, Any]) -> UserInfo:
    """The user a SubjectAccessReview asks about: as given, no group added (upstream)."""
    name, groups = spec.get("user", ""), spec.get("groups") or []
    if not name and not groups:
        raise _invalid(
            kind,
            [errors.invalid("spec.user", name, "at least one of user or group must be specified")],
        )
    if len(groups) > MAX_GROUPS:
        raise _invalid(kind, [errors.too_many("spec.groups", len(groups), MAX_GROUPS)])
    extra = {k: tuple(v or ()) for k, v in (spec.get("extra") or {}).items()}
    return UserInfo(name, spec.get("uid", ""), tuple(groups), extra)


def _attributes(kind: str, spec: dict[str, Any], namespace: str) -> RequestInfo:
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (resource is None) == (non_resource is None):
        detail = "exactly one of nonResourceAttributes or resourceAttributes must be specified"
        raise _invalid(kind, [errors.invalid("spec.resourceAttributes", "null", detail)])
    if kind == "LocalSubjectAccessReview":
        if non_resource is not None:
            detail = "disallowed on this kind of request"
            raise _invalid(kind, [errors.invalid("spec.nonResourceAttributes", "", detail)])
        if resource.get("namespace", "") != namespace:
            detail = "must match metadata.namespace"
            raise _invalid(
                kind,
                [
                    errors.invalid(
                        "spec.resourceAttributes.namespace", resource.get("namespace", ""), detail
                    )
                ],
            )
    if non_resource is not None:
        return non_resource_attributes(non_resource.get("verb", ""), non_resource.get("path", ""))
    return resource_attributes(
        resource.get("verb", ""),
        resource.get("resource", ""),
        group=resource.get("group", ""),
        version=resource.get("version", ""),
        namespace=resource.get("namespace", ""),
        subresource=resource.get("subresource", ""),
        name=resource.get("name", ""),
    )
