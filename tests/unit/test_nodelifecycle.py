"""The node lifecycle controller's pure parts: health, Unknown conditions, taints, pods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubesvc.controllers.nodelifecycle import (
    desired_taints,
    grace_from_env,
    node_health,
    pod_not_ready_patch,
    taints_differ,
    unknown_conditions,
)

Obj = dict[str, Any]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    t = NOW - timedelta(seconds=seconds_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node(
    ready: str | None = "True",
    heartbeat_ago: float | None = None,
    created_ago: float = 3600,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
    extra: list[Obj] | None = None,
) -> Obj:
    n: Obj = {
        "metadata": {"name": "n1", "creationTimestamp": ts(created_ago), "resourceVersion": "5"},
        "spec": {},
        "status": {"conditions": list(extra or [])},
    }
    if ready is not None:
        cond: Obj = {"type": "Ready", "status": ready, "reason": "KubeletReady",
                     "message": "kubelet is posting ready status",
                     "lastTransitionTime": ts(7200)}  # fmt: skip
        if heartbeat_ago is not None:
            cond["lastHeartbeatTime"] = ts(heartbeat_ago)
        n["status"]["conditions"].insert(0, cond)
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    return n


def lease(renewed_ago: float) -> Obj:
    return {
        "metadata": {"name": "n1"},
        "spec": {"holderIdentity": "n1", "renewTime": ts(renewed_ago)},
    }


@pytest.mark.parametrize(
    ("n", "lease_", "since_ago", "expired", "remaining"),
    [
        pytest.param(node(heartbeat_ago=10), None, None, False, 30, id="fresh-heartbeat"),
        pytest.param(node(heartbeat_ago=41), None, None, True, -1, id="stale-heartbeat"),
        pytest.param(node(heartbeat_ago=300), lease(5), None, False, 35, id="lease-renewed"),
        pytest.param(node(heartbeat_ago=5), lease(300), None, False, 35, id="status-newer"),
        pytest.param(node(heartbeat_ago=300), lease(60), None, True, -20, id="both-stale"),
        pytest.param(node(), None, None, True, 40 - 3600, id="no-heartbeat-uses-creation"),
        pytest.param(node(created_ago=10), None, None, False, 30, id="new-node-gets-grace"),
        pytest.param(node(heartbeat_ago=300), None, 20, False, 20, id="watching-since"),
        pytest.param(node(ready=None, created_ago=50), None, None, False, 10, id="startup-grace"),
        pytest.param(node(ready=None, created_ago=61), None, None, True, -1, id="startup-over"),
    ],
)
def test_node_health(
    n: Obj, lease_: Obj | None, since_ago: float | None, expired: bool, remaining: float
) -> None:
    since = NOW - timedelta(seconds=since_ago) if since_ago is not None else None
    h = node_health(n, lease_, NOW, 40.0, startup_grace=60.0, since=since)
    assert h.expired is expired
    assert h.remaining == pytest.approx(remaining, abs=0.01)


def test_unknown_conditions_for_a_node_that_stopped_posting() -> None:
    n = node(
        heartbeat_ago=100,
        extra=[
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"}
        ],
    )
    conds = unknown_conditions(n, NOW)
    assert conds is not None
    by_type = {c["type"]: c for c in conds}
    assert set(by_type) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    ready = by_type["Ready"]
    assert ready["status"] == "Unknown"
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert ready["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    assert ready["lastHeartbeatTime"] == ts(100)  # the heartbeat is not faked
    assert by_type["MemoryPressure"]["reason"] == "NodeStatusUnknown"
    assert by_type["DiskPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert by_type["DiskPressure"]["message"] == "Kubelet never posted node status."


def test_unknown_conditions_for_a_node_that_never_posted() -> None:
    conds = unknown_conditions(node(ready=None), NOW)
    assert conds is not None
    ready = next(c for c in conds if c["type"] == "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusNeverUpdated"


def test_no_write_when_ready_is_already_unknown() -> None:
    assert unknown_conditions(node(ready="Unknown", heartbeat_ago=100), NOW) is None


NS = "NoSchedule"
NE = "NoExecute"


def keys(taints: list[Obj]) -> list[tuple[str, str]]:
    return sorted((t["key"], t["effect"]) for t in taints)


@pytest.mark.parametrize(
    ("n", "want"),
    [
        pytest.param(node(), [], id="ready"),
        pytest.param(
            node(ready="Unknown"),
            [("node.kubernetes.io/unreachable", NE), ("node.kubernetes.io/unreachable", NS)],
            id="unknown",
        ),
        pytest.param(
            node(ready="False"),
            [("node.kubernetes.io/not-ready", NE), ("node.kubernetes.io/not-ready", NS)],
            id="not-ready",
        ),
        pytest.param(
            node(
                taints=[
                    {"key": "node.kubernetes.io/unreachable", "effect": NS},
                    {"key": "node.kubernetes.io/unreachable", "effect": NE},
                    {"key": "dedicated", "value": "x", "effect": NS},
                ]
            ),
            [("dedicated", NS)],
            id="ready-again-removes-only-ours",
        ),
        pytest.param(
            node(ready="False", taints=[{"key": "node.kubernetes.io/unreachable", "effect": NE}]),
            [("node.kubernetes.io/not-ready", NE), ("node.kubernetes.io/not-ready", NS)],
            id="unreachable-swapped-for-not-ready",
        ),
        pytest.param(
            node(unschedulable=True),
            [("node.kubernetes.io/unschedulable", NS)],
            id="unschedulable",
        ),
        pytest.param(
            node(extra=[{"type": "DiskPressure", "status": "True"}]),
            [("node.kubernetes.io/disk-pressure", NS)],
            id="disk-pressure",
        ),
        pytest.param(node(ready=None), [], id="no-ready-condition-yet"),
    ],
)
def test_desired_taints(n: Obj, want: list[tuple[str, str]]) -> None:
    assert keys(desired_taints(n, NOW)) == want


def test_taints_keep_time_added_and_only_no_execute_gets_one() -> None:
    n = node(ready="Unknown")
    taints = desired_taints(n, NOW)
    assert {t["effect"]: "timeAdded" in t for t in taints} == {NS: False, NE: True}
    n["spec"]["taints"] = [
        {"key": "node.kubernetes.io/unreachable", "effect": NE, "timeAdded": "2020-01-01T00:00:00Z"}
    ]
    again = desired_taints(n, NOW)
    assert {"key": "node.kubernetes.io/unreachable", "effect": NE,
            "timeAdded": "2020-01-01T00:00:00Z"} in again  # fmt: skip
    assert taints_differ(n, again)
    n["spec"]["taints"] = again
    assert not taints_differ(n, desired_taints(n, NOW))


@pytest.mark.parametrize(
    ("conditions", "patched"),
    [
        pytest.param([{"type": "Ready", "status": "True"}], True, id="ready"),
        pytest.param([{"type": "Ready", "status": "False"}], False, id="already-not-ready"),
        pytest.param([], False, id="no-ready-condition"),
    ],
)
def test_pod_not_ready_patch(conditions: list[Obj], patched: bool) -> None:
    pod = {"metadata": {"name": "p", "resourceVersion": "3"}, "status": {"conditions": conditions}}
    patch = pod_not_ready_patch(pod, NOW)
    if not patched:
        assert patch is None
        return
    assert patch == {
        "metadata": {"resourceVersion": "3"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": "2024-05-01T12:00:00Z"}
            ]
        },
    }


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        pytest.param(None, 50.0, id="unset"),
        pytest.param("3", 3.0, id="seconds"),
        pytest.param("0.5", 0.5, id="fraction"),
        pytest.param("nope", 50.0, id="garbage"),
        pytest.param("-1", 50.0, id="negative"),
    ],
)
def test_grace_from_env(monkeypatch: pytest.MonkeyPatch, raw: str | None, want: float) -> None:
    if raw is None:
        monkeypatch.delenv("X_GRACE", raising=False)
    else:
        monkeypatch.setenv("X_GRACE", raw)
    assert grace_from_env("X_GRACE", 50.0) == want
