"""Static PersistentVolume binding (the part of upstream's pkg/controller/volume/persistentvolume
that needs no storage plugin): a pending claim is bound to the smallest Available volume that
satisfies it (storage class, access modes, volume mode, label selector, capacity); the volume
gets `spec.claimRef` and phase Bound, the claim `spec.volumeName` and phase Bound with the
volume's capacity and access modes. A volume nobody claims is Available; one whose claim is
gone is Released. Claims of a WaitForFirstConsumer class, and claims no volume satisfies, stay
Pending: nothing provisions storage. `match_volume` and `volume_phase` are the pure part.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from kubesvc.api import objmeta
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers.base import Context, Controller
from kubesvc.controllers.replicaset import selector_matches

log = logging.getLogger("kubesvc.controllers.volumebinding")

BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


# -- pure ------------------------------------------------------------------------------------
def quantity(value: Any) -> Decimal | None:
    """A resource.Quantity as a number, None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _QUANTITY.match(value.strip())
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
        return Decimal(number) * _SUFFIX[suffix]
    except (InvalidOperation, KeyError, ValueError):
        return None


def _storage(resources: Any) -> Decimal | None:
    return quantity((resources or {}).get("storage")) if isinstance(resources, dict) else None


def _class_of(obj: Obj) -> str:
    beta = (objmeta.meta(obj).get("annotations") or {}).get(
        "volume.beta.kubernetes.io/storage-class"
    )
    if isinstance(beta, str):
        return beta
    value = (obj.get("spec") or {}).get("storageClassName")
    return value if isinstance(value, str) else ""


def claim_ref(pvc: Obj) -> Obj:
    m = objmeta.meta(pvc)
    return {
        "kind": "PersistentVolumeClaim",
        "namespace": m.get("namespace"),
        "name": m.get("name"),
        "uid": m.get("uid"),
        "apiVersion": "v1",
        "resourceVersion": m.get("resourceVersion"),
    }


def _refers_to(ref: Any, pvc: Obj) -> bool:
    m = objmeta.meta(pvc)
    return (
        isinstance(ref, dict)
        and ref.get("namespace") == m.get("namespace")
        and ref.get("name") == m.get("name")
        and ref.get("uid") in (None, "", m.get("uid"))
    )


def satisfies(pv: Obj, pvc: Obj) -> bool:
    spec, want = pv.get("spec") or {}, pvc.get("spec") or {}
    if objmeta.meta(pv).get("deletionTimestamp"):
        return False
    ref = spec.get("claimRef")
    if ref is not None and not _refers_to(ref, pvc):
        return False
    if _class_of(pv) != _class_of(pvc):
        return False
    if (spec.get("volumeMode") or "Filesystem") != (want.get("volumeMode") or "Filesystem"):
        return False
    modes = set(m for m in spec.get("accessModes") or [] if isinstance(m, str))
    if not {m for m in want.get("accessModes") or [] if isinstance(m, str)} <= modes:
        return False
    selector = want.get("selector")
    if selector is not None and not selector_matches(selector, objmeta.meta(pv).get("labels")):
        return False
    have = _storage(spec.get("capacity"))
    need = _storage((want.get("resources") or {}).get("requests"))
    return have is not None and need is not None and have >= need


def match_volume(pvc: Obj, volumes: list[Obj]) -> Obj | None:
    """The volume a pending claim binds to: one already reserved for it, else the smallest
    Available one that satisfies it (upstream's findBestMatchForClaim)."""
    candidates = [pv for pv in volumes if satisfies(pv, pvc)]
    reserved = [pv for pv in candidates if (pv.get("spec") or {}).get("claimRef") is not None]
    if reserved:
        return reserved[0]
    free = [
        pv
        for pv in candidates
        if (pv.get("status") or {}).get("phase") in (None, "Pending", "Available")
    ]
    free.sort(
        key=lambda pv: (
            _storage((pv.get("spec") or {}).get("capacity")),
            objmeta.meta(pv).get("name"),
        )
    )
    return free[0] if free else None


