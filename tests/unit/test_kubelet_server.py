"""The node agent's kubelet API (logs, exec, attach, port-forward over SPDY and WebSocket
channels) and the API server's pod streaming checks. The server runs on 127.0.0.1 against a
fake runtime view whose sandboxes run commands on the host and whose network namespace is
this process's own."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import MultiDict

from kubesvc.api.errors import ApiError
from kubesvc.apiserver.podstreams import (
    choose_container,
    log_query,
    log_state_error,
    node_endpoint,
    node_error,
)
from kubesvc.kubelet.errors import ERROR_HEADER
from kubesvc.kubelet.logs import (
    LogLine,
    LogOptions,
    parse_log_line,
    parse_log_options,
    stream_log,
    tail_offset,
)
from kubesvc.kubelet.portforward import PORT_FORWARD_PROTOCOL, stream_request
from kubesvc.kubelet.remotecommand import (
    ExecOptions,
    exec_argv,
    exit_status,
    parse_exec_options,
    parse_resize,
)
from kubesvc.kubelet.server import KubeletServer
from kubesvc.kubelet.spdy import (
    PING,
    RST_STREAM,
    SYN_REPLY,
    SpdyCodec,
)
from kubesvc.kubelet.wschannel import REMOTECOMMAND_PROTOCOLS, negotiate
from kubesvc.node.view import ContainerStdin, Sandbox

TOKEN = "test-token"

# -- the fake runtime -----------------------------------------------------------------------


@dataclass(frozen=True)
class HostSandbox(Sandbox):
    """Runs commands on the host: tests need no namespaces."""

    def nsenter(self, pid: bool = True, user: bool = True) -> list[str]:
        return []


@dataclass
class FakePod:
    containers: list[str]
    logs: dict[str, Path] = field(default_factory=dict)
    previous: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    running: bool = True
    stdin: dict[str, ContainerStdin] = field(default_factory=dict)


class FakeView:
    """A PodRuntimeView over in-memory pods and log files in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pods: dict[tuple[str, str], FakePod] = {}

    def add(self, ns: str, name: str, containers: list[str], **kw: Any) -> FakePod:
        pod = FakePod(containers, **kw)
        self.pods[(ns, name)] = pod
        return pod

    def write_log(
        self, ns: str, name: str, container: str, text: str, previous: bool = False
    ) -> Path:
        path = self.root / f"{ns}_{name}_{container}{'.prev' if previous else ''}.log"
        path.write_text(text)
        target = self.pods[(ns, name)].previous if previous else self.pods[(ns, name)].logs
        target[container] = path
        return path

    def sandbox(self, namespace: str, name: str) -> Sandbox | None:
        pod = self.pods.get((namespace, name))
        if pod is None or not pod.running:
            return None
        return HostSandbox(
            namespace,
            name,
            f"uid-{name}",
            Path("/proc/self/ns/net"),
            Path("/proc/self/ns/uts"),
            Path("/proc/self/ns/mnt"),
            "127.0.0.1",
            name,
        )

    def containers(self, namespace: str, name: str) -> list[str]:
        pod = self.pods.get((namespace, name))
        return list(pod.containers) if pod else []

    def log_path(self, namespace: str, name: str, container: str, previous: bool) -> Path | None:
        pod = self.pods.get((namespace, name))
        if pod is None:
            return None
        return (pod.previous if previous else pod.logs).get(container)

    def container_env(self, namespace: str, name: str, container: str) -> dict[str, str]:
        pod = self.pods.get((namespace, name))
        return dict(pod.env) if pod else {}

    def working_dir(self, namespace: str, name: str, container: str) -> str | None:
        pod = self.pods.get((namespace, name))
        return pod.workdir if pod else None

    def privileges(self, namespace: str, name: str, container: str) -> list[str]:
        return []

    def running(self, namespace: str, name: str, container: str) -> bool:
        pod = self.pods.get((namespace, name))
        return pod is not None and pod.running and container in pod.containers

    def stdin(self, namespace: str, name: str, container: str) -> ContainerStdin | None:
        pod = self.pods.get((namespace, name))
        return pod.stdin.get(container) if pod else None


HOST_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


# -- pure: logs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        pytest.param(b"hello\n", LogLine(b"hello\n"), id="plain"),
        pytest.param(b"no newline", LogLine(b"no newline"), id="plain-partial"),
        pytest.param(
            b"2024-01-02T03:04:05.123456789Z stdout F hi there\n",
            LogLine(b"hi there\n", b"2024-01-02T03:04:05.123456789Z"),
            id="cri-full",
        ),
        pytest.param(
            b"2024-01-02T03:04:05Z stderr P part",
            LogLine(b"part", b"2024-01-02T03:04:05Z"),
            id="cri-partial",
        ),
        pytest.param(
            b"2024-01-02T03:04:05+02:00 stdout F x\n",
            LogLine(b"x\n", b"2024-01-02T03:04:05+02:00"),
            id="cri-offset",
        ),
        pytest.param(b"2024-01-02 stdout F x\n", LogLine(b"2024-01-02 stdout F x\n"), id="not-cri"),
    ],
)
def test_parse_log_line(raw: bytes, want: LogLine) -> None:
    assert parse_log_line(raw) == want


