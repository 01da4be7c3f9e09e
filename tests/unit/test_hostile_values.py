"""Defaulting, validation, managed fields, apply and Table rows never raise, whatever JSON
value sits at any field of any kind: a wrong type at every schema path, and random hostile
values (NaN, huge numbers, deep nesting, lone surrogates) anywhere."""

from __future__ import annotations

import contextlib
import copy
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.api import apply as ssa
from kubesvc.api import errors, tables
from kubesvc.api.defaults import apply_defaults, prepare_for_update
from kubesvc.api.kinds import BY_KIND, KINDS
from kubesvc.api.patch import PatchError
from kubesvc.api.validation import validate, validate_status_update
from kubesvc.apiserver import strategies
from tests.hostile import payloads

NOW = datetime(2026, 6, 1, tzinfo=UTC)
NOW_TEXT = "2026-06-01T00:00:00Z"


def _stored(kind: str) -> dict[str, Any]:
    """A valid object as the store holds it: defaulted, with the system metadata."""
    obj = payloads.sample(kind, "stored")
    meta = obj["metadata"]
    if BY_KIND[kind].namespaced:
        meta["namespace"] = "default"
    meta.update(uid="u-1", creationTimestamp=NOW_TEXT, resourceVersion="7", generation=1)
    apply_defaults(kind, obj)
    ssa.update_managed_fields(kind, None, obj, "kubectl", "Update", NOW_TEXT)
    return obj


STORED = {k.kind: _stored(k.kind) for k in KINDS}


def run_checks(kind: str, obj: dict[str, Any]) -> None:
    """Defaulting, validation (create, update, status), the 422 Status and the Table row:
    each must finish, and the Status must encode as JSON."""
    old = STORED[kind]
    k = BY_KIND[kind]
    created = copy.deepcopy(obj)
    apply_defaults(kind, created)
    errs = validate(kind, created)
    updated = copy.deepcopy(obj)
    prepare_for_update(kind, updated, copy.deepcopy(old))
    apply_defaults(kind, updated)
    errs += validate(kind, updated, old)
    errs += validate_status_update(kind, copy.deepcopy(updated), old)
    json.dumps(errors.invalid_error(kind, k.group, "n", errs).status(), allow_nan=False)
    tables.row_cells(kind, created, NOW)
    tables.row_cells(kind, updated, NOW)


def run_field_tracking(kind: str, obj: dict[str, Any]) -> None:
    """managedFields of an update and server-side apply of obj as a configuration."""
    old = STORED[kind]
    ssa.update_managed_fields(kind, None, copy.deepcopy(obj), "m", "Update", NOW_TEXT)
    ssa.update_managed_fields(kind, old, copy.deepcopy(obj), "m", "Update", NOW_TEXT)
    for live in (copy.deepcopy(old), None):
        # a 409 or a 400/422 Status are the documented answers
        with contextlib.suppress(ssa.ApplyConflict, PatchError):
            ssa.apply_patch(kind, live, copy.deepcopy(obj), "m", False, NOW_TEXT)


def test_every_kind_has_typed_fields() -> None:
    # the schema walk reaches deep fields, so a regression in it cannot empty the table below
    ids = {f.id for f in payloads.all_typed_fields()}
    assert "Service:spec.ports.[].port" in ids
    assert "Deployment:spec.template.spec.containers.[].readinessProbe.periodSeconds" in ids
    assert "ConfigMap:data.{}" in ids
    assert sum(len(payloads.wrong_values(f)) for f in payloads.all_typed_fields()) > 15_000


def test_samples_are_valid() -> None:
    for k in KINDS:
        obj = payloads.sample(k.kind, "valid")
        if k.namespaced:
            obj["metadata"]["namespace"] = "default"
        obj["metadata"]["uid"] = "4a6a3d4e-0000-4000-8000-000000000001"
        strategies.prepare_for_create(k, obj)  # a Job's selector is generated here
        apply_defaults(k.kind, obj)
        assert validate(k.kind, obj) == [], k.kind


def _same_structure_elsewhere(kind: str, field: payloads.TypedField) -> bool:
    """Fields whose structure another kind or list already has: a workload's pod template
    (a Pod's spec) and the fields of init and ephemeral containers
    (those of containers)."""
    if kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job"):
        return field.path[:3] == ("spec", "template", "spec")
    if kind == "ReplicationController":
        return field.path[:3] == ("spec", "template", "spec")
    if kind == "CronJob":
        return field.path[:5] == ("spec", "jobTemplate", "spec", "template", "spec")
    return field.path[:2] in (("spec", "initContainers"), ("spec", "ephemeralContainers")) and (
        len(field.path) > 3
    )


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_wrong_type_at_every_field(kind: str) -> None:
    failures = []
    base = payloads.sample(kind, "wrong")
    for field in payloads.typed_fields(kind):
        for wrong in payloads.wrong_values(field):
            obj = payloads.set_at(base, field.path, wrong.value)
            steps = [run_checks]
            # field tracking walks the structure: what matters is a list or an object where
            # the schema has something else (any scalar is just a leaf to it)
            if isinstance(wrong.value, list | dict) and not _same_structure_elsewhere(kind, field):
                steps.append(run_field_tracking)
            for step in steps:
                try:
                    step(kind, obj)
                except Exception as e:
                    failures.append(f"{field.id} = {wrong.value!r}: {type(e).__name__}: {e}")
    assert not failures, f"{len(failures)} crashes:\n" + "\n".join(failures[:40])


# -- random hostile values anywhere ----------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 2**63, -(2**63) - 1]),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udc00b", "\ufffd", "", "-1", "0x10", "1e400", "::1", "*"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_deep = st.integers(min_value=1, max_value=400).map(lambda d: payloads.nested(d))


@st.composite
def hostile_object(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from([k.kind for k in KINDS]))
    obj = payloads.sample(kind, "h")
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        field = draw(st.sampled_from(payloads.typed_fields(kind)))
        obj = payloads.set_at(obj, field.path, draw(st.one_of(_values, _deep)))
    return kind, obj


@settings(
    max_examples=600,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile_object())
def test_hostile_values_anywhere(case: tuple[str, dict[str, Any]]) -> None:
    kind, obj = case
    run_checks(kind, obj)
    run_field_tracking(kind, obj)


def test_finalizers_added_while_deleting_of_any_type() -> None:
    old = copy.deepcopy(STORED["ConfigMap"])
    old["metadata"].update(deletionTimestamp=NOW_TEXT, finalizers=["a/b", ["x"]])
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["a/b", ["x"], {"y": 1}, "c/d"]
    errs = validate("ConfigMap", new, old)
    assert [e.field for e in errs if e.type == "Forbidden"] == ["metadata.finalizers"]
