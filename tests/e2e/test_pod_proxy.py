"""`kubectl logs`, `kubectl exec` and `kubectl port-forward` through the API server to a node
agent's streaming server.

The node server runs in this process (its own thread and event loop) on 127.0.0.1 with a fake
runtime view whose commands run on the host; a Node object points at it (InternalIP
127.0.0.1, kubeletEndpoint port) and the test's Pods are bound to that Node and marked
Running, so the real kubectl drives the whole path."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import re
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from kubernetes import client, config
from kubernetes.stream import portforward, stream

from kubesvc.kubelet.server import KubeletServer
from tests.e2e.harness import KUBECTL, ApiServerProcess, wait_for
from tests.unit.test_kubelet_server import HOST_ENV, FakeView

pytestmark = pytest.mark.e2e


class NodeServerThread:
    """A KubeletServer on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self, view: FakeView, token: str) -> None:
        self.server = KubeletServer(view, token, "127.0.0.1", 0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="node-server", daemon=True)
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()

    def start(self) -> int:
        self.thread.start()
        self.ready.wait(10)
        if self.error is not None:
            raise self.error
        return self.server.port

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture(scope="module")
def node(
    api: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, FakeView]]:
    """A Node object served by an in-process node server; yields (node name, view)."""
    view = FakeView(tmp_path_factory.mktemp("pod-logs"))
    token = (api.data_dir / "pki" / "kubelet-client.token").read_text().strip()
    server = NodeServerThread(view, token)
    port = server.start()
    name = f"ksvt-node-{uuid.uuid4().hex[:6]}"
    try:
        manifest = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        api.out("create", "-f", "-", input=json.dumps(manifest))
        status = {
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        }
        patch = json.dumps({"status": status})
        api.out("patch", "node", name, "--subresource=status", "--type=merge", "-p", patch)
        yield name, view
    finally:
        api.kubectl("delete", "node", name, "--wait=false", check=False)
        server.stop()


