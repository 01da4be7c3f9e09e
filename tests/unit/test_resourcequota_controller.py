"""ResourceQuota usage: what a namespace holds, printed as Go's Quantity prints it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.controllers.resourcequota import format_quantity, usage


def pod(cpu: str = "250m", memory: str = "64Mi", phase: str = "Running") -> dict[str, Any]:
    resources = {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": "1", "memory": memory},
    }
    return {
        "spec": {"containers": [{"name": "c", "resources": resources}]},
        "status": {"phase": phase},
    }


@pytest.mark.parametrize(
    ("resource", "value", "text"),
    [
        ("requests.cpu", Decimal("0.5"), "500m"),
        ("cpu", Decimal(2), "2"),
        ("requests.memory", Decimal(128 * 2**20), "128Mi"),
        ("limits.memory", Decimal(1000), "1000"),
        ("requests.storage", Decimal(0), "0"),
    ],
)
def test_format(resource: str, value: Decimal, text: str) -> None:
    assert format_quantity(resource, value) == text


def test_usage() -> None:
    hard = {
        "pods": "10",
        "requests.cpu": "1",
        "requests.memory": "1Gi",
        "limits.cpu": "2",
        "services": "5",
        "services.nodeports": "2",
        "count/configmaps": "3",
        "count/deployments.apps": "1",
        "requests.storage": "10Gi",
    }
    objects = {
        "Pod": [pod(), pod(), pod(phase="Succeeded")],
        "Service": [{"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]}}],
        "ConfigMap": [{}, {}],
        "PersistentVolumeClaim": [{"spec": {"resources": {"requests": {"storage": "3Gi"}}}}],
    }
    assert usage(hard, objects) == {
        "pods": "2",
        "requests.cpu": "500m",
        "requests.memory": "128Mi",
        "limits.cpu": "2",
        "services": "1",
        "services.nodeports": "1",
        "count/configmaps": "2",
        "requests.storage": "3Gi",
    }


_ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.just("1Gi")),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "spec",
                    "containers",
                    "resources",
                    "requests",
                    "limits",
                    "cpu",
                    "memory",
                    "status",
                    "phase",
                    "ports",
                    "nodePort",
                    "type",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ANY, max_size=4))
def test_usage_survives_usable_pods(pods: list[Any]) -> None:
    from kubesvc.client import shape

    usable = []
    for p in pods:
        if isinstance(p, dict):
            p["metadata"] = {"name": "p"}
            if shape.problem("Pod", p) is None:
                usable.append(p)
    usage({"requests.cpu": "1", "limits.memory": "1Gi", "pods": "3"}, {"Pod": usable})


def test_usage_of_odd_resources() -> None:
    odd = [
        {"spec": {"containers": [{"resources": 5}, {"resources": {"requests": "x"}}, 7]}},
        {"spec": {"containers": [{"resources": {"requests": {"cpu": "lots"}}}]}},
    ]
    claims = [{"spec": {"resources": "x"}}, {"spec": {"resources": {"requests": 3}}}]
    got = usage(
        {"requests.cpu": "1", "requests.storage": "1Gi"},
        {"Pod": odd, "PersistentVolumeClaim": claims},
    )
    assert got == {"requests.cpu": "0", "requests.storage": "0"}
