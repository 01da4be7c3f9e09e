"""The root CA publisher (upstream pkg/controller/certificates/rootcacertpublisher): every
namespace has the ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster's CA, so pods
can verify the API server at kubernetes.default.svc; one deleted or changed is put back."""

from __future__ import annotations

import copy
import logging
from typing import Any

from kubesvc.api import objmeta
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers.base import Context, Controller

log = logging.getLogger("kubesvc.controllers.rootca")

CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


def desired_configmap(root_ca: str, current: Obj | None) -> dict[str, Any] | None:
    """The ConfigMap to write (create when `current` is None, else update), or None when
    `current` already holds the CA and the annotation describing it."""
    data = {"ca.crt": root_ca}
    if current is None:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CONFIGMAP,
                "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
            },
            "data": data,
        }
    annotations = objmeta.meta(current).get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
    if current.get("data") == data and annotations.get(DESCRIPTION_ANNOTATION):
        return None
    want = copy.deepcopy(dict(current))
    want["data"] = data
    want.pop("binaryData", None)
    meta = want.setdefault("metadata", {})
    meta["annotations"] = {**annotations, DESCRIPTION_ANNOTATION: DESCRIPTION}
    return want


class RootCAPublisher(Controller):
    name = "root-ca-cert-publisher"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.root_ca = ctx.root_ca
        self.namespaces = ctx.factory.informer("Namespace")
        self.configmaps = ctx.factory.informer("ConfigMap")
        self.namespaces.add_handler(self._ns, self._ns_updated, lambda _o: None)
        self.configmaps.add_handler(lambda _o: None, lambda _o, n: self._cm(n), self._cm)

    def _ns(self, ns: Obj) -> None:
        self.queue.add(str(objmeta.meta(ns).get("name", "")))

    def _ns_updated(self, _old: Obj, ns: Obj) -> None:
        if (ns.get("status") or {}).get("phase", "Active") == "Active":
            self._ns(ns)

    def _cm(self, cm: Obj) -> None:
        if objmeta.meta(cm).get("name") == CONFIGMAP:
            self.queue.add(str(objmeta.meta(cm).get("namespace", "")))

    async def sync(self, key: str) -> None:
        if not self.root_ca or not key:
            return
        ns = self.namespaces.get(key)
        if ns is None or objmeta.meta(ns).get("deletionTimestamp"):
            return
        current = self.configmaps.get(f"{key}/{CONFIGMAP}")
        want = desired_configmap(self.root_ca, current)
        if want is None:
            return
        try:
            if current is None:
                await self.client.create("ConfigMap", key, want)
            else:
                await self.client.update("ConfigMap", want)
        except ApiException as e:
            # the namespace is gone or terminating (403): nothing to publish into
            if e.status not in (403, 404):
                raise
