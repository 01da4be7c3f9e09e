"""ClusterRole aggregation as upstream's clusterrole-aggregation controller computes it."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.auth.aggregation import aggregate, aggregated_rules, label_selector, settle

TO_VIEW = {"rbac.authorization.k8s.io/aggregate-to-view": "true"}
TO_EDIT = {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}


def rule(*resources: str, verbs: tuple[str, ...] = ("get",)) -> dict[str, Any]:
    return {"apiGroups": [""], "resources": list(resources), "verbs": list(verbs)}


def role(
    name: str,
    *rules: dict[str, Any],
    labels: dict[str, str] | None = None,
    selectors: list[Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name, "labels": labels or {}}}
    if selectors is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": selectors}
        obj["rules"] = None
    else:
        obj["rules"] = list(rules)
    return obj


def test_union_of_selected_roles_in_name_order_each_rule_once() -> None:
    roles = [
        role("view", labels=TO_EDIT, selectors=[{"matchLabels": TO_VIEW}]),
        role("z-extra", rule("pods"), rule("secrets"), labels=TO_VIEW),
        role("a-base", rule("pods"), rule("services"), labels=TO_VIEW),
        role("unrelated", rule("nodes")),
    ]
    assert aggregated_rules(roles[0], roles) == [rule("pods"), rule("services"), rule("secrets")]
    assert aggregate(roles) == {"view": [rule("pods"), rule("services"), rule("secrets")]}


def test_selectors_in_turn_and_expressions() -> None:
    roles = [
        role(
            "agg",
            selectors=[
                {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["b"]}]},
                {"matchLabels": {"tier": "a"}},
            ],
        ),
        role("one", rule("a"), labels={"tier": "a"}),
        role("two", rule("b"), labels={"tier": "b"}),
    ]
    assert aggregated_rules(roles[0], roles) == [rule("b"), rule("a")]


def test_an_empty_selector_selects_every_other_role() -> None:
    roles = [role("all", selectors=[{}]), role("x", rule("a")), role("y", rule("b"))]
    assert aggregated_rules(roles[0], roles) == [rule("a"), rule("b")]


def test_no_aggregation_rule_or_a_bad_selector_changes_nothing() -> None:
    plain = role("plain", rule("a"))
    assert aggregated_rules(plain, [plain]) is None
    for bad in (
        {"matchLabels": {"-bad": "x"}},
        {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        {"matchExpressions": [{"key": "a", "operator": "Near"}]},
        {"matchExpressions": [{"key": "a", "operator": ["In"], "values": ["x"]}]},
        {"matchExpressions": [{"key": 1, "operator": "Exists"}]},
        {"matchLabels": {"a": 1}},
        "tier=a",
    ):
        agg = role("agg", selectors=[bad])
        assert aggregated_rules(agg, [agg, plain]) is None
    assert label_selector({"matchExpressions": [{"key": "a", "operator": "Exists"}]}) is not None


def test_rules_already_in_place_are_no_change() -> None:
    roles = [
        role("view", selectors=[{"matchLabels": TO_VIEW}]),
        role("base", rule("pods"), labels=TO_VIEW),
    ]
    roles[0]["rules"] = [{"resources": ["pods"], "verbs": ["get"], "apiGroups": [""]}]
    assert aggregate(roles) == {}
    roles[0]["rules"] = []
    assert aggregate(roles) == {"view": [rule("pods")]}


def test_settle_follows_chains() -> None:
    roles = [
        role("admin", selectors=[{"matchLabels": {"to-admin": "true"}}]),
        role("edit", labels={"to-admin": "true"}, selectors=[{"matchLabels": TO_EDIT}]),
        role("view", labels=TO_EDIT, selectors=[{"matchLabels": TO_VIEW}]),
        role("agg-view", rule("pods"), labels=TO_VIEW),
        role("agg-edit", rule("pods", verbs=("create",)), labels=TO_EDIT),
    ]
    settled = {r["metadata"]["name"]: r["rules"] for r in settle(roles)}
    assert settled["view"] == [rule("pods")]
    assert settled["edit"] == [rule("pods", verbs=("create",)), rule("pods")]
    assert settled["admin"] == settled["edit"]
    assert roles[0]["rules"] is None  # the input is left alone


def test_settle_ends_when_roles_select_each_other() -> None:
    roles = [
        role("a", labels={"x": "1"}, selectors=[{"matchLabels": {"y": "1"}}]),
        role("b", labels={"y": "1"}, selectors=[{"matchLabels": {"x": "1"}}]),
        role("c", rule("pods"), labels={"x": "1"}),
    ]
    settled = settle(roles)
    assert aggregate(settled) == {}


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
LABELS = st.dictionaries(st.sampled_from(["x", "y"]), st.sampled_from(["1", "2"]), max_size=2)
EXPRESSION = st.fixed_dictionaries(
    {},
    optional={
        "key": st.sampled_from(["x", "y"]) | JUNK,
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]) | JUNK,
        "values": st.lists(st.sampled_from(["1", "2"]), max_size=2) | JUNK,
    },
)
SELECTOR = (
    st.fixed_dictionaries(
        {},
        optional={
            "matchLabels": LABELS | JUNK,
            "matchExpressions": st.lists(EXPRESSION | JUNK, max_size=2) | JUNK,
        },
    )
    | JUNK
)
ROLE = (
    st.fixed_dictionaries(
        {
            "metadata": st.fixed_dictionaries(
                {"name": st.sampled_from(["a", "b", "c"]) | JUNK, "labels": LABELS | JUNK}
            )
            | JUNK
        },
        optional={
            "rules": st.lists(st.just(rule("pods")) | st.just(rule("svc")) | JUNK, max_size=3)
            | JUNK,
            "aggregationRule": st.fixed_dictionaries(
                {"clusterRoleSelectors": st.lists(SELECTOR, max_size=2) | JUNK}
            )
            | JUNK,
        },
    )
    | JUNK
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROLE, max_size=5))
def test_hostile_roles_never_raise(roles: list[Any]) -> None:
    aggregate(roles)
    assert aggregate(settle(roles)) == {}  # settled: the controller would write nothing
