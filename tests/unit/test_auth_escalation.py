"""RBAC's escalation check (kubesvc/auth/escalation.py): upstream's Covers, CompactRules
and the message of ConfirmNoEscalation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubesvc.auth.escalation import FULL_AUTHORITY, compact_string, escalation, uncovered
from kubesvc.auth.rules import Rule
from tests.unit.test_poison_properties import PROPERTY


def r(verbs: str, groups: str = "", resources: str = "", names: str = "", urls: str = "") -> Rule:
    def split(text: str) -> tuple[str, ...]:
        return tuple(text.split(",")) if text else ()

    return Rule(
        split(verbs),
        split(groups) or (("",) if resources else ()),
        split(resources),
        split(names),
        split(urls),
    )


def test_covers_by_verb_group_resource_name_and_url() -> None:
    assert uncovered([r("*", "*", "*")], [r("get,list", "apps", "deployments", "a")]) == []
    assert uncovered([r("get", "", "pods")], [r("get", "", "pods", "p1")]) == []
    # an owner limited to names covers only those names, and never a rule for every name
    assert uncovered([r("get", "", "pods", "p1")], [r("get", "", "pods", "p1")]) == []
    assert uncovered([r("get", "", "pods", "p1")], [r("get", "", "pods")]) == [r("get", "", "pods")]
    assert uncovered([r("get", "", "pods")], [r("get", "", "pods/log")]) == [
        r("get", "", "pods/log")
    ]
    assert uncovered([r("get", urls="/logs/*")], [r("get", urls="/logs/a")]) == []
    assert uncovered([r("get", urls="/logs")], [r("get", urls="/logs/a")]) != []
    missing = uncovered([r("get", "", "secrets")], [r("get,list", "", "secrets,configmaps")])
    assert set(missing) == {
        r("list", "", "secrets"),
        r("get", "", "configmaps"),
        r("list", "", "configmaps"),
    }


def test_the_message_is_upstreams() -> None:
    owner = [r("get", "", "pods")]
    wanted = [
        r("get,list", "", "secrets"),
        r("get", "", "pods"),
        r("get", "apps", "deployments", "a,b"),
    ]
    assert escalation("jane", ["g1", "system:authenticated"], owner, wanted) == (
        'user "jane" (groups=["g1" "system:authenticated"]) is attempting to grant RBAC '
        "permissions not currently held:\n"
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}\n'
        '{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["a"], Verbs:["get"]}\n'
        '{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["b"], Verbs:["get"]}'
    )
    assert escalation("jane", [], owner, [r("get", "", "pods")]) is None
    assert (
        compact_string(r("get", urls="/healthz")) == '{NonResourceURLs:["/healthz"], Verbs:["get"]}'
    )
    assert escalation("x", [], [], [r("get", "", "pods")], "bad").endswith(
        "; resolution errors: [bad]"
    )


def test_only_full_authority_covers_an_aggregated_role() -> None:
    assert uncovered(FULL_AUTHORITY, FULL_AUTHORITY) == []
    assert uncovered([r("*", "*", "*")], FULL_AUTHORITY) == [Rule(("*",), non_resource_urls=("*",))]


words = st.lists(
    st.sampled_from(["", "*", "get", "list", "pods", "apps", "a", "/x", "/x/*"]), max_size=3
)


@PROPERTY
@given(
    st.lists(st.tuples(words, words, words, words, words), max_size=4),
    st.tuples(words, words, words, words, words),
)
def test_a_rule_always_covers_itself_and_full_authority_covers_everything(
    owners: list, servant: tuple
) -> None:
    rule = Rule(*(tuple(w) for w in servant))
    owner_rules = [Rule(*(tuple(w) for w in o)) for o in owners]
    missing = uncovered(owner_rules, [rule])  # never raises
    assert all(len(m.verbs) == 1 for m in missing)
    if rule.non_resource_urls and rule.resource_names:
        return  # upstream: a URL part is never covered by a rule limited to names
    assert uncovered([rule], [rule]) == []
    if not rule.resource_names:
        assert uncovered(FULL_AUTHORITY, [rule]) == []
