"""What authorization costs a request: the same lists and creates of ConfigMaps sent to one
API server as the admin (system:masters: allowed before RBAC is asked) and as a
ServiceAccount bound to `edit` in the namespace (a RoleBinding, looked up in the RBAC
index), one request at a time, interleaved, so both see the same machine.

    python bench/authz_bench.py [--requests 400] [--objects 100] [--json FILE]

Needs no root. Prints one Markdown table on stdout (progress on stderr); see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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

NS = "bench-authz"
REF_ADMIN = "the same request as the admin (system:masters, no RBAC lookup)"


@dataclass(frozen=True)
class Workload:
    requests: int  # lists and creates, each, per identity
    objects: int  # ConfigMaps in the namespace a list returns


def _session(server: ApiServer, token: str) -> aiohttp.ClientSession:
    ctx = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    return aiohttp.ClientSession(
        base_url=server.url,
        connector=aiohttp.TCPConnector(ssl=ctx, limit=1),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


async def _call(
    s: aiohttp.ClientSession, method: str, path: str, want: int, body: object = None
) -> None:
    data = json.dumps(body) if body is not None else None
    async with s.request(method, path, data=data) as resp:
        text = await resp.read()
        if resp.status != want:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {text[:300]!r}")


async def _account_token(admin: aiohttp.ClientSession) -> str:
    await _call(admin, "POST", "/api/v1/namespaces", 201, {"metadata": {"name": NS}})
    sa = {"metadata": {"name": "worker"}}
    await _call(admin, "POST", f"/api/v1/namespaces/{NS}/serviceaccounts", 201, sa)
    binding = {
        "metadata": {"name": "worker-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": NS}],
    }
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings"
    await _call(admin, "POST", path, 201, binding)
    req = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    async with admin.post(
        f"/api/v1/namespaces/{NS}/serviceaccounts/worker/token", data=json.dumps(req)
    ) as resp:
        return str((await resp.json())["status"]["token"])


async def _wait_allowed(s: aiohttp.ClientSession) -> None:
    """The bootstrap policy (edit) is written just after the server starts serving."""
    deadline = time.monotonic() + 60
    while True:
        async with s.get(f"/api/v1/namespaces/{NS}/configmaps?limit=1") as resp:
            await resp.read()
            if resp.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the ServiceAccount was never allowed to list")
        await asyncio.sleep(0.1)


async def run(wl: Workload, server: ApiServer, res: Results[Row]) -> None:
    server.start()
    admin_token = (server.data_dir / "pki" / "token").read_text().strip()
    async with _session(server, admin_token) as admin:
        sa_token = await _account_token(admin)
        async with _session(server, sa_token) as sa:
            await _wait_allowed(sa)
            for i in range(wl.objects):
                body = {"metadata": {"name": f"seed-{i}"}, "data": {"k": "v" * 64}}
                await _call(admin, "POST", f"/api/v1/namespaces/{NS}/configmaps", 201, body)
            times: dict[tuple[str, str], list[float]] = {}
            for i in range(wl.requests):
                for who, s in (("admin", admin), ("sa", sa)):
                    t0 = time.perf_counter()
                    await _call(s, "GET", f"/api/v1/namespaces/{NS}/configmaps", 200)
                    times.setdefault((who, "list"), []).append(time.perf_counter() - t0)
                    body = {"metadata": {"name": f"{who}-{i}"}, "data": {"k": "v"}}
                    t0 = time.perf_counter()
                    await _call(s, "POST", f"/api/v1/namespaces/{NS}/configmaps", 201, body)
                    times.setdefault((who, "create"), []).append(time.perf_counter() - t0)
                if not (i + 1) % 100:
                    log(f"{i + 1}/{wl.requests} rounds")
    for verb in ("list", "create"):
        admin_ms = statistics.median(times[("admin", verb)]) * 1000
        sa_ms = statistics.median(times[("sa", verb)]) * 1000
        what = f"{verb} ({wl.objects} ConfigMaps)" if verb == "list" else verb
        res.add(Row(f"{what} as a ServiceAccount (RBAC), p50", sa_ms, "ms", admin_ms, REF_ADMIN))
        res.add(Row("  RBAC's share: p50 difference to the admin's", sa_ms - admin_ms, "ms"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--objects", type=int, default=100)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wl = Workload(args.requests, args.objects)
    catch_signals()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-bench-"))
    server = ApiServer(tmp / "data")
    res: Results[Row] = Results()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    interrupted = run_then_clean_up(lambda: runner(run(wl, server, res)), server.stop, tmp, res)
    report_rows("authorization", res, wl, started, args.json, aiohttp=aiohttp.__version__)
    return exit_status(interrupted, res)


if __name__ == "__main__":
    sys.exit(main())
