"""The kubelet API on a plain SPDY/3.1 upgrade (no WebSocket): exec, attach and port-forward
as client-go's SPDY executor and port forwarder speak them, the handshake's refusals, and
hostile bytes after the 101. The node server runs on 127.0.0.1 against the fake runtime
view of test_kubelet_server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.kubelet.channels import SpdyChannels, expected_streams
from kubesvc.kubelet.server import KubeletServer
from kubesvc.kubelet.spdy import GOAWAY, PING, RST_STREAM, SYN_REPLY, SpdyCodec
from kubesvc.kubelet.upgrade import (
    PROTOCOL_HEADER,
    UpgradeError,
    UpgradeReply,
    parse_head,
    request_upgrade,
)
from tests.unit.test_kubelet_server import HOST_ENV, TOKEN, FakeView, _cri, echo_server


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def upgrade(port: int, target: str, versions: list[str], token: str = TOKEN) -> UpgradeReply:
    headers = [
        ("Authorization", f"Bearer {token}"),
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
        *[(PROTOCOL_HEADER, v) for v in versions],
    ]
    return await request_upgrade("127.0.0.1", port, target, headers, _insecure(), 10)


class SpdyClient:
    """The client half of SPDY on an upgraded connection, as client-go speaks it."""

    def __init__(self, reply: UpgradeReply) -> None:
        self.reply, self.codec = reply, SpdyCodec()
        self.next_id = 1
        self.data: dict[int, bytearray] = {}
        self.finished: set[int] = set()
        self.replied: set[int] = set()
        self.reset: set[int] = set()
        self.pongs: list[int] = []
        self.goaway = False
        self.ended = False

    async def open(self, headers: dict[str, str], fin: bool = False) -> int:
        sid, self.next_id = self.next_id, self.next_id + 2
        self.data[sid] = bytearray()
        await self.write(self.codec.syn_stream(sid, headers, fin))
        return sid

    async def write(self, raw: bytes) -> None:
        self.reply.writer.write(raw)
        await self.reply.writer.drain()

    async def send(self, sid: int, data: bytes, fin: bool = False) -> None:
        await self.write(self.codec.data(sid, data, fin))

    async def pump_until(self, done: Callable[[], bool]) -> None:
        while not done() and not self.ended:
            chunk = await self.reply.reader.read(65536)
            if not chunk:
                self.ended = True
                break
            for f in self.codec.feed(chunk):
                if f.type == SYN_REPLY:
                    self.replied.add(f.stream_id)
                elif f.type == RST_STREAM:
                    self.reset.add(f.stream_id)
                elif f.type == PING:
                    self.pongs.append(f.value)
                elif f.type == GOAWAY:
                    self.goaway = True
                elif f.type == 0:
                    self.data.setdefault(f.stream_id, bytearray()).extend(f.data)
                    if f.fin:
                        self.finished.add(f.stream_id)
        assert done(), "the connection ended first"

    async def pump_to_end(self) -> None:
        await self.pump_until(lambda: self.ended)


def run(view: FakeView, body: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        server = KubeletServer(view, TOKEN, "127.0.0.1", 0)
        await server.start()
        try:
            await asyncio.wait_for(body(server.port), 30)
        finally:
            await server.stop()

    asyncio.run(main())


@pytest.fixture
def view(tmp_path: Path) -> FakeView:
    v = FakeView(tmp_path)
    v.add("ns", "p", ["app", "side"], env=HOST_ENV)
    v.write_log("ns", "p", "app", "")
    return v


def _exec_target(command: list[str], *streams: str) -> str:
    query = urlencode([("command", c) for c in command] + [(s, "1") for s in streams])
    return f"/exec/ns/p/app?{query}"


async def open_streams(client: SpdyClient, *kinds: str) -> dict[str, int]:
    """Open the streams in client-go's order (error first) and wait for the replies."""
    ids = {kind: await client.open({"streamtype": kind}) for kind in ("error", *kinds)}
    await client.pump_until(lambda: set(ids.values()) <= client.replied)
    return ids


