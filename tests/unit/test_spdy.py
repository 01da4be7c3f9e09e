"""The SPDY/3.1 codec (kubelet/spdy), alone: the spec's dictionary, round trips, frames cut
anywhere, and hostile input (whatever bytes arrive, in whatever pieces, feeding them raises
nothing but SpdyError, and never spends more than a bounded amount of memory or time on one
frame)."""

from __future__ import annotations

import contextlib
import hashlib
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.kubelet.spdy import (
    FLAG_FIN,
    MAX_FRAME,
    MAX_HEADERS,
    PING,
    RST_STREAM,
    SPDY_DICTIONARY,
    SYN_REPLY,
    SYN_STREAM,
    Frame,
    SpdyCodec,
    SpdyError,
)


def _syn_stream(raw_block: bytes, compress: bool = True) -> bytes:
    """A SYN_STREAM frame (stream 1) whose header block decompresses to `raw_block`."""
    if compress:
        deflate = zlib.compressobj(zdict=SPDY_DICTIONARY)
        raw_block = deflate.compress(raw_block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    body = struct.pack("!IIH", 1, 0, 0) + raw_block
    return struct.pack("!HHB", 0x8003, SYN_STREAM, 0) + len(body).to_bytes(3, "big") + body


def _feed(codec: SpdyCodec, wire: bytes, cuts: list[int]) -> None:
    at = 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        codec.feed(wire[at:cut])
        at = max(at, cut)
    codec.feed(wire[at:])


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=5))
def test_any_bytes_raise_only_spdy_errors(wire: bytes, cuts: list[int]) -> None:
    with contextlib.suppress(SpdyError):
        _feed(SpdyCodec(), wire, cuts)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_any_header_block_raises_only_spdy_errors(raw_block: bytes) -> None:
    try:
        frames = SpdyCodec().feed(_syn_stream(raw_block))
    except SpdyError:
        return
    assert all(isinstance(v, str) for f in frames for v in f.headers.values())


@given(
    st.lists(
        st.tuples(st.text(max_size=20), st.text(max_size=20)),
        max_size=10,
    ),
    st.integers(0, 2**32 - 1),
)
def test_header_counts_that_lie(pairs: list[tuple[str, str]], count: int) -> None:
    raw = struct.pack("!I", count)
    for name, value in pairs:
        n, v = name.encode(), value.encode()
        raw += struct.pack("!I", len(n)) + n + struct.pack("!I", len(v)) + v
    try:
        frames = SpdyCodec().feed(_syn_stream(raw))
    except SpdyError:
        return
    assert count <= MAX_HEADERS
    assert len(frames[0].headers) <= count


def test_a_header_count_of_four_billion_is_refused_at_once() -> None:
    with pytest.raises(SpdyError, match="headers in one block"):
        SpdyCodec().feed(_syn_stream(b"\xff\xff\xff\xff"))


def test_a_compressed_header_bomb_is_refused() -> None:
    bomb = struct.pack("!I", 1) + struct.pack("!I", 50_000_000) + b"a" * 50_000_000
    with pytest.raises(SpdyError, match="header block over"):
        SpdyCodec().feed(_syn_stream(bomb))


def test_an_oversized_frame_is_refused_before_it_is_buffered() -> None:
    head = struct.pack("!I", 1) + b"\x00" + (MAX_FRAME + 1).to_bytes(3, "big")
    with pytest.raises(SpdyError, match="frame of"):
        SpdyCodec().feed(head)


def test_not_compressed_header_block() -> None:
    with pytest.raises(SpdyError):
        SpdyCodec().feed(_syn_stream(b"\x00\x00\x00\x01plain", compress=False))


def test_spdy_dictionary_is_the_spec_one() -> None:
    assert len(SPDY_DICTIONARY) == 1423
    assert (
        hashlib.sha256(SPDY_DICTIONARY).hexdigest()
        == "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    )


def test_spdy_round_trip() -> None:
    client, server = SpdyCodec(), SpdyCodec()
    headers = {"streamtype": "data", "port": "80", "requestid": "0"}
    wire = client.syn_stream(1, headers) + client.syn_stream(3, {"port": "81"}, fin=True)
    wire += client.data(1, b"payload") + client.ping(7) + client.rst_stream(3, 5)
    frames = server.feed(wire)
    assert [(f.type, f.stream_id, f.fin) for f in frames] == [
        (SYN_STREAM, 1, False),
        (SYN_STREAM, 3, True),
        (0, 1, False),
        (PING, 0, False),
        (RST_STREAM, 3, False),
    ]
    assert frames[0].headers == headers
    assert frames[1].headers == {"port": "81"}  # shared compression state across blocks
    assert frames[2].data == b"payload"
    assert frames[3].value == 7
    assert frames[4].value == 5
    reply = server.feed(client.syn_stream(5, {"a": "b"}))  # still in step
    assert reply[0].headers == {"a": "b"}
    back = client.feed(server.syn_reply(1) + server.data(1, b"", fin=True))
    assert [(f.type, f.stream_id, f.fin) for f in back] == [(SYN_REPLY, 1, False), (0, 1, True)]


def test_spdy_feed_byte_by_byte() -> None:
    client, server = SpdyCodec(), SpdyCodec()
    wire = client.syn_stream(1, {"port": "1"}) + client.data(1, b"xyz", fin=True)
    frames: list[Frame] = []
    for i in range(len(wire)):
        frames += server.feed(wire[i : i + 1])
    assert [(f.type, f.data, f.flags) for f in frames] == [
        (SYN_STREAM, b"", 0),
        (0, b"xyz", FLAG_FIN),
    ]


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"\x80\x02\x00\x01\x00\x00\x00\x00", id="version-2"),
        pytest.param(b"\x80\x03\x00\x01\x00\x00\x00\x02ab", id="short-syn"),
        pytest.param(b"\x80\x03\x00\x01\x00\x00\x00\x0c" + b"\x00" * 12, id="bad-zlib"),
    ],
)
def test_spdy_rejects(wire: bytes) -> None:
    with pytest.raises(SpdyError):
        SpdyCodec().feed(wire)
