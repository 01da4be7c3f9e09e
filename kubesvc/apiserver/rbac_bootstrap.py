"""Upstream's "rbac/bootstrap-roles" post-start hook: create the bootstrap Roles,
ClusterRoles and bindings that are missing and reconcile the stored ones
(kubesvc.auth.bootstrap.reconciled: add what is missing, never remove). It runs after the
server is serving, off `kubesvc up`'s path; admins (system:masters) need none of it, and a
ServiceAccount asking in the first moments is denied until it is done, as upstream's
clients are until the hook has run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubesvc.api.errors import ApiError
from kubesvc.api.kinds import BY_KIND
from kubesvc.apiserver.registry import Registry, WriteOptions
from kubesvc.auth.bootstrap import bootstrap_policy, reconciled
from kubesvc.auth.component_policy import component_objects

log = logging.getLogger("kubesvc.apiserver")


# what kubesvc's own components need from their first request: written before the server
# hands out its kubeconfigs, the rest after it serves. kube-proxy's, the controller-manager's
# and the scheduler's roles and bindings, and MetalLB's (component_policy); nodes need none
# (the Node authorizer's rules are built in). Each controller's (system:controller:*) come
# first after serving: the controller-manager starts its controllers once their bindings
# exist, as upstream's waits for the API server's rbac/bootstrap-roles hook (its /healthz)
_COMPONENT_NAMES = frozenset(
    {"system:node-proxier", "system:kube-controller-manager", "system:kube-scheduler"}
)
CONTROLLER_PREFIX = "system:controller:"


def component_object(name: str) -> bool:
    return name in _COMPONENT_NAMES or name.startswith("metallb-system:")


def _objects() -> list[dict[str, Any]]:
    """Every object, roles before bindings, the controllers' first among each."""
    objs = [*bootstrap_policy().objects(), *component_objects()]
    return sorted(
        objs,
        key=lambda o: (
            o["kind"].endswith("Binding"),
            not o["metadata"]["name"].startswith(CONTROLLER_PREFIX),
        ),
    )


async def ensure_bootstrap_policy(
    registry: Registry, only: Callable[[str], bool] | None = None
) -> int:
    """Create or reconcile every bootstrap object and kubesvc's components' (or those whose
    name `only` accepts); the number written."""
    opts = WriteOptions(manager="kube-apiserver")
    written = 0
    for obj in _objects():
        if only is not None and not only(obj["metadata"]["name"]):
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
