"""Runs HAProxy in master-worker mode and brings it to a rendered state: a reload (SIGUSR2
to the master: new workers take the listening sockets over, old ones finish their
requests) only when the skeleton changed; endpoint changes through the runtime API
(`set server BE/SRV addr IP port N`, `set server BE/SRV state ready|maint`), route
changes (new and removed Services too) by swapping the map files' contents through it,
certificates through it too (`set ssl cert` + `commit ssl cert`, `add|del ssl crt-list`)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping

from kubesvc.ingress import tls
from kubesvc.ingress.certs import default_certificate
from kubesvc.ingress.haproxy import (
    PARKED,
    Layout,
    Paths,
    Ports,
    Rendered,
    Slots,
    plan_layout,
    render,
)
from kubesvc.ingress.model import RoutingTable
from kubesvc.spawn import die_with_parent

log = logging.getLogger("kubesvc.ingress")

MAX_COMMANDS_PER_CALL = 200  # runtime commands sent on one connection
# what HAProxy's answers to a refused runtime command contain
REFUSALS = ("No such", "Unknown", "not found", "Already exists", "must use", "nvalid")


def runtime_commands(
    old: Mapping[str, Slots], new: Mapping[str, Slots], which: str = "all"
) -> list[str]:
    """The runtime API commands that turn the servers of `old` into those of `new`, for
    backends in both (a new backend is a reload); slots a backend gains are added with
    `add server`. `which`: "fill" (slots added or given an endpoint), "park" (slots
    emptied) or "all"."""
    out = []
    host, port = PARKED.split(":")
    for name, slots in new.items():
        before = old.get(name)
        if before is None or len(before) > len(slots):
            continue  # slots never shrink (plan_layout)
        for i, now in enumerate(slots, 1):
            server = f"{name}/s{i}"
            if i > len(before):  # a slot this backend gains: HAProxy adds it in maintenance
                if which == "park":
                    continue
                if now is None:
                    out.append(f"add server {server} {PARKED} disabled")
                else:
                    out.append(f"add server {server} {now[0]}:{now[1]}")
                    out.append(f"set server {server} state ready")
                continue
            was = before[i - 1]
            if was == now or which == ("fill" if now is None else "park"):
                continue
            if now is None:
                out.append(f"set server {server} state maint")
                out.append(f"set server {server} addr {host} port {port}")
            else:
                out.append(f"set server {server} addr {now[0]} port {now[1]}")
                out.append(f"set server {server} state ready")
    return out


def _write_private(path: str, text: str) -> None:
    """Write a file only its owner reads (keys among them), replacing it atomically."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _cli_word(text: str) -> str:
    """One word of a runtime API command: `;` ends a command, spaces end a word (paths hold
    neither space nor backslash, the model checks)."""
    return text.replace(";", "\\;")