# -- exec -----------------------------------------------------------------------------------


def test_exec_streams_and_status(view: FakeView) -> None:
    async def body(port: int) -> None:
        reply = await upgrade(
            port,
            _exec_target(["sh", "-c", "echo hi; echo err >&2"], "stdout", "stderr"),
            ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io"],
        )
        assert reply.status == 101
        assert reply.headers["Upgrade"] == "SPDY/3.1"
        assert reply.headers[PROTOCOL_HEADER] == "v4.channel.k8s.io"  # v5 is WebSocket only
        client = SpdyClient(reply)
        ids = await open_streams(client, "stdout", "stderr")
        await client.pump_to_end()
        assert client.data[ids["stdout"]] == b"hi\n"
        assert client.data[ids["stderr"]] == b"err\n"
        assert json.loads(client.data[ids["error"]]) == {"metadata": {}, "status": "Success"}
        assert {ids["stdout"], ids["stderr"], ids["error"]} <= client.finished
        assert client.goaway

    run(view, body)


@pytest.mark.parametrize(
    ("version", "want"),
    [
        pytest.param("v4.channel.k8s.io", None, id="v4-status"),
        pytest.param(
            "v3.channel.k8s.io",
            b"command terminated with non-zero exit code: error executing command "
            b"[sh -c exit 3], exit code 3",
            id="v3-message",
        ),
        pytest.param("channel.k8s.io", b"command terminated", id="v1-message"),
    ],
)
def test_exec_exit_code(view: FakeView, version: str, want: bytes | None) -> None:
    async def body(port: int) -> None:
        reply = await upgrade(port, _exec_target(["sh", "-c", "exit 3"], "stdout"), [version])
        assert reply.headers[PROTOCOL_HEADER] == version
        client = SpdyClient(reply)
        ids = await open_streams(client, "stdout")
        await client.pump_to_end()
        error = bytes(client.data[ids["error"]])
        if want is None:
            status = json.loads(error)
            assert status["reason"] == "NonZeroExitCode"
            assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
        else:
            assert error.startswith(want)

    run(view, body)


def test_exec_stdin_until_its_stream_ends(view: FakeView) -> None:
    async def body(port: int) -> None:
        reply = await upgrade(port, _exec_target(["cat"], "stdin", "stdout"), ["v4.channel.k8s.io"])
        client = SpdyClient(reply)
        ids = await open_streams(client, "stdin", "stdout")
        await client.send(ids["stdin"], b"hello ")
        await client.send(ids["stdin"], b"world\n", fin=True)  # kubectl: local stdin's end
        await client.pump_to_end()
        assert client.data[ids["stdout"]] == b"hello world\n"
        assert json.loads(client.data[ids["error"]])["status"] == "Success"

    run(view, body)


def test_exec_terminal_and_resize(view: FakeView) -> None:
    async def body(port: int) -> None:
        target = _exec_target(
            ["sh", "-c", "read x; stty size; echo got $x"], "stdin", "stdout", "tty"
        )
        client = SpdyClient(await upgrade(port, target, ["v4.channel.k8s.io"]))
        ids = await open_streams(client, "stdin", "stdout", "resize")
        # client-go writes one JSON object a line; split across frames here
        await client.send(ids["resize"], b'{"Width":91,')
        await client.send(ids["resize"], b'"Height":17}\n')
        await asyncio.sleep(0.2)
        await client.send(ids["stdin"], b"abc\r")
        await client.pump_to_end()
        text = client.data[ids["stdout"]].decode()
        assert "17 91" in text and "got abc" in text

    run(view, body)


