"""Probe runners against servers on 127.0.0.1, exec probes, and the ProbeTracker."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubesvc.apiserver.certs import ensure_credentials
from kubesvc.node.probes import (
    FAILURE,
    SUCCESS,
    UNKNOWN,
    ProbeTracker,
    probe_url,
    resolve_port,
    run_probe,
)

Obj = dict[str, Any]


# --- a tiny HTTP server -----------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    path: str
    headers: list[tuple[str, str]]


class HttpServer:
    """HTTP/1.1 on 127.0.0.1 answering per path; records every request it gets."""

    def __init__(self, routes: dict[str, Reply], tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.tls = tls
        self.seen: list[Seen] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> HttpServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = [tuple(x.split(": ", 1)) for x in lines[1:] if ": " in x]
            self.seen.append(Seen(path, [(h[0], h[1]) for h in headers]))
            reply = self.routes.get(path.split("?")[0], Reply(404, b"not found"))
            if reply.delay:
                await asyncio.sleep(reply.delay)
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
            writer.write(
                f"HTTP/1.1 {reply.status} X\r\nContent-Length: {len(reply.body)}\r\n{extra}"
                "Connection: close\r\n\r\n".encode()
                + reply.body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 30))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def http(
    port: int | str, path: str = "/", ports: list[Obj] | None = None, **extra: Any
) -> tuple[str, str]:
    probe = {
        "httpGet": {"path": path, "port": port, **extra},
        "timeoutSeconds": extra.pop("timeout", 1),
    }
    return await run_probe(
        probe, pod_ip="127.0.0.1", exec_prefix=[], env={}, container_ports=ports or []
    )


ROUTES = {
    "/ok": Reply(200, b"healthy"),
    "/created": Reply(201, b""),
    "/nf": Reply(404),
    "/err": Reply(500, b"boom"),
    "/399": Reply(399, b"odd"),
    "/bare-redirect": Reply(302, b"moved"),
    "/same": Reply(302, b"", {"Location": "/ok"}),
    "/same-abs": Reply(301, b"", {"Location": "http://127.0.0.1:{port}/ok"}),
    "/away": Reply(302, b"elsewhere", {"Location": "http://localhost:{port}/ok"}),
    "/loop": Reply(302, b"", {"Location": "/loop"}),
    "/big": Reply(200, b"x" * 20000),
    "/slow": Reply(200, b"late", delay=3),
}


def routes_for(port: int) -> dict[str, Reply]:
    return {
        k: Reply(
            v.status,
            v.body,
            {h: x.replace("{port}", str(port)) for h, x in v.headers.items()},
            v.delay,
        )
        for k, v in ROUTES.items()
    }


@pytest.mark.parametrize(
    ("path", "want_result", "want_output", "want_requests"),
    [
        pytest.param("/ok", SUCCESS, "healthy", ["/ok"], id="200"),
        pytest.param("/created", SUCCESS, "", ["/created"], id="201"),
        pytest.param("/nf", FAILURE, "HTTP probe failed with statuscode: 404", ["/nf"], id="404"),
        pytest.param("/err", FAILURE, "HTTP probe failed with statuscode: 500", ["/err"], id="500"),
        pytest.param(
            "/399", SUCCESS, "Probe terminated redirects, Response body: odd", ["/399"], id="399"
        ),
        pytest.param(
            "/bare-redirect",
            SUCCESS,
            "Probe terminated redirects, Response body: moved",
            ["/bare-redirect"],
            id="3xx-without-location",
        ),
        pytest.param("/same", SUCCESS, "healthy", ["/same", "/ok"], id="redirect-same-host"),
        pytest.param(
            "/same-abs", SUCCESS, "healthy", ["/same-abs", "/ok"], id="redirect-absolute-same-host"
        ),
        pytest.param(
            "/away",
            SUCCESS,
            "Probe terminated redirects, Response body: elsewhere",
            ["/away"],
            id="redirect-other-host-not-followed",
        ),
        pytest.param(
            "/loop", FAILURE, "stopped after 10 redirects", ["/loop"] * 10, id="redirect-loop"
        ),
        pytest.param("/ok?x=1", SUCCESS, "healthy", ["/ok?x=1"], id="query"),
    ],
)
def test_http_probe(
    path: str, want_result: str, want_output: str, want_requests: list[str]
) -> None:
    async def body() -> None:
        async with HttpServer({}) as srv:
            srv.routes = routes_for(srv.port)
            result, output = await http(srv.port, path)
            assert result == want_result
            assert output.endswith(want_output) if want_result == FAILURE else output == want_output
            assert [s.path for s in srv.seen] == want_requests

    run(body)


def test_http_probe_headers() -> None:
    async def body() -> None:
        async with HttpServer({"/ok": Reply()}) as srv:
            await http(srv.port, "/ok")
            await http(
                srv.port,
                "/ok",
                httpHeaders=[
                    {"name": "X-Custom", "value": "v"},
                    {"name": "X-Custom", "value": "w"},
                    {"name": "Host", "value": "example.test"},
                    {"name": "User-Agent", "value": "mine"},
                    {"name": "Accept", "value": ""},
                ],
            )
        default, custom = ({k.lower(): v for k, v in s.headers} for s in srv.seen)
        assert default["user-agent"] == "kube-probe/1.32"
        assert default["accept"] == "*/*"
        assert default["host"] == f"127.0.0.1:{srv.port}"
        assert "accept-encoding" not in default
        assert custom["host"] == "example.test"
        assert custom["user-agent"] == "mine"
        assert "accept" not in custom
        assert [v for k, v in srv.seen[1].headers if k.lower() == "x-custom"] == ["v", "w"]

    run(body)


def test_http_probe_named_and_string_ports() -> None:
    async def body() -> None:
        async with HttpServer({"/ok": Reply()}) as srv:
            ports = [{"name": "web", "containerPort": srv.port}]
            assert (await http("web", "/ok", ports))[0] == SUCCESS
            assert (await http(str(srv.port), "/ok"))[0] == SUCCESS
            assert await http("nope", "/ok", ports) == (
                UNKNOWN,
                'strconv.Atoi: parsing "nope": invalid syntax',
            )

    run(body)


def test_http_probe_body_limit() -> None:
    async def body() -> None:
        async with HttpServer({"/big": Reply(200, b"x" * 20000)}) as srv:
            result, output = await http(srv.port, "/big")
            assert result == SUCCESS
            assert len(output) == 10 * 1024

    run(body)


def test_http_probe_timeout() -> None:
    async def body() -> None:
        async with HttpServer({"/slow": Reply(200, b"late", delay=3)}) as srv:
            start = time.monotonic()
            result, output = await http(srv.port, "/slow", timeout=1)
            assert time.monotonic() - start < 2.5
            assert result == FAILURE
            assert output == (
                f'Get "http://127.0.0.1:{srv.port}/slow": context deadline exceeded '
                "(Client.Timeout exceeded while awaiting headers)"
            )

    run(body)


def test_http_probe_connection_refused() -> None:
    async def body() -> None:
        port = closed_port()
        result, output = await http(port, "/x")
        assert result == FAILURE
        url = f"http://127.0.0.1:{port}/x"
        assert output == f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused'

    run(body)


def test_https_probe_skips_verification(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path, [])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(creds.server_cert, creds.server_key)

    async def body() -> None:
        async with HttpServer({"/ok": Reply(200, b"secure")}, tls=tls) as srv:
            assert await http(srv.port, "/ok", scheme="HTTPS") == (SUCCESS, "secure")

    run(body)


@pytest.mark.parametrize(
    ("http_get", "want"),
    [
        pytest.param(
            {"port": 80, "path": "/healthz"}, "http://10.0.0.1:80/healthz", id="default-host"
        ),
        pytest.param({"port": 80}, "http://10.0.0.1:80", id="no-path"),
        pytest.param(
            {"port": 80, "path": "healthz"}, "http://10.0.0.1:80/healthz", id="relative-path"
        ),
        pytest.param(
            {"port": 443, "scheme": "HTTPS", "path": "/"}, "https://10.0.0.1:443/", id="https"
        ),
        pytest.param(
            {"port": 8080, "host": "fd00::1", "path": "/"}, "http://[fd00::1]:8080/", id="ipv6-host"
        ),
        pytest.param({"port": "metrics", "path": "/m"}, "http://10.0.0.1:9100/m", id="named-port"),
    ],
)
def test_probe_url(http_get: Obj, want: str) -> None:
    assert probe_url(http_get, "10.0.0.1", [{"name": "metrics", "containerPort": 9100}]) == want


@pytest.mark.parametrize(
    ("port", "want"),
    [
        pytest.param(0, "invalid port number: 0", id="zero"),
        pytest.param(70000, "invalid port number: 70000", id="too-big"),
        pytest.param("x", 'strconv.Atoi: parsing "x": invalid syntax', id="unknown-name"),
        pytest.param(None, "intOrString had no kind: None", id="missing"),
    ],
)
def test_resolve_port_errors(port: Any, want: str) -> None:
    with pytest.raises(Exception, match=want.replace("(", r"\(")):
        resolve_port(port, [])


# --- tcp --------------------------------------------------------------------------------


def test_tcp_probe() -> None:
    async def body() -> None:
        async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            probe = {"tcpSocket": {"port": "db"}, "timeoutSeconds": 1}
            ports = [{"name": "db", "containerPort": port}]
            got = await run_probe(
                probe, pod_ip="127.0.0.1", exec_prefix=[], env={}, container_ports=ports
            )
            assert got == (SUCCESS, "")
        finally:
            server.close()
            await server.wait_closed()
        dead = closed_port()
        probe = {"tcpSocket": {"port": dead, "host": "127.0.0.1"}, "timeoutSeconds": 1}
        got = await run_probe(
            probe, pod_ip="10.255.255.1", exec_prefix=[], env={}, container_ports=[]
        )
        assert got == (FAILURE, f"dial tcp 127.0.0.1:{dead}: connect: connection refused")

    run(body)


# --- exec -------------------------------------------------------------------------------


async def exec_probe(
    command: list[str], env: dict[str, str] | None = None, timeout: int = 1
) -> tuple[str, str]:
    probe = {"exec": {"command": command}, "timeoutSeconds": timeout}
    return await run_probe(probe, pod_ip="", exec_prefix=[], env=env or {}, container_ports=[])


@pytest.mark.parametrize(
    ("command", "env", "want"),
    [
        pytest.param(["sh", "-c", "echo hi"], {}, (SUCCESS, "hi\n"), id="exit-0"),
        pytest.param(
            ["sh", "-c", "echo bad >&2; exit 3"], {}, (FAILURE, "bad\n"), id="exit-nonzero-stderr"
        ),
        pytest.param(["sh", "-c", 'echo "$FOO"'], {"FOO": "bar"}, (SUCCESS, "bar\n"), id="env"),
        pytest.param(
            ["sh", "-c", "env | grep -c ^HOME="], {}, (FAILURE, "0\n"), id="only-given-env"
        ),
        pytest.param([], {}, (UNKNOWN, "exec probe has no command"), id="no-command"),
    ],
)
def test_exec_probe(command: list[str], env: dict[str, str], want: tuple[str, str]) -> None:
    async def body() -> None:
        assert await exec_probe(command, env) == want

    run(body)


def test_exec_probe_timeout_kills() -> None:
    async def body() -> None:
        start = time.monotonic()
        got = await exec_probe(["sh", "-c", "sleep 30 & sleep 30"], timeout=1)
        assert time.monotonic() - start < 5
        assert got == (FAILURE, 'command "sh -c sleep 30 & sleep 30" timed out')

    run(body)


def test_exec_probe_output_limit_and_missing_binary() -> None:
    async def body() -> None:
        result, output = await exec_probe(["sh", "-c", "head -c 50000 /dev/zero | tr '\\0' x"])
        assert (result, len(output)) == (SUCCESS, 10 * 1024)
        result, output = await exec_probe(["/nonexistent/probe-binary"])
        assert result == UNKNOWN
        assert "No such file" in output

    run(body)


def test_exec_prefix_is_prepended() -> None:
    async def body() -> None:
        probe = {"exec": {"command": ["$0 is prefix"]}, "timeoutSeconds": 1}
        got = await run_probe(
            probe, pod_ip="", exec_prefix=["sh", "-c", "echo"], env={}, container_ports=[]
        )
        assert got == (SUCCESS, "\n")
        probe = {"exec": {"command": ["echo", "x"]}, "timeoutSeconds": 1}
        got = await run_probe(
            probe, pod_ip="", exec_prefix=["env", "--"], env={}, container_ports=[]
        )
        assert got == (SUCCESS, "x\n")

    run(body)


@pytest.mark.parametrize(
    ("probe", "want"),
    [
        pytest.param({"grpc": {"port": 9000}}, UNKNOWN, id="grpc"),
        pytest.param({}, UNKNOWN, id="no-handler"),
    ],
)
def test_unsupported_probes(probe: Obj, want: str) -> None:
    async def body() -> None:
        got = await run_probe(probe, pod_ip="127.0.0.1", exec_prefix=[], env={}, container_ports=[])
        assert got[0] == want

    run(body)


# --- ProbeTracker -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracker(kind: str, clock: Clock, **spec: Any) -> ProbeTracker:
    return ProbeTracker(kind, {"periodSeconds": 10, **spec}, started_at=clock.now, clock=clock)  # type: ignore[arg-type]


S, F, U = SUCCESS, FAILURE, UNKNOWN


@pytest.mark.parametrize(
    ("kind", "spec", "outcomes", "want"),
    [
        pytest.param("readiness", {}, [], [], id="readiness-initial"),
        pytest.param("readiness", {}, [S], [S], id="readiness-one-success"),
        pytest.param(
            "readiness", {"successThreshold": 2}, [S, S, F, S], [F, S, S, S], id="success-threshold"
        ),
        pytest.param("readiness", {}, [S, F, F, F], [S, S, S, F], id="failure-threshold-default-3"),
        pytest.param(
            "readiness",
            {"failureThreshold": 2},
            [S, F, S, F, F],
            [S, S, S, S, F],
            id="failures-must-be-consecutive",
        ),
        pytest.param("readiness", {}, [S, U, U, U, U], [S, S, S, S, S], id="unknown-ignored"),
        pytest.param("readiness", {}, [S, F, F, F, S], [S, S, S, F, S], id="readiness-recovers"),
        pytest.param("liveness", {}, [F, F], [S, S], id="liveness-below-threshold"),
        pytest.param("liveness", {"failureThreshold": 1}, [F, S], [F, F], id="liveness-fail-holds"),
        pytest.param("startup", {}, [], [], id="startup-initial"),
        pytest.param("startup", {}, [F, S], [U, S], id="startup-success"),
    ],
)
def test_tracker_thresholds(kind: str, spec: Obj, outcomes: list[str], want: list[str]) -> None:
    t = tracker(kind, Clock(), **spec)
    initial = {"readiness": F, "liveness": S, "startup": U}[kind]
    assert t.result == initial
    assert [t.record(o) for o in outcomes] == want


def test_tracker_liveness_hold_and_restart() -> None:
    clock = Clock()
    t = tracker("liveness", clock, failureThreshold=2)
    for _ in range(2):
        assert t.should_probe()
        t.record(F)
        clock.now += 10
    assert t.result == F and t.needs_restart
    assert not t.should_probe()  # on hold until the container is replaced
    t.restarted(clock.now)
    assert (t.result, t.needs_restart) == (S, False)
    assert not t.should_probe()  # that tick was already consumed
    clock.now += 10
    assert t.should_probe()
    assert t.record(F) == S  # the run of failures starts again


def test_tracker_ticks_and_initial_delay() -> None:
    clock = Clock()
    t = tracker("readiness", clock, initialDelaySeconds=15)
    schedule = []
    for _ in range(40):
        schedule.append(t.should_probe())
        clock.now += 1
    probed_at = [i for i, p in enumerate(schedule) if p]
    assert probed_at == [20, 30]  # ticks at 0,10,20,30; the first two fall in the delay


def test_tracker_period_skips_missed_ticks() -> None:
    clock = Clock()
    t = tracker("readiness", clock)
    assert t.should_probe()
    assert not t.should_probe()
    clock.now += 35  # a slow probe: ticks at 10, 20, 30 were missed
    assert t.should_probe()
    assert t.next_tick() == 1040
    clock.now += 4.9
    assert not t.should_probe()
    clock.now += 0.1
    assert t.should_probe()


@pytest.mark.parametrize(
    ("kind", "started", "want"),
    [
        pytest.param("readiness", False, False, id="readiness-waits-for-startup"),
        pytest.param("liveness", False, False, id="liveness-waits-for-startup"),
        pytest.param("startup", False, True, id="startup-runs-before-start"),
        pytest.param("startup", True, False, id="startup-stops-after-start"),
        pytest.param("readiness", True, True, id="readiness-after-start"),
    ],
)
def test_tracker_startup_gating(kind: str, started: bool, want: bool) -> None:
    t = tracker(kind, Clock())
    assert t.should_probe(container_started=started) is want


def test_tracker_defaults_and_stop() -> None:
    clock = Clock()
    t = ProbeTracker("readiness", {}, started_at=clock.now, clock=clock)
    assert (t.period, t.success_threshold, t.failure_threshold, t.initial_delay) == (10, 1, 3, 0)
    t.record(S)
    t.stopped()
    assert t.result == F


def test_custom_host_header_kept_only_for_relative_redirects() -> None:
    async def body() -> None:
        async with HttpServer({}) as srv:
            srv.routes = routes_for(srv.port)
            host = [{"name": "Host", "value": "example.test"}]
            assert (await http(srv.port, "/same", httpHeaders=host))[0] == SUCCESS
            assert (await http(srv.port, "/same-abs", httpHeaders=host))[0] == SUCCESS
        hosts = [dict((k.lower(), v) for k, v in s.headers)["host"] for s in srv.seen]
        assert hosts == ["example.test", "example.test", "example.test", f"127.0.0.1:{srv.port}"]

    run(body)
