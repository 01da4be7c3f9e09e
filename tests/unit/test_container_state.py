"""What a node reports about a container's instances (restartCount, state, lastState) and
which instance `kubectl logs --previous` reads: the kubelet's rules."""

import time

from kubesvc.node.pod import ContainerState
from kubesvc.node.runtime import Proc


def _proc(n: int, exit_code: int | None = None) -> Proc:
    return Proc("c", n, 100 + n, None, "2026-01-01T00:00:00Z", f"{n}.log", f"{n}.exit", exit_code)


def test_a_running_first_instance_has_no_last_state() -> None:
    c = ContainerState(spec={"name": "c"}, current=_proc(0), waiting_reason="")
    assert c.shown_restart_count() == 0
    assert c.last_terminated() is None


def test_a_restarted_container_counts_and_shows_the_instance_before() -> None:
    c = ContainerState(spec={"name": "c"}, waiting_reason="")
    c.current = _proc(0)
    c.ended(_proc(0, 1))
    c.restart_count = 1  # the restart is due; it has not happened yet
    assert c.shown_restart_count() == 0  # upstream counts it once the new instance exists
    assert c.shows_terminated()
    assert c.last_terminated() is None  # the state is the only instance that ended
    c.current = _proc(1)
    assert c.shown_restart_count() == 1
    assert c.last_terminated() is c.previous and c.previous.restart_count == 0


def test_waiting_in_back_off_shows_the_last_end_as_last_state() -> None:
    c = ContainerState(spec={"name": "c"})
    c.current = _proc(1)
    c.previous = _proc(0, 1)
    c.ended(_proc(1, 1))
    c.restart_count = 2
    c.waiting_reason, c.next_start = "CrashLoopBackOff", time.monotonic() + 10
    assert not c.shows_terminated()
    assert c.shown_restart_count() == 1
    last = c.last_terminated()
    assert last is not None and last.restart_count == 1


def test_a_container_that_will_not_run_again_shows_the_one_before_as_last_state() -> None:
    c = ContainerState(spec={"name": "c"}, waiting_reason="")
    c.previous = _proc(0, 1)
    c.ended(_proc(1, 0))
    assert c.shows_terminated()
    last = c.last_terminated()
    assert last is not None and last.restart_count == 0
