"""Custom resources: how long a new CRD takes to be served, and custom objects against
ConfigMaps (the same count, the same clients, the same run).

    python bench/crd_bench.py [--objects 1000] [--crds 5] [--clients 8] [--json FILE]

Prints one Markdown table on stdout (progress on stderr); see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.apiserver_bench import request, run_workers, session_for
from bench.common import (
    ApiServer,
    Results,
    Row,
    catch_signals,
    exit_status,
    log,
    report_rows,
    run_then_clean_up,
    runner,
)

NS = "bench"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
REF_CREATE = "one ConfigMap create (POST to 201), median of 20"
REF_CONFIGMAPS = "the same for ConfigMaps, same run"
SERVED_TARGET = 1.0  # seconds from CRD create to discovery + list working


@dataclass(frozen=True)
class Workload:
    objects: int
    crds: int
    clients: int


def crd_body(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "color": {"type": "string", "enum": ["red", "blue"]},
                                        "size": {"type": "integer", "default": 3},
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


async def served_after_create(session: aiohttp.ClientSession, group: str) -> float:
    """Seconds from POSTing a CRD until its group's discovery lists the resource and a list
    of it answers 200."""
    body = json.dumps(crd_body(group)).encode()
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    t0 = time.perf_counter()
    await request(
        session, "POST", path, 201, data=body, headers={"Content-Type": "application/json"}
    )
    while time.perf_counter() - t0 < 30:
        async with session.get(f"/apis/{group}/v1") as resp:
            found = resp.status == 200 and b'"widgets"' in await resp.read()
        if found:
            async with session.get(f"/apis/{group}/v1/namespaces/{NS}/widgets") as resp:
                await resp.read()
                if resp.status == 200:
                    return time.perf_counter() - t0
        await asyncio.sleep(0.001)
    raise RuntimeError(f"{group} not served after 30 s")


async def create_many(
    session: aiohttp.ClientSession, wl: Workload, path: str, make: Any
) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        await request(
            session, "POST", path, 201, data=make(i), headers={"Content-Type": "application/json"}
        )
        latencies.append(time.perf_counter() - t0)

    seconds = await run_workers(wl.objects, wl.clients, one, path.rsplit("/", 1)[-1])
    return seconds, latencies


async def list_seconds(
    session: aiohttp.ClientSession, path: str, accept: str, expected: int
) -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        body = await request(session, "GET", path, headers={"Accept": accept})
        times.append(time.perf_counter() - t0)
        items = json.loads(body).get("rows" if "Table" in accept else "items")
        if len(items) != expected:
            raise RuntimeError(f"{path}: {len(items)} items, expected {expected}")
    return statistics.median(times)


def widget(group: str) -> Any:
    def make(i: int) -> bytes:
        obj = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": f"w-{i}", "labels": {"app": "bench"}},
            "spec": {"color": "red" if i % 2 else "blue", "labels": {"a": "b", "c": "d"}},
        }
        return json.dumps(obj).encode()

    return make


def config_map(i: int) -> bytes:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"cm-{i}", "labels": {"app": "bench"}},
        "data": {"color": "red" if i % 2 else "blue", "a": "b", "c": "d"},
    }
    return json.dumps(obj).encode()


async def run(wl: Workload, server: ApiServer, res: Results[Row]) -> None:
    log("starting the API server")
    server.start()
    async with session_for(server, wl.clients) as session:
        ns = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await request(session, "POST", "/api/v1/namespaces", 201, data=ns.encode())
        # reference: single create round trips of a built-in kind
        singles = []
        for i in range(20):
            t0 = time.perf_counter()
            body = config_map(10**6 + i)
            await request(session, "POST", f"/api/v1/namespaces/{NS}/configmaps", 201, data=body)
            singles.append(time.perf_counter() - t0)
        one_create = statistics.median(singles)
        log(f"timing {wl.crds} CRDs from create to served")
        served = [await served_after_create(session, f"b{i}.example.com") for i in range(wl.crds)]
        res.add(
            Row(
                "CRD create -> discovery + list served (median)",
                statistics.median(served) * 1000,
                "ms",
                one_create * 1000,
                REF_CREATE,
                SERVED_TARGET * 1000,
            )
        )
        res.add(Row("CRD create -> discovery + list served (max)", max(served) * 1000, "ms"))
        group = "b0.example.com"
        log(f"creating {wl.objects} custom objects and {wl.objects} ConfigMaps")
        cr_path = f"/apis/{group}/v1/namespaces/{NS}/widgets"
        cm_path = f"/api/v1/namespaces/{NS}/configmaps"
        cm_seconds, cm_lat = await create_many(session, wl, cm_path, config_map)
        cr_seconds, cr_lat = await create_many(session, wl, cr_path, widget(group))
        res.add(
            Row(
                f"create {wl.objects} custom objects ({wl.clients} clients)",
                wl.objects / cr_seconds,
                "/s",
                wl.objects / cm_seconds,
                REF_CONFIGMAPS,
                higher_is_better=True,
            )
        )
        p99 = sorted(cr_lat)[int(len(cr_lat) * 0.99) - 1]
        cm_p99 = sorted(cm_lat)[int(len(cm_lat) * 0.99) - 1]
        res.add(Row("  create latency p99", p99 * 1000, "ms", cm_p99 * 1000, REF_CONFIGMAPS))
        cm_count = wl.objects + len(singles)
        for label, accept in (("JSON", "application/json"), ("Table", TABLE)):
            cr = await list_seconds(session, cr_path, accept, wl.objects)
            cm = await list_seconds(session, cm_path, accept, cm_count)
            res.add(
                Row(
                    f"list {wl.objects} custom objects as {label} (median of 5)",
                    cr * 1000,
                    "ms",
                    cm * 1000,
                    REF_CONFIGMAPS + f" ({cm_count} items)",
                )
            )
        obj = json.loads(await request(session, "GET", f"{cr_path}/w-1"))
        if obj["spec"].get("size") != 3:
            res.note(f"custom object not defaulted: {obj['spec']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--objects", type=int, default=1000, help="custom objects and ConfigMaps (1000)")
    p.add_argument("--crds", type=int, default=5, help="CRDs timed from create to served (5)")
    p.add_argument("--clients", type=int, default=8, help="concurrent writers (8)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    wl = Workload(args.objects, max(1, args.crds), args.clients)
    catch_signals()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-crd-bench-"))
    server = ApiServer(tmp / "data", poll=0.002)
    res: Results[Row] = Results()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    interrupted = run_then_clean_up(
        lambda: runner(run(wl, server, res)), server.stop, tmp, res, note_failure=True
    )
    report_rows("custom resources", res, wl, started, args.json, aiohttp=aiohttp.__version__)
    return exit_status(interrupted, res)


if __name__ == "__main__":
    sys.exit(main())