def make_pod(
    api: ApiServerProcess,
    ns: str,
    node_name: str,
    name: str,
    containers: list[str],
    states: dict[str, dict[str, Any]] | None = None,
) -> None:
    """A Pod bound to the node, with a Running status (as the node agent would report)."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeName": node_name,
            "containers": [
                {"name": c, "image": "busybox", "ports": [{"containerPort": 80}]}
                for c in containers
            ],
        },
    }
    api.out("create", "-f", "-", input=json.dumps(manifest))
    states = states or {}
    statuses = [
        {
            "name": c,
            "ready": "running" in states.get(c, {"running": {}}),
            "restartCount": 0,
            "image": "busybox",
            "imageID": "",
            "state": states.get(c, {"running": {"startedAt": "2024-01-01T00:00:00Z"}}),
        }
        for c in containers
    ]
    status = {"phase": "Running", "podIP": "127.0.0.1", "containerStatuses": statuses}
    api.out(
        "patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


@pytest.fixture
def pod(api: ApiServerProcess, ns: str, node: tuple[str, FakeView]) -> tuple[str, str, FakeView]:
    """A running one-container pod "web" with a log; yields (namespace, pod, view)."""
    node_name, view = node
    make_pod(api, ns, node_name, "web", ["app"])
    view.add(ns, "web", ["app"], env={**HOST_ENV, "POD_GREETING": "from the pod"})
    view.write_log(ns, "web", "app", "first line\nsecond line\n")
    return ns, "web", view


# -- logs -----------------------------------------------------------------------------------


def test_logs(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, _ = pod
    assert api.out("logs", name, "-n", ns) == "first line\nsecond line\n"
    assert api.out("logs", name, "-n", ns, "--tail=1") == "second line\n"
    assert api.out("logs", f"pod/{name}", "-n", ns, "-c", "app") == "first line\nsecond line\n"


def test_logs_follow(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, view = pod
    proc = subprocess.Popen(
        [KUBECTL, "logs", "-f", name, "-n", ns, "--tail=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=api.env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "second line\n"
        with open(view.pods[(ns, name)].logs["app"], "a") as f:
            f.write("third line\n")
        assert proc.stdout.readline() == "third line\n"
    finally:
        proc.kill()
        proc.wait()


def test_logs_flags_on_cri_records(
    api: ApiServerProcess, ns: str, node: tuple[str, FakeView]
) -> None:
    """--timestamps, --since-time, --since, --limit-bytes, --tail and -f --previous on a log of
    CRI records, as the kubelet reads them."""
    node_name, view = node
    make_pod(api, ns, node_name, "cri", ["app"])
    view.add(ns, "cri", ["app"])
    old, new = "2020-01-01T00:00:00.000000001Z", "2099-01-01T00:00:00.5Z"
    view.write_log(
        ns, "cri", "app",
        f"{old} stdout F old line\n{new} stderr P new \n{new} stderr F line\n",
    )  # fmt: skip
    view.write_log(ns, "cri", "app", f"{old} stdout F before the restart\n", previous=True)
    status = {
        "containerStatuses": [
            {
                "name": "app",
                "ready": True,
                "restartCount": 1,
                "image": "busybox",
                "imageID": "",
                "state": {"running": {"startedAt": "2024-01-01T00:00:01Z"}},
                "lastState": {
                    "terminated": {"exitCode": 1, "reason": "Error", "containerID": "x://1"}
                },
            }
        ]
    }
    api.out(
        "patch", "pod", "cri", "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    assert api.out("logs", "cri", "-n", ns) == "old line\nnew line\n"
    assert api.out("logs", "cri", "-n", ns, "--timestamps") == (
        f"{old} old line\n{new} new {new} line\n"
    )
    assert api.out("logs", "cri", "-n", ns, "--since-time=2050-01-01T00:00:00Z") == "new line\n"
    assert api.out("logs", "cri", "-n", ns, "--since=1h") == "new line\n"
    assert api.out("logs", "cri", "-n", ns, "--limit-bytes=4") == "old "
    assert api.out("logs", "cri", "-n", ns, "--tail=1") == "line\n"
    # a previous instance's log does not grow: -f returns at its end
    res = api.kubectl("logs", "cri", "-n", ns, "-f", "--previous", timeout=15)
    assert res.stdout == "before the restart\n"
    # kubectl checks these itself; other clients get the API server's answer
    raw = api.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{ns}/pods/cri/log?limitBytes=0", check=False
    )
    assert "limitBytes: Invalid value: 0: must be greater than 0" in raw.stderr


def test_logs_errors(api: ApiServerProcess, ns: str, node: tuple[str, FakeView]) -> None:
    node_name, view = node
    make_pod(
        api,
        ns,
        node_name,
        "starting",
        ["app"],
        {"app": {"waiting": {"reason": "ContainerCreating"}}},
    )
    view.add(ns, "starting", ["app"])
    err = api.fails("logs", "starting", "-n", ns)
    assert (
        'Error from server (BadRequest): container "app" in pod "starting" is waiting to start: '
        "ContainerCreating" in err
    )
    make_pod(api, ns, node_name, "two", ["a", "b"])
    view.add(ns, "two", ["a", "b"])
    view.write_log(ns, "two", "b", "from b\n")
    assert api.out("logs", "two", "-n", ns, "-c", "b") == "from b\n"
    err = api.fails("logs", "two", "-n", ns, "-c", "nope")
    assert "container nope is not valid for pod two" in err
    err = api.fails("logs", "two", "-n", ns, "-c", "b", "--previous")
    assert 'previous terminated container "b" in pod "two" not found' in err
    err = api.fails("logs", "missing", "-n", ns)
    assert 'pods "missing" not found' in err
    # several containers and none named: the raw API asks for one
    raw = api.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/two/log", check=False)
    assert raw.returncode != 0
    assert "a container name must be specified for pod two, choose one of: [a b]" in raw.stderr


# -- exec -----------------------------------------------------------------------------------


def test_exec(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, _ = pod
    assert api.out("exec", name, "-n", ns, "--", "echo", "hi") == "hi\n"
    out = api.out("exec", name, "-n", ns, "--", "sh", "-c", 'echo "$POD_GREETING" >&2; echo ok')
    assert out == "ok\n"
    res = api.kubectl("exec", name, "-n", ns, "--", "sh", "-c", 'echo "$POD_GREETING" >&2')
    assert res.stderr == "from the pod\n"


def test_exec_exit_code(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, _ = pod
    res = api.kubectl("exec", name, "-n", ns, "--", "sh", "-c", "echo out; exit 3", check=False)
    assert res.returncode == 3
    assert res.stdout == "out\n"
    assert "command terminated with exit code 3" in res.stderr


def test_exec_stdin(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, _ = pod
    text = "".join(f"line {i}\n" for i in range(2000))
    assert api.out("exec", "-i", name, "-n", ns, "--", "cat", input=text) == text
    assert api.out("exec", "-i", name, "-n", ns, "--", "wc", "-l", input=text).strip() == "2000"


def test_exec_errors(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, view = pod
    err = api.fails("exec", name, "-n", ns, "-c", "nope", "--", "true")
    assert "container nope not found in pod web" in err or "not valid for pod" in err
    err = api.fails("exec", "missing", "-n", ns, "--", "true")
    assert 'pods "missing" not found' in err
    # the pod is known to the API but not running on the node
    view.pods[(ns, name)].running = False
    try:
        err = api.fails("exec", name, "-n", ns, "--", "true")
        assert "pod does not exist" in err
    finally:
        view.pods[(ns, name)].running = True


def _python_exec(api: ApiServerProcess, ns: str, name: str, command: list[str]) -> Any:
    """An exec session opened by the official Python client's `stream()`."""
    v1 = client.CoreV1Api(config.new_client_from_config(config_file=str(api.kubeconfig)))
    return stream(
        v1.connect_get_namespaced_pod_exec,
        name,
        ns,
        command=command,
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )


