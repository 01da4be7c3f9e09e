"""Which pods get a user namespace of their own, and the ids they map to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.node import mounts, podroot, userns, volumes
from kubesvc.node.podenv import DictLookup


def _spec(**fields: Any) -> dict[str, Any]:
    return {"containers": [{"name": "c", "image": "busybox"}], **fields}


def _ctr_sc(sc: dict[str, Any]) -> dict[str, Any]:
    return _spec(containers=[{"name": "c", "image": "busybox", "securityContext": sc}])


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (_spec(), None),
        (_spec(hostUsers=False), None),
        (_spec(hostUsers=True), "hostUsers: true"),
        (_spec(hostNetwork=True), "hostNetwork"),
        (_spec(hostUsers=False, hostPID=True), "hostPID"),
        (_spec(hostIPC=True), "hostIPC"),
        (_ctr_sc({"privileged": True}), "container c is privileged"),
        (_ctr_sc({"capabilities": {"add": ["CAP_NET_ADMIN"]}}), "container c adds NET_ADMIN"),
        (_ctr_sc({"capabilities": {"add": ["ALL"]}}), "container c adds ALL"),
        # the default set's own capabilities, and names nobody knows, change nothing
        (_ctr_sc({"capabilities": {"add": ["NET_RAW", "bogus", 7]}}), None),
        (_ctr_sc({"privileged": "yes"}), None),
        (_spec(volumes=[{"name": "h", "hostPath": {"path": "/x"}}]), "volume h is a hostPath"),
        (
            _spec(volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]),
            "volume d is a persistentVolumeClaim",
        ),
        (_spec(volumes=[{"name": "e", "emptyDir": {}}, "junk"]), None),
        (_spec(securityContext={"runAsUser": 65535}), None),
        (_spec(securityContext={"runAsUser": 65536}), "id 65536 is beyond a pod's 65536"),
        (_spec(securityContext={"fsGroup": 70000}), "id 70000 is beyond a pod's 65536"),
        (
            _spec(securityContext={"supplementalGroups": [1, 99999]}),
            "id 99999 is beyond a pod's 65536",
        ),
        (_ctr_sc({"runAsGroup": 100000}), "id 100000 is beyond a pod's 65536"),
        (_spec(securityContext={"runAsUser": True}), None),
    ],
)
def test_who_keeps_the_hosts_users(spec: dict[str, Any], reason: str | None) -> None:
    assert userns.host_users_reason(spec, kernel_allows=True) == reason


def test_without_kernel_support_only_an_explicit_request_asks() -> None:
    assert userns.host_users_reason(_spec(), False) == "the kernel has no user namespaces"
    assert userns.host_users_reason(_spec(hostUsers=False), False) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
spec_keys = st.sampled_from(
    ["hostUsers", "hostNetwork", "hostPID", "hostIPC", "containers", "initContainers",
     "ephemeralContainers", "volumes", "securityContext"]
)  # fmt: skip


@given(st.dictionaries(spec_keys, json_values, max_size=6), st.booleans())
def test_any_stored_spec_gets_an_answer(spec: dict[str, Any], kernel: bool) -> None:
    reason = userns.host_users_reason(spec, kernel)
    assert reason is None or (isinstance(reason, str) and len(reason) < 200)


def test_each_pod_gets_the_lowest_free_range() -> None:
    assert userns.free_base([]) == 65536
    assert userns.free_base([65536, 196608]) == 131072
    assert userns.free_base([65536, 131072]) == 196608


def test_a_pods_volumes_are_its_roots() -> None:
    lookup = DictLookup({("default", "cm"): {"data": {"a": "1"}}}, {})
    pod = {
        "metadata": {"name": "p", "namespace": "default", "uid": "u"},
        "spec": {
            "securityContext": {"runAsUser": 1000},
            "containers": [{"name": "c"}],
        },
    }
    base = 131072
    cm = volumes.plan_volume({"name": "v", "configMap": {"name": "cm"}}, pod, lookup, id_base=base)
    assert {(f.uid, f.gid) for f in cm.files} == {(base, base)}
    projected = {
        "sources": [{"serviceAccountToken": {"path": "token"}}, {"configMap": {"name": "cm"}}]
    }
    plan = volumes.plan_volume(
        {"name": "t", "projected": projected}, pod, lookup, tokens={("", 3600): "tok"}, id_base=base
    )
    owners = {f.path: (f.uid, f.gid) for f in plan.files}
    # the token stays the pod's user's, the rest is the pod's root's
    assert owners == {"token": (base + 1000, base), "a": (base, base)}
    empty = volumes.plan_volume(
        {"name": "e", "emptyDir": {"medium": "Memory"}}, pod, lookup, id_base=base
    )
    assert empty.owner == base
    script = mounts.mount_script(Path("/v"), [empty], [], "/r")
    assert f"uid={base},gid={base}" in script
    host = volumes.plan_volume({"name": "e", "emptyDir": {}}, pod, lookup)
    assert host.owner == 0 and "uid=" not in mounts.mount_script(Path("/v"), [host], [], "/r")


def test_a_user_namespace_pod_may_bind_low_ports_and_ping() -> None:
    lines = podroot.script(podroot.PodRoot("/r", "/f", id_base=65536), "/n", "/s").splitlines()
    assert "echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start" in lines
    assert "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range" in lines
    assert "ping_group_range" not in podroot.script(podroot.PodRoot("/r", "/f"), "/n", "/s")
