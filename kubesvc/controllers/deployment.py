"""The Deployment controller (upstream pkg/controller/deployment).

A Deployment owns ReplicaSets named `<deployment>-<pod-template-hash>`; the one whose template
equals the Deployment's is the new ReplicaSet, the rest are old. Rolling updates move replicas
from old to new within maxSurge/maxUnavailable, Recreate scales old to zero before creating the
new, scaling events are spread proportionally, and status carries the counts plus the Available
and Progressing conditions that `kubectl rollout status` reads.

Module-level functions compute decisions over plain dicts; DeploymentController applies them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubesvc.api import objmeta
from kubesvc.api.objmeta import object_key
from kubesvc.client import shape
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.client.shape import Invalid
from kubesvc.controllers import podutil
from kubesvc.controllers.base import Context, Controller
from kubesvc.controllers.replicaset import (
    close_recorder,
    component_recorder,
    replicas_of,
    selector_matches,
)

log = logging.getLogger("kubesvc.controllers.deployment")

API_VERSION = "apps/v1"
KIND = "Deployment"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
SKIP_ANNOTATIONS = frozenset(
    {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}
)
MAX_INT32 = 2**31 - 1
MAX_REV_HISTORY_CHARS = 2000

# condition reasons (deployment_util.go)
REPLICA_SET_UPDATED = "ReplicaSetUpdated"
FAILED_RS_CREATE = "ReplicaSetCreateError"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_RS_INDEX = "deployment:namespace"
_POD_INDEX = "deployment:controller"


# -- small accessors ------------------------------------------------------------------------


def _name(obj: Obj | None) -> str:
    return str(objmeta.meta(obj).get("name", ""))


def _uid(obj: Obj | None) -> str:
    return str(objmeta.meta(obj).get("uid", ""))


def _spec(obj: Obj | None) -> Obj:
    return (obj or {}).get("spec") or {}


def _status_int(obj: Obj | None, field: str) -> int:
    return int(((obj or {}).get("status") or {}).get(field) or 0)


def _annotations(obj: Obj | None) -> dict[str, str]:
    return dict(objmeta.meta(obj).get("annotations") or {})


def _created(obj: Obj) -> datetime | None:
    return objmeta.parse_time(objmeta.meta(obj).get("creationTimestamp"))


def _by_creation_key(rs: Obj) -> tuple[float, str]:
    when = _created(rs)
    return (when.timestamp() if when else 0.0, _name(rs))


def sort_by_creation(rss: Iterable[Obj]) -> list[Obj]:
    """controller.ReplicaSetsByCreationTimestamp: oldest first, name breaks ties."""
    return sorted(rss, key=_by_creation_key)


# -- template hash ---------------------------------------------------------------------------
_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(s: str) -> str:
    """apimachinery rand.SafeEncodeString: no vowels, no look-alike characters."""
    return "".join(_SAFE_ALPHANUMS[b % len(_SAFE_ALPHANUMS)] for b in s.encode())


def _normalize(value: Any) -> Any:
    """Semantic equality treats nil and empty maps/lists alike, and so must the hash."""
    if isinstance(value, dict):
        out = {k: _normalize(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def _fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    """controller.ComputeHash: fnv32a over the template (canonical JSON here, where upstream
    hashes Go's object dump) plus the collision count, rendered with SafeEncodeString."""
    data = json.dumps(_normalize(template), sort_keys=True, separators=(",", ":")).encode()
    h = _fnv32a(data)
    if collision_count is not None:
        h = _fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), h)
    return safe_encode(str(h))


def _without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return _normalize(t)  # type: ignore[no-any-return]


def equal_ignore_hash(t1: Obj, t2: Obj) -> bool:
    return _without_hash(t1) == _without_hash(t2)


