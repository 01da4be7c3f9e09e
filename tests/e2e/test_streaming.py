"""Logs, exec, attach, cp and port-forward on a real cluster (`kubesvc up`): the real kubectl
and the official Python client, through the API server to the node agents' kubelet API and
into pods' namespaces."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.stream import portforward, stream

from tests.e2e.cluster import AGNHOST, Cluster, running_cluster
from tests.e2e.harness import KUBECTL, wait_for

pytestmark = pytest.mark.e2e

TWO_SERVERS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: servers}}
spec:
  containers:
  - name: one
    image: {AGNHOST}
    args: [netexec, --http-port=8080, --udp-port=-1]
  - name: two
    image: {AGNHOST}
    args: [netexec, --http-port=8090, --udp-port=-1]
"""

TICKER = """
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  containers:
  - name: ticker
    image: busybox
    command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done']
"""

BOTH_STREAMS = """
apiVersion: v1
kind: Pod
metadata: {name: both}
spec:
  containers:
  - name: both
    image: busybox
    command:
    - sh
    - -c
    - 'i=0; while true; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; sleep 0.2; done'
"""

SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}

CRASHER = """
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: crasher
    image: busybox
    command: [sh, -c, 'echo "run at $(date +%s%N)"; sleep 1; exit 1']
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("streaming"), "s") as c:
        for manifest in (TWO_SERVERS, TICKER, BOTH_STREAMS):
            c.out("apply", "-f", "-", input=manifest)
        c.running("!app", 3)  # servers, ticker, both (the add-ons carry an app label)
        yield c


@pytest.fixture(scope="module")
def core(cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=cluster.env["KUBECONFIG"]))


def _drain(resp: Any) -> str:
    out = ""
    deadline = time.monotonic() + 20
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=1)
        if resp.peek_stdout():
            out += resp.read_stdout(timeout=0)
    return out


# -- exec -----------------------------------------------------------------------------------


def test_exec_stdin_in_text_frames_from_the_python_client(core: client.CoreV1Api) -> None:
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "servers",
        "default",
        container="one",
        command=["head", "-n", "1"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    try:
        resp.write_stdin("through text frames\n")
        assert _drain(resp) == "through text frames\n"
        assert resp.returncode == 0
    finally:
        resp.close()


def test_exec_runs_in_the_pod(cluster: Cluster) -> None:
    assert cluster.out("exec", "servers", "-c", "two", "--", "hostname") == "servers\n"
    # what is exec'd sees the container's environment: the image's PATH, HOSTNAME, HOME
    env = cluster.out("exec", "servers", "-c", "two", "--", "env").splitlines()
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in env
    assert "HOSTNAME=servers" in env and "HOME=/root" in env
    res = cluster.kubectl("exec", "servers", "-c", "nope", "--", "true", check=False)
    assert res.returncode != 0
    assert "container nope is not valid for pod servers" in res.stderr


# -- port-forward ---------------------------------------------------------------------------


def _get(sock: Any, path: str) -> str:
    """One GET over a forwarded socket, read as far as Content-Length says."""
    sock.settimeout(10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: pod\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the connection ended early"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?i)content-length: (\d+)", head)
    assert m, head
    while len(body) < int(m.group(1)):
        chunk = sock.recv(65536)
        assert chunk, "the connection ended early"
        body += chunk
    return body.decode()


def test_port_forward_from_the_python_client(core: client.CoreV1Api) -> None:
    """WebSocket channels: two ports of two containers and a refused one in one session."""
    pf = portforward(
        core.connect_get_namespaced_pod_portforward, "servers", "default", ports="8080,8090,8099"
    )
    try:
        assert _get(pf.socket(8080), "/hostname") == "servers"
        assert _get(pf.socket(8090), "/echo?msg=second") == "second"
        wait_for(lambda: pf.error(8099) is not None, timeout=10, what="the error channel")
        error = pf.error(8099)
        assert error.startswith("error forwarding port 8099 to pod ")
        assert "connection refused" in error.lower()
        assert pf.error(8080) is None
    finally:
        pf.close()


def test_kubectl_port_forward(cluster: Cluster) -> None:
    proc = subprocess.Popen(
        [KUBECTL, "port-forward", "pod/servers", ":8090"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    try:
        assert proc.stdout is not None
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8090", proc.stdout.readline())
        assert m
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{m.group(1)}/hostname"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert out.stdout == "servers"
    finally:
        proc.kill()
        proc.wait()


# -- cp -------------------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local directory, and a unique path for the pod (the pod's /tmp is the host's)."""
    remote = f"/tmp/kubesvc-cp-{secrets.token_hex(4)}"
    try:
        yield tmp_path, remote
    finally:
        shutil.rmtree(remote, ignore_errors=True)