def _drain(resp: Any) -> tuple[str, str]:
    out, err = "", ""
    deadline = time.monotonic() + 20
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=1)
        out += resp.read_stdout(timeout=0) if resp.peek_stdout() else ""
        err += resp.read_stderr(timeout=0) if resp.peek_stderr() else ""
    return out, err


def test_exec_stdin_from_the_python_client(
    api: ApiServerProcess, pod: tuple[str, str, FakeView]
) -> None:
    """`write_stdin` sends text frames (channel 0 as the first character)."""
    ns, name, _ = pod
    resp = _python_exec(api, ns, name, ["head", "-n", "1"])
    try:
        resp.write_stdin("hello from python\n")
        out, _ = _drain(resp)
        assert out == "hello from python\n"
        assert resp.returncode == 0
    finally:
        resp.close()


def test_exec_stdin_close_from_the_python_client(
    api: ApiServerProcess, pod: tuple[str, str, FakeView]
) -> None:
    """v5.channel.k8s.io: closing channel 0 is stdin's end of file."""
    ns, name, _ = pod
    resp = _python_exec(api, ns, name, ["wc", "-c"])
    try:
        assert resp.subprotocol == "v5.channel.k8s.io"
        resp.write_stdin("12345")
        resp.write_stdin(b"678")
        resp.close_channel(0)
        out, _ = _drain(resp)
        assert out.strip() == "8"
        assert resp.returncode == 0
    finally:
        resp.close()


# -- attach ---------------------------------------------------------------------------------


