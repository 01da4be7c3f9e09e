"""kubesvc.spawn: children started with vfork, fed and read through non-blocking pipes on
the event loop, waited for through pidfds; killed on timeout or cancellation, never left
as zombies."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc import spawn


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> Iterator[None]:
    """The agent runs on uvloop; tests and other callers may run on asyncio's own loop."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(None)


_EARLIER: set[int] = set()


@pytest.fixture(autouse=True)
def earlier_children() -> None:
    """What this process already had running before the test (a session's API server, in
    a run that includes the e2e tests), which children() leaves out."""
    _EARLIER.clear()
    _EARLIER.update(_all_children())


def children() -> set[int]:
    """Pids whose parent is this process (zombies included), started during this test."""
    return _all_children() - _EARLIER


def _all_children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                out.add(int(entry))
    return out


def open_fds() -> int:
    asyncio.run(asyncio.sleep(0))  # what the loop itself keeps open for the process
    return len(os.listdir("/proc/self/fd"))


def test_output_input_and_exit_status() -> None:
    async def main() -> None:
        r = await spawn.run(
            ["sh", "-c", "echo out; echo err >&2; exit 3"], stdout=spawn.PIPE, stderr=spawn.PIPE
        )
        assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
        r = await spawn.run(
            ["sh", "-c", "echo out; echo err >&2"], stdout=spawn.PIPE, stderr=spawn.STDOUT
        )
        assert (r.returncode, sorted(r.stdout.split())) == (0, [b"err", b"out"])
        r = await spawn.run(["cat"], input=b"hello", stdout=spawn.PIPE)
        assert (r.returncode, r.stdout) == (0, b"hello")
        r = await spawn.run(["true"])
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
        r = await spawn.run(
            ["sh", "-c", "echo $X"], env={"X": "y", "PATH": os.environ["PATH"]}, stdout=spawn.PIPE
        )
        assert r.stdout == b"y\n"

    before = open_fds()
    asyncio.run(main())
    assert open_fds() == before
    assert not children()


def test_more_than_a_pipe_holds_both_ways_and_the_limit() -> None:
    big = os.urandom(3 * 1024 * 1024)

    async def main() -> None:
        r = await spawn.run(["cat"], input=big, stdout=spawn.PIPE)
        assert r.stdout == big
        r = await spawn.run(["cat"], input=big, stdout=spawn.PIPE, limit=1000)
        assert (r.returncode, r.stdout) == (0, big[:1000])
        # a child that never reads its input still finishes
        r = await spawn.run(["true"], input=big)
        assert r.returncode == 0

    asyncio.run(main())
    assert not children()


def test_missing_command_raises_and_leaks_nothing() -> None:
    async def main() -> None:
        with pytest.raises(FileNotFoundError):
            await spawn.run(["/nonexistent/cmd"], input=b"x", stdout=spawn.PIPE, stderr=spawn.PIPE)

    before = open_fds()
    asyncio.run(main())
    assert open_fds() == before


def test_timeout_kills_the_whole_group() -> None:
    async def main() -> None:
        started = time.monotonic()
        r = await spawn.run(
            ["sh", "-c", "echo partial; sleep 30 & sleep 30"],
            stdout=spawn.PIPE,
            start_new_session=True,
            timeout=0.5,
        )
        assert r.returncode is None and r.stdout == b"partial\n"
        assert time.monotonic() - started < 10

    asyncio.run(main())
    assert not children()


def test_cancelled_run_kills_and_reaps_the_child() -> None:
    async def main() -> None:
        task = asyncio.create_task(spawn.run(["sleep", "30"], stdout=spawn.PIPE))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # reaped once its exit is noticed
            if not children():
                break
            await asyncio.sleep(0.02)

    asyncio.run(main())
    assert not children()


def test_many_at_once() -> None:
    async def main() -> None:
        results = await asyncio.gather(
            *(spawn.run(["sh", "-c", f"echo {i}"], stdout=spawn.PIPE) for i in range(50))
        )
        assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(50)]

    asyncio.run(main())
    assert not children()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(size=st.integers(0, 300_000), limit=st.one_of(st.none(), st.integers(0, 300_000)))
def test_what_is_kept_is_a_prefix_of_at_most_limit_bytes(size: int, limit: int | None) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    r = asyncio.run(spawn.run(["cat"], input=data, stdout=spawn.PIPE, limit=limit))
    assert r.returncode == 0
    assert r.stdout == (data if limit is None else data[:limit])
