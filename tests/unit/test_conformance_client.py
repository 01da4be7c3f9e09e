"""The conformance suite's TLS steps on this machine: the self-signed Secret's certificate as
the Go code makes it, the client's SNI and captured certificate against a local TLS server,
and Go's hostname verification."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography import x509

from tests.e2e.ingress_conformance import client
from tests.e2e.ingress_conformance.steps import (
    State,
    StepFailed,
    self_signed,
    the_secure_connection_must_verify,
)


def test_the_secret_is_a_year_of_rsa_2048_for_the_host() -> None:
    cert_pem, key_pem = self_signed(["foo.bar.com"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert client.dns_names(cert) == ["foo.bar.com"]
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365
    assert cert.subject.rfc4514_string() == "CN=default,O=Acme Co"


@pytest.mark.parametrize(
    ("names", "host", "ok"),
    [
        (["foo.bar.com"], "foo.bar.com", True),
        (["foo.bar.com"], "FOO.bar.com", True),
        (["foo.bar.com"], "bar.com", False),
        (["*.foo.com"], "bar.foo.com", True),
        (["*.foo.com"], "a.bar.foo.com", False),
        (["*.foo.com"], "foo.com", False),
        (["10.0.0.1"], "10.0.0.1", True),
        (["10.0.0.1"], "10.0.0.2", False),
    ],
)
def test_hostname_verification_as_go(names: list[str], host: str, ok: bool) -> None:
    cert = x509.load_pem_x509_certificate(self_signed(names)[0])
    assert (client.verify_hostname(cert, host) is None) == ok


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"host": "%s", "service": "tls-svc"}' % self.headers["Host"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, list[str | None]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for foo.bar.com; the SNI names it
    was sent are recorded."""
    cert, key = self_signed(["foo.bar.com"])
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    seen: list[str | None] = []
    ctx.sni_callback = lambda _sock, name, _ctx: seen.append(name)  # type: ignore[assignment,func-returns-value]
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.server_address[1]), seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_client_sends_sni_and_captures_the_certificate(
    tls_server: tuple[int, list[str | None]],
) -> None:
    port, seen = tls_server
    req, resp = client.capture_round_trip("GET", "https", "foo.bar.com", "", f"127.0.0.1:{port}")
    assert seen == ["foo.bar.com"]
    assert (resp.status_code, req.host, req.service) == (200, "foo.bar.com", "tls-svc")
    state = State(request=req, response=resp)
    the_secure_connection_must_verify(None, state, "foo.bar.com")  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match="TLS hostname"):
        the_secure_connection_must_verify(None, state, "other.com")  # type: ignore[arg-type]
    # an address is no server name: no SNI, as Go
    client.capture_round_trip("GET", "https", "", "", f"127.0.0.1:{port}")
    assert seen[-1] is None


def test_a_refused_connection_is_a_step_failure_not_a_crash() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(client.RoundTripError):
        client.capture_round_trip("GET", "http", "x", "/", f"127.0.0.1:{port}")