def volume_phase(pv: Obj, claims: dict[tuple[str, str], Obj]) -> str:
    """Available (unclaimed), Bound (its claim exists) or Released (its claim is gone)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not isinstance(ref, dict):
        return "Available"
    claim = claims.get((str(ref.get("namespace")), str(ref.get("name"))))
    if claim is None or not _refers_to(ref, claim):
        return "Released" if ref.get("uid") else "Available"
    return (
        "Bound"
        if (claim.get("spec") or {}).get("volumeName") == objmeta.meta(pv).get("name")
        else "Available"
    )


# -- controller ------------------------------------------------------------------------------
class VolumeBindingController(Controller):
    name = "persistentvolume-binder"
    requeue_conflicts = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.claims = ctx.factory.informer("PersistentVolumeClaim")
        self.volumes = ctx.factory.informer("PersistentVolume")
        self.classes = ctx.factory.informer("StorageClass")
        self.claims.add_handler(self._all, lambda _o, _n: self._all(_n), self._all)
        self.volumes.add_handler(self._all, lambda _o, _n: self._all(_n), self._all)

    def _all(self, _obj: Obj) -> None:
        self.queue.add("all")  # binding is a matching over every claim and volume

    async def sync(self, key: str) -> None:
        volumes = self.volumes.list()
        bound: set[str] = set()
        claims = {
            (str(objmeta.meta(c).get("namespace")), str(objmeta.meta(c).get("name"))): c
            for c in self.claims.list()
        }
        for pvc in sorted(
            claims.values(), key=lambda c: str(objmeta.meta(c).get("creationTimestamp"))
        ):
            if (pvc.get("status") or {}).get("phase") not in (None, "Pending"):
                continue
            if objmeta.meta(pvc).get("deletionTimestamp") or self._waits_for_consumer(pvc):
                continue
            pv = match_volume(pvc, volumes)
            if pv is not None:
                await self._bind(pv, pvc)
                volumes = [v for v in volumes if v is not pv]
                bound.add(str(objmeta.meta(pv).get("name")))
        for pv in self.volumes.list():
            if objmeta.meta(pv).get("name") in bound:
                continue  # the caches have not seen this pass's writes yet
            phase = volume_phase(pv, claims)
            if (pv.get("status") or {}).get("phase") != phase:
                await self._write_status(
                    "PersistentVolume", pv, {**(pv.get("status") or {}), "phase": phase}
                )

    def _waits_for_consumer(self, pvc: Obj) -> bool:
        sc = self.classes.get(_class_of(pvc)) if _class_of(pvc) else None
        return sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"

    async def _bind(self, pv: Obj, pvc: Obj) -> None:
        pm = objmeta.meta(pv)
        try:
            # updates at the version read, as upstream's PV controller writes (its role,
            # system:controller:persistent-volume-binder, grants update, not patch)
            if (pv.get("spec") or {}).get("claimRef") is None:
                pv = await self.client.update(
                    "PersistentVolume",
                    _with(pv, {BOUND_BY_CONTROLLER: "yes"}, "claimRef", claim_ref(pvc)),
                )
            await self._write_status(
                "PersistentVolume", pv, {**(pv.get("status") or {}), "phase": "Bound"}
            )
            claim = await self.client.update(
                "PersistentVolumeClaim",
                _with(
                    pvc,
                    {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes"},
                    "volumeName",
                    pm.get("name"),
                ),
            )
            spec = pv.get("spec") or {}
            status = {
                **(claim.get("status") or {}),
                "phase": "Bound",
                "accessModes": list(spec.get("accessModes") or []),
                "capacity": dict(spec.get("capacity") or {}),
            }
            await self._write_status("PersistentVolumeClaim", claim, status)
        except ApiException as e:
            if e.status not in (404, 409):
                raise
            self.queue.add_after("all", 1.0)  # raced a change: the next pass sees it

    async def _write_status(self, kind: str, obj: Obj, status: Obj) -> None:
        body = dict(obj)
        body["status"] = status
        try:
            await self.client.update(kind, body, subresource="status")
        except ApiException as e:
            if e.status != 404:
                raise


def _with(obj: Obj, annotations: dict[str, str], field: str, value: Any) -> Obj:
    """`obj` (at the version read) with `annotations` added and spec.`field` set."""
    meta = dict(objmeta.meta(obj))
    current = meta.get("annotations")
    meta["annotations"] = {**(current if isinstance(current, dict) else {}), **annotations}
    spec = obj.get("spec")
    return {
        **obj,
        "metadata": meta,
        "spec": {**(spec if isinstance(spec, dict) else {}), field: value},
    }
