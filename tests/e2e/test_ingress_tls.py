"""TLS through the ingress controller `kubesvc up` deploys, from the host through its
NodePorts: two hosts with two certificates chosen by SNI (verified with curl `--resolve
--cacert`), the default certificate for an unknown name and for a host whose Secret is
unusable or missing (with Events), a Secret rotated live (the new serial served, no
reload), HTTP -> 308 and the annotation that turns it off, HTTP/2 by ALPN, WebSocket
upgrades over HTTP and HTTPS, and `X-Forwarded-Proto: https` seen by the backend."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from cryptography import x509

from tests.e2e.cluster import AGNHOST, Cluster, pod_ready, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.test_ingress import CONTROLLER, NS, controller_pod, reloads
from tests.unit.test_ingress_tls import make_cert, tls_secret

pytestmark = pytest.mark.e2e

log = logging.getLogger(__name__)
WS_ECHO = str(Path(__file__).with_name("ws_echo.py"))
DEFAULT_CN = "CN=Kubernetes Ingress Controller Fake Certificate,O=kubesvc"

INGRESSES = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure}
spec:
  tls:
  - {hosts: [a.test], secretName: a-tls}
  - {hosts: [b.test, "*.b.test"], secretName: b-tls}
  - {hosts: [bad.test], secretName: bad-tls}
  - {hosts: [gone.test], secretName: gone-tls}
  rules:
  - host: a.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /ws, pathType: Prefix, backend: {service: {name: ws, port: {number: 80}}}}
  - host: b.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  - host: bad.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: no-redirect
  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: "false"}
spec:
  tls:
  - {hosts: [off.test], secretName: a-tls}
  rules:
  - host: off.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /ws, pathType: Prefix, backend: {service: {name: ws, port: {number: 80}}}}
"""


def ws_script() -> dict[str, Any]:
    """The echo server's source, for the pod to mount (it sees nothing of the host)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ws-echo"},
        "data": {"ws_echo.py": Path(WS_ECHO).read_text()},
    }


def ws_deployment() -> dict[str, Any]:
    """The standard-library WebSocket echo server, run by the plain `python` image."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ws"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "ws"}},
            "template": {
                "metadata": {"labels": {"app": "ws"}},
                "spec": {
                    "containers": [
                        {
                            "name": "ws",
                            "image": "python",
                            "args": ["python3", "/app/ws_echo.py", "8080", "ws1"],
                            "volumeMounts": [{"name": "app", "mountPath": "/app"}],
                        }
                    ],
                    "volumes": [{"name": "app", "configMap": {"name": "ws-echo"}}],
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


class Certs:
    """The test's certificates: a.test's (twice, for the rotation), b.test's (with its
    wildcard), and a pair whose key is not the certificate's."""

    def __init__(self, tmp: Path) -> None:
        self.a = make_cert("a.test", "off.test")
        self.a2 = make_cert("a.test", "off.test")
        self.b = make_cert("b.test", "*.b.test")
        self.tmp = tmp
        for name, (crt, _, _) in (("a", self.a), ("a2", self.a2), ("b", self.b)):
            (tmp / f"{name}.pem").write_bytes(crt)

    def secrets(self) -> list[dict[str, Any]]:
        out = [
            tls_secret("a-tls", self.a[0], self.a[1]),
            tls_secret("b-tls", self.b[0], self.b[1]),
            tls_secret("bad-tls", self.a[0], self.b[1]),
        ]
        return [{"apiVersion": "v1", "kind": "Secret", **s} for s in out]


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, Certs]]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-ingtls-", dir="/tmp"))
    try:
        with running_cluster(tmp, "ingtls") as c:
            certs = Certs(tmp)
            c.out("create", "deployment", "web", f"--image={AGNHOST}", "--",
                  "/agnhost", "netexec", "--http-port=8080")  # fmt: skip
            for obj in (
                service("web"),
                ws_script(),
                ws_deployment(),
                service("ws"),
                *certs.secrets(),
            ):
                c.out("apply", "-f", "-", input=json.dumps(obj))
            c.out("apply", "-f", "-", input=INGRESSES)
            c.running("app=web", 1)
            c.running("app=ws", 1)
            wait_for(lambda: pod_ready(controller_pod(c)), timeout=60, what="the controller")
            yield c, certs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def node_ip(c: Cluster) -> str:
    return str(controller_pod(c)["status"]["hostIP"])


def node_port(c: Cluster, name: str) -> int:
    path = f'jsonpath={{.spec.ports[?(@.name=="{name}")].nodePort}}'
    return int(c.out("get", "svc", "-n", NS, CONTROLLER, "-o", path))