@pytest.mark.parametrize(
    ("text", "lines", "want"),
    [
        pytest.param(b"a\nb\nc\n", 2, b"b\nc\n", id="two-of-three"),
        pytest.param(b"a\nb\nc\n", 5, b"a\nb\nc\n", id="more-than-there"),
        pytest.param(b"a\nb\nc\n", 0, b"", id="zero"),
        pytest.param(b"a\nb\nc", 1, b"c", id="unterminated-last"),
        pytest.param(b"a\nb\nc", 2, b"b\nc", id="unterminated-two"),
        pytest.param(b"", 3, b"", id="empty"),
        pytest.param(b"\n\n", 1, b"\n", id="blank-lines"),
    ],
)
def test_tail_offset(text: bytes, lines: int, want: bytes) -> None:
    f = io.BytesIO(text)
    assert text[tail_offset(f, lines) :] == want
    # the same with a tiny block size, to cross block boundaries
    assert text[tail_offset(f, lines, block=1) :] == want


NOW = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("query", "want"),
    [
        pytest.param({}, LogOptions(), id="defaults"),
        pytest.param(
            {"follow": "true", "previous": "1", "timestamps": "true", "tailLines": "3"},
            LogOptions(follow=True, previous=True, timestamps=True, tail_lines=3),
            id="flags",
        ),
        pytest.param(
            {"sinceSeconds": "10"},
            LogOptions(since=NOW - datetime.timedelta(seconds=10)),
            id="since-seconds",
        ),
        pytest.param(
            {"sinceTime": "2024-01-01T00:00:00Z"},
            LogOptions(since=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)),
            id="since-time",
        ),
        pytest.param({"limitBytes": "5"}, LogOptions(limit_bytes=5), id="limit"),
    ],
)
def test_parse_log_options(query: dict[str, str], want: LogOptions) -> None:
    assert parse_log_options(query, now=NOW) == want


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"tailLines": "x"}, id="tail-not-number"),
        pytest.param({"tailLines": "-1"}, id="tail-negative"),
        pytest.param({"limitBytes": "0"}, id="limit-zero"),
        pytest.param({"sinceSeconds": "0"}, id="since-zero"),
        pytest.param({"sinceSeconds": "5", "sinceTime": "2024-01-01T00:00:00Z"}, id="both-since"),
        pytest.param({"sinceTime": "yesterday"}, id="bad-time"),
    ],
)
def test_parse_log_options_rejects(query: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        parse_log_options(query)


CRI_LOG = (
    "2024-01-02T03:04:00Z stdout F one\n"
    "2024-01-02T03:04:10Z stderr P tw\n"
    "2024-01-02T03:04:10Z stderr F o\n"
    "2024-01-02T03:04:20Z stdout F three\n"
)


@pytest.mark.parametrize(
    ("opts", "want"),
    [
        pytest.param(LogOptions(), "one\ntwo\nthree\n", id="all"),
        pytest.param(LogOptions(tail_lines=1), "three\n", id="tail"),
        pytest.param(
            LogOptions(timestamps=True, tail_lines=1),
            "2024-01-02T03:04:20Z three\n",
            id="timestamps",
        ),
        pytest.param(
            LogOptions(since=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)),
            "two\nthree\n",
            id="since",
        ),
        pytest.param(LogOptions(limit_bytes=6), "one\ntw", id="limit"),
    ],
)
def test_stream_log(tmp_path: Path, opts: LogOptions, want: str) -> None:
    path = tmp_path / "c.log"
    path.write_text(CRI_LOG)
    out: list[bytes] = []

    async def write(b: bytes) -> None:
        out.append(b)

    asyncio.run(stream_log(path, opts, write))
    assert b"".join(out).decode() == want


# -- pure: exec -----------------------------------------------------------------------------


