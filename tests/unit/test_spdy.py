"""The SPDY/3.1 codec (kubelet/spdy) under hostile input: whatever bytes arrive, in whatever
pieces, feeding them raises nothing but SpdyError, and never spends more than a bounded
amount of memory or time on one frame."""

from __future__ import annotations

import contextlib
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.kubelet.spdy import (
    MAX_FRAME,
    MAX_HEADERS,
    SPDY_DICTIONARY,
    SYN_STREAM,
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
