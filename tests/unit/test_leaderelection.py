"""Leader election's one try (client-go's tryAcquireOrRenew with a LeaseLock), pure."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kubesvc.client.leaderelection import ElectionConfig, Observed, attempt

CFG = ElectionConfig()


def lease(
    holder: str, renew: str = "t0", transitions: int = 0, duration: int = 15
) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": CFG.name, "namespace": CFG.namespace, "resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "renewTime": renew,
            "acquireTime": "t0",
            "leaseTransitions": transitions,
        },
    }


def test_no_lease_is_created_with_me_as_holder() -> None:
    body, observed = attempt(None, "me", CFG, None, 1000.0, 5.0)
    assert body is not None and observed is None
    assert body["spec"]["holderIdentity"] == "me"
    assert body["spec"]["leaseTransitions"] == 0
    assert body["spec"]["leaseDurationSeconds"] == 15
    assert body["metadata"] == {"name": "kube-controller-manager", "namespace": "kube-system"}


def test_someone_elses_live_lease_is_left_alone_until_it_stops_changing_for_a_duration() -> None:
    held = lease("other")
    body, seen = attempt(held, "me", CFG, None, 1000.0, 100.0)
    assert body is None and seen is not None and seen.at == 100.0
    # unchanged: the clock that counts is this candidate's, from when it saw the record
    body, seen = attempt(held, "me", CFG, seen, 1014.0, 114.9)
    assert body is None
    body, _ = attempt(held, "me", CFG, seen, 1016.0, 115.1)
    assert body is not None and body["spec"]["holderIdentity"] == "me"
    assert body["spec"]["leaseTransitions"] == 1  # the holder changed
    assert body["metadata"]["resourceVersion"] == "7"  # a conflict means someone was first


def test_a_renewal_seen_restarts_the_count() -> None:
    _, seen = attempt(lease("other", renew="t1"), "me", CFG, None, 0.0, 100.0)
    body, seen = attempt(lease("other", renew="t2"), "me", CFG, seen, 0.0, 114.0)
    assert body is None and seen is not None and seen.at == 114.0
    body, _ = attempt(lease("other", renew="t2"), "me", CFG, seen, 0.0, 120.0)
    assert body is None


def test_the_holder_renews_keeping_acquire_time_and_transitions() -> None:
    body, _ = attempt(lease("me", transitions=3), "me", CFG, None, 2000.0, 1.0)
    assert body is not None
    assert body["spec"]["leaseTransitions"] == 3 and body["spec"]["acquireTime"] == "t0"
    assert body["spec"]["renewTime"] != "t0"


def test_a_released_lease_is_taken_at_once() -> None:
    body, _ = attempt(lease("", duration=1, transitions=2), "me", CFG, None, 0.0, 1.0)
    assert body is not None and body["spec"]["holderIdentity"] == "me"
    assert body["spec"]["leaseTransitions"] == 3


@given(
    spec=st.dictionaries(
        st.sampled_from(
            ["holderIdentity", "leaseDurationSeconds", "renewTime", "leaseTransitions"]
        ),
        st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans()),
    ),
    observed=st.none() | st.builds(Observed, st.text(max_size=3), st.just(()), st.floats(0, 100)),
    monotonic=st.floats(0, 1000),
)
def test_any_stored_lease_gives_a_decision(
    spec: dict[str, Any], observed: Any, monotonic: float
) -> None:
    """A Lease written by anyone (wrong types included) never breaks the try."""
    body, _ = attempt({"metadata": {}, "spec": spec}, "me", CFG, observed, 0.0, monotonic)
    if body is not None:
        assert body["spec"]["holderIdentity"] == "me"
        assert isinstance(body["spec"]["leaseTransitions"], int)
