"""A WebSocket echo server on the standard library only (a pod runs it with the plain
`python` image): `python3 ws_echo.py PORT NAME`. A WebSocket upgrade on any path echoes
each text message back prefixed with NAME and the request's X-Forwarded-Proto; any other
GET answers NAME. Enough of RFC 6455 for tests: unfragmented frames, text, ping, close."""

from __future__ import annotations

import base64
import hashlib
import socketserver
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(opcode: int, data: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    if len(data) < 126:
        return head + bytes([len(data)]) + data
    if len(data) < 65536:
        return head + bytes([126]) + struct.pack("!H", len(data)) + data
    return head + bytes([127]) + struct.pack("!Q", len(data)) + data


class Handler(socketserver.StreamRequestHandler):
    name = "ws"

    def handle(self) -> None:
        lines = []
        while (line := self.rfile.readline(8192)) not in (b"\r\n", b"\n", b""):
            lines.append(line.decode("latin-1").strip())
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        key = headers.get("sec-websocket-key")
        if headers.get("upgrade", "").lower() != "websocket" or not key:
            body = self.name.encode()
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        self.wfile.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        prefix = f"{self.name} {headers.get('x-forwarded-proto', '-')}: ".encode()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", self.rfile.read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(size)))
            if opcode == 8:
                self.wfile.write(_frame(8, data[:2]))
                return
            if opcode == 9:
                self.wfile.write(_frame(10, data))
            elif opcode == 1:
                self.wfile.write(_frame(1, prefix + data))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    Handler.name = sys.argv[2] if len(sys.argv) > 2 else "ws"
    with Server(("0.0.0.0", int(sys.argv[1])), Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
