"""`pods/proxy`, `services/proxy` and `nodes/proxy` through the API server, driven by the
real kubectl (`get --raw`, `kubectl proxy`).

The node is the in-process node server of test_pod_proxy (its pods' "network namespace" is
the host's), and the pod's backend is an HTTP server on 127.0.0.1 in this process: the API
server reaches it through the node's WebSocket port-forward, as it reaches real pods."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import KUBECTL, ApiServerProcess, wait_for
from tests.e2e.test_pod_proxy import make_pod, node  # noqa: F401  (node is a fixture)
from tests.unit.test_kubelet_server import FakeView

pytestmark = pytest.mark.e2e

POD_IP = "10.244.250.5"  # what the Pod object says; the node dials the port in the pod


class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self._reply(302, b"", {"Location": "/login/"})
        elif self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one,", b"two,", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/big"):
            self._reply(200, b"x" * (3 * 1024 * 1024))
        else:
            echo = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
            self._reply(200, json.dumps(echo).encode(), {"Content-Type": "application/json"})

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip(), 16)
                chunk = self.rfile.read(size + 2)[:size]
                if not size:
                    break
                body += chunk
        self._reply(201, b"got " + body)


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def web(
    api: ApiServerProcess,
    ns: str,
    node: tuple[str, FakeView],  # noqa: F811
    backend: int,
) -> tuple[str, int]:
    """A running pod "web" whose first container port is the backend's; (namespace, port)."""
    node_name, view = node
    make_pod(api, ns, node_name, "web", ["app"])
    spec_patch = {"status": {"podIP": POD_IP, "podIPs": [{"ip": POD_IP}]}}
    api.out(
        "patch", "pod", "web", "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps(spec_patch),
    )  # fmt: skip
    view.add(ns, "web", ["app"])
    return ns, backend


def raw(api: ApiServerProcess, path: str) -> str:
    return api.out("get", "--raw", path)


def test_pod_proxy(api: ApiServerProcess, web: tuple[str, int]) -> None:
    ns, port = web
    echo = json.loads(raw(api, f"/api/v1/namespaces/{ns}/pods/web:{port}/proxy/a/b/?q=1&r=%2F"))
    assert echo["path"] == "/a/b/?q=1&r=%2F"
    headers = echo["headers"]
    assert "authorization" not in headers  # the client's credentials stay with the API server
    assert headers["x-forwarded-uri"] == f"/api/v1/namespaces/{ns}/pods/web:{port}/proxy/a/b/"
    assert headers["x-forwarded-proto"] == "https"
    chunked = raw(api, f"/api/v1/namespaces/{ns}/pods/http:web:{port}/proxy/chunked")
    assert chunked == "one,two,three"
    big = raw(api, f"/api/v1/namespaces/{ns}/pods/web:{port}/proxy/big")
    assert len(big) == 3 * 1024 * 1024


def test_pod_proxy_errors(api: ApiServerProcess, web: tuple[str, int]) -> None:
    ns, port = web
    err = api.fails("get", "--raw", f"/api/v1/namespaces/{ns}/pods/nope:{port}/proxy/")
    assert 'pods "nope" not found' in err
    err = api.fails("get", "--raw", f"/api/v1/namespaces/{ns}/pods/ftp:web:{port}/proxy/")
    assert f'invalid pod request "ftp:web:{port}"' in err
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    err = api.fails("get", "--raw", f"/api/v1/namespaces/{ns}/pods/web:{closed}/proxy/")
    assert "ServiceUnavailable" in err or "error trying to reach service" in err


def test_service_proxy(api: ApiServerProcess, web: tuple[str, int]) -> None:
    ns, port = web
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80}]},  # no selector: Endpoints by hand
    }
    eps = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": ns},
        "subsets": [
            {
                "addresses": [{"ip": POD_IP, "targetRef": {"kind": "Pod", "name": "web"}}],
                "ports": [{"name": "http", "port": port}],
            }
        ],
    }
    err = api.fails("get", "--raw", f"/api/v1/namespaces/{ns}/services/nosvc:80/proxy/")
    assert 'services "nosvc" not found' in err
    api.out("create", "-f", "-", input=json.dumps(svc))
    err = api.fails("get", "--raw", f"/api/v1/namespaces/{ns}/services/web:http/proxy/")
    assert 'no endpoints available for service "web"' in err
    api.out("create", "-f", "-", input=json.dumps(eps))
    # a bare name means the unnamed port: this Service has none (as upstream)
    err = api.fails("get", "--raw", f"/api/v1/namespaces/{ns}/services/web/proxy/")
    assert "no endpoints available" in err
    for name in ("web:http", "web:80", "http:web:80"):
        echo = json.loads(raw(api, f"/api/v1/namespaces/{ns}/services/{name}/proxy/x"))
        assert echo["path"] == "/x"
    err = api.fails("get", "--raw", f"/api/v1/namespaces/{ns}/services/web:81/proxy/")
    assert 'no service port 81 found for service "web"' in err


