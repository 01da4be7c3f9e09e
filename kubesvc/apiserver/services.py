"""Service-specific storage behaviour: IP and port allocation, type-change cleanup.

Mirrors pkg/registry/core/service/storage: patchAllocatedValues keeps allocated values
that an update omitted, dropTypeDependentFields clears values a new type no longer needs,
and allocations are released when a Service is deleted or stops needing them.

The allocators choose in memory; what a Service holds is claimed in the store, in the same
transaction as the Service (keys.IP_CLAIMS, keys.NODE_PORT_CLAIMS), so two API servers
can never hand out one value twice and nothing leaks when a server dies mid-write.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubesvc.api.errors import FieldError, go_strings, invalid
from kubesvc.apiserver.allocators import AllocationError, IPAllocator, PortAllocator
from kubesvc.apiserver.keys import IP_CLAIMS, NODE_PORT_CLAIMS


def needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def needs_node_ports(spec: dict[str, Any]) -> bool:
    t = spec.get("type", "ClusterIP")
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def needs_health_check_port(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


@dataclass
class Allocation:
    """What one write took from the allocators, so it can be undone or released."""

    ips: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)


class ServiceAllocator:
    def __init__(self, ip_range: str = "10.96.0.0/12", port_range: str = "30000-32767") -> None:
        self.ips = IPAllocator(ip_range)
        first, last = (int(p) for p in port_range.split("-"))
        self.ports = PortAllocator(first, last)

    def restore(self, svc: dict[str, Any]) -> None:
        """Mark a stored Service's values as used (startup repair)."""
        spec = svc.get("spec") or {}
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            if ip and ip != "None" and self.ips.contains(ip):
                self.ips.used.add(_ip_int(ip))
        for port in _node_ports(spec):
            self.ports.used.add(port)

    # -- create / update -----------------------------------------------------------------
    def allocate(
        self, svc: dict[str, Any], old: dict[str, Any] | None, dry_run: bool
    ) -> tuple[Allocation, list[FieldError]]:
        spec = svc.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        taken = Allocation()
        errors: list[FieldError] = []
        if not needs_cluster_ip(spec):
            # Go omits empty strings and lists: an ExternalName Service shows no clusterIP
            for name in ("clusterIP", "clusterIPs"):
                if not spec.get(name):
                    spec.pop(name, None)
        if needs_cluster_ip(spec):
            errors = self._check_families(spec)
            if errors:
                return taken, errors
        try:
            if needs_cluster_ip(spec):
                self._allocate_ip(spec, old_spec, taken, errors, dry_run)
            if needs_node_ports(spec):
                self._allocate_node_ports(spec, old_spec, taken, errors, dry_run)
            if needs_health_check_port(spec):
                self._allocate_health_port(spec, old_spec, taken, errors, dry_run)
        except BaseException:
            self.undo(taken)
            raise
        if errors:
            self.undo(taken)
        return taken, errors

    def _check_families(self, spec: dict[str, Any]) -> list[FieldError]:
        """initIPFamilyFields on a single-stack cluster: what a headful Service may ask for."""
        family = "IPv4"  # the service range is IPv4
        errors = []
        if spec.get("ipFamilyPolicy") == "RequireDualStack":
            errors.append(
                invalid(
                    "spec.ipFamilyPolicy",
                    "RequireDualStack",
                    "this cluster is not configured for dual-stack services",
                )
            )
        for i, requested in enumerate(spec.get("ipFamilies") or []):
            if requested != family:
                errors.append(
                    invalid(f"spec.ipFamilies[{i}]", requested, "not configured on this cluster")
                )
        return errors

    def _allocate_ip(self, spec, old_spec, taken, errors, dry_run) -> None:  # type: ignore[no-untyped-def]
        old_ip = old_spec.get("clusterIP") if needs_cluster_ip(old_spec) else None
        ip = spec.get("clusterIP") or ""
        if old_ip and ip in ("", old_ip):
            spec["clusterIP"] = old_ip
            spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_ip]
            return
        if not ip:
            try:
                ip = self.ips.allocate_next(dry_run)
            except AllocationError as e:
                errors.append(
                    invalid("spec.clusterIPs", go_strings([]), f"failed to allocate IP: {e.detail}")
                )
                return
        else:
            try:
                if dry_run:
                    if not self.ips.contains(ip):
                        self.ips.allocate(ip)  # raises the range error
                    if not self.ips.is_free(ip):
                        raise AllocationError("provided IP is already allocated")
                else:
                    self.ips.allocate(ip)
            except AllocationError as e:
                errors.append(
                    invalid(
                        "spec.clusterIPs",
                        go_strings(spec.get("clusterIPs") or [ip]),
                        f"failed to allocate IP {ip}: {e.detail}",
                    )
                )
                return
        if not dry_run:
            taken.ips.append(ip)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    def _allocate_node_ports(self, spec, old_spec, taken, errors, dry_run) -> None:  # type: ignore[no-untyped-def]
        old_ports = (
            {
                (p.get("port"), p.get("protocol", "TCP")): p["nodePort"]
                for p in old_spec.get("ports") or []
                if p.get("nodePort")
            }
            if needs_node_ports(old_spec)
            else {}
        )
        old_values = set(old_ports.values())
        by_port: dict[int, int] = {}  # same port, different protocols share a node port
        ports = spec.get("ports") or []
        for i, p in enumerate(ports):
            requested = p.get("nodePort")
            if not requested:
                kept = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                if kept:
                    p["nodePort"] = kept
                    by_port.setdefault(p.get("port"), kept)
                continue
            if requested in old_values or requested in by_port.values():
                by_port.setdefault(p.get("port"), requested)
                continue
            try:
                self._take_port(requested, dry_run)
                if not dry_run:
                    taken.ports.append(requested)
                by_port.setdefault(p.get("port"), requested)
            except AllocationError as e:
                errors.append(invalid(f"spec.ports[{i}].nodePort", requested, e.detail))
        for p in ports:
            if p.get("nodePort"):
                continue
            shared = by_port.get(p.get("port"))
            if shared:
                p["nodePort"] = shared
                continue
            try:
                port = self.ports.allocate_next(dry_run)
            except AllocationError as e:
                errors.append(
                    invalid("spec.ports", "", f"failed to allocate a nodePort: {e.detail}")
                )
                return
            if not dry_run:
                taken.ports.append(port)
            p["nodePort"] = port
            by_port[p.get("port")] = port

    def _allocate_health_port(self, spec, old_spec, taken, errors, dry_run) -> None:  # type: ignore[no-untyped-def]
        requested = spec.get("healthCheckNodePort")
        old = old_spec.get("healthCheckNodePort") if needs_health_check_port(old_spec) else None
        if old and requested in (None, 0, old):
            spec["healthCheckNodePort"] = old
            return
        try:
            if requested:
                self._take_port(requested, dry_run)
                port = requested
            else:
                port = self.ports.allocate_next(dry_run)
        except AllocationError as e:
            errors.append(invalid("spec.healthCheckNodePort", requested or 0, e.detail))
            return
        if not dry_run:
            taken.ports.append(port)
        spec["healthCheckNodePort"] = port

    def _take_port(self, port: int, dry_run: bool) -> None:
        if dry_run:
            if not self.ports.first <= port <= self.ports.last or port in self.ports.used:
                self.ports.allocate(port)  # raises with upstream's wording
            return
        self.ports.allocate(port)

    # -- claims in the store ------------------------------------------------------------------
    def claims(self, taken: Allocation, svc: dict[str, Any]) -> list[tuple[str, bytes]]:
        """The store keys that hold what a write took, with their values."""
        m = svc.get("metadata") or {}
        owner = {"namespace": m.get("namespace", ""), "name": m.get("name", "")}
        out = {IP_CLAIMS + ip: _ip_claim(ip, owner) for ip in taken.ips}
        for port in taken.ports:
            out[f"{NODE_PORT_CLAIMS}{port}"] = _port_claim(port, owner)
        return list(out.items())

    def held(self, svc: dict[str, Any]) -> list[tuple[str, bytes]]:
        """The claims a stored Service should have (to repair a store written without)."""
        spec = svc.get("spec") or {}
        ips = [
            ip
            for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]
            if ip and needs_cluster_ip(spec) and self.ips.contains(ip)
        ]
        return self.claims(Allocation(ips, _node_ports(spec)), svc)

    def releases(self, old: dict[str, Any], new: dict[str, Any] | None) -> list[str]:
        """The claim keys that `old` held and `new` (None: deleted) no longer does."""
        held = {key for key, _ in self.held(old)}
        keep = {key for key, _ in self.held(new)} if new is not None else set()
        return sorted(held - keep)

    def claimed_elsewhere(self, key: str) -> None:
        """A claim this server's allocator thought free is held (by another API server):
        mark the value used, so the next choice avoids it."""
        found = self._claimed_value(key)
        if found is not None:
            found[0].add(found[1])

    def release(self, keys: Iterable[str]) -> None:
        """After the write that released these claim keys: their values are free here too."""
        for key in keys:
            found = self._claimed_value(key)
            if found is not None:
                found[0].discard(found[1])

    def _claimed_value(self, key: str) -> tuple[set[int], int] | None:
        """The allocator's used set a claim key belongs to, and the value it names."""
        value = key.rpartition("/")[2]
        if key.startswith(IP_CLAIMS) and self.ips.contains(value):
            return self.ips.used, _ip_int(value)
        if key.startswith(NODE_PORT_CLAIMS) and value.isascii() and value.isdigit():
            return self.ports.used, int(value)
        return None

    def undo(self, taken: Allocation) -> None:
        for ip in taken.ips:
            self.ips.release(ip)
        for port in taken.ports:
            self.ports.release(port)


