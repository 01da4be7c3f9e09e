"""Pod helpers shared by the workload controllers: readiness, availability, owner references
and upstream's ordering of pods for deletion (controller.ActivePodsWithRanks)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from kubesvc.api.objmeta import meta, parse_time

Obj = dict[str, Any]

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def controller_ref(obj: Obj) -> Obj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def make_controller_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    m = meta(owner)
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def ready_condition(pod: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond  # type: ignore[no-any-return]
    return None


def is_ready(pod: Obj) -> bool:
    cond = ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def is_available(pod: Obj, min_ready_seconds: int, now: datetime) -> bool:
    """Ready, and (when minReadySeconds > 0) Ready for longer than minReadySeconds."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((ready_condition(pod) or {}).get("lastTransitionTime"))
    return since is not None and since.timestamp() + min_ready_seconds < now.timestamp()


def seconds_until_available(pod: Obj, min_ready_seconds: int, now: datetime) -> float | None:
    """How long until a ready pod becomes available; None if it is not ready (or never will)."""
    if not is_ready(pod) or min_ready_seconds <= 0:
        return None
    since = parse_time((ready_condition(pod) or {}).get("lastTransitionTime"))
    if since is None:
        return None
    return max(0.0, since.timestamp() + min_ready_seconds - now.timestamp())


def is_active(pod: Obj) -> bool:
    """Counted as a replica: not terminal and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not meta(pod).get("deletionTimestamp")


def max_container_restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((int(s.get("restartCount") or 0) for s in statuses), default=0)


def deletion_cost(pod: Obj) -> int:
    value = (meta(pod).get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _ready_time(pod: Obj) -> datetime | None:
    cond = ready_condition(pod)
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime"))


def _log_rank(t: datetime, now: datetime) -> int:
    delta_ns = (now - t).total_seconds() * 1e9
    return int(math.log2(delta_ns)) if delta_ns > 0 else -1


def _later_first(
    t1: datetime | None, t2: datetime | None, uid1: str, uid2: str, now: datetime | None
) -> bool:
    """Zero time < newer < older; with `now`, times in one power-of-two age bucket tie (and
    are then ordered by uid), as upstream's LogarithmicScaleDown does."""
    if t1 is None or t2 is None:
        return t1 is None
    if now is None:
        return t1 > t2
    diff = _log_rank(t1, now) - _log_rank(t2, now)
    if diff == 0:
        return uid1 < uid2
    return diff < 0


def _node(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _created(pod: Obj) -> datetime | None:
    return parse_time(meta(pod).get("creationTimestamp"))


def _less(a: Obj, b: Obj, rank_a: int, rank_b: int, now: datetime | None) -> bool:
    """True if pod a should be deleted before pod b."""
    na, nb = (
        (a.get("spec") or {}).get("nodeName") or "",
        (b.get("spec") or {}).get("nodeName") or "",
    )
    if na != nb and (not na or not nb):
        return not na
    pa = _PHASE_ORDINAL.get((a.get("status") or {}).get("phase", ""), 0)
    pb = _PHASE_ORDINAL.get((b.get("status") or {}).get("phase", ""), 0)
    if pa != pb:
        return pa < pb
    ra, rb = is_ready(a), is_ready(b)
    if ra != rb:
        return not ra
    ca, cb = deletion_cost(a), deletion_cost(b)
    if ca != cb:
        return ca < cb
    if rank_a != rank_b:
        return rank_a > rank_b
    uid_a, uid_b = str(meta(a).get("uid", "")), str(meta(b).get("uid", ""))
    if ra and rb:
        ta, tb = _ready_time(a), _ready_time(b)
        if ta != tb:
            return _later_first(ta, tb, uid_a, uid_b, now)
    restarts_a, restarts_b = max_container_restarts(a), max_container_restarts(b)
    if restarts_a != restarts_b:
        return restarts_a > restarts_b
    ta, tb = (
        parse_time(meta(a).get("creationTimestamp")),
        parse_time(meta(b).get("creationTimestamp")),
    )
    if ta != tb:
        return _later_first(ta, tb, uid_a, uid_b, now)
    return False


def rank_by_colocation(pods: Sequence[Obj], related: Iterable[Obj]) -> list[int]:
    """Per pod, the number of active related pods on its node (more doubled-up goes first)."""
    on_node: dict[str, int] = {}
    for pod in related:
        if is_active(pod):
            node = _node(pod)
            on_node[node] = on_node.get(node, 0) + 1
    return [on_node.get(_node(p), 0) for p in pods]


def sort_for_deletion(
    pods: Sequence[Obj], related: Iterable[Obj] | None = None, now: datetime | None = None
) -> list[Obj]:
    """Pods ordered least valuable first (upstream's ActivePodsWithRanks)."""
    ranks = rank_by_colocation(pods, pods if related is None else related)
    ranked = list(zip(pods, ranks, strict=True))

    def cmp(x: tuple[Obj, int], y: tuple[Obj, int]) -> int:
        if _less(x[0], y[0], x[1], y[1], now):
            return -1
        if _less(y[0], x[0], y[1], x[1], now):
            return 1
        return 0

    ranked.sort(key=functools.cmp_to_key(cmp))
    return [p for p, _ in ranked]


def pods_to_delete(
    pods: Sequence[Obj], n: int, related: Iterable[Obj] | None = None, now: datetime | None = None
) -> list[Obj]:
    """The n pods to delete when scaling down, least valuable first."""
    if n <= 0:
        return []
    if n >= len(pods):
        return list(pods)
    return sort_for_deletion(pods, related, now)[:n]