def test_exec_waits_for_every_stream(view: FakeView) -> None:
    """Output starts only once the streams the query asked for exist (the kubelet's
    waitForStreams): here stderr comes last and still gets everything."""

    async def body(port: int) -> None:
        target = _exec_target(["sh", "-c", "echo early >&2"], "stdout", "stderr")
        client = SpdyClient(await upgrade(port, target, ["v4.channel.k8s.io"]))
        error = await client.open({"streamtype": "error"})
        stdout = await client.open({"streamtype": "stdout"})
        await asyncio.sleep(0.3)
        stderr = await client.open({"streamtype": "stderr"})
        await client.pump_to_end()
        assert {error, stdout, stderr} <= client.replied
        assert client.data[stderr] == b"early\n"

    run(view, body)


def test_stream_counts_are_bounded(view: FakeView) -> None:
    async def body(port: int) -> None:
        target = _exec_target(["cat"], "stdin", "stdout")
        client = SpdyClient(await upgrade(port, target, ["v4.channel.k8s.io"]))
        ids = [await client.open({"streamtype": "other"}) for _ in range(9)]
        await client.pump_until(lambda: ids[-1] in client.reset)
        assert set(ids[:8]) <= client.replied

    run(view, body)


# -- attach ---------------------------------------------------------------------------------


def test_attach(view: FakeView) -> None:
    log = view.pods[("ns", "p")].logs["app"]

    async def body(port: int) -> None:
        target = "/attach/ns/p/app?stdout=1&stderr=1"
        client = SpdyClient(await upgrade(port, target, ["v4.channel.k8s.io"]))
        ids = await open_streams(client, "stdout", "stderr")
        await asyncio.sleep(0.3)
        with open(log, "a") as f:
            f.write(_cri("stdout", "out") + _cri("stderr", "oops"))
        await asyncio.sleep(0.5)
        view.pods[("ns", "p")].running = False
        await client.pump_to_end()
        assert client.data[ids["stdout"]] == b"out\n"
        assert client.data[ids["stderr"]] == b"oops\n"
        assert json.loads(client.data[ids["error"]]) == {"metadata": {}, "status": "Success"}

    run(view, body)


# -- port-forward ---------------------------------------------------------------------------


def test_port_forward(view: FakeView) -> None:
    async def body(port: int) -> None:
        async with echo_server() as echo:
            reply = await upgrade(port, "/portForward/ns/p", ["portforward.k8s.io"])
            assert reply.status == 101
            assert reply.headers[PROTOCOL_HEADER] == "portforward.k8s.io"
            client = SpdyClient(reply)
            for request_id, payload in enumerate((b"hello", b"again")):
                base = {"port": str(echo), "requestid": str(request_id)}
                err = await client.open({**base, "streamtype": "error"}, fin=True)
                data = await client.open({**base, "streamtype": "data"})
                await client.send(data, payload, fin=True)
                await client.pump_until(lambda e=err, d=data: {e, d} <= client.finished)  # type: ignore[misc]
                assert client.data[data] == payload.upper()
                assert client.data[err] == b""
            await client.write(client.codec.ping(1))
            await client.pump_until(lambda: client.pongs == [1])
            reply.close()

    run(view, body)


