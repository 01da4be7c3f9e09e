"""Upstream's "rbac/bootstrap-roles" post-start hook: create the bootstrap Roles,
ClusterRoles and bindings that are missing and reconcile the stored ones
(kubesvc.auth.bootstrap.reconciled: add what is missing, never remove). It runs after the
server is serving, off `kubesvc up`'s path; admins (system:masters) need none of it, and a
ServiceAccount asking in the first moments is denied until it is done, as upstream's
clients are until the hook has run."""

from __future__ import annotations

import logging
from typing import Any

from kubesvc.api.errors import ApiError
from kubesvc.api.kinds import BY_KIND
from kubesvc.apiserver.registry import Registry, WriteOptions
from kubesvc.auth.bootstrap import bootstrap_policy, reconciled

log = logging.getLogger("kubesvc.apiserver")


# what kubesvc's own components need from their first request: written before the server
# hands out its kubeconfigs, the rest after it serves
COMPONENT_OBJECTS = frozenset({"system:node-proxier"})  # kube-proxy's role and binding


async def ensure_bootstrap_policy(registry: Registry, only: frozenset[str] | None = None) -> int:
    """Create or reconcile every bootstrap object (or those named in `only`); the number
    written."""
    opts = WriteOptions(manager="kube-apiserver")
    written = 0
    for obj in bootstrap_policy().objects():
        if only is not None and obj["metadata"]["name"] not in only:
            continue
        kind = BY_KIND[obj["kind"]]
        meta = obj["metadata"]
        namespace = meta.get("namespace") if kind.namespaced else None
        try:
            current = await registry.try_get(kind, namespace, meta["name"])
            if current is None:
                await registry.create(kind, namespace, obj, opts)
                written += 1
                continue
            update = reconciled(current, obj)
            if update is not None:
                await registry.update(kind, namespace, meta["name"], update, opts)
                written += 1
        except ApiError as e:  # one object refused (a namespace going away) stops no other
            log.warning("bootstrap policy", extra={"kv": _kv(obj, e)})
    return written


def _kv(obj: dict[str, Any], e: ApiError) -> dict[str, Any]:
    return {"kind": obj["kind"], "name": obj["metadata"]["name"], "error": str(e)}
