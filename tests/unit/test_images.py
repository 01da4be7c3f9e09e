"""Built-in images: resolve() tables, the pure parts of the servers, and each server run as a
subprocess on 127.0.0.1 (no namespaces needed)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubesvc.node import images
from kubesvc.node.images import ImageRef, InvalidReference, Resolved, parse_image, resolve
from kubesvc.node.images._runtime import (
    BIND_ENV,
    Request,
    format_go_duration,
    parse_go_duration,
)
from kubesvc.node.images.agnhost import (
    Netexec,
    UsageError,
    go_json,
    liveness_app,
    parse_flags,
    read_resolv_conf,
    split_host_port,
    udp_responder,
)
from kubesvc.node.images.http_echo import FlagError
from kubesvc.node.images.http_echo import parse_flags as echo_flags
from kubesvc.node.images.kubia import Kubia

PY = sys.executable
HOST = socket.gethostname()
LOCAL = "127.0.0.1"


def mod(name: str) -> list[str]:
    return [PY, "-m", f"kubesvc.node.images.{name}"]


# ---------------------------------------------------------------- image references


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        pytest.param("nginx", ImageRef("docker.io", "library/nginx", "latest", ""), id="bare"),
        pytest.param(
            "nginx:1.25-alpine", ImageRef("docker.io", "library/nginx", "1.25-alpine", ""), id="tag"
        ),
        pytest.param("luksa/kubia", ImageRef("docker.io", "luksa/kubia", "latest", ""), id="user"),
        pytest.param(
            "registry.k8s.io/e2e-test-images/agnhost:2.53",
            ImageRef("registry.k8s.io", "e2e-test-images/agnhost", "2.53", ""),
            id="registry",
        ),
        pytest.param(
            "localhost:5000/team/app:v1@sha256:" + "a" * 64,
            ImageRef("localhost:5000", "team/app", "v1", "sha256:" + "a" * 64),
            id="port-tag-digest",
        ),
        pytest.param(
            "busybox@sha256:" + "0" * 64,
            ImageRef("docker.io", "library/busybox", "", "sha256:" + "0" * 64),
            id="digest-only",
        ),
        pytest.param(
            "index.docker.io/library/alpine:3",
            ImageRef("docker.io", "library/alpine", "3", ""),
            id="index-docker-io",
        ),
        pytest.param("localhost/x", ImageRef("localhost", "x", "latest", ""), id="localhost"),
    ],
)
def test_parse_image(ref: str, want: ImageRef) -> None:
    assert parse_image(ref) == want


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param("", id="empty"),
        pytest.param("Nginx", id="uppercase"),
        pytest.param("nginx:", id="empty-tag"),
        pytest.param("nginx@sha256:abc", id="short-digest"),
        pytest.param("a//b", id="empty-component"),
        pytest.param("nginx:bad tag", id="space"),
    ],
)
def test_parse_image_rejects(ref: str) -> None:
    with pytest.raises(InvalidReference):
        parse_image(ref)


# ---------------------------------------------------------------- resolve()

AGN = "registry.k8s.io/e2e-test-images/agnhost:2.53"


@pytest.mark.parametrize(
    ("image", "command", "args", "want"),
    [
        pytest.param(
            AGN,
            None,
            ["netexec", "--http-port=8080", "--udp-port=8081"],
            Resolved(
                [*mod("agnhost"), "netexec", "--http-port=8080", "--udp-port=8081"],
                default_ports=[8080, 8081],
            ),
            id="agnhost-netexec",
        ),
        pytest.param(
            AGN,
            None,
            ["netexec", "--http-port", "9000", "--udp-port=-1"],
            Resolved(
                [*mod("agnhost"), "netexec", "--http-port", "9000", "--udp-port=-1"],
                default_ports=[9000],
            ),
            id="agnhost-netexec-no-udp",
        ),
        pytest.param(
            "agnhost",
            None,
            ["serve-hostname"],
            Resolved([*mod("agnhost"), "serve-hostname"], default_ports=[9376]),
            id="agnhost-bare-serve-hostname",
        ),
        pytest.param(
            "k8s.gcr.io/e2e-test-images/agnhost:2.39",
            None,
            None,
            Resolved([*mod("agnhost"), "pause"]),
            id="agnhost-default-cmd-is-pause",
        ),
        pytest.param(
            AGN,
            ["/agnhost", "netexec"],
            ["--http-port=80"],
            Resolved(
                [*mod("agnhost"), "--kubesvc-argv0=/agnhost", "netexec", "--http-port=80"],
                default_ports=[80, 8081],
            ),
            id="agnhost-command-names-binary",
        ),
        pytest.param(
            AGN,
            ["/agnhost"],
            None,
            Resolved([*mod("agnhost"), "--kubesvc-argv0=/agnhost", "--help"]),
            id="agnhost-command-without-subcommand",
        ),
        pytest.param(
            AGN,
            ["sh", "-c"],
            ["sleep 1"],
            Resolved(["sh", "-c", "sleep 1"]),
            id="agnhost-host-command",
        ),
        pytest.param(
            "luksa/kubia",
            None,
            None,
            Resolved([*mod("kubia"), "--variant=default"], default_ports=[8080]),
            id="kubia",
        ),
        pytest.param(
            "luksa/kubia-unhealthy",
            None,
            ["ignored"],
            Resolved([*mod("kubia"), "--variant=unhealthy"], default_ports=[8080]),
            id="kubia-unhealthy",
        ),
        pytest.param(
            "luksa/kubia:v3",
            ["node", "app.js"],
            None,
            Resolved([*mod("kubia"), "--variant=v3"], default_ports=[8080]),
            id="kubia-v3-node-command",
        ),
        pytest.param(
            "nginx",
            None,
            None,
            Resolved(
                [*mod("nginx"), "--kubesvc-version=1.27.3", "nginx", "-g", "daemon off;"],
                default_ports=[80],
            ),
            id="nginx",
        ),
        pytest.param(
            "docker.io/library/nginx:1.14.2",
            None,
            None,
            Resolved(
                [*mod("nginx"), "--kubesvc-version=1.14.2", "nginx", "-g", "daemon off;"],
                default_ports=[80],
            ),
            id="nginx-version",
        ),
        pytest.param(
            "nginx:1.25-alpine",
            ["nginx", "-g", "daemon off;"],
            None,
            Resolved(
                [*mod("nginx"), "--kubesvc-version=1.25.0", "nginx", "-g", "daemon off;"],
                default_ports=[80],
            ),
            id="nginx-command",
        ),
        pytest.param(
            "nginx",
            None,
            ["sh", "-c", "echo hi"],
            Resolved(["sh", "-c", "echo hi"]),
            id="nginx-entrypoint-runs-other-args",
        ),
        pytest.param(
            "nginxinc/nginx-unprivileged",
            None,
            None,
            Resolved(
                [
                    *mod("nginx"),
                    "--kubesvc-version=1.27.3",
                    "--kubesvc-port=8080",
                    "nginx",
                    "-g",
                    "daemon off;",
                ],
                default_ports=[8080],
            ),
            id="nginx-unprivileged",
        ),
        pytest.param(
            "hashicorp/http-echo:1.0",
            None,
            ["-text=hi"],
            Resolved([*mod("http_echo"), "-text=hi"], default_ports=[5678]),
            id="http-echo",
        ),
        pytest.param(
            "hashicorp/http-echo",
            None,
            ["-listen=:8080", "-text=hi"],
            Resolved([*mod("http_echo"), "-listen=:8080", "-text=hi"], default_ports=[8080]),
            id="http-echo-listen",
        ),
        pytest.param(
            "registry.k8s.io/pause:3.9",
            None,
            None,
            Resolved(mod("pause")),
            id="pause",
        ),
        pytest.param("pause", ["/pause"], None, Resolved(mod("pause")), id="pause-command"),
        pytest.param("busybox", None, None, Resolved(["sh"]), id="busybox-cmd"),
        pytest.param(
            "busybox:1.36",
            None,
            ["sleep", "3600"],
            Resolved(["sleep", "3600"]),
            id="busybox-args-replace-cmd",
        ),
        pytest.param(
            "registry.k8s.io/e2e-test-images/busybox:1.36.1-1",
            ["sh", "-c", "echo ok"],
            None,
            Resolved(["sh", "-c", "echo ok"]),
            id="busybox-command",
        ),
        pytest.param("alpine:3.20", None, None, Resolved(["/bin/sh"]), id="alpine"),
        pytest.param("ubuntu", None, None, Resolved(["/bin/bash"]), id="ubuntu"),
        pytest.param("debian:bookworm", None, None, Resolved(["bash"]), id="debian"),
        pytest.param("curlimages/curl", None, None, Resolved(["curl"]), id="curl-cmd"),
        pytest.param(
            "curlimages/curl:8.10.1",
            None,
            ["-s", "http://x/"],
            Resolved(["sh", "-c", images.CURL_ENTRYPOINT, "/entrypoint.sh", "-s", "http://x/"]),
            id="curl-args-through-entrypoint",
        ),
        pytest.param(
            "curlimages/curl",
            ["curl", "-sS"],
            ["http://x/"],
            Resolved(["curl", "-sS", "http://x/"]),
            id="curl-command",
        ),
        pytest.param(
            "example.com/team/app:1",
            ["/usr/bin/env"],
            ["A=1"],
            Resolved(["/usr/bin/env", "A=1"]),
            id="unknown-with-command-runs-from-host",
        ),
        pytest.param(
            "nginx",
            [],
            [],
            Resolved(
                [*mod("nginx"), "--kubesvc-version=1.27.3", "nginx", "-g", "daemon off;"],
                default_ports=[80],
            ),
            id="empty-lists-mean-unset",
        ),
    ],
)
def test_resolve(
    image: str, command: list[str] | None, args: list[str] | None, want: Resolved
) -> None:
    assert resolve(image, command, args) == want


@pytest.mark.parametrize(
    ("image", "args"),
    [
        pytest.param("foo/bar:1", None, id="unknown"),
        pytest.param("example.com/app", ["--serve"], id="unknown-with-args-only"),
        pytest.param("node:22", None, id="language-image"),
    ],
)
def test_resolve_not_built_in(image: str, args: list[str] | None) -> None:
    got = resolve(image, None, args)
    assert got.argv is None
    assert got.reason == "ErrImagePull"
    assert f'image "{image}" is not built in' in got.message
    assert "give the container a command" in got.message
    for name in ("agnhost", "kubia", "nginx", "hashicorp/http-echo", "pause", "busybox"):
        assert name in got.message


@pytest.mark.parametrize(
    "image",
    [pytest.param("Nginx", id="uppercase"), pytest.param("", id="empty")],
)
def test_resolve_invalid_name(image: str) -> None:
    got = resolve(image, ["sh"], None)
    assert got.argv is None
    assert got.reason == "InvalidImageName"
    assert "invalid reference format" in got.message


def test_curl_entrypoint_script(tmp_path: Path) -> None:
    fake = tmp_path / "curl"
    fake.write_text('#!/bin/sh\necho "curl $*"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for args, want in [
        (["-s", "http://x/"], "curl -s http://x/"),
        (["http://x/"], "curl http://x/"),
        (["echo", "plain"], "plain"),
    ]:
        argv = resolve("curlimages/curl", None, args).argv
        assert argv is not None
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        assert out.stdout.strip() == want, args


# ---------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("0", 0.0, id="zero"),
        pytest.param("5s", 5.0, id="seconds"),
        pytest.param("1m30s", 90.0, id="compound"),
        pytest.param("250ms", 0.25, id="millis"),
        pytest.param("1.5h", 5400.0, id="fraction"),
        pytest.param("-2s", -2.0, id="negative"),
    ],
)
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1h 2m"])
def test_parse_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("seconds", "want"),
    [(0, "0s"), (5, "5s"), (90, "1m30s"), (0.25, "250ms"), (3600, "1h0m0s")],
)
def test_format_go_duration(seconds: float, want: str) -> None:
    assert format_go_duration(seconds) == want


@pytest.mark.parametrize(
    ("argv", "flags", "positional"),
    [
        pytest.param(["--http-port=80"], {"http-port": 80}, [], id="equals"),
        pytest.param(["--http-port", "81"], {"http-port": 81}, [], id="space"),
        pytest.param(["--udp-port=-1", "--v=2"], {"udp-port": -1, "v": 2}, [], id="klog-flag"),
        pytest.param(["--", "--x"], {}, ["--x"], id="double-dash"),
    ],
)
def test_agnhost_flags(argv: list[str], flags: dict[str, object], positional: list[str]) -> None:
    from kubesvc.node.images.agnhost import NETEXEC_FLAGS

    parsed = parse_flags(NETEXEC_FLAGS, argv)
    for key, value in flags.items():
        assert parsed.flags[key] == value
    assert parsed.positional == positional


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--nope"], id="unknown"),
        pytest.param(["--http-port=abc"], id="not-int"),
        pytest.param(["-port=1"], id="single-dash"),
        pytest.param(["--http-port"], id="missing-value"),
    ],
)
def test_agnhost_flags_reject(argv: list[str]) -> None:
    from kubesvc.node.images.agnhost import NETEXEC_FLAGS

    with pytest.raises(UsageError):
        parse_flags(NETEXEC_FLAGS, argv)


def test_agnhost_bool_flags() -> None:
    from kubesvc.node.images.agnhost import SERVE_HOSTNAME_FLAGS

    parsed = parse_flags(SERVE_HOSTNAME_FLAGS, ["--tcp", "--http=false", "--port", "9"])
    assert (parsed.flags["tcp"], parsed.flags["http"], parsed.flags["port"]) == (True, False, 9)


@pytest.mark.parametrize(
    ("dest", "want"),
    [
        pytest.param("1.2.3.4:80", ("1.2.3.4", "80"), id="v4"),
        pytest.param("[::1]:80", ("::1", "80"), id="v6"),
        pytest.param("svc.ns:http", ("svc.ns", "http"), id="named"),
    ],
)
def test_split_host_port(dest: str, want: tuple[str, str]) -> None:
    assert split_host_port(dest) == want


@pytest.mark.parametrize("dest", ["nohost", "::1:80", "[::1]80"])
def test_split_host_port_rejects(dest: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(dest)


@pytest.mark.parametrize(
    ("data", "want"),
    [
        pytest.param(b"hostname", HOST.encode(), id="hostname"),
        pytest.param(b"  HostName\n", HOST.encode(), id="case-and-space"),
        pytest.param(b"echo hello", b"hello", id="echo"),
        pytest.param(b"clientip", b"10.0.0.9:4000", id="clientip"),
        pytest.param(b"what", None, id="unknown"),
        pytest.param(b"\xff\xfe", None, id="binary"),
        pytest.param(b"", None, id="empty"),
    ],
)
def test_netexec_udp_commands(data: bytes, want: bytes | None) -> None:
    assert udp_responder(data, ("10.0.0.9", 4000)) == want


def req(
    target: str, *, method: str = "GET", headers: list[tuple[str, str]] | None = None
) -> Request:
    from urllib.parse import parse_qs, urlsplit

    split = urlsplit(target)
    return Request(
        method=method,
        target=target,
        path=split.path,
        query=parse_qs(split.query, keep_blank_values=True),
        headers=headers or [],
        client=("10.1.2.3", 5555),
        host="pod",
        version="HTTP/1.1",
    )


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        pytest.param("/hostname", 200, HOST, id="hostname"),
        pytest.param("/hostName", 200, HOST, id="hostName"),
        pytest.param("/clientip", 200, "10.1.2.3:5555", id="clientip"),
        pytest.param("/echo?msg=hi%20there", 200, "hi there", id="echo"),
        pytest.param("/echo?msg=gone&code=404", 404, "gone", id="echo-code"),
        pytest.param(
            "/echo?msg=x&code=abc",
            200,
            "argument 'code' must be an integer or empty, got \"abc\"\n",
            id="echo-bad-code",
        ),
        pytest.param("/header?key=x-test", 200, "v1", id="header-key"),
        pytest.param(
            "/header", 200, '{"Accept":["*/*"],"X-Test":["v1"]}', id="header-all-without-host"
        ),
        pytest.param("/healthz", 412, "", id="healthz-before-udp"),
        pytest.param(
            "/dial", 400, "request parameter not specified. <nil>\n", id="dial-no-request"
        ),
        pytest.param(
            "/dial?request=hostname&protocol=tcpx&host=1.2.3.4&port=1",
            400,
            "unsupported protocol. tcpx\n",
            id="dial-bad-protocol",
        ),
        pytest.param(
            "/dial?request=hostname&tries=x&host=1.2.3.4&port=1",
            400,
            'tries parameter is invalid. strconv.Atoi: parsing "x": invalid syntax\n',
            id="dial-bad-tries",
        ),
        pytest.param(
            "/exit?timeout=soon",
            200,
            "argument 'timeout' must be a valid golang duration or empty, got \"soon\"\n",
            id="exit-bad-timeout",
        ),
        pytest.param(
            "/exit?code=x",
            200,
            "argument 'code' must be an integer [0-127] or empty, got \"x\"\n",
            id="exit-bad-code",
        ),
        pytest.param("/shell?cmd=echo%20hi", 200, '{"output":"hi\\n"}', id="shell"),
        pytest.param(
            "/shell?shellCommand=echo%20x%3Bexit%203",
            200,
            '{"error":"exit status 3","output":"x\\n"}',
            id="shell-exit-status",
        ),
        pytest.param("/redirect?location=/echo%3Fmsg%3Dx&code=307", 307, None, id="redirect"),
    ],
)
def test_netexec_routes(target: str, status: int, body: str | None) -> None:
    app = Netexec()
    got = app(req(target, headers=[("Host", "pod"), ("Accept", "*/*"), ("X-Test", "v1")]))
    assert got.status == status
    if body is not None:
        assert got.body.decode() == body


def test_netexec_root_and_unknown_paths_answer_time() -> None:
    app = Netexec()
    for target in ("/", "/nothing/here"):
        assert app(req(target)).body.startswith(b"NOW: ")


def test_netexec_redirect_location() -> None:
    got = Netexec()(req("/redirect?location=/echo%3Fmsg%3Dx&code=307"))
    assert ("Location", "/echo?msg=x") in got.headers


def test_netexec_http_override_serves_one_path() -> None:
    from kubesvc.node.images.agnhost import _override

    handle = _override(Netexec(), "/echo?msg=over")
    assert handle(req("/hostname")).body == b"over"


def test_netexec_invalid_echo_code_drops_connection() -> None:
    assert Netexec()(req("/echo?msg=x&code=42")).drop


def test_netexec_readyz_after_sigterm() -> None:
    app = Netexec()
    assert app(req("/readyz")).status == 412
    app.udp_ready.set()
    assert (app(req("/readyz")).status, app(req("/healthz")).status) == (200, 200)
    app.sigterm.set()
    got = app(req("/readyz"))
    assert (got.status, got.body) == (503, b"shutting down")


def test_go_json_matches_encoding_json() -> None:
    assert go_json({"b": ["<&>"], "a": []}) == '{"a":[],"b":["\\u003c\\u0026\\u003e"]}'


def test_read_resolv_conf(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(
        "# generated\nnameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local\n"
        "options ndots:5\nnameserver 10.96.0.11\n"
    )
    assert read_resolv_conf(str(path)) == (
        ["ns.svc.cluster.local", "svc.cluster.local"],
        ["10.96.0.10", "10.96.0.11"],
    )


@pytest.mark.parametrize(
    ("variant", "answers"),
    [
        pytest.param("default", [(200, f"You've hit {HOST}\n")] * 7, id="default"),
        pytest.param(
            "unhealthy",
            [(200, f"You've hit {HOST}\n")] * 5 + [(500, "I'm not well. Please restart me!")] * 2,
            id="unhealthy",
        ),
        pytest.param(
            "v3",
            [(200, f"This is v3 running in pod {HOST}\n")] * 4
            + [(500, f"Some internal error has occurred! This is pod {HOST}\n")] * 3,
            id="v3",
        ),
    ],
)
def test_kubia_variants(variant: str, answers: list[tuple[int, str]]) -> None:
    app = Kubia(variant, HOST)
    got = [app.answer(n) for n in range(1, len(answers) + 1)]
    assert got == answers


@pytest.mark.parametrize(
    ("argv", "text", "listen", "rest"),
    [
        pytest.param(["-text=hi"], "hi", ":5678", [], id="text"),
        pytest.param(["--text", "a b", "-listen=:80"], "a b", ":80", [], id="double-dash-space"),
        pytest.param(["-text=x", "extra"], "x", ":5678", ["extra"], id="leftover"),
    ],
)
def test_http_echo_flags(argv: list[str], text: str, listen: str, rest: list[str]) -> None:
    flags, left = echo_flags(argv)
    assert (flags["text"], flags["listen"], left) == (text, listen, rest)


def test_http_echo_unknown_flag() -> None:
    with pytest.raises(FlagError, match="flag provided but not defined: -nope"):
        echo_flags(["-nope"])


# ---------------------------------------------------------------- running servers


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOCAL, 0))
        return int(sock.getsockname()[1])


def free_ports() -> tuple[int, int]:
    """A port free for both TCP and UDP (netexec's HTTP and UDP servers may share numbers)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind((LOCAL, port))
        except OSError:
            continue
        return port, free_port(socket.SOCK_DGRAM)
    raise RuntimeError("no free port")


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def logs(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        self.popen.send_signal(sig)
        return self.popen.wait(timeout)


Spawn = Callable[..., Proc]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    procs: list[Proc] = []

    def start(argv: list[str], env: dict[str, str] | None = None) -> Proc:
        n = len(procs)
        out, err = tmp_path / f"p{n}.out", tmp_path / f"p{n}.err"
        full_env = {**os.environ, BIND_ENV: LOCAL, **(env or {})}
        with out.open("wb") as fo, err.open("wb") as fe:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, env=full_env
            )
        proc = Proc(popen, out, err)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait(10)


def wait_tcp(port: int, proc: Proc, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(f"exited {proc.popen.returncode}: {proc.logs()}")
        try:
            socket.create_connection((LOCAL, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"port {port} never opened: {proc.logs()}")


def get(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOCAL, port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def udp(port: int, payload: bytes, timeout: float = 3.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, (LOCAL, port))
        return sock.recv(2048)


def argv_for(
    image: str, args: list[str] | None = None, command: list[str] | None = None
) -> list[str]:
    got = resolve(image, command, args)
    assert got.argv is not None, got.message
    return got.argv


def netexec(spawn: Spawn, *extra: str) -> tuple[Proc, int, int]:
    http_port, udp_port = free_ports()
    proc = spawn(
        argv_for(AGN, ["netexec", f"--http-port={http_port}", f"--udp-port={udp_port}", *extra])
    )
    wait_tcp(http_port, proc)
    return proc, http_port, udp_port


def test_netexec_sends_a_response_in_one_write(spawn: Spawn) -> None:
    """Head and body together, as Go's net/http sends a small response: a server killed
    mid-request sent all of an answer or nothing (a proxy can retry nothing). The first
    read has all of it (loopback delivers one write as one segment)."""
    _, port, _ = netexec(spawn)
    for _ in range(20):
        with socket.create_connection((LOCAL, port), timeout=10) as sock:
            sock.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n")
            first = sock.recv(65536)
            body = first.partition(b"\r\n\r\n")[2]
            assert body == HOST.encode(), first


def test_netexec_answers_expect_100_continue_before_the_body(spawn: Spawn) -> None:
    _, port, _ = netexec(spawn)
    with socket.create_connection((LOCAL, port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo?msg=hi HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"abc")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_netexec_serves_http_and_udp(spawn: Spawn) -> None:
    started = time.monotonic()
    proc, port, uport = netexec(spawn)
    assert time.monotonic() - started < 5, "netexec should be Ready fast"

    assert get(port, "/hostname")[2].decode() == HOST
    assert get(port, "/clientip")[2].decode().startswith("127.0.0.1:")
    assert get(port, "/echo?msg=hello")[2] == b"hello"
    assert get(port, "/healthz")[0] == 200
    assert get(port, "/header?key=X-Probe", headers={"X-Probe": "yes"})[2] == b"yes"
    status, headers, body = get(port, "/shell?cmd=echo%20$((40%2B2))")
    assert (status, json.loads(body)) == (200, {"output": "42\n"})
    assert headers["content-type"] == "text/plain; charset=utf-8"

    assert udp(uport, b"hostname").decode() == HOST
    assert udp(uport, b"echo pong") == b"pong"
    assert udp(uport, b"clientip").decode().startswith("127.0.0.1:")

    logs = proc.logs()
    assert "GET /hostname" in logs
    assert f"Started HTTP server on port {port}" in logs
    assert proc.stop() == 0


def test_netexec_dial(spawn: Spawn) -> None:
    _, port, _ = netexec(spawn)
    _, peer, peer_udp = netexec(spawn)
    closed = free_port()

    status, _, body = get(port, f"/dial?request=hostname&host={LOCAL}&port={peer}&tries=2")
    assert (status, json.loads(body)) == (200, {"responses": [HOST, HOST]})

    status, _, body = get(
        port, f"/dial?request=echo%20hi&protocol=udp&host=localhost&port={peer_udp}"
    )
    assert (status, json.loads(body)) == (200, {"responses": ["hi"]})

    status, _, body = get(port, f"/dial?request=echo%3Fmsg%3Dvia&host={LOCAL}&port={peer}")
    assert json.loads(body) == {"responses": ["via"]}

    status, _, body = get(port, f"/dial?request=hostname&host={LOCAL}&port={closed}")
    errors = json.loads(body)["errors"]
    assert status == 200 and "connection refused" in errors[0]

    status, _, body = get(port, "/dial?request=hostname&host=no-such-host.invalid&port=80")
    assert status == 400 and body.startswith(b"host and/or port param are invalid.")


def test_netexec_survives_malformed_requests(spawn: Spawn) -> None:
    proc, port, uport = netexec(spawn)
    for junk in (
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
    ):
        with socket.create_connection((LOCAL, port), timeout=5) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                sock.recv(4096)
    with socket.create_connection((LOCAL, port), timeout=5) as sock:
        sock.sendall(b"\x00\x01garbage\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 Bad Request")
    for junk in (b"\xff" * 3000, b"echo", b"\n"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(junk, (LOCAL, uport))
    assert get(port, "/hostname")[2].decode() == HOST
    assert udp(uport, b"hostname").decode() == HOST
    assert proc.popen.poll() is None


def test_netexec_keep_alive(spawn: Spawn) -> None:
    _, port, _ = netexec(spawn)
    conn = http.client.HTTPConnection(LOCAL, port, timeout=5)
    try:
        for msg in ("one", "two", "three"):
            conn.request("GET", f"/echo?msg={msg}")
            assert conn.getresponse().read() == msg.encode()
    finally:
        conn.close()


def test_netexec_exit_graceful_with_code(spawn: Spawn) -> None:
    proc, port, _ = netexec(spawn)
    assert get(port, "/exit?code=3&timeout=2s")[0] == 200
    assert proc.popen.wait(10) == 3
    assert "Graceful shutdown completed" in proc.logs()


def test_netexec_exit_immediately(spawn: Spawn) -> None:
    proc, port, _ = netexec(spawn)
    with pytest.raises((http.client.HTTPException, OSError)):
        get(port, "/exit?code=4")
    assert proc.popen.wait(10) == 4


def test_netexec_sigterm_with_delay_keeps_serving_readyz_503(spawn: Spawn) -> None:
    proc, port, _ = netexec(spawn, "--delay-shutdown=3")
    assert get(port, "/readyz")[2] == b"ok"
    proc.popen.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert get(port, "/readyz")[:1] == (503,)
    assert get(port, "/healthz")[0] == 200
    assert proc.popen.wait(10) == 0


def test_netexec_without_udp_is_not_healthy(spawn: Spawn) -> None:
    port = free_port()
    proc = spawn(argv_for(AGN, ["netexec", f"--http-port={port}", "--udp-port=-1"]))
    wait_tcp(port, proc)
    assert get(port, "/healthz")[0] == 412


def test_netexec_port_in_use_is_fatal(spawn: Spawn) -> None:
    with socket.socket() as busy:
        busy.bind((LOCAL, 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = spawn(argv_for(AGN, ["netexec", f"--http-port={port}", "--udp-port=-1"]))
        assert proc.popen.wait(10) == 1
    assert "address already in use" in proc.logs()


def test_serve_hostname_http(spawn: Spawn) -> None:
    port = free_port()
    proc = spawn(argv_for(AGN, ["serve-hostname", f"--port={port}"]))
    wait_tcp(port, proc)
    assert get(port, "/anything")[2].decode() == HOST
    assert "HTTP request from 127.0.0.1:" in proc.logs()


def test_serve_hostname_tcp_and_udp(spawn: Spawn) -> None:
    port, _ = free_ports()
    proc = spawn(
        argv_for(AGN, ["serve-hostname", "--tcp", "--udp", "--http=false", f"--port={port}"])
    )
    wait_tcp(port, proc)
    with socket.create_connection((LOCAL, port), timeout=5) as sock:
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
    assert data.decode() == HOST
    assert udp(port, b"anything at all, longer than sixteen bytes").decode() == HOST


def test_serve_hostname_keeps_serving_after_sigterm(spawn: Spawn) -> None:
    port = free_port()
    proc = spawn(argv_for(AGN, ["serve-hostname", f"--port={port}"]))
    wait_tcp(port, proc)
    proc.popen.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert proc.popen.poll() is None
    assert get(port, "/")[2].decode() == HOST
    assert "Awaiting pod deletion." in proc.logs()


def test_serve_hostname_tcp_with_default_http_is_fatal(spawn: Spawn) -> None:
    proc = spawn(argv_for(AGN, ["serve-hostname", "--tcp", f"--port={free_port()}"]))
    assert proc.popen.wait(10) == 1
    assert "Can't server TCP/UDP mode and HTTP mode at the same time" in proc.logs()


def run_image(
    argv: list[str], timeout: float = 20.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, BIND_ENV: LOCAL, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_connect(spawn: Spawn) -> None:
    _, port, uport = netexec(spawn)
    ok = run_image(argv_for(AGN, ["connect", f"{LOCAL}:{port}", "--timeout=5s"]))
    assert (ok.returncode, ok.stderr) == (0, "")

    refused = run_image(argv_for(AGN, ["connect", f"{LOCAL}:{free_port()}", "--timeout=5s"]))
    assert (refused.returncode, refused.stderr.strip()) == (1, "REFUSED")

    bad = run_image(argv_for(AGN, ["connect", "no-port-here"]))
    assert bad.returncode == 1 and bad.stderr.startswith("UNKNOWN: ")

    dns = run_image(argv_for(AGN, ["connect", "no-such-host.invalid:80", "--timeout=2s"]))
    assert dns.returncode == 1 and dns.stderr.startswith("DNS: ")

    by_udp = run_image(
        argv_for(AGN, ["connect", f"{LOCAL}:{uport}", "--protocol=udp", "--timeout=3s"])
    )
    assert by_udp.returncode == 0, by_udp.stderr

    silent = f"{LOCAL}:{free_port(socket.SOCK_DGRAM)}"
    no_udp = run_image(argv_for(AGN, ["connect", silent, "--protocol=udp", "--timeout=2s"]))
    assert no_udp.returncode == 1 and no_udp.stderr.startswith(("REFUSED", "TIMEOUT"))


def test_agnhost_cli_errors() -> None:
    unknown = run_image(argv_for(AGN, ["no-such-subcommand"]))
    assert unknown.returncode == 1
    assert 'unknown command "no-such-subcommand"' in unknown.stderr
    bad_flag = run_image(argv_for(AGN, ["netexec", "--bogus"]))
    assert bad_flag.returncode == 1 and "unknown flag: --bogus" in bad_flag.stderr
    helped = run_image(argv_for(AGN, None, ["/agnhost"]))
    assert helped.returncode == 0 and "netexec" in helped.stdout


def test_agnhost_entrypoint_tester_prints_argv() -> None:
    got = run_image(argv_for(AGN, ["entrypoint-tester", "a", "b"], ["/agnhost-2"]))
    assert got.stdout.strip() == "[/agnhost-2 entrypoint-tester a b]"


def test_agnhost_pause_exits_2_on_sigterm(spawn: Spawn) -> None:
    proc = spawn(argv_for(AGN))
    deadline = time.monotonic() + 10
    while "Paused" not in proc.logs() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.stop() == 2


def test_pause_image_exits_0_on_sigterm(spawn: Spawn) -> None:
    proc = spawn(argv_for("registry.k8s.io/pause:3.9"))
    time.sleep(0.3)
    assert proc.popen.poll() is None
    assert proc.stop() == 0
    assert "Shutting down, got signal: Terminated" in proc.logs()


def test_porter(spawn: Spawn) -> None:
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    proc = spawn(
        argv_for(AGN, ["porter"]),
        env={f"SERVE_PORT_{tcp_port}": "foo", f"SERVE_UDP_PORT_{udp_port}": "bar"},
    )
    wait_tcp(tcp_port, proc)
    assert get(tcp_port, "/x")[2] == b"foo"
    assert udp(udp_port, b"hi") == b"bar"


@pytest.mark.parametrize(
    ("elapsed", "path", "status", "body"),
    [
        pytest.param(1.0, "/healthz", 200, b"ok", id="healthy-at-first"),
        pytest.param(10.5, "/healthz", 500, b"error: 10.5", id="unhealthy-after-10s"),
        pytest.param(2.5, "/started", 200, b"2.5s", id="started"),
        pytest.param(1.0, "/nope", 404, b"404 page not found\n", id="not-found"),
    ],
)
def test_liveness(elapsed: float, path: str, status: int, body: bytes) -> None:
    app = liveness_app(100.0, clock=lambda: 100.0 + elapsed)
    got = app(req(path))
    assert (got.status, got.body) == (status, body)


def test_agnhost_dns_helpers_print_files() -> None:
    hosts = run_image(argv_for(AGN, ["etc-hosts"]))
    assert hosts.returncode == 0 and "localhost" in hosts.stdout
    # as upstream: the first `search` line, or a panic when the file has none
    suffix = run_image(argv_for(AGN, ["dns-suffix"]))
    has_search = any(
        line.startswith("search") for line in Path("/etc/resolv.conf").read_text().split("\n")
    )
    if has_search:
        assert suffix.returncode == 0
    else:
        assert suffix.returncode == 2
        assert "panic: Could not find DNS search list!" in suffix.stderr


def test_kubia(spawn: Spawn) -> None:
    port = free_port()
    proc = spawn([*argv_for("luksa/kubia-unhealthy"), f"--kubesvc-port={port}"])
    wait_tcp(port, proc)
    answers = [get(port, "/")[:3:2] for _ in range(6)]
    assert answers[0] == (200, f"You've hit {HOST}\n".encode())
    assert answers[5] == (500, b"I'm not well. Please restart me!")
    assert "Received request from ::ffff:127.0.0.1" in proc.logs()
    assert proc.stop() == 0


def test_nginx(spawn: Spawn) -> None:
    port = free_port()
    argv = argv_for("nginx:1.14.2")
    proc = spawn([*argv[:3], f"--kubesvc-port={port}", *argv[3:]])
    wait_tcp(port, proc)
    status, headers, body = get(port, "/", headers={"User-Agent": "probe/1"})
    assert (status, headers["server"]) == (200, "nginx/1.14.2")
    assert headers["content-type"] == "text/html"
    assert b"<title>Welcome to nginx!</title>" in body and len(body) == 615
    assert get(port, "/index.html")[2] == body
    assert get(port, "/", method="HEAD")[2] == b""
    assert get(port, "/", headers={"If-None-Match": headers["etag"]})[0] == 304
    status, _, missing = get(port, "/missing")
    assert status == 404 and b"<center>nginx/1.14.2</center>" in missing
    assert get(port, "/", method="POST")[0] == 405
    assert '"GET / HTTP/1.1" 200 615 "-" "probe/1"' in proc.out.read_text()
    assert proc.stop() == 0


def test_http_echo(spawn: Spawn) -> None:
    port = free_port()
    proc = spawn(argv_for("hashicorp/http-echo", [f"-listen={LOCAL}:{port}", "-text=hello"]))
    wait_tcp(port, proc)
    status, headers, body = get(port, "/any/path")
    assert (status, body, headers["x-app-name"]) == (200, b"hello\n", "http-echo")
    assert get(port, "/health")[2] == b'{"status":"ok"}\n'
    assert '"GET /any/path HTTP/1.1" 200 6' in proc.out.read_text()
    assert proc.stop() == 2


def test_http_echo_status_code_and_env_text(spawn: Spawn) -> None:
    port = free_port()
    proc = spawn(
        argv_for("hashicorp/http-echo", [f"-listen={LOCAL}:{port}", "-status-code=418"]),
        env={"ECHO_TEXT": "from env"},
    )
    wait_tcp(port, proc)
    assert get(port, "/")[:3:2] == (418, b"from env\n")


def test_http_echo_requires_text() -> None:
    got = run_image(argv_for("hashicorp/http-echo"), env={"ECHO_TEXT": ""})
    assert got.returncode == 127 and "Missing -text option" in got.stderr


def test_busybox_without_command_exits_at_once() -> None:
    got = run_image(argv_for("busybox"))
    assert got.returncode == 0


# -- agnhost dns-suffix / dns-server-list and test-webserver ----------------------------------
@pytest.mark.parametrize(
    ("text", "keyword", "want"),
    [
        (
            "nameserver 10.96.0.10\nsearch a.svc b c\noptions ndots:5\n",
            "search",
            ["a.svc", "b", "c"],
        ),
        ("nameserver 10.96.0.10\nnameserver 1.1.1.1\n", "nameserver", ["10.96.0.10"]),
        ("# search x\n", "search", None),
        ("", "nameserver", None),
    ],
)
def test_agnhost_dns_reads_the_first_line_as_upstream(
    text: str, keyword: str, want: list[str] | None
) -> None:
    from kubesvc.node.images.agnhost import first_line_fields

    assert first_line_fields(text, keyword) == want


def test_agnhost_test_webserver_serves_files_and_listings(tmp_path: Path) -> None:
    from kubesvc.node.images.agnhost import test_webserver_app

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("hello")
    (tmp_path / "bin").write_bytes(b"\0\1\2")
    app = test_webserver_app(str(tmp_path))
    got = app(req("/d/f.txt"))
    assert (got.status, got.body) == (200, b"hello")
    headers = dict(got.headers)
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Cache-Control"] == "private"
    assert dict(app(req("/bin")).headers)["Content-Type"] == "application/octet-stream"
    assert app(req("/d")).status == 301
    listing = app(req("/d/"))
    assert b'<a href="f.txt">f.txt</a>' in listing.body
    assert app(req("/missing")).status == 404
    # no way out of the root
    outside = app(req("/../../../etc/passwd"))
    assert outside.status == 404 or b"root:" not in outside.body


def test_python_image_runs_the_hosts_python3() -> None:
    """The official image's `python` is its python3; the host may have only `python3`."""
    py = images.host_python()
    assert images.resolve("python", ["python", "-u", "/opt/s.py"], None).argv == [
        py,
        "-u",
        "/opt/s.py",
    ]
    assert images.resolve("python:3.12-slim", None, ["python3", "-c", "1"]).argv == [py, "-c", "1"]
    assert images.resolve("python", None, None).argv == [py]
    assert images.resolve("python", ["sh", "-c", "true"], None).argv == ["sh", "-c", "true"]
    assert "/venv" not in py and ".venv" not in py


@pytest.mark.parametrize(
    ("mode", "want"),
    [
        (0o100644, "-rw-r--r--"),
        (0o040777, "drwxrwxrwx"),
        (0o041777, "dtrwxrwxrwx"),
        (0o120777, "Lrwxrwxrwx"),
        (0o020666, "Dcrw-rw-rw-"),
        (0o060660, "Drw-rw----"),
        (0o104755, "urwxr-xr-x"),
        (0o010600, "prw-------"),
        (0o140755, "Srwxr-xr-x"),
        (0o000, "----------"),
    ],
)
def test_go_file_mode(mode: int, want: str) -> None:
    from kubesvc.node.images.agnhost import go_file_mode

    assert go_file_mode(mode) == want


def test_agnhost_mounttest(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    f = tmp_path / "f"
    res = run_image(
        argv_for(
            AGN,
            [
                "mounttest",
                f"--new_file_0660={f}",
                f"--file_perm={f}",
                f"--file_mode={tmp_path}",
                f"--file_content={tmp_path}/missing",
            ],
        )
    )
    assert res.returncode == 1
    assert res.stdout.splitlines() == [
        f'content of file "{f}": mount-tester new file',
        "",
        f'mode of file "{tmp_path}": drwxr-x---',
        f'perms of file "{f}": -rw-rw----',
        f'error reading file content for "{tmp_path}/missing": open {tmp_path}/missing: '
        "no such file or directory",
    ]