def test_node_proxy(api: ApiServerProcess, node: tuple[str, FakeView]) -> None:  # noqa: F811
    name, _ = node
    assert raw(api, f"/api/v1/nodes/{name}/proxy/healthz") == "ok"
    err = api.fails("get", "--raw", "/api/v1/nodes/nonode/proxy/healthz")
    assert 'nodes "nonode" not found' in err


@contextlib.contextmanager
def kubectl_proxy(api: ApiServerProcess) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [KUBECTL, "proxy", f"--port={port}", "--address=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=api.env(),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(base + "/version", timeout=2).read()
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        proc.kill()
        proc.wait()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def test_kubectl_proxy(api: ApiServerProcess, web: tuple[str, int]) -> None:
    ns, port = web
    with kubectl_proxy(api) as base:
        prefix = f"/api/v1/namespaces/{ns}/pods/web:{port}/proxy"
        req = urllib.request.Request(base + prefix + "/form", data=b"a=1", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert (resp.status, resp.read()) == (201, b"got a=1")
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(base + prefix + "/redirect", timeout=10)
        # the backend's redirect points back through the proxy
        assert e.value.code == 302
        assert e.value.headers["Location"].endswith(prefix + "/login/")
        head = urllib.request.Request(base + prefix + "/x", method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b""


class HostileBackend:
    """A pod port whose "HTTP server" answers each path with something a real server
    should never send; `stopped` counts endless answers whose reader went away."""

    ANSWERS = {
        "/garbage": b"NOT HTTP AT ALL\r\n\r\n",
        "/endless-head": b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * (1024 * 1024),
        "/bad-reason": b"HTTP/1.1 200 \xff\xfe\x80\r\nContent-Length: 2\r\n\r\nok",
        "/short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly 13 bytes",
        "/bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n",
        "/nothing": b"",
    }

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            path = head.split(b" ", 2)[1].decode()
            if path == "/endless-body":
                self._endless(conn)
                return
            with contextlib.suppress(OSError):
                conn.sendall(self.ANSWERS[path])

    def _endless(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            while True:
                conn.sendall(b"y" * 65536)
        except OSError:
            self.stopped += 1

    def close(self) -> None:
        self.sock.close()


def test_pod_proxy_survives_a_hostile_backend(
    api: ApiServerProcess,
    ns: str,
    node: tuple[str, FakeView],  # noqa: F811
) -> None:
    """A pod that answers with garbage, an endless head, undecodable reason phrases, a body
    shorter than it announced, broken chunks or nothing gets the client an error or what
    arrived, never a 500 or a hung request; an endless body stops being read once the
    client goes away; the API server serves on."""
    hostile = HostileBackend()
    try:
        node_name, view = node
        make_pod(api, ns, node_name, "hostile", ["app"])
        patch = {"status": {"podIP": POD_IP, "podIPs": [{"ip": POD_IP}]}}
        api.out(
            "patch", "pod", "hostile", "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps(patch),
        )  # fmt: skip
        view.add(ns, "hostile", ["app"])
        prefix = f"/api/v1/namespaces/{ns}/pods/hostile:{hostile.port}/proxy"
        for path in ("/garbage", "/endless-head", "/nothing"):
            res = api.kubectl("get", "--raw", prefix + path, check=False, timeout=30)
            assert res.returncode != 0, path
            assert "error trying to reach service" in res.stderr, (path, res.stderr)
            assert "InternalError" not in res.stderr and "500" not in res.stderr, path
        assert api.out("get", "--raw", prefix + "/bad-reason") == "ok"
        for path in ("/short-body", "/bad-chunk"):
            # what arrived, or an error: but an answer (timeout=30 raises on a hang)
            res = api.kubectl("get", "--raw", prefix + path, check=False, timeout=30)
            assert "InternalError" not in res.stderr, (path, res.stderr)
        with kubectl_proxy(api) as base:
            with urllib.request.urlopen(base + prefix + "/endless-body", timeout=10) as resp:
                assert resp.read(1024 * 1024) == b"y" * (1024 * 1024)
            wait_for(lambda: hostile.stopped == 1, timeout=30, what="the endless body to stop")
        assert api.out("get", "--raw", "/healthz") == "ok"
        assert api.out("get", "pod", "hostile", "-n", ns, "-o", "name") == "pod/hostile\n"
    finally:
        hostile.close()
