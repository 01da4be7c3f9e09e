"""The real kubectl speaking plain SPDY/3.1 (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`,
`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`, as client-go before 1.30 always does) through the
API server to a node agent's streaming server: the upgrade is passed on to the node and
the bytes relayed. The node server runs in this process against a fake runtime view, as
in test_pod_proxy."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import secrets
import select
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import KUBECTL, ApiServerProcess
from tests.e2e.test_pod_proxy import http_server, make_pod, node  # noqa: F401 (fixtures)
from tests.unit.test_kubelet_server import HOST_ENV, FakeView

pytestmark = pytest.mark.e2e

SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}


def kubectl(
    api: ApiServerProcess, *args: str, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, *args],
        input=input,
        capture_output=True,
        text=True,
        env={**api.env(), **SPDY},
        timeout=timeout,
    )


@pytest.fixture
def pod(api: ApiServerProcess, ns: str, node: tuple[str, FakeView]) -> tuple[str, str, FakeView]:  # noqa: F811
    node_name, view = node
    name = f"spdy-{secrets.token_hex(3)}"
    make_pod(api, ns, node_name, name, ["app"])
    view.add(ns, name, ["app"], env={**HOST_ENV, "POD_GREETING": "from the pod"})
    view.write_log(ns, name, "app", "")
    return ns, name, view


def test_exec(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, _ = pod
    res = kubectl(
        api, "exec", name, "-n", ns, "--", "sh", "-c", 'echo ok; echo "$POD_GREETING" >&2'
    )
    assert (res.returncode, res.stdout, res.stderr) == (0, "ok\n", "from the pod\n")
    res = kubectl(api, "exec", name, "-n", ns, "--", "sh", "-c", "echo out; exit 3")
    assert res.returncode == 3
    assert res.stdout == "out\n"
    assert "command terminated with exit code 3" in res.stderr


def test_exec_stdin(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, _ = pod
    text = "".join(f"line {i}\n" for i in range(20000))
    res = kubectl(api, "exec", "-i", name, "-n", ns, "--", "cat", input=text)
    assert res.returncode == 0, res.stderr
    assert res.stdout == text
    res = kubectl(api, "exec", "-i", name, "-n", ns, "--", "wc", "-l", input=text)
    assert res.stdout.strip() == "20000"


def test_exec_terminal_and_its_size(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    """kubectl on a local terminal of 33 rows and 77 columns: the command gets a terminal
    of that size (the resize stream)."""
    ns, name, _ = pod
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
    command = "test -t 0 && echo tty; sleep 0.5; stty size"
    proc = subprocess.Popen(
        [KUBECTL, "exec", "-ti", name, "-n", ns, "--", "sh", "-c", command],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**api.env(), **SPDY},
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: kubectl has gone and the terminal with it
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(10) == 0, out
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    assert b"tty" in out and b"33 77" in out, out


def test_exec_refused(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, view = pod
    res = kubectl(api, "exec", "missing", "-n", ns, "--", "true")
    assert 'pods "missing" not found' in res.stderr
    view.pods[(ns, name)].running = False  # known to the API, gone from the node
    try:
        res = kubectl(api, "exec", name, "-n", ns, "--", "true")
        assert res.returncode != 0
        assert "pod does not exist" in res.stderr
    finally:
        view.pods[(ns, name)].running = True


def test_cp_both_ways(
    api: ApiServerProcess, pod: tuple[str, str, FakeView], tmp_path: Path
) -> None:
    """kubectl cp is an exec of tar; the pod's paths are the host's here."""
    ns, name, _ = pod
    remote = tmp_path / "remote"
    remote.mkdir()
    local = tmp_path / "local.bin"
    local.write_bytes(bytes(range(256)) * 1000)
    res = kubectl(api, "cp", str(local), f"{ns}/{name}:{remote}/in.bin")
    assert res.returncode == 0, res.stderr
    assert (remote / "in.bin").read_bytes() == local.read_bytes()
    back = tmp_path / "back.bin"
    res = kubectl(api, "cp", f"{ns}/{name}:{remote}/in.bin", str(back))
    assert res.returncode == 0, res.stderr
    assert back.read_bytes() == local.read_bytes()


def test_attach(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, view = pod
    proc = subprocess.Popen(
        [KUBECTL, "attach", name, "-n", ns, "-c", "app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**api.env(), **SPDY},
    )
    try:
        time.sleep(1.5)  # kubectl finds the pod and opens the streams
        stamp = "2024-01-01T00:00:00.000000000Z"
        with open(view.pods[(ns, name)].logs["app"], "a") as f:
            f.write(f"{stamp} stdout F attached output\n{stamp} stderr F attached error\n")
        assert proc.stdout is not None
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


@contextlib.contextmanager
def port_forward(api: ApiServerProcess, ns: str, name: str, *remotes: int) -> Iterator[list[int]]:
    proc = subprocess.Popen(
        [KUBECTL, "port-forward", "-n", ns, f"pod/{name}", *(f":{r}" for r in remotes)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**api.env(), **SPDY},
    )
    try:
        assert proc.stdout is not None
        locals_ = []
        for remote in remotes:
            line = proc.stdout.readline()
            m = re.match(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {remote}", line)
            assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
            locals_.append(int(m.group(1)))
            proc.stdout.readline()  # the same port on [::1]
        yield locals_
    finally:
        proc.kill()
        proc.wait()


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def test_port_forward_two_ports(api: ApiServerProcess, pod: tuple[str, str, FakeView]) -> None:
    ns, name, _ = pod
    with (
        http_server() as one,
        http_server() as two,
        port_forward(api, ns, name, one, two) as (local_one, local_two),
    ):
        assert _get(local_one, "/one") == "hello from /one\n"
        assert _get(local_two, "/two") == "hello from /two\n"
        # each local connection is a new stream pair on the same SPDY connection
        assert _get(local_one, "/again") == "hello from /again\n"