def peer_cert(ip: str, port: int, sni: str) -> x509.Certificate | None:
    """The certificate served for `sni` (not verified), None when nothing answers."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((ip, port), timeout=3) as raw,
            ctx.wrap_socket(raw, server_hostname=sni) as conn,
        ):
            der = conn.getpeercert(binary_form=True)
    except OSError:
        return None
    return x509.load_der_x509_certificate(der) if der else None


def serial(ip: str, port: int, sni: str) -> int:
    cert = peer_cert(ip, port, sni)
    return cert.serial_number if cert else 0


def subject(ip: str, port: int, sni: str) -> str:
    cert = peer_cert(ip, port, sni)
    return cert.subject.rfc4514_string() if cert else ""


def curl(*args: str) -> tuple[str, str]:
    res = subprocess.run(["curl", "-sv", "-m", "5", *args], capture_output=True, text=True)
    return res.stdout, res.stderr


def test_certificates_by_sni_and_the_default_one(cluster: tuple[Cluster, Certs]) -> None:
    c, certs = cluster
    ip, port = node_ip(c), node_port(c, "https")
    wait_for(lambda: serial(ip, port, "a.test") == certs.a[2].serial_number, timeout=30,
             what="a.test's certificate")  # fmt: skip
    assert serial(ip, port, "b.test") == certs.b[2].serial_number
    assert serial(ip, port, "x.b.test") == certs.b[2].serial_number
    for name in ("unknown.test", "bad.test", "gone.test"):
        assert subject(ip, port, name) == DEFAULT_CN, name

    # verified by curl, the backend seeing X-Forwarded-Proto https
    for host, ca in (("a.test", "a.pem"), ("b.test", "b.pem")):
        out, err = curl("--cacert", str(certs.tmp / ca), "--resolve", f"{host}:{port}:{ip}",
                        f"https://{host}:{port}/header?key=X-Forwarded-Proto")  # fmt: skip
        assert out == "https", err

    events = c.out("get", "events", "--field-selector", "involvedObject.name=secure")
    assert "TLSSecretInvalid" in events and "Secret default/bad-tls is not a usable" in events
    assert "SecretNotFound" in events and "Secret default/gone-tls not found" in events


def test_http2_by_alpn(cluster: tuple[Cluster, Certs]) -> None:
    c, certs = cluster
    ip, port = node_ip(c), node_port(c, "https")
    wait_for(lambda: serial(ip, port, "a.test") != 0, timeout=30, what="https served")
    out, err = curl("--http2", "--cacert", str(certs.tmp / "a.pem"),
                    "--resolve", f"a.test:{port}:{ip}",
                    f"https://a.test:{port}/hostname")  # fmt: skip
    assert "ALPN: server accepted h2" in err and "< HTTP/2 200" in err, err
    assert out.startswith("web-")


def test_http_redirects_unless_the_annotation_says_not(cluster: tuple[Cluster, Certs]) -> None:
    c, _ = cluster
    url = f"http://{node_ip(c)}:{node_port(c, 'http')}"

    def redirected() -> str:
        _, err = curl("-H", "Host: a.test", f"{url}/some/path?x=1")
        return err if "< HTTP/1.1 308" in err else ""

    err = wait_for(redirected, timeout=30, what="the 308")
    assert "< location: https://a.test/some/path?x=1\n" in err.lower()
    out, err = curl("-H", "Host: off.test", f"{url}/hostname")
    assert out.startswith("web-"), err


def test_websocket_over_http_and_https(cluster: tuple[Cluster, Certs]) -> None:
    c, certs = cluster
    ip = node_ip(c)
    http, https = node_port(c, "http"), node_port(c, "https")

    def echo(url: str, host: str, **ssl_opts: Any) -> str:
        conn = websocket.create_connection(url, host=host, timeout=5, sslopt=ssl_opts or None)
        try:
            conn.send("hello")
            return str(conn.recv())
        finally:
            conn.close()

    def plain() -> str:
        try:
            return echo(f"ws://{ip}:{http}/ws", "off.test")
        except (OSError, websocket.WebSocketException):
            return ""

    assert wait_for(plain, timeout=60, what="the WebSocket echo") == "ws1 http: hello"
    opts = {"ca_certs": str(certs.tmp / "a.pem"), "server_hostname": "a.test"}
    assert echo(f"wss://{ip}:{https}/ws", "a.test", **opts) == "ws1 https: hello"


def test_a_secret_rotated_live(cluster: tuple[Cluster, Certs]) -> None:
    c, certs = cluster
    ip, port = node_ip(c), node_port(c, "https")
    wait_for(lambda: serial(ip, port, "a.test") == certs.a[2].serial_number, timeout=30,
             what="a.test's first certificate")  # fmt: skip
    before = reloads(c)
    rotated = {"apiVersion": "v1", "kind": "Secret",
               **tls_secret("a-tls", certs.a2[0], certs.a2[1])}  # fmt: skip
    start = time.monotonic()
    c.out("apply", "-f", "-", input=json.dumps(rotated))
    applied = time.monotonic()
    wait_for(lambda: serial(ip, port, "a.test") == certs.a2[2].serial_number, timeout=30,
             interval=0.005, what="the rotated certificate")  # fmt: skip
    served = time.monotonic()
    log.warning(
        "rotation: new certificate served %.0f ms after kubectl apply returned (%.0f ms after"
        " it started)",
        (served - applied) * 1000,
        (served - start) * 1000,
    )
    print(f"rotation: {(served - applied) * 1000:.0f} ms", file=sys.stderr)
    out, err = curl("--cacert", str(certs.tmp / "a2.pem"), "--resolve", f"a.test:{port}:{ip}",
                    f"https://a.test:{port}/hostname")  # fmt: skip
    assert out.startswith("web-"), err
    assert reloads(c) == before