class HAProxy:
    """One HAProxy master process and the state it was last brought to."""

    def __init__(
        self,
        paths: Paths,
        ports: Ports = Ports(),
        binary: str = "haproxy",
        default_pem: str = "",
    ) -> None:
        self.paths = paths
        # for unknown names and hosts whose Secret is not usable; new with each controller
        self.default_pem = default_pem or default_certificate()
        self.ports = ports
        self.binary = binary
        self.proc: asyncio.subprocess.Process | None = None
        self.current: Rendered | None = None
        self.reloads = 0
        self.runtime_updates = 0
        self._started = asyncio.Event()
        self._stopping = False

    def plan(self, table: RoutingTable, tls_table: tls.TLSTable = tls.TLSTable()) -> Rendered:
        """What `table` renders to, with endpoints kept in the slots they hold now."""
        held = self.current.layout if self.current else Layout()
        return render(table, plan_layout(held, table), self.paths, self.ports, tls_table)

    async def apply(self, table: RoutingTable, tls_table: tls.TLSTable = tls.TLSTable()) -> str:
        """Bring HAProxy to `table` and `tls_table`; returns "start", "reload", "runtime" or
        "none"."""
        want = self.plan(table, tls_table)
        if self.proc is None or self.proc.returncode is not None:
            self._write(want)
            await self._start()
            self.current = want
            return "start"
        if self.current is not None and want.skeleton == self.current.skeleton:
            fill = runtime_commands(self.current.slots, want.slots, "fill")
            park = runtime_commands(self.current.slots, want.slots, "park")
            maps = {p: t for p, t in want.maps.items() if self.current.maps.get(p) != t}
            certs = want.certs != self.current.certs
            if not fill and not park and not maps and not certs:
                return "none"
            try:
                # certificates before the redirects that lead to them
                if certs:
                    self._write(want)  # what a later reload loads
                    await self._replace_certs(self.current.certs, want.certs)
                # servers before the routes that lead to them; routes away before parking
                if fill:
                    await self._runtime(fill)
                if maps:
                    self._write(want)  # what a later reload loads
                    await self._replace_maps(maps)
                if park:
                    await self._runtime(park)
            except OSError as e:
                log.warning("runtime API failed (%s); reloading instead", e)
            else:
                self.current = want
                self.runtime_updates += 1
                return "runtime"
        await self._reload(want)
        return "reload"

    async def reload(self) -> None:
        """Reload HAProxy with the state it has now (what a skeleton change does)."""
        if self.current is None or self.proc is None or self.proc.returncode is not None:
            raise RuntimeError("haproxy is not running")
        await self._reload(self.current)

    async def _reload(self, want: Rendered) -> None:
        self._write(want)
        await self._check()
        assert self.proc is not None
        before = await self._worker_pid()
        self.proc.send_signal(signal.SIGUSR2)
        await self._new_worker(before)
        self.reloads += 1
        # one line per reload in the controller's log (kubectl logs): they should be rare
        print(f"kubesvc ingress: haproxy reloaded (reload {self.reloads})", file=sys.stderr)
        self.current = want

    def _write(self, rendered: Rendered) -> None:
        os.makedirs(self.paths.dir, mode=0o700, exist_ok=True)
        self._write_tls(rendered)
        for path, text in {**rendered.maps, self.paths.config: rendered.config}.items():
            _write_private(path, text)

    def _write_tls(self, rendered: Rendered) -> None:
        """The default certificate, each host's file and the crt-list (0600); files of
        hosts gone are removed."""
        os.makedirs(self.paths.certs_dir, mode=0o700, exist_ok=True)
        _write_private(self.paths.default_cert, self.default_pem)
        for path, pem in rendered.certs.items():
            _write_private(path, pem)
        _write_private(self.paths.crt_list, tls.crt_list(rendered.certs))
        for name in os.listdir(self.paths.certs_dir):
            path = f"{self.paths.certs_dir}/{name}"
            if path not in rendered.certs:
                os.unlink(path)

    async def _replace_certs(self, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        """Certificates changed, added and removed, each in one runtime transaction; a new
        host's crt-list line only once its file is loaded."""
        for step in tls.cert_steps(old, new, self.paths.crt_list):
            await self._runtime_step(step)

    async def _runtime_step(self, step: tls.Step) -> str:
        """One command (with its payload) on its own connection; OSError when the answer
        does not say it worked."""
        text = step.command + "\n"
        if step.payload:
            text = f"{step.command} <<\n{step.payload.rstrip(chr(10))}\n\n"
        reader, writer = await asyncio.open_unix_connection(self.paths.admin_socket)
        try:
            writer.write(text.encode())
            await writer.drain()
            reply = (await reader.read()).decode(errors="replace")
        finally:
            writer.close()
        if step.expect not in reply:
            raise OSError(f"{step.command.split(' <<')[0]!r} answered {reply.strip()[:200]!r}")
        return reply

    async def _check(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-c",
            "-q",
            "-f",
            self.paths.config,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"haproxy refused its configuration: {out.decode(errors='replace')}")

    async def _start(self) -> None:
        await self._check()
        # if the controller dies (even by SIGKILL), HAProxy stops too, softly: it lets the
        # port go at once, finishes the requests under way, and the restarted controller's
        # HAProxy serves; none is left running on routes nobody updates
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-W",
            "-S",
            self.paths.master_socket,
            "-f",
            self.paths.config,
            preexec_fn=die_with_parent(signal.SIGUSR1),
        )
        self._started.set()
        # ready once the worker answers on the runtime socket
        for _ in range(200):
            try:
                await self._runtime(["show info"])
                return
            except OSError:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"haproxy exited with {self.proc.returncode}") from None
                await asyncio.sleep(0.025)
        raise RuntimeError("haproxy did not open its runtime socket")

    async def _replace_maps(self, maps: Mapping[str, str]) -> None:
        """Each map's new contents, in order, swapped in atomically (prepare/commit map)."""
        commands = []
        for path, text in maps.items():
            reply = await self._runtime([f"prepare map {path}"])
            version = reply.rsplit(":", 1)[-1].strip()
            if not version.isdigit():
                raise OSError(f"prepare map answered {reply.strip()[:100]!r}")
            for line in text.splitlines():
                key, value = line.rsplit(" ", 1)
                commands.append(f"add map @{version} {path} {_cli_word(key)} {value}")
            commands.append(f"commit map @{version} {path}")
        await self._runtime(commands)

    async def _worker_pid(self) -> str:
        for line in (await self._runtime(["show info"])).splitlines():
            if line.startswith("Pid:"):
                return line.split(":", 1)[1].strip()
        return ""

    async def _new_worker(self, old_pid: str, timeout: float = 10.0) -> None:
        """Wait until a new worker answers on the runtime socket (it has taken over the
        listening sockets by then)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                if await self._worker_pid() not in ("", old_pid):
                    return
            except OSError:
                pass
            await asyncio.sleep(0.01)
        log.warning("no new haproxy worker %.0f s after a reload", timeout)

    async def _runtime(self, commands: list[str]) -> str:
        out = []
        for i in range(0, len(commands), MAX_COMMANDS_PER_CALL):
            batch = commands[i : i + MAX_COMMANDS_PER_CALL]
            reader, writer = await asyncio.open_unix_connection(self.paths.admin_socket)
            try:
                writer.write(("; ".join(batch) + "\n").encode())
                await writer.drain()
                out.append((await reader.read()).decode(errors="replace"))
            finally:
                writer.close()
        text = "".join(out)
        if any(word in text for word in REFUSALS):
            raise OSError(f"runtime API refused a command: {text.strip()[:200]}")
        return text

    async def exited(self) -> int:
        """Returns when the HAProxy started here exits without stop() being called (a
        crash, a kill): its master's exit status."""
        await self._started.wait()
        assert self.proc is not None
        code = await self.proc.wait()
        if self._stopping:
            await asyncio.Future()  # never: the exit was asked for
        return code

    async def stop(self) -> None:
        self._stopping = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
