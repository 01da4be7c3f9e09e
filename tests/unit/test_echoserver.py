"""The conformance suite's echoserver image: resolved by the names the suite uses, its JSON
answer (the fields the suite's client reads), Go's header canonicalisation and ServeMux
redirects, hostile requests, and the real process asked by the suite's own client."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.node.images import resolve
from kubesvc.node.images._runtime import BIND_ENV, Request
from kubesvc.node.images.echoserver import EchoServer, canonical_header_key, clean_path
from tests.e2e.ingress_conformance import client
from tests.e2e.ingress_conformance.steps import self_signed

SUITE_IMAGE = (
    "k8s.gcr.io/ingressconformance/echoserver:v0.0.1"
    "@sha256:9b34b17f391f87fb2155f01da2f2f90b7a4a5c1110ed84cb5379faa4f570dc52"
)


@pytest.mark.parametrize(
    "image",
    [SUITE_IMAGE, "gcr.io/k8s-staging-ingressconformance/echoserver:v20210428-2d0e5c8"],
)
def test_the_suite_images_resolve_to_the_built_in_echoserver(image: str) -> None:
    got = resolve(image, None, None)
    assert got.argv == [sys.executable, "-m", "kubesvc.node.images.echoserver"]
    assert got.default_ports == [3000]
    assert resolve(image, ["/echoserver"], None).argv == got.argv


def request(target: str, headers: list[tuple[str, str]], method: str = "GET") -> Request:
    host = next((v for k, v in headers if k.lower() == "host"), "")
    return Request(method, target, target.split("?")[0], {}, headers, ("10.0.0.9", 4242),
                   host, "HTTP/1.1")  # fmt: skip


def app() -> EchoServer:
    return EchoServer("ns1", "ing1", "svc1", "pod1")


def test_the_answer_describes_the_request_and_where_it_ran() -> None:
    headers = [("Host", "foo.bar.com"), ("user-agent", "Go-http-client/1.1"),
               ("X-FORWARDED-FOR", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")]  # fmt: skip
    resp = app()(request("/a/b?x=<1>", headers, "PATCH"))
    assert resp.status == 200
    assert ("Content-Type", "application/json") in resp.headers
    assert b"\\u003c1\\u003e" in resp.body  # encoding/json escapes HTML characters
    assert json.loads(resp.body) == {
        "path": "/a/b?x=<1>",
        "host": "foo.bar.com",
        "method": "PATCH",
        "proto": "HTTP/1.1",
        "headers": {
            "User-Agent": ["Go-http-client/1.1"],
            "X-Forwarded-For": ["1.2.3.4", "5.6.7.8"],
        },
        "namespace": "ns1",
        "ingress": "ing1",
        "service": "svc1",
        "pod": "pod1",
    }
    assert resp.body.startswith(b'{\n "path": ')  # MarshalIndent with one space


def test_health_and_go_servemux_redirects() -> None:
    health = app()(request("/health", []))
    assert (health.status, health.body) == (200, b"OK")
    for target, location in [
        ("/a/../b?q=1", "/b?q=1"),
        ("/a/./b/", "/a/b/"),
        ("/..", "/"),
    ]:
        resp = app()(request(target, []))
        assert (resp.status, dict(resp.headers)["Location"]) == (301, location), target
    # `//` is folded before the mux sees it, so it is not redirected
    assert app()(request("//x//y", [])).status == 200


@pytest.mark.parametrize(
    ("key", "want"),
    [("x-forwarded-for", "X-Forwarded-For"), ("USER-AGENT", "User-Agent"),
     ("x_y", "X_y"), ("bad key", "bad key"), ("", ""), ("-a-", "-A-")],
)  # fmt: skip
def test_canonical_header_keys_as_go(key: str, want: str) -> None:
    assert canonical_header_key(key) == want


@given(st.text(max_size=40))
def test_canonical_keys_are_stable(key: str) -> None:
    once = canonical_header_key(key)
    assert canonical_header_key(once) == once
    assert once.lower() == key.lower()


@given(st.text(max_size=60))
def test_clean_paths_are_rooted_and_fixed_points(path: str) -> None:
    cleaned = clean_path(path)
    assert cleaned.startswith("/") and "/./" not in cleaned and "//" not in cleaned
    assert clean_path(cleaned) == cleaned


header = st.tuples(st.text(max_size=20), st.text(max_size=60))


@settings(max_examples=300)
@given(
    target=st.text(max_size=200), headers=st.lists(header, max_size=20), method=st.text(max_size=10)
)
def test_any_request_gets_an_answer(
    target: str, headers: list[tuple[str, str]], method: str
) -> None:
    resp = app()(request(target, headers, method))
    assert resp.status in (200, 301)
    if resp.status == 200 and resp.body != b"OK":
        doc = json.loads(resp.body)
        assert doc["path"] == target and doc["method"] == method
        assert sum(len(v) for v in doc["headers"].values()) == len(
            [k for k, _ in headers if canonical_header_key(k) != "Host"]
        )


# ---------------------------------------------------------------- the suite's client


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
echo_like = st.fixed_dictionaries(
    {},
    optional={
        k: json_values | st.text(max_size=5)
        for k in ("path", "Host", "SERVICE", "pod", "headers", "proto")
    },
)


@given(st.binary(max_size=300) | (json_values | echo_like).map(lambda v: json.dumps(v).encode()))
def test_the_client_reads_any_body_as_json_or_nothing(body: bytes) -> None:
    try:
        got = client._echoed(body)
    except client.RoundTripError:
        return
    assert isinstance(got.headers, dict) and isinstance(got.service, str)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_process_answers_the_suites_client(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, BIND_ENV: "127.0.0.1", "HTTP_PORT": str(port), "POD_NAME": "p-1",
           "NAMESPACE": "n", "INGRESS_NAME": "i", "SERVICE_NAME": "s"}  # fmt: skip
    argv = resolve(SUITE_IMAGE, None, None).argv
    assert argv is not None
    out = (tmp_path / "out").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "never listened"
                time.sleep(0.02)
        location = f"127.0.0.1:{port}"
        req, resp = client.capture_round_trip("POST", "http", "my-host", "sub/path", location)
        assert (resp.status_code, resp.proto) == (200, "HTTP/1.1")
        assert {"Content-Length", "Content-Type", "Date"} <= set(resp.headers)
        assert (req.path, req.host, req.method, req.proto) == (
            "/sub/path",
            "my-host",
            "POST",
            "HTTP/1.1",
        )
        assert req.headers["User-Agent"] == ["Go-http-client/1.1"]
        assert req.headers["Content-Length"] == ["0"]
        assert "Accept-Encoding" not in req.headers
        assert (req.namespace, req.ingress, req.service, req.pod) == ("n", "i", "s", "p-1")
        # a redirect is followed to the same address, its path asked for again
        req, resp = client.capture_round_trip("GET", "http", "", "/a/../b", location)
        assert (resp.status_code, req.path, req.host) == (200, "/b", "127.0.0.1")
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        out.close()
    assert "Starting server, listening on port" in (tmp_path / "out").read_text()


def client_cert() -> tuple[bytes, bytes]:
    """A self-signed certificate a client may present (clientAuth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "me")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_https_with_the_tls_state_and_an_optional_client_certificate(tmp_path: Path) -> None:
    files = {}
    for name, cert, key in (("server", *self_signed(["foo.bar.com"])), ("client", *client_cert())):
        files[name] = (tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
        files[name][0].write_bytes(cert)
        files[name][1].write_bytes(key)
    http_port, https_port = free_port(), free_port()
    env = {**os.environ, BIND_ENV: "127.0.0.1", "HTTP_PORT": str(http_port),
           "HTTPS_PORT": str(https_port), "TLS_SERVER_CERT": str(files["server"][0]),
           "TLS_SERVER_PRIVKEY": str(files["server"][1]),
           "TLS_CLIENT_CACERTS": str(files["client"][0])}  # fmt: skip
    argv = resolve(SUITE_IMAGE, None, None).argv
    assert argv is not None
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in (http_port, https_port):
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline and proc.poll() is None, "never listened"
                    time.sleep(0.02)

        def ask(with_cert: bool) -> dict:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            if with_cert:
                ctx.load_cert_chain(*files["client"])
            raw = socket.create_connection(("127.0.0.1", https_port), timeout=10)
            with ctx.wrap_socket(raw, server_hostname="foo.bar.com") as tls:
                tls.sendall(b"GET /x HTTP/1.1\r\nHost: foo.bar.com\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            return dict(json.loads(body))

        # a client that does not speak TLS is dropped, and the server goes on
        with socket.create_connection(("127.0.0.1", https_port), timeout=10) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not raw.recv(65536).startswith(b"HTTP/1.1 200")
        plain = ask(False)
        assert plain["path"] == "/x" and plain["tls"]["serverName"] == "foo.bar.com"
        assert plain["tls"]["version"].startswith("TLSv1.")
        assert plain["tls"]["cipherSuite"].startswith("TLS_")
        assert "peerCertificates" not in plain["tls"]
        mine = files["client"][0].read_text()
        assert ask(True)["tls"]["peerCertificates"] == [mine]
        # plain HTTP has no tls field
        req, _ = client.capture_round_trip("GET", "http", "h", "/", f"127.0.0.1:{http_port}")
        assert req.host == "h"
    finally:
        proc.kill()
        proc.wait(10)
