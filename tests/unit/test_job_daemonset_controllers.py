"""Job and DaemonSet controllers: the pure plans (pods to create and delete, status) on
normal objects and on anything an informer lets through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.api import objmeta
from kubesvc.client import shape
from kubesvc.controllers import daemonset, job

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def ts(ago: float) -> str:
    return objmeta.format_time(NOW - timedelta(seconds=ago))


def a_job(**spec: Any) -> dict[str, Any]:
    base = {
        "parallelism": 2,
        "completions": 3,
        "backoffLimit": 2,
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
        "template": {
            "metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
        },
    }
    base.update(spec)
    return {
        "metadata": {"name": "j", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": base,
        "status": {},
    }


def a_pod(
    name: str,
    phase: str = "Running",
    *,
    ready: bool = True,
    node: str = "n1",
    labels: dict[str, str] | None = None,
    created: float = 100,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if phase == "Running":
        status["conditions"] = [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ts(50)}
        ]
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": labels or {},
            "creationTimestamp": ts(created),
        },
        "spec": {"nodeName": node},
        "status": status,
    }


# -- Job -------------------------------------------------------------------------------------


def test_job_starts_parallelism_pods() -> None:
    plan = job.plan_job(a_job(), [], NOW)
    assert plan.create == 2 and not plan.finished
    assert plan.status["active"] == 2 and plan.status["startTime"] == ts(0)


def test_job_tops_up_to_the_remaining_completions() -> None:
    pods = [a_pod("a", "Succeeded"), a_pod("b", "Succeeded"), a_pod("c")]
    plan = job.plan_job(a_job(), pods, NOW)
    assert plan.create == 0  # one left to do, one running
    assert plan.status["succeeded"] == 2 and plan.status["active"] == 1


def test_job_completes_with_upstream_conditions() -> None:
    pods = [a_pod(n, "Succeeded") for n in "abc"]
    plan = job.plan_job(a_job(), pods, NOW)
    assert plan.finished
    types = [c["type"] for c in plan.status["conditions"]]
    assert types == ["SuccessCriteriaMet", "Complete"]
    assert plan.status["completionTime"] == ts(0)
    assert "active" not in plan.status


def test_job_without_completions_finishes_on_first_success_once_others_stop() -> None:
    spec = a_job(completions=None, parallelism=2)
    plan = job.plan_job(spec, [a_pod("a", "Succeeded"), a_pod("b")], NOW)
    assert not plan.finished and plan.delete and plan.delete[0]["metadata"]["name"] == "b"
    plan = job.plan_job(spec, [a_pod("a", "Succeeded")], NOW)
    assert plan.finished


def test_job_fails_past_the_backoff_limit() -> None:
    pods = [a_pod(n, "Failed") for n in "abc"]
    plan = job.plan_job(a_job(), pods, NOW)
    assert plan.finished
    failed = plan.status["conditions"][-1]
    assert failed["type"] == "Failed" and failed["reason"] == "BackoffLimitExceeded"
    assert plan.status["failed"] == 3


def test_job_on_failure_counts_restarts() -> None:
    spec = a_job(backoffLimit=1)
    spec["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    pod = a_pod("a")
    pod["status"]["containerStatuses"] = [{"name": "c", "restartCount": 2}]
    plan = job.plan_job(spec, [pod], NOW)
    assert plan.delete == [pod] and not plan.finished
    plan = job.plan_job(spec, [], NOW)
    assert not plan.finished  # counts come from the pods the Job still has


def test_job_deadline() -> None:
    spec = a_job(activeDeadlineSeconds=30)
    spec["status"]["startTime"] = ts(60)
    plan = job.plan_job(spec, [], NOW)
    assert plan.finished and plan.status["conditions"][-1]["reason"] == "DeadlineExceeded"
    spec["status"]["startTime"] = ts(10)
    plan = job.plan_job(spec, [], NOW)
    assert plan.requeue_after is not None and 20 < plan.requeue_after < 21


def test_suspended_job_runs_nothing() -> None:
    plan = job.plan_job(a_job(suspend=True), [a_pod("a")], NOW)
    assert plan.create == 0 and len(plan.delete) == 1


def test_ttl_after_finished() -> None:
    done = job.plan_job(
        a_job(ttlSecondsAfterFinished=100), [a_pod(n, "Succeeded") for n in "abc"], NOW
    )
    finished = {**a_job(ttlSecondsAfterFinished=100), "status": done.status}
    assert job.ttl_left(finished, NOW) == 100
    assert job.ttl_left(finished, NOW + timedelta(seconds=150)) == -50
    assert job.ttl_left(a_job(ttlSecondsAfterFinished=100), NOW) is None


def test_job_pod_from_template() -> None:
    pod = job.new_job_pod(a_job())
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "Job" and ref["controller"] and ref["apiVersion"] == "batch/v1"
    assert pod["metadata"]["generateName"] == "j-"
    assert pod["spec"]["restartPolicy"] == "Never"


# -- DaemonSet -------------------------------------------------------------------------------


def a_node(
    name: str, labels: dict[str, str] | None = None, taints: list[Any] | None = None
) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def a_ds(**template_spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "d", "namespace": "ns", "uid": "u", "generation": 2},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}], **template_spec},
            },
        },
    }


def ds_pod(
    ds: dict[str, Any], name: str, node: str, *, current: bool = True, ready: bool = True
) -> dict[str, Any]:
    rev = daemonset.template_hash(ds) if current else "old"
    return a_pod(name, node=node, ready=ready, labels={"app": "d", daemonset.HASH_LABEL: rev})


def test_daemonset_creates_one_pod_per_eligible_node() -> None:
    ds = a_ds(nodeSelector={"disk": "ssd"})
    nodes = [a_node("n1", {"disk": "ssd"}), a_node("n2"), a_node("n3", {"disk": "ssd"})]
    plan = daemonset.plan_daemon_set(ds, nodes, [], NOW)
    assert plan.create_on == ["n1", "n3"]
    assert plan.status["desiredNumberScheduled"] == 2 and plan.status["currentNumberScheduled"] == 0
    pod = daemonset.new_daemon_pod(ds, "n1", "r")
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["n1"]
    keys = {t["key"] for t in pod["spec"]["tolerations"]}
    assert "node.kubernetes.io/unschedulable" in keys and "node.kubernetes.io/not-ready" in keys
    assert daemonset.node_of(pod) == "n1"


def test_daemonset_respects_taints_and_tolerations() -> None:
    taint = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    nodes = [a_node("n1", taints=taint), a_node("n2")]
    assert daemonset.plan_daemon_set(a_ds(), nodes, [], NOW).create_on == ["n2"]
    tolerating = a_ds(tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert daemonset.plan_daemon_set(tolerating, nodes, [], NOW).create_on == ["n1", "n2"]
    cordoned = [
        a_node("n1", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    ]
    assert daemonset.plan_daemon_set(a_ds(), cordoned, [], NOW).create_on == ["n1"]


def test_daemonset_removes_extra_and_misscheduled_pods() -> None:
    ds = a_ds(nodeSelector={"disk": "ssd"})
    nodes = [a_node("n1", {"disk": "ssd"}), a_node("n2")]
    pods = [ds_pod(ds, "a", "n1"), ds_pod(ds, "b", "n1"), ds_pod(ds, "c", "n2")]
    pods[1]["metadata"]["creationTimestamp"] = ts(10)
    plan = daemonset.plan_daemon_set(ds, nodes, pods, NOW)
    assert {p["metadata"]["name"] for p in plan.delete} == {"b", "c"}
    assert plan.status["numberMisscheduled"] == 1


def test_daemonset_rolling_update_respects_max_unavailable() -> None:
    ds = a_ds()
    nodes = [a_node(f"n{i}") for i in range(3)]
    pods = [ds_pod(ds, f"p{i}", f"n{i}", current=False) for i in range(3)]
    plan = daemonset.plan_daemon_set(ds, nodes, pods, NOW)
    assert len(plan.delete) == 1
    assert "updatedNumberScheduled" not in plan.status  # zero: omitted as upstream
    # one node already without an available pod: nothing more goes
    pods[0]["status"]["conditions"][0]["status"] = "False"
    pods[0]["metadata"]["labels"][daemonset.HASH_LABEL] = daemonset.template_hash(ds)
    plan = daemonset.plan_daemon_set(ds, nodes, pods, NOW)
    assert plan.delete == []
    ds["spec"]["updateStrategy"] = {"type": "OnDelete"}
    pods[0]["status"]["conditions"][0]["status"] = "True"
    assert daemonset.plan_daemon_set(ds, nodes, pods, NOW).delete == []


def test_daemonset_status_counts() -> None:
    ds = a_ds()
    nodes = [a_node("n1"), a_node("n2")]
    pods = [ds_pod(ds, "a", "n1"), ds_pod(ds, "b", "n2", ready=False)]
    st_ = daemonset.plan_daemon_set(ds, nodes, pods, NOW).status
    assert st_["desiredNumberScheduled"] == 2 and st_["currentNumberScheduled"] == 2
    assert st_["numberReady"] == 1 and st_["numberAvailable"] == 1
    assert st_["numberUnavailable"] == 1 and st_["updatedNumberScheduled"] == 2
    assert st_["observedGeneration"] == 2


# -- anything an informer lets through -------------------------------------------------------

_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=4),
    st.sampled_from(
        [
            "Succeeded",
            "Failed",
            "Running",
            "Never",
            "OnFailure",
            "RollingUpdate",
            "OnDelete",
            "50%",
            "x%",
            "True",
            "Ready",
            "Indexed",
            "0-2,x",
            "1",
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
                    "type",
                    "status",
                    "phase",
                    "name",
                    "labels",
                    "spec",
                    "template",
                    "selector",
                    "matchLabels",
                    "conditions",
                    "restartCount",
                    "containerStatuses",
                    "completionMode",
                    "completedIndexes",
                    "annotations",
                    "batch.kubernetes.io/job-completion-index",
                    "containers",
                    "nodeName",
                    "taints",
                    "effect",
                    "key",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


def _usable(kind: str, obj: Any) -> bool:
    return shape.problem(kind, obj) is None


@settings(max_examples=300, deadline=None)
@given(_ANY, st.lists(_ANY, max_size=4))
def test_job_plan_survives_any_usable_objects(spec: Any, pods: list[Any]) -> None:
    obj = a_job()
    if isinstance(spec, dict):
        obj["spec"].update(spec)
        obj["status"] = spec.get("status") if isinstance(spec.get("status"), dict) else {}
    pods = [p for p in pods if isinstance(p, dict)]
    for p in pods:
        annotations = p.get("annotations")
        p["metadata"] = {"name": "p", "namespace": "ns"}
        if isinstance(annotations, dict):
            p["metadata"]["annotations"] = annotations
    if not _usable("Job", obj) or not all(_usable("Pod", p) for p in pods):
        return
    if job.spec_problem(obj) is None:
        job.plan_job(obj, pods, NOW)
    job.ttl_left(obj, NOW)


@settings(max_examples=300, deadline=None)
@given(_ANY, st.lists(_ANY, max_size=3), st.lists(_ANY, max_size=3))
def test_daemonset_plan_survives_any_usable_objects(
    spec: Any, nodes: list[Any], pods: list[Any]
) -> None:
    obj = a_ds()
    if isinstance(spec, dict):
        obj["spec"].update(spec)
    nodes = [n for n in nodes if isinstance(n, dict)]
    for i, n in enumerate(nodes):
        n["metadata"] = {"name": f"n{i}"}
    pods = [p for p in pods if isinstance(p, dict)]
    for p in pods:
        p["metadata"] = {"name": "p", "namespace": "ns"}
    if not _usable("DaemonSet", obj):
        return
    nodes = [n for n in nodes if _usable("Node", n)]
    pods = [p for p in pods if _usable("Pod", p)]
    if daemonset.spec_problem(obj) is None:
        daemonset.plan_daemon_set(obj, nodes, pods, NOW)


def test_default_service_account_for_active_namespaces() -> None:
    from kubesvc.controllers.serviceaccount import needs_default_account

    ns = {"metadata": {"name": "a"}, "status": {"phase": "Active"}}
    assert needs_default_account(ns, [])
    assert not needs_default_account(ns, ["default"])
    assert not needs_default_account(None, [])
    assert not needs_default_account({**ns, "status": {"phase": "Terminating"}}, [])


# -- Indexed Jobs ------------------------------------------------------------------------------


def an_indexed_pod(index: int, phase: str = "Running", created: float = 100) -> dict[str, Any]:
    pod = a_pod(f"j-{index}-x", phase, created=created)
    pod["metadata"]["annotations"] = {job.INDEX_KEY: str(index)}
    return pod


def test_indexed_job_starts_the_lowest_missing_indexes() -> None:
    obj = a_job(completionMode="Indexed", completions=5, parallelism=2)
    plan = job.plan_job(obj, [], NOW)
    assert plan.indexes == [0, 1] and plan.create == 2
    pods = [an_indexed_pod(0, "Succeeded"), an_indexed_pod(1, "Failed"), an_indexed_pod(3)]
    plan = job.plan_job(obj, pods, NOW)
    assert plan.indexes == [1]  # index 1 failed: it runs again; 3 still runs
    assert plan.status["completedIndexes"] == "0"
    assert plan.status["succeeded"] == 1 and plan.status["failed"] == 1


def test_indexed_job_completes_when_every_index_succeeded() -> None:
    obj = a_job(completionMode="Indexed", completions=3, parallelism=3)
    obj["status"] = {"completedIndexes": "0-1"}
    plan = job.plan_job(obj, [an_indexed_pod(2, "Succeeded")], NOW)
    assert plan.finished and plan.create == 0
    assert plan.status["completedIndexes"] == "0-2"
    assert plan.status["succeeded"] == 3
    assert [c["type"] for c in plan.status["conditions"]] == ["SuccessCriteriaMet", "Complete"]


def test_indexed_job_removes_duplicates_and_pods_without_a_valid_index() -> None:
    obj = a_job(completionMode="Indexed", completions=3, parallelism=3)
    older, newer = an_indexed_pod(1, created=200), an_indexed_pod(1, created=100)
    stray = a_pod("stray")
    out_of_range = an_indexed_pod(7)
    plan = job.plan_job(obj, [newer, older, stray, out_of_range], NOW)
    assert {p["metadata"]["name"] for p in plan.delete} == {"j-1-x", "stray", "j-7-x"}
    assert older not in plan.delete and newer in plan.delete  # the older pod of 1 stays
    assert plan.indexes == [0, 2]


def test_suspending_an_indexed_job_removes_its_pods() -> None:
    obj = a_job(completionMode="Indexed", completions=3, parallelism=2, suspend=True)
    plan = job.plan_job(obj, [an_indexed_pod(0), an_indexed_pod(1)], NOW)
    assert len(plan.delete) == 2 and plan.create == 0


def test_completed_indexes_round_trip() -> None:
    assert job.format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert job.parse_indexes("0-2,4,6-7", 10) == {0, 1, 2, 4, 6, 7}
    assert job.parse_indexes("0-999999999,x,-,5-", 4) == {0, 1, 2, 3}
    assert job.parse_indexes(5, 4) == set()


def test_indexed_job_pod() -> None:
    obj = a_job(completionMode="Indexed", completions=3)
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    pod = job.new_job_pod(obj, 2)
    m = pod["metadata"]
    assert m["generateName"] == "j-2-"
    assert m["annotations"][job.INDEX_KEY] == "2" and m["labels"][job.INDEX_KEY] == "2"
    assert pod["spec"]["hostname"] == "j-2"
    env = pod["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "A", "value": "1"}
    assert env[1]["name"] == "JOB_COMPLETION_INDEX"
    field = env[1]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert "annotations" not in obj["spec"]["template"].get("metadata", {})  # not shared


def test_an_indexed_job_with_too_many_completions_is_not_run() -> None:
    obj = a_job(completionMode="Indexed", completions=10**9)
    assert job.spec_problem(obj) is not None
