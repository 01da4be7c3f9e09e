"""The container shim: CRI records from a container's two streams (framing alone, with
Hypothesis, then the shim as a process: streams apart, exit codes, signals, environment)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.kubelet.logs import parse_log_line, record_stream
from kubesvc.node import containershim
from kubesvc.node.containershim import MAX_RECORD, CriFramer, timestamp
from kubesvc.node.runtime import ContainerRuntime, Proc
from tests.unit.test_kubelet_server import HostSandbox

RECORD = re.compile(rb"^(\S+) (stdout|stderr) ([FP]) ([^\n]*)$")
SHIM = [sys.executable, "-I", "-S", containershim.__file__]


@pytest.mark.parametrize(
    ("ns", "want"),
    [
        pytest.param(0, b"1970-01-01T00:00:00Z", id="whole-second"),
        pytest.param(1_767_323_045_123_456_789, b"2026-01-02T03:04:05.123456789Z", id="nanos"),
        pytest.param(1_767_323_045_500_000_000, b"2026-01-02T03:04:05.5Z", id="trimmed"),
    ],
)
def test_timestamp(ns: int, want: bytes) -> None:
    assert timestamp(ns) == want


def _read_back(records: bytes) -> bytes:
    """What the kubelet's reader makes of the records."""
    return b"".join(parse_log_line(line + b"\n").content for line in _lines(records))


def _lines(records: bytes) -> list[bytes]:
    assert not records or records.endswith(b"\n")
    return records.split(b"\n")[:-1]


@given(
    st.lists(
        st.tuples(st.binary(max_size=40_000), st.booleans()),
        max_size=8,
    )
)
def test_records_give_back_what_was_written(chunks: list[tuple[bytes, bool]]) -> None:
    """However the bytes arrive and whenever unfinished lines are flushed, the records read
    back as the bytes written (plus the newline the last line gets, as from containerd),
    every record is well formed and at most 16 KiB of text."""
    framer = CriFramer(b"stderr")
    out = b""
    for data, flush in chunks:
        out += framer.feed(data, 1)
        if flush:
            out += framer.flush(2)
    out += framer.end(3)
    written = b"".join(data for data, _ in chunks)
    want = written + (b"\n" if written and not written.endswith(b"\n") else b"")
    assert _read_back(out) == want
    for line in _lines(out):
        m = RECORD.match(line)
        assert m is not None, line
        assert m.group(2) == b"stderr" and len(m.group(4)) <= MAX_RECORD
        assert record_stream(line + b"\n") == b"stderr"


def test_long_lines_are_cut_into_partial_records() -> None:
    framer = CriFramer(b"stdout")
    out = framer.feed(b"x" * (MAX_RECORD * 2 + 5) + b"\nnext", 0) + framer.end(0)
    tags = [RECORD.match(line).group(3) for line in _lines(out)]  # type: ignore[union-attr]
    assert tags == [b"P", b"P", b"F", b"F"]


def test_a_flushed_line_is_closed_at_the_end() -> None:
    framer = CriFramer(b"stdout")
    assert framer.feed(b"prompt> ", 0) == b""
    assert framer.flush(0).endswith(b" stdout P prompt> \n")
    assert framer.end(0).endswith(b" stdout F \n")


# -- the shim as a process ------------------------------------------------------------------


