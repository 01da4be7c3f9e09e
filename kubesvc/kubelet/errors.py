"""Refusals of the kubelet API: a request the node turns down before any stream starts."""

from __future__ import annotations

from aiohttp import web

ERROR_HEADER = "X-Kubelet-Error"  # the error text of a refused upgrade, for the API server


class NodeError(Exception):
    """A request the node refuses before any stream starts: HTTP status and plain text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(err: NodeError) -> web.Response:
    resp = web.Response(status=err.status, text=err.message)
    resp.headers[ERROR_HEADER] = " ".join(err.message.split())
    return resp


def flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")
