"""The LoadBalancer IP allocator's model at scale: what the controller-manager's event loop
spends on N LoadBalancer Services when they are created, when it restarts (what they hold
is read back from their statuses), and when their pool is edited.

    python bench/lbipam_bench.py [--services 10000] [--json FILE]

No cluster and no root needed: the model is pure. Prints one Markdown table on stdout
(progress on stderr); see bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Results, Row, exit_status, log, report_rows
from kubesvc.controllers.lbipam.model import (
    Allocator,
    ServiceRequest,
    build_pools,
    converge,
    parse_pool,
    read_service,
)

PER_SERVICE_TARGET = 0.2  # ms of event loop per Service, in every step


@dataclass(frozen=True)
class Workload:
    services: int


def pool(addresses: str) -> Any:
    obj = {"metadata": {"name": "default"}, "spec": {"addresses": [addresses]}}
    return build_pools([parse_pool(obj)])


def service(i: int, ip: str = "", shared: bool = False) -> ServiceRequest:
    obj: dict[str, Any] = {
        "metadata": {
            "name": f"svc-{i}",
            "namespace": f"ns-{i % 10}",
            "annotations": {"metallb.io/allow-shared-ip": "k"} if shared else {},
        },
        "spec": {"type": "LoadBalancer", "ports": [{"port": 1 + i % 60000, "protocol": "TCP"}]},
    }
    if ip:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
    req = read_service(obj)
    assert req is not None
    return req


def timed(what: str, n: int, fn: Any, results: Results[Row]) -> Any:
    log(what)
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    results.add(Row(f"{what}: total", elapsed, "s"))
    results.add(Row(f"{what}: per Service", elapsed * 1000 / n, "ms", target=PER_SERVICE_TARGET))
    return out


def run(w: Workload, results: Results[Row]) -> None:
    n = w.services
    a = Allocator()
    a.set_pools(pool("10.0.0.0/8"))
    reqs = [service(i) for i in range(n)]
    timed(f"create {n:,} Services", n, lambda: [converge(a, r, {}) for r in reqs], results)
    held = [service(i, a.ip(r.key) or "") for i, r in enumerate(reqs)]

    def restart() -> None:
        b = Allocator()
        b.set_pools(pool("10.0.0.0/8"))
        for r in held:  # what the controller does before it hands anything out
            b.assign(r, r.current[0], {})
        for r in held:
            out = converge(b, r, {})
            assert out.ips == list(r.current) and not out.events

    timed(f"restart: rebuild and converge {n:,}", n, restart, results)

    def edit() -> None:
        # the pool loses its first half: half the Services move
        a.set_pools(pool("10.128.0.0/9"))
        moved = sum(bool(converge(a, r, {}).events) for r in held)
        assert moved == n, moved

    timed(f"pool edit moving {n:,}", n, edit, results)
    s = Allocator()
    s.set_pools(pool("10.0.0.0/8"))
    shared = [service(i, shared=True) for i in range(n)]
    timed(
        f"create {n:,} Services sharing one key",
        n,
        lambda: [converge(s, r, {}) for r in shared],
        results,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    w = Workload(args.services)
    results: Results[Row] = Results()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    run(w, results)
    report_rows("LoadBalancer IP allocator", results, w, started, args.json)
    return exit_status(False, results)


if __name__ == "__main__":
    sys.exit(main())
