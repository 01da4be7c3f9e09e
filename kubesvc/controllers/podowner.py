"""What the controllers that own pods through a template share (Job, DaemonSet,
StatefulSet): their own informer and the pods' one, pods indexed by the uid of the object
that controls them, pod events turned into a sync of that owner (with creation
expectations), and the check that a stored owner can be run at all."""

from __future__ import annotations

from typing import ClassVar

from kubesvc.api import objmeta
from kubesvc.api.objmeta import object_key
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers import podutil
from kubesvc.controllers.base import Context, Controller
from kubesvc.controllers.replicaset import (
    Expectations,
    close_recorder,
    component_recorder,
    selector_matches,
)


def template_problem(obj: Obj, kind: str) -> str | None:
    """Why a stored owner cannot be run (the API requires what is checked here, but a stored
    object can lack it): without a selector matching its template it would own nothing and
    create pods forever; without a template it has nothing to create."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    if not selector_matches(spec.get("selector"), (template.get("metadata") or {}).get("labels")):
        return f"spec.selector: a {kind} needs a non-empty selector matching its pod template"
    if not (template.get("spec") or {}).get("containers"):
        return f"spec.template.spec.containers: a {kind} needs a pod template"
    return None


class PodOwnerController(Controller):
    """A controller of `kind` objects that create pods; `self.owners` and `self.pods` are
    the informers, `owned_pods` what an owner controls."""

    kind: ClassVar[str]
    requeue_conflicts = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.recorder = component_recorder(ctx, f"{self.name}-controller", self.name)
        self.expectations = Expectations()
        self.owners = ctx.factory.informer(self.kind)
        self.pods = ctx.factory.informer("Pod")
        self._index = f"{self.name}:controller"
        self.pods.add_indexer(self._index, self._owner_of)
        self.owners.add_handler(self.enqueue, lambda _o, n: self.enqueue(n), self._owner_deleted)
        self.pods.add_handler(
            lambda p: self._pod_event(p, created=True),
            lambda _o, n: self._pod_event(n),
            self._pod_event,
        )

    async def stop(self) -> None:
        await super().stop()
        await close_recorder(self.ctx, self.recorder)

    def owned_pods(self, owner: Obj) -> list[Obj]:
        return self.pods.by_index(self._index, str(objmeta.meta(owner).get("uid", "")))

    async def delete_pod(self, owner: Obj, pod: Obj) -> None:
        """Delete one of `owner`'s pods; one already gone is not an error."""
        pm = objmeta.meta(pod)
        try:
            await self.client.delete("Pod", pm.get("namespace"), pm.get("name"))
        except ApiException as e:
            if e.status != 404:
                raise
            return
        self.recorder.event(owner, "Normal", "SuccessfulDelete", f"Deleted pod: {pm.get('name')}")

    def _owner_of(self, pod: Obj) -> list[str]:
        ref = podutil.controller_ref(pod)
        if ref is not None and ref.get("kind") == self.kind:
            return [str(ref.get("uid", ""))]
        return []

    def _owner_deleted(self, owner: Obj) -> None:
        self.expectations.delete(object_key(owner))

    def _pod_event(self, pod: Obj, created: bool = False) -> None:
        ref = podutil.controller_ref(pod)
        if ref is None or ref.get("kind") != self.kind:
            return
        key = f"{objmeta.meta(pod).get('namespace')}/{ref.get('name')}"
        owner = self.owners.get(key)
        if owner is not None and objmeta.meta(owner).get("uid") == ref.get("uid"):
            if created:
                self.expectations.creation_observed(key)
            self.queue.add(key)
