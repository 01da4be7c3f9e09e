"""The taint eviction controller (upstream's taint-eviction-controller, once the taint
manager of node lifecycle): pods on a node with NoExecute taints they do not tolerate are
deleted; pods that tolerate them for tolerationSeconds are deleted that long after the taint
was added (the least tolerationSeconds of the tolerations in use counts); a toleration
without tolerationSeconds keeps the pod there for good.

A deletion is announced as upstream's is: the pod gets the DisruptionTarget condition (reason
DeletionByTaintManager), a `TaintManagerEviction` Event "Marking for deletion Pod NS/NAME",
and is deleted with its own grace period. A pod whose eviction was pending and whose taints
went away (the node came back) gets "Cancelling deletion of Pod NS/NAME".

Timing differs in one way: upstream counts tolerationSeconds from when its informer saw the
taint, so a restarted controller starts every count again; this one counts from the taint's
timeAdded, which the node lifecycle controller sets, and falls back to when it first saw the
taint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubesvc.api.objmeta import format_time, object_key, parse_time
from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers.base import Context, Controller, split_key
from kubesvc.controllers.scheduler import tolerates

log = logging.getLogger("kubesvc.tainteviction")

NODE_NAME_INDEX = "spec.nodeName"
EVICTION_REASON = "TaintManagerEviction"
DISRUPTION_REASON = "DeletionByTaintManager"
DISRUPTION_MESSAGE = "Taint manager: deleting due to NoExecute taint"


# -- pure functions ------------------------------------------------------------------------
def no_execute_taints(node: Mapping[str, Any] | None) -> list[Obj]:
    spec = (node or {}).get("spec")
    taints = spec.get("taints") if isinstance(spec, Mapping) else None
    if not isinstance(taints, list):
        return []
    return [dict(t) for t in taints if isinstance(t, Mapping) and t.get("effect") == "NoExecute"]


def _tolerations(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = pod.get("spec")
    tols = spec.get("tolerations") if isinstance(spec, Mapping) else None
    return [t for t in tols if isinstance(t, Mapping)] if isinstance(tols, list) else []


@dataclass(frozen=True)
class Verdict:
    """What to do with one pod: evict now, at `at`, or never (`at` None, `now` False)."""

    now: bool
    at: datetime | None = None


KEEP = Verdict(False)


def toleration_time(tolerations: Iterable[Mapping[str, Any]]) -> float | None:
    """upstream getMinTolerationTime over the tolerations in use: the least positive
    tolerationSeconds, 0 if any is <= 0, None (forever) if none has one."""
    least: float | None = None
    for tol in tolerations:
        seconds = tol.get("tolerationSeconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            continue
        if seconds <= 0:
            return 0.0
        least = seconds if least is None else min(least, seconds)
    return least


def verdict(
    pod: Mapping[str, Any], taints: list[Obj], now: datetime, first_seen: datetime | None = None
) -> Verdict:
    """When the pod must leave a node with these NoExecute taints."""
    if not taints:
        return KEEP
    tolerations = _tolerations(pod)
    used: list[Mapping[str, Any]] = []
    for taint in taints:
        match = next((t for t in tolerations if tolerates(t, taint)), None)
        if match is None:
            return Verdict(True)
        used.append(match)
    seconds = toleration_time(used)
    if seconds is None:
        return KEEP
    added = [parse_time(t.get("timeAdded")) for t in taints]
    known = [a for a in added if a is not None]
    start = min(known) if known else (first_seen or now)
    at = start + timedelta(seconds=seconds)
    return Verdict(at <= now, at)


def disruption_patch(pod: Mapping[str, Any], now: datetime) -> Obj:
    """The status patch adding DisruptionTarget=True before the deletion."""
    return {
        "status": {
            "conditions": [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": DISRUPTION_REASON,
                    "message": DISRUPTION_MESSAGE,
                    "lastTransitionTime": format_time(now),
                }
            ]
        },
    }


# -- the controller ------------------------------------------------------------------------
class TaintEvictionController(Controller):
    """Queue keys: a node name (its pods are looked at) or "ns/name" of a pod."""

    name = "taint-eviction-controller"
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.nodes = ctx.factory.informer("Node")
        self.pods = ctx.factory.informer("Pod")
        self.pods.add_indexer(NODE_NAME_INDEX, _node_name_index)
        self.events = EventRecorder(self.client, "taint-eviction-controller")
        self._first_seen: dict[tuple[str, str, str], datetime] = {}  # (node, key, effect)
        self._pending: set[str] = set()  # pods whose deletion is scheduled
        self.nodes.add_handler(self.enqueue, self._node_updated, self.enqueue)
        self.pods.add_handler(self._pod_changed, lambda _o, n: self._pod_changed(n), None)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if no_execute_taints(old) != no_execute_taints(new):
            self.enqueue(new)

    def _pod_changed(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self.enqueue(pod)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        if ns is None:
            self._note_taints(name)
            for pod in self.pods.by_index(NODE_NAME_INDEX, name):
                self.queue.add(object_key(pod))
            return
        await self._sync_pod(key)

    def _note_taints(self, node_name: str) -> None:
        """Remember when each NoExecute taint of the node was first seen (for taints without
        timeAdded), and forget the ones that are gone."""
        node = self.nodes.get(node_name)
        now = datetime.now(UTC)
        current = {
            (node_name, str(t.get("key", "")), str(t.get("effect", "")))
            for t in no_execute_taints(node)
        }
        for k in [k for k in self._first_seen if k[0] == node_name and k not in current]:
            del self._first_seen[k]
        for k in current:
            self._first_seen.setdefault(k, now)

    async def _sync_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            self._pending.discard(key)
            return
        node_name = str((pod.get("spec") or {}).get("nodeName") or "")
        taints = no_execute_taints(self.nodes.get(node_name)) if node_name else []
        now = datetime.now(UTC)
        seen = [
            self._first_seen.get((node_name, str(t.get("key", "")), str(t.get("effect", ""))))
            for t in taints
        ]
        known = [s for s in seen if s is not None]
        v = verdict(pod, taints, now, min(known) if known else None)
        if v.now:
            await self._evict(pod, now)
            self._pending.discard(key)
        elif v.at is not None:
            self._pending.add(key)
            self.queue.add_after(key, (v.at - now).total_seconds() + 0.05)
        elif key in self._pending:
            self._pending.discard(key)
            self.events.event(
                _pod_ref(pod), "Normal", EVICTION_REASON, f"Cancelling deletion of Pod {key}"
            )

    async def _evict(self, pod: Obj, now: datetime) -> None:
        meta = pod.get("metadata") or {}
        ns, name = meta.get("namespace"), str(meta.get("name", ""))
        log.info(
            "evicting", extra={"kv": {"pod": object_key(pod), "node": pod["spec"]["nodeName"]}}
        )
        self.events.event(
            _pod_ref(pod), "Normal", EVICTION_REASON, f"Marking for deletion Pod {ns}/{name}"
        )
        try:
            await self.client.patch(
                "Pod",
                ns,
                name,
                disruption_patch(pod, now),
                patch_type="strategic",
                subresource="status",
            )
            await self.client.delete("Pod", ns, name)
        except ApiException as e:
            if e.status != 404:
                raise

    async def stop(self) -> None:
        await super().stop()
        await self.events.close()


def _pod_ref(pod: Mapping[str, Any]) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": dict(pod.get("metadata") or {})}


def _node_name_index(pod: Obj) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [str(node)] if node else []
