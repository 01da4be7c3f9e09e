"""Reconciling stored bootstrap objects as upstream's post-start hook does: add what is
missing, never remove, leave `autoupdate: "false"` alone; nothing stored makes it raise."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.auth.bootstrap import AUTOUPDATE, bootstrap_policy, reconciled

BOOT = bootstrap_policy()
VIEW = next(r for r in BOOT.cluster_roles if r["metadata"]["name"] == "view")
MASTERS = next(b for b in BOOT.cluster_role_bindings if b["metadata"]["name"] == "cluster-admin")


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].update(uid="u-1", resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z")
    return out


def test_an_object_as_expected_is_left_alone() -> None:
    assert reconciled(stored(VIEW), VIEW) is None
    assert reconciled(stored(MASTERS), MASTERS) is None


def test_missing_rules_are_added_and_extra_ones_kept() -> None:
    current = stored(VIEW)
    extra = {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}
    current["rules"] = [extra, *current["rules"][1:]]
    out = reconciled(current, VIEW)
    assert out is not None
    assert out["rules"][0] == extra
    assert VIEW["rules"][0] in out["rules"]
    assert len(out["rules"]) == len(VIEW["rules"]) + 1
    assert out["metadata"]["uid"] == "u-1"


def test_missing_subjects_labels_and_annotations_are_added() -> None:
    current = stored(MASTERS)
    mine = {"kind": "User", "name": "ops", "apiGroup": "rbac.authorization.k8s.io"}
    current["subjects"] = [mine]
    current["metadata"]["labels"] = {"team": "ops"}
    del current["metadata"]["annotations"]
    out = reconciled(current, MASTERS)
    assert out is not None
    assert out["subjects"] == [mine, *MASTERS["subjects"]]
    assert out["metadata"]["labels"] == {
        "kubernetes.io/bootstrapping": "rbac-defaults",
        "team": "ops",
    }
    assert out["metadata"]["annotations"] == {AUTOUPDATE: "true"}


def test_a_changed_role_ref_is_put_back() -> None:
    current = stored(MASTERS)
    current["roleRef"] = {**current["roleRef"], "name": "view"}
    out = reconciled(current, MASTERS)
    assert out is not None and out["roleRef"]["name"] == "cluster-admin"


def test_autoupdate_false_is_left_alone() -> None:
    current = stored(VIEW)
    current["metadata"]["annotations"] = {AUTOUPDATE: "false"}
    current["rules"] = []
    assert reconciled(current, VIEW) is None


def test_what_an_admin_set_wins_over_expected_labels() -> None:
    current = stored(VIEW)
    current["metadata"]["labels"]["kubernetes.io/bootstrapping"] = "mine"
    assert reconciled(current, VIEW) is None


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    meta=junk,
    rules=junk,
    subjects=junk,
    role_ref=junk,
    labels=junk,
    annotations=junk,
)
def test_hostile_stored_objects_never_raise(
    meta: Any, rules: Any, subjects: Any, role_ref: Any, labels: Any, annotations: Any
) -> None:
    for expected in (VIEW, MASTERS):
        obj: dict[str, Any] = {
            "metadata": meta,
            "rules": rules,
            "subjects": subjects,
            "roleRef": role_ref,
        }
        reconciled(obj, expected)
        obj["metadata"] = {"name": "x", "labels": labels, "annotations": annotations}
        out = reconciled(obj, expected)
        if out is not None:
            field = "subjects" if "roleRef" in expected else "rules"
            assert isinstance(out[field], list)
            assert out["metadata"].get("annotations", {}).get(AUTOUPDATE) != "false"
