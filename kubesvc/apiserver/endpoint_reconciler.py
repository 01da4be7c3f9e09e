"""The `kubernetes` Service's endpoints: every live API server (upstream's lease endpoint
reconciler, --endpoint-reconciler-type=lease).

Each API server keeps a key `/registry/masterleases/<its IP>` fresh (every INTERVAL; the
value says until when, TTL ahead) and points the `default/kubernetes` Endpoints and
EndpointSlice at the IPs whose keys have not expired, deleting the expired ones. A server
that stops cleanly removes its key at once; one that dies drops out once its key expires.
Upstream's keys are etcd leases with a TTL; here the expiry is in the value, so the same
code runs on SQLite.

`live_servers` is pure: which servers count, given the keys read now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from kubesvc.api.kinds import BY_KIND
from kubesvc.apiserver.registry import Registry, WriteOptions
from kubesvc.store.base import KeyExists, KeyNotFound, KeyValue, RevisionMismatch

log = logging.getLogger("kubesvc.apiserver")

PREFIX = "/registry/masterleases/"
TTL = 15.0  # seconds, as upstream's DefaultEndpointReconcilerTTL
INTERVAL = 10.0  # seconds between reconciles, as upstream's EndpointReconcilerInterval
OPTS = WriteOptions(manager="kube-apiserver")


def live_servers(kvs: list[KeyValue], now: float) -> tuple[list[str], list[KeyValue]]:
    """(sorted IPs of the servers whose key has not expired, the expired keys)."""
    live, expired = [], []
    for kv in kvs:
        ip = kv.key[len(PREFIX) :]
        try:
            until = float(json.loads(kv.value)["expires"])
        except (ValueError, KeyError, TypeError):
            until = 0.0  # unreadable: as good as expired
        (live if until > now and ip else expired).append((ip, kv))
    return sorted(ip for ip, _ in live), [kv for _, kv in expired]


def endpoints(ips: list[str], port: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "kubernetes",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": ip} for ip in ips],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        ]
        if ips
        else [],
    }


def endpoint_slice(ips: list[str], port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }


class LeaseEndpointReconciler:
    def __init__(self, registry: Registry, ip: str, port: int, clock: Any = time.time) -> None:
        self.registry, self.ip, self.port = registry, ip, port
        self._clock = clock

    @property
    def key(self) -> str:
        return PREFIX + self.ip

    async def run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a conflict with another server, etcd away: next round
                log.warning("endpoint reconcile failed", extra={"kv": {"error": str(e)}})
            await asyncio.sleep(INTERVAL)

    async def reconcile(self) -> None:
        await self._renew()
        kvs, _ = await self.registry.store.range(PREFIX)
        ips, expired = live_servers(kvs, self._clock())
        for kv in expired:
            with contextlib.suppress(KeyNotFound, RevisionMismatch):
                await self.registry.store.delete(kv.key, kv.mod_revision)
        await self._point_at(ips)

    async def remove(self) -> None:
        """On a clean stop: this server leaves the endpoints now."""
        store = self.registry.store
        with contextlib.suppress(Exception):  # stopping: whatever fails, the key expires
            await store.delete(self.key)
            kvs, _ = await store.range(PREFIX)
            ips, _ = live_servers(kvs, self._clock())
            await self._point_at([ip for ip in ips if ip != self.ip])

    async def _renew(self) -> None:
        store = self.registry.store
        value = json.dumps({"expires": self._clock() + TTL}).encode()
        current = await store.get(self.key)
        try:
            if current is None:
                await store.create(self.key, value)
            else:
                await store.update(self.key, value, current.mod_revision)
        except (KeyExists, RevisionMismatch, KeyNotFound):
            pass  # raced with an expiry sweep: the next round writes it

    async def _point_at(self, ips: list[str]) -> None:
        reg = self.registry
        want = endpoints(ips, self.port)
        kind = BY_KIND["Endpoints"]
        current = await reg.try_get(kind, "default", "kubernetes")
        if current is None:
            await reg.create(kind, "default", want, OPTS)
        elif current.get("subsets") != want["subsets"]:
            await reg.update(kind, "default", "kubernetes", {**current, **want}, OPTS)
        slice_kind = BY_KIND["EndpointSlice"]
        want_slice = endpoint_slice(ips, self.port)
        current_slice = await reg.try_get(slice_kind, "default", "kubernetes")
        if current_slice is None:
            await reg.create(slice_kind, "default", want_slice, OPTS)
        elif (
            current_slice.get("endpoints") != want_slice["endpoints"]
            or current_slice.get("ports") != want_slice["ports"]
        ):
            await reg.update(
                slice_kind, "default", "kubernetes", {**current_slice, **want_slice}, OPTS
            )