def test_attach(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    """`kubectl attach` shows what the container writes from then on, stdout and stderr
    apart, and ends when the container does."""
    ns, name, view = pod
    proc = subprocess.Popen(
        [KUBECTL, "attach", name, "-n", ns, "-c", "app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=api.env(),
    )
    try:
        time.sleep(1.5)  # kubectl finds the pod and opens the stream
        stamp = "2024-01-01T00:00:00.000000000Z"
        with open(view.pods[(ns, name)].logs["app"], "a") as f:
            f.write(f"{stamp} stdout F attached output\n{stamp} stderr F attached error\n")
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == "attached output\n"
        view.pods[(ns, name)].running = False
        out, err = proc.communicate(timeout=15)
        assert out == ""
        assert "attached error\n" in err
        assert proc.returncode == 0
    finally:
        view.pods[(ns, name)].running = True
        proc.kill()
        proc.wait()


def test_attach_errors(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, _ = pod
    err = api.fails("attach", name, "-n", ns, "-c", "nope")
    assert "container nope not found in pod web" in err or "not valid for pod" in err
    err = api.fails("attach", "missing", "-n", ns)
    assert 'pods "missing" not found' in err


# -- port-forward ---------------------------------------------------------------------------


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def port_forward(api: ApiServerProcess, ns: str, target: str, remote: int) -> Iterator[int]:
    proc = subprocess.Popen(
        [KUBECTL, "port-forward", "-n", ns, target, f":{remote}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=api.env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield int(m.group(1))
    finally:
        proc.kill()
        proc.wait()


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def test_port_forward(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, _ = pod
    with http_server() as remote, port_forward(api, ns, f"pod/{name}", remote) as local:
        assert _get(local, "/one") == "hello from /one\n"
        # each local connection is a new stream pair over the same tunnel
        assert _get(local, "/two") == "hello from /two\n"


def test_port_forward_to_a_closed_port(
    api: ApiServerProcess, pod: tuple[str, str, FakeView]
) -> None:
    ns, name, _ = pod
    with http_server() as remote:
        pass  # now nothing listens there
    proc = subprocess.Popen(
        [KUBECTL, "port-forward", "-n", ns, f"pod/{name}", f":{remote}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=api.env(),
    )
    try:
        assert proc.stdout is not None
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+)", proc.stdout.readline())
        assert m
        with pytest.raises(OSError):
            _get(int(m.group(1)), "/")
        # kubectl reports the node's error and gives up on the tunnel
        wait_for(lambda: proc.poll() is not None, timeout=15, what="kubectl to exit")
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert f"error forwarding port {remote} to pod" in err
    finally:
        proc.kill()
        proc.wait()


def _http_through(sock: Any, path: str) -> str:
    """One GET over a forwarded socket; the body, read as far as Content-Length says (a
    WebSocket session has no end of file for one port while others are open)."""
    sock.settimeout(10)
    sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the connection ended early"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection ended early"
        body += chunk
    return body.decode()


def test_port_forward_from_the_python_client(
    api: ApiServerProcess, pod: tuple[str, str, FakeView]
) -> None:
    """kubernetes.stream.portforward: WebSocket channels (v4.channel.k8s.io), several ports in
    one session, and a refused port's error channel."""
    ns, name, _ = pod
    v1 = client.CoreV1Api(config.new_client_from_config(config_file=str(api.kubeconfig)))
    with http_server() as one, http_server() as two, http_server() as closed:
        pass
    with http_server() as one, http_server() as two:
        pf = portforward(
            v1.connect_get_namespaced_pod_portforward, name, ns, ports=f"{one},{two},{closed}"
        )
        try:
            assert _http_through(pf.socket(one), "/one") == "hello from /one\n"
            assert _http_through(pf.socket(two), "/two") == "hello from /two\n"
            wait_for(lambda: pf.error(closed) is not None, timeout=10, what="the error channel")
            error = pf.error(closed)
            assert error.startswith(f"error forwarding port {closed} to pod ")
            assert "connection refused" in error.lower()
        finally:
            pf.close()


def _refused_upgrade(api: ApiServerProcess, path: str, protocol: str) -> tuple[int, str]:
    """Status and body of a WebSocket upgrade the API server refuses."""
    token = (api.data_dir / "pki" / "token").read_text().strip()
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(
            f"wss://127.0.0.1:{api.port}{path}",
            header=[f"Authorization: Bearer {token}"],
            subprotocols=[protocol],
            sslopt={"cert_reqs": ssl.CERT_NONE},
            timeout=10,
        )
    body = err.value.resp_body or b""
    return err.value.status_code, body.decode() if isinstance(body, bytes) else str(body)


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        pytest.param(
            "80,x",
            'cannot convert to []int32: strconv.ParseUint: parsing "x": invalid syntax',
            id="not-a-number",
        ),
        pytest.param(
            "70000",
            'cannot convert to []int32: strconv.ParseUint: parsing "70000": value out of range',
            id="too-big",
        ),
        pytest.param("0", 'port "0" must be > 0', id="zero"),
    ],
)
def test_port_forward_bad_ports(
    api: ApiServerProcess, pod: tuple[str, str, FakeView], ports: str, message: str
) -> None:
    """What the Python client checks itself, other clients leave to the server."""
    ns, name, _ = pod
    path = f"/api/v1/namespaces/{ns}/pods/{name}/portforward?ports={ports}"
    status, body = _refused_upgrade(api, path, "v4.channel.k8s.io")
    assert status == 400
    # the API server's own refusal is a Status; the node's comes through as its text
    assert (json.loads(body)["message"] if body.startswith("{") else body) == message


def test_discovery_lists_the_subresources(api: ApiServerProcess) -> None:
    doc = json.loads(api.out("get", "--raw", "/api/v1"))
    verbs = {r["name"]: r["verbs"] for r in doc["resources"]}
    assert verbs["pods/log"] == ["get"]
    assert verbs["pods/exec"] == ["create", "get"]
    assert verbs["pods/portforward"] == ["create", "get"]
    assert verbs["pods/attach"] == ["create", "get"]
