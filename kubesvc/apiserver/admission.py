"""Checks of who writes what, applied by the registry to a write as it would be stored
(WriteOptions.admit): NodeRestriction (kubesvc.auth.noderestriction) for nodes, and RBAC's
escalation check (kubesvc.auth.escalation) for everyone but system:masters writing Roles,
ClusterRoles and their bindings. Each is called with (new, old): old None on create, new
None on delete, and raises the Status that refuses the write."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kubesvc.api.kinds import Kind
from kubesvc.api.validation.meta import go_quote
from kubesvc.apiserver.authz import USER, RbacAuthorizer
from kubesvc.auth import noderestriction
from kubesvc.auth.escalation import FULL_AUTHORITY, escalation
from kubesvc.auth.forbidden import admission_forbidden
from kubesvc.auth.noderestriction import CREATE, DELETE, UPDATE
from kubesvc.auth.request import RequestInfo
from kubesvc.auth.rules import Rule, parse_rules
from kubesvc.auth.user import SYSTEM_MASTERS, UserInfo, node_name

Obj = dict[str, Any]
Admit = Callable[[Obj | None, Obj | None], None]
RBAC_GROUP = "rbac.authorization.k8s.io"
ROLE_KINDS = ("Role", "ClusterRole")
BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")


def for_write(
    request: web.Request,
    kind: Kind,
    namespace: str | None,
    name: str | None,
    subresource: str,
    authorizer: RbacAuthorizer | None,
) -> Admit | None:
    """The checks that apply to this request's write, or None when none does."""
    user = request.get(USER)
    if user is None:
        return None
    checks = [
        c
        for c in (
            _node_restriction(user, kind, namespace or "", name or "", subresource),
            _no_escalation(user, kind, namespace or "", name or "", subresource, authorizer),
        )
        if c is not None
    ]
    if not checks:
        return None

    def admit(new: Obj | None, old: Obj | None) -> None:
        for check in checks:
            check(new, old)

    return admit


def _name(name: str, new: Obj | None) -> str:
    return name or str(((new or {}).get("metadata") or {}).get("name") or "")


def _node_restriction(
    user: UserInfo, kind: Kind, namespace: str, name: str, subresource: str
) -> Admit | None:
    node = node_name(user)
    if node is None:
        return None
    group, resource = kind.group, kind.plural

    def admit(new: Obj | None, old: Obj | None) -> None:
        target = _name(name, new)
        if not node:
            reason: str | None = f"could not determine node from user {go_quote(user.name)}"
        else:
            op = CREATE if old is None else DELETE if new is None else UPDATE
            reason = noderestriction.admit(
                node, op, (group, resource), subresource, namespace, target, new, old
            )
        if reason is not None:
            raise admission_forbidden(group, resource, target, reason)

    return admit


def only_gc_fields(new: Obj, old: Obj) -> bool:
    """IsOnlyMutatingGCFields: the write changes nothing but owner references and
    finalizers (what the garbage collector writes)."""
    a, b = copy.deepcopy(new), copy.deepcopy(old)
    for obj in (a, b):
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        for key in ("ownerReferences", "finalizers", "managedFields", "resourceVersion"):
            meta.pop(key, None)
    return a == b


def _no_escalation(
    user: UserInfo,
    kind: Kind,
    namespace: str,
    name: str,
    subresource: str,
    authorizer: RbacAuthorizer | None,
) -> Admit | None:
    if (
        authorizer is None
        or SYSTEM_MASTERS in user.groups
        or kind.group != RBAC_GROUP
        or kind.kind not in ROLE_KINDS + BINDING_KINDS
        or subresource
    ):
        return None
    plural = kind.plural

    def allowed(verb: str, resource: str, target: str) -> bool:
        attrs = RequestInfo(
            True, "", verb, "apis", RBAC_GROUP, "*", namespace, resource, "", target
        )
        return authorizer.authorize(user, attrs).allowed

    def admit(new: Obj | None, old: Obj | None) -> None:
        if new is None or (old is not None and only_gc_fields(new, old)):
            return
        target = _name(name, new)
        rules: tuple[Rule, ...]
        if kind.kind in ROLE_KINDS:
            if allowed("escalate", plural, target):
                return
            if kind.kind == "ClusterRole" and new.get("aggregationRule") is not None:
                rules = FULL_AUTHORITY  # what it may come to hold
            else:
                rules = parse_rules(new.get("rules")) or ()
        else:
            ref = new.get("roleRef") if isinstance(new.get("roleRef"), dict) else {}
            ref_kind, ref_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
            ref_resource = "clusterroles" if ref_kind == "ClusterRole" else "roles"
            if allowed("bind", ref_resource, ref_name):
                return
            rules, error = authorizer.policy().role_rules(ref_kind, ref_name, namespace)
            if error:
                raise admission_forbidden(RBAC_GROUP, plural, target, error)
        review = authorizer.rules_for(user, namespace)
        reason = escalation(
            user.name,
            user.groups,
            review.resource_rules + review.non_resource_rules,
            rules,
            review.evaluation_error,
        )
        if reason is not None:
            raise admission_forbidden(RBAC_GROUP, plural, target, reason)

    return admit