def test_parse_exec_options() -> None:
    q = MultiDict([("command", "sh"), ("command", "-c"), ("command", "x"), ("stdout", "1")])
    assert parse_exec_options(q) == ExecOptions(("sh", "-c", "x"), False, True, False, False)
    tty = MultiDict([("command", "sh"), ("stdin", "true"), ("stderr", "1"), ("tty", "1")])
    # a terminal has no separate stderr
    assert parse_exec_options(tty) == ExecOptions(("sh",), True, False, False, True)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param([("stdout", "1")], "you must specify at least 1 command", id="no-command"),
        pytest.param(
            [("command", "ls")],
            "you must specify at least 1 of stdin, stdout, stderr",
            id="no-streams",
        ),
    ],
)
def test_parse_exec_options_rejects(query: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(Exception, match=message):
        parse_exec_options(MultiDict(query))


def _sandbox() -> Sandbox:
    p = Path("/run/netns/x")
    return Sandbox("ns", "p", "u", p, p, p, "10.0.0.1", "p")


@pytest.mark.parametrize(
    ("opts", "workdir", "want"),
    [
        pytest.param(
            ExecOptions(("ls", "-l"), False, True, True, False),
            "/srv",
            ["nsenter", "--net=/run/netns/x", "--uts=/run/netns/x", "--mount=/run/netns/x", "--",
             "env", "-i", "-C", "/srv", "A=1", "ls", "-l"],
            id="plain",
        ),
        pytest.param(
            ExecOptions(("sh",), True, True, False, True),
            None,
            ["nsenter", "--net=/run/netns/x", "--uts=/run/netns/x", "--mount=/run/netns/x", "--",
             "setsid", "-w", "-c", "env", "-i", "-C", "/", "A=1", "TERM=xterm", "sh"],
            id="tty",
        ),
    ],
)  # fmt: skip
def test_exec_argv(opts: ExecOptions, workdir: str | None, want: list[str]) -> None:
    assert exec_argv(_sandbox(), {"A": "1"}, workdir, opts) == want


@pytest.mark.parametrize(
    ("code", "want"),
    [
        pytest.param(0, {"metadata": {}, "status": "Success"}, id="success"),
        pytest.param(
            3,
            {
                "metadata": {},
                "status": "Failure",
                "message": "command terminated with non-zero exit code: error executing "
                "command [sh -c exit 3], exit code 3",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
            },
            id="exit-3",
        ),
    ],
)
def test_exit_status(code: int, want: dict[str, Any]) -> None:
    assert exit_status(["sh", "-c", "exit 3"], code) == want


def test_exit_status_signal() -> None:
    assert exit_status(["sleep"], -9)["details"]["causes"][0]["message"] == "137"


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        pytest.param(b'{"Width":80,"Height":24}', (80, 24), id="ok"),
        pytest.param(b"{", None, id="bad-json"),
        pytest.param(b'{"Width":80}', None, id="missing"),
        pytest.param(b'{"Width":-1,"Height":2}', None, id="negative"),
    ],
)
def test_parse_resize(payload: bytes, want: tuple[int, int] | None) -> None:
    assert parse_resize(payload) == want


@pytest.mark.parametrize(
    ("offered", "want"),
    [
        pytest.param("v5.channel.k8s.io", "v5.channel.k8s.io", id="v5"),
        pytest.param(
            "v4.channel.k8s.io, v5.channel.k8s.io", "v4.channel.k8s.io", id="client-order"
        ),
        pytest.param("v4.base64.channel.k8s.io", "v4.base64.channel.k8s.io", id="v4-base64"),
        pytest.param("channel.k8s.io", "channel.k8s.io", id="v1"),
        pytest.param("x, base64.channel.k8s.io", "base64.channel.k8s.io", id="v1-base64"),
        pytest.param("", "", id="none"),
        pytest.param("v9.channel.k8s.io", None, id="unknown"),
    ],
)
def test_negotiate(offered: str, want: str | None) -> None:
    got = negotiate(offered, REMOTECOMMAND_PROTOCOLS)
    assert (got.name if got is not None else None) == want


