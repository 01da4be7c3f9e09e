"""Pod termination and lifecycle hooks: preStop runs before SIGTERM and holds the deletion,
postStart runs and a failing one is reported; a terminating pod keeps being probed, goes
not-ready and its EndpointSlice endpoint shows it (serving false, terminating true), with
publishNotReadyAddresses false and true.

One 2-node cluster (unique name) is shared by the tests. Files the hooks write go to a
hostPath directory the test creates and removes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.podspecs import apply, busybox_pod, uniq, wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Cluster, Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-termination-", dir="/tmp"))
    try:
        with running_cluster(tmp, "t") as c:
            shared = tmp / "shared"
            shared.mkdir()
            yield c, shared
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def host_volume(d: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    d.mkdir()
    mounts = [{"name": "out", "mountPath": str(d)}]
    vols = [{"name": "out", "hostPath": {"path": str(d), "type": "Directory"}}]
    return mounts, vols


def events(c: Cluster, pod: str) -> list[dict[str, Any]]:
    out = c.json("get", "events", "--field-selector", f"involvedObject.name={pod}")
    return list(out["items"])


def test_pre_stop_runs_before_sigterm_and_holds_the_deletion(env: tuple[Cluster, Path]) -> None:
    c, shared = env
    name = uniq("prestop")
    d = shared / name
    mounts, vols = host_volume(d)
    log = d / "log"
    pod = busybox_pod(
        name,
        mounts,
        vols,
        command=[
            "sh",
            "-c",
            f"trap 'echo term >> {log}; exit 0' TERM; while :; do sleep 0.1; done",
        ],
        lifecycle={
            "preStop": {
                "exec": {
                    "command": ["sh", "-c", f"echo prestop >> {log}; sleep 3; echo slept >> {log}"]
                }
            }
        },
    )
    pod["spec"]["terminationGracePeriodSeconds"] = 30
    apply(c, pod)
    try:
        wait_ready(c, name)
        c.out("delete", "pod", name, "--wait=false")
        wait_for(lambda: log.exists() or None, timeout=10, what="the preStop hook")
        # the hook is still sleeping: the pod is still there, terminating
        got = c.json("get", "pod", name)
        assert got["metadata"].get("deletionTimestamp")
        assert log.read_text() == "prestop\n"
        c.out("wait", "--for=delete", f"pod/{name}", "--timeout=30s")
        assert log.read_text() == "prestop\nslept\nterm\n"
    finally:
        c.kubectl("delete", "pod", name, "--grace-period=0", "--force", check=False)


def test_failing_pre_stop_is_reported_and_a_forced_delete_cuts_it_short(
    env: tuple[Cluster, Path],
) -> None:
    c, _ = env
    name = uniq("badhook")
    pod = busybox_pod(
        name,
        [],
        [],
        lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo nope; exit 3"]}}},
    )
    pod["spec"]["terminationGracePeriodSeconds"] = 30
    apply(c, pod)
    try:
        wait_ready(c, name)
        c.out("delete", "pod", name, "--wait=false")

        def failed() -> dict[str, Any] | None:
            return next((e for e in events(c, name) if e["reason"] == "FailedPreStopHook"), None)

        event = wait_for(failed, timeout=15, what="a FailedPreStopHook event")
        assert event["type"] == "Warning"
        assert event["message"] == (
            f'Exec lifecycle hook ([sh -c echo nope; exit 3]) for Container "main" in Pod '
            f'"{name}_default({event["involvedObject"]["uid"]})" failed - error: command '
            "'sh -c echo nope; exit 3' exited with 3: , message: \"nope\\n\""
        )
        # `sleep` ignores nothing, so SIGTERM ends it; the pod goes without the 30 s
        c.out("wait", "--for=delete", f"pod/{name}", "--timeout=20s")
    finally:
        c.kubectl("delete", "pod", name, "--grace-period=0", "--force", check=False)


def test_post_start_runs_and_a_failing_one_restarts_the_container(
    env: tuple[Cluster, Path],
) -> None:
    c, shared = env
    name, bad = uniq("poststart"), uniq("poststart-bad")
    d = shared / name
    mounts, vols = host_volume(d)
    apply(
        c,
        busybox_pod(
            name,
            mounts,
            vols,
            lifecycle={"postStart": {"exec": {"command": ["sh", "-c", f"hostname > {d}/ran"]}}},
        ),
    )
    apply(
        c,
        busybox_pod(bad, [], [], lifecycle={"postStart": {"exec": {"command": ["false"]}}}),
    )
    try:
        wait_ready(c, name)
        assert (d / "ran").read_text() == f"{name}\n"

        def restarted() -> bool | None:
            reasons = {e["reason"] for e in events(c, bad)}
            st = c.json("get", "pod", bad)["status"].get("containerStatuses") or [{}]
            return ("FailedPostStartHook" in reasons and st[0].get("restartCount", 0) >= 1) or None

        wait_for(restarted, timeout=30, what="FailedPostStartHook and a restart")
    finally:
        c.kubectl("delete", "pod", name, bad, "--grace-period=0", "--force", check=False)


def test_terminating_pod_goes_not_ready_and_its_endpoint_shows_it(
    env: tuple[Cluster, Path],
) -> None:
    c, shared = env
    name = uniq("term")
    d = shared / name
    mounts, vols = host_volume(d)
    flag = d / "ready"
    # on SIGTERM the app stops being ready but keeps running through its long grace period
    pod = busybox_pod(
        name,
        mounts,
        vols,
        command=[
            "sh",
            "-c",
            f"touch {flag}; trap 'rm -f {flag}' TERM; while :; do sleep 0.1; done",
        ],
        readinessProbe={"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1},
        ports=[{"containerPort": 8080}],
    )
    pod["spec"]["terminationGracePeriodSeconds"] = 300
    apply(c, pod)
    services = {"plain": False, "publish": True}
    for suffix, publish in services.items():
        apply(
            c,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"{name}-{suffix}"},
                "spec": {
                    "selector": {"app": name},
                    "ports": [{"port": 80, "targetPort": 8080}],
                    "publishNotReadyAddresses": publish,
                },
            },
        )

    def conditions(suffix: str) -> dict[str, Any] | None:
        slices = c.json(
            "get", "endpointslices", "-l", f"kubernetes.io/service-name={name}-{suffix}"
        )["items"]
        eps = [e for s in slices for e in s.get("endpoints") or []]
        return eps[0]["conditions"] if len(eps) == 1 else None

    try:
        wait_ready(c, name)
        wait_for(
            lambda: (
                conditions("plain") == {"ready": True, "serving": True, "terminating": False}
                or None
            ),
            timeout=20,
            what="a ready endpoint",
        )
        c.out("delete", "pod", name, "--wait=false")
        wait_for(
            lambda: (
                conditions("plain") == {"ready": False, "serving": False, "terminating": True}
                or None
            ),
            timeout=20,
            what="the terminating endpoint not serving",
        )
        # publishNotReadyAddresses: ready regardless, as upstream
        assert conditions("publish") == {"ready": True, "serving": False, "terminating": True}
        pod_now = c.json("get", "pod", name)
        ready = next(x for x in pod_now["status"]["conditions"] if x["type"] == "Ready")
        assert ready["status"] == "False"
        assert pod_now["status"]["containerStatuses"][0]["state"].get("running")
        # Endpoints leave a terminating pod out, unless not-ready addresses are published
        plain = c.json("get", "endpoints", f"{name}-plain")
        assert not plain.get("subsets")
        published = c.json("get", "endpoints", f"{name}-publish")
        assert [a["targetRef"]["name"] for a in published["subsets"][0]["addresses"]] == [name]
    finally:
        c.kubectl("delete", "pod", name, "--grace-period=0", "--force", check=False)
        c.kubectl("delete", "service", f"{name}-plain", f"{name}-publish", check=False)
    # a forced delete ends the long grace period: the container is killed, not left running
    c.out("wait", "--for=delete", f"pod/{name}", "--timeout=20s")
    wait_for(lambda: not running_with(str(flag)) or None, timeout=15, what="the container killed")


def running_with(text: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text.encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids
