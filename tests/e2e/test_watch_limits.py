"""A watcher that stops reading is disconnected, not buffered for without bound."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.harness import ApiServerProcess, wait_for

pytestmark = pytest.mark.e2e


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _open_watch(api: ApiServerProcess, path: str, rcvbuf: int = 0) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(api.data_dir / "pki" / "ca.crt"))
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", api.port))
    if rcvbuf:  # a small receive buffer: the kernel does not absorb megabytes of events
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock = ctx.wrap_socket(raw)
    token = (api.data_dir / "pki" / "token").read_text().strip()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def _config_map_list(count: int, blob: str) -> str:
    items = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"cm-{i}"},
            "data": {"blob": blob},
        }
        for i in range(count)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def _closed(sock: ssl.SSLSocket) -> bool:
    """True once the server has dropped the connection (reading what is left until EOF)."""
    sock.settimeout(0.5)
    try:
        while True:
            if not sock.recv(1 << 20):
                return True
    except (TimeoutError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


def test_a_watcher_that_stops_reading_is_disconnected(api: ApiServerProcess, ns: str) -> None:
    sock = _open_watch(api, f"/api/v1/namespaces/{ns}/configmaps?watch=1", rcvbuf=4096)
    assert api.proc is not None
    before = _rss_kb(api.proc.pid)
    payload = "x" * 20_000
    body = _config_map_list(1500, payload)
    api.kubectl("create", "-n", ns, "-f", "-", input=body, timeout=300)
    # 30 MB of events: far more than the socket buffers and the 1,024-event backlog hold
    started = time.monotonic()
    log_path = api.data_dir.parent / f"{api.data_dir.name}.log"
    wait_for(
        lambda: "closing a watch that stopped reading" in log_path.read_text(),
        timeout=60,
        interval=0.5,
        what="the server to drop the watch",
    )
    dropped = time.monotonic() - started
    # what was sent before is still readable, then the stream ends
    wait_for(lambda: _closed(sock), timeout=30, interval=0.1, what="the end of the stream")
    sock.close()
    # the server goes on serving, and a new watch from the list works
    listed = json.loads(api.out("get", "configmaps", "-n", ns, "-o", "json"))
    assert len(listed["items"]) == 1500
    after = _rss_kb(api.proc.pid)
    print(f"dropped after {dropped:.1f}s; RSS {before} -> {after} kB")


def test_a_watcher_that_reads_slowly_but_steadily_keeps_its_watch(
    api: ApiServerProcess, ns: str
) -> None:
    sock = _open_watch(api, f"/api/v1/namespaces/{ns}/configmaps?watch=1")
    received = bytearray()
    failure: list[BaseException] = []

    def read() -> None:
        # one read every 5 ms (a TLS record, often one event): slower than the server
        # writes, but never stalled
        sock.settimeout(30)
        try:
            while received.count(b'"type":"ADDED"') < 2000:
                chunk = sock.recv(64 * 1024)
                if not chunk:
                    raise AssertionError("the server closed a watch that was being read")
                received.extend(chunk)
                time.sleep(0.005)
        except BaseException as e:
            failure.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    api.kubectl(
        "create", "-n", ns, "-f", "-", input=_config_map_list(2000, "y" * 2000), timeout=300
    )
    reader.join(timeout=120)
    sock.close()
    assert not failure, failure
    assert received.count(b'"type":"ADDED"') == 2000
