"""ClusterIP and NodePort allocation, as upstream's bitmap allocators behave.

State lives in memory and is rebuilt from the stored Services at start (upstream's repair
loop does the same from etcd), so nothing here needs its own persistence.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random


class AllocationError(Exception):
    """`detail` is upstream's wording, e.g. 'provided IP is already allocated'."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class IPAllocator:
    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.IPv4Network(cidr)
        self.first = int(self.network.network_address) + 1
        self.last = int(self.network.broadcast_address) - 1
        size = self.last - self.first + 1
        # Upstream keeps the low band for statically chosen IPs (RFC: KEP-3070).
        self.static_band = min(max(16, size // 16), 256)
        self.used: set[int] = set()

    @property
    def cidr(self) -> str:
        return str(self.network)

    def nth(self, n: int) -> str:
        return str(ipaddress.IPv4Address(self.first + n - 1))

    def contains(self, ip: str) -> bool:
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return False
        return self.first <= value <= self.last

    def allocate(self, ip: str) -> None:
        if not self.contains(ip):
            raise AllocationError(
                f"provided IP is not in the valid range. The range of valid IPs is {self.cidr}"
            )
        value = int(ipaddress.IPv4Address(ip))
        if value in self.used:
            raise AllocationError("provided IP is already allocated")
        self.used.add(value)

    def allocate_next(self, dry_run: bool = False) -> str:
        lo, hi = self.first + self.static_band, self.last
        for start, end in ((lo, hi), (self.first, self.last)):
            span = end - start + 1
            if span <= 0:
                continue
            offset = random.randrange(span)
            for i in range(span):
                value = start + (offset + i) % span
                if value not in self.used:
                    if not dry_run:
                        self.used.add(value)
                    return str(ipaddress.IPv4Address(value))
        raise AllocationError("range is full")

    def release(self, ip: str) -> None:
        with contextlib.suppress(ValueError):
            self.used.discard(int(ipaddress.IPv4Address(ip)))

    def is_free(self, ip: str) -> bool:
        return int(ipaddress.IPv4Address(ip)) not in self.used


class PortAllocator:
    def __init__(self, first: int = 30000, last: int = 32767) -> None:
        self.first = first
        self.last = last
        self.used: set[int] = set()

    @property
    def range_text(self) -> str:
        return f"{self.first}-{self.last}"

    def allocate(self, port: int) -> None:
        if not self.first <= port <= self.last:
            raise AllocationError(
                "provided port is not in the valid range. "
                f"The range of valid ports is {self.range_text}"
            )
        if port in self.used:
            raise AllocationError("provided port is already allocated")
        self.used.add(port)

    def allocate_next(self, dry_run: bool = False) -> int:
        span = self.last - self.first + 1
        offset = random.randrange(span)
        for i in range(span):
            port = self.first + (offset + i) % span
            if port not in self.used:
                if not dry_run:
                    self.used.add(port)
                return port
        raise AllocationError("range is full")

    def release(self, port: int) -> None:
        self.used.discard(port)
