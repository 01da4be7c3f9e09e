"""StatefulSet controller: ordered and parallel pod management, scale down and rolling update
order, pod identity and claims, and anything an informer lets through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.api import objmeta
from kubesvc.client import shape
from kubesvc.controllers import statefulset

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def a_set(replicas: int = 3, **spec: Any) -> dict[str, Any]:
    base = {
        "replicas": replicas,
        "serviceName": "nginx",
        "podManagementPolicy": "OrderedReady",
        "selector": {"matchLabels": {"app": "web"}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        },
        "volumeClaimTemplates": [
            {"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
        ],
    }
    base.update(spec)
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": base,
    }


def pod_of(
    sts: dict[str, Any],
    ordinal: int,
    *,
    ready: bool = True,
    revision: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    pod = statefulset.new_stateful_pod(sts, ordinal, revision or statefulset.revision_of(sts))
    pod["status"] = {
        "phase": "Running",
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": objmeta.format_time(NOW - timedelta(seconds=60)),
            }
        ],
    }
    if deleting:
        pod["metadata"]["deletionTimestamp"] = objmeta.format_time(NOW)
    return pod


def test_ordered_ready_creates_one_pod_at_a_time() -> None:
    sts = a_set()
    assert statefulset.plan_stateful_set(sts, [], NOW).create == [0]
    assert statefulset.plan_stateful_set(sts, [pod_of(sts, 0, ready=False)], NOW).create == []
    assert statefulset.plan_stateful_set(sts, [pod_of(sts, 0)], NOW).create == [1]


def test_parallel_creates_all_at_once() -> None:
    sts = a_set(podManagementPolicy="Parallel")
    assert statefulset.plan_stateful_set(sts, [pod_of(sts, 1, ready=False)], NOW).create == [0, 2]


def test_pod_identity_and_claims() -> None:
    sts = a_set()
    pod = statefulset.new_stateful_pod(sts, 2, "web-1")
    assert pod["metadata"]["name"] == "web-2"
    assert pod["spec"]["hostname"] == "web-2" and pod["spec"]["subdomain"] == "nginx"
    labels = pod["metadata"]["labels"]
    assert (
        labels[statefulset.POD_NAME_LABEL] == "web-2" and labels[statefulset.POD_INDEX_LABEL] == "2"
    )
    assert {"name": "www", "emptyDir": {}} in pod["spec"]["volumes"]
    claims = statefulset.new_claims(sts, "web-2")
    assert [c["metadata"]["name"] for c in claims] == ["www-web-2"]
    assert claims[0]["metadata"]["labels"] == {"app": "web"}


def test_scale_down_from_the_highest_ordinal_one_at_a_time() -> None:
    sts = a_set(replicas=1)
    pods = [pod_of(sts, 0), pod_of(sts, 1), pod_of(sts, 2)]
    plan = statefulset.plan_stateful_set(sts, pods, NOW)
    assert [p["metadata"]["name"] for p in plan.delete] == ["web-2"]
    pods[2] = pod_of(sts, 2, deleting=True)
    assert statefulset.plan_stateful_set(sts, pods, NOW).delete == []
    parallel = a_set(replicas=1, podManagementPolicy="Parallel")
    names = [
        p["metadata"]["name"]
        for p in statefulset.plan_stateful_set(
            parallel, [pod_of(parallel, i) for i in range(3)], NOW
        ).delete
    ]
    assert names == ["web-2", "web-1"]


def test_rolling_update_in_reverse_ordinal_order_down_to_the_partition() -> None:
    sts = a_set()
    old = [pod_of(sts, i, revision="web-old") for i in range(3)]
    plan = statefulset.plan_stateful_set(sts, old, NOW)
    assert [p["metadata"]["name"] for p in plan.delete] == ["web-2"]
    mixed = [old[0], old[1], pod_of(sts, 2)]
    assert [
        p["metadata"]["name"] for p in statefulset.plan_stateful_set(sts, mixed, NOW).delete
    ] == ["web-1"]
    # not while a pod is unready
    mixed[2] = pod_of(sts, 2, ready=False)
    assert statefulset.plan_stateful_set(sts, mixed, NOW).delete == []
    parted = a_set(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    done = [old[0], old[1], pod_of(parted, 2)]
    assert statefulset.plan_stateful_set(parted, done, NOW).delete == []


def test_status_and_rollout_completion() -> None:
    sts = a_set()
    pods = [pod_of(sts, i) for i in range(3)]
    status = statefulset.plan_stateful_set(sts, pods, NOW).status
    rev = statefulset.revision_of(sts)
    assert status["replicas"] == 3 and status["readyReplicas"] == 3
    assert status["updateRevision"] == rev and status["currentRevision"] == rev
    assert status["availableReplicas"] == 3 and status["observedGeneration"] == 1


def test_foreign_names_are_ignored() -> None:
    sts = a_set()
    stray = pod_of(sts, 0)
    stray["metadata"]["name"] = "web-01"
    assert statefulset.ordinal_of("web", stray) is None
    assert statefulset.plan_stateful_set(sts, [stray], NOW).create == [0]


_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 600),
    st.text(max_size=4),
    st.sampled_from(
        [
            "Parallel",
            "OrderedReady",
            "OnDelete",
            "RollingUpdate",
            "web-1",
            "web-0",
            "Running",
            "True",
        ]
    ),
)
_ANY = st.recursive(
    _LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "replicas",
                    "partition",
                    "rollingUpdate",
                    "updateStrategy",
                    "ordinals",
                    "start",
                    "name",
                    "metadata",
                    "spec",
                    "labels",
                    "volumeClaimTemplates",
                    "podManagementPolicy",
                    "phase",
                    "status",
                    "conditions",
                    "type",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_ANY, st.lists(st.tuples(st.integers(0, 5), _ANY), max_size=4))
def test_plan_survives_any_usable_objects(spec: Any, pods: list[Any]) -> None:
    sts = a_set()
    if isinstance(spec, dict):
        sts["spec"].update(spec)
    if shape.problem("StatefulSet", sts) is not None or statefulset.spec_problem(sts) is not None:
        return
    built = []
    for ordinal, extra in pods:
        pod = pod_of(a_set(), ordinal)
        if isinstance(extra, dict):
            pod.update({k: v for k, v in extra.items() if k != "metadata"})
        if shape.problem("Pod", pod) is None:
            built.append(pod)
    plan = statefulset.plan_stateful_set(sts, built, NOW)
    for ordinal in plan.create:
        statefulset.new_stateful_pod(sts, ordinal, "r")
        statefulset.new_claims(sts, f"web-{ordinal}")


def test_huge_replica_counts_are_bounded_per_sync() -> None:
    sts = a_set(replicas=2**31 - 1, podManagementPolicy="Parallel")
    plan = statefulset.plan_stateful_set(sts, [pod_of(sts, 0, revision="web-old")], NOW)
    assert len(plan.create) == statefulset.MAX_REPLICAS_PER_SYNC and plan.delete == []
    ordered = a_set(replicas=2**31 - 1)
    assert statefulset.plan_stateful_set(ordered, [pod_of(ordered, 0)], NOW).create == [1]


def test_parallel_set_missing_pods_is_not_updated_yet() -> None:
    sts = a_set(podManagementPolicy="Parallel")
    plan = statefulset.plan_stateful_set(sts, [pod_of(sts, 2, revision="web-old")], NOW)
    assert plan.create == [0, 1] and plan.delete == []
