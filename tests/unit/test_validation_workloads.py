"""Validation of the workload and stored kinds: upstream's field paths and messages for the
main rules (pkg/apis/{apps,batch,core,policy,scheduling,storage,rbac}/validation)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kubesvc.api.defaults import apply_defaults
from kubesvc.api.kinds import BY_KIND
from kubesvc.api.validation import validate
from kubesvc.apiserver import strategies
from tests.hostile import payloads

Obj = dict[str, Any]


def _messages(kind: str, mutate: Callable[[Obj], None], old: Obj | None = None) -> list[str]:
    obj = payloads.sample(kind, "x")
    if BY_KIND[kind].namespaced:
        obj["metadata"]["namespace"] = "default"
    obj["metadata"]["uid"] = "00000000-0000-4000-8000-000000000001"
    mutate(obj)
    strategies.prepare_for_create(BY_KIND[kind], obj)
    apply_defaults(kind, obj)
    return [str(e) for e in validate(kind, obj, old)]


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, last = path.split(".")
        cur = obj
        for p in parents:
            cur = cur.setdefault(p, {})
        cur[last] = value

    return mutate


CASES = [
    pytest.param(
        "Job",
        _set("spec.template.spec.restartPolicy", "Always"),
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
        '"OnFailure", "Never"',
        id="job-restart-policy",
    ),
    pytest.param(
        "Job",
        _set("spec.backoffLimit", -1),
        "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
        id="job-backoff",
    ),
    pytest.param(
        "Job",
        _set("spec.completionMode", "Sometimes"),
        'spec.completionMode: Unsupported value: "Sometimes": supported values: "NonIndexed", '
        '"Indexed"',
        id="job-completion-mode",
    ),
    pytest.param(
        "CronJob",
        _set("spec.schedule", "61 * * * *"),
        'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61',
        id="cronjob-schedule",
    ),
    pytest.param(
        "CronJob",
        _set("spec.schedule", "TZ=UTC * * * * *"),
        'spec.schedule: Invalid value: "TZ=UTC * * * * *": cannot use TZ or CRON_TZ in '
        "schedule, use timeZone field instead",
        id="cronjob-tz-in-schedule",
    ),
    pytest.param(
        "CronJob",
        _set("spec.timeZone", "Mars/Olympus"),
        'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus',
        id="cronjob-zone",
    ),
    pytest.param(
        "CronJob",
        _set("spec.concurrencyPolicy", "Sometimes"),
        'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", '
        '"Forbid", "Replace"',
        id="cronjob-concurrency",
    ),
    pytest.param(
        "CronJob",
        _set("metadata.name", "c" * 53),
        f'metadata.name: Invalid value: "{"c" * 53}": must be no more than 52 characters',
        id="cronjob-name-length",
    ),
    pytest.param(
        "DaemonSet",
        _set("spec.template.spec.restartPolicy", "Never"),
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
        id="daemonset-restart-policy",
    ),
    pytest.param(
        "DaemonSet",
        _set("spec.updateStrategy", {"type": "Sometimes"}),
        'spec.updateStrategy.type: Unsupported value: "Sometimes": supported values: '
        '"OnDelete", "RollingUpdate"',
        id="daemonset-strategy",
    ),
    pytest.param(
        "StatefulSet",
        _set("spec.podManagementPolicy", "Random"),
        'spec.podManagementPolicy: Unsupported value: "Random": supported values: '
        '"OrderedReady", "Parallel"',
        id="statefulset-policy",
    ),
    pytest.param(
        "ReplicationController",
        _set("spec.selector", {"app": "other"}),
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"hostile"}: '
        "`selector` does not match template `labels`",
        id="rc-selector",
    ),
    pytest.param(
        "PodDisruptionBudget",
        _set("spec.maxUnavailable", 1),
        "minAvailable and maxUnavailable cannot be both set",
        id="pdb-both",
    ),
    pytest.param(
        "PriorityClass",
        _set("value", 2000000000),
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000",
        id="priorityclass-value",
    ),
    pytest.param(
        "PriorityClass",
        _set("metadata.name", "system-mine"),
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved "
        "for system use only. error: system-mine is not a known system priority class",
        id="priorityclass-system",
    ),
    pytest.param(
        "PersistentVolumeClaim",
        _set("spec.accessModes", []),
        "spec.accessModes: Required value: at least 1 access mode is required",
        id="pvc-access-modes",
    ),
    pytest.param(
        "PersistentVolumeClaim",
        _set("spec.resources", {}),
        "spec.resources[storage]: Required value",
        id="pvc-storage",
    ),
    pytest.param(
        "PersistentVolume",
        lambda o: o["spec"].pop("hostPath"),
        "spec: Required value: must specify a volume type",
        id="pv-source",
    ),
    pytest.param(
        "StorageClass",
        _set("provisioner", ""),
        "provisioner: Required value",
        id="storageclass-provisioner",
    ),
    pytest.param(
        "Role",
        _set("rules", [{"apiGroups": [""], "resources": ["pods"]}]),
        "rules[0].verbs: Required value: verbs must contain at least one value",
        id="role-verbs",
    ),
    pytest.param(
        "RoleBinding",
        _set("roleRef", {"apiGroup": "rbac.authorization.k8s.io", "kind": "Pod", "name": "x"}),
        'roleRef.kind: Unsupported value: "Pod": supported values: "Role", "ClusterRole"',
        id="rolebinding-ref-kind",
    ),
    pytest.param(
        "ClusterRoleBinding",
        _set("subjects", [{"kind": "Robot", "name": "r"}]),
        'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", '
        '"User", "Group"',
        id="clusterrolebinding-subject",
    ),
    pytest.param(
        "HorizontalPodAutoscaler",
        _set("spec.minReplicas", 0),
        "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
        id="hpa-min",
    ),
    pytest.param(
        "NetworkPolicy",
        _set("spec.ingress", [{"from": [{}]}]),
        "spec.ingress[0].from[0]: Required value: must specify a peer",
        id="netpol-peer",
    ),
    pytest.param(
        "LimitRange",
        _set("spec.limits", [{"max": {"cpu": "1"}}]),
        "spec.limits[0].type: Required value",
        id="limitrange-type",
    ),
]


@pytest.mark.parametrize(("kind", "mutate", "expected"), CASES)
def test_main_rules(kind: str, mutate: Callable[[Obj], None], expected: str) -> None:
    messages = _messages(kind, mutate)
    assert any(expected in m for m in messages), messages


@pytest.mark.parametrize(
    "kind",
    ["Job", "CronJob", "DaemonSet", "StatefulSet", "ReplicationController", "PriorityClass"],
)
def test_samples_pass(kind: str) -> None:
    assert _messages(kind, lambda o: None) == []


def test_update_rules() -> None:
    def stored(kind: str) -> Obj:
        obj = payloads.sample(kind, "x")
        if BY_KIND[kind].namespaced:
            obj["metadata"]["namespace"] = "default"
        obj["metadata"]["uid"] = "00000000-0000-4000-8000-000000000001"
        strategies.prepare_for_create(BY_KIND[kind], obj)
        apply_defaults(kind, obj)
        return obj

    sts = stored("StatefulSet")
    changed = copy.deepcopy(sts)
    changed["spec"]["serviceName"] = "other"
    assert any(
        "updates to statefulset spec for fields other than 'replicas'" in str(e)
        for e in validate("StatefulSet", changed, sts)
    )
    rb = stored("RoleBinding")
    moved = copy.deepcopy(rb)
    moved["roleRef"]["name"] = "other"
    assert any(
        "roleRef" in str(e) and "cannot change roleRef" in str(e)
        for e in validate("RoleBinding", moved, rb)
    )
    pc = stored("PriorityClass")
    bumped = copy.deepcopy(pc)
    bumped["value"] = 5
    assert any(
        "value: Forbidden: may not be changed in an update." in str(e)
        for e in validate("PriorityClass", bumped, pc)
    )
    job = stored("Job")
    retemplated = copy.deepcopy(job)
    retemplated["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    assert any(
        "spec.template: Invalid value" in str(e) and "field is immutable" in str(e)
        for e in validate("Job", retemplated, job)
    )
