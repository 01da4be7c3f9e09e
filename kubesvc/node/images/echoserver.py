"""The ingress-controller-conformance suite's echoserver
(k8s.gcr.io/ingressconformance/echoserver): answers every request with JSON describing it
(path, host, method, proto, headers) and where it runs (namespace, ingress, service, pod,
from the env vars NAMESPACE, INGRESS_NAME, SERVICE_NAME, POD_NAME); `/health` answers `OK`.
HTTP on HTTP_PORT (default 3000). Paths that are not clean (`/a/../b`) get Go's ServeMux
redirect (301) to the clean path, after `//` is folded to `/` as the original does.

With TLS_SERVER_CERT and TLS_SERVER_PRIVKEY (file paths) it also serves HTTPS on HTTPS_PORT
(default 8443), and the answer gains `tls` (version, serverName, cipherSuite by Go's names,
peerCertificates when the client sent one: TLS_CLIENT_CACERTS names the CAs that verify it,
a client without a certificate is let in). It offers HTTP/1.1 only (Go's server also offers
HTTP/2 by ALPN).
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from kubesvc.node.images._runtime import (
    HttpService,
    Request,
    Response,
    SignalWaiter,
    emit,
)

DEFAULT_HTTP_PORT = "3000"
DEFAULT_HTTPS_PORT = "8443"
# OpenSSL's names of the TLS 1.2 suites Go's server offers, as crypto/tls names them (TLS 1.3
# suites have the same name in both)
GO_CIPHER_NAMES = {
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}
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
        tls = tls_state(request.connection)
        if tls is not None:
            body["tls"] = tls
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


def tls_state(conn: object) -> dict[str, object] | None:
    """tlsStateToAssertions: None on a plain connection."""
    version = getattr(conn, "version", None)
    if not callable(version) or not isinstance(conn, socket.socket):
        return None
    state: dict[str, object] = {"version": version() or ""}
    der = conn.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    if der:
        b64 = base64.encodebytes(der).decode().replace("\n", "")
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        pem = "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
        state["peerCertificates"] = [pem]
    state["serverName"] = getattr(conn, "kubesvc_sni", None) or ""
    alpn = conn.selected_alpn_protocol()  # type: ignore[attr-defined]
    if alpn:
        state["negotiatedProtocol"] = alpn
    cipher = conn.cipher()  # type: ignore[attr-defined]
    name = cipher[0] if cipher else ""
    state["cipherSuite"] = GO_CIPHER_NAMES.get(name, name)
    return state


def tls_wrap(cert: str, key: str, client_ca: str) -> Callable[[socket.socket], socket.socket]:
    """What wraps each HTTPS connection: the server's certificate, the client's optional."""
    import ssl  # only when serving HTTPS: pods should start fast

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # tls.VerifyClientCertIfGiven

    def remember_sni(sock: Any, name: str | None, _ctx: object) -> None:
        sock.kubesvc_sni = name or ""

    ctx.sni_callback = remember_sni

    def wrap(sock: socket.socket) -> socket.socket:
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)

    return wrap


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
    servers: list[HttpService] = []
    emit(sys.stdout, f"Starting server, listening on port {port} (http)")
    cert, key = os.environ.get("TLS_SERVER_CERT", ""), os.environ.get("TLS_SERVER_PRIVKEY", "")
    https_port = os.environ.get("HTTPS_PORT", "") or DEFAULT_HTTPS_PORT
    try:
        servers.append(HttpService(app, int(port)).start())
        if cert and key:
            emit(sys.stdout, f"Starting server, listening on port {https_port} (https)")
            wrap = tls_wrap(cert, key, os.environ.get("TLS_CLIENT_CACERTS", ""))
            servers.append(HttpService(app, int(https_port), wrap=wrap).start())
    except (OSError, ValueError) as exc:
        emit(sys.stderr, f"panic: Failed to start listening: {exc}\n")
        return 2
    waiter.wait()
    for server in servers:
        server.shutdown(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