def run_shim(tmp_path: Path, *command: str, env: dict[str, str] | None = None) -> tuple[int, bytes]:
    exit_file, log = tmp_path / "exit", tmp_path / "log"
    res = subprocess.run(
        [*SHIM, str(exit_file), str(log), "-", "-", *command],
        env=env or {"PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    assert res.stdout == res.stderr == b""
    code = int(exit_file.read_text())
    assert code == res.returncode
    return code, log.read_bytes()


def _records(log: bytes) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for line in _lines(log):
        m = RECORD.match(line)
        assert m is not None, line
        out.append((m.group(2), m.group(3), m.group(4)))
    return out


def test_streams_apart_and_the_exit_code(tmp_path: Path) -> None:
    code, log = run_shim(tmp_path, "sh", "-c", "echo out; echo err >&2; printf end; exit 3")
    assert code == 3
    assert _records(log) == [
        (b"stdout", b"F", b"out"),
        (b"stderr", b"F", b"err"),
        (b"stdout", b"F", b"end"),
    ]


def test_the_environment_is_the_containers(tmp_path: Path) -> None:
    """Python's locale coercion (LC_CTYPE) does not reach the command; the rest does."""
    _, log = run_shim(tmp_path, "env", env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nowhere"})
    assert sorted(text for _, _, text in _records(log)) == [
        b"PATH=/usr/bin:/bin",
        b"PYTHONPATH=/nowhere",
    ]


def test_a_missing_command(tmp_path: Path) -> None:
    code, log = run_shim(tmp_path, "no-such-command-here")
    assert code == 127
    assert _records(log) == [(b"stderr", b"F", b"kubesvc-shim: no-such-command-here: not found")]


def test_signals_are_forwarded_and_reported_as_a_shell_does(tmp_path: Path) -> None:
    exit_file, log = tmp_path / "exit", tmp_path / "log"
    shim = subprocess.Popen(
        [*SHIM, str(exit_file), str(log), "-", "-", "sh", "-c", "echo up; exec sleep 30"],
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 10
        while b"up" not in (log.read_bytes() if log.exists() else b""):
            assert time.monotonic() < deadline, "the command did not start"
            time.sleep(0.05)
        shim.send_signal(signal.SIGTERM)
        assert shim.wait(10) == 128 + signal.SIGTERM
        assert exit_file.read_text() == f"{128 + signal.SIGTERM}\n"
    finally:
        shim.kill()
        shim.wait()


def test_an_unfinished_line_is_written_while_the_command_waits(tmp_path: Path) -> None:
    """A prompt without a newline reaches the log (a P record) before the line ends, so
    attach shows it; the line reads back whole."""
    exit_file, log = tmp_path / "exit", tmp_path / "log"
    shim = subprocess.Popen(
        [*SHIM, str(exit_file), str(log), "-", "-", "sh", "-c", "printf 'name? '; sleep 2; echo x"],
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 10
        while b" P name? " not in (log.read_bytes() if log.exists() else b""):
            assert shim.poll() is None, "the prompt was not written before the command ended"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert shim.wait(10) == 0
        assert _read_back(log.read_bytes()) == b"name? x\n"
    finally:
        shim.kill()
        shim.wait()


def test_a_process_left_behind_does_not_hold_the_shim(tmp_path: Path) -> None:
    """The command's exit ends the shim even while a child it left holds the pipes."""
    pid_file = tmp_path / "pid"
    try:
        code, log = run_shim(tmp_path, "sh", "-c", f"sleep 30 & echo $! > {pid_file}; echo done")
        assert code == 0
        assert (b"stdout", b"F", b"done") in _records(log)
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


# -- the shim server and the runtime --------------------------------------------------------


def _wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_the_server_forks_shims_and_survives_bad_requests(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [*SHIM, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        for bad in ("not json", "[]", '{"command": []}', '{"command": ["x"]}'):
            server.stdin.write(bad + "\n")
            server.stdin.flush()
            assert "error" in json.loads(server.stdout.readline())
        exit_file, log = tmp_path / "exit", tmp_path / "log"
        request = {
            "command": ["sh", "-c", 'echo "$GREETING in $PWD"; echo oops >&2; sleep 0.5; exit 5'],
            "env": {"PATH": "/usr/bin:/bin", "GREETING": "hi"},
            "cwd": str(tmp_path),
            "exit_file": str(exit_file),
            "log_file": str(log),
        }
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        pid = json.loads(server.stdout.readline())["pid"]
        assert os.getsid(pid) == pid  # in a session of its own once the server answers
        _wait_for(exit_file)
        assert exit_file.read_text() == "5\n"
        assert _records(log.read_bytes()) == [
            (b"stdout", b"F", f"hi in {tmp_path}".encode()),
            (b"stderr", b"F", b"oops"),
        ]
    finally:
        server.stdin.close()
        assert server.wait(10) == 0  # the end of its input ends it


def _sandbox() -> Any:
    here = Path("/proc/self/ns")
    return HostSandbox("ns", "p", "uid", here / "net", here / "uts", here / "mnt", "127.0.0.1", "p")


def test_the_runtime_starts_containers_through_the_server(tmp_path: Path) -> None:
    """Containers started through the server; when it is gone a new one takes over; the
    agent's side of it going away leaves running containers alone."""

    async def main() -> None:
        exits: list[Proc] = []
        runtime = ContainerRuntime(lambda _uid, proc: exits.append(proc))
        try:
            first = runtime.start(
                "u", _sandbox(), "c", 0, ["sh", "-c", "echo one"], {}, None, tmp_path
            )
            server = runtime.shims._proc
            assert server is not None
            server.kill()
            server.wait()
            second = runtime.start(
                "u", _sandbox(), "c", 1, ["sh", "-c", "echo two; exit 3"], {}, None, tmp_path
            )
            assert runtime.shims._proc is not server
            deadline = time.monotonic() + 10
            while len(exits) < 2:
                assert time.monotonic() < deadline, "exits were not noticed"
                await asyncio.sleep(0.05)
            assert {(p.restart_count, p.exit_code) for p in exits} == {(0, 0), (1, 3)}
            assert _read_back(Path(first.log).read_bytes()) == b"one\n"
            assert _read_back(Path(second.log).read_bytes()) == b"two\n"
            # a container outlives the server (and the agent that ran it)
            third = runtime.start("u", _sandbox(), "c", 2, ["sleep", "30"], {}, None, tmp_path)
            runtime.shims.close()
            await asyncio.sleep(0.2)
            assert ContainerRuntime.alive(third) and third.running
            await runtime.stop([third], 5)
            assert third.exit_code == 128 + signal.SIGTERM
        finally:
            runtime.close()

    asyncio.run(main())


def test_an_exit_is_reported_after_start_returns_however_fast(tmp_path: Path) -> None:
    """A container that has exited (and whose shim the server has reaped) before start()
    looks at it is reported on a later turn of the loop, not from inside start(): the
    caller records the Proc as its current one first, and ignores exits of others."""

    async def main() -> None:
        current: list[Proc] = []
        exits: list[Proc] = []

        def on_exit(_uid: str, proc: Proc) -> None:
            assert any(p is proc for p in current), "an exit reported before start returned"
            exits.append(proc)

        runtime = ContainerRuntime(on_exit)
        try:
            for n in range(20):
                proc = runtime.start("u", _sandbox(), "c", n, ["true"], {}, None, tmp_path)
                current.append(proc)
                await asyncio.sleep(0)
            deadline = time.monotonic() + 10
            while len(exits) < 20:
                assert time.monotonic() < deadline, "exits were not noticed"
                await asyncio.sleep(0.05)
            # and one already gone when it is watched (as after an agent restart)
            gone = Proc("c", 99, 2**22 + 1, None, "", str(tmp_path / "x.log"), "/nonexistent")
            current.append(gone)
            runtime.watch("u", gone)
            assert gone.exit_code is None  # not yet: on the next turn
            await asyncio.sleep(0)
            assert gone.exit_code == 137 and exits[-1] is gone
        finally:
            runtime.close()

    asyncio.run(main())


def test_a_container_with_stdin_reads_what_attach_writes(tmp_path: Path) -> None:
    """`stdin: true`: the container's stdin is a FIFO the shim keeps open (a writer that
    comes and goes is not its end), until the runtime tells the shim to let go
    (stdinOnce); then the container reads end of file."""

    async def main() -> None:
        exits: list[Proc] = []
        runtime = ContainerRuntime(lambda _uid, proc: exits.append(proc))
        try:
            proc = runtime.start(
                "u",
                _sandbox(),
                "c",
                0,
                ["sh", "-c", "cat; echo eof"],
                {},
                None,
                tmp_path,
                stdin=True,
            )
            assert proc.stdin and Path(proc.stdin).is_fifo()
            for text in (b"first\n", b"second\n"):  # two attaches, one after the other
                writer = os.open(proc.stdin, os.O_WRONLY)
                os.write(writer, text)
                os.close(writer)
            await asyncio.sleep(0.3)
            assert not exits, "the container saw the end of its stdin too early"
            runtime.signal(proc, signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while not exits:
                assert time.monotonic() < deadline, "the container did not see its stdin end"
                await asyncio.sleep(0.05)
            assert exits[0].exit_code == 0
            assert _read_back(Path(proc.log).read_bytes()) == b"first\nsecond\neof\n"
            # without stdin it is /dev/null, as before
            plain = runtime.start("u", _sandbox(), "d", 0, ["cat"], {}, None, tmp_path / "d")
            assert plain.stdin == ""
            while len(exits) < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            runtime.close()

    asyncio.run(main())
