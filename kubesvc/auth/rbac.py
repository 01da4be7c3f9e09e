"""The RBAC authorizer over Roles, ClusterRoles, RoleBindings and ClusterRoleBindings as
stored (plain dicts), as upstream's (plugin/pkg/auth/authorizer/rbac and
pkg/registry/rbac/validation/rule.go) decides.

`Policy` is built once from the four lists whenever one of them changes; it resolves each
binding's role and indexes bindings by the users and groups they name, so a check looks
only at the bindings of the user's name and groups. Objects of the wrong shape are left
out (a binding whose role is missing still reports it, as upstream's does); nothing here
raises on what is stored.

Upstream's rules: a ClusterRoleBinding grants everywhere; a RoleBinding grants only in its
own namespace, whether it refers to a Role there or to a ClusterRole; a ServiceAccount
subject without a namespace in a RoleBinding means one in the binding's namespace (in a
ClusterRoleBinding it matches nobody); `system:masters` is allowed everything before RBAC
is asked (upstream's privileged-group authorizer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubesvc.api.validation.meta import go_quote
from kubesvc.auth.request import RequestInfo
from kubesvc.auth.rules import Rule, parse_rules
from kubesvc.auth.user import SERVICE_ACCOUNT_PREFIX, SYSTEM_MASTERS, UserInfo

USER, GROUP, SERVICE_ACCOUNT = "User", "Group", "ServiceAccount"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RulesReview:
    """What a SelfSubjectRulesReview reports: the rules that apply to a user in a
    namespace (cluster-wide ones included)."""

    resource_rules: tuple[Rule, ...]
    non_resource_rules: tuple[Rule, ...]
    incomplete: bool = False
    evaluation_error: str = ""

    def status(self) -> dict[str, Any]:
        """The review's `status` as the API writes it."""
        status: dict[str, Any] = {
            "resourceRules": [_resource_rule(r) for r in self.resource_rules],
            "nonResourceRules": [
                {"verbs": list(r.verbs), "nonResourceURLs": list(r.non_resource_urls)}
                for r in self.non_resource_rules
            ],
            "incomplete": self.incomplete,
        }
        if self.evaluation_error:
            status["evaluationError"] = self.evaluation_error
        return status


def _resource_rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"verbs": list(rule.verbs)}
    if rule.api_groups:
        out["apiGroups"] = list(rule.api_groups)
    if rule.resources:
        out["resources"] = list(rule.resources)
    if rule.resource_names:
        out["resourceNames"] = list(rule.resource_names)
    return out


@dataclass(frozen=True, slots=True)
class _Subject:
    kind: str
    name: str
    namespace: str

    def describe(self, binding_namespace: str) -> str:
        """describeSubject in rule.go."""
        if self.kind == SERVICE_ACCOUNT:
            ns = self.namespace or binding_namespace
            return f"{self.kind} {go_quote(self.name + '/' + ns)}"
        return f"{self.kind} {go_quote(self.name)}"


@dataclass(frozen=True, slots=True)
class _Binding:
    kind: str  # RoleBinding or ClusterRoleBinding
    name: str
    namespace: str
    ref_kind: str
    ref_name: str
    subjects: tuple[_Subject, ...]
    rules: tuple[Rule, ...]
    error: str  # the role could not be resolved: upstream's error text

    def source(self, subject: _Subject) -> str:
        """What upstream names as the source of an allowing rule."""
        name = f"{self.name}/{self.namespace}" if self.kind == "RoleBinding" else self.name
        return (
            f"{self.kind} {go_quote(name)} of {self.ref_kind} {go_quote(self.ref_name)} "
            f"to {subject.describe(self.namespace)}"
        )


def _meta(obj: Any) -> tuple[str, str] | None:
    """(namespace, name) of an object, or None when its metadata cannot be read."""
    if obj.__class__ is not dict:
        return None
    meta = obj.get("metadata")
    if meta.__class__ is not dict:
        return None
    name, namespace = meta.get("name"), meta.get("namespace", "")
    if name.__class__ is not str or not name:
        return None
    if namespace is None:
        namespace = ""
    if namespace.__class__ is not str:
        return None
    return namespace, name


def _subjects(raw: Any) -> tuple[_Subject, ...] | None:
    if raw is None:
        return ()
    if raw.__class__ is not list:
        return None
    out = []
    for s in raw:
        if s.__class__ is not dict:
            continue  # a subject only grants: leaving one out never grants more
        kind, name, ns = s.get("kind"), s.get("name"), s.get("namespace")
        if ns is None:
            ns = ""
        if kind.__class__ is str and name.__class__ is str and ns.__class__ is str:
            out.append(_Subject(kind, name, ns))
    return tuple(out)


def _subject_key(subject: _Subject, binding_namespace: str) -> str | None:
    """The index key a subject matches users by: `u:NAME` or `g:NAME`; a ServiceAccount is
    its user name (serviceaccount.MatchesUsername is that string's equality)."""
    if subject.kind == USER:
        return "u:" + subject.name
    if subject.kind == GROUP:
        return "g:" + subject.name
    if subject.kind == SERVICE_ACCOUNT:
        ns = subject.namespace or binding_namespace
        if not ns:
            return None
        return f"u:{SERVICE_ACCOUNT_PREFIX}{ns}:{subject.name}"
    return None


def _not_found(resource: str, name: str) -> str:
    return f"{resource}.{RBAC_GROUP} {go_quote(name)} not found"


