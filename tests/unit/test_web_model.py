"""The web view's pure parts: the graph drawn from stored objects, and connections placed
on it from conntrack events."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.web import model
from kubesvc.web.server import is_loopback, parse_listen

NODE = {
    "metadata": {"name": "n1"},
    "status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "172.31.0.10"}],
    },
}


def _pod(name: str, ip: str, ready: bool = True, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": "n1"},
        "status": {
            "podIP": ip,
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"restartCount": 2}],
        },
    }


SVC = {
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "selector": {"app": "web"},
        "clusterIP": "10.96.5.5",
        "ports": [{"port": 80, "nodePort": 30080}],
    },
}
SLICE = {
    "metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
    "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": False}}],
}


def test_the_graph_of_a_small_cluster() -> None:
    pods = [_pod("web-1", "10.244.0.7", ready=False, app="web"), _pod("client", "10.244.0.4")]
    elements = model.graph([NODE], pods, [SVC], [SLICE])
    by_id = {e["data"]["id"]: e["data"] for e in elements}
    assert (
        by_id["pod:default/web-1"]["ready"] is False and by_id["pod:default/web-1"]["restarts"] == 2
    )
    assert by_id["sel:svc:default/web>pod:default/web-1"]["kind"] == "selects"
    assert by_id["ep:svc:default/web>pod:default/web-1"]["ready"] is False
    assert by_id["on:pod:default/client"]["target"] == "node:n1"
    assert "sel:svc:default/web>pod:default/client" not in by_id
    assert [e["data"]["id"] for e in elements] == sorted(by_id)
    index = model.address_index(elements)
    assert (
        index["10.96.5.5"] == "svc:default/web" and index["172.31.0.10:30080"] == "svc:default/web"
    )
    assert index["10.244.0.4"] == "pod:default/client"


def test_a_conntrack_event_becomes_a_connection_on_the_graph() -> None:
    line = (
        "    [NEW] tcp      6 120 SYN_SENT src=10.244.0.4 dst=10.96.5.5 sport=40000 dport=80 "
        "[UNREPLIED] src=10.244.0.7 dst=10.244.0.4 sport=8080 dport=40000"
    )
    conn = model.connection("n1", line)
    assert conn is not None
    pods = [_pod("web-1", "10.244.0.7"), _pod("client", "10.244.0.4")]
    index = model.address_index(model.graph([NODE], pods, [SVC], []))
    data = conn.as_dict(index)
    assert data["clientId"] == "pod:default/client"
    assert data["serviceId"] == "svc:default/web" and data["endpointId"] == "pod:default/web-1"
    # no rewrite, or not a new connection: nothing to draw
    plain = "[NEW] tcp 6 120 SYN_SENT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
    plain += "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1"
    assert model.connection("n1", plain) is None
    assert model.connection("n1", "[DESTROY] " + line.split("]", 1)[1]) is None


def test_short_names() -> None:
    assert model.short("web") == "web"
    assert model.short("ingress-kubesvc-controller-56ffc556f9-5h9pg") == "ingress…9-5h9pg"


@pytest.mark.parametrize(
    ("text", "want"),
    [("127.0.0.1:8001", ("127.0.0.1", 8001)), (":0", ("127.0.0.1", 0)), ("[::1]:9", ("::1", 9))],
)
def test_listen_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["localhost:80", "127.0.0.1:x", "127.0.0.1:70000", "1.2.3"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("172.31.0.1")


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=4),
    max_leaves=25,
)
objects = st.lists(
    st.dictionaries(st.sampled_from(["metadata", "spec", "status", "endpoints"]), junk, max_size=4),
    max_size=4,
)


@given(objects, objects, objects, objects)
def test_any_stored_objects_are_drawn(nodes: Any, pods: Any, svcs: Any, slices: Any) -> None:
    elements = model.graph(nodes, pods, svcs, slices)
    model.address_index(elements)


@given(st.text(max_size=300))
def test_any_conntrack_line(line: str) -> None:
    model.connection("n", line)
