"""The luksa/kubia images from "Kubernetes in Action": a Node.js server on 8080 answering
with the pod's hostname. Variants: `unhealthy` (500 after the 5th request), `v1`..`v4`
(the rolling-update chapter; v3 fails from the 5th request on).
"""

from __future__ import annotations

import signal
import socket
import sys
import threading

from kubesvc.node.images._runtime import HttpService, Request, Response, SignalWaiter, emit

PORT = 8080
PORT_FLAG = "--kubesvc-port="
VARIANTS = ("default", "unhealthy", "v1", "v2", "v3", "v4")


class Kubia:
    def __init__(self, variant: str, hostname: str) -> None:
        self.variant = variant
        self.hostname = hostname
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        emit(sys.stdout, f"Received request from {node_remote_address(request.client[0])}")
        with self._lock:
            self.count += 1
            count = self.count
        status, body = self.answer(count)
        return Response(status=status, body=body.encode())

    def answer(self, count: int) -> tuple[int, str]:
        if self.variant == "unhealthy" and count > 5:
            return 500, "I'm not well. Please restart me!"
        if self.variant == "v3" and count >= 5:
            return 500, f"Some internal error has occurred! This is pod {self.hostname}\n"
        if self.variant in ("v1", "v2", "v3", "v4"):
            return 200, f"This is {self.variant} running in pod {self.hostname}\n"
        return 200, f"You've hit {self.hostname}\n"


def node_remote_address(ip: str) -> str:
    """Node listens dual-stack, so IPv4 peers show as IPv4-mapped IPv6 addresses."""
    return ip if ":" in ip else f"::ffff:{ip}"


def main(argv: list[str]) -> int:
    variant, port = "default", PORT
    for arg in argv:
        if arg.startswith("--variant="):
            variant = arg.split("=", 1)[1]
        elif arg.startswith(PORT_FLAG):
            port = int(arg[len(PORT_FLAG) :])
    if variant not in VARIANTS:
        variant = "default"
    waiter = SignalWaiter((signal.SIGTERM, signal.SIGINT))
    emit(sys.stdout, "Kubia server starting...")
    try:
        server = HttpService(Kubia(variant, socket.gethostname()), port).start()
    except OSError as exc:
        emit(sys.stderr, f"Error: listen: {(exc.strerror or str(exc)).lower()} :::{port}")
        return 1
    waiter.wait()
    emit(sys.stdout, "Received SIGTERM. Shutting down.")
    server.shutdown(5.0)
    emit(sys.stdout, "HTTP server has shut down. Process exiting.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
