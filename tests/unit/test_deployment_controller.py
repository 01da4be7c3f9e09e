"""Deployment controller decisions: template hash, fenceposts, rolling/proportional/recreate
plans, history cleanup and status/conditions, without any server."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubesvc.api.objmeta import format_time
from kubesvc.controllers import deployment as dep

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
}


def ts(seconds_ago: float) -> str:
    return format_time(NOW - timedelta(seconds=seconds_ago))


def deploy(
    replicas: int = 3,
    surge: Any = 1,
    unavailable: Any = 0,
    strategy: str = "RollingUpdate",
    generation: int = 1,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    strat: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "d-uid",
            "generation": generation,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": copy.deepcopy(TEMPLATE),
            "strategy": strat,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            **spec,
        },
        "status": status or {},
    }


def replica_set(
    name: str,
    replicas: int,
    available: int | None = None,
    created: float = 100,
    revision: int = 1,
    image: str = "nginx:1.25",
    desired: int | None = None,
    max_replicas: int | None = None,
    actual: int | None = None,
) -> dict[str, Any]:
    annotations = {dep.REVISION: str(revision)}
    if desired is not None:
        annotations[dep.DESIRED_REPLICAS] = str(desired)
    if max_replicas is not None:
        annotations[dep.MAX_REPLICAS] = str(max_replicas)
    template = copy.deepcopy(TEMPLATE)
    template["spec"]["containers"][0]["image"] = image
    template["metadata"]["labels"][dep.HASH_LABEL] = name
    available = replicas if available is None else available
    return {
        "metadata": {
            "name": f"web-{name}",
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": ts(created),
            "annotations": annotations,
            "generation": 1,
        },
        "spec": {"replicas": replicas, "template": template},
        "status": {
            "replicas": replicas if actual is None else actual,
            "readyReplicas": available,
            "availableReplicas": available,
            "observedGeneration": 1,
        },
    }


# -- hash ------------------------------------------------------------------------------------
def test_safe_encode_matches_upstream_alphabet() -> None:
    assert dep.safe_encode("0123456789") == "456789bcdf"


def test_template_hash_is_stable_and_sensitive() -> None:
    h = dep.template_hash(TEMPLATE)
    assert h == dep.template_hash(copy.deepcopy(TEMPLATE))
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    changed = copy.deepcopy(TEMPLATE)
    changed["spec"]["containers"][0]["image"] = "nginx:1.26"
    assert dep.template_hash(changed) != h
    assert dep.template_hash(TEMPLATE, 1) != h
    assert dep.template_hash(TEMPLATE, 1) != dep.template_hash(TEMPLATE, 2)
    # nil and empty collections are the same template
    with_empty = copy.deepcopy(TEMPLATE)
    with_empty["metadata"]["annotations"] = {}
    with_empty["spec"]["volumes"] = []
    assert dep.template_hash(with_empty) == h


def test_equal_ignore_hash() -> None:
    rs_template = copy.deepcopy(TEMPLATE)
    rs_template["metadata"]["labels"][dep.HASH_LABEL] = "abc"
    assert dep.equal_ignore_hash(rs_template, TEMPLATE)
    rs_template["spec"]["containers"][0]["image"] = "x"
    assert not dep.equal_ignore_hash(rs_template, TEMPLATE)


def test_new_replica_set_shape() -> None:
    d = deploy(replicas=4, surge="25%", unavailable="25%", minReadySeconds=5)
    d["metadata"]["annotations"] = {"team": "a", dep.LAST_APPLIED: "{}", dep.REVISION: "7"}
    rs = dep.new_replica_set(d, None, 3, 2)
    h = dep.template_hash(TEMPLATE)
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["metadata"]["labels"] == {"app": "web", dep.HASH_LABEL: h}
    assert rs["metadata"]["annotations"] == {
        "team": "a",
        dep.REVISION: "3",
        dep.DESIRED_REPLICAS: "4",
        dep.MAX_REPLICAS: "5",
    }
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", dep.HASH_LABEL: h}}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", dep.HASH_LABEL: h}
    assert rs["spec"]["replicas"] == 2 and rs["spec"]["minReadySeconds"] == 5
    assert d["spec"]["template"] == TEMPLATE  # the Deployment is not modified


def test_revision_bump_keeps_history() -> None:
    rs = replica_set("a", 0, revision=2)
    rs["metadata"]["annotations"][dep.REVISION_HISTORY] = "1"
    assert dep.set_new_rs_annotations(deploy(), rs, 4, exists=True)
    assert rs["metadata"]["annotations"][dep.REVISION] == "4"
    assert rs["metadata"]["annotations"][dep.REVISION_HISTORY] == "1,2"
    assert not dep.set_new_rs_annotations(deploy(), rs, 3, exists=True)


# -- fenceposts --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        pytest.param("25%", "25%", 4, (1, 1), id="defaults-4"),
        pytest.param("25%", "25%", 3, (1, 0), id="surge-up-unavailable-down"),
        pytest.param("25%", "25%", 10, (3, 2), id="defaults-10"),
        pytest.param(1, 0, 3, (1, 0), id="ints"),
        pytest.param("0%", "1%", 2, (0, 1), id="both-zero-after-rounding"),
        pytest.param(0, 0, 5, (0, 1), id="both-zero"),
        pytest.param("100%", "50%", 5, (5, 2), id="large"),
    ],
)
def test_resolve_fenceposts(surge: Any, unavailable: Any, desired: int, expected: tuple) -> None:
    assert dep.resolve_fenceposts(surge, unavailable, desired) == expected


@pytest.mark.parametrize(
    ("d", "surge", "unavailable"),
    [
        pytest.param(deploy(replicas=2, unavailable=5), 1, 2, id="unavailable-capped"),
        pytest.param(deploy(replicas=0, unavailable=1), 1, 0, id="zero-replicas"),
        pytest.param(deploy(strategy="Recreate"), 0, 0, id="recreate"),
    ],
)
def test_max_surge_and_unavailable(d: dict[str, Any], surge: int, unavailable: int) -> None:
    assert (dep.max_surge(d), dep.max_unavailable(d)) == (surge, unavailable)


@pytest.mark.parametrize(
    ("d", "rss", "new", "expected"),
    [
        pytest.param(deploy(3, surge=1), [replica_set("o", 3)], 0, 1, id="surge-one"),
        pytest.param(deploy(3, surge=3), [replica_set("o", 3)], 0, 3, id="surge-all"),
        pytest.param(deploy(3, surge=1), [replica_set("o", 3)], 1, 1, id="at-max-total"),
        pytest.param(deploy(3, surge=1), [replica_set("o", 1)], 2, 3, id="capped-at-desired"),
        pytest.param(deploy(3, surge=1), [], 0, 3, id="fresh"),
        pytest.param(deploy(4, strategy="Recreate"), [replica_set("o", 4)], 0, 4, id="recreate"),
    ],
)
def test_new_rs_new_replicas(d: dict[str, Any], rss: list, new: int, expected: int) -> None:
    new_rs = replica_set("n", new)
    assert dep.new_rs_new_replicas(d, [*rss, new_rs], new_rs) == expected


# -- finding the new ReplicaSet ---------------------------------------------------------------
def test_find_new_and_old_replica_sets() -> None:
    old = replica_set("o", 3, image="nginx:1.24", created=500)
    twin_newer = replica_set("t", 0, created=10)
    twin_older = replica_set("n", 0, created=50)
    rss = [old, twin_newer, twin_older]
    assert dep.find_new_rs(deploy(), rss) is twin_older  # oldest match wins
    assert dep.find_old_rss(deploy(), rss) == [old, twin_newer]
    assert dep.find_new_rs(deploy(), [old]) is None


# -- rolling update --------------------------------------------------------------------------
def names(plan: list[dep.Scale]) -> list[tuple[str, int, str]]:
    return [(s.name, s.replicas, s.op) for s in plan]


@pytest.mark.parametrize(
    ("d", "new", "olds", "expected"),
    [
        pytest.param(
            deploy(3, 1, 0),
            replica_set("n", 0, created=1),
            [replica_set("o", 3)],
            [("web-n", 1, "up")],
            id="first-surge",
        ),
        pytest.param(
            deploy(3, 1, 0),
            replica_set("n", 1, available=0, created=1),
            [replica_set("o", 3)],
            [],
            id="wait-for-new-pod",
        ),
        pytest.param(
            deploy(3, 1, 0),
            replica_set("n", 1, created=1),
            [replica_set("o", 3)],
            [("web-o", 2, "down")],
            id="new-ready-scale-old-down",
        ),
        pytest.param(
            deploy(3, 1, 0),
            replica_set("n", 1, created=1),
            [replica_set("o", 2, available=3)],
            [("web-n", 2, "up")],
            id="stale-old-status-scales-new-up",
        ),
        pytest.param(
            deploy(3, 1, 0),
            replica_set("n", 2, created=1),
            [replica_set("o", 2, available=3)],
            [("web-o", 1, "down")],
            id="stale-old-status-does-not-over-scale-down",
        ),
        pytest.param(
            deploy(3, 0, 1),
            replica_set("n", 0, created=1),
            [replica_set("o", 3)],
            [("web-o", 2, "down")],
            id="no-surge-scale-down-first",
        ),
        pytest.param(
            deploy(4, 1, 1),
            replica_set("n", 1, available=1, created=1),
            [replica_set("o2", 2, available=0, created=50), replica_set("o1", 2, created=90)],
            [("web-o2", 0, "down")],
            id="unhealthy-old-pods-go-first",
        ),
        pytest.param(
            deploy(3, 1, 0),
            replica_set("n", 4, created=1),
            [],
            [("web-n", 3, "down")],
            id="new-above-desired",
        ),
        pytest.param(
            deploy(3, 1, 0),
            replica_set("n", 3, created=1),
            [replica_set("o", 0)],
            [],
            id="done",
        ),
    ],
)
def test_rolling_plan(d: dict[str, Any], new: dict, olds: list, expected: list) -> None:
    assert names(dep.rolling_plan(d, new, olds)) == expected


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"),
    [
        pytest.param(3, 1, 0, id="3-surge1-unavail0"),
        pytest.param(3, 0, 1, id="3-surge0-unavail1"),
        pytest.param(10, "25%", "25%", id="10-defaults"),
        pytest.param(5, 2, 2, id="5-two-two"),
        pytest.param(1, 1, 0, id="single"),
    ],
)
def test_rolling_update_converges_within_bounds(
    replicas: int, surge: Any, unavailable: Any
) -> None:
    """Drive the planner like the two controllers would (pods become available one step after
    they are asked for) and check maxSurge/maxUnavailable hold at every step."""
    d = deploy(replicas, surge, unavailable)
    max_s, max_u = dep.max_surge(d), dep.max_unavailable(d)
    old = replica_set("o", replicas, created=100)
    new = replica_set("n", 0, created=1)
    for _ in range(100):
        for scale in dep.rolling_plan(d, new, [old]):
            scale.rs["spec"]["replicas"] = scale.replicas
        total = old["spec"]["replicas"] + new["spec"]["replicas"]
        available = old["status"]["availableReplicas"] + new["status"]["availableReplicas"]
        assert total <= replicas + max_s
        assert available >= replicas - max_u
        # the ReplicaSet controllers catch up: old pods vanish, new pods become available
        old["status"]["availableReplicas"] = old["spec"]["replicas"]
        old["status"]["replicas"] = old["spec"]["replicas"]
        new["status"]["availableReplicas"] = new["spec"]["replicas"]
        new["status"]["replicas"] = new["spec"]["replicas"]
        if new["spec"]["replicas"] == replicas and old["spec"]["replicas"] == 0:
            break
    else:
        raise AssertionError("rolling update did not converge")


# -- proportional scaling ----------------------------------------------------------------------
def test_scale_plan_single_active_rs() -> None:
    rs = replica_set("a", 3, desired=3)
    assert names(dep.scale_plan(deploy(5), rs, [])) == [("web-a", 5, "up")]
    assert dep.scale_plan(deploy(3), rs, []) == []


def test_scale_plan_proportional_during_rollout() -> None:
    d = deploy(20, surge=3, unavailable=0)
    new = replica_set("n", 5, desired=10, max_replicas=13, created=1)
    old = replica_set("o", 8, desired=10, max_replicas=13, created=100)
    plan = dep.scale_plan(d, new, [old])
    assert sorted(names(plan)) == [("web-n", 9, "up"), ("web-o", 14, "up")]
    assert all(s.annotate_only_ok for s in plan)


def test_scale_plan_proportional_scale_down_takes_from_older_first() -> None:
    d = deploy(3, surge=1, unavailable=0)  # scaled from 10 (max 11) to 3 (max 4)
    new = replica_set("n", 3, desired=10, max_replicas=11, created=1)
    old = replica_set("o", 3, desired=10, max_replicas=11, created=100)
    plan = dep.scale_plan(d, new, [old])
    assert names(plan) == [("web-o", 1, "down"), ("web-n", 3, "down")]


def test_scale_plan_saturated_new_scales_old_to_zero() -> None:
    new = replica_set("n", 3, desired=3, created=1)
    old = replica_set("o", 1, desired=3)
    assert names(dep.scale_plan(deploy(3), new, [old])) == [("web-o", 0, "down")]


@pytest.mark.parametrize(
    ("rss", "scaling"),
    [
        pytest.param([replica_set("a", 3, desired=3)], False, id="same"),
        pytest.param([replica_set("a", 3, desired=5)], True, id="changed"),
        pytest.param([replica_set("a", 3)], False, id="no-annotation"),
        pytest.param([replica_set("a", 0, desired=5)], False, id="inactive"),
    ],
)
def test_is_scaling_event(rss: list, scaling: bool) -> None:
    assert dep.is_scaling_event(deploy(3), rss) is scaling


# -- recreate ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("new", "olds", "running", "expected", "create"),
    [
        pytest.param(None, [replica_set("o", 2)], True, [("web-o", 0, "down")], False, id="down"),
        pytest.param(None, [replica_set("o", 0, actual=1)], True, [], False, id="wait-old-pods"),
        pytest.param(None, [replica_set("o", 0, actual=0)], False, [], True, id="create-new"),
        pytest.param(
            replica_set("n", 0), [replica_set("o", 0)], False, [("web-n", 3, "up")], False, id="up"
        ),
    ],
)
def test_recreate_plan(new: Any, olds: list, running: bool, expected: list, create: bool) -> None:
    steps, should_create = dep.recreate_plan(deploy(3, strategy="Recreate"), new, olds, running)
    assert (names(steps), should_create) == (expected, create)


def test_old_pods_running() -> None:
    old = replica_set("o", 0, actual=0)
    new = replica_set("n", 2)
    pending = {"status": {"phase": "Pending"}}
    done = {"status": {"phase": "Succeeded"}}
    assert dep.old_pods_running(new, {"uid-o": [pending]}, [old])
    assert not dep.old_pods_running(new, {"uid-o": [done], "uid-n": [pending]}, [old])


# -- history cleanup ---------------------------------------------------------------------------
def test_cleanup_plan_keeps_history_limit_and_skips_busy() -> None:
    d = deploy(revisionHistoryLimit=1)
    r1 = replica_set("r1", 0, revision=1)
    r2 = replica_set("r2", 0, revision=2, actual=1)  # still has a pod: kept
    r3 = replica_set("r3", 0, revision=3)
    unobserved = replica_set("r0", 0, revision=0)
    unobserved["metadata"]["generation"] = 5
    plan = dep.cleanup_plan(d, [r3, r2, r1, unobserved])
    assert [dep._name(rs) for rs in plan] == ["web-r1"]
    assert dep.cleanup_plan(deploy(revisionHistoryLimit=10), [r1, r3]) == []


# -- status ------------------------------------------------------------------------------------
def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def test_calculate_status_counts() -> None:
    new = replica_set("n", 2, available=1, created=1)
    old = replica_set("o", 2, available=2)
    status = dep.calculate_status([old, new], new, deploy(3, generation=4), NOW)
    assert status["replicas"] == 4
    assert status["updatedReplicas"] == 2
    assert status["readyReplicas"] == 3
    assert status["availableReplicas"] == 3
    assert status["unavailableReplicas"] == 1
    assert status["observedGeneration"] == 4
    assert conds(status) == {"Available": ("True", "MinimumReplicasAvailable")}


def test_rollout_status_progress_then_complete() -> None:
    d = deploy(3)
    d["status"] = {
        "replicas": 3,
        "updatedReplicas": 1,
        "conditions": [
            dep.new_condition(
                "Progressing", "True", dep.NEW_RS_CREATED, "Created", NOW - timedelta(seconds=30)
            )
        ],
    }
    new = replica_set("n", 2, available=1, created=1)
    old = replica_set("o", 2)
    progressing = dep.rollout_status([old, new], new, d, NOW)
    assert conds(progressing)["Progressing"] == ("True", "ReplicaSetUpdated")
    cond = dep.get_condition(progressing, "Progressing")
    assert cond is not None
    assert cond["message"] == 'ReplicaSet "web-n" is progressing.'
    assert cond["lastTransitionTime"] == ts(30) and cond["lastUpdateTime"] == format_time(NOW)

    d["status"] = progressing
    new = replica_set("n", 3, created=1)
    done = dep.rollout_status([replica_set("o", 0), new], new, d, NOW)
    assert conds(done) == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }
    assert dep.get_condition(done, "Progressing")["message"] == (  # type: ignore[index]
        'ReplicaSet "web-n" has successfully progressed.'
    )
    assert kubectl_rollout_done({**d, "status": done})


def test_rollout_status_times_out_without_progress() -> None:
    d = deploy(3, progressDeadlineSeconds=60)
    stale = dep.new_condition(
        "Progressing", "True", dep.REPLICA_SET_UPDATED, "x", NOW - timedelta(seconds=61)
    )
    new = replica_set("n", 1, available=0, created=1)
    old = replica_set("o", 3)
    d["status"] = dep.calculate_status([old, new], new, d, NOW)
    d["status"]["conditions"].append(stale)
    status = dep.rollout_status([old, new], new, d, NOW)
    assert conds(status)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert dep.get_condition(status, "Progressing")["message"] == (  # type: ignore[index]
        'ReplicaSet "web-n" has timed out progressing.'
    )
    # before the deadline a requeue is scheduled for when it would pass
    d["status"]["conditions"][-1]["lastUpdateTime"] = ts(30)
    after = dep.progress_requeue_after(d, d["status"], NOW)
    assert after is not None and 30 <= after <= 32


def test_rollout_status_without_deadline_has_no_progressing() -> None:
    d = deploy(3, progressDeadlineSeconds=dep.MAX_INT32)
    d["status"] = {"conditions": [dep.new_condition("Progressing", "True", "x", "y", NOW)]}
    new = replica_set("n", 3, created=1)
    assert "Progressing" not in conds(dep.rollout_status([new], new, d, NOW))


def test_unavailable_condition_and_replica_failure_promoted() -> None:
    new = replica_set("n", 3, available=1, created=1)
    new["status"]["conditions"] = [
        {
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": "quota",
            "lastTransitionTime": ts(5),
        }
    ]
    status = dep.rollout_status([new], new, deploy(3, 1, 0), NOW)
    assert conds(status)["Available"] == ("False", "MinimumReplicasUnavailable")
    assert conds(status)["ReplicaFailure"] == ("True", "FailedCreate")


def test_set_condition_keeps_transition_time_for_same_status() -> None:
    status: dict[str, Any] = {}
    dep.set_condition(status, dep.new_condition("Available", "True", "A", "m", NOW - timedelta(1)))
    before = copy.deepcopy(status)
    dep.set_condition(status, dep.new_condition("Available", "True", "A", "m", NOW))
    assert status == before  # same status and reason: untouched
    dep.set_condition(status, dep.new_condition("Available", "True", "B", "m", NOW))
    [c] = status["conditions"]
    assert (
        c["reason"] == "B"
        and c["lastTransitionTime"] == before["conditions"][0]["lastTransitionTime"]
    )


@pytest.mark.parametrize(
    ("paused", "current", "expected"),
    [
        pytest.param(True, None, dep.PAUSED, id="pause"),
        pytest.param(True, dep.PAUSED, None, id="already-paused"),
        pytest.param(False, dep.PAUSED, dep.RESUMED, id="resume"),
        pytest.param(True, dep.TIMED_OUT, None, id="timed-out-stays"),
        pytest.param(False, None, None, id="running"),
    ],
)
def test_paused_condition(paused: bool, current: str | None, expected: str | None) -> None:
    status = {}
    if current:
        status = {"conditions": [dep.new_condition("Progressing", "Unknown", current, "", NOW)]}
    cond = dep.paused_condition(deploy(paused=paused, status=status), NOW)
    assert (cond["reason"] if cond else None) == expected


def kubectl_rollout_done(d: dict[str, Any]) -> bool:
    """kubectl's DeploymentStatusViewer condition for `rollout status` success."""
    s = d["status"]
    if d["metadata"]["generation"] > s.get("observedGeneration", 0):
        return False
    return (
        s.get("updatedReplicas", 0) >= d["spec"]["replicas"]
        and s.get("replicas", 0) <= s.get("updatedReplicas", 0)
        and s.get("availableReplicas", 0) >= s.get("updatedReplicas", 0)
    )
