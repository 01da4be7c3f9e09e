"""The WebSocket channel protocol (k8s.io/apimachinery/pkg/util/httpstream/wsstream), sans I/O:
streams multiplexed over one WebSocket, each message one channel's data.

A message's first byte is its channel and the rest its payload, whether it came as a binary
or a text frame (the official Python client sends stdin as text, with the channel as the
first character). The base64 variants (`base64.channel.k8s.io`, `v4.base64.channel.k8s.io`)
write the channel as an ASCII digit ('0' + channel) and the payload in base64, in text
frames. `v5.channel.k8s.io` adds channel 255: a message [255, N] closes channel N (stdin's
end of file). Which channels exist is up to the protocol on top (exec, attach, port-forward).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

CLOSE = 255  # v5: [CLOSE, channel] ends that channel
BASE64_CHANNELS = 80  # '0' + channel stays ASCII, as a text frame needs


class ChannelError(ValueError):
    """A message that is not one of the protocol's; the connection drops it."""


@dataclass(frozen=True)
class ChannelProtocol:
    name: str  # the WebSocket subprotocol; "" when the client offered none
    base64: bool = False  # text frames: '0' + channel, then the payload in base64
    closes: bool = False  # v5: channel 255 closes a channel
    status: bool = True  # v4 and later: the error channel carries a metav1.Status

    def decode(self, data: bytes | str) -> tuple[int, bytes]:
        """(channel, payload) of one message from the peer (a text frame's text or a binary
        frame's bytes); ChannelError if it is not a message of this protocol."""
        if isinstance(data, str):
            try:
                raw = data.encode("utf-8")
            except UnicodeEncodeError:
                raise ChannelError("text frame that is not UTF-8") from None
        else:
            raw = bytes(data)
        if not raw:
            raise ChannelError("empty message")
        channel, payload = raw[0], raw[1:]
        if not self.base64:
            return channel, payload
        channel -= ord("0")
        if not 0 <= channel < BASE64_CHANNELS:
            raise ChannelError(f"channel {raw[:1]!r} is not '0' + a channel number")
        try:
            return channel, base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ChannelError("payload is not base64") from None

    def encode(self, channel: int, payload: bytes) -> bytes | str:
        """One message to the peer: bytes for a binary frame, str for a text frame."""
        if self.base64:
            return chr(ord("0") + channel) + base64.b64encode(payload).decode("ascii")
        return bytes([channel]) + payload

    @staticmethod
    def closed_channel(channel: int, payload: bytes) -> int | None:
        """The channel a v5 close message ends, or None if the message is not one."""
        if channel != CLOSE or not payload:
            return None
        return payload[0]


NO_PROTOCOL = ChannelProtocol("")
V5 = ChannelProtocol("v5.channel.k8s.io", closes=True)
V4 = ChannelProtocol("v4.channel.k8s.io")
V4_BASE64 = ChannelProtocol("v4.base64.channel.k8s.io", base64=True)
V1 = ChannelProtocol("channel.k8s.io", status=False)
V1_BASE64 = ChannelProtocol("base64.channel.k8s.io", base64=True, status=False)

# what upstream's remotecommand and portforward WebSocket handlers accept, besides no
# subprotocol at all (binary frames, as the first version)
REMOTECOMMAND_PROTOCOLS = (V5, V4, V4_BASE64, V1, V1_BASE64)
PORTFORWARD_PROTOCOLS = (V4, V4_BASE64)


def offered_protocols(header: str) -> list[str]:
    return [p.strip() for p in header.split(",") if p.strip()]


def negotiate(header: str, supported: tuple[ChannelProtocol, ...]) -> ChannelProtocol | None:
    """The protocol for a client's Sec-WebSocket-Protocol header: the first it offers that is
    supported, in the client's order as upstream's handshake picks; no protocol when it
    offers none; None when nothing it offers is supported."""
    offered = offered_protocols(header)
    if not offered:
        return NO_PROTOCOL
    by_name = {p.name: p for p in supported}
    for name in offered:
        if name in by_name:
            return by_name[name]
    return None


__all__ = [
    "CLOSE",
    "NO_PROTOCOL",
    "PORTFORWARD_PROTOCOLS",
    "REMOTECOMMAND_PROTOCOLS",
    "ChannelError",
    "ChannelProtocol",
    "negotiate",
    "offered_protocols",
]
