"""The `kubernetes` Service's endpoints from the API servers' keys (pure part)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from kubesvc.apiserver.endpoint_reconciler import PREFIX, endpoint_slice, endpoints, live_servers
from kubesvc.store.base import KeyValue


def kv(ip: str, value: bytes) -> KeyValue:
    return KeyValue(PREFIX + ip, value, 1, 1, 1)


def test_live_and_expired() -> None:
    kvs = [
        kv("172.31.0.2", json.dumps({"expires": 110}).encode()),
        kv("172.31.0.1", json.dumps({"expires": 120}).encode()),
        kv("172.31.0.3", json.dumps({"expires": 90}).encode()),
        kv("172.31.0.4", b"not json"),
    ]
    ips, expired = live_servers(kvs, 100.0)
    assert ips == ["172.31.0.1", "172.31.0.2"]
    assert [k.key for k in expired] == [PREFIX + "172.31.0.3", PREFIX + "172.31.0.4"]
    ep = endpoints(ips, 6443)
    assert ep["subsets"][0]["addresses"] == [{"ip": "172.31.0.1"}, {"ip": "172.31.0.2"}]
    assert ep["subsets"][0]["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    assert [e["addresses"] for e in endpoint_slice(ips, 6443)["endpoints"]] == [
        ["172.31.0.1"],
        ["172.31.0.2"],
    ]
    assert endpoints([], 6443)["subsets"] == []


@given(st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=20)), max_size=6))
def test_any_stored_value_is_live_or_expired(items: list[tuple[str, bytes]]) -> None:
    kvs = [kv(ip, value) for ip, value in items]
    ips, expired = live_servers(kvs, 0.0)
    assert len(ips) + len(expired) == len(kvs)
