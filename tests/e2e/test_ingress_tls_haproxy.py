"""TLS in the ingress data plane without a cluster: the real HAProxy, driven by the applier,
in front of servers on loopback. Certificates chosen by SNI (RSA with its chain, EC,
Ed25519, a wildcard), the default certificate for unknown names and unusable Secrets, a
Secret rotated and hosts added and removed through the runtime API with no reload, the 308
redirect and its annotation, HTTP/2 by ALPN, `X-Forwarded-Proto: https`, and WebSocket
upgrades over HTTP and HTTPS."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.ingress.applier import HAProxy
from kubesvc.ingress.haproxy import Paths, Ports
from kubesvc.ingress.model import RoutingTable, routing_table
from kubesvc.ingress.tls import TLSTable, tls_table
from tests.e2e.test_ingress_haproxy import echoes, free_port
from tests.unit.test_ingress_model import OURS, endpoint_slice, ingress, rule, service
from tests.unit.test_ingress_tls import _rsa, make_cert, tls_secret, with_tls

__all__ = ["echoes"]  # the fixture, used here

log = logging.getLogger(__name__)
WS_ECHO = str(Path(__file__).with_name("ws_echo.py"))


@pytest.fixture
def ws_port() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, WS_ECHO, str(port), "ws1"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[HAProxy, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    ports = Ports(http=free_port(), health=free_port(), https=free_port())
    hap = HAProxy(Paths(str(tmp_path / "haproxy")), ports)
    try:
        yield hap, loop
    finally:
        loop.run_until_complete(hap.stop())
        loop.close()


def peer_cert(hap: HAProxy, sni: str) -> x509.Certificate:
    """The certificate HAProxy serves for `sni` (not verified here)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", hap.ports.https), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def curl(*args: str) -> tuple[str, str]:
    """(stdout, stderr) of curl, verbose."""
    res = subprocess.run(["curl", "-sv", "-m", "5", *args], capture_output=True, text=True)
    return res.stdout, res.stderr


def https_get(hap: HAProxy, host: str, path: str, ca: Path, *extra: str) -> tuple[str, str]:
    port = hap.ports.https
    return curl(
        "--cacert", str(ca), "--resolve", f"{host}:{port}:127.0.0.1",
        f"https://{host}:{port}{path}", *extra,
    )  # fmt: skip


def tables(
    echoes: dict[str, int],
    ws: int,
    secrets: dict[str, Any],
    web: tuple[str, ...] = ("web1",),
    **notes: str,
) -> tuple[RoutingTable, TLSTable]:
    ing = with_tls(
        ingress(
            "a",
            rule("a.test", ("/", "Prefix", "web"), ("/ws", "Prefix", "ws")),
            rule("b.test", ("/", "Prefix", "web")),
            rule("*.b.test", ("/", "Prefix", "web")),
            rule("c.test", ("/", "Prefix", "web")),
            rule("d.test", ("/", "Prefix", "web")),
            rule("plain.test", ("/", "Prefix", "web"), ("/ws", "Prefix", "ws")),
        ),
        (["a.test"], "a"),
        (["b.test", "*.b.test"], "b"),
        (["c.test"], "c"),
        (["d.test"], "bad"),
        **notes,
    )
    table = routing_table(
        [ing],
        [service("web", ("", 80)), service("ws", ("", 80))],
        [
            *(endpoint_slice("web", "", echoes[w], "127.0.0.1") for w in web),
            endpoint_slice("ws", "", ws, "127.0.0.1"),
        ],
        [OURS],
    )
    return table, tls_table([ing], secrets.get)