def _node_ports(spec: dict[str, Any]) -> list[int]:
    ports = [p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")]
    if spec.get("healthCheckNodePort"):
        ports.append(spec["healthCheckNodePort"])
    return ports


def _ip_claim(ip: str, owner: dict[str, str]) -> bytes:
    """An IPAddress object, as upstream's allocator writes one for a ClusterIP."""
    return orjson.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IPAddress",
            "metadata": {
                "name": ip,
                "labels": {
                    "ipaddress.kubernetes.io/ip-family": "IPv4",
                    "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
                },
            },
            "spec": {"parentRef": {"group": "", "resource": "services", **owner}},
        }
    )


def _port_claim(port: int, owner: dict[str, str]) -> bytes:
    return orjson.dumps({"nodePort": port, "service": owner})


def _ip_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


def patch_allocated_values(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Keep allocated values an update left out (upstream's patchAllocatedValues)."""
    spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
    if needs_cluster_ip(old_spec) and needs_cluster_ip(spec):
        if not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec.get("clusterIP")
        same_ip = spec.get("clusterIP") == old_spec.get("clusterIP")
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs") and same_ip:
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if needs_node_ports(old_spec) and needs_node_ports(spec):
        old_ports = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
            for p in old_spec.get("ports") or []
        }
        for p in spec.get("ports") or []:
            if not p.get("nodePort"):
                kept = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                if kept:
                    p["nodePort"] = kept
    keep_health = needs_health_check_port(old_spec) and needs_health_check_port(spec)
    if keep_health and not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
