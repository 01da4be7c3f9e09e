"""The ingress-controller-conformance suite's echoserver
(k8s.gcr.io/ingressconformance/echoserver): answers every request with JSON describing it
(path, host, method, proto, headers) and where it runs (namespace, ingress, service, pod,
from the env vars NAMESPACE, INGRESS_NAME, SERVICE_NAME, POD_NAME); `/health` answers `OK`.
HTTP on HTTP_PORT (default 3000). Paths that are not clean (`/a/../b`) get Go's ServeMux
redirect (301) to the clean path, after `//` is folded to `/` as the original does.

Its HTTPS listener (TLS_SERVER_CERT, TLS_SERVER_PRIVKEY) is not built in: the variables are
ignored.
"""

from __future__ import annotations

import json
import os
import posixpath
import signal
import sys
from urllib.parse import quote, unquote, urlsplit

from kubesvc.node.images._runtime import (
    HttpService,
    Request,
    Response,
    SignalWaiter,
    emit,
)

DEFAULT_HTTP_PORT = "3000"
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def canonical_header_key(key: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey: `x-forwarded-for` -> `X-Forwarded-For`; a key
    with a character that is not a token character is left as it is."""
    if not key or any(ch not in _TOKEN for ch in key):
        return key
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


def header_map(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Go's Request.Header: canonical keys, values in order, without Host."""
    out: dict[str, list[str]] = {}
    for key, value in headers:
        name = canonical_header_key(key)
        if name == "Host":
            continue
        out.setdefault(name, []).append(value)
    return out


def clean_path(path: str) -> str:
    """net/http's cleanPath: path.Clean that keeps a trailing slash, rooted."""
    if not path:
        return "/"
    if not path.startswith("/"):
        path = "/" + path
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):  # normpath keeps a leading "//" (POSIX allows it)
        cleaned = "/" + cleaned.lstrip("/")
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def go_json(value: object) -> bytes:
    """encoding/json's MarshalIndent(v, "", " "): HTML characters escaped as Go does."""
    text = json.dumps(value, indent=1, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


class EchoServer:
    def __init__(self, namespace: str, ingress: str, service: str, pod: str) -> None:
        self.context = {"namespace": namespace, "ingress": ingress, "service": service, "pod": pod}

    def __call__(self, request: Request) -> Response:
        raw_path = urlsplit(request.target).path or "/"
        path = unquote(raw_path).replace("//", "/")  # preserveSlashes
        clean = clean_path(path)
        if clean != path:
            return self.redirect(request, clean)
        if clean == "/health":
            return Response(200, b"OK", [("Content-Type", "text/plain; charset=utf-8")])
        emit(
            sys.stdout,
            f"Echoing back request made to {request.target} to client ({request.remote_addr})",
        )
        body = {
            "path": request.target,
            "host": request.host,
            "method": request.method,
            "proto": request.version,
            "headers": header_map(request.headers),
            **self.context,
        }
        headers = [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")]
        return Response(200, go_json(body), headers)

    @staticmethod
    def redirect(request: Request, path: str) -> Response:
        query = urlsplit(request.target).query
        location = quote(path, safe="/:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")
        headers = [("Location", location)]
        body = b""
        if request.method in ("GET", "HEAD"):
            headers.append(("Content-Type", "text/html; charset=utf-8"))
            body = f'<a href="{_html_escape(location)}">Moved Permanently</a>.\n\n'.encode()
        return Response(301, body, headers)


def _html_escape(text: str) -> str:
    for ch, esc in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"), ("'", "&#39;")):
        text = text.replace(ch, esc)
    return text


def main(argv: list[str]) -> int:
    port = os.environ.get("HTTP_PORT", "") or DEFAULT_HTTP_PORT
    app = EchoServer(
        os.environ.get("NAMESPACE", ""),
        os.environ.get("INGRESS_NAME", ""),
        os.environ.get("SERVICE_NAME", ""),
        os.environ.get("POD_NAME", ""),
    )
    waiter = SignalWaiter((signal.SIGINT, signal.SIGTERM))
    emit(sys.stdout, f"Starting server, listening on port {port} (http)")
    try:
        server = HttpService(app, int(port)).start()
    except (OSError, ValueError) as exc:
        emit(sys.stderr, f"panic: Failed to start listening: listen tcp :{port}: {exc}\n")
        return 2
    waiter.wait()
    server.shutdown(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
