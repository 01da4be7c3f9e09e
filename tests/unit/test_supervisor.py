"""The supervisor keeps real processes (sleep, sh) running: restarts with back-off, start
order, adoption after a supervisor dies, stop. No root needed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from kubesvc.cluster.supervisor import (
    Backoff,
    Component,
    Supervisor,
    describe_exit,
    hold_pid_lock,
    is_process,
    locked_pid,
    start_ticks,
)


@pytest.mark.parametrize(
    ("runs", "delays"),
    [
        pytest.param([0.1] * 9, [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10, 10], id="doubles-to-cap"),
        pytest.param(
            [0.1, 0.1, 0.1, 30.0, 0.1], [0.2, 0.4, 0.8, 0.2, 0.4], id="healthy-run-resets"
        ),
        pytest.param([45.0, 45.0], [0.2, 0.2], id="always-healthy"),
    ],
)
def test_backoff(runs: list[float], delays: list[float]) -> None:
    b = Backoff()
    assert [b.after_exit(r) for r in runs] == pytest.approx(delays)


def test_describe_exit() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(None) == "exited"


def test_pid_lock(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.pid"
    assert locked_pid(path) is None
    fd = hold_pid_lock(path)
    assert fd is not None
    assert locked_pid(path) == os.getpid()
    # a second holder is refused while the first lives; a stale file means nobody
    child = subprocess.run(
        [
            "python3",
            "-c",
            "import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDWR);"
            "fcntl.flock(fd, fcntl.LOCK_EX|fcntl.LOCK_NB)",
            str(path),
        ],
        capture_output=True,
    )
    assert child.returncode != 0
    os.close(fd)
    assert path.exists() and locked_pid(path) is None


def comp(tmp: Path, name: str, argv: list[str], **kw: object) -> Component:
    return Component(name, argv, tmp / f"{name}.log", tmp / f"{name}.pid", **kw)  # type: ignore[arg-type]


def fast() -> Backoff:
    return Backoff(0.05, 0.4, 30.0)


async def until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def supervised(sup: Supervisor, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(sup.run())
    try:
        await body()
    finally:
        sup.stop()
        await asyncio.wait_for(task, 15)


def test_restart_after_kill_and_stop(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    sup = Supervisor(
        [comp(tmp_path, "a", ["sleep", "60"]), comp(tmp_path, "b", ["sleep", "60"])],
        state,
        backoff=fast,
    )
    seen: dict[str, int] = {}

    async def body() -> None:
        await until(lambda: all(st.state == "running" for st in sup.status.values()))
        first = sup.status["a"].pid
        assert int((tmp_path / "a.pid").read_text()) == first
        seen["first"] = first
        os.kill(first, signal.SIGKILL)
        await until(lambda: sup.status["a"].pid != first and sup.status["a"].state == "running")
        seen["second"] = sup.status["a"].pid
        assert is_process(seen["second"], sup.status["a"].start_ticks)
        data = json.loads(state.read_text())
        assert data["components"]["a"]["restarts"] == 1
        assert data["components"]["a"]["last_exit"] == "killed by SIGKILL"
        assert data["components"]["b"]["restarts"] == 0
        assert int((tmp_path / "a.pid").read_text()) == seen["second"]

    asyncio.run(supervised(sup, body))
    # stop: every process gone, state says so
    assert start_ticks(seen["second"]) is None
    assert start_ticks(sup.status["b"].pid) is None
    data = json.loads(state.read_text())
    assert data["stopped"] is True
    assert {c["state"] for c in data["components"].values()} == {"stopped"}


def test_crash_loop_backs_off(tmp_path: Path) -> None:
    sup = Supervisor(
        [comp(tmp_path, "bad", ["sh", "-c", "exit 3"])], tmp_path / "s.json", backoff=fast
    )

    took = 0.0

    async def body() -> None:
        nonlocal took
        start = time.monotonic()
        await until(lambda: sup.status["bad"].restarts >= 4, timeout=30)
        took = time.monotonic() - start

    asyncio.run(supervised(sup, body))
    # four restarts wait 0.05 + 0.1 + 0.2 + 0.4 s at least (without back-off: milliseconds);
    # a slow machine only makes it longer
    assert took >= 0.75, took
    assert sup.status["bad"].last_exit == "exit code 3"


def test_dependents_start_once_their_dependency_is_ready(tmp_path: Path) -> None:
    flag = tmp_path / "ready"

    async def api_ready() -> bool:
        return flag.exists()

    api = comp(tmp_path, "api", ["sh", "-c", f"sleep 0.5; touch {flag}; exec sleep 60"])
    api.ready = api_ready
    sup = Supervisor(
        [api, comp(tmp_path, "worker", ["sleep", "60"], after=("api",))], tmp_path / "s.json"
    )

    async def body() -> None:
        await until(lambda: sup.status["api"].state == "running")
        await asyncio.sleep(0.2)
        assert sup.status["worker"].state == "waiting" and sup.status["worker"].pid == 0
        await until(lambda: sup.status["worker"].state == "running")
        assert flag.stat().st_mtime <= sup.status["worker"].started_at + 0.05

    asyncio.run(supervised(sup, body))


def test_a_new_supervisor_adopts_live_processes(tmp_path: Path) -> None:
    """A supervisor killed with SIGKILL leaves its components running; the next one takes
    them over (no second copy), notices when they exit although they are not its children,
    and counts a component that ended while nobody watched as restarted."""
    state = tmp_path / "state.json"
    survivor = subprocess.Popen(["sleep", "60"], start_new_session=True)
    gone = subprocess.Popen(["sleep", "60"], start_new_session=True)
    gone_ticks = start_ticks(gone.pid)
    gone.kill()
    gone.wait()
    try:
        state.write_text(
            json.dumps(
                {
                    "stopped": False,
                    "components": {
                        "a": {"pid": survivor.pid, "start_ticks": start_ticks(survivor.pid)},
                        "b": {"pid": gone.pid, "start_ticks": gone_ticks, "restarts": 2},
                    },
                }
            )
        )
        sup = Supervisor(
            [comp(tmp_path, "a", ["sleep", "60"]), comp(tmp_path, "b", ["sleep", "60"])],
            state,
            backoff=fast,
        )

        async def body() -> None:
            await until(lambda: all(st.state == "running" for st in sup.status.values()))
            assert sup.status["a"].pid == survivor.pid
            assert sup.status["a"].restarts == 0
            assert sup.status["b"].pid != gone.pid
            assert sup.status["b"].restarts == 3
            # the adopted process is not our child: its exit is still seen (pidfd)
            survivor.kill()
            await until(
                lambda: sup.status["a"].pid != survivor.pid and sup.status["a"].state == "running"
            )
            assert sup.status["a"].restarts == 1
            assert sup.status["a"].last_exit == "exited"

        asyncio.run(supervised(sup, body))
    finally:
        survivor.kill()
        survivor.wait()


def test_restart_counts_start_over_after_a_stop_on_purpose(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"stopped": True, "components": {"a": {"pid": 1, "restarts": 7}}}))
    sup = Supervisor([comp(tmp_path, "a", ["sleep", "60"])], state)
    assert sup.status["a"].restarts == 0
    assert sup.status["a"].pid == 0  # pid 1 is not the process that was recorded


def test_a_held_component_stays_stopped_until_released(tmp_path: Path) -> None:
    """`kubesvc node stop`: a held component is stopped and not started again (its exit is no
    restart); released, it runs again. One held from the start is never started."""
    state = tmp_path / "state.json"
    sup = Supervisor(
        [
            comp(tmp_path, "a", ["sleep", "60"]),
            comp(tmp_path, "b", ["sleep", "60"]),
            comp(tmp_path, "c", ["sleep", "60"], held=True),
        ],
        state,
        backoff=fast,
        stop_grace=1.0,
    )

    async def body() -> None:
        await until(lambda: sup.status["a"].state == "running" == sup.status["b"].state)
        assert sup.status["c"].state == "held" and sup.status["c"].pid == 0
        first = sup.status["a"].pid
        sup.set_held({"a", "c"})
        await until(lambda: sup.status["a"].state == "held")
        assert start_ticks(first) is None
        await asyncio.sleep(0.5)  # several back-off periods: still not started again
        assert sup.status["a"].state == "held" and sup.status["a"].restarts == 0
        assert json.loads(state.read_text())["components"]["a"]["state"] == "held"
        assert sup.status["b"].state == "running"
        sup.set_held(set())
        await until(lambda: all(st.state == "running" for st in sup.status.values()))
        assert sup.status["a"].pid != first and sup.status["a"].restarts == 0
        assert sup.status["c"].restarts == 0

    asyncio.run(supervised(sup, body))