def aggregate_errors(errors: Iterable[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message alone, several in brackets,
    repeats left out."""
    seen: list[str] = []
    for e in errors:
        if e not in seen:
            seen.append(e)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]" if seen else ""


class Policy:
    """The RBAC objects, indexed for checks. Build a new one when any of them changes."""

    def __init__(
        self,
        roles: Iterable[Any] = (),
        cluster_roles: Iterable[Any] = (),
        role_bindings: Iterable[Any] = (),
        cluster_role_bindings: Iterable[Any] = (),
    ) -> None:
        self._roles: dict[tuple[str, str], tuple[Rule, ...]] = {}
        for obj in roles:
            key = _meta(obj)
            rules = parse_rules(obj.get("rules")) if key and key[0] else None
            if key and rules is not None:
                self._roles[key] = rules
        self._cluster_roles: dict[str, tuple[Rule, ...]] = {}
        for obj in cluster_roles:
            key = _meta(obj)
            rules = parse_rules(obj.get("rules")) if key else None
            if key and rules is not None:
                self._cluster_roles[key[1]] = rules
        self._bindings: list[_Binding] = []
        # subject key -> [(binding index, index of the subject in the binding)]
        self._cluster_index: dict[str, list[tuple[int, int]]] = {}
        # (namespace, subject key) -> the same, for RoleBindings
        self._namespace_index: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._sources: dict[tuple[int, int], str] = {}
        for obj in cluster_role_bindings:
            self._add(obj, "ClusterRoleBinding")
        for obj in role_bindings:
            self._add(obj, "RoleBinding")

    def _add(self, obj: Any, kind: str) -> None:
        key = _meta(obj)
        if key is None:
            return
        namespace, name = key
        if kind == "ClusterRoleBinding":
            namespace = ""
        elif not namespace:
            return
        ref = obj.get("roleRef")
        subjects = _subjects(obj.get("subjects"))
        if ref.__class__ is not dict or subjects is None:
            return
        ref_kind, ref_name = ref.get("kind"), ref.get("name")
        if ref_kind.__class__ is not str or ref_name.__class__ is not str:
            return
        rules, error = self._resolve(ref_kind, ref_name, namespace)
        index = len(self._bindings)
        self._bindings.append(
            _Binding(kind, name, namespace, ref_kind, ref_name, subjects, rules, error)
        )
        for position, subject in enumerate(subjects):
            skey = _subject_key(subject, namespace)
            if skey is None:
                continue
            if kind == "ClusterRoleBinding":
                self._cluster_index.setdefault(skey, []).append((index, position))
            else:
                self._namespace_index.setdefault((namespace, skey), []).append((index, position))

    def _resolve(self, kind: str, name: str, namespace: str) -> tuple[tuple[Rule, ...], str]:
        """GetRoleReferenceRules: a Role in the binding's namespace or a ClusterRole."""
        if kind == "Role":
            rules = self._roles.get((namespace, name)) if namespace else None
            return (rules, "") if rules is not None else ((), _not_found("role", name))
        if kind == "ClusterRole":
            rules = self._cluster_roles.get(name)
            return (rules, "") if rules is not None else ((), _not_found("clusterrole", name))
        return (), f"unsupported role reference kind: {go_quote(kind)}"

    def role_rules(self, kind: str, name: str, namespace: str) -> tuple[tuple[Rule, ...], str]:
        """The rules of the role a binding in `namespace` refers to, or the error that
        says why there are none (upstream's GetRoleReferenceRules)."""
        return self._resolve(kind, name, namespace)

    def _applicable(self, user: UserInfo, namespace: str) -> list[tuple[int, int]]:
        """The bindings that apply to the user, ClusterRoleBindings first, each in the order
        given, with the first of its subjects that names the user (upstream's order), as
        (binding index, subject position)."""
        keys = ["u:" + user.name, *("g:" + g for g in user.groups)]
        found: list[tuple[int, int]] = []
        for lists in (
            [self._cluster_index.get(k, ()) for k in keys],
            [self._namespace_index.get((namespace, k), ()) for k in keys] if namespace else [],
        ):
            first: dict[int, int] = {}
            for entries in lists:
                for index, position in entries:
                    if position < first.get(index, position + 1):
                        first[index] = position
            found.extend(sorted(first.items()))
        return found

    def _source(self, index: int, position: int) -> str:
        """The binding and subject that allowed a request, formatted once."""
        key = (index, position)
        text = self._sources.get(key)
        if text is None:
            binding = self._bindings[index]
            text = self._sources[key] = binding.source(binding.subjects[position])
        return text

    def authorize(self, user: UserInfo, attrs: RequestInfo) -> Decision:
        """Allowed, with the binding that allows it; else denied, with the roles that could
        not be resolved as the reason (upstream's DecisionNoOpinion, which is a denial
        when RBAC is the last authorizer)."""
        if SYSTEM_MASTERS in user.groups:
            return Decision(True)
        errors: list[str] = []
        for index, position in self._applicable(user, attrs.namespace):
            binding = self._bindings[index]
            if binding.error:
                errors.append(binding.error)
                continue
            for rule in binding.rules:
                if rule.allows(attrs):
                    return Decision(True, f"RBAC: allowed by {self._source(index, position)}")
        return Decision(False, f"RBAC: {aggregate_errors(errors)}" if errors else "")

    def rules_for(self, user: UserInfo, namespace: str) -> RulesReview:
        """The rules that apply to the user in the namespace ("" for cluster-wide only), as
        a SelfSubjectRulesReview lists them."""
        resource: list[Rule] = []
        non_resource: list[Rule] = []
        errors: list[str] = []
        for index, _ in self._applicable(user, namespace):
            binding = self._bindings[index]
            if binding.error:
                errors.append(binding.error)
            for rule in binding.rules:
                if rule.resources:
                    resource.append(rule)
                if rule.non_resource_urls:
                    non_resource.append(rule)
        return RulesReview(tuple(resource), tuple(non_resource), False, aggregate_errors(errors))
