"""The ingress data plane without a cluster: the real HAProxy, driven by the applier from
routing tables, in front of HTTP servers on loopback. Routing by host and path
(precedence, element-wise prefixes, wildcards), the default backend and 404, 503 with no
endpoints, the headers upstream controllers set, and endpoint changes through the runtime
API with no reload."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.ingress.applier import HAProxy
from kubesvc.ingress.haproxy import Paths, Ports
from kubesvc.ingress.model import RoutingTable, routing_table
from tests.unit.test_ingress_model import OURS, backend, endpoint_slice, ingress, rule, service


class Echo(BaseHTTPRequestHandler):
    """Answers with its server's name, the path and the request headers, as JSON."""

    def do_GET(self) -> None:
        body = json.dumps(
            {"name": self.server.name, "path": self.path, "headers": dict(self.headers)}  # type: ignore[attr-defined]
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def echoes() -> Iterator[dict[str, int]]:
    """Seven named HTTP servers on loopback: name -> port."""
    servers = []
    for name in ("web1", "web2", "web3", "api1", "wild1", "dflt1", "fresh1"):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        srv.name = name  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    try:
        yield {s.name: s.server_address[1] for s in servers}  # type: ignore[attr-defined]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[HAProxy, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    hap = HAProxy(Paths(str(tmp_path / "haproxy")), Ports(http=free_port(), health=free_port()))
    try:
        yield hap, loop
    finally:
        loop.run_until_complete(hap.stop())
        loop.close()


def get(hap: HAProxy, host: str, path: str, port: int | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port or hap.ports.http, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, body.decode()
    finally:
        conn.close()


def served_by(hap: HAProxy, host: str, path: str) -> str:
    status, body = get(hap, host, path)
    return body["name"] if status == 200 else str(status)


def test_routing_headers_and_live_endpoints(
    echoes: dict[str, int], proxy: tuple[HAProxy, asyncio.AbstractEventLoop]
) -> None:
    hap, loop = proxy
    assert loop.run_until_complete(hap.apply(table_of(echoes))) == "start"

    assert served_by(hap, "foo.test", "/") == "web1"
    assert served_by(hap, "foo.test", "/apix") == "web1"  # element-wise: not /api
    assert served_by(hap, "foo.test", "/api") == "api1"
    assert served_by(hap, "foo.test", "/api/") == "api1"
    assert served_by(hap, "FOO.test:8080", "/api/v2") == "api1"
    assert served_by(hap, "foo.test", "/api/v1") == "wild1"  # Exact beats Prefix /api
    assert served_by(hap, "foo.test", "/api/v1/x") == "api1"
    assert served_by(hap, "a.wild.test", "/x") == "wild1"
    assert served_by(hap, "A.Wild.test:8080", "/x") == "wild1"
    assert served_by(hap, "a.b.wild.test", "/x") == "dflt1"  # one label only
    assert served_by(hap, "wild.test", "/x") == "dflt1"
    assert served_by(hap, "bar.test", "/none/x") == "api1"  # host-less rule
    assert served_by(hap, "foo.test", "/none") == "web1"  # the host's own / comes first
    assert served_by(hap, "foo.test", "/other") == "web1"  # another class is ignored
    assert served_by(hap, "empty.test", "/") == "503"  # a Service with no endpoints

    _, body = get(hap, "foo.test", "/api")
    headers = {k.lower(): v for k, v in body["headers"].items()}
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "foo.test"
    assert len(headers["x-request-id"]) == 36

    assert get(hap, "", "/healthz", hap.ports.health)[0] == 200

    # endpoints scaled 1 -> 3 -> 0 -> 3: the runtime API, no reload
    for web, want in (
        (("web1", "web2", "web3"), {"web1", "web2", "web3"}),
        ((), {"503"}),
        (("web3", "web2", "web1"), {"web1", "web2", "web3"}),
    ):
        assert loop.run_until_complete(hap.apply(table_of(echoes, web))) == "runtime"
        assert {served_by(hap, "foo.test", "/") for _ in range(12)} == want
    assert hap.reloads == 0

    # a new Ingress whose backends exist: the maps are swapped through the runtime API
    late = ingress("late", rule("late.test", ("/", "Prefix", "api"), ("/a;b", "Exact", "wild")))
    assert loop.run_until_complete(hap.apply(table_of(echoes, ("web1",), late))) == "runtime"
    assert served_by(hap, "late.test", "/x") == "api1"
    assert served_by(hap, "late.test", "/a;b") == "wild1"
    assert served_by(hap, "foo.test", "/api/v1") == "wild1"  # the old routes, in order
    assert served_by(hap, "foo.test", "/api/v1/x") == "api1"
    assert loop.run_until_complete(hap.apply(table_of(echoes))) == "runtime"
    assert served_by(hap, "late.test", "/x") == "dflt1"
    assert hap.reloads == 0

    # a rule to a Service no route used before takes a free pool backend: no reload either,
    # and removing it frees the backend again
    fresh = ingress("fresh", rule("fresh.test", ("/", "Prefix", "fresh")))
    assert loop.run_until_complete(hap.apply(table_of(echoes, ("web1",), fresh))) == "runtime"
    assert served_by(hap, "fresh.test", "/x") == "fresh1"
    assert served_by(hap, "foo.test", "/api") == "api1"
    assert loop.run_until_complete(hap.apply(table_of(echoes))) == "runtime"
    assert served_by(hap, "fresh.test", "/x") == "dflt1"
    # so is a changed default backend
    d = ingress("d0", default=backend("fresh"), created="2026-01-01T00:00:00Z")
    assert loop.run_until_complete(hap.apply(table_of(echoes, ("web1",), d))) == "runtime"
    assert served_by(hap, "nothing.test", "/") == "fresh1"
    assert loop.run_until_complete(hap.apply(table_of(echoes))) == "runtime"
    assert served_by(hap, "nothing.test", "/") == "dflt1"
    assert hap.reloads == 0

    # five endpoints do not fit four slots: servers are added at run time
    more = ("web1", "web2", "web3", "api1", "wild1")
    assert loop.run_until_complete(hap.apply(table_of(echoes, more))) == "runtime"
    assert {served_by(hap, "foo.test", "/") for _ in range(20)} == set(more)
    assert hap.reloads == 0
    # a reload loads the same servers from the files
    loop.run_until_complete(hap.reload())
    assert hap.reloads == 1
    assert {served_by(hap, "foo.test", "/") for _ in range(20)} == set(more)
    assert loop.run_until_complete(hap.apply(table_of(echoes, ("web2",)))) == "runtime"
    assert {served_by(hap, "foo.test", "/") for _ in range(8)} == {"web2"}


def test_without_default_backend_unmatched_is_404(
    echoes: dict[str, int], proxy: tuple[HAProxy, asyncio.AbstractEventLoop]
) -> None:
    hap, loop = proxy
    table = routing_table(
        [
            ingress(
                "a", rule("foo.test", ("/x", "Exact", "web")), rule(None, ("/n", "Exact", "web"))
            )
        ],
        [service("web", ("", 80))],
        [endpoint_slice("web", "", echoes["web1"], "127.0.0.1")],
        [OURS],
    )
    loop.run_until_complete(hap.apply(table))
    assert served_by(hap, "foo.test", "/x") == "web1"
    status, body = get(hap, "foo.test", "/x/")
    assert (status, body) == (404, "default backend - 404")
    assert get(hap, "foo.test", "/y")[0] == 404
    assert served_by(hap, "foo.test", "/n") == "web1"  # the host's paths fall through
    assert served_by(hap, "", "/n") == "web1"


def table_of(
    echoes: dict[str, int], web: tuple[str, ...] = ("web1",), *extra: dict[str, Any]
) -> RoutingTable:
    ings = [
        ingress(
            "a",
            rule(
                "foo.test",
                ("/", "Prefix", "web"),
                ("/api", "Prefix", "api"),
                ("/api/v1", "Exact", "wild"),
            ),
            rule("*.wild.test", ("/", "Prefix", "wild")),
            rule(None, ("/none", "Prefix", "api")),
        ),
        ingress("other", rule("foo.test", ("/other", "Prefix", "api")), cls="nginx"),
        ingress("empty", rule("empty.test", ("/", "Prefix", "nobody"))),
        ingress("d", default=backend("dflt"), created="2026-05-01T00:00:00Z"),
        *extra,
    ]
    names = ("web", "api", "wild", "nobody", "dflt", "fresh")
    services = [service(n, ("", 80)) for n in names]
    one_each = ("api", "wild", "dflt", "fresh")
    slices = [endpoint_slice(n, "", echoes[n + "1"], "127.0.0.1") for n in one_each]
    # loopback endpoints differ by port (pods differ by IP): one slice per port
    slices += [endpoint_slice("web", "", echoes[w], "127.0.0.1") for w in web]
    return routing_table(ings, services, slices, [OURS])


# any host and path the model accepts renders into a configuration (and map files) that
# HAProxy loads
_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
_hosts = st.one_of(
    st.just(""),
    st.lists(_label, min_size=1, max_size=3).map(".".join),
    st.lists(_label, min_size=1, max_size=2).map(lambda ls: "*." + ".".join(ls)),
)
_paths = st.from_regex(r"/[-A-Za-z0-9._~!$&'()*+,;=:@%/]{0,20}", fullmatch=True)


@settings(max_examples=25, deadline=None, database=None)
@given(st.lists(st.tuples(_hosts, _paths, st.sampled_from(["Exact", "Prefix"])), max_size=8))
def test_any_accepted_route_renders_a_configuration_haproxy_loads(
    tmp_path_factory: pytest.TempPathFactory, routes: list[tuple[str, str, str]]
) -> None:
    rules = [rule(h or None, (p, t, f"svc{i}")) for i, (h, p, t) in enumerate(routes)]
    table = routing_table([ingress("a", *rules)], [], [], [OURS])
    assert table.rejected == ()
    d = tmp_path_factory.mktemp("render")
    hap = HAProxy(Paths(str(d)), Ports(http=free_port(), health=free_port()))
    rendered = hap.plan(table)
    hap._write(rendered)
    res = subprocess.run(["haproxy", "-c", "-f", hap.paths.config], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