# -- pure: port-forward stream headers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "sid", "want"),
    [
        pytest.param(
            {"streamtype": "error", "port": "80", "requestid": "4"}, 1, ("error", "4", 80), id="ok"
        ),
        pytest.param({"streamtype": "error", "port": "80"}, 5, ("error", "5", 80), id="old-error"),
        pytest.param({"streamtype": "data", "port": "80"}, 7, ("data", "5", 80), id="old-data"),
    ],
)
def test_stream_request(headers: dict[str, str], sid: int, want: tuple[str, str, int]) -> None:
    assert stream_request(headers, sid) == want


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({"streamtype": "data"}, '"port" header is required', id="no-port"),
        pytest.param({"port": "x", "streamtype": "data"}, "unable to parse", id="bad-port"),
        pytest.param({"port": "0", "streamtype": "data"}, "must be > 0", id="zero-port"),
        pytest.param({"port": "80", "streamtype": "weird"}, "invalid stream type", id="bad-type"),
    ],
)
def test_stream_request_rejects(headers: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stream_request(headers, 1)


# -- pure: the API server's checks ----------------------------------------------------------


def _pod(containers: list[str], init: list[str] | None = None, **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": c} for c in containers]}
    if init:
        spec["initContainers"] = [{"name": c} for c in init]
    return {"metadata": {"name": "p"}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("pod", "requested", "want"),
    [
        pytest.param(_pod(["a"]), "", "a", id="only-one"),
        pytest.param(_pod(["a", "b"]), "b", "b", id="named"),
        pytest.param(_pod(["a"], init=["i"]), "i", "i", id="init"),
        pytest.param(
            _pod(["a", "b"]),
            "",
            "a container name must be specified for pod p, choose one of: [a b]",
            id="several",
        ),
        pytest.param(
            _pod(["a", "b"], init=["i"]),
            "",
            "a container name must be specified for pod p, choose one of: [a b] "
            "or one of the init containers: [i]",
            id="several-with-init",
        ),
        pytest.param(_pod(["a"]), "x", "container x is not valid for pod p", id="unknown"),
    ],
)
def test_choose_container(pod: dict[str, Any], requested: str, want: str) -> None:
    try:
        got = choose_container(pod, requested)
    except ApiError as e:
        assert (e.code, e.reason) == (400, "BadRequest")
        got = e.message
    assert got == want


def _cs(state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"containerStatuses": [{"name": "c", "state": state, "lastState": last or {}}]}


@pytest.mark.parametrize(
    ("status", "previous", "want"),
    [
        pytest.param({}, False, None, id="no-status"),
        pytest.param(_cs({"running": {}}), False, None, id="running"),
        pytest.param(_cs({"terminated": {"exitCode": 0}}), False, None, id="terminated"),
        pytest.param(
            _cs({"waiting": {"reason": "ContainerCreating"}}),
            False,
            'container "c" in pod "p" is waiting to start: ContainerCreating',
            id="creating",
        ),
        pytest.param(
            _cs({"waiting": {"reason": "ErrImagePull"}}),
            False,
            'container "c" in pod "p" is waiting to start: image can\'t be pulled',
            id="image",
        ),
        pytest.param(
            _cs({"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {"exitCode": 1}}),
            False,
            None,
            id="crashloop-has-last",
        ),
        pytest.param(
            _cs({"running": {}}),
            True,
            'previous terminated container "c" in pod "p" not found',
            id="no-previous",
        ),
        pytest.param(
            _cs({"running": {}}, {"terminated": {"containerID": "x://1"}}),
            True,
            None,
            id="previous",
        ),
    ],
)
def test_log_state_error(status: dict[str, Any], previous: bool, want: str | None) -> None:
    pod = _pod(["c"], **status)
    assert log_state_error(pod, "c", previous) == want


@pytest.mark.parametrize(
    ("status", "want"),
    [
        pytest.param(
            {
                "addresses": [
                    {"type": "Hostname", "address": "n1"},
                    {"type": "InternalIP", "address": "10.1.0.2"},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}},
            },
            ("10.1.0.2", 10255),
            id="internal-ip",
        ),
        pytest.param(
            {"addresses": [{"type": "Hostname", "address": "n1"}]},
            ("n1", 10250),
            id="hostname-default-port",
        ),
    ],
)
def test_node_endpoint(status: dict[str, Any], want: tuple[str, int]) -> None:
    assert node_endpoint({"status": status}) == want


def test_node_endpoint_without_addresses() -> None:
    with pytest.raises(ApiError, match="no preferred addresses found"):
        node_endpoint({"status": {}})


@pytest.mark.parametrize(
    ("code", "text", "reason", "message"),
    [
        pytest.param(400, "bad thing", "BadRequest", "bad thing", id="400"),
        pytest.param(500, "boom", "InternalError", "Internal error occurred: boom", id="500"),
        pytest.param(
            404,
            "pod does not exist",
            "NotFound",
            "the server could not find the requested resource ( pods/log p)",
            id="404",
        ),
    ],
)
def test_node_error(code: int, text: str, reason: str, message: str) -> None:
    err = node_error(code, text, "pods/log", "p")
    assert (err.code, err.reason, err.message) == (code, reason, message)


@pytest.mark.parametrize(
    ("query", "want"),
    [
        pytest.param({"tailLines": "-1"}, 422, id="negative-tail"),
        pytest.param({"limitBytes": "0"}, 422, id="zero-limit"),
        pytest.param({"tailLines": "x"}, 400, id="not-a-number"),
        pytest.param({"sinceSeconds": "1", "sinceTime": "2024-01-01T00:00:00Z"}, 422, id="both"),
    ],
)
def test_log_query_rejects(query: dict[str, str], want: int) -> None:
    with pytest.raises(ApiError) as info:
        log_query(query)
    assert info.value.code == want


def test_log_query_passes_known_parameters() -> None:
    q = {"follow": "true", "tailLines": "2", "container": "c", "pretty": "1"}
    assert log_query(q) == {"follow": "true", "tailLines": "2"}


# -- the server -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(view: FakeView) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server = KubeletServer(view, TOKEN, "127.0.0.1", 0)
    await server.start()
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        yield f"https://127.0.0.1:{server.port}", session
    finally:
        await session.close()
        await server.stop()


def run(view: FakeView, body: Callable[[str, aiohttp.ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving(view) as (base, session):
            await asyncio.wait_for(body(base, session), 30)

    asyncio.run(main())


@pytest.fixture
def view(tmp_path: Path) -> FakeView:
    v = FakeView(tmp_path)
    v.add("ns", "p", ["app", "side"], env=HOST_ENV)
    v.write_log("ns", "p", "app", "line 1\nline 2\nline 3\n")
    v.write_log("ns", "p", "app", "old 1\n", previous=True)
    return v


def test_healthz_is_open_and_the_rest_needs_the_token(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        async with aiohttp.ClientSession() as anon:
            async with anon.get(f"{base}/healthz", ssl=False) as r:
                assert (r.status, await r.text()) == (200, "ok")
            async with anon.get(f"{base}/containerLogs/ns/p/app", ssl=False) as r:
                assert r.status == 401
            bad = {"Authorization": "Bearer nope"}
            async with anon.get(f"{base}/containerLogs/ns/p/app", ssl=False, headers=bad) as r:
                assert r.status == 401

    run(view, body)


@pytest.mark.parametrize(
    ("query", "want"),
    [
        pytest.param("", "line 1\nline 2\nline 3\n", id="all"),
        pytest.param("?tailLines=2", "line 2\nline 3\n", id="tail"),
        pytest.param("?previous=true", "old 1\n", id="previous"),
        pytest.param("?limitBytes=8", "line 1\nl", id="limit"),
    ],
)
def test_logs(view: FakeView, query: str, want: str) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        async with session.get(f"{base}/containerLogs/ns/p/app{query}", ssl=False) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            assert await r.text() == want

    run(view, body)


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        pytest.param("ns/nope/app", 404, 'pod "nope" does not exist', id="no-pod"),
        pytest.param("ns/p/nope", 404, 'container "nope" not found in pod "p"', id="no-container"),
        pytest.param(
            "ns/p/side?previous=true",
            400,
            'previous terminated container "side" in pod "p" not found',
            id="no-previous",
        ),
        pytest.param(
            "ns/p/side",
            400,
            'container "side" in pod "p" is waiting to start - no logs yet',
            id="no-log-yet",
        ),
        pytest.param("ns/p/app?tailLines=x", 400, "tailLines", id="bad-query"),
    ],
)
def test_logs_errors(view: FakeView, path: str, code: int, message: str) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        async with session.get(f"{base}/containerLogs/{path}", ssl=False) as r:
            assert r.status == code
            assert message in await r.text()

    run(view, body)


def test_logs_follow(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        url = f"{base}/containerLogs/ns/p/app?follow=true&tailLines=1"
        async with session.get(url, ssl=False) as r:
            assert await r.content.readline() == b"line 3\n"
            with open(view.pods[("ns", "p")].logs["app"], "a") as f:
                f.write("line 4\npart")
            assert await r.content.readline() == b"line 4\n"
            # the container goes away: following ends after what is left
            view.pods[("ns", "p")].running = False
            assert await asyncio.wait_for(r.content.read(), 5) == b"part"

    run(view, body)


async def exec_ws(
    session: aiohttp.ClientSession,
    base: str,
    command: list[str],
    *,
    stdin: bool = False,
    tty: bool = False,
    protocol: str = "v5.channel.k8s.io",
) -> aiohttp.ClientWebSocketResponse:
    params = [("command", c) for c in command] + [("stdout", "1")]
    params += [("stdin", "1")] if stdin else []
    params += [("tty", "1")] if tty else [("stderr", "1")]
    qs = "&".join(f"{k}={aiohttp.helpers.quote(v, safe='')}" for k, v in params)
    return await session.ws_connect(f"{base}/exec/ns/p/app?{qs}", protocols=[protocol], ssl=False)


async def collect(ws: aiohttp.ClientWebSocketResponse) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    async for msg in ws:
        assert msg.type == aiohttp.WSMsgType.BINARY
        out[msg.data[0]] = out.get(msg.data[0], b"") + msg.data[1:]
    assert ws.close_code == 1000
    return out


def test_exec_echo(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await exec_ws(session, base, ["sh", "-c", "echo hi; echo err >&2; pwd"])
        assert ws.protocol == "v5.channel.k8s.io"
        out = await collect(ws)
        assert out[1] == b"hi\n/\n"
        assert out[2] == b"err\n"
        assert json.loads(out[3]) == {"metadata": {}, "status": "Success"}

    run(view, body)


def test_exec_environment_and_working_dir(view: FakeView, tmp_path: Path) -> None:
    pod = view.pods[("ns", "p")]
    pod.env = {**HOST_ENV, "GREETING": "hello world"}
    pod.workdir = str(tmp_path)

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await exec_ws(session, base, ["sh", "-c", 'echo "$GREETING"; pwd; echo "$HOME"'])
        out = await collect(ws)
        assert out[1].decode() == f"hello world\n{tmp_path}\n\n"

    run(view, body)


def test_exec_exit_code(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        out = await collect(await exec_ws(session, base, ["sh", "-c", "exit 3"]))
        status = json.loads(out[3])
        assert status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]

    run(view, body)


def test_exec_stdin_and_close(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await exec_ws(session, base, ["cat"], stdin=True)
        await ws.send_bytes(b"\x00hello ")
        await ws.send_bytes(b"\x00world\n")
        await ws.send_bytes(b"\xff\x00")  # v5: stdin is done
        out = await collect(ws)
        assert out[1] == b"hello world\n"
        assert json.loads(out[3])["status"] == "Success"

    run(view, body)


def test_exec_tty(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await exec_ws(
            session, base, ["sh", "-c", "read x; stty size; echo got $x"], stdin=True, tty=True
        )
        await ws.send_bytes(b'\x04{"Width":91,"Height":17}')
        await asyncio.sleep(0.2)
        await ws.send_bytes(b"\x00abc\r")
        out = await collect(ws)
        assert 2 not in out
        text = out[1].decode()
        assert "17 91" in text and "got abc" in text
        assert json.loads(out[3])["status"] == "Success"

    run(view, body)


def test_exec_client_gone_kills_the_command(view: FakeView, tmp_path: Path) -> None:
    marker = tmp_path / "pid"

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await exec_ws(session, base, ["sh", "-c", f"echo $$ > {marker}; exec sleep 60"])
        for _ in range(100):
            if marker.exists() and marker.read_text().strip():
                break
            await asyncio.sleep(0.05)
        pid = int(marker.read_text())
        await ws.close()
        for _ in range(100):
            if not _alive(pid):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("exec'd process still running after the client left")

    run(view, body)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while read
        return False


@pytest.mark.parametrize(
    ("path", "protocol", "code", "message"),
    [
        pytest.param(
            "ns/nope/app?command=ls&stdout=1", "v5.channel.k8s.io", 404, "pod does not exist",
            id="no-pod",
        ),
        pytest.param(
            "ns/p/nope?command=ls&stdout=1", "v5.channel.k8s.io", 500,
            'container not found ("nope")', id="no-container",
        ),
        pytest.param(
            "ns/p/app?stdout=1", "v5.channel.k8s.io", 400, "at least 1 command", id="no-command"
        ),
        pytest.param(
            "ns/p/app?command=ls&stdout=1", "v9.channel.k8s.io", 400,
            "unable to negotiate protocol", id="unknown-protocol",
        ),
    ],
)  # fmt: skip
def test_exec_refused(view: FakeView, path: str, protocol: str, code: int, message: str) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{base}/exec/{path}", protocols=[protocol], ssl=False)
        assert info.value.status == code
        assert message in (info.value.headers or {}).get(ERROR_HEADER, "")
        async with session.get(f"{base}/exec/ns/p/app?command=ls&stdout=1", ssl=False) as r:
            assert (r.status, await r.text()) == (400, "Upgrade request required")

    run(view, body)


# -- port-forward ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that answers each connection with its data upper-cased,
    after the client half-closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


class SpdyClient:
    """The client half of tunnelled SPDY port-forward, as kubectl speaks it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.codec = ws, SpdyCodec()
        self.next_id = 1
        self.streams: dict[int, bytearray] = {}
        self.finished: set[int] = set()
        self.replied: set[int] = set()
        self.reset: set[int] = set()
        self.pongs: list[int] = []

    async def open(self, headers: dict[str, str]) -> int:
        sid, self.next_id = self.next_id, self.next_id + 2
        self.streams[sid] = bytearray()
        await self.ws.send_bytes(self.codec.syn_stream(sid, headers))
        return sid

    async def send(self, sid: int, data: bytes, fin: bool = False) -> None:
        await self.ws.send_bytes(self.codec.data(sid, data, fin))

    async def pump_until(self, done: Callable[[], bool]) -> None:
        while not done():
            msg = await self.ws.receive()
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            for f in self.codec.feed(msg.data):
                if f.type == SYN_REPLY:
                    self.replied.add(f.stream_id)
                elif f.type == RST_STREAM:
                    self.reset.add(f.stream_id)
                elif f.type == PING:
                    self.pongs.append(f.value)
                elif f.type == 0:
                    self.streams[f.stream_id] += f.data
                    if f.fin:
                        self.finished.add(f.stream_id)

    async def forward(self, port: int, request_id: int, payload: bytes) -> tuple[bytes, bytes]:
        base = {"port": str(port), "requestid": str(request_id)}
        err = await self.open({**base, "streamtype": "error"})
        await self.send(err, b"", fin=True)
        data = await self.open({**base, "streamtype": "data"})
        await self.send(data, payload, fin=True)
        await self.pump_until(lambda: {err, data} <= self.finished)
        assert {err, data} <= self.replied
        return bytes(self.streams[data]), bytes(self.streams[err])


async def port_forward_ws(
    session: aiohttp.ClientSession, base: str, pod: str = "p"
) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(
        f"{base}/portForward/ns/{pod}", protocols=[PORT_FORWARD_PROTOCOL], ssl=False
    )


def test_port_forward(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        async with echo_server() as port:
            ws = await port_forward_ws(session, base)
            assert ws.protocol == PORT_FORWARD_PROTOCOL
            client = SpdyClient(ws)
            assert await client.forward(port, 0, b"hello") == (b"HELLO", b"")
            # a second connection over the same tunnel, and a ping
            await ws.send_bytes(client.codec.ping(1))
            assert await client.forward(port, 1, b"again") == (b"AGAIN", b"")
            await client.pump_until(lambda: bool(client.pongs))
            assert client.pongs == [1]
            await ws.close()

    run(view, body)


def test_port_forward_refused(view: FakeView) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        client = SpdyClient(await port_forward_ws(session, base))
        data, err = await client.forward(closed_port, 0, b"x")
        assert data == b""
        assert err.decode().startswith(f"error forwarding port {closed_port} to pod uid-p, uid : ")
        assert "connection refused" in err.decode().lower()

    run(view, body)


def test_port_forward_rejects_bad_streams(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        client = SpdyClient(await port_forward_ws(session, base))
        sid = await client.open({"streamtype": "data"})  # no port
        await client.pump_until(lambda: sid in client.reset)

    run(view, body)


def test_port_forward_refused_upgrade(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await port_forward_ws(session, base, pod="nope")
        assert info.value.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(
                f"{base}/portForward/ns/p?port=80", protocols=["v5.channel.k8s.io"], ssl=False
            )
        assert info.value.status == 400

    run(view, body)


def test_malformed_spdy_ends_the_session_not_the_server(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await port_forward_ws(session, base)
        await ws.send_bytes(b"\x80\x02\x00\x01\x00\x00\x00\x00")
        msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        async with session.get(f"{base}/healthz", ssl=False) as r:
            assert r.status == 200

    run(view, body)


# -- a real network namespace (root only) ---------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and ip")
def test_port_forward_into_a_network_namespace(tmp_path: Path) -> None:
    """The dial enters the pod's network namespace: a server on the namespace's loopback is
    reachable, while this process's loopback has nothing on that port."""
    name = f"ksvt-{uuid.uuid4().hex[:8]}"
    netns = Path("/run/netns") / name
    server: subprocess.Popen[bytes] | None = None
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        script = (
            "import socket,sys\n"
            "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(1)\n"
            "print(s.getsockname()[1], flush=True)\n"
            "c,_=s.accept(); d=b''\n"
            "while True:\n"
            "    b=c.recv(4096)\n"
            "    if not b: break\n"
            "    d+=b\n"
            "c.sendall(b'ns:'+d); c.close()\n"
        )
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", script], stdout=subprocess.PIPE
        )
        assert server.stdout is not None
        port = int(server.stdout.readline())
        view = FakeView(tmp_path)
        view.add("ns", "p", ["app"])
        real = Sandbox("ns", "p", "uid-p", netns, netns, netns, "10.0.0.1", "p")
        view.sandbox = lambda namespace, pod: real  # type: ignore[method-assign]

        async def body(base: str, session: aiohttp.ClientSession) -> None:
            client = SpdyClient(await port_forward_ws(session, base))
            assert await client.forward(port, 0, b"ping") == (b"ns:ping", b"")

        run(view, body)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.parametrize("protocol", ["v5.channel.k8s.io", "v4.channel.k8s.io"])
def test_exec_stdin_in_text_frames(view: FakeView, protocol: str) -> None:
    """The official Python client writes stdin as text frames whose first character is the
    channel; upstream reads text and binary frames alike."""

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await exec_ws(session, base, ["head", "-n", "1"], stdin=True, protocol=protocol)
        await ws.send_str("\x00héllo ")
        await ws.send_str("\x00world\n")
        out = await collect(ws)
        assert out[1] == "héllo world\n".encode()
        assert json.loads(out[3])["status"] == "Success"

    run(view, body)


def test_exec_base64_protocol(view: FakeView) -> None:
    """v4.base64.channel.k8s.io: text frames both ways, '0' + channel then base64."""

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await exec_ws(
            session, base, ["head", "-c", "5"], stdin=True, protocol="v4.base64.channel.k8s.io"
        )
        await ws.send_str("0" + base64.b64encode(b"12345").decode())
        out: dict[int, bytes] = {}
        async for msg in ws:
            assert msg.type == aiohttp.WSMsgType.TEXT
            channel = ord(msg.data[0]) - ord("0")
            out[channel] = out.get(channel, b"") + base64.b64decode(msg.data[1:])
        assert out[1] == b"12345"
        assert json.loads(out[3])["status"] == "Success"

    run(view, body)


def test_exec_first_protocol_version(view: FakeView) -> None:
    """channel.k8s.io: the error channel carries a failure's message, not a Status."""

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ok = await collect(await exec_ws(session, base, ["true"], protocol="channel.k8s.io"))
        assert ok.get(3, b"") == b""
        failed = await exec_ws(session, base, ["sh", "-c", "exit 2"], protocol="channel.k8s.io")
        assert (await collect(failed))[3].startswith(b"command terminated with non-zero exit")

    run(view, body)


# -- port-forward over WebSocket channels ---------------------------------------------------


@contextlib.asynccontextmanager
async def line_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that answers the first line of each connection upper-cased,
    then closes it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def channel_port_forward(
    session: aiohttp.ClientSession, base: str, ports: str, protocol: str = "v4.channel.k8s.io"
) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(
        f"{base}/portForward/ns/p?port={ports}", protocols=[protocol], ssl=False
    )


async def channel_messages(ws: aiohttp.ClientWebSocketResponse) -> list[tuple[int, bytes]]:
    out = []
    async for msg in ws:
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        out.append((msg.data[0], msg.data[1:]))
    return out


def test_port_forward_over_websocket_channels(view: FakeView) -> None:
    """Upstream's v4 WebSocket port-forward: ports from the query, channels 2i (data) and
    2i+1 (error) per port, each starting with the port as two little-endian bytes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        async with line_server() as one, line_server() as two:
            ws = await channel_port_forward(session, base, f"{one},{two},{closed_port}")
            assert ws.protocol == "v4.channel.k8s.io"
            await ws.send_bytes(b"\x00first\n")
            await ws.send_str("\x02second\n")  # text frames too
            messages = await channel_messages(ws)
        by_channel: dict[int, list[bytes]] = {}
        for channel, payload in messages:
            by_channel.setdefault(channel, []).append(payload)
        for i, port in enumerate((one, two, closed_port)):
            assert by_channel[2 * i][0] == port.to_bytes(2, "little")
            assert by_channel[2 * i + 1][0] == port.to_bytes(2, "little")
        assert b"".join(by_channel[0][1:]) == b"FIRST\n"
        assert b"".join(by_channel[2][1:]) == b"SECOND\n"
        assert by_channel[1][1:] == [] and by_channel[3][1:] == []
        error = b"".join(by_channel[5][1:]).decode()
        assert error.startswith(f"error forwarding port {closed_port} to pod uid-p, uid : ")
        assert "connection refused" in error.lower()

    run(view, body)


def test_port_forward_over_websocket_base64(view: FakeView) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        async with line_server() as port:
            ws = await channel_port_forward(session, base, str(port), "v4.base64.channel.k8s.io")
            await ws.send_str("0" + base64.b64encode(b"b64\n").decode())
            got: dict[str, bytes] = {}
            async for msg in ws:
                assert msg.type == aiohttp.WSMsgType.TEXT
                got[msg.data[0]] = got.get(msg.data[0], b"") + base64.b64decode(msg.data[1:])
        assert got["0"] == port.to_bytes(2, "little") + b"B64\n"

    run(view, body)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("", 'query parameter "port" is required', id="none"),
        pytest.param("?port=", 'query parameter "port" cannot be empty', id="empty"),
        pytest.param(
            "?port=80,x",
            'unable to parse "80,x" as a port: strconv.ParseUint: parsing "x": invalid syntax',
            id="not-a-number",
        ),
        pytest.param(
            "?port=70000",
            'unable to parse "70000" as a port: strconv.ParseUint: parsing "70000": value out '
            "of range",
            id="too-big",
        ),
        pytest.param("?port=0", 'port "0" must be > 0', id="zero"),
    ],
)
def test_port_forward_over_websocket_bad_ports(view: FakeView, query: str, message: str) -> None:
    async def body(base: str, session: aiohttp.ClientSession) -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(
                f"{base}/portForward/ns/p{query}", protocols=["v4.channel.k8s.io"], ssl=False
            )
        assert info.value.status == 400
        assert (info.value.headers or {}).get(ERROR_HEADER, "") == message

    run(view, body)


# -- attach ---------------------------------------------------------------------------------


def _cri(stream: str, text: str, tag: str = "F") -> str:
    return f"2024-01-01T00:00:00.000000000Z {stream} {tag} {text}\n"


def test_attach_streams_what_the_container_writes_next(view: FakeView) -> None:
    log = view.write_log("ns", "p", "app", _cri("stdout", "before attach"))

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await session.ws_connect(
            f"{base}/attach/ns/p/app?stdout=1&stderr=1&stdin=1",
            protocols=["v5.channel.k8s.io"],
            ssl=False,
        )
        await ws.send_str("\x00typed\n")  # read and dropped: no stdin to reach
        await asyncio.sleep(0.3)
        with open(log, "a") as f:
            f.write(_cri("stdout", "out ", "P") + _cri("stdout", "line") + _cri("stderr", "oops"))
        await asyncio.sleep(0.5)
        view.pods[("ns", "p")].running = False  # the container ends: so does the attach
        out = await collect(ws)
        assert out[1] == b"out line\n"
        assert out[2] == b"oops\n"
        assert json.loads(out[3]) == {"metadata": {}, "status": "Success"}

    run(view, body)


def test_attach_with_a_terminal_merges_stderr(view: FakeView) -> None:
    log = view.write_log("ns", "p", "app", "")

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await session.ws_connect(
            f"{base}/attach/ns/p/app?stdout=1&tty=1", protocols=["v4.channel.k8s.io"], ssl=False
        )
        await asyncio.sleep(0.3)
        with open(log, "a") as f:
            f.write(_cri("stderr", "to the terminal"))
        await asyncio.sleep(0.5)
        view.pods[("ns", "p")].running = False
        out = await collect(ws)
        assert out[1] == b"to the terminal\n"
        assert 2 not in out

    run(view, body)


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        pytest.param("ns/nope/app?stdout=1", 404, "pod does not exist", id="no-pod"),
        pytest.param("ns/p/nope?stdout=1", 500, 'container not found ("nope")', id="no-container"),
        pytest.param("ns/p/app", 400, "at least 1 of stdin, stdout, stderr", id="no-stream"),
        pytest.param(
            "ns/p/side?stdout=1", 500, 'container "side" is not running', id="not-running"
        ),
    ],
)
def test_attach_refused(view: FakeView, path: str, code: int, message: str) -> None:
    view.write_log("ns", "p", "app", "")

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(
                f"{base}/attach/{path}", protocols=["v5.channel.k8s.io"], ssl=False
            )
        assert info.value.status == code
        assert message in (info.value.headers or {}).get(ERROR_HEADER, "")

    run(view, body)


def test_attach_writes_to_the_containers_stdin(view: FakeView, tmp_path: Path) -> None:
    """A container with stdin reads a FIFO: what the client sends reaches it, and with
    stdinOnce its stdin ends when the client closes its own."""
    fifo = tmp_path / "stdin"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the container's end
    held = os.open(fifo, os.O_WRONLY)  # what the shim holds
    closed: list[bool] = []

    def close() -> None:
        closed.append(True)
        os.close(held)

    view.pods[("ns", "p")].stdin["app"] = ContainerStdin(fifo, True, close)

    async def body(base: str, session: aiohttp.ClientSession) -> None:
        ws = await session.ws_connect(
            f"{base}/attach/ns/p/app?stdout=1&stdin=1", protocols=["v5.channel.k8s.io"], ssl=False
        )
        await ws.send_bytes(b"\x00hello ")
        await ws.send_str("\x00world\n")
        await ws.send_bytes(b"\xff\x00")  # the client's stdin has ended
        got = b""
        for _ in range(100):
            with contextlib.suppress(BlockingIOError):
                chunk = os.read(reader, 100)
                if not chunk and closed:
                    break  # end of file: every writer is gone
                got += chunk
            await asyncio.sleep(0.05)
        assert got == b"hello world\n"
        assert closed == [True]
        await ws.close()

    try:
        run(view, body)
    finally:
        os.close(reader)
