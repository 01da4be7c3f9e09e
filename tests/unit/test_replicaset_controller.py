"""ReplicaSet controller: pure decisions (deletion order, claiming, pod template, status,
expectations) and the sync loop against an in-memory API that lags like a slow informer."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubesvc.api import objmeta
from kubesvc.client.informer import InformerFactory
from kubesvc.client.rest import ApiException
from kubesvc.controllers import podutil
from kubesvc.controllers.base import Context
from kubesvc.controllers.replicaset import (
    Expectations,
    ReplicaSetController,
    claim_pods,
    new_pod,
    replica_set_status,
    requeue_for_availability,
    selector_matches,
    slow_start_batches,
    status_changed,
)

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return objmeta.format_time(NOW - timedelta(seconds=seconds_ago))


def pod(
    name: str,
    *,
    node: str = "n1",
    phase: str = "Running",
    ready: bool | None = True,
    ready_since: float = 600,
    created: float = 1000,
    restarts: int = 0,
    labels: dict[str, str] | None = None,
    owner: str | None = "rs-uid",
    deleting: bool = False,
    cost: int | None = None,
    ns: str = "default",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": f"uid-{name}",
        "creationTimestamp": ts(created),
        "labels": {"app": "web"} if labels is None else labels,
        "resourceVersion": "1",
    }
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web",
                "uid": owner,
                "controller": True,
            }
        ]
    if deleting:
        meta["deletionTimestamp"] = ts(0)
    if cost is not None:
        meta["annotations"] = {podutil.DELETION_COST_ANNOTATION: str(cost)}
    status: dict[str, Any] = {"phase": phase}
    if ready is not None:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": ts(ready_since),
            }
        ]
    if restarts:
        status["containerStatuses"] = [{"name": "c", "restartCount": restarts}]
    return {"metadata": meta, "spec": {"nodeName": node}, "status": status}


def rs(replicas: int = 3, min_ready: int = 0, generation: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "rs-uid",
            "generation": generation,
            "resourceVersion": "5",
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "fe"}, "annotations": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
        "status": dict(status),
    }


# -- deletion order ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("keep", "drop"),
    [
        pytest.param(pod("a"), pod("b", node=""), id="unscheduled-first"),
        pytest.param(pod("a"), pod("b", phase="Pending"), id="pending-before-running"),
        pytest.param(
            pod("a", phase="Unknown"), pod("b", phase="Pending"), id="pending-before-unknown"
        ),
        pytest.param(pod("a"), pod("b", phase="Unknown"), id="unknown-before-running"),
        pytest.param(pod("a"), pod("b", ready=False), id="not-ready-first"),
        pytest.param(pod("a", cost=10), pod("b", cost=-5), id="lower-deletion-cost-first"),
        pytest.param(
            pod("a", ready_since=3600), pod("b", ready_since=5), id="recently-ready-first"
        ),
        pytest.param(pod("a"), pod("b", restarts=4), id="more-restarts-first"),
        pytest.param(pod("a", created=10000), pod("b", created=10), id="newer-first"),
        pytest.param(
            pod("a", ready=False, created=10), pod("b", node="", created=10000), id="node-beats-age"
        ),
    ],
)
def test_pods_to_delete_picks_least_valuable(keep: dict[str, Any], drop: dict[str, Any]) -> None:
    for order in ([keep, drop], [drop, keep]):
        assert podutil.pods_to_delete(order, 1, now=NOW) == [drop]


def test_pods_to_delete_prefers_doubled_up_nodes() -> None:
    lonely, crowded = pod("a", node="n1"), pod("b", node="n2")
    related = [lonely, crowded, pod("c", node="n2"), pod("d", node="n2", deleting=True)]
    assert podutil.pods_to_delete([lonely, crowded], 1, related, NOW) == [crowded]


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(0, [], id="none"),
        pytest.param(2, ["b", "c"], id="two"),
        pytest.param(5, ["a", "b", "c"], id="more-than-there-are"),
    ],
)
def test_pods_to_delete_counts(n: int, expected: list[str]) -> None:
    pods = [pod("a"), pod("b", ready=False), pod("c", node="")]
    assert (
        sorted(p["metadata"]["name"] for p in podutil.pods_to_delete(pods, n, now=NOW)) == expected
    )


@pytest.mark.parametrize(
    ("p", "min_ready", "available"),
    [
        pytest.param(pod("a", ready_since=5), 0, True, id="ready-no-min"),
        pytest.param(pod("a", ready_since=5), 10, False, id="ready-too-recently"),
        pytest.param(pod("a", ready_since=11), 10, True, id="ready-long-enough"),
        pytest.param(pod("a", ready=False), 0, False, id="not-ready"),
        pytest.param(pod("a", ready=None), 0, False, id="no-condition"),
    ],
)
def test_is_available(p: dict[str, Any], min_ready: int, available: bool) -> None:
    assert podutil.is_available(p, min_ready, NOW) is available


@pytest.mark.parametrize(
    ("p", "active"),
    [
        pytest.param(pod("a"), True, id="running"),
        pytest.param(pod("a", phase="Pending"), True, id="pending"),
        pytest.param(pod("a", phase="Succeeded"), False, id="succeeded"),
        pytest.param(pod("a", phase="Failed"), False, id="failed"),
        pytest.param(pod("a", deleting=True), False, id="being-deleted"),
    ],
)
def test_is_active(p: dict[str, Any], active: bool) -> None:
    assert podutil.is_active(p) is active


# -- claiming ---------------------------------------------------------------------------------
def test_claim_pods_adopts_releases_and_ignores() -> None:
    owner = rs()
    selector = owner["spec"]["selector"]
    mine = pod("mine")
    stray = pod("stray", labels={"app": "other"})
    orphan = pod("orphan", owner=None)
    orphan_other_labels = pod("orphan2", owner=None, labels={"app": "db"})
    orphan_deleting = pod("orphan3", owner=None, deleting=True)
    foreign = pod("foreign", owner="someone-else")
    other_ns = pod("elsewhere", owner=None, ns="kube-system")
    plan = claim_pods(
        owner,
        [mine, stray, orphan, orphan_other_labels, orphan_deleting, foreign, other_ns],
        selector,
    )
    assert plan.owned == [mine]
    assert plan.adopt == [orphan]
    assert plan.release == [stray]


def test_claim_pods_does_not_adopt_while_owner_is_deleted() -> None:
    owner = rs()
    owner["metadata"]["deletionTimestamp"] = ts(0)
    plan = claim_pods(owner, [pod("orphan", owner=None)], owner["spec"]["selector"])
    assert plan.adopt == []


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        pytest.param({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True, id="subset"),
        pytest.param({"matchLabels": {"app": "web"}}, {"app": "db"}, False, id="differs"),
        pytest.param(
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]},
            {"app": "db"},
            True,
            id="expression",
        ),
        pytest.param({}, {"app": "web"}, False, id="empty-selects-nothing"),
        pytest.param(None, {"app": "web"}, False, id="missing-selects-nothing"),
    ],
)
def test_selector_matches(selector: Any, labels: dict[str, str], matches: bool) -> None:
    assert selector_matches(selector, labels) is matches


# -- pod template --------------------------------------------------------------------------
def test_new_pod_from_template() -> None:
    p = new_pod(rs())
    assert p["metadata"] == {
        "generateName": "web-",
        "namespace": "default",
        "labels": {"app": "web", "tier": "fe"},
        "annotations": {"a": "b"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web",
                "uid": "rs-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    assert p["spec"] == {"containers": [{"name": "c", "image": "nginx"}]}


@pytest.mark.parametrize(
    ("count", "batches"),
    [
        pytest.param(0, [], id="zero"),
        pytest.param(1, [1], id="one"),
        pytest.param(3, [1, 2], id="three"),
        pytest.param(10, [1, 2, 4, 3], id="ten"),
    ],
)
def test_slow_start_batches(count: int, batches: list[int]) -> None:
    assert slow_start_batches(count) == batches


# -- status ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pods", "min_ready", "expected"),
    [
        pytest.param([], 0, (0, 0, 0, 0), id="empty"),
        pytest.param(
            [pod("a", labels={"app": "web", "tier": "fe"}), pod("b"), pod("c", ready=False)],
            0,
            (3, 1, 2, 2),
            id="counts",
        ),
        pytest.param(
            [pod("a", ready_since=5), pod("b", ready_since=100)], 30, (2, 0, 2, 1), id="min-ready"
        ),
    ],
)
def test_replica_set_status(
    pods: list[dict[str, Any]], min_ready: int, expected: tuple[int, int, int, int]
) -> None:
    status = replica_set_status(rs(min_ready=min_ready), pods, NOW)
    got = tuple(
        status[k]
        for k in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas")
    )
    assert got == expected
    assert status["observedGeneration"] == 2


def test_replica_failure_condition_set_and_cleared() -> None:
    failing = replica_set_status(rs(replicas=3), [pod("a")], NOW, "pods is forbidden: quota")
    [cond] = failing["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "ReplicaFailure",
        "True",
        "FailedCreate",
    )
    assert cond["message"] == "pods is forbidden: quota"
    failed_rs = rs(replicas=3)
    failed_rs["status"] = failing
    recovered = replica_set_status(failed_rs, [pod("a")], NOW)
    assert "conditions" not in recovered


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        pytest.param({}, {"replicas": 0, "readyReplicas": 0}, False, id="zeroes-are-omitted"),
        pytest.param({"replicas": 2}, {"replicas": 2, "availableReplicas": 0}, False, id="same"),
        pytest.param({"replicas": 2}, {"replicas": 3}, True, id="count"),
        pytest.param({"observedGeneration": 1}, {"observedGeneration": 2}, True, id="generation"),
    ],
)
def test_status_changed(old: dict[str, Any], new: dict[str, Any], changed: bool) -> None:
    assert status_changed(old, new) is changed


def test_requeue_for_availability_waits_for_min_ready_seconds() -> None:
    pods = [pod("a", ready_since=2), pod("b", ready_since=100), pod("c", ready=False)]
    wait = requeue_for_availability(rs(min_ready=10), pods, NOW)
    assert wait is not None and 8 < wait < 9
    assert requeue_for_availability(rs(min_ready=0), pods, NOW) is None


# -- expectations ------------------------------------------------------------------------------
def test_expectations_wait_for_observed_creates_and_deletes() -> None:
    clock = [0.0]
    exp = Expectations(ttl=300, clock=lambda: clock[0])
    assert exp.satisfied("ns/rs")
    exp.expect_creations("ns/rs", 2)
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")

    exp.expect_deletions("ns/rs", ["ns/a", "ns/b"])
    exp.deletion_observed("ns/rs", "ns/a")
    exp.deletion_observed("ns/rs", "ns/a")  # seen twice (update with deletionTimestamp + delete)
    assert not exp.satisfied("ns/rs")
    exp.deletion_observed("ns/rs", "ns/b")
    assert exp.satisfied("ns/rs")


def test_expectations_expire() -> None:
    clock = [0.0]
    exp = Expectations(ttl=300, clock=lambda: clock[0])
    exp.expect_creations("ns/rs", 1)
    clock[0] = 299
    assert not exp.satisfied("ns/rs")
    clock[0] = 301
    assert exp.satisfied("ns/rs")


# -- the sync loop against an in-memory API ------------------------------------------------------
class FakeApi:
    """Records writes; the test decides when the informer caches see them."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.status_writes: list[dict[str, Any]] = []
        self.fail_creates = False
        self.n = 0

    async def create(self, kind: str, ns: str, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        if self.fail_creates:
            raise ApiException(403, {"reason": "Forbidden", "message": "exceeded quota"})
        self.n += 1
        out = copy.deepcopy(obj)
        out["metadata"]["name"] = f"{obj['metadata']['generateName']}{self.n:05d}"
        out["metadata"]["uid"] = f"pod-uid-{self.n}"
        out["metadata"]["resourceVersion"] = str(100 + self.n)
        out["metadata"]["creationTimestamp"] = ts(0)
        out["status"] = {"phase": "Pending"}
        self.created.append(out)
        return out

    async def delete(self, kind: str, ns: str, name: str, **_: Any) -> dict[str, Any]:
        self.deleted.append(name)
        return {}

    async def update(self, kind: str, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.status_writes.append(copy.deepcopy(obj["status"]))
        return obj

    async def patch(self, *args: Any, **_: Any) -> dict[str, Any]:
        raise AssertionError("no adoption expected")


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def make_controller() -> tuple[ReplicaSetController, FakeApi, FakeRecorder]:
    api, recorder = FakeApi(), FakeRecorder()
    ctx = Context(api, InformerFactory(api), recorder)  # type: ignore[arg-type]
    return ReplicaSetController(ctx), api, recorder


def test_slow_informer_does_not_cause_over_creation() -> None:
    async def body() -> None:
        c, api, recorder = make_controller()
        c.rs_informer._upsert(rs(replicas=3))
        await c.sync("default/web")
        assert len(api.created) == 3
        assert [e[1] for e in recorder.events] == ["SuccessfulCreate"] * 3
        assert recorder.events[0][2] == f"Created pod: {api.created[0]['metadata']['name']}"
        # the pod informer has not caught up: another sync must not create more pods
        await c.sync("default/web")
        assert len(api.created) == 3
        for p in api.created:
            c.pod_informer._upsert(p)
        await c.sync("default/web")
        assert len(api.created) == 3
        assert api.status_writes[-1]["replicas"] == 3

    asyncio.run(body())


def test_scale_down_deletes_least_valuable_and_waits_for_deletes() -> None:
    async def body() -> None:
        c, api, recorder = make_controller()
        c.rs_informer._upsert(rs(replicas=1))
        for p in (pod("old", created=9000), pod("new", created=10), pod("sick", ready=False)):
            c.pod_informer._upsert(p)
        await c.sync("default/web")
        assert sorted(api.deleted) == ["new", "sick"]
        assert ("Normal", "SuccessfulDelete", "Deleted pod: sick") in recorder.events
        await c.sync("default/web")  # deletes not yet observed: nothing more
        assert len(api.deleted) == 2
        c.pod_informer._remove(pod("new", created=10))
        deleting = pod("sick", ready=False, deleting=True)
        deleting["metadata"]["resourceVersion"] = "2"
        c.pod_informer._upsert(deleting)  # graceful delete counts as observed
        assert c.expectations.satisfied("default/web")

    asyncio.run(body())


def test_failed_creates_release_expectations_and_record_events() -> None:
    async def body() -> None:
        c, api, recorder = make_controller()
        api.fail_creates = True
        c.rs_informer._upsert(rs(replicas=4))
        with pytest.raises(RuntimeError):
            await c.sync("default/web")
        # slow start: one failing call, not four
        assert recorder.events == [("Warning", "FailedCreate", "Error creating: exceeded quota")]
        assert c.expectations.satisfied("default/web")
        assert api.status_writes[-1]["conditions"][0]["reason"] == "FailedCreate"

    asyncio.run(body())


def test_adopted_pod_creation_is_observed_only_for_owner() -> None:
    async def body() -> None:
        c, _, _ = make_controller()
        c.rs_informer._upsert(rs(replicas=1))
        c.expectations.expect_creations("default/web", 1)
        c.pod_informer._upsert(pod("x", owner="not-this-rs"))
        assert not c.expectations.satisfied("default/web")
        c.pod_informer._upsert(pod("y"))
        assert c.expectations.satisfied("default/web")

    asyncio.run(body())


def test_replication_controller_view_round_trips() -> None:
    from kubesvc.controllers.replication import as_replica_set, from_replica_set

    rc = {"metadata": {"name": "r"}, "spec": {"replicas": 2, "selector": {"app": "a"}}}
    view = as_replica_set(rc)
    assert view["spec"]["selector"] == {"matchLabels": {"app": "a"}}
    assert rc["spec"]["selector"] == {"app": "a"}  # the original is untouched
    assert from_replica_set(view) == rc
    assert as_replica_set({"metadata": {}, "spec": {}})["spec"]["selector"] is None
    assert "selector" not in from_replica_set(as_replica_set({"metadata": {}, "spec": {}}))["spec"]