# -- surge / unavailable -------------------------------------------------------------------
def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Invalid(f"invalid value for IntOrString: {value!r:.40}")
    if isinstance(value, int):
        return value
    if not value.endswith("%") or not value[:-1].isdigit():
        raise Invalid("invalid value for IntOrString: invalid type: string is not a percentage")
    scaled = int(value[:-1]) * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def is_rolling(d: Obj) -> bool:
    return (_spec(d).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    surge = int_or_percent(0 if max_surge is None else max_surge, desired, True)
    unavailable = int_or_percent(0 if max_unavailable is None else max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        # both rounded to zero: allow one unavailable rather than never progressing
        unavailable = 1
    return surge, unavailable


def _rolling_params(d: Obj) -> tuple[Any, Any]:
    rolling = (_spec(d).get("strategy") or {}).get("rollingUpdate") or {}
    return rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%")


def max_surge(d: Obj) -> int:
    if not is_rolling(d):
        return 0
    surge, _ = resolve_fenceposts(*_rolling_params(d), replicas_of(d))
    return surge


def max_unavailable(d: Obj) -> int:
    desired = replicas_of(d)
    if not is_rolling(d) or desired == 0:
        return 0
    _, unavailable = resolve_fenceposts(*_rolling_params(d), desired)
    return min(unavailable, desired)


# -- replica set selection -------------------------------------------------------------------
def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's (ignoring the hash)."""
    template = _spec(d).get("template") or {}
    for rs in sort_by_creation(rss):
        if equal_ignore_hash(_spec(rs).get("template") or {}, template):
            return rs
    return None


def find_old_rss(d: Obj, rss: list[Obj], new_rs: Obj | None = None) -> list[Obj]:
    new_rs = new_rs if new_rs is not None else find_new_rs(d, rss)
    new_uid = _uid(new_rs) if new_rs is not None else None
    return [rs for rs in rss if _uid(rs) != new_uid]


def active(rss: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas_of(rs) > 0]


def replica_count(rss: Iterable[Obj | None]) -> int:
    return sum(replicas_of(rs) for rs in rss if rs is not None)


def status_count(rss: Iterable[Obj | None], field: str) -> int:
    return sum(_status_int(rs, field) for rs in rss if rs is not None)


def revision_of(obj: Obj | None) -> int:
    try:
        return int(_annotations(obj).get(REVISION, "0") or 0)
    except ValueError:
        return 0


def max_revision(rss: Iterable[Obj]) -> int:
    return max((revision_of(rs) for rs in rss), default=0)


def new_rs_new_replicas(d: Obj, all_rss: list[Obj | None], new_rs: Obj) -> int:
    """NewRSNewReplicas: how big the new ReplicaSet may be right now."""
    desired = replicas_of(d)
    if not is_rolling(d):
        return desired
    surge = int_or_percent(_rolling_params(d)[0], desired, True)
    current = replica_count(all_rss)
    max_total = desired + surge
    if current >= max_total:
        return replicas_of(new_rs)
    scale_up = min(max_total - current, desired - replicas_of(new_rs))
    return replicas_of(new_rs) + scale_up


def _annotation_int(rs: Obj, key: str) -> int | None:
    try:
        return int(_annotations(rs)[key])
    except (KeyError, ValueError):
        return None


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = replicas_of(d)
    return (
        replicas_of(rs) == desired
        and _annotation_int(rs, DESIRED_REPLICAS) == desired
        and _status_int(rs, "availableReplicas") == desired
    )


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=_by_creation_key, reverse=True)
    live = active([*newest_first, new_rs])
    if not live:
        return new_rs if new_rs is not None else newest_first[0]
    if len(live) == 1:
        return live[0]
    return None


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    a = _annotations(rs)
    return a.get(DESIRED_REPLICAS) != str(desired) or a.get(MAX_REPLICAS) != str(max_replicas)


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    m = rs.setdefault("metadata", {})
    a = m.setdefault("annotations", {})
    changed = a.get(DESIRED_REPLICAS) != str(desired) or a.get(MAX_REPLICAS) != str(max_replicas)
    a[DESIRED_REPLICAS] = str(desired)
    a[MAX_REPLICAS] = str(max_replicas)
    return changed


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: copy the Deployment's annotations, raise the revision (and
    remember the previous one in revision-history), add replica annotations on creation."""
    m = rs.setdefault("metadata", {})
    a = m.get("annotations")
    if not isinstance(a, dict):
        a = m["annotations"] = {}
    changed = False
    for k, v in _annotations(d).items():
        if k in SKIP_ANNOTATIONS or a.get(k) == v:
            continue
        a[k] = v
        changed = True
    old_text = a.get(REVISION)
    try:
        old_revision = int(old_text) if old_text else 0
    except ValueError:
        return changed
    if old_revision < new_revision:
        a[REVISION] = str(new_revision)
        changed = True
        if old_text is not None:
            history = a.get(REVISION_HISTORY, "")
            parts = [p for p in history.split(",") if p] + [old_text]
            while len(",".join(parts)) > MAX_REV_HISTORY_CHARS and len(parts) > 1:
                parts.pop(0)
            a[REVISION_HISTORY] = ",".join(parts)
    if not exists:
        desired = replicas_of(d)
        if set_replicas_annotations(rs, desired, desired + max_surge(d)):
            changed = True
    return changed


def new_replica_set(d: Obj, collision_count: int | None, revision: int, replicas: int) -> Obj:
    """The new ReplicaSet for the Deployment's current template (upstream getNewReplicaSet)."""
    dm, spec = objmeta.meta(d), _spec(d)
    template = copy.deepcopy(spec.get("template") or {})
    h = template_hash(template, collision_count)
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: h}
    selector = copy.deepcopy(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: h}
    rs: Obj = {
        "apiVersion": API_VERSION,
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{dm.get('name')}-{h}",
            "namespace": dm.get("namespace"),
            "labels": dict(tmeta["labels"]),
            "ownerReferences": [podutil.make_controller_ref(d, API_VERSION, KIND)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(spec.get("minReadySeconds") or 0),
            "selector": selector,
            "template": template,
        },
    }
    set_new_rs_annotations(d, rs, revision, exists=False)
    return rs


