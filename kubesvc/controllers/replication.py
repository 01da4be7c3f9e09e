"""The ReplicationController controller (upstream pkg/controller/replication): the
ReplicaSet controller's loop, run on ReplicationControllers. Upstream does the same, through
a conversion of each ReplicationController to a ReplicaSet; here the view only turns the
map selector (`spec.selector: {app: x}`) into a label selector and back."""

from __future__ import annotations

import copy

from kubesvc.client.informer import Obj
from kubesvc.controllers.replicaset import ReplicaSetController


def as_replica_set(rc: Obj) -> Obj:
    """A ReplicationController seen as a ReplicaSet: selector {matchLabels: selector}."""
    view = copy.copy(rc)
    spec = dict(rc.get("spec") or {})
    selector = spec.get("selector")
    spec["selector"] = {"matchLabels": dict(selector)} if isinstance(selector, dict) else None
    view["spec"] = spec
    return view


def from_replica_set(view: Obj) -> Obj:
    rc = dict(view)
    spec = dict(view.get("spec") or {})
    selector = spec.get("selector")
    spec["selector"] = (selector or {}).get("matchLabels") if isinstance(selector, dict) else None
    if spec["selector"] is None:
        spec.pop("selector")
    rc["spec"] = spec
    return rc


class ReplicationManager(ReplicaSetController):
    name = "replicationcontroller"
    kind = "ReplicationController"
    api_version = "v1"
    component = "replication-controller"

    def _view(self, obj: Obj) -> Obj:
        return as_replica_set(obj)

    def _unview(self, view: Obj) -> Obj:
        return from_replica_set(view)