def test_kubectl_cp_both_ways(cluster: Cluster, scratch: tuple[Path, str]) -> None:
    local, remote = scratch
    tree = local / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.bin").write_bytes(bytes(range(256)) * 400)
    cluster.out("exec", "ticker", "--", "mkdir", "-p", remote)
    cluster.out("cp", str(tree), f"default/ticker:{remote}/tree")
    listing = cluster.out("exec", "ticker", "--", "sh", "-c", f"cd {remote}/tree && ls -R")
    assert "a.txt" in listing and "b.bin" in listing
    assert cluster.out("exec", "ticker", "--", "cat", f"{remote}/tree/a.txt") == "alpha\n"
    back = local / "back"
    cluster.out("cp", f"default/ticker:{remote}/tree", str(back))
    assert (back / "a.txt").read_text() == "alpha\n"
    assert (back / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 400
    # one file, and a path that is not there
    cluster.out("cp", f"default/ticker:{remote}/tree/a.txt", str(local / "one.txt"))
    assert (local / "one.txt").read_text() == "alpha\n"
    # a path that is not there copies nothing. kubectl prints tar's complaint when it
    # arrives before tar's end-of-archive blocks, which end kubectl: a race inside kubectl
    # (stdout and stderr are separate streams), so the complaint is checked through exec,
    # which waits for every stream
    cluster.kubectl("cp", f"default/ticker:{remote}/nothing", str(local / "x"), check=False)
    assert not (local / "x").exists()
    res = cluster.kubectl("exec", "ticker", "--", "tar", "cf", "-", f"{remote}/nothing",
                          check=False)  # fmt: skip
    assert res.returncode == 2  # GNU tar's fatal error, passed through as the exit code
    assert f"{remote[1:]}/nothing: Cannot stat: No such file or directory" in res.stderr


# -- attach ---------------------------------------------------------------------------------


def test_kubectl_attach(cluster: Cluster) -> None:
    proc = subprocess.Popen(
        [KUBECTL, "attach", "ticker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        m1, m2 = re.fullmatch(r"tick (\d+)\n", first), re.fullmatch(r"tick (\d+)\n", second)
        assert m1 and m2, (first, second)
        assert int(m2.group(1)) == int(m1.group(1)) + 1
        # what was written before attaching is not repeated
        logs = cluster.out("logs", "ticker")
        assert int(m1.group(1)) > 1 and "tick 1\n" in logs
    finally:
        proc.kill()
        proc.wait()


# -- logs -----------------------------------------------------------------------------------


def test_kubectl_logs_flags(cluster: Cluster) -> None:
    tail = cluster.out("logs", "ticker", "--tail=2").splitlines()
    assert len(tail) == 2 and all(re.fullmatch(r"tick \d+", line) for line in tail)
    assert cluster.out("logs", "ticker", "--limit-bytes=6") == "tick 1"
    assert cluster.out("logs", "pod/ticker", "-c", "ticker", "--tail=0") == ""
    err = cluster.kubectl("logs", "ticker", "-c", "nope", check=False).stderr
    assert "container nope is not valid for pod ticker" in err
    err = cluster.kubectl("logs", "ticker", "--previous", check=False).stderr
    assert 'previous terminated container "ticker" in pod "ticker" not found' in err
    # kubectl picks the first container itself; the raw API asks for one
    res = cluster.kubectl("logs", "servers")
    assert 'Defaulted container "one" out of: one, two' in res.stderr
    assert "Started HTTP server on port 8080" in res.stdout
    raw = cluster.kubectl(
        "get", "--raw", "/api/v1/namespaces/default/pods/servers/log", check=False
    )
    assert "a container name must be specified for pod servers, choose one of: [one two]" in (
        raw.stderr
    )

    proc = subprocess.Popen(
        [KUBECTL, "logs", "-f", "ticker", "--tail=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    try:
        assert proc.stdout is not None
        numbers = [int(proc.stdout.readline().split()[1]) for _ in range(3)]
        assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]
    finally:
        proc.kill()
        proc.wait()


def test_kubectl_logs_previous(cluster: Cluster) -> None:
    cluster.out("apply", "-f", "-", input=CRASHER)
    try:

        def restarted() -> bool:
            pod = cluster.json("get", "pod", "crasher")
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            return bool(statuses) and statuses[0].get("restartCount", 0) >= 1

        wait_for(restarted, timeout=60, what="crasher to restart")
        previous = cluster.out("logs", "crasher", "--previous")
        assert re.fullmatch(r"run at \d+\n", previous)
        wait_for(
            lambda: cluster.out("logs", "crasher") not in ("", previous),
            timeout=30,
            what="the new instance's log",
        )
    finally:
        cluster.kubectl("delete", "pod", "crasher", "--wait=false", check=False)


def test_kubectl_logs_timestamps_and_since(cluster: Cluster) -> None:
    """The runtime writes CRI records: each line has the time it was written."""
    stamped = cluster.out("logs", "ticker", "--timestamps", "--tail=3").splitlines()
    assert len(stamped) == 3
    stamps = []
    for line in stamped:
        m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (tick \d+)", line)
        assert m, line
        stamps.append(m.group(1))
    assert stamps == sorted(stamps)
    # --since-time from the middle one (kubectl sends it in whole seconds): that line and
    # what follows, nothing from an earlier second
    since = cluster.out("logs", "ticker", "--timestamps", f"--since-time={stamps[1]}")
    assert stamped[1] in since.splitlines()
    assert all(line[:19] >= stamps[1][:19] for line in since.splitlines())
    everything = cluster.out("logs", "ticker").splitlines()
    assert len(since.splitlines()) < len(everything)
    recent = cluster.out("logs", "ticker", "--since=1s").splitlines()
    assert 0 < len(recent) < len(everything)
    # stdout and stderr both reach the log, each line whole
    both = cluster.out("logs", "both", "--tail=20").splitlines()
    assert any(line.startswith("out ") for line in both)
    assert any(line.startswith("err ") for line in both)
    assert all(re.fullmatch(r"(out|err) \d+", line) for line in both)


def test_kubectl_attach_keeps_stderr_apart(cluster: Cluster) -> None:
    proc = subprocess.Popen(
        [KUBECTL, "attach", "both"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out = [proc.stdout.readline() for _ in range(2)]
        assert all(re.fullmatch(r"out \d+\n", line) for line in out), out
        # kubectl's own hint comes first on stderr, then the container's stderr
        err = [proc.stderr.readline() for _ in range(3)]
        assert err[0].startswith("If you don't see a command prompt"), err
        assert all(re.fullmatch(r"err \d+\n", line) for line in err[1:]), err
    finally:
        proc.kill()
        proc.wait()


def test_kubectl_over_plain_spdy(cluster: Cluster, scratch: tuple[Path, str]) -> None:
    """kubectl told to use SPDY upgrades (as client-go before 1.30 always does): exec with
    stdin and an exit code, cp, and port-forward of two ports, into real pods."""
    env = {**cluster.env, **SPDY}

    def kubectl(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL, *args], input=input, capture_output=True, text=True, env=env, timeout=60
        )

    text = "".join(f"line {i}\n" for i in range(5000))
    res = kubectl("exec", "-i", "ticker", "--", "cat", input=text)
    assert (res.returncode, res.stdout) == (0, text), res.stderr
    res = kubectl("exec", "ticker", "--", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (res.returncode, res.stdout) == (4, "out\n")
    assert "err\n" in res.stderr and "command terminated with exit code 4" in res.stderr
    local, remote = scratch
    (local / "up.txt").write_text("through SPDY\n")
    cluster.out("exec", "ticker", "--", "mkdir", "-p", remote)
    assert kubectl("cp", str(local / "up.txt"), f"default/ticker:{remote}/up.txt").returncode == 0
    assert kubectl("exec", "ticker", "--", "cat", f"{remote}/up.txt").stdout == "through SPDY\n"

    proc = subprocess.Popen(
        [KUBECTL, "port-forward", "pod/servers", ":8080", ":8090"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ports = {}
        while len(ports) < 2:
            line = proc.stdout.readline()
            m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
            assert line, "kubectl port-forward ended"
            if m:
                ports[int(m.group(2))] = int(m.group(1))
        for remote_port, path, want in (
            (8080, "/hostname", "servers"),
            (8090, "/echo?msg=hi", "hi"),
        ):
            out = subprocess.run(
                ["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{ports[remote_port]}{path}"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert out.stdout == want, out.stderr
    finally:
        proc.kill()
        proc.wait()


READER = """
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  restartPolicy: Never
  containers:
  - name: reader
    image: busybox
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'while read line; do echo "got $line"; done; echo "stdin closed"']
"""


def test_kubectl_attach_stdin_once(cluster: Cluster) -> None:
    """A container with stdin reads what `kubectl attach -i` sends; with stdinOnce its
    stdin ends when that attach's input does, and the container finishes."""
    cluster.out("apply", "-f", "-", input=READER)
    try:
        wait_for(
            lambda: cluster.json("get", "pod", "reader")["status"].get("phase") == "Running",
            timeout=60,
            what="reader running",
        )
        res = cluster.kubectl("attach", "-i", "reader", input="hello\nworld\n", timeout=60)
        assert "got hello\ngot world\n" in res.stdout, (res.stdout, res.stderr)
        wait_for(
            lambda: cluster.json("get", "pod", "reader")["status"].get("phase") == "Succeeded",
            timeout=30,
            what="reader to finish once its stdin ended",
        )
        assert cluster.out("logs", "reader") == "got hello\ngot world\nstdin closed\n"
    finally:
        cluster.kubectl("delete", "pod", "reader", "--wait=false", check=False)
