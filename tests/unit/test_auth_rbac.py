"""The RBAC authorizer: rule matching, subjects, binding scope, reasons, hostile objects."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.auth.rbac import Decision, Policy
from kubesvc.auth.request import (
    RequestInfo,
    non_resource_attributes,
    request_info,
    resource_attributes,
)
from kubesvc.auth.rules import parse_rule
from kubesvc.auth.user import AUTHENTICATED, SYSTEM_MASTERS, UserInfo, service_account_user

ALICE = UserInfo("alice", groups=("devs", AUTHENTICATED))
BOB = UserInfo("bob", groups=(AUTHENTICATED,))
SA = service_account_user("team-a", "builder")


def rule(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items()}


def cluster_role(name: str, *rules: dict[str, Any], labels: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"kind": "ClusterRole", "metadata": meta, "rules": list(rules)}


def role(ns: str, name: str, *rules: dict[str, Any]) -> dict:
    return {"kind": "Role", "metadata": {"namespace": ns, "name": name}, "rules": list(rules)}


def subject(kind: str, name: str, ns: str | None = None) -> dict[str, Any]:
    s = {"kind": kind, "name": name}
    if ns is not None:
        s["namespace"] = ns
    return s


def crb(name: str, role_name: str, *subjects: dict[str, Any]) -> dict:
    return {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role_name,
        },
        "subjects": list(subjects),
    }


def rb(ns: str, name: str, kind: str, role_name: str, *subjects: dict[str, Any]) -> dict:
    return {
        "kind": "RoleBinding",
        "metadata": {"namespace": ns, "name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name},
        "subjects": list(subjects),
    }


def get(resource: str, ns: str = "", name: str = "", sub: str = "", group: str = "") -> RequestInfo:
    return resource_attributes(
        "get", resource, group=group, namespace=ns, name=name, subresource=sub
    )


READ_PODS = rule(verbs=["get", "list", "watch"], apiGroups=[""], resources=["pods"])


# -- rule matching (evaluation_helpers.go) --------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "attrs", "allowed"),
    [
        pytest.param(READ_PODS, get("pods", "ns"), True, id="exact"),
        pytest.param(READ_PODS, resource_attributes("delete", "pods"), False, id="verb"),
        pytest.param(READ_PODS, get("pods", group="apps"), False, id="group"),
        pytest.param(READ_PODS, get("pods", sub="log"), False, id="subresource-not-in-resource"),
        pytest.param(
            rule(verbs=["*"], apiGroups=["*"], resources=["*"]), get("x", group="y"), True, id="all"
        ),
        pytest.param(
            rule(verbs=["get"], apiGroups=[""], resources=["pods/log"]),
            get("pods", sub="log"),
            True,
            id="resource/sub",
        ),
        pytest.param(
            rule(verbs=["get"], apiGroups=[""], resources=["*/status"]),
            get("nodes", sub="status"),
            True,
            id="*/sub",
        ),
        pytest.param(
            rule(verbs=["get"], apiGroups=[""], resources=["*/status"]),
            get("nodes"),
            False,
            id="*/sub-not-the-resource",
        ),
        pytest.param(
            rule(verbs=["get"], apiGroups=[""], resources=["*/status"]),
            get("nodes", sub="statuses"),
            False,
            id="*/sub-exact",
        ),
        pytest.param(
            rule(verbs=["get"], apiGroups=[""], resources=["pods"], resourceNames=["a"]),
            get("pods", name="a"),
            True,
            id="name",
        ),
        pytest.param(
            rule(verbs=["get"], apiGroups=[""], resources=["pods"], resourceNames=["a"]),
            get("pods", name="b"),
            False,
            id="other-name",
        ),
        pytest.param(
            rule(verbs=["list"], apiGroups=[""], resources=["pods"], resourceNames=["a"]),
            resource_attributes("list", "pods"),
            False,
            id="names-and-no-name",
        ),
        pytest.param(
            rule(verbs=["get"], nonResourceURLs=["/healthz"]),
            non_resource_attributes("get", "/healthz"),
            True,
            id="url",
        ),
        pytest.param(
            rule(verbs=["get"], nonResourceURLs=["/healthz"]),
            non_resource_attributes("get", "/healthz/ping"),
            False,
            id="url-exact",
        ),
        pytest.param(
            rule(verbs=["get"], nonResourceURLs=["/apis/*"]),
            non_resource_attributes("get", "/apis/apps/v1"),
            True,
            id="url-prefix",
        ),
        pytest.param(
            rule(verbs=["get"], nonResourceURLs=["/apis**"]),
            non_resource_attributes("get", "/apisx"),
            True,
            id="url-stars-trimmed",
        ),
        pytest.param(
            rule(verbs=["get"], nonResourceURLs=["*"]),
            non_resource_attributes("get", "/anything"),
            True,
            id="url-all",
        ),
        pytest.param(
            rule(verbs=["get"], nonResourceURLs=["*"]),
            get("pods"),
            False,
            id="url-rule-not-for-resources",
        ),
        pytest.param(
            rule(verbs=["get"], apiGroups=["*"], resources=["*"]),
            non_resource_attributes("get", "/healthz"),
            False,
            id="resource-rule-not-for-urls",
        ),
    ],
)
def test_rule_matching(raw: dict[str, Any], attrs: RequestInfo, allowed: bool) -> None:
    parsed = parse_rule(raw)
    assert parsed is not None
    assert parsed.allows(attrs) is allowed


@pytest.mark.parametrize(
    "raw",
    [
        "rule",
        rule(verbs="get", apiGroups=[""], resources=["pods"]),
        rule(verbs=["get", 1], apiGroups=[""], resources=["pods"]),
        # one bad name must not leave an empty list, which would mean every name
        rule(verbs=["get"], apiGroups=[""], resources=["pods"], resourceNames=[{"a": 1}]),
        rule(verbs=["get"], apiGroups=[""], resources=[None]),
    ],
)
def test_a_rule_of_the_wrong_shape_is_dropped_whole(raw: Any) -> None:
    assert parse_rule(raw) is None


# -- subjects and scope (rule.go) ------------------------------------------------------------
def test_cluster_role_binding_grants_everywhere_by_user_group_and_service_account() -> None:
    policy = Policy(
        cluster_roles=[cluster_role("pod-reader", READ_PODS)],
        cluster_role_bindings=[
            crb("by-user", "pod-reader", subject("User", "alice")),
            crb("by-sa", "pod-reader", subject("ServiceAccount", "builder", "team-a")),
        ],
    )
    for who in (ALICE, SA):
        assert policy.authorize(who, get("pods", "anywhere")).allowed
        assert policy.authorize(who, get("pods")).allowed
    assert not policy.authorize(BOB, get("pods", "anywhere")).allowed
    by_group = Policy(
        cluster_roles=[cluster_role("pod-reader", READ_PODS)],
        cluster_role_bindings=[crb("g", "pod-reader", subject("Group", "devs"))],
    )
    assert by_group.authorize(ALICE, get("pods", "x")).allowed
    assert not by_group.authorize(BOB, get("pods", "x")).allowed


def test_role_binding_grants_only_in_its_namespace() -> None:
    policy = Policy(
        roles=[role("team-a", "reader", READ_PODS)],
        cluster_roles=[cluster_role("pod-reader", READ_PODS)],
        role_bindings=[
            rb("team-a", "local", "Role", "reader", subject("User", "alice")),
            rb("team-a", "shared", "ClusterRole", "pod-reader", subject("User", "bob")),
        ],
    )
    for who in (ALICE, BOB):
        assert policy.authorize(who, get("pods", "team-a")).allowed
        assert not policy.authorize(who, get("pods", "team-b")).allowed
        assert not policy.authorize(who, get("pods")).allowed  # cluster-wide list


def test_a_role_in_another_namespace_is_not_found() -> None:
    policy = Policy(
        roles=[role("team-b", "reader", READ_PODS)],
        role_bindings=[rb("team-a", "local", "Role", "reader", subject("User", "alice"))],
    )
    decision = policy.authorize(ALICE, get("pods", "team-a"))
    assert decision == Decision(False, 'RBAC: role.rbac.authorization.k8s.io "reader" not found')


def test_service_account_subject_without_namespace() -> None:
    policy = Policy(
        cluster_roles=[cluster_role("pod-reader", READ_PODS)],
        role_bindings=[
            rb("team-a", "local", "ClusterRole", "pod-reader", subject("ServiceAccount", "builder"))
        ],
        cluster_role_bindings=[crb("nowhere", "pod-reader", subject("ServiceAccount", "other"))],
    )
    assert policy.authorize(SA, get("pods", "team-a")).allowed  # the binding's namespace
    other = service_account_user("team-a", "other")
    assert not policy.authorize(other, get("pods", "team-a")).allowed


def test_service_account_subject_is_the_user_name() -> None:
    policy = Policy(
        cluster_roles=[cluster_role("pod-reader", READ_PODS)],
        cluster_role_bindings=[
            crb("x", "pod-reader", subject("ServiceAccount", "builder", "team-a"))
        ],
    )
    # a user called like the ServiceAccount is it, for RBAC, whatever its groups
    assert policy.authorize(UserInfo("system:serviceaccount:team-a:builder"), get("pods")).allowed
    assert not policy.authorize(UserInfo("system:serviceaccount:team-a:build"), get("pods")).allowed


def test_unknown_subject_kinds_match_nobody() -> None:
    policy = Policy(
        cluster_roles=[cluster_role("pod-reader", READ_PODS)],
        cluster_role_bindings=[crb("x", "pod-reader", subject("Robot", "alice"))],
    )
    assert not policy.authorize(ALICE, get("pods")).allowed


def test_system_masters_is_always_allowed() -> None:
    admin = UserInfo("admin", groups=(SYSTEM_MASTERS, AUTHENTICATED))
    assert Policy().authorize(admin, non_resource_attributes("delete", "/anything")).allowed


# -- reasons ---------------------------------------------------------------------------------
def test_allowed_reason_names_the_binding_and_first_matching_subject() -> None:
    policy = Policy(
        cluster_roles=[cluster_role("pod-reader", READ_PODS)],
        role_bindings=[
            rb(
                "team-a",
                "readers",
                "ClusterRole",
                "pod-reader",
                subject("User", "carol"),
                subject("ServiceAccount", "builder"),
                subject("Group", "system:serviceaccounts"),
            )
        ],
        cluster_role_bindings=[crb("devs", "pod-reader", subject("Group", "devs"))],
    )
    assert policy.authorize(SA, get("pods", "team-a")).reason == (
        'RBAC: allowed by RoleBinding "readers/team-a" of ClusterRole "pod-reader" '
        'to ServiceAccount "builder/team-a"'
    )
    assert policy.authorize(ALICE, get("pods", "team-a")).reason == (
        'RBAC: allowed by ClusterRoleBinding "devs" of ClusterRole "pod-reader" to Group "devs"'
    )


def test_denied_reason_lists_roles_that_could_not_be_resolved() -> None:
    policy = Policy(
        cluster_role_bindings=[
            crb("a", "missing", subject("User", "alice")),
            crb("b", "missing", subject("Group", "devs")),
            crb("c", "gone", subject("Group", AUTHENTICATED)),
            crb("d", "other", subject("User", "bob")),
        ]
    )
    assert policy.authorize(ALICE, get("pods")).reason == (
        'RBAC: [clusterrole.rbac.authorization.k8s.io "missing" not found, '
        'clusterrole.rbac.authorization.k8s.io "gone" not found]'
    )
    assert Policy().authorize(ALICE, get("pods")) == Decision(False, "")


def test_unsupported_role_reference_kind() -> None:
    binding = crb("a", "x", subject("User", "alice"))
    binding["roleRef"]["kind"] = "Policy"
    reason = Policy(cluster_role_bindings=[binding]).authorize(ALICE, get("pods")).reason
    assert reason == 'RBAC: unsupported role reference kind: "Policy"'


def test_a_role_binding_to_a_role_from_a_cluster_binding_is_not_found() -> None:
    binding = crb("a", "reader", subject("User", "alice"))
    binding["roleRef"]["kind"] = "Role"
    policy = Policy(roles=[role("ns", "reader", READ_PODS)], cluster_role_bindings=[binding])
    assert policy.authorize(ALICE, get("pods", "ns")).reason == (
        'RBAC: role.rbac.authorization.k8s.io "reader" not found'
    )


# -- rules_for (SelfSubjectRulesReview) --------------------------------------------------------
def test_rules_for_lists_cluster_and_namespace_rules() -> None:
    discovery = rule(verbs=["get"], nonResourceURLs=["/api", "/api/*"])
    policy = Policy(
        roles=[role("team-a", "cm", rule(verbs=["get"], apiGroups=[""], resources=["configmaps"]))],
        cluster_roles=[cluster_role("pod-reader", READ_PODS), cluster_role("discovery", discovery)],
        role_bindings=[rb("team-a", "cm", "Role", "cm", subject("User", "alice"))],
        cluster_role_bindings=[
            crb("d", "discovery", subject("Group", AUTHENTICATED)),
            crb("p", "pod-reader", subject("User", "alice")),
            crb("m", "missing", subject("User", "alice")),
        ],
    )
    review = policy.rules_for(ALICE, "team-a")
    assert review.status() == {
        "resourceRules": [
            {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]},
        ],
        "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*"]}],
        "incomplete": False,
        "evaluationError": 'clusterrole.rbac.authorization.k8s.io "missing" not found',
    }
    assert len(policy.rules_for(ALICE, "team-b").resource_rules) == 1
    assert len(policy.rules_for(ALICE, "").resource_rules) == 1


def test_request_to_decision() -> None:
    """From a request line to a decision, as the API server will call it."""
    policy = Policy(
        cluster_roles=[cluster_role("pod-reader", READ_PODS)],
        role_bindings=[rb("team-a", "r", "ClusterRole", "pod-reader", subject("User", "alice"))],
    )
    attrs = request_info("GET", "/api/v1/namespaces/team-a/pods", {"watch": "1"})
    assert policy.authorize(ALICE, attrs).allowed
    attrs = request_info("GET", "/api/v1/namespaces/team-a/pods/p/log", {})
    assert not policy.authorize(ALICE, attrs).allowed


# -- hostile objects ---------------------------------------------------------------------------
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NAMES = st.sampled_from(["alice", "devs", "pod-reader", "team-a", "builder", AUTHENTICATED])


def maybe(value: Any) -> Any:
    return st.one_of(st.just(value), JUNK)


RULE = st.fixed_dictionaries(
    {},
    optional={
        "verbs": maybe(["get"]) | st.just(["*"]),
        "apiGroups": maybe([""]) | st.just(["*"]),
        "resources": maybe(["pods"]) | st.just(["*"]),
        "resourceNames": maybe(["a"]),
        "nonResourceURLs": maybe(["*"]),
    },
)
SUBJECT = st.fixed_dictionaries(
    {"kind": st.sampled_from(["User", "Group", "ServiceAccount"]) | JUNK, "name": NAMES | JUNK},
    optional={"namespace": st.sampled_from(["team-a", ""]) | JUNK},
)
META = st.fixed_dictionaries(
    {"name": NAMES | JUNK}, optional={"namespace": st.sampled_from(["team-a", "team-b"]) | JUNK}
)
ROLE = (
    st.fixed_dictionaries(
        {"metadata": META | JUNK, "rules": st.lists(RULE | JUNK, max_size=3) | JUNK}
    )
    | JUNK
)
BINDING = (
    st.fixed_dictionaries(
        {
            "metadata": META | JUNK,
            "roleRef": st.fixed_dictionaries(
                {"kind": st.sampled_from(["Role", "ClusterRole"]) | JUNK, "name": NAMES | JUNK}
            )
            | JUNK,
            "subjects": st.lists(SUBJECT | JUNK, max_size=3) | JUNK,
        }
    )
    | JUNK
)
ATTRS = st.builds(
    resource_attributes,
    st.sampled_from(["get", "list", "delete"]),
    st.sampled_from(["pods", "secrets"]),
    namespace=st.sampled_from(["", "team-a", "team-b"]),
    name=st.sampled_from(["", "a"]),
    subresource=st.sampled_from(["", "log"]),
) | st.builds(non_resource_attributes, st.just("get"), st.sampled_from(["/", "/healthz"]))
USERS = st.sampled_from([ALICE, BOB, SA, UserInfo("", groups=("",))])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    roles=st.lists(ROLE, max_size=3),
    cluster_roles=st.lists(ROLE, max_size=3),
    role_bindings=st.lists(BINDING, max_size=3),
    cluster_role_bindings=st.lists(BINDING, max_size=3),
    user=USERS,
    attrs=ATTRS,
)
def test_hostile_objects_never_raise(
    roles: list[Any],
    cluster_roles: list[Any],
    role_bindings: list[Any],
    cluster_role_bindings: list[Any],
    user: UserInfo,
    attrs: RequestInfo,
) -> None:
    policy = Policy(roles, cluster_roles, role_bindings, cluster_role_bindings)
    decision = policy.authorize(user, attrs)
    assert isinstance(decision.allowed, bool) and isinstance(decision.reason, str)
    policy.rules_for(user, attrs.namespace).status()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cluster_roles=st.lists(ROLE, max_size=3),
    role_bindings=st.lists(BINDING, max_size=4),
    user=USERS,
    attrs=ATTRS,
)
def test_a_role_binding_never_allows_outside_its_namespace(
    cluster_roles: list[Any], role_bindings: list[Any], user: UserInfo, attrs: RequestInfo
) -> None:
    everything = [cluster_role("pod-reader", rule(verbs=["*"], apiGroups=["*"], resources=["*"]))]
    policy = Policy(
        roles=[role("team-a", "pod-reader", rule(verbs=["*"], apiGroups=["*"], resources=["*"]))],
        cluster_roles=[*everything, *cluster_roles],
        role_bindings=role_bindings,
    )
    namespaces = {
        b["metadata"]["namespace"]
        for b in role_bindings
        if isinstance(b, dict)
        and isinstance(b.get("metadata"), dict)
        and isinstance(b["metadata"].get("namespace"), str)
    }
    if policy.authorize(user, attrs).allowed:
        assert attrs.is_resource_request and attrs.namespace in namespaces


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(others=st.lists(BINDING, max_size=4), user_name=NAMES, attrs=ATTRS)
def test_cluster_admin_binding_allows_everything(
    others: list[Any], user_name: str, attrs: RequestInfo
) -> None:
    admin = cluster_role(
        "cluster-admin",
        rule(verbs=["*"], apiGroups=["*"], resources=["*"]),
        rule(verbs=["*"], nonResourceURLs=["*"]),
    )
    policy = Policy(
        cluster_roles=[admin],
        cluster_role_bindings=[
            *others,
            crb("cluster-admin", "cluster-admin", subject("User", user_name)),
        ],
    )
    assert policy.authorize(UserInfo(user_name), attrs).allowed


def test_huge_objects_are_handled() -> None:
    many = [rule(verbs=["get"], apiGroups=[""], resources=[f"r{i}"]) for i in range(20_000)]
    policy = Policy(
        cluster_roles=[cluster_role("big", *many)],
        cluster_role_bindings=[
            crb("big", "big", *[subject("User", f"u{i}") for i in range(20_000)])
        ],
    )
    assert policy.authorize(UserInfo("u19999"), get("r19999")).allowed
    assert not policy.authorize(UserInfo("u19999"), get("other")).allowed
