"""The WebSocket channel protocol (kubelet/wschannel): text and binary frames, base64
variants, v5 close messages, negotiation; and that no message, however malformed, makes the
decoder raise anything but ChannelError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.kubelet.wschannel import (
    NO_PROTOCOL,
    PORTFORWARD_PROTOCOLS,
    REMOTECOMMAND_PROTOCOLS,
    V1,
    V4,
    V4_BASE64,
    V5,
    ChannelError,
    ChannelProtocol,
    negotiate,
)

ALL = (*REMOTECOMMAND_PROTOCOLS, NO_PROTOCOL)


@pytest.mark.parametrize(
    ("protocol", "message", "want"),
    [
        pytest.param(V5, b"\x00hi", (0, b"hi"), id="binary"),
        pytest.param(V4, "\x00hé", (0, "hé".encode()), id="text"),
        pytest.param(V1, "\x04{}", (4, b"{}"), id="v1-text"),
        pytest.param(NO_PROTOCOL, b"\x01", (1, b""), id="no-protocol"),
        pytest.param(V4_BASE64, "0aGk=", (0, b"hi"), id="base64"),
        pytest.param(V4_BASE64, b"4e30=", (4, b"{}"), id="base64-binary-frame"),
        pytest.param(V5, b"\xff\x00", (255, b"\x00"), id="close"),
    ],
)
def test_decode(protocol: ChannelProtocol, message: bytes | str, want: tuple[int, bytes]) -> None:
    assert protocol.decode(message) == want


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        pytest.param(V5, b"", id="empty"),
        pytest.param(V4, "", id="empty-text"),
        pytest.param(V4_BASE64, " aGk=", id="base64-channel-below-0"),
        pytest.param(V4_BASE64, "0!!", id="base64-payload"),
        pytest.param(V4, "\x00\udc80", id="lone-surrogate"),
    ],
)
def test_decode_rejects(protocol: ChannelProtocol, message: bytes | str) -> None:
    with pytest.raises(ChannelError):
        protocol.decode(message)


def test_encode() -> None:
    assert V5.encode(1, b"out") == b"\x01out"
    assert V4_BASE64.encode(3, b"{}") == "3e30="


def test_close_is_v5_only() -> None:
    assert V5.closes and not V4.closes and not V4_BASE64.closes
    assert V5.closed_channel(255, b"\x00") == 0
    assert V5.closed_channel(255, b"") is None
    assert V5.closed_channel(0, b"\x00") is None


def test_negotiate_port_forward() -> None:
    names = lambda h: getattr(negotiate(h, PORTFORWARD_PROTOCOLS), "name", None)  # noqa: E731
    assert names("v5.channel.k8s.io, v4.channel.k8s.io") == "v4.channel.k8s.io"
    assert names("v4.base64.channel.k8s.io") == "v4.base64.channel.k8s.io"
    assert names("") == ""
    assert names("SPDY/3.1+portforward.k8s.io") is None


@given(
    st.sampled_from(ALL),
    st.one_of(st.binary(max_size=300), st.text(max_size=300)),
)
def test_decode_never_raises_anything_else(protocol: ChannelProtocol, message: bytes | str) -> None:
    try:
        channel, payload = protocol.decode(message)
    except ChannelError:
        return
    assert 0 <= channel <= 255 and isinstance(payload, bytes)


@given(st.sampled_from(ALL), st.integers(0, 79), st.binary(max_size=300))
def test_round_trip(protocol: ChannelProtocol, channel: int, payload: bytes) -> None:
    assert protocol.decode(protocol.encode(channel, payload)) == (channel, payload)


@given(st.text(max_size=200))
def test_negotiate_never_raises(header: str) -> None:
    got = negotiate(header, REMOTECOMMAND_PROTOCOLS)
    assert got is None or got in ALL
