"""Lifecycle hook handlers run on their own (exec with no namespace prefix, sleep, and the
messages for handlers that cannot run), as the FailedPostStartHook/FailedPreStopHook events
report them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.node import hooks


def run(handler: Any, timeout: float = 5.0) -> str | None:
    return asyncio.run(
        hooks.run_hook(
            handler,
            container="c",
            pod="p_ns(uid)",
            pod_ip="127.0.0.1",
            exec_prefix=[],
            env={"PATH": "/usr/bin:/bin"},
            container_ports=[],
            netns=None,
            timeout=timeout,
        )
    )


def test_exec_success_and_failure_messages() -> None:
    assert run({"exec": {"command": ["true"]}}) is None
    assert run({"exec": {"command": ["sh", "-c", "echo nope; exit 3"]}}) == (
        'Exec lifecycle hook ([sh -c echo nope; exit 3]) for Container "c" in Pod '
        "\"p_ns(uid)\" failed - error: command 'sh -c echo nope; exit 3' exited with 3: , "
        'message: "nope\\n"'
    )


def test_exec_that_outlives_its_time_is_killed() -> None:
    started = time.monotonic()
    message = run({"exec": {"command": ["sleep", "30"]}}, timeout=0.3)
    assert message is not None and "command 'sleep 30' timed out" in message
    assert time.monotonic() - started < 10


def test_sleep_action_is_bounded_by_the_time_left() -> None:
    started = time.monotonic()
    assert run({"sleep": {"seconds": 60}}, timeout=0.2) is None
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ({"exec": {"command": []}}, "invalid exec lifecycle hook: no command"),
        ({"exec": {"command": "true"}}, "invalid exec lifecycle hook: no command"),
        ({"sleep": {"seconds": -1}}, "invalid sleep duration: -1"),
        ({"sleep": {"seconds": True}}, "invalid sleep duration: True"),
        ({"tcpSocket": {"port": 80}}, "tcpSocket lifecycle hooks are not supported"),
        ({}, "invalid handler: no exec, httpGet or sleep action"),
    ],
)
def test_handlers_that_cannot_run(handler: Any, message: str) -> None:
    assert run(handler) == message


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(
    http_get=st.dictionaries(
        st.sampled_from(["path", "scheme", "httpHeaders"]), _values, max_size=5
    ),
    sleep=_values,
)
def test_hostile_http_and_sleep_handlers_give_messages_not_exceptions(
    http_get: dict[str, Any], sleep: Any
) -> None:
    # an httpGet to a loopback port nothing listens on fails cleanly whatever its other
    # fields; no exec handler here: a generated command would run on this machine
    http_get = {**http_get, "host": "127.0.0.1", "port": 1}
    result = run({"httpGet": http_get}, timeout=0.2)
    assert result is None or isinstance(result, str)
    result = run({"sleep": {"seconds": sleep}}, timeout=0.01)
    assert result is None or isinstance(result, str)
