"""Objects written around the API with values of the wrong type are served without them, and
can still be read, fixed and deleted through the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stored import InProcessApiServer

pytestmark = pytest.mark.e2e

POISON = {
    "p-ports": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "p-ports", "namespace": "default", "uid": "u1"},
        "spec": {"ports": "x", "clusterIP": 5, "selector": 7, "type": ["a"]},
    },
    "p-meta": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "p-meta",
            "labels": "x",
            "annotations": [1],
            "ownerReferences": True,
            "finalizers": 5,
            "creationTimestamp": 3,
        },
        "spec": {"ports": [{"port": "a", "nodePort": 1.5}, "x", {"port": 80}]},
    },
    "p-nan": '{"apiVersion":"v1","kind":"Service","metadata":{"name":"p-nan","labels":{"a":NaN}},'
    '"spec":{"ports":[{"port":Infinity}]}}',
    "p-spec": {"apiVersion": "v1", "kind": "Service", "spec": [1, 2], "status": "x"},
    "p-garbage": '{"apiVersion": "v1", "kind": "Serv',
    "p-other-name": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "elsewhere"}},
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessApiServer]:
    srv = InProcessApiServer(tmp_path / "data")
    srv.start()
    try:
        for name, obj in POISON.items():
            if isinstance(obj, str):
                srv.put_raw("Service", "default", name, obj)
            else:
                srv.put_json("Service", "default", name, obj)
        yield srv
    finally:
        srv.stop()


def test_lists_and_gets_serve_what_decodes(server: InProcessApiServer) -> None:
    listed = json.loads(server.kubectl("get", "svc", "-A", "-o", "json").stdout)
    by_name = {o["metadata"]["name"]: o for o in listed["items"]}
    assert set(POISON) <= set(by_name)
    assert by_name["p-ports"]["spec"] == {}
    assert by_name["p-ports"]["metadata"]["uid"] == "u1"  # what decodes is kept
    assert by_name["p-meta"]["spec"]["ports"] == [{}, {"port": 80}]
    assert "labels" not in by_name["p-meta"]["metadata"]
    assert by_name["p-nan"]["metadata"]["labels"] == {}
    assert by_name["p-spec"]["metadata"] == {
        "name": "p-spec",
        "namespace": "default",
        "resourceVersion": by_name["p-spec"]["metadata"]["resourceVersion"],
    }
    # name and namespace come from the key
    assert by_name["p-other-name"]["metadata"]["namespace"] == "default"
    assert "elsewhere" not in by_name
    table = server.kubectl("get", "svc", "-n", "default").stdout
    assert all(name in table for name in POISON)


def test_poisoned_objects_can_be_fixed_and_deleted(server: InProcessApiServer) -> None:
    for name in POISON:
        server.kubectl(
            "patch", "svc", name, "--type=merge", "-p", '{"spec":{"ports":[{"port":80}]}}'
        )
        fixed = json.loads(server.kubectl("get", "svc", name, "-o", "json").stdout)
        assert fixed["spec"]["ports"][0]["port"] == 80
        assert fixed["spec"]["clusterIP"]  # allocated like any Service's
        server.kubectl("label", "svc", name, "fixed=yes")
    for name in POISON:
        server.kubectl("delete", "svc", name)
    names = server.kubectl("get", "svc", "-o", "name").stdout.split()
    assert names == ["service/kubernetes"]
