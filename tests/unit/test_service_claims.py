"""The store keys that hold a Service's ClusterIP and NodePorts: what a write claims, what an
update or delete releases, and a claim found taken elsewhere (pure logic, no store)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.apiserver.keys import IP_CLAIMS, NODE_PORT_CLAIMS
from kubesvc.apiserver.services import ServiceAllocator


def service(kind: str = "NodePort", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "type": kind,
            "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 443}],
            **spec,
        },
    }


def test_a_create_claims_what_it_took() -> None:
    alloc = ServiceAllocator()
    svc = service()
    taken, errors = alloc.allocate(svc, None, dry_run=False)
    assert not errors
    claims = dict(alloc.claims(taken, svc))
    ip = svc["spec"]["clusterIP"]
    ports = [p["nodePort"] for p in svc["spec"]["ports"]]
    assert set(claims) == {IP_CLAIMS + ip, *(f"{NODE_PORT_CLAIMS}{p}" for p in ports)}
    ip_address = orjson.loads(claims[IP_CLAIMS + ip])
    assert ip_address["kind"] == "IPAddress" and ip_address["metadata"]["name"] == ip
    assert ip_address["spec"]["parentRef"] == {
        "group": "",
        "resource": "services",
        "namespace": "shop",
        "name": "web",
    }
    assert alloc.held(svc) == alloc.claims(taken, svc)  # what repair would give it


def test_updates_release_what_the_new_spec_gives_up_and_deletes_everything() -> None:
    alloc = ServiceAllocator()
    old = service()
    alloc.allocate(old, None, dry_run=False)
    ip = old["spec"]["clusterIP"]
    ports = sorted(f"{NODE_PORT_CLAIMS}{p['nodePort']}" for p in old["spec"]["ports"])
    as_cluster_ip = service("ClusterIP", clusterIP=ip, clusterIPs=[ip])
    assert alloc.releases(old, as_cluster_ip) == ports
    external = {"metadata": old["metadata"], "spec": {"type": "ExternalName"}}
    assert alloc.releases(old, external) == sorted([IP_CLAIMS + ip, *ports])
    assert alloc.releases(old, old) == []
    assert alloc.releases(old, None) == sorted([IP_CLAIMS + ip, *ports])


def test_a_value_claimed_elsewhere_is_not_chosen_again() -> None:
    alloc = ServiceAllocator()
    alloc.claimed_elsewhere(IP_CLAIMS + "10.96.0.50")
    alloc.claimed_elsewhere(f"{NODE_PORT_CLAIMS}30050")
    svc = service(clusterIP="10.96.0.50")
    svc["spec"]["ports"][0]["nodePort"] = 30050
    _, errors = alloc.allocate(svc, None, dry_run=False)
    assert [e.detail for e in errors] == [
        "failed to allocate IP 10.96.0.50: provided IP is already allocated",
        "provided port is already allocated",
    ]
    svc = service()
    svc["spec"]["ports"][0]["nodePort"] = 30050
    _, errors = alloc.allocate(svc, None, dry_run=False)
    assert [e.detail for e in errors] == ["provided port is already allocated"]


@given(st.text(max_size=80))
def test_any_claim_key_is_taken_in_stride(key: str) -> None:
    alloc = ServiceAllocator()
    for prefix in (IP_CLAIMS, NODE_PORT_CLAIMS, ""):
        alloc.claimed_elsewhere(prefix + key)


def test_a_create_whose_choice_is_claimed_elsewhere_chooses_again(tmp_path: Path) -> None:
    """Another API server holds five of the six addresses of a /29 (claims in the store this
    server's allocator does not know of): a create gets the sixth, and one asking for a
    held address gets upstream's 422."""
    from kubesvc.api.errors import ApiError
    from kubesvc.api.kinds import BY_KIND
    from kubesvc.apiserver.registry import Registry, WriteOptions
    from kubesvc.store.sqlite import SQLiteStore

    async def body() -> None:
        store = SQLiteStore(tmp_path / "db")
        reg = Registry(store, ServiceAllocator("10.96.0.0/29"))
        await reg.create(BY_KIND["Namespace"], None, {"metadata": {"name": "shop"}}, WriteOptions())
        for last in range(1, 6):
            await store.create(f"{IP_CLAIMS}10.96.0.{last}", b"{}")
        made = await reg.create(BY_KIND["Service"], "shop", service("ClusterIP"), WriteOptions())
        assert made["spec"]["clusterIP"] == "10.96.0.6"
        assert await store.get(IP_CLAIMS + "10.96.0.6") is not None
        asked = service("ClusterIP", clusterIP="10.96.0.3")
        asked["metadata"]["name"] = "asked"
        with pytest.raises(ApiError) as refused:
            await reg.create(BY_KIND["Service"], "shop", asked, WriteOptions())
        assert refused.value.code == 422
        assert "provided IP is already allocated" in refused.value.message
        await store.close()

    asyncio.run(body())


def test_what_a_write_released_is_free_again_in_memory() -> None:
    alloc = ServiceAllocator()
    old = service()
    alloc.allocate(old, None, dry_run=False)
    port = old["spec"]["ports"][0]["nodePort"]
    ip = old["spec"]["clusterIP"]
    kept = service("ClusterIP", clusterIP=ip, clusterIPs=[ip])
    alloc.release(alloc.releases(old, kept))
    again = service()
    again["spec"]["ports"][0]["nodePort"] = port  # the port the type change gave up
    _, errors = alloc.allocate(again, None, dry_run=False)
    assert errors == []
    _, errors = alloc.allocate(service(clusterIP=ip), None, dry_run=False)
    assert [e.detail for e in errors] == [
        f"failed to allocate IP {ip}: provided IP is already allocated"
    ]
    alloc.release(alloc.releases(kept, None))
    assert alloc.allocate(service("ClusterIP", clusterIP=ip), None, dry_run=False)[1] == []
    alloc.release(["", "junk", IP_CLAIMS + "not-an-ip", NODE_PORT_CLAIMS + "99999999"])
