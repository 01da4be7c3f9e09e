"""Container probes as the kubelet runs them (pkg/probe/{http,tcp,exec},
pkg/kubelet/prober): one-shot async runners plus `ProbeTracker`, the pure per-container
state machine of the prober worker (initial delay, period, thresholds, startup gating).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from kubesvc import spawn
from kubesvc.netns import socket_in_netns

SUCCESS = "Success"
FAILURE = "Failure"
UNKNOWN = "Unknown"

USER_AGENT = "kube-probe/1.32"
MAX_BODY = 10 * 1024  # maxRespBodyLength / exec maxReadLength
MAX_REDIRECTS = 10

Obj = Mapping[str, Any]
ProbeKind = Literal["liveness", "readiness", "startup"]


class ProbeError(Exception):
    """The probe could not be run at all (kubelet: "probe errored"): result Unknown."""


# --- ports and URLs ---------------------------------------------------------------------


def resolve_port(port: Any, container_ports: Sequence[Obj]) -> int:
    """probe.ResolveContainerPort: an int, a named container port, or a numeric string."""
    if isinstance(port, bool) or port is None:
        raise ProbeError(f"intOrString had no kind: {port!r}")
    if isinstance(port, int):
        number = port
    else:
        name = str(port)
        found = [p.get("containerPort") for p in container_ports if p.get("name") == name]
        if found and isinstance(found[0], int):
            number = found[0]
        elif name.lstrip("+-").isdigit():
            number = int(name)
        else:
            raise ProbeError(f'strconv.Atoi: parsing "{name}": invalid syntax')
    if 0 < number < 65536:
        return number
    raise ProbeError(f"invalid port number: {number}")


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def probe_url(http_get: Obj, pod_ip: str, container_ports: Sequence[Obj]) -> str:
    """The URL an httpGet probe requests (NewRequestForHTTPGetAction + formatURL)."""
    scheme = str(http_get.get("scheme") or "HTTP").lower()
    host = str(http_get.get("host") or pod_ip)
    port = resolve_port(http_get.get("port"), container_ports)
    path = str(http_get.get("path") or "")
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{_join_host_port(host, port)}{path}"


def probe_headers(http_get: Obj) -> list[tuple[str, str]]:
    """Request headers: the probe's httpHeaders plus User-Agent/Accept unless given; an
    explicitly empty Accept is removed."""
    raw = http_get.get("httpHeaders")
    given = [
        (str(h.get("name", "")), str(h.get("value", "")))
        for h in (raw if isinstance(raw, list) else [])
        if isinstance(h, dict)
    ]
    names = {name.lower() for name, _ in given}
    headers = [(n, v) for n, v in given if not (n.lower() == "accept" and v == "")]
    if "user-agent" not in names:
        headers.append(("User-Agent", USER_AGENT))
    if "accept" not in names:
        headers.append(("Accept", "*/*"))
    return headers


# --- runners ----------------------------------------------------------------------------


def _timeout(probe: Obj) -> float:
    value = probe.get("timeoutSeconds")
    return float(value) if isinstance(value, int | float) and value > 0 else 1.0


async def run_probe(
    probe: Obj,
    *,
    pod_ip: str,
    exec_prefix: Sequence[str],
    env: Mapping[str, str],
    container_ports: Sequence[Obj],
    netns: Path | None = None,
) -> tuple[str, str]:
    """Run one probe attempt: (Success|Failure|Unknown, output or message).

    Network probes connect from inside `netns` (the pod's network namespace) when given:
    the agent's own namespace has no route to pod IPs.

    Unknown means the probe errored (bad port, nothing to run); the kubelet then keeps the
    previous state. An HTTP redirect it will not follow counts as Success, as upstream's
    Warning result does."""
    timeout = _timeout(probe)
    try:
        if isinstance(probe.get("exec"), dict):
            command = [str(c) for c in probe["exec"].get("command") or []]
            return await exec_probe(command, exec_prefix=exec_prefix, env=env, timeout=timeout)
        if isinstance(probe.get("httpGet"), dict):
            http_get = probe["httpGet"]
            url = probe_url(http_get, pod_ip, container_ports)
            return await http_probe(url, probe_headers(http_get), timeout, netns=netns)
        if isinstance(probe.get("tcpSocket"), dict):
            tcp = probe["tcpSocket"]
            port = resolve_port(tcp.get("port"), container_ports)
            return await tcp_probe(str(tcp.get("host") or pod_ip), port, timeout, netns=netns)
        if isinstance(probe.get("grpc"), dict):
            return UNKNOWN, "grpc probes are not supported"
    except ProbeError as exc:
        return UNKNOWN, str(exc)
    return UNKNOWN, "missing probe handler"


def _linger(sock: socket.socket | None) -> None:
    # Like upstream's probe dialer: don't leave a TIME_WAIT socket behind per probe.
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 1))


def _dial_error(addr: str, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(exc, ConnectionRefusedError):
        return f"dial tcp {addr}: connect: connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return f"dial tcp {addr}: connect: {exc.strerror.lower()}"
    return f"dial tcp {addr}: {exc}"


def _factory(netns: Path | None) -> Any:
    if netns is None:
        return None

    def make(addr_info: Any) -> socket.socket:
        family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
        sock = socket_in_netns(netns, family, kind, proto)
        sock.setblocking(False)
        return sock

    return make


async def tcp_probe(
    host: str, port: int, timeout: float, netns: Path | None = None
) -> tuple[str, str]:
    """Success when a TCP connection opens within the timeout."""
    addr = _join_host_port(host, port)
    try:
        async with asyncio.timeout(timeout):
            if netns is None:
                _, writer = await asyncio.open_connection(host, port)
            else:
                sock = _factory(netns)((socket.AF_INET, socket.SOCK_STREAM, 0, "", (host, port)))
                try:
                    await asyncio.get_running_loop().sock_connect(sock, (host, port))
                except BaseException:
                    sock.close()
                    raise
                _, writer = await asyncio.open_connection(sock=sock)
    except (OSError, TimeoutError) as exc:
        return FAILURE, _dial_error(addr, exc)
    _linger(writer.get_extra_info("socket"))
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1):
            await writer.wait_closed()
    return SUCCESS, ""


@functools.cache
def insecure_context() -> ssl.SSLContext:
    """The TLS context of https probes and hooks: the pod's certificate is not verified, as
    upstream's prober (InsecureSkipVerify). One for all probes, made once: building it per
    probe with create_default_context read the system's CA bundle every time (20-50 ms on
    the event loop, a third of an agent's CPU with a few 1 s probes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _same_host(a: str, b: str) -> bool:
    return (urlsplit(a).hostname or "") == (urlsplit(b).hostname or "")


async def http_probe(
    url: str, headers: Sequence[tuple[str, str]], timeout: float, netns: Path | None = None
) -> tuple[str, str]:
    """GET url; 200 <= code < 400 succeeds. Redirects are followed only to the same host
    (at most 10); a redirect elsewhere is not followed and counts as success."""
    insecure = insecure_context()
    factory = _factory(netns)
    connector = (
        aiohttp.TCPConnector(ssl=insecure, force_close=True, socket_factory=factory)
        if factory is not None
        else aiohttp.TCPConnector(ssl=insecure, force_close=True)
    )
    session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    current = url
    try:
        async with asyncio.timeout(timeout):
            for hop in range(MAX_REDIRECTS + 1):
                status, location, body = await _get_once(session, current, headers)
                redirect = status in (301, 302, 303, 307, 308) and location
                if not redirect:
                    return _http_result(status, body)
                target = urljoin(current, location)
                if not _same_host(target, url):
                    return _http_result(status, body)
                if hop == MAX_REDIRECTS - 1:
                    return FAILURE, f'Get "{target}": stopped after 10 redirects'
                if urlsplit(location).scheme:
                    # Go keeps a custom Host header only across relative redirects.
                    headers = [(n, v) for n, v in headers if n.lower() != "host"]
                current = target
    except TimeoutError:
        return FAILURE, (
            f'Get "{current}": context deadline exceeded '
            "(Client.Timeout exceeded while awaiting headers)"
        )
    except aiohttp.ClientConnectorError as exc:
        return FAILURE, f'Get "{current}": ' + _dial_error(_netloc(current), exc.os_error)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return FAILURE, f'Get "{current}": {exc or type(exc).__name__}'
    finally:
        await session.close()
    return FAILURE, f'Get "{current}": stopped after 10 redirects'


def _netloc(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return _join_host_port(host, port)


async def _get_once(
    session: aiohttp.ClientSession, url: str, headers: Sequence[tuple[str, str]]
) -> tuple[int, str, str]:
    req_headers: list[tuple[str, str]] = list(headers)
    if not any(n.lower() == "host" for n, _ in req_headers):
        req_headers.insert(0, ("Host", _netloc(url)))
    req_headers.append(("Connection", "close"))
    async with session.get(
        URL(url, encoded=True),
        headers=req_headers,
        allow_redirects=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept"),
    ) as resp:
        body = await resp.content.read(MAX_BODY)
        return resp.status, resp.headers.get("Location", ""), body.decode("utf-8", "replace")


def _http_result(status: int, body: str) -> tuple[str, str]:
    if 200 <= status < 400:
        if status >= 300:
            return SUCCESS, f"Probe terminated redirects, Response body: {body}"
        return SUCCESS, body
    return FAILURE, f"HTTP probe failed with statuscode: {status}"


async def exec_probe(
    command: Sequence[str],
    *,
    exec_prefix: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
) -> tuple[str, str]:
    """Run exec_prefix + command; exit 0 succeeds. Output is stdout+stderr (first 10 KiB)."""
    if not command:
        return UNKNOWN, "exec probe has no command"
    try:
        code, text = await exec_command(command, exec_prefix=exec_prefix, env=env, timeout=timeout)
    except (OSError, ValueError) as exc:
        return UNKNOWN, str(exc)
    if code is None:
        return FAILURE, f'command "{" ".join(command)}" timed out'
    return (SUCCESS if code == 0 else FAILURE), text


async def exec_command(
    command: Sequence[str],
    *,
    exec_prefix: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
) -> tuple[int | None, str]:
    """(exit status, or None when it ran out of time and was killed; stdout+stderr, first
    10 KiB). OSError/ValueError when it cannot be started."""
    # output past the limit is read and dropped, so a chatty command never blocks on a
    # full pipe; the whole process group is killed when it runs out of time
    done = await spawn.run(
        [*exec_prefix, *command],
        env=env,
        stdout=spawn.PIPE,
        stderr=spawn.STDOUT,
        start_new_session=True,
        limit=MAX_BODY,
        timeout=timeout,
    )
    return done.returncode, done.stdout.decode("utf-8", "replace")


# --- the worker's state machine ---------------------------------------------------------

_INITIAL: dict[str, str] = {"readiness": FAILURE, "liveness": SUCCESS, "startup": UNKNOWN}


def _spec_int(probe: Obj, key: str, default: int) -> int:
    value = probe.get(key)
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
    )


@dataclass
class ProbeTracker:
    """One probe of one container (kubelet prober worker), driven by an injected clock.

    Call `should_probe()` in a loop; when True run the probe and feed `record()`. `result`
    is what the kubelet publishes: readiness starts Failure, liveness Success, startup
    Unknown. After a liveness/startup Failure the tracker holds until `restarted()`."""

    kind: ProbeKind
    probe: Obj
    started_at: float
    clock: Callable[[], float] = time.monotonic
    result: str = field(default="", init=False)
    on_hold: bool = field(default=False, init=False)
    _last: str = field(default="", init=False)
    _run: int = field(default=0, init=False)
    _next_tick: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.result = _INITIAL[self.kind]

    @property
    def period(self) -> float:
        return float(_spec_int(self.probe, "periodSeconds", 10))

    @property
    def initial_delay(self) -> int:
        value = self.probe.get("initialDelaySeconds")
        return value if isinstance(value, int) and value > 0 else 0

    @property
    def success_threshold(self) -> int:
        return _spec_int(self.probe, "successThreshold", 1)

    @property
    def failure_threshold(self) -> int:
        return _spec_int(self.probe, "failureThreshold", 3)

    def next_tick(self) -> float:
        """When `should_probe` next has a tick to consume (now, before the first one)."""
        return self.clock() if self._next_tick is None else self._next_tick

    def should_probe(self, *, container_started: bool = True) -> bool:
        """Consume the current tick, if one is due, and say whether to probe on it.

        Ticks come every periodSeconds from the first call. No probe while on hold, before
        initialDelaySeconds have passed since the container started, and, for liveness
        and readiness, before the container counts as started (startup probe passed);
        a startup probe stops once it has."""
        now = self.clock()
        if self._next_tick is not None and now < self._next_tick:
            return False
        base = now if self._next_tick is None else self._next_tick
        skipped = int((now - base) // self.period)
        self._next_tick = base + (skipped + 1) * self.period
        if self.on_hold:
            return False
        if int(now - self.started_at) < self.initial_delay:
            return False
        if self.kind == "startup":
            return not container_started
        return container_started

    def record(self, result: str) -> str:
        """Apply one probe outcome; Unknown (an errored probe) changes nothing."""
        if result not in (SUCCESS, FAILURE) or self.on_hold:
            return self.result
        if result == self._last:
            self._run += 1
        else:
            self._last, self._run = result, 1
        threshold = self.failure_threshold if result == FAILURE else self.success_threshold
        if self._run < threshold:
            return self.result
        self.result = result
        if self.kind != "readiness" and result == FAILURE:
            self.on_hold = True
            self._run = 0
        return self.result

    @property
    def needs_restart(self) -> bool:
        """A liveness or startup probe has failed past its threshold: restart the container
        (and call `restarted`)."""
        return self.on_hold

    def stopped(self) -> None:
        """The container is not running: the kubelet reports the probe as failed."""
        self.result = FAILURE

    def restarted(self, started_at: float) -> None:
        """A new container instance: back to the initial value, probing resumes."""
        self.started_at = started_at
        self.result = _INITIAL[self.kind]
        self.on_hold = False
        self._last, self._run = "", 0