def test_tls_by_sni_rotation_redirect_h2_and_websocket(
    echoes: dict[str, int],
    ws_port: int,
    proxy: tuple[HAProxy, asyncio.AbstractEventLoop],
    tmp_path: Path,
) -> None:
    hap, loop = proxy
    ca_crt, ca_key_pem, ca = make_cert(ca=True)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    a = make_cert("a.test", key=_rsa(2048), issuer=(ca, ca_key))
    b = make_cert("b.test", "*.b.test")
    c = make_cert("c.test", key=ed25519.Ed25519PrivateKey.generate())
    (tmp_path / "ca.pem").write_bytes(ca_crt)
    (tmp_path / "b.pem").write_bytes(b[0])
    secrets = {
        "default/a": tls_secret("a", a[0] + ca_crt, a[1]),
        "default/b": tls_secret("b", b[0], b[1]),
        "default/c": tls_secret("c", c[0], c[1]),
        "default/bad": tls_secret("bad", b[0], a[1]),  # a key of another certificate
    }
    table, tls = tables(echoes, ws_port, secrets)
    assert loop.run_until_complete(hap.apply(table, tls)) == "start"

    # by SNI: each host its certificate, the wildcard too; anything else the default
    assert peer_cert(hap, "a.test").serial_number == a[2].serial_number
    assert peer_cert(hap, "b.test").serial_number == b[2].serial_number
    assert peer_cert(hap, "x.b.test").serial_number == b[2].serial_number
    assert peer_cert(hap, "c.test").serial_number == c[2].serial_number
    default_cn = "CN=Kubernetes Ingress Controller Fake Certificate,O=kubesvc"
    for name in ("unknown.test", "d.test", "y.x.b.test"):
        assert peer_cert(hap, name).subject.rfc4514_string() == default_cn, name

    # verified, over HTTP/2 (ALPN), the backend seeing X-Forwarded-Proto https
    out, err = https_get(hap, "a.test", "/x", tmp_path / "ca.pem", "--http2")
    assert "ALPN: server accepted h2" in err and "< HTTP/2 200" in err, err
    seen = json.loads(out)
    assert seen["name"] == "web1" and seen["path"] == "/x"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == f"a.test:{hap.ports.https}"
    out, err = https_get(hap, "z.b.test", "/", tmp_path / "b.pem", "--http1.1")
    assert "ALPN: server accepted http/1.1" in err and json.loads(out)["name"] == "web1"

    # plain HTTP to a TLS host: 308 to the same path and query over HTTPS
    http = f"http://127.0.0.1:{hap.ports.http}"
    _, err = curl("-H", "Host: A.test:1234", f"{http}/p/q?x=1&y=%20")
    assert "< HTTP/1.1 308" in err, err
    assert f"< location: https://a.test:{hap.ports.https}/p/q?x=1&y=%20\n" in err.lower()
    for host in ("z.b.test", "Z.B.test:80"):  # a wildcard TLS host's names redirect too
        _, err = curl("-H", f"Host: {host}", f"{http}/w")
        assert "< HTTP/1.1 308" in err, err
        assert f"< location: https://z.b.test:{hap.ports.https}/w\n" in err.lower()
    out, err = curl("-H", "Host: plain.test", f"{http}/")
    assert json.loads(out)["name"] == "web1"  # no TLS, no redirect

    # WebSocket upgrades pass through, plain and over TLS
    conn = websocket.create_connection(f"ws://127.0.0.1:{hap.ports.http}/ws", host="plain.test")
    conn.send("hello")
    assert conn.recv() == "ws1 http: hello"
    conn.close()
    conn = websocket.create_connection(
        f"wss://127.0.0.1:{hap.ports.https}/ws",
        host="a.test",
        sslopt={"ca_certs": str(tmp_path / "ca.pem"), "server_hostname": "a.test"},
    )
    conn.send("over tls")
    assert conn.recv() == "ws1 https: over tls"
    conn.close()

    # a Secret rotated, a host moved to a usable Secret, a host gone: no reload
    a2 = make_cert("a.test", key=_rsa(2048), issuer=(ca, ca_key))
    secrets["default/a"] = tls_secret("a", a2[0] + ca_crt, a2[1])
    secrets["default/bad"] = secrets.pop("default/c")
    table, tls = tables(echoes, ws_port, secrets)
    start = time.perf_counter()
    assert loop.run_until_complete(hap.apply(table, tls)) == "runtime"
    took = time.perf_counter() - start
    assert peer_cert(hap, "a.test").serial_number == a2[2].serial_number
    log.warning("rotation: applied through the runtime API in %.1f ms", took * 1000)
    assert peer_cert(hap, "d.test").serial_number == c[2].serial_number
    assert peer_cert(hap, "c.test").subject.rfc4514_string() == default_cn
    assert hap.reloads == 0
    out, _ = https_get(hap, "a.test", "/", tmp_path / "ca.pem")
    assert json.loads(out)["name"] == "web1"  # the new certificate verifies too

    # the annotation turns the redirect off, through the runtime API
    off = {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}
    table, tls = tables(echoes, ws_port, secrets, **off)
    assert loop.run_until_complete(hap.apply(table, tls)) == "runtime"
    out, _ = curl("-H", "Host: a.test", f"{http}/")
    assert json.loads(out)["name"] == "web1"

    # a reload loads the same files
    more = ("web1", "web2", "web3", "api1", "wild1")
    table, tls = tables(echoes, ws_port, secrets, web=more, **off)
    assert loop.run_until_complete(hap.apply(table, tls)) == "runtime"
    loop.run_until_complete(hap.reload())
    assert hap.reloads == 1
    assert peer_cert(hap, "a.test").serial_number == a2[2].serial_number
    assert peer_cert(hap, "d.test").serial_number == c[2].serial_number
    assert peer_cert(hap, "unknown.test").subject.rfc4514_string() == default_cn
    mode = {p.name: p.stat().st_mode & 0o777 for p in Path(hap.paths.dir).rglob("*.pem")}
    assert mode and set(mode.values()) == {0o600}, mode
    assert Path(hap.paths.dir).stat().st_mode & 0o777 == 0o700


# any TLS hosts the model accepts (wildcards, redirects on and off) render into files
# HAProxy loads: the crt-list's SNI filters, one certificate file per host, the redirect map
_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
_host = st.one_of(
    st.lists(_label, min_size=1, max_size=3).map(".".join),
    st.lists(_label, min_size=1, max_size=2).map(lambda ls: "*." + ".".join(ls)),
)
_CERT = make_cert("any.test")


@settings(max_examples=15, deadline=None, database=None)
@given(st.lists(st.tuples(st.lists(_host, min_size=1, max_size=4), st.booleans()), max_size=4))
def test_any_accepted_tls_renders_files_haproxy_loads(
    tmp_path_factory: pytest.TempPathFactory, entries: list[tuple[list[str], bool]]
) -> None:
    ings = [
        with_tls(
            ingress(f"i{n}", *(rule(h, ("/", "Prefix", "web")) for h in hosts)),
            (hosts, "s"),
            **({"nginx.ingress.kubernetes.io/ssl-redirect": "false"} if off else {}),
        )
        for n, (hosts, off) in enumerate(entries)
    ]
    secrets = {"default/s": tls_secret("s", _CERT[0], _CERT[1])}
    table = routing_table(ings, [service("web", ("", 80))], [], [OURS])
    tls = tls_table(ings, secrets.get)
    assert set(tls.certs) == {h for hosts, _ in entries for h in hosts}
    d = tmp_path_factory.mktemp("tls")
    hap = HAProxy(Paths(str(d)), Ports(http=free_port(), health=free_port(), https=free_port()))
    hap._write(hap.plan(table, tls))
    res = subprocess.run(["haproxy", "-c", "-f", hap.paths.config], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
