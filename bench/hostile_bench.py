"""Benchmark: does one expensive request stall the API server's event loop, and does memory
come back after large requests?

    python bench/hostile_bench.py [--objects 5000] [--watchers 100] [--writes 10000]
                                  [--repeat 3] [--json FILE]

Starts `kubesvc apiserver` on 127.0.0.1 with a temporary data directory and probes
/healthz every 10 ms from a separate process with its own keep-alive connection. For each
request class it first takes 1 s of idle probes (the baseline), then sends the class's
requests and reports /healthz p50 and max while they ran, side by side with the baseline.
Then the server's RSS before, at the peak of (sampled every 10 ms) and 5 s after a burst of
3 MiB bodies from 8 clients. Progress on stderr, a Markdown table on stdout; the server is
killed and the directory removed on exit, including on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    ApiServer,
    Results,
    catch_signals,
    exit_status,
    log,
    machine_info,
    render_table,
    row_dicts,
    run_then_clean_up,
    vm_rss_kb,
    write_json,
)

sys.path.insert(0, str(ROOT))
from tests.hostile import payloads
from tests.hostile.client import Client, Response
from tests.hostile.probe import HealthzProbe, Stats

NS = "bench"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
TARGET_MS = 100.0


@dataclass
class Row:
    """One request class: its answers and /healthz while it ran, next to the idle baseline."""

    measurement: str
    requests: int
    answers: str
    request_s: float  # median seconds per request, as the client saw it
    idle: Stats
    busy: Stats

    @property
    def ok(self) -> bool:
        return self.busy.max_ms < TARGET_MS and not self.busy.failed


@dataclass
class MemoryRow:
    measurement: str
    mb: float

    ok = None


def _answers(resps: list[Response]) -> str:
    counts: dict[int, int] = {}
    for r in resps:
        counts[r.status] = counts.get(r.status, 0) + 1
    return ", ".join(f"{n}x {c}" for c, n in sorted(counts.items()))


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, results: Results[Any]) -> None:
        self.args, self.results = args, results
        self.server = ApiServer(tmp / "data")
        self.probe: HealthzProbe | None = None
        self.memory: list[MemoryRow] = []

    def client(self) -> Client:
        return Client(self.server.port, self.server.data_dir)

    def run(self) -> None:
        self.server.start()
        self.probe = HealthzProbe(self.server.port, self.server.data_dir / "pki" / "ca.crt")
        self.probe.start()
        c = self.client()
        c.request("POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": NS}}).encode())
        c.request("POST", CMS, json.dumps({"metadata": {"name": "target"}}).encode())
        repeat = self.args.repeat
        laughs = payloads.billion_laughs_yaml()
        self.measure(
            f"billion-laughs YAML ({len(laughs)} B)",
            lambda: [c.request("POST", CMS, laughs, "application/yaml") for _ in range(repeat)],
        )
        doubling = payloads.copy_doubling_patch(25)
        self.measure(
            f"JSON patch, 25 copies doubling ({len(doubling):,} B)",
            lambda: [
                c.request("PATCH", f"{CMS}/target", doubling, "application/json-patch+json")
                for _ in range(repeat)
            ],
        )
        keys = payloads.many_keys_yaml(100_000, "keys")
        self.measure(
            f"YAML ConfigMap of 100,000 keys ({len(keys) / 1e6:.1f} MB)",
            lambda: [
                r
                for _ in range(repeat)
                for r in (
                    c.request("POST", CMS, keys, "application/yaml"),
                    c.request("DELETE", f"{CMS}/keys"),
                )
            ][::2],
        )
        big = payloads.big_configmap_json("big", 3 * 1024 * 1024 - 4096)
        self.measure(
            f"3 MiB JSON ConfigMap ({len(big) / 1e6:.1f} MB)",
            lambda: [c.request("POST", CMS, big) for _ in range(repeat)],
        )
        deep = b'{"metadata":{"name":"deep"},"data":{"a":' + payloads.nested_json(10_000) + b"}}"
        self.measure(
            "JSON nested 10,000 deep",
            lambda: [c.request("POST", CMS, deep) for _ in range(repeat)],
        )
        self.fill(self.args.objects)
        table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
        self.measure(
            f"list {self.args.objects:,} ConfigMaps (JSON, then Table)",
            lambda: [c.get(CMS, headers=h) for _ in range(repeat) for h in ({}, table)],
        )
        self.measure(
            f"{self.args.watchers} watchers that never read, {self.args.writes:,} writes",
            self.stalled_watchers,
        )
        self.memory_burst()

    def measure(self, name: str, send: Callable[[], list[Response]]) -> None:
        assert self.probe is not None
        log(f"{name}: idle baseline")
        t0 = time.monotonic()
        time.sleep(1.0)
        idle = self.probe.window(t0, time.monotonic())
        log(f"{name}: sending")
        t0 = time.monotonic()
        resps = send()
        while time.monotonic() - t0 < 1.0:  # fast classes: at least 1 s of probes
            resps += send()
        busy = self.probe.window(t0, time.monotonic())
        per = statistics.median(r.elapsed for r in resps) if resps else 0.0
        row = Row(name, len(resps), _answers(resps), per, idle, busy)
        log(f"{name}: {row.answers}, {per:.3f} s each; /healthz {busy} (idle {idle})")
        self.results.add(row)

    def fill(self, n: int) -> None:
        log(f"creating {n} ConfigMaps")
        body = {"data": {"k": "v" * 200}}

        def create(i: int) -> None:
            c = local.client if hasattr(local, "client") else None
            if c is None:
                c = local.client = self.client()
            obj = {"metadata": {"name": f"cm-{i}"}, **body}
            resp = c.request("POST", CMS, json.dumps(obj).encode())
            assert resp.status == 201, resp

        local = threading.local()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(n)))

    def stalled_watchers(self) -> list[Response]:
        """Watchers that send their request and never read, while writes go on."""
        ctx = ssl.create_default_context(cafile=str(self.server.data_dir / "pki" / "ca.crt"))
        token = (self.server.data_dir / "pki" / "token").read_text().strip()
        socks = []
        for _ in range(self.args.watchers):
            raw = socket.create_connection(("127.0.0.1", self.server.port))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            head = f"GET {CMS}?watch=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            s.sendall(head.encode() + b"\r\n")
            socks.append(s)
        patch = b'{"metadata":{"labels":{"w":"%d"}}}'
        n, objects = self.args.writes, self.args.objects
        out: list[Response] = []
        lock = threading.Lock()
        local = threading.local()

        def write(i: int) -> None:
            c = local.client if hasattr(local, "client") else None
            if c is None:
                c = local.client = self.client()
            resp = c.request(
                "PATCH", f"{CMS}/cm-{i % objects}", patch % i, "application/merge-patch+json"
            )
            with lock:
                out.append(resp)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, range(n)))
        for s in socks:
            s.close()
        return out

    def memory_burst(self) -> None:
        log("memory: a burst of 3 MiB bodies from 8 clients")
        self.memory.append(MemoryRow("RSS before the burst", self.server.rss_mb()))
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, vm_rss_kb(self.server.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        big = payloads.big_configmap_json("burst", 3 * 1024 * 1024 - 4096)
        local = threading.local()

        def send(_i: int) -> None:
            c = local.client if hasattr(local, "client") else None
            if c is None:
                c = local.client = self.client()
            c.request("POST", CMS, big)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, range(self.args.burst)))
        stop.set()
        sampler.join()
        self.memory.append(MemoryRow(f"RSS peak during {self.args.burst} requests", peak / 1024))
        time.sleep(5.0)
        self.memory.append(MemoryRow("RSS 5 s after the burst", self.server.rss_mb()))
        for m in self.memory:
            log(f"{m.measurement}: {m.mb:.1f} MB")

    def stop(self) -> None:
        if self.probe is not None:
            self.probe.stop()
        self.server.stop()


def render(results: Results[Any], memory: list[MemoryRow]) -> str:
    header = [
        "request class",
        "requests",
        "answers",
        "per request",
        "/healthz idle p50 / max",
        "/healthz busy p50 / max",
        f"max < {TARGET_MS:.0f} ms?",
    ]
    body = [
        [
            r.measurement,
            str(r.requests),
            r.answers,
            f"{r.request_s:.3f} s",
            f"{r.idle.p50_ms:.1f} / {r.idle.max_ms:.1f} ms",
            f"{r.busy.p50_ms:.1f} / {r.busy.max_ms:.1f} ms"
            + (f" ({r.busy.failed} failed)" if r.busy.failed else ""),
            "yes" if r.ok else "NO",
        ]
        for r in results.rows
    ]
    body += [[m.measurement, "", "", "", "", f"{m.mb:.1f} MB", "-"] for m in memory]
    return render_table(header, body, [], results.notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=5000, help="ConfigMaps for the list")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="requests per class")
    parser.add_argument("--burst", type=int, default=40, help="3 MiB requests in the burst")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    catch_signals()
    results: Results[Any] = Results()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-hostile-bench-"))
    bench = Bench(args, tmp, results)
    interrupted = run_then_clean_up(bench.run, bench.stop, tmp, results, note_failure=True)
    print(render(results, bench.memory))
    if args.json:
        write_json(
            args.json,
            {
                "machine": machine_info(),
                "workload": vars(args),
                "rows": row_dicts(results.rows),
                "memory": [{"measurement": m.measurement, "mb": m.mb} for m in bench.memory],
                "notes": results.notes,
            },
        )
    return exit_status(interrupted, results)


if __name__ == "__main__":
    sys.exit(main())
