"""The ResourceQuota controller's status half (upstream pkg/controller/resourcequota):
`status.hard` mirrors `spec.hard` and `status.used` counts what the namespace holds, so
`kubectl get/describe quota` show usage. Nothing is enforced: no admission refuses an object
past its quota. Counted: pods (not terminal), services (and their node ports and load
balancers), configmaps, secrets, replicationcontrollers, resourcequotas,
persistentvolumeclaims, `count/<resource>[.<group>]`, the pods' cpu/memory requests and
limits and the claims' requested storage. `usage` is the pure part.
"""

from __future__ import annotations

import logging
import math
from decimal import Decimal

from kubesvc.api import objmeta
from kubesvc.api.kinds import KINDS
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers.base import Context, Controller
from kubesvc.controllers.volumebinding import quantity

log = logging.getLogger("kubesvc.controllers.resourcequota")

# the kinds a quota counts, by informer
COUNTED = (
    "Pod",
    "Service",
    "ConfigMap",
    "Secret",
    "ReplicationController",
    "ResourceQuota",
    "PersistentVolumeClaim",
)
_COUNT_NAMES = {
    "pods": "Pod",
    "services": "Service",
    "configmaps": "ConfigMap",
    "secrets": "Secret",
    "replicationcontrollers": "ReplicationController",
    "resourcequotas": "ResourceQuota",
    "persistentvolumeclaims": "PersistentVolumeClaim",
}
_BY_COUNT_NAME = {
    (f"count/{k.plural}.{k.group}" if k.group else f"count/{k.plural}"): k.kind
    for k in KINDS
    if k.kind in COUNTED
}
_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def format_quantity(resource: str, value: Decimal) -> str:
    """A usage figure as Go's Quantity prints it: cpu in cores or millicores, bytes with
    the largest exact binary suffix."""
    if value == 0:
        return "0"
    if resource.endswith("cpu"):
        if value == value.to_integral_value():
            return str(int(value))
        return f"{math.ceil(value * 1000)}m"
    whole = math.ceil(value)
    for suffix, size in _BINARY:
        if whole % size == 0:
            return f"{whole // size}{suffix}"
    return str(whole)


def _pod_totals(pod: Obj) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for ctr in (pod.get("spec") or {}).get("containers") or []:
        # the informers check the types of what the controllers read, not of resources
        resources = ctr.get("resources") if isinstance(ctr, dict) else None
        if not isinstance(resources, dict):
            continue
        for section, prefix in (("requests", "requests."), ("limits", "limits.")):
            values = resources.get(section)
            if not isinstance(values, dict):
                continue
            for name, raw in values.items():
                amount = quantity(raw)
                if amount is not None and name in ("cpu", "memory", "ephemeral-storage"):
                    totals[prefix + name] = totals.get(prefix + name, Decimal(0)) + amount
    for name in ("cpu", "memory", "ephemeral-storage"):
        if f"requests.{name}" in totals:
            totals[name] = totals[f"requests.{name}"]
    return totals


def usage(hard: Obj, objects: dict[str, list[Obj]]) -> Obj:
    """status.used for the resources `hard` names, from the namespace's objects by kind."""
    pods = [
        p
        for p in objects.get("Pod", [])
        if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]
    sums: dict[str, Decimal] = {}
    for pod in pods:
        for name, amount in _pod_totals(pod).items():
            sums[name] = sums.get(name, Decimal(0)) + amount
    storage = Decimal(0)
    for claim in objects.get("PersistentVolumeClaim", []):
        resources = (claim.get("spec") or {}).get("resources")
        requests = resources.get("requests") if isinstance(resources, dict) else None
        if isinstance(requests, dict):
            storage += quantity(requests.get("storage")) or Decimal(0)
    services = objects.get("Service", [])
    used: Obj = {}
    for resource in hard:
        if resource == "pods":
            used[resource] = str(len(pods))
        elif resource in _COUNT_NAMES:
            used[resource] = str(len(objects.get(_COUNT_NAMES[resource], [])))
        elif resource in _BY_COUNT_NAME:
            used[resource] = str(len(objects.get(_BY_COUNT_NAME[resource], [])))
        elif resource == "services.nodeports":
            used[resource] = str(
                sum(
                    1
                    for s in services
                    for p in (s.get("spec") or {}).get("ports") or []
                    if isinstance(p, dict) and p.get("nodePort")
                )
            )
        elif resource == "services.loadbalancers":
            used[resource] = str(
                sum(1 for s in services if (s.get("spec") or {}).get("type") == "LoadBalancer")
            )
        elif resource == "requests.storage":
            used[resource] = format_quantity(resource, storage)
        elif resource.startswith("count/"):
            continue  # a kind this controller does not watch: not counted
        else:
            used[resource] = format_quantity(resource, sums.get(resource, Decimal(0)))
    return used


class ResourceQuotaController(Controller):
    name = "resourcequota"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.informers = {kind: ctx.factory.informer(kind) for kind in COUNTED}
        self.quotas = self.informers["ResourceQuota"]
        self.quotas.add_handler(self.enqueue, lambda _o, n: self.enqueue(n), lambda _o: None)
        for kind, informer in self.informers.items():
            if kind != "ResourceQuota":
                informer.add_handler(self._changed, lambda _o, n: self._changed(n), self._changed)

    def _changed(self, obj: Obj) -> None:
        ns = objmeta.meta(obj).get("namespace")
        for quota in self.quotas.list():
            if objmeta.meta(quota).get("namespace") == ns:
                self.enqueue(quota)

    async def sync(self, key: str) -> None:
        quota = self.quotas.get(key)
        if quota is None or objmeta.meta(quota).get("deletionTimestamp"):
            return
        ns = objmeta.meta(quota).get("namespace")
        hard = dict((quota.get("spec") or {}).get("hard") or {})
        objects = {
            kind: [o for o in informer.list() if objmeta.meta(o).get("namespace") == ns]
            for kind, informer in self.informers.items()
        }
        status = {"hard": hard, "used": usage(hard, objects)}
        if status == (quota.get("status") or {}) or (not hard and not quota.get("status")):
            return
        body = dict(quota)
        body["status"] = status
        try:
            await self.client.update("ResourceQuota", body, subresource="status")
        except ApiException as e:
            if e.status != 404:
                raise
