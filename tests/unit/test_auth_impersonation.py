"""Impersonation headers: who a request acts as and what its sender must be allowed, as
upstream's impersonation filter reads them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.auth.forbidden import forbidden
from kubesvc.auth.impersonation import MAX_VALUES, BadImpersonation, impersonation
from kubesvc.auth.user import UserInfo


def test_no_headers_no_impersonation() -> None:
    assert impersonation([("Authorization", "Bearer x"), ("Accept", "*/*")]) is None


def test_a_user_with_groups() -> None:
    got = impersonation(
        [("Impersonate-User", "jane"), ("Impersonate-Group", "dev"), ("impersonate-group", "qa")]
    )
    assert got is not None
    assert got.user == UserInfo("jane", "", ("dev", "qa", "system:authenticated"))
    assert [(c.resource, c.name, c.verb) for c in got.checks] == [
        ("users", "jane", "impersonate"),
        ("groups", "dev", "impersonate"),
        ("groups", "qa", "impersonate"),
    ]
    who = UserInfo("system:serviceaccount:ns:actor")
    assert forbidden(who, got.checks[0]).message == (
        'users "jane" is forbidden: User "system:serviceaccount:ns:actor" cannot impersonate '
        'resource "users" in API group "" at the cluster scope'
    )


def test_a_service_account_gets_its_groups_and_is_checked_in_its_namespace() -> None:
    got = impersonation([("Impersonate-User", "system:serviceaccount:team:bot")])
    assert got is not None
    assert got.user.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    )
    (check,) = got.checks
    assert (check.resource, check.namespace, check.name) == ("serviceaccounts", "team", "bot")


def test_uid_and_extra() -> None:
    got = impersonation(
        [
            ("Impersonate-User", "jane"),
            ("Impersonate-Uid", "1234"),
            ("Impersonate-Extra-Scopes%2Fview", "a"),
            ("Impersonate-Extra-scopes%2fview", "b"),
        ]
    )
    assert got is not None
    assert got.user.uid == "1234"
    assert got.user.extra == {"scopes/view": ("a", "b")}
    assert [(c.api_group, c.resource, c.subresource, c.name) for c in got.checks[1:]] == [
        ("authentication.k8s.io", "userextras", "scopes/view", "a"),
        ("authentication.k8s.io", "userextras", "scopes/view", "b"),
        ("authentication.k8s.io", "uids", "", "1234"),
    ]


def test_anonymous_is_unauthenticated() -> None:
    got = impersonation([("Impersonate-User", "system:anonymous")])
    assert got is not None and got.user.groups == ("system:unauthenticated",)


def test_groups_without_a_user_are_refused() -> None:
    with pytest.raises(BadImpersonation):
        impersonation([("Impersonate-Group", "system:masters")])


def test_too_many_values_are_refused() -> None:
    headers = [("Impersonate-User", "jane")]
    headers += [("Impersonate-Group", f"g{i}") for i in range(MAX_VALUES + 1)]
    with pytest.raises(BadImpersonation):
        impersonation(headers)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["Impersonate-User", "Impersonate-Group", "Impersonate-Uid", "Impersonate-Extra-"]
            ).flatmap(lambda h: st.just(h) | st.text(max_size=6).map(lambda t: h + t)),
            st.text(max_size=20),
        ),
        max_size=12,
    )
)
def test_any_headers_give_a_user_or_a_bad_request(headers: list[tuple[str, str]]) -> None:
    try:
        got = impersonation(headers)
    except BadImpersonation:
        return
    if got is not None:
        assert got.checks and all(c.verb == "impersonate" for c in got.checks)
        assert got.user.groups
