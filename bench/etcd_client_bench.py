"""Which etcd v3 client the etcd store should use, by measurement.

    python bench/etcd_client_bench.py [--puts 2000] [--concurrency 64]

Starts one etcd member (Debian's etcd-server: `apt-get install etcd-server`) on loopback
ports in a temporary data directory, then measures the same work through each candidate
client in the same run: etcd's JSON gateway (`/v3/kv/...`, what etcd serves next to gRPC)
over one aiohttp session, and aetcd (asyncio over grpcio). Puts one at a time, puts with
--concurrency in flight, and a prefix read of the --puts keys. The etcd member and its
directory are removed on exit, including on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Member:
    """One etcd member on loopback, in a directory of its own."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kubesvc-etcd-bench-"))
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.proc = subprocess.Popen(
            [
                "etcd", "--name", "bench", "--data-dir", str(self.dir / "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"bench={peer}", "--log-level", "error",
            ],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "etcd.log", "wb"),  # noqa: SIM115
        )  # fmt: skip

    async def wait(self) -> None:
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(f"{self.url}/health") as r:
                        if r.status == 200 and json.loads(await r.text()).get("health") == "true":
                            return
                await asyncio.sleep(0.1)
        log = (self.dir / "etcd.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"etcd did not start:\n{log}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


VALUE = json.dumps({"kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [80]}})


async def run_puts(
    put: Callable[[str], Awaitable[None]], n: int, concurrency: int, tag: str
) -> float:
    """puts/s for n puts with `concurrency` in flight."""
    keys = iter(range(n))

    async def worker() -> None:
        for i in keys:
            await put(f"/registry/bench/{tag}/{i:06d}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


async def gateway(url: str, n: int, concurrency: int) -> dict[str, float]:
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=url, connector=conn) as s:

        async def put(key: str) -> None:
            async with s.post("/v3/kv/put", json={"key": b64(key), "value": b64(VALUE)}) as r:
                r.raise_for_status()
                await r.read()

        seq = await run_puts(put, n // 4, 1, "gw-seq")
        par = await run_puts(put, n, concurrency, "gw-par")
        t0 = time.perf_counter()
        prefix = "/registry/bench/gw-par/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        async with s.post("/v3/kv/range", json={"key": b64(prefix), "range_end": b64(end)}) as r:
            got = await r.json()
        read = (time.perf_counter() - t0) * 1000
        assert len(got.get("kvs", [])) == n
    return {"seq": seq, "par": par, "read_ms": read}


async def grpc_client(url: str, n: int, concurrency: int) -> dict[str, float]:
    import aetcd

    port = int(url.rsplit(":", 1)[1])
    async with aetcd.Client(host="127.0.0.1", port=port) as c:

        async def put(key: str) -> None:
            await c.put(key.encode(), VALUE.encode())

        seq = await run_puts(put, n // 4, 1, "grpc-seq")
        par = await run_puts(put, n, concurrency, "grpc-par")
        t0 = time.perf_counter()
        got = await c.get_prefix(b"/registry/bench/grpc-par/")
        read = (time.perf_counter() - t0) * 1000
        assert len(list(got)) == n
    return {"seq": seq, "par": par, "read_ms": read}


async def main_async(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    member = Member()
    try:
        await member.wait()
        rows = []
        for name, fn in (("JSON gateway over aiohttp", gateway), ("aetcd (grpcio)", grpc_client)):
            runs = [await fn(member.url, args.puts, args.concurrency) for _ in range(args.runs)]
            rows.append((name, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
        return rows
    finally:
        member.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--puts", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--runs", type=int, default=3, help="median of this many runs")
    args = p.parse_args()
    if shutil.which("etcd") is None:
        print("needs etcd: apt-get install etcd-server", file=sys.stderr)
        return 1
    rows = asyncio.run(main_async(args))
    version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split()
    print(
        f"etcd client benchmark, {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} CPUs, "
        f"etcd {version[2] if len(version) > 2 else '?'}; median of {args.runs}"
    )
    print(f"| client | puts/s, one at a time | puts/s, {args.concurrency} in flight | "
          f"prefix read of {args.puts:,} keys |")  # fmt: skip
    print("|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['seq']:,.0f} | {r['par']:,.0f} | {r['read_ms']:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
