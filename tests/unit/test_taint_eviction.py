"""The taint eviction controller's pure parts and the DefaultTolerationSeconds admission."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.apiserver.tolerations import add_default_tolerations
from kubesvc.controllers.tainteviction import (
    disruption_patch,
    no_execute_taints,
    toleration_time,
    verdict,
)

Obj = dict[str, Any]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def taint(key: str = UNREACHABLE, added_ago: float | None = 10, effect: str = "NoExecute") -> Obj:
    t: Obj = {"key": key, "effect": effect}
    if added_ago is not None:
        t["timeAdded"] = ts(added_ago)
    return t


def pod(*tolerations: Obj) -> Obj:
    return {"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "tolerations": list(tolerations)}}


def tol(key: str | None = UNREACHABLE, seconds: int | None = None, **kw: Any) -> Obj:
    t: Obj = {"operator": "Exists", "effect": "NoExecute", **kw}
    if key is not None:
        t["key"] = key
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return t


@pytest.mark.parametrize(
    ("p", "taints", "now", "at_ago"),
    [
        pytest.param(pod(), [], False, None, id="no-taints"),
        pytest.param(pod(), [taint()], True, None, id="not-tolerated"),
        pytest.param(pod(tol(NOT_READY, 300)), [taint()], True, None, id="other-key-tolerated"),
        pytest.param(pod(tol(seconds=300)), [taint()], False, -290, id="tolerated-for-a-while"),
        pytest.param(pod(tol(seconds=5)), [taint()], True, 5, id="toleration-over"),
        pytest.param(pod(tol()), [taint()], False, None, id="tolerated-forever"),
        pytest.param(pod(tol(seconds=0)), [taint()], True, 10, id="zero-seconds"),
        pytest.param(pod(tol(seconds=-3)), [taint()], True, 10, id="negative-seconds"),
        pytest.param(pod(tol(key=None)), [taint(), taint(NOT_READY)], False, None, id="all-keys"),
        pytest.param(
            pod(tol(seconds=100), tol(NOT_READY, 80)),
            [taint(added_ago=20), taint(NOT_READY, added_ago=50)],
            False,
            -30,
            id="least-seconds-from-oldest-taint",
        ),
        pytest.param(
            pod(tol(seconds=100), tol(NOT_READY)),
            [taint(added_ago=20), taint(NOT_READY)],
            False,
            -80,
            id="forever-and-limited",
        ),
        pytest.param(
            pod({"key": UNREACHABLE, "operator": "Equal", "value": "x", "effect": "NoExecute"}),
            [taint()],
            True,
            None,
            id="value-mismatch",
        ),
    ],
)
def test_verdict(p: Obj, taints: list[Obj], now: bool, at_ago: float | None) -> None:
    v = verdict(p, taints, NOW)
    assert v.now is now
    if at_ago is None:
        assert v.at is None
    else:
        assert v.at == NOW - timedelta(seconds=at_ago)


def test_verdict_without_time_added_counts_from_first_seen() -> None:
    p = pod(tol(seconds=60))
    v = verdict(p, [taint(added_ago=None)], NOW, first_seen=NOW - timedelta(seconds=20))
    assert not v.now and v.at == NOW + timedelta(seconds=40)
    v = verdict(p, [taint(added_ago=None)], NOW)  # never seen before: from now
    assert v.at == NOW + timedelta(seconds=60)


def test_toleration_time() -> None:
    assert toleration_time([]) is None
    assert toleration_time([{"tolerationSeconds": 30}, {"tolerationSeconds": 10}, {}]) == 10
    assert toleration_time([{"tolerationSeconds": True}]) is None  # not an integer


def test_no_execute_taints_reads_defensively() -> None:
    assert no_execute_taints(None) == []
    assert no_execute_taints({"spec": "x"}) == []
    assert no_execute_taints({"spec": {"taints": {"a": 1}}}) == []
    node = {"spec": {"taints": [taint(), taint(effect="NoSchedule"), "junk", None]}}
    assert no_execute_taints(node) == [taint()]


def test_disruption_patch() -> None:
    cond = disruption_patch(pod(), NOW)["status"]["conditions"][0]
    assert cond["type"] == "DisruptionTarget" and cond["status"] == "True"
    assert cond["reason"] == "DeletionByTaintManager"
    assert cond["message"] == "Taint manager: deleting due to NoExecute taint"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    json_values,
    st.sampled_from([UNREACHABLE, NOT_READY, "", "NoExecute", "Exists", "Equal", 300, -1]),
)
tolerations_like = st.lists(
    st.dictionaries(
        st.sampled_from(["key", "operator", "value", "effect", "tolerationSeconds"]),
        field_values,
        max_size=5,
    )
    | json_values,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    tolerations=tolerations_like | json_values,
    taints=st.lists(
        st.fixed_dictionaries(
            {"key": st.sampled_from([UNREACHABLE, NOT_READY, "x"])},
            optional={"timeAdded": field_values, "value": field_values},
        ).map(lambda t: {**t, "effect": "NoExecute"}),
        max_size=3,
    ),
)
def test_verdict_survives_anything(tolerations: Any, taints: list[Obj]) -> None:
    v = verdict({"spec": {"tolerations": tolerations}}, taints, NOW)
    assert v.now or v.at is None or v.at > NOW - timedelta(days=400000)


# -- DefaultTolerationSeconds ------------------------------------------------------------
DEFAULTS = [
    {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]


@pytest.mark.parametrize(
    ("tolerations", "added"),
    [
        pytest.param(None, DEFAULTS, id="none"),
        pytest.param([], DEFAULTS, id="empty"),
        pytest.param([tol(NOT_READY, 20)], DEFAULTS[1:], id="has-not-ready"),
        pytest.param([tol(UNREACHABLE)], DEFAULTS[:1], id="has-unreachable-forever"),
        pytest.param([{"operator": "Exists"}], [], id="tolerates-everything"),
        pytest.param([{"key": NOT_READY, "operator": "Exists"}], DEFAULTS[1:], id="any-effect"),
        pytest.param(
            [{"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"}],
            DEFAULTS,
            id="noschedule-only",
        ),
    ],
)
def test_default_tolerations(tolerations: list[Obj] | None, added: list[Obj]) -> None:
    p: Obj = {"spec": {"containers": []}}
    if tolerations is not None:
        p["spec"]["tolerations"] = copy.deepcopy(tolerations)
    add_default_tolerations(p)
    assert p["spec"].get("tolerations", []) == (tolerations or []) + added


def test_default_toleration_seconds_are_configurable() -> None:
    p: Obj = {"spec": {}}
    add_default_tolerations(p, 5, 7)
    assert [t["tolerationSeconds"] for t in p["spec"]["tolerations"]] == [5, 7]


@settings(max_examples=300, deadline=None)
@given(spec=json_values, tolerations=tolerations_like | json_values)
def test_default_tolerations_survive_anything(spec: Any, tolerations: Any) -> None:
    p: Obj = {"spec": spec}
    add_default_tolerations(p)
    p = {"spec": {"tolerations": tolerations}}
    before = copy.deepcopy(tolerations)
    add_default_tolerations(p)
    after = p["spec"]["tolerations"]
    if before is None:
        assert len(after) == 2
    elif isinstance(before, list):
        assert after[: len(before)] == before and len(after) <= len(before) + 2
    else:
        assert after == before
