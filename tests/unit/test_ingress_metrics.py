"""Reading HAProxy's exporter answer: chunked, sized and close-delimited bodies; anything
malformed, partial or not a 200 gives None, never an exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.ingress.metrics import dechunk, response_body


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos = bytearray(), 0
    for n in sizes:
        piece = body[pos : pos + n]
        if not piece:
            break
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        pos += len(piece)
    if pos < len(body):
        out += b"%X;ext=1\r\n" % (len(body) - pos) + body[pos:] + b"\r\n"
    return bytes(out) + b"0\r\n\r\n"


def test_haproxy_s_answer() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\ncache-control: no-cache\r\n"
        b"content-type: text/plain; version=0.0.4\r\ntransfer-encoding: chunked\r\n"
        b"connection: close\r\n\r\n"
        b"1B\r\n# TYPE haproxy_x gauge\nhapr\r\n0f\r\noxy_x 1\nmore 2\n\r\n0\r\n\r\n"
    )
    assert response_body(raw) == b"# TYPE haproxy_x gauge\nhaproxy_x 1\nmore 2\n"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", id="404"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabc", id="short"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", id="negative"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length", id="no end of head"),
        pytest.param(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", id="header without colon"),
        pytest.param(b"SSH-2.0-x\r\n\r\n", id="not HTTP"),
        pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab", id="cut"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1_0\r\n" + b"a" * 16 + b"\r\n",
            id="underscore",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-1\r\n", id="sign"),
        pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n", id="no end"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\n",
            id="huge chunk",
        ),
    ],
)
def test_what_is_refused(raw: bytes) -> None:
    assert response_body(raw) is None


def test_sized_and_close_delimited() -> None:
    assert response_body(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc") == b"abc"
    assert response_body(b"HTTP/1.0 200 OK\r\n\r\nabc") == b"abc"


@given(st.binary(max_size=3000), st.lists(st.integers(1, 500), max_size=20))
def test_chunked_round_trip(body: bytes, sizes: list[int]) -> None:
    assert dechunk(chunked(body, sizes)) == body
    # trailers are dropped
    assert dechunk(chunked(body, sizes)[:-2] + b"x-trailer: 1\r\n\r\n") == body


@given(st.binary(max_size=2000))
def test_any_bytes_give_bytes_or_none(data: bytes) -> None:
    for raw in (data, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + data):
        out = response_body(raw)
        assert out is None or isinstance(out, bytes)
    out = dechunk(data)
    assert out is None or len(out) <= len(data)


@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(1, 500), max_size=20))
def test_any_cut_of_a_chunked_body_is_refused(body: bytes, sizes: list[int]) -> None:
    data = chunked(body, sizes)
    for cut in {1, len(data) // 2, len(data) - 1}:
        assert dechunk(data[:cut]) is None
