"""Prometheus metrics with upstream kube-proxy's names, rendered in the text format."""

from __future__ import annotations

from dataclasses import dataclass, field

# upstream's buckets: exponential from 1 ms (sync) and linear-ish seconds (programming)
SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))
PROGRAMMING_BUCKETS = (
    0.25,
    0.5,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    20,
    25,
    30,
    45,
    60,
    75,
    90,
    120,
    150,
    180,
    210,
    240,
    270,
    300,
)


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.n += 1
        self.total += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for bound, count in zip(self.buckets, self.counts, strict=True):
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {count}')
        lines += [
            f'{self.name}_bucket{{le="+Inf"}} {self.n}',
            f"{self.name}_sum {self.total}",
            f"{self.name}_count {self.n}",
        ]
        return lines


class Metrics:
    def __init__(self) -> None:
        self.sync = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            SYNC_BUCKETS,
        )
        self.programming = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            PROGRAMMING_BUCKETS,
        )
        self.last_sync_time = 0.0
        self.syncs = 0
        self.changes = {"service": 0, "endpoint": 0}

    def count_change(self, kind: str) -> None:
        self.changes[kind] = self.changes.get(kind, 0) + 1

    def synced(self, seconds: float, now: float, programming: list[float]) -> None:
        self.sync.observe(seconds)
        for p in programming:
            if p >= 0:
                self.programming.observe(p)
        self.last_sync_time = now
        self.syncs += 1

    def render(self) -> str:
        lines = self.sync.render() + self.programming.render()
        for name, kind, help_text, value in (
            (
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                "gauge",
                "The last time proxy rules were successfully synced",
                self.last_sync_time,
            ),
            (
                "kubeproxy_sync_proxy_rules_endpoint_changes_total",
                "counter",
                "Cumulative proxy rules Endpoint changes",
                self.changes.get("endpoint", 0),
            ),
            (
                "kubeproxy_sync_proxy_rules_service_changes_total",
                "counter",
                "Cumulative proxy rules Service changes",
                self.changes.get("service", 0),
            ),
            ("kubesvc_proxy_syncs_total", "counter", "Proxy rule syncs applied", self.syncs),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"
