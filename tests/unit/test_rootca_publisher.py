"""The root CA publisher's desired ConfigMap: created whole, left alone when right, and put
back (data and annotation) when someone changed it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.controllers.rootca import (
    CONFIGMAP,
    DESCRIPTION,
    DESCRIPTION_ANNOTATION,
    desired_configmap,
)

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def published() -> dict[str, Any]:
    want = desired_configmap(CA, None)
    assert want is not None
    return {**want, "metadata": {**want["metadata"], "namespace": "a", "resourceVersion": "7"}}


def test_a_missing_configmap_is_created_as_upstream_publishes_it() -> None:
    assert desired_configmap(CA, None) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
        "data": {"ca.crt": CA},
    }


def test_a_published_configmap_is_left_alone() -> None:
    assert desired_configmap(CA, published()) is None


def test_changed_data_and_a_lost_annotation_are_restored_keeping_the_rest() -> None:
    cm = published()
    cm["data"] = {"ca.crt": "forged", "extra": "x"}
    cm["metadata"]["annotations"] = {"mine": "yes"}
    want = desired_configmap(CA, cm)
    assert want is not None
    assert want["data"] == {"ca.crt": CA}
    assert want["metadata"]["annotations"] == {"mine": "yes", DESCRIPTION_ANNOTATION: DESCRIPTION}
    assert want["metadata"]["resourceVersion"] == "7"  # an update of what was read
    assert cm["data"] == {"ca.crt": "forged", "extra": "x"}  # the cached copy is not touched


@settings(deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["data", "binaryData", "metadata"]),
        st.none() | st.integers() | st.text() | st.dictionaries(st.text(), st.text()),
    )
)
def test_any_current_configmap_gives_the_published_data(current: dict[str, Any]) -> None:
    current.setdefault("metadata", {})
    if not isinstance(current["metadata"], dict):
        current["metadata"] = {"annotations": current["metadata"]}
    want = desired_configmap(CA, current)
    assert want is None or (want["data"] == {"ca.crt": CA} and "binaryData" not in want)