# -- scaling decisions -----------------------------------------------------------------------
@dataclass
class Scale:
    """Set `rs` to `replicas`; `op` is the event verb when the size changes. Proportional
    scaling also refreshes replica annotations on ReplicaSets whose size stays the same."""

    rs: Obj
    replicas: int
    op: str = ""
    annotate_only_ok: bool = False

    @property
    def name(self) -> str:
        return _name(self.rs)


def _scale_to(rs: Obj, replicas: int) -> Scale | None:
    current = replicas_of(rs)
    if current == replicas:
        return None
    return Scale(rs, replicas, "up" if replicas > current else "down")


def get_proportion(
    rs: Obj, d: Obj, to_add: int, added: int, deployment_status_replicas: int
) -> int:
    if replicas_of(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _rs_fraction(rs, d, deployment_status_replicas)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _round_half_away(x: float) -> int:
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def _rs_fraction(rs: Obj, d: Obj, deployment_status_replicas: int) -> int:
    if replicas_of(d) == 0:
        return -replicas_of(rs)
    deployment_replicas = replicas_of(d) + max_surge(d)
    annotated = _annotation_int(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = deployment_status_replicas
    if annotated == 0:
        return 0
    size = replicas_of(rs) * deployment_replicas / annotated
    return _round_half_away(size) - replicas_of(rs)


def _size_cmp(newer_first: bool) -> Any:
    def cmp(a: Obj, b: Obj) -> int:
        ra, rb = replicas_of(a), replicas_of(b)
        if ra != rb:
            return -1 if ra > rb else 1
        ka, kb = _by_creation_key(a), _by_creation_key(b)
        if newer_first:
            return -1 if ka[0] > kb[0] else 1 if ka[0] < kb[0] else 0
        return -1 if ka < kb else 1 if ka > kb else 0

    return functools.cmp_to_key(cmp)


def scale_plan(d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> list[Scale]:
    """Upstream `scale`: for scaling events and paused Deployments, spread the change over
    the active ReplicaSets in proportion to their size."""
    desired = replicas_of(d)
    only = find_active_or_latest(new_rs, old_rss)
    if only is not None:
        s = _scale_to(only, desired)
        return [s] if s else []
    if is_saturated(d, new_rs):
        return [s for old in active(old_rss) if (s := _scale_to(old, 0))]
    if not is_rolling(d):
        return []
    all_rss = active([*old_rss, new_rs])
    allowed = desired + max_surge(d) if desired > 0 else 0
    to_add = allowed - replica_count(all_rss)
    op = ""
    if to_add > 0:
        all_rss.sort(key=_size_cmp(newer_first=True))
        op = "up"
    elif to_add < 0:
        all_rss.sort(key=_size_cmp(newer_first=False))
        op = "down"
    status_replicas = _status_int(d, "replicas")
    sizes: dict[str, int] = {}
    added = 0
    for rs in all_rss:
        if to_add != 0:
            proportion = get_proportion(rs, d, to_add, added, status_replicas)
            sizes[_name(rs)] = replicas_of(rs) + proportion
            added += proportion
        else:
            sizes[_name(rs)] = replicas_of(rs)
    plan: list[Scale] = []
    for i, rs in enumerate(all_rss):
        if i == 0 and to_add != 0:
            sizes[_name(rs)] = max(0, sizes[_name(rs)] + to_add - added)
        plan.append(Scale(rs, sizes[_name(rs)], op, annotate_only_ok=True))
    return plan


def _available(rs: Obj) -> int:
    # A ReplicaSet just told to shrink may still report the pods it is deleting as available;
    # never count more than it is meant to keep, so a stale status cannot cause over-scaling.
    return min(_status_int(rs, "availableReplicas"), replicas_of(rs))


def rolling_plan(d: Obj, new_rs: Obj, old_rss: list[Obj]) -> list[Scale]:
    """One step of a rolling update (rolloutRolling): scale the new ReplicaSet up if surge
    allows; otherwise scale old ReplicaSets down as far as availability allows."""
    all_rss: list[Obj] = [*old_rss, new_rs]
    desired = replicas_of(d)
    if replicas_of(new_rs) > desired:
        s = _scale_to(new_rs, desired)
        return [s] if s else []
    if replicas_of(new_rs) < desired:
        s = _scale_to(new_rs, new_rs_new_replicas(d, list(all_rss), new_rs))
        if s:
            return [s]
    return _scale_down_old(d, new_rs, active(old_rss))


def _scale_down_old(d: Obj, new_rs: Obj, old_rss: list[Obj]) -> list[Scale]:
    old_count = replica_count(old_rss)
    if old_count == 0:
        return []
    all_count = old_count + replicas_of(new_rs)
    min_available = replicas_of(d) - max_unavailable(d)
    new_unavailable = replicas_of(new_rs) - _status_int(new_rs, "availableReplicas")
    max_scaled_down = all_count - min_available - new_unavailable
    if max_scaled_down <= 0:
        return []
    sizes = {_name(rs): replicas_of(rs) for rs in old_rss}
    ordered = sort_by_creation(old_rss)
    # first remove unhealthy old replicas: deleting them costs no availability
    cleaned = 0
    for rs in ordered:
        if cleaned >= max_scaled_down:
            break
        size = sizes[_name(rs)]
        unhealthy = size - _status_int(rs, "availableReplicas")
        if size == 0 or unhealthy <= 0:
            continue
        n = min(max_scaled_down - cleaned, unhealthy)
        sizes[_name(rs)] = size - n
        cleaned += n
    # then scale down available old replicas while staying above minAvailable
    available = sum(min(_status_int(rs, "availableReplicas"), sizes[_name(rs)]) for rs in old_rss)
    available += _available(new_rs)
    if available > min_available:
        budget = available - min_available
        for rs in ordered:
            if budget <= 0:
                break
            size = sizes[_name(rs)]
            if size == 0:
                continue
            n = min(size, budget)
            sizes[_name(rs)] = size - n
            budget -= n
    return [s for rs in ordered if (s := _scale_to(rs, sizes[_name(rs)]))]


def recreate_plan(
    d: Obj, new_rs: Obj | None, old_rss: list[Obj], old_pods_running: bool
) -> tuple[list[Scale], bool]:
    """rolloutRecreate: old ReplicaSets to zero first; the new one only once no old pod runs.
    Returns (scales, whether to create the new ReplicaSet)."""
    downs = [s for rs in active(old_rss) if (s := _scale_to(rs, 0))]
    if downs:
        return downs, False
    if old_pods_running:
        return [], False
    if new_rs is None:
        return [], True
    s = _scale_to(new_rs, replicas_of(d))
    return ([s] if s else []), False


def cleanup_plan(d: Obj, old_rss: list[Obj]) -> list[Obj]:
    """Old ReplicaSets beyond revisionHistoryLimit that are fully scaled down, oldest first."""
    limit = _spec(d).get("revisionHistoryLimit")
    if limit is None or int(limit) == MAX_INT32:
        return []
    alive = [rs for rs in old_rss if not objmeta.meta(rs).get("deletionTimestamp")]
    diff = len(alive) - int(limit)
    if diff <= 0:
        return []

    def by_revision(rs: Obj) -> tuple[int, float, str]:
        return (revision_of(rs), *_by_creation_key(rs))

    out = []
    for rs in sorted(alive, key=by_revision)[:diff]:
        generation = int(objmeta.meta(rs).get("generation") or 0)
        if (
            _status_int(rs, "replicas") != 0
            or replicas_of(rs) != 0
            or generation > _status_int(rs, "observedGeneration")
        ):
            continue
        out.append(rs)
    return out


def is_scaling_event(d: Obj, rss: list[Obj | None]) -> bool:
    desired = replicas_of(d)
    for rs in active(rss):
        annotated = _annotation_int(rs, DESIRED_REPLICAS)
        if annotated is not None and annotated != desired:
            return True
    return False


def old_pods_running(
    new_rs: Obj | None, pods_by_rs: dict[str, list[Obj]], old_rss: list[Obj]
) -> bool:
    if status_count(old_rss, "replicas") > 0:
        return True
    new_uid = _uid(new_rs) if new_rs is not None else None
    for uid, pods in pods_by_rs.items():
        if uid == new_uid:
            continue
        for pod in pods:
            if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                return True
    return False


# -- status --------------------------------------------------------------------------------
def has_progress_deadline(d: Obj) -> bool:
    value = _spec(d).get("progressDeadlineSeconds")
    return value is not None and int(value) != MAX_INT32


def get_condition(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    ts = objmeta.format_time(now)
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": ts,
        "lastTransitionTime": ts,
        "reason": reason,
        "message": message,
    }


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def set_condition(status: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: no-op for the same status and reason; keeps the transition
    time while the status is unchanged; the condition moves to the end."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"]:
        if current.get("reason") == cond["reason"]:
            return
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    conds = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]]
    status["conditions"] = [*conds, cond]


def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj, now: datetime) -> Obj:
    available = status_count(all_rss, "availableReplicas")
    total = replica_count(all_rss)
    old = d.get("status") or {}
    status: Obj = {
        "observedGeneration": int(objmeta.meta(d).get("generation") or 0),
        "replicas": status_count(all_rss, "replicas"),
        "updatedReplicas": status_count([new_rs], "replicas"),
        "readyReplicas": status_count(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(0, total - available),
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if available >= replicas_of(d) - max_unavailable(d):
        cond = new_condition(
            "Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now
        )
    else:
        cond = new_condition(
            "Available",
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    set_condition(status, cond)
    return status


def deployment_complete(d: Obj, status: Obj) -> bool:
    desired = replicas_of(d)
    return (
        int(status.get("updatedReplicas") or 0) == desired
        and int(status.get("replicas") or 0) == desired
        and int(status.get("availableReplicas") or 0) == desired
        and int(status.get("observedGeneration") or 0)
        >= int(objmeta.meta(d).get("generation") or 0)
    )


def deployment_progressing(d: Obj, status: Obj) -> bool:
    old = d.get("status") or {}

    def n(s: Obj, f: str) -> int:
        return int(s.get(f) or 0)

    old_old = n(old, "replicas") - n(old, "updatedReplicas")
    new_old = n(status, "replicas") - n(status, "updatedReplicas")
    return (
        n(status, "updatedReplicas") > n(old, "updatedReplicas")
        or new_old < old_old
        or n(status, "readyReplicas") > n(old, "readyReplicas")
        or n(status, "availableReplicas") > n(old, "availableReplicas")
    )


def deployment_timed_out(d: Obj, status: Obj, now: datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = objmeta.parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    deadline = int(_spec(d).get("progressDeadlineSeconds") or 0)
    return since.timestamp() + deadline < now.timestamp()


def rollout_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj, now: datetime) -> Obj:
    """syncRolloutStatus: counts plus the Progressing condition (complete, progressing or
    timed out) and ReplicaFailure promoted from the ReplicaSets."""
    status = calculate_status(all_rss, new_rs, d, now)
    if not has_progress_deadline(d):
        remove_condition(status, "Progressing")
    current = get_condition(d.get("status") or {}, "Progressing")
    complete_before = (
        status["replicas"] == status["updatedReplicas"]
        and current is not None
        and current.get("reason") == NEW_RS_AVAILABLE
    )
    if has_progress_deadline(d) and not complete_before:
        subject = f'ReplicaSet "{_name(new_rs)}"' if new_rs else f'Deployment "{_name(d)}"'
        if deployment_complete(d, status):
            set_condition(
                status,
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE,
                    f"{subject} has successfully progressed.",
                    now,
                ),
            )
        elif deployment_progressing(d, status):
            cond = new_condition(
                "Progressing", "True", REPLICA_SET_UPDATED, f"{subject} is progressing.", now
            )
            if current is not None:
                if current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                remove_condition(status, "Progressing")
            set_condition(status, cond)
        elif deployment_timed_out(d, status, now):
            set_condition(
                status,
                new_condition(
                    "Progressing", "False", TIMED_OUT, f"{subject} has timed out progressing.", now
                ),
            )
    failures = _replica_failures(all_rss, new_rs)
    if failures:
        set_condition(status, failures[0])
    else:
        remove_condition(status, "ReplicaFailure")
    return status


def _replica_failures(all_rss: list[Obj | None], new_rs: Obj | None) -> list[Obj]:
    def convert(rs: Obj | None) -> list[Obj]:
        out = []
        for c in ((rs or {}).get("status") or {}).get("conditions") or []:
            if c.get("type") == "ReplicaFailure":
                out.append(
                    {
                        "type": "ReplicaFailure",
                        "status": c.get("status"),
                        "lastUpdateTime": c.get("lastTransitionTime"),
                        "lastTransitionTime": c.get("lastTransitionTime"),
                        "reason": c.get("reason", ""),
                        "message": c.get("message", ""),
                    }
                )
        return out

    found = convert(new_rs)
    if found:
        return found
    return [c for rs in all_rss for c in convert(rs)]


def progress_requeue_after(d: Obj, status: Obj, now: datetime) -> float | None:
    """requeueStuckDeployment: when to look again for a missed progress deadline."""
    current = get_condition(d.get("status") or {}, "Progressing")
    if not has_progress_deadline(d) or current is None:
        return None
    if deployment_complete(d, status) or current.get("reason") == TIMED_OUT:
        return None
    since = objmeta.parse_time(current.get("lastUpdateTime"))
    if since is None:
        return None
    deadline = int(_spec(d).get("progressDeadlineSeconds") or 0)
    after = since.timestamp() + deadline - now.timestamp()
    return 0.0 if after < 1 else after + 1


def _status_equal(a: Obj, b: Obj) -> bool:
    def norm(s: Obj) -> Obj:
        return {k: v for k, v in s.items() if v not in (0, None, [], {})}

    return norm(a) == norm(b)


def paused_condition(d: Obj, now: datetime) -> Obj | None:
    """checkPausedConditions: the Progressing condition to record, or None if unchanged."""
    if not has_progress_deadline(d):
        return None
    cond = get_condition(d.get("status") or {}, "Progressing")
    if cond is not None and cond.get("reason") == TIMED_OUT:
        return None
    paused_exists = cond is not None and cond.get("reason") == PAUSED
    if _spec(d).get("paused") and not paused_exists:
        return new_condition("Progressing", "Unknown", PAUSED, "Deployment is paused", now)
    if not _spec(d).get("paused") and paused_exists:
        return new_condition("Progressing", "Unknown", RESUMED, "Deployment is resumed", now)
    return None


# -- controller ------------------------------------------------------------------------------
def _rs_namespace(rs: Obj) -> list[str]:
    return [str(objmeta.meta(rs).get("namespace", ""))]


def _pod_controller(pod: Obj) -> list[str]:
    ref = podutil.controller_ref(pod)
    return [str(ref.get("uid", ""))] if ref is not None else []


class DeploymentController(Controller):
    name = "deployment"
    requeue_conflicts = True
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.recorder = component_recorder(ctx, "deployment-controller", self.name)
        self.d_informer = ctx.factory.informer("Deployment")
        self.rs_informer = ctx.factory.informer("ReplicaSet")
        self.pod_informer = ctx.factory.informer("Pod")
        self.rs_informer.add_indexer(_RS_INDEX, _rs_namespace)
        self.pod_informer.add_indexer(_POD_INDEX, _pod_controller)
        self.d_informer.add_handler(self.enqueue, lambda _old, new: self.enqueue(new), self.enqueue)
        self.rs_informer.add_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pod_informer.add_handler(on_delete=self._pod_deleted)

    async def stop(self) -> None:
        await super().stop()
        await close_recorder(self.ctx, self.recorder)

    # -- handlers ------------------------------------------------------------------------
    def _owner(self, obj: Obj) -> Obj | None:
        ref = podutil.controller_ref(obj)
        if ref is None or ref.get("kind") != KIND:
            return None
        d = self.d_informer.get(f"{objmeta.meta(obj).get('namespace')}/{ref.get('name')}")
        if d is None or _uid(d) != ref.get("uid"):
            return None
        return d

    def _matching_deployments(self, rs: Obj) -> list[Obj]:
        ns, labels = objmeta.meta(rs).get("namespace"), objmeta.meta(rs).get("labels")
        return [
            d
            for d in self.d_informer.list()
            if objmeta.meta(d).get("namespace") == ns
            and selector_matches(_spec(d).get("selector"), labels)
        ]

    def _rs_added(self, rs: Obj) -> None:
        d = self._owner(rs)
        if d is not None:
            self.enqueue(d)
        elif podutil.controller_ref(rs) is None:
            for d in self._matching_deployments(rs):
                self.enqueue(d)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if podutil.controller_ref(old) != podutil.controller_ref(new):
            d = self._owner(old)
            if d is not None:
                self.enqueue(d)
        d = self._owner(new)
        if d is not None:
            self.enqueue(d)
        elif podutil.controller_ref(new) is None and (
            objmeta.meta(old).get("labels") != objmeta.meta(new).get("labels")
            or podutil.controller_ref(old) is not None
        ):
            for d in self._matching_deployments(new):
                self.enqueue(d)

    def _rs_deleted(self, rs: Obj) -> None:
        d = self._owner(rs)
        if d is not None:
            self.enqueue(d)

    def _pod_deleted(self, pod: Obj) -> None:
        # only Recreate waits for old pods to be gone
        ref = podutil.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.get(f"{objmeta.meta(pod).get('namespace')}/{ref.get('name')}")
        d = self._owner(rs) if rs is not None else None
        if d is not None and not is_rolling(d):
            self.enqueue(d)

    # -- sync ------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        cached = self.d_informer.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        now = objmeta.now_utc()
        selector = _spec(d).get("selector") or {}
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            await self._selecting_all(d)
            return
        rss = await self._claim_replica_sets(d)
        if objmeta.meta(d).get("deletionTimestamp"):
            await self._sync_status_only(d, rss, now)
            return
        cond = paused_condition(d, now)
        if cond is not None:
            status = copy.deepcopy(d.get("status") or {})
            set_condition(status, cond)
            d = await self._update_status(d, status)
        if _spec(d).get("paused") or is_scaling_event(d, list(rss)):
            await self._sync_scale(d, rss, now)
        elif is_rolling(d):
            await self._rollout_rolling(d, rss, now)
        else:
            await self._rollout_recreate(d, rss, now)

    async def _selecting_all(self, d: Obj) -> None:
        self.recorder.event(
            d,
            "Warning",
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        )
        generation = int(objmeta.meta(d).get("generation") or 0)
        if _status_int(d, "observedGeneration") < generation:
            status = {**(d.get("status") or {}), "observedGeneration": generation}
            await self._update_status(d, status)

    async def _claim_replica_sets(self, d: Obj) -> list[Obj]:
        """ClaimReplicaSets: adopt matching orphans, release owned ones that stopped matching."""
        ns, uid = objmeta.meta(d).get("namespace"), _uid(d)
        selector = _spec(d).get("selector")
        deleting = bool(objmeta.meta(d).get("deletionTimestamp"))
        owned: list[Obj] = []
        for rs in self.rs_informer.by_index(_RS_INDEX, str(ns)):
            ref = podutil.controller_ref(rs)
            matches = selector_matches(selector, objmeta.meta(rs).get("labels"))
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    owned.append(copy.deepcopy(rs))
                elif not objmeta.meta(rs).get("deletionTimestamp"):
                    refs = [
                        r
                        for r in objmeta.meta(rs).get("ownerReferences") or []
                        if r.get("uid") != uid
                    ]
                    await self._patch_owner_refs(rs, refs)
                continue
            if deleting or not matches or objmeta.meta(rs).get("deletionTimestamp"):
                continue
            refs = [
                *(objmeta.meta(rs).get("ownerReferences") or []),
                podutil.make_controller_ref(d, API_VERSION, KIND),
            ]
            adopted = await self._patch_owner_refs(rs, refs)
            if adopted is not None:
                owned.append(adopted)
        return owned

    async def _patch_owner_refs(self, rs: Obj, refs: list[Obj]) -> Obj | None:
        m = objmeta.meta(rs)
        body = {
            "metadata": {
                "ownerReferences": refs or None,
                "resourceVersion": m.get("resourceVersion"),
            }
        }
        try:
            return await self.client.patch("ReplicaSet", m.get("namespace"), m.get("name"), body)
        except ApiException as e:
            if e.status in (404, 409, 422):
                return None
            raise

    async def _sync_status_only(self, d: Obj, rss: list[Obj], now: datetime) -> None:
        new_rs, old_rss, d = await self._new_and_old(d, rss, now, create=False)
        await self._write_status(d, calculate_status([*old_rss, new_rs], new_rs, d, now))

    async def _sync_scale(self, d: Obj, rss: list[Obj], now: datetime) -> None:
        new_rs, old_rss, d = await self._new_and_old(d, rss, now, create=False)
        for step in scale_plan(d, new_rs, old_rss):
            await self._scale(d, step)
        if _spec(d).get("paused"):
            await self._cleanup(d, old_rss)
        await self._write_status(d, calculate_status([*old_rss, new_rs], new_rs, d, now))

    async def _rollout_rolling(self, d: Obj, rss: list[Obj], now: datetime) -> None:
        new_rs, old_rss, d = await self._new_and_old(d, rss, now, create=True)
        assert new_rs is not None
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        steps = rolling_plan(d, new_rs, old_rss)
        for step in steps:
            await self._scale(d, step)
        if not steps and deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, all_rss, new_rs, now)

    async def _rollout_recreate(self, d: Obj, rss: list[Obj], now: datetime) -> None:
        new_rs, old_rss, d = await self._new_and_old(d, rss, now, create=False)
        pods_by_rs: dict[str, list[Obj]] = {}
        for rs in rss:
            pods_by_rs[_uid(rs)] = self.pod_informer.by_index(_POD_INDEX, _uid(rs))
        running = old_pods_running(new_rs, pods_by_rs, old_rss)
        steps, create = recreate_plan(d, new_rs, old_rss, running)
        for step in steps:
            await self._scale(d, step)
        if create:
            new_rs, old_rss, d = await self._create_new_rs(
                d, old_rss, max_revision(old_rss) + 1, now
            )
        elif not steps and new_rs is not None and deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, [*old_rss, new_rs], new_rs, now)

    # -- the new ReplicaSet ------------------------------------------------------------------
    async def _new_and_old(
        self, d: Obj, rss: list[Obj], now: datetime, create: bool
    ) -> tuple[Obj | None, list[Obj], Obj]:
        """getAllReplicaSetsAndSyncRevision; returns the (possibly updated) Deployment too."""
        existing = find_new_rs(d, rss)
        old_rss = find_old_rss(d, rss, existing)
        new_revision = max_revision(old_rss) + 1
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = set_new_rs_annotations(d, rs, new_revision, exists=True)
            min_ready = int(_spec(d).get("minReadySeconds") or 0)
            if changed or int(_spec(rs).get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                rs = await self.client.update("ReplicaSet", rs)
                return rs, old_rss, d
            status = copy.deepcopy(d.get("status") or {})
            needs = self._set_revision(d, _annotations(rs).get(REVISION, ""))
            if has_progress_deadline(d) and get_condition(status, "Progressing") is None:
                msg = f'Found new replica set "{_name(rs)}"'
                set_condition(status, new_condition("Progressing", "True", FOUND_NEW_RS, msg, now))
                needs = True
            if needs:
                d = await self._update_status(d, status)
            return rs, old_rss, d
        if not create:
            return None, old_rss, d
        return await self._create_new_rs(d, old_rss, new_revision, now)

    def _set_revision(self, d: Obj, revision: str) -> bool:
        m = d.setdefault("metadata", {})
        a = m.get("annotations")
        if not isinstance(a, dict):
            a = m["annotations"] = {}
        if a.get(REVISION) == revision:
            return False
        a[REVISION] = revision
        return True

    async def _create_new_rs(
        self, d: Obj, old_rss: list[Obj], revision: int, now: datetime
    ) -> tuple[Obj | None, list[Obj], Obj]:
        collision = (d.get("status") or {}).get("collisionCount")
        rs = new_replica_set(d, collision, revision, 0)
        replicas = new_rs_new_replicas(d, [*old_rss, rs], rs)
        rs["spec"]["replicas"] = replicas
        ns = objmeta.meta(d).get("namespace")
        already = False
        try:
            created = await self.client.create("ReplicaSet", ns, rs)
        except ApiException as e:
            if e.status == 409 and e.reason == "AlreadyExists":
                created = await self._existing_or_collision(d, rs)
                already = True
            elif e.status == 403 and "being terminated" in str(e.message):
                raise
            else:
                msg = f'Failed to create new replica set "{_name(rs)}": {e.message}'
                if has_progress_deadline(d):
                    status = copy.deepcopy(d.get("status") or {})
                    set_condition(
                        status, new_condition("Progressing", "False", FAILED_RS_CREATE, msg, now)
                    )
                    with contextlib.suppress(ApiException):  # the create error is reported
                        await self._update_status(d, status)
                self.recorder.event(d, "Warning", FAILED_RS_CREATE, msg)
                raise
        if not already and replicas > 0:
            self.recorder.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {_name(created)} to {replicas}",
            )
        status = copy.deepcopy(d.get("status") or {})
        needs = self._set_revision(d, str(revision))
        if not already and has_progress_deadline(d):
            msg = f'Created new replica set "{_name(created)}"'
            set_condition(status, new_condition("Progressing", "True", NEW_RS_CREATED, msg, now))
            needs = True
        if needs:
            d = await self._update_status(d, status)
        return created, old_rss, d

    async def _existing_or_collision(self, d: Obj, rs: Obj) -> Obj:
        ns = objmeta.meta(d).get("namespace")
        existing = self.rs_informer.get(f"{ns}/{_name(rs)}")
        if existing is None:
            existing = await self.client.get("ReplicaSet", ns, _name(rs))
        # one the informer keeps out (it cannot be read) is a collision like any other
        ref = None if shape.problem("ReplicaSet", existing) else podutil.controller_ref(existing)
        if (
            ref is not None
            and ref.get("uid") == _uid(d)
            and equal_ignore_hash(
                _spec(d).get("template") or {}, _spec(existing).get("template") or {}
            )
        ):
            return copy.deepcopy(existing)
        status = copy.deepcopy(d.get("status") or {})
        status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
        await self._update_status(d, status)
        raise RuntimeError(f"hash collision for replica set {_name(rs)}; collisionCount raised")

    # -- writes ----------------------------------------------------------------------------
    async def _scale(self, d: Obj, step: Scale) -> None:
        rs = step.rs
        desired = replicas_of(d)
        max_replicas = desired + max_surge(d)
        size_changes = replicas_of(rs) != step.replicas
        if not size_changes and not (
            step.annotate_only_ok and replicas_annotations_need_update(rs, desired, max_replicas)
        ):
            return
        old = replicas_of(rs)
        body = copy.deepcopy(rs)
        body.setdefault("spec", {})["replicas"] = step.replicas
        set_replicas_annotations(body, desired, max_replicas)
        updated = await self.client.update("ReplicaSet", body)
        step.rs.clear()
        step.rs.update(updated)  # later decisions in this sync see the new size
        if size_changes:
            self.recorder.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {step.op} replica set {_name(updated)} to {step.replicas} from {old}",
            )

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        for rs in cleanup_plan(d, old_rss):
            try:
                await self.client.delete("ReplicaSet", objmeta.meta(rs).get("namespace"), _name(rs))
            except ApiException as e:
                if e.status != 404:
                    raise

    async def _sync_rollout_status(
        self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None, now: datetime
    ) -> None:
        status = rollout_status(all_rss, new_rs, d, now)
        if _status_equal(d.get("status") or {}, status):
            after = progress_requeue_after(d, status, now)
            if after is not None:
                self.queue.add_after(object_key(d), max(after, 0.1))
            return
        await self._update_status(d, status)

    async def _write_status(self, d: Obj, status: Obj) -> None:
        if not _status_equal(d.get("status") or {}, status):
            await self._update_status(d, status)

    async def _update_status(self, d: Obj, status: Obj) -> Obj:
        body = copy.deepcopy(d)
        body["status"] = status
        return await self.client.update("Deployment", body, subresource="status")
