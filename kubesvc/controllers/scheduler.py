"""The default scheduler: bind pending pods to nodes through pods/binding.

Filtering follows kube-scheduler's default filter plugins in their order (NodeUnschedulable,
TaintToleration, NodeAffinity, then NodeResourcesFit's pod count); a node that is not Ready
counts as carrying the taint the node lifecycle controller would give it, so a pod is never
bound to a node in the window before that taint lands. Scoring spreads pods evenly: fewest
pods on the node, then fewest pods of the same controller, then the node name.

A pod that fits nowhere gets PodScheduled=False/Unschedulable with upstream's FitError message
and a FailedScheduling event; it is retried when a node is added or changes in a way that
matters to scheduling (after its back-off), and in any case every five minutes, as upstream's
unschedulable queue does.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubesvc.api import objmeta
from kubesvc.api.objmeta import object_key
from kubesvc.client import shape
from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers.base import Context, Controller

log = logging.getLogger("kubesvc.scheduler")

SCHEDULER_NAME = "default-scheduler"

# filter reasons, as upstream's plugins word them
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_TOO_MANY_PODS = "Too many pods"
NO_NODES = "no nodes available to schedule pods"
# reasons preemption could in principle resolve (by evicting lower-priority pods)
RESOLVABLE = frozenset({REASON_TOO_MANY_PODS})

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

INITIAL_BACKOFF = 1.0  # upstream podInitialBackoffSeconds
MAX_BACKOFF = 10.0  # upstream podMaxBackoffSeconds
UNSCHEDULABLE_FLUSH = 300.0  # upstream podMaxInUnschedulablePodsDuration

TERMINAL_PHASES = ("Succeeded", "Failed")


# -- pure helpers --------------------------------------------------------------------------
def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(objmeta.meta(obj).get("name", ""))


def needs_scheduling(pod: Mapping[str, Any]) -> bool:
    """A pod this scheduler should place: unbound, ours, alive, not gated."""
    spec = _spec(pod)
    if spec.get("nodeName"):
        return False
    if (spec.get("schedulerName") or SCHEDULER_NAME) != SCHEDULER_NAME:
        return False
    if objmeta.meta(pod).get("deletionTimestamp"):
        return False
    if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return False
    return not spec.get("schedulingGates")


def is_active(pod: Mapping[str, Any]) -> bool:
    """Pods that occupy a node: everything not yet terminal."""
    return (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES


def controller_uid(pod: Mapping[str, Any]) -> str:
    for ref in objmeta.meta(pod).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid", ""))
    return ""


def ready_status(node: Mapping[str, Any]) -> str | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status", "Unknown"))
    return None


def effective_taints(node: Mapping[str, Any]) -> list[Obj]:
    """The node's taints, plus the one a node that is not Ready would carry."""
    taints = [dict(t) for t in _spec(node).get("taints") or []]
    status = ready_status(node)
    if status == "True":
        return taints
    key = TAINT_UNREACHABLE if status == "Unknown" else TAINT_NOT_READY
    if not any(t.get("key") == key for t in taints):
        taints.append({"key": key, "effect": "NoSchedule"})
    return taints


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """core/v1 Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_taint(pod: Mapping[str, Any], taints: Iterable[Mapping[str, Any]]) -> Obj | None:
    """The first NoSchedule/NoExecute taint no toleration of the pod tolerates."""
    tolerations = _spec(pod).get("tolerations") or []
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return dict(taint)
    return None


def _requirement_matches(req: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    key = req.get("key", "")
    op = req.get("operator", "")
    wanted = [str(v) for v in req.get("values") or []]
    have = values.get(key)
    if op == "In":
        return have is not None and have in wanted
    if op == "NotIn":
        return have is None or have not in wanted
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and have is not None and len(wanted) == 1:
        try:
            a, b = int(have), int(wanted[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def _term_matches(term: Mapping[str, Any], labels: Mapping[str, str], name: str) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches no objects
    if not all(_requirement_matches(r, labels) for r in exprs):
        return False
    fvals = {"metadata.name": name}
    return all(_requirement_matches(r, fvals) for r in fields)


def matches_node_affinity(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """spec.nodeSelector and required node affinity (NodeAffinity's Filter)."""
    labels = objmeta.meta(node).get("labels") or {}
    for k, v in (_spec(pod).get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    affinity = ((_spec(pod).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if affinity is None:
        return True
    terms = affinity.get("nodeSelectorTerms") or []
    return any(_term_matches(t, labels, _name(node)) for t in terms)


def _pods_per_node(pods: Iterable[Mapping[str, Any]]) -> Counter[str]:
    return Counter(
        str(_spec(p).get("nodeName")) for p in pods if _spec(p).get("nodeName") and is_active(p)
    )


def _max_pods(node: Mapping[str, Any]) -> int | None:
    raw = ((node.get("status") or {}).get("allocatable") or {}).get("pods")
    try:
        return int(str(raw)) if raw is not None else None
    except ValueError:
        return None


def node_fit_reason(
    pod: Mapping[str, Any], node: Mapping[str, Any], pods_on_node: int = 0
) -> str | None:
    """Why the pod cannot go to the node (first failing filter), or None if it fits."""
    if _spec(node).get("unschedulable") and not any(
        tolerates(t, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"})
        for t in _spec(pod).get("tolerations") or []
    ):
        return REASON_UNSCHEDULABLE
    taint = untolerated_taint(pod, effective_taints(node))
    if taint is not None:
        return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
    if not matches_node_affinity(pod, node):
        return REASON_AFFINITY
    limit = _max_pods(node)
    if limit is not None and pods_on_node + 1 > limit:
        return REASON_TOO_MANY_PODS
    return None


def filter_nodes(
    pod: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], dict[str, int]]:
    """(nodes the pod fits on, {reason: number of nodes rejected for it})."""
    counts = _pods_per_node(pods)
    feasible: list[Mapping[str, Any]] = []
    reasons: Counter[str] = Counter()
    for node in nodes:
        reason = node_fit_reason(pod, node, counts[_name(node)])
        if reason is None:
            feasible.append(node)
        else:
            reasons[reason] += 1
    return feasible, dict(reasons)


def pick_node(
    pod: Mapping[str, Any],
    feasible: Sequence[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
) -> str | None:
    """Spread: fewest pods on the node, then fewest of the pod's controller, then name."""
    if not feasible:
        return None
    owner = controller_uid(pod)
    total: Counter[str] = Counter()
    same: Counter[str] = Counter()
    for p in pods:
        node = _spec(p).get("nodeName")
        if not node or not is_active(p):
            continue
        total[node] += 1
        if owner and controller_uid(p) == owner:
            same[node] += 1
    best = min(feasible, key=lambda n: (total[_name(n)], same[_name(n)], _name(n)))
    return _name(best)


def _histogram(counts: Mapping[str, int]) -> str:
    # upstream sorts the "N reason" strings themselves
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items() if n))


def unschedulable_message(
    reasons: Mapping[str, int], total: int, preemption_policy: str | None = None
) -> str:
    """kube-scheduler's FitError text, with DefaultPreemption's post-filter verdict."""
    if total == 0:
        return NO_NODES
    msg = f"0/{total} nodes are available:"
    if reasons:
        msg += f" {_histogram(reasons)}."
    if preemption_policy == "Never":
        return msg + " preemption: not eligible due to preemptionPolicy=Never."
    # every pod has the same priority here, so evicting others never helps
    resolvable = sum(n for reason, n in reasons.items() if reason in RESOLVABLE)
    verdict = {
        "No preemption victims found for incoming pod": resolvable,
        "Preemption is not helpful for scheduling": total - resolvable,
    }
    return msg + f" preemption: 0/{total} nodes are available: {_histogram(verdict)}."


def unschedulable_patch(pod: Mapping[str, Any], message: str, now: str) -> Obj | None:
    """Status patch setting PodScheduled=False/Unschedulable, or None if already so."""
    current = next(
        (
            c
            for c in (pod.get("status") or {}).get("conditions") or []
            if c.get("type") == "PodScheduled"
        ),
        None,
    )
    if (
        current is not None
        and current.get("status") == "False"
        and current.get("reason") == "Unschedulable"
        and current.get("message") == message
    ):
        return None
    transition = now
    if current is not None and current.get("status") == "False":
        transition = current.get("lastTransitionTime") or now
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": None,
        "lastTransitionTime": transition,
    }
    return {
        "metadata": {"resourceVersion": objmeta.meta(pod).get("resourceVersion", "")},
        "status": {"conditions": [cond]},
    }


def binding_body(pod: Mapping[str, Any], node: str) -> Obj:
    meta = objmeta.meta(pod)
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
        },
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


def scheduling_relevant_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a node update could make a pod fit where it did not (heartbeats do not)."""
    return (
        objmeta.meta(old).get("labels") != objmeta.meta(new).get("labels")
        or _spec(old).get("taints") != _spec(new).get("taints")
        or bool(_spec(old).get("unschedulable")) != bool(_spec(new).get("unschedulable"))
        or ready_status(old) != ready_status(new)
        or _max_pods(old) != _max_pods(new)
    )


def pod_spec_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """A pod update other than to its status (our own status writes must not requeue it)."""

    def strip(p: Mapping[str, Any]) -> tuple[Any, Any]:
        meta = {
            k: v
            for k, v in objmeta.meta(p).items()
            if k not in ("resourceVersion", "managedFields")
        }
        return meta, p.get("spec")

    return strip(old) != strip(new)


def _pod_ref(pod: Mapping[str, Any]) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": dict(objmeta.meta(pod))}


# -- the controller ------------------------------------------------------------------------
@dataclass
class _Attempts:
    count: int = 0
    last: float = 0.0

    def backoff_left(self, now: float) -> float:
        if self.count == 0:
            return 0.0
        delay = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (self.count - 1))
        return max(0.0, self.last + delay - now)


class Scheduler(Controller):
    name = "scheduler"
    workers = 1  # one pod at a time, as kube-scheduler's scheduling cycle

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.pods = ctx.factory.informer("Pod")
        self.nodes = ctx.factory.informer("Node")
        self.events = EventRecorder(self.client, SCHEDULER_NAME)
        # pods bound but not yet seen bound by the informer: key -> node (upstream's assumed pods)
        self._assumed: dict[str, str] = {}
        self._unschedulable: dict[str, _Attempts] = {}
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.pods.add_reject_handler(self._pod_rejected)
        self.nodes.add_handler(self._node_added, self._node_updated, None)

    # -- handlers (enqueue only) ---------------------------------------------------------
    def _pod_added(self, pod: Obj) -> None:
        if needs_scheduling(pod):
            self.enqueue(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = object_key(new)
        if _spec(new).get("nodeName"):
            self._assumed.pop(key, None)
            self._unschedulable.pop(key, None)
            return
        if needs_scheduling(new) and pod_spec_changed(old, new):
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = object_key(pod)
        self._assumed.pop(key, None)
        self._unschedulable.pop(key, None)
        if _spec(pod).get("nodeName"):
            self._retry_unschedulable()  # a freed slot may fit a pod rejected for pod count

    def _pod_rejected(self, pod: Any, why: str) -> None:
        """A pod the informer keeps out (it cannot be read): never scheduled while so, and
        told why where `kubectl describe` shows it."""
        spec = pod.get("spec") if isinstance(pod, dict) else None
        if isinstance(spec, dict) and (
            spec.get("nodeName") or (spec.get("schedulerName") or SCHEDULER_NAME) != SCHEDULER_NAME
        ):
            return  # bound already, or another scheduler's
        m = objmeta.meta(pod)
        if shape.text(m.get("name")) and shape.text(m.get("namespace")):
            ref = {"apiVersion": "v1", "kind": "Pod", "metadata": dict(m)}
            self.events.event(ref, "Warning", "FailedScheduling", f"the pod cannot be read: {why}")

    def _node_added(self, _node: Obj) -> None:
        self._retry_unschedulable()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if scheduling_relevant_change(old, new):
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        now = time.monotonic()
        for key, attempts in list(self._unschedulable.items()):
            self.queue.add_after(key, attempts.backoff_left(now))

    # -- sync ----------------------------------------------------------------------------
    def _pods_with_assumed(self) -> list[Obj]:
        pods = self.pods.list()
        if not self._assumed:
            return pods
        out = []
        for p in pods:
            node = self._assumed.get(object_key(p))
            if node and not _spec(p).get("nodeName"):
                p = {**p, "spec": {**_spec(p), "nodeName": node}}
            out.append(p)
        return out

    async def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or not needs_scheduling(pod) or key in self._assumed:
            self._unschedulable.pop(key, None)
            return
        nodes = self.nodes.list()
        pods = self._pods_with_assumed()
        feasible, reasons = filter_nodes(pod, nodes, pods)
        node = pick_node(pod, feasible, pods)
        if node is None:
            policy = _spec(pod).get("preemptionPolicy")
            await self._unschedulable_pod(pod, unschedulable_message(reasons, len(nodes), policy))
            return
        await self._bind(pod, node)

    async def _bind(self, pod: Obj, node: str) -> None:
        meta = objmeta.meta(pod)
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        key = object_key(pod)
        try:
            await self.client.request(
                "POST",
                f"/api/v1/namespaces/{ns}/pods/{name}/binding",
                body=binding_body(pod, node),
            )
        except ApiException as e:
            if e.status in (404, 409):
                # deleted, or bound/being deleted meanwhile: the informer will tell us
                log.info("binding skipped", extra={"kv": {"pod": key, "error": e.message}})
                return
            raise
        self._assumed[key] = node
        self._unschedulable.pop(key, None)
        self.events.event(
            _pod_ref(pod), "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}"
        )

    async def _unschedulable_pod(self, pod: Obj, message: str) -> None:
        key = object_key(pod)
        attempts = self._unschedulable.setdefault(key, _Attempts())
        attempts.count += 1
        attempts.last = time.monotonic()
        patch = unschedulable_patch(pod, message, objmeta.now_text())
        if patch is not None:
            meta = objmeta.meta(pod)
            try:
                await self.client.patch(
                    "Pod",
                    meta.get("namespace"),
                    meta.get("name", ""),
                    patch,
                    patch_type="strategic",
                    subresource="status",
                )
            except ApiException as e:
                if e.status == 404:
                    self._unschedulable.pop(key, None)
                    return
                raise  # 409: the pod changed; try again with the fresh copy
        self.events.event(_pod_ref(pod), "Warning", "FailedScheduling", message)
        self.queue.add_after(key, UNSCHEDULABLE_FLUSH)

    async def stop(self) -> None:
        await super().stop()
        await self.events.close()
