"""Static PersistentVolume binding: which volume a claim gets, and the volumes' phases."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.controllers import volumebinding as vb


def pv(
    name: str,
    size: str,
    *,
    cls: str = "manual",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    labels: dict[str, str] | None = None,
    ref: Any = None,
    phase: str = "Available",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": list(modes),
        "storageClassName": cls,
        "hostPath": {"path": "/d"},
    }
    if ref is not None:
        spec["claimRef"] = ref
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"phase": phase},
    }


def pvc(
    name: str = "c",
    size: str = "3Gi",
    *,
    cls: str = "manual",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    selector: Any = None,
    volume: str = "",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": list(modes),
        "resources": {"requests": {"storage": size}},
        "storageClassName": cls,
    }
    if selector is not None:
        spec["selector"] = selector
    if volume:
        spec["volumeName"] = volume
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}"}, "spec": spec}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1Gi", 2**30),
        ("500M", 5 * 10**8),
        ("1.5Ki", 1536),
        ("100m", Decimal("0.1")),
        ("2e3", 2000),
        ("7", 7),
    ],
)
def test_quantities(text: str, value: Any) -> None:
    assert vb.quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "Gi", "1Qi", "1.2.3", "--1", "x" * 100])
def test_not_quantities(text: str) -> None:
    assert vb.quantity(text) is None


def test_smallest_satisfying_volume() -> None:
    volumes = [
        pv("big", "10Gi"),
        pv("small", "1Gi"),
        pv("fit", "5Gi"),
        pv("other", "5Gi", cls="fast"),
    ]
    assert vb.match_volume(pvc(), volumes)["metadata"]["name"] == "fit"


def test_access_modes_selector_and_class() -> None:
    volumes = [
        pv("rwo", "5Gi"),
        pv("rwx", "5Gi", modes=("ReadWriteMany", "ReadWriteOnce"), labels={"t": "a"}),
    ]
    assert vb.match_volume(pvc(modes=("ReadWriteMany",)), volumes)["metadata"]["name"] == "rwx"
    sel = {"matchLabels": {"t": "a"}}
    assert vb.match_volume(pvc(selector=sel), volumes)["metadata"]["name"] == "rwx"
    assert vb.match_volume(pvc(cls=""), volumes) is None


def test_claimed_volumes_are_taken_unless_reserved_for_the_claim() -> None:
    mine = {"namespace": "ns", "name": "c"}
    taken = {"namespace": "ns", "name": "d", "uid": "u-d"}
    volumes = [pv("taken", "5Gi", ref=taken, phase="Bound"), pv("reserved", "50Gi", ref=mine)]
    assert vb.match_volume(pvc(), volumes)["metadata"]["name"] == "reserved"
    assert vb.match_volume(pvc(), volumes[:1]) is None


def test_volume_phases() -> None:
    claim = pvc(volume="v")
    claims = {("ns", "c"): claim}
    ref = vb.claim_ref(claim)
    assert vb.volume_phase(pv("v", "5Gi"), claims) == "Available"
    assert vb.volume_phase(pv("v", "5Gi", ref=ref), claims) == "Bound"
    assert vb.volume_phase(pv("v", "5Gi", ref=ref), {}) == "Released"


_ANY = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(max_size=6),
        st.sampled_from(["1Gi", "5Gi", "manual"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "storage",
                    "capacity",
                    "accessModes",
                    "claimRef",
                    "selector",
                    "matchLabels",
                    "storageClassName",
                    "requests",
                    "resources",
                    "volumeMode",
                    "name",
                    "namespace",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None)
@given(_ANY, st.lists(_ANY, max_size=3))
def test_matching_survives_usable_shapes(claim_spec: Any, volume_specs: list[Any]) -> None:
    from kubesvc.client import shape

    claim = pvc()
    if isinstance(claim_spec, dict):
        claim["spec"].update(claim_spec)
    volumes = []
    for i, spec in enumerate(volume_specs):
        v = pv(f"v{i}", "5Gi")
        if isinstance(spec, dict):
            v["spec"].update(spec)
        volumes.append(v)
    if shape.problem("PersistentVolumeClaim", claim) is not None:
        return
    vb.match_volume(claim, [v for v in volumes if shape.problem("PersistentVolume", v) is None])
    vb.volume_phase(volumes[0] if volumes else pv("x", "1Gi"), {("ns", "c"): claim})
