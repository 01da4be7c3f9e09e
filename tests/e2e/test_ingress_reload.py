"""A reload cuts nothing: requests in flight when HAProxy reloads (a slow answer, a response
being streamed) finish on the old worker with their whole body, while the new worker
serves the new configuration. The real HAProxy, driven by the applier, in front of HTTP
servers on loopback."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubesvc.ingress.applier import HAProxy
from kubesvc.ingress.haproxy import Paths, Ports
from kubesvc.ingress.model import RoutingTable, routing_table
from tests.e2e.test_ingress_haproxy import free_port
from tests.unit.test_ingress_model import OURS, endpoint_slice, ingress, rule, service

CHUNKS = 6
GAP = 0.25  # seconds between streamed chunks


class Slow(BaseHTTPRequestHandler):
    """`/slow`: answers after 1.5 s; `/stream`: CHUNKS chunks GAP apart; else at once."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(CHUNKS):
                data = f"chunk {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(GAP)
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/slow":
            time.sleep(1.5)
        body = f"{self.server.server_address[1]} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[list[int]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Slow) for _ in range(5)]
    for srv in servers:
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield [s.server_address[1] for s in servers]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def table(ports: list[int]) -> RoutingTable:
    # loopback endpoints differ by port: one slice per port
    return routing_table(
        [ingress("a", rule("slow.test", ("/", "Prefix", "web")))],
        [service("web", ("", 80))],
        [endpoint_slice("web", "", p, "127.0.0.1") for p in ports],
        [OURS],
    )


def request(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": "slow.test"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_requests_in_flight_finish_across_a_reload(tmp_path: Path, backends: list[int]) -> None:
    loop = asyncio.new_event_loop()
    hap = HAProxy(Paths(str(tmp_path / "haproxy")), Ports(http=free_port(), health=free_port()))
    results: dict[str, tuple[int, bytes]] = {}
    try:
        assert loop.run_until_complete(hap.apply(table(backends[:1]))) == "start"
        assert request(hap.ports.http, "/")[0] == 200

        def run(path: str) -> None:
            try:
                results[path] = request(hap.ports.http, path)
            except OSError as e:
                results[path] = (0, repr(e).encode())

        threads = [threading.Thread(target=run, args=(p,)) for p in ("/slow", "/stream")]
        for t in threads:
            t.start()
        time.sleep(0.4)  # both are in flight on the first worker
        old_worker = loop.run_until_complete(hap._worker_pid())
        assert loop.run_until_complete(hap.apply(table(backends))) == "runtime"
        loop.run_until_complete(hap.reload())
        assert loop.run_until_complete(hap._worker_pid()) != old_worker
        assert {request(hap.ports.http, "/")[1].split()[0] for _ in range(20)} == {
            str(p).encode() for p in backends
        }, "the new worker serves the new endpoints"
        for t in threads:
            t.join(15)
        assert results["/slow"] == (200, f"{backends[0]} /slow".encode())
        want = "".join(f"chunk {i}\n" for i in range(CHUNKS)).encode()
        assert results["/stream"] == (200, want)
        assert hap.reloads == 1
    finally:
        loop.run_until_complete(hap.stop())
        loop.close()
