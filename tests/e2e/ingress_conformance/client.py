"""The suite's HTTP client (test/http/http.go's CaptureRoundTrip), request for request: a new
connection each time, `Host` set to the hostname (the address when none), Go's own
`User-Agent: Go-http-client/1.1`, no `Accept-Encoding` (compression disabled), HTTP/1.1 with
no ALPN, TLS with SNI set to the hostname and the certificate not verified (only captured),
redirects followed by asking the same address again for the new scheme, host and path, and a
JSON body read as the echoserver's description of the request it got."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from cryptography import x509

from kubesvc.node.images.echoserver import canonical_header_key

TIMEOUT = 10.0  # HTTPClientTimeout
MAX_BODY = 1 << 20
MAX_REDIRECTS = 10  # Go's helper follows them without end; a loop must not hang the run
REDIRECTS = (301, 302, 303, 307, 308)
# Go's transport sends Content-Length: 0 for these methods when there is no body
BODY_METHODS = ("POST", "PUT", "PATCH")


class RoundTripError(Exception):
    pass


@dataclass
class CapturedRequest:
    """What the echoserver says it received (empty when the answer was not its JSON)."""

    path: str = ""
    host: str = ""
    method: str = ""
    proto: str = ""
    headers: dict[str, list[str]] = field(default_factory=dict)
    namespace: str = ""
    ingress: str = ""
    service: str = ""
    pod: str = ""


@dataclass
class CapturedResponse:
    status_code: int
    content_length: int  # -1 when the response did not say
    proto: str
    headers: dict[str, list[str]]
    tls_hostname: str = ""
    certificate: x509.Certificate | None = None


class _Connection(http.client.HTTPConnection):
    """HTTP/1.1 to `location`, over TLS with its own SNI when `tls` is given."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, sni: str | None) -> None:
        super().__init__(host, port, timeout=TIMEOUT)
        self.tls, self.sni = tls, sni

    def connect(self) -> None:
        super().connect()
        if self.tls is not None:
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.sni)


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed certificates: captured, checked by steps
    return ctx


def _split_location(location: str, scheme: str) -> tuple[str, int]:
    default = 443 if scheme == "https" else 80
    parts = urlsplit(f"//{location}")
    try:
        port = parts.port or default
    except ValueError as exc:
        raise RoundTripError(f"bad address {location!r}: {exc}") from None
    return parts.hostname or location, port


def capture_round_trip(
    method: str, scheme: str, hostname: str, path: str, location: str, redirects: int = 0
) -> tuple[CapturedRequest, CapturedResponse]:
    if scheme not in ("http", "https"):
        raise RoundTripError(f'unsupported protocol scheme "{scheme}"')
    target = "/" + path.removeprefix("/")
    url = f"{scheme}://{location}{target}"
    addr, port = _split_location(location, scheme)
    sni = hostname if scheme == "https" and hostname and not _is_ip(hostname) else None
    conn = _Connection(addr, port, _tls_context() if scheme == "https" else None, sni)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", hostname or location)
        conn.putheader("User-Agent", "Go-http-client/1.1")
        if method in BODY_METHODS:
            conn.putheader("Content-Length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read(MAX_BODY + 1)
        tls_hostname, certificate = _peer(conn.sock) if scheme == "https" else ("", None)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RoundTripError(f"{method} {url} (Host {hostname or location}): {exc!r}") from exc
    finally:
        conn.close()
    if len(body) > MAX_BODY:
        raise RoundTripError(f"{method} {url}: a body over {MAX_BODY} bytes")
    headers: dict[str, list[str]] = {}
    for key, value in resp.getheaders():
        headers.setdefault(canonical_header_key(key), []).append(value)
    if resp.status in REDIRECTS:
        if redirects >= MAX_REDIRECTS:
            raise RoundTripError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")
        where = resp.getheader("Location")
        if where is None:
            raise RoundTripError(f"{method} {url}: {resp.status} with no Location")
        nxt = urlsplit(urljoin(url, where))
        return capture_round_trip(
            method, nxt.scheme, _hostname(nxt.netloc), nxt.path, location, redirects + 1
        )
    length = resp.getheader("Content-Length")
    captured = CapturedResponse(
        status_code=resp.status,
        content_length=int(length) if length and length.isdigit() else -1,
        proto="HTTP/1.1" if resp.version == 11 else "HTTP/1.0",
        headers=headers,
        tls_hostname=tls_hostname,
        certificate=certificate,
    )
    return _echoed(body), captured


def _hostname(netloc: str) -> str:
    """Go's URL.Hostname(): no user info, no port, no brackets, case kept."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _peer(sock: socket.socket | None) -> tuple[str, x509.Certificate | None]:
    """The leaf certificate and its first DNS name, as the suite's VerifyPeerCertificate."""
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    if not der:
        raise RoundTripError("no certificate from the server")
    cert = x509.load_der_x509_certificate(der)
    names = dns_names(cert)
    if not names:
        raise RoundTripError("the server's certificate names no DNS name")
    return names[0], cert


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.DNSName))


def verify_hostname(cert: x509.Certificate, host: str) -> str | None:
    """Go's Certificate.VerifyHostname: None when `host` is one of the certificate's names
    (an IP among its IP SANs; a DNS name among its DNS SANs, `*.` covering one label),
    else why not. The Common Name is not used (Go 1.15 and later)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "x509: certificate is not valid for any names"
    if _is_ip(host):
        ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
        return None if str(ipaddress.ip_address(host)) in ips else f"not valid for {host}"
    wanted = host.lower().rstrip(".")
    for name in san.get_values_for_type(x509.DNSName):
        pattern = name.lower()
        if pattern == wanted:
            return None
        first, _, rest = wanted.partition(".")
        if pattern.startswith("*.") and first and rest == pattern[2:]:
            return None
    return f"x509: certificate is valid for {', '.join(dns_names(cert))}, not {host}"


_FIELDS = ("path", "host", "method", "proto", "namespace", "ingress", "service", "pod")


def _echoed(body: bytes) -> CapturedRequest:
    """The echoserver's JSON, read as encoding/json into CapturedRequest (keys matched
    without case; a value of the wrong type is an error); anything else: empty."""
    try:
        doc = json.loads(body)
    except ValueError:
        return CapturedRequest()
    if not isinstance(doc, dict):
        return CapturedRequest()
    by_lower: dict[str, Any] = {str(k).lower(): v for k, v in doc.items()}
    out = CapturedRequest()
    for name in _FIELDS:
        value = by_lower.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise RoundTripError(f"unexpected error reading response: {name} is {value!r}")
        setattr(out, name, value)
    headers = by_lower.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in headers.values()
        ):
            raise RoundTripError("unexpected error reading response: headers")
        out.headers = {str(k): list(v) for k, v in headers.items()}
    return out
