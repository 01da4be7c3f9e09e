"""Container lifecycle hooks, postStart and preStop (pkg/kubelet/lifecycle/handlers.go):
exec inside the pod's namespaces, httpGet from inside its network namespace, and sleep.

`run_hook` returns None on success or the message upstream puts in the
FailedPostStartHook/FailedPreStopHook Event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubesvc.node import probes

Obj = Mapping[str, Any]

MAX_SLEEP = 24 * 3600.0


def _go_list(items: Sequence[Any]) -> str:
    return "[" + " ".join(str(i) for i in items) + "]"


async def run_hook(
    handler: Obj,
    *,
    container: str,
    pod: str,
    pod_ip: str,
    exec_prefix: Sequence[str],
    env: Mapping[str, str],
    container_ports: Sequence[Obj],
    netns: Path | None,
    timeout: float,
) -> str | None:
    """Run one hook handler, for at most `timeout` seconds (the caller bounds preStop by
    the grace period; postStart has no bound upstream, here the same cap as a probe run
    long enough for any real hook)."""
    timeout = max(0.0, timeout)
    if isinstance(handler.get("exec"), dict):
        command = handler["exec"].get("command")
        command = [str(c) for c in command] if isinstance(command, list) else []
        if not command:
            return "invalid exec lifecycle hook: no command"
        try:
            code, output = await probes.exec_command(
                command, exec_prefix=exec_prefix, env=env, timeout=timeout
            )
            error = None if code == 0 else f"command '{' '.join(command)}' exited with {code}: "
            if code is None:
                error = f"command '{' '.join(command)}' timed out"
        except (OSError, ValueError) as e:
            output, error = "", str(e)
        if error is None:
            return None
        return (
            f'Exec lifecycle hook ({_go_list(command)}) for Container "{container}" in Pod '
            f'"{pod}" failed - error: {error}, message: {_go_quote(output[:1024])}'
        )
    if isinstance(handler.get("httpGet"), dict):
        http_get = handler["httpGet"]
        try:
            url = probes.probe_url(http_get, pod_ip, container_ports)
            result, output = await probes.http_probe(
                url, probes.probe_headers(http_get), timeout, netns=netns
            )
        except probes.ProbeError as e:
            result, output = probes.UNKNOWN, str(e)
        if result == probes.SUCCESS:
            return None
        path = http_get.get("path") or ""
        return (
            f'HTTP lifecycle hook ({path}) for Container "{container}" in Pod "{pod}" '
            f"failed - error: {output[:1024]}"
        )
    if isinstance(handler.get("sleep"), dict):
        seconds = handler["sleep"].get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return f"invalid sleep duration: {str(seconds)[:64]}"
        await asyncio.sleep(min(float(seconds), timeout, MAX_SLEEP))
        return None
    if isinstance(handler.get("tcpSocket"), dict):
        return "tcpSocket lifecycle hooks are not supported"
    return "invalid handler: no exec, httpGet or sleep action"


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