# -- the handshake --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "versions", "token", "code", "message"),
    [
        pytest.param(
            "/exec/ns/p/app?command=true&stdout=1",
            ["v5.channel.k8s.io", "v9"],
            TOKEN,
            403,
            "unable to upgrade: unable to negotiate protocol: client supports "
            "[v5.channel.k8s.io v9], server accepts [v4.channel.k8s.io v3.channel.k8s.io "
            "v2.channel.k8s.io channel.k8s.io]",
            id="no-common-version",
        ),
        pytest.param(
            "/exec/ns/p/app?command=true&stdout=1",
            [],
            TOKEN,
            400,
            "unable to upgrade: X-Stream-Protocol-Version is required",
            id="no-version",
        ),
        pytest.param(
            "/portForward/ns/p",
            ["v4.channel.k8s.io"],
            TOKEN,
            403,
            "server accepts [portforward.k8s.io]",
            id="port-forward-version",
        ),
        pytest.param(
            "/exec/ns/nope/app?command=true&stdout=1",
            ["v4.channel.k8s.io"],
            TOKEN,
            404,
            "pod does not exist",
            id="no-pod",
        ),
        pytest.param(
            "/exec/ns/p/app?command=true&stdout=1",
            ["v4.channel.k8s.io"],
            "wrong",
            401,
            "Unauthorized",
            id="no-token",
        ),
    ],
)
def test_refused_upgrades(
    view: FakeView, target: str, versions: list[str], token: str, code: int, message: str
) -> None:
    async def body(port: int) -> None:
        reply = await upgrade(port, target, versions, token)
        try:
            assert reply.status == code
            assert message in (await reply.body(5)).decode()
        finally:
            reply.close()

    run(view, body)


# -- hostile input --------------------------------------------------------------------------


def test_garbage_after_the_upgrade_closes_the_connection(view: FakeView) -> None:
    async def body(port: int) -> None:
        for target, version in (
            (_exec_target(["cat"], "stdin", "stdout"), "v4.channel.k8s.io"),
            ("/portForward/ns/p", "portforward.k8s.io"),
        ):
            reply = await upgrade(port, target, [version])
            reply.writer.write(b"\x80\x02\x00\x01\x00\x00\x00\x00")  # SPDY/2: not spoken
            await reply.writer.drain()
            rest = await asyncio.wait_for(reply.reader.read(), 5)  # to the end: it is closed
            assert {f.type for f in SpdyCodec().feed(rest)} <= {GOAWAY}
            reply.close()
        # and the node goes on serving
        client = SpdyClient(await upgrade(port, _exec_target(["true"], "stdout"), [SPDY4]))
        ids = await open_streams(client, "stdout")
        await client.pump_to_end()
        assert json.loads(client.data[ids["error"]])["status"] == "Success"

    run(view, body)


SPDY4 = "v4.channel.k8s.io"


