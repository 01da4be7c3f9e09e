"""The DefaultTolerationSeconds admission plugin: a pod created without a NoExecute
toleration for node.kubernetes.io/not-ready or /unreachable gets one (operator Exists,
tolerationSeconds 300 unless the API server's --default-not-ready-toleration-seconds /
--default-unreachable-toleration-seconds say otherwise), so that the taint eviction
controller deletes it that long after its node fails instead of at once.

As upstream: a toleration with that key, or with no key (which tolerates every key), and with
effect NoExecute or no effect counts as tolerating it already, whatever its operator and
tolerationSeconds.
"""

from __future__ import annotations

from typing import Any

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300


def _tolerates(tolerations: list[Any], key: str) -> bool:
    for tol in tolerations:
        if not isinstance(tol, dict):
            continue
        if tol.get("key") in (key, "", None) and tol.get("effect") in ("NoExecute", "", None):
            return True
    return False


def add_default_tolerations(
    pod: dict[str, Any],
    not_ready_seconds: int = DEFAULT_TOLERATION_SECONDS,
    unreachable_seconds: int = DEFAULT_TOLERATION_SECONDS,
) -> None:
    """Add the missing default tolerations to `pod` (on create only)."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return  # validation answers for a pod without a spec
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        return
    added = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key, seconds in (
            (TAINT_NOT_READY, not_ready_seconds),
            (TAINT_UNREACHABLE, unreachable_seconds),
        )
        if not _tolerates(tolerations, key)
    ]
    if added:
        spec["tolerations"] = [*tolerations, *added]