class MemoryDuplex:
    """A Duplex over fixed client bytes; what the node writes is collected."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.written = bytearray()

    async def read(self) -> bytes:
        await asyncio.sleep(0)
        return self.chunks.pop(0) if self.chunks else b""

    async def write(self, data: bytes) -> None:
        self.written += data


def _frames() -> st.SearchStrategy[bytes]:
    """Well-formed frames with arbitrary contents, and arbitrary bytes."""
    codec = SpdyCodec()
    kinds = st.sampled_from(["error", "stdin", "stdout", "stderr", "resize", "", "x" * 300])
    syn = st.builds(
        lambda sid, kind: codec.syn_stream(sid, {"streamtype": kind}),
        st.integers(0, 20),
        kinds,
    )
    data = st.builds(
        lambda sid, payload, fin: SpdyCodec.data(sid, payload, fin),
        st.integers(0, 20),
        st.binary(max_size=200),
        st.booleans(),
    )
    control = st.builds(
        lambda kind, payload: (
            b"\x80\x03"
            + kind.to_bytes(2, "big")
            + b"\x00"
            + len(payload).to_bytes(3, "big")
            + payload
        ),
        st.integers(0, 12),
        st.binary(max_size=40),
    )
    return st.one_of(syn, data, control, st.binary(max_size=64))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames(), max_size=12), st.booleans(), st.booleans())
def test_spdy_channels_survive_any_input(chunks: list[bytes], stdin: bool, tty: bool) -> None:
    """Whatever a client sends, accepting the streams ends (in time), reading what it sent
    ends with its bytes, and closing never raises."""

    async def main() -> None:
        conn = MemoryDuplex(chunks)
        expected = expected_streams(SPDY4, stdin, True, not tty, tty)
        channels = SpdyChannels(conn, SPDY4, expected)
        if await channels.accept(timeout=1):
            async for channel, payload in channels.receive():
                assert channel in (0, 4)
                assert payload is None or isinstance(payload, bytes)
                await channels.send(1, b"out")
        await channels.close()

    asyncio.run(asyncio.wait_for(main(), 10))


@given(st.binary(max_size=300))
def test_parse_head_raises_only_its_error(head: bytes) -> None:
    try:
        status, headers = parse_head(head)
    except UpgradeError:
        return
    assert status >= 0 and all(isinstance(v, str) for v in headers.values())


def test_parse_head() -> None:
    status, headers = parse_head(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        b"X-Stream-Protocol-Version: v4.channel.k8s.io"
    )
    assert status == 101
    assert headers["x-stream-protocol-version"] == "v4.channel.k8s.io"
    for bad in (b"", b"SSH-2.0-x", b"HTTP/1.1 abc", b"HTTP/1.1 200 OK\r\nno colon"):
        with pytest.raises(UpgradeError):
            parse_head(bad)


def test_fuzz_bytes_against_the_node(view: FakeView) -> None:
    """Random bytes after the 101 (a seeded stream of frames and noise): the node ends or
    keeps each connection without failing, and goes on serving."""
    import random

    rng = random.Random(4)
    codec = SpdyCodec()

    def noise() -> bytes:
        pick = rng.random()
        if pick < 0.3:
            return codec.syn_stream(
                rng.randrange(0, 9), {"streamtype": rng.choice(["stdin", "stdout", "error", "zz"])}
            )
        if pick < 0.6:
            return SpdyCodec.data(
                rng.randrange(0, 9), rng.randbytes(rng.randrange(0, 50)), rng.random() < 0.3
            )
        return rng.randbytes(rng.randrange(1, 40))

    async def body(port: int) -> None:
        for i in range(40):
            target, version = (
                (_exec_target(["cat"], "stdin", "stdout"), SPDY4)
                if i % 2
                else ("/portForward/ns/p", "portforward.k8s.io")
            )
            reply = await upgrade(port, target, [version])
            assert reply.status == 101
            reply.writer.write(b"".join(noise() for _ in range(rng.randrange(1, 8))))
            await reply.writer.drain()
            with contextlib.suppress(TimeoutError):  # waiting for more: allowed
                await asyncio.wait_for(reply.reader.read(1 << 20), 0.3)
            reply.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        client = SpdyClient(await upgrade(port, _exec_target(["echo", "ok"], "stdout"), [SPDY4]))
        ids = await open_streams(client, "stdout")
        await client.pump_to_end()
        assert client.data[ids["stdout"]] == b"ok\n"

    run(view, body)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([("Content-Length", "10")], id="a-body-that-never-comes"),
        pytest.param([("Transfer-Encoding", "chunked")], id="chunked"),
        pytest.param([("Connection", "close")], id="two-connection-headers"),
    ],
)
def test_odd_upgrade_requests_end_cleanly(view: FakeView, extra: list[tuple[str, str]]) -> None:
    """An upgrade request that also claims a body: the node answers, and whatever follows
    is SPDY or nothing; the connection ends when the client leaves, the node serves on."""

    async def body(port: int) -> None:
        headers = [
            ("Authorization", f"Bearer {TOKEN}"),
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            (PROTOCOL_HEADER, SPDY4),
            *extra,
        ]
        target = _exec_target(["cat"], "stdin", "stdout")
        reply = await request_upgrade("127.0.0.1", port, target, headers, _insecure(), 10)
        assert reply.status in (101, 400)
        reply.writer.write(b"0123456789" * 3)
        await reply.writer.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reply.reader.read(), 3)
        reply.close()
        client = SpdyClient(await upgrade(port, _exec_target(["echo", "ok"], "stdout"), [SPDY4]))
        ids = await open_streams(client, "stdout")
        await client.pump_to_end()
        assert client.data[ids["stdout"]] == b"ok\n"

    run(view, body)
