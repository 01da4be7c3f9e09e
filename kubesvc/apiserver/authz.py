"""Authorization in the request path: system:masters may do everything (upstream's
privileged-group authorizer); a node's request is asked of the Node authorizer
(kubesvc.auth.node) over a graph of what each node's pods refer to, kept from a pod watch,
then of RBAC; everyone else is asked of RBAC (kubesvc.auth.rbac) over the four RBAC kinds as
stored, kept current by watching the store. The Policy is rebuilt once after a change, when
next asked, never per request. The same watch drives the clusterrole-aggregation controller
(kubesvc.auth.aggregation computes what it writes)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from aiohttp import web

from kubesvc.api.errors import ApiError
from kubesvc.api.kinds import BY_KIND, Kind
from kubesvc.apiserver.registry import Registry, WriteOptions
from kubesvc.auth import node as node_authz
from kubesvc.auth.aggregation import aggregate
from kubesvc.auth.bootstrap import node_rules
from kubesvc.auth.rbac import Decision, Policy, RulesReview
from kubesvc.auth.request import RequestInfo
from kubesvc.auth.user import SYSTEM_MASTERS, UserInfo, node_name
from kubesvc.store.base import Compacted

# the authenticated (and impersonated) user of a request, set before it is authorized
USER = web.RequestKey("user", UserInfo)

log = logging.getLogger("kubesvc.apiserver")

RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
NODE_RULES_UNKNOWN = "node authorizer does not support user rule resolution"
RETRY = 1.0  # seconds before a broken watch is listed again
SETTLE = 0.2  # seconds of ClusterRole changes gathered into one aggregation pass


class RbacAuthorizer:
    """`--authorization-mode=Node,RBAC`: system:masters first, then the Node authorizer for
    nodes' requests, then RBAC."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in RBAC_KINDS}
        self._policy: Policy | None = None
        self._roles_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.node_graph = node_authz.NodeGraph()  # what each node's pods refer to

    async def start(self) -> None:
        """List the four kinds and the pods now (so the first request sees them), then keep
        watching."""
        revisions = {kind: await self._list(BY_KIND[kind]) for kind in RBAC_KINDS}
        for kind, rev in revisions.items():
            self._tasks.append(asyncio.create_task(self._watch(BY_KIND[kind], rev)))
        pods_rev = await self._list_pods()
        self._tasks.append(asyncio.create_task(self._watch_pods(pods_rev), name="node-graph"))
        self._tasks.append(asyncio.create_task(self._aggregate_loop(), name="rbac-aggregation"))
        self._roles_changed.set()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- deciding ------------------------------------------------------------------------
    def policy(self) -> Policy:
        if self._policy is None:
            o = self._objects
            self._policy = Policy(
                o["Role"].values(),
                o["ClusterRole"].values(),
                o["RoleBinding"].values(),
                o["ClusterRoleBinding"].values(),
            )
        return self._policy

    def authorize(self, user: UserInfo, attrs: RequestInfo) -> Decision:
        if SYSTEM_MASTERS in user.groups:
            return Decision(True)
        node = node_name(user)
        if node is None:
            return self.policy().authorize(user, attrs)
        by_node = node_authz.authorize(node, attrs, self.node_graph, node_rules())
        if by_node.allowed:
            return by_node
        by_rbac = self.policy().authorize(user, attrs)
        if by_rbac.allowed:
            return by_rbac
        # upstream's union of authorizers: each one's reason, in order
        return Decision(False, ", ".join(r for r in (by_node.reason, by_rbac.reason) if r))

    def rules_for(self, user: UserInfo, namespace: str) -> RulesReview:
        review = self.policy().rules_for(user, namespace)
        if node_name(user) is None:
            return review
        # the Node authorizer cannot list what it allows (upstream's RulesFor says so)
        errors = [e for e in (review.evaluation_error, NODE_RULES_UNKNOWN) if e]
        return replace(review, incomplete=True, evaluation_error=", ".join(errors))

    # -- keeping current -----------------------------------------------------------------
    async def _list(self, kind: Kind) -> int:
        items, rev, _ = await self.registry.list(kind, None)
        self._objects[kind.kind] = {_key(c.obj): c.obj for c in items}
        self._changed(kind)
        return rev

    def _changed(self, kind: Kind) -> None:
        self._policy = None
        if kind.kind == "ClusterRole":
            self._roles_changed.set()

    async def _watch(self, kind: Kind, rev: int | None) -> None:
        while True:
            try:
                if rev is None:
                    rev = await self._list(kind)
                events = await self.registry.watch(kind, None, rev, None)
                async for type_, cached in events:
                    objects = self._objects[kind.kind]
                    if type_ == "DELETED":
                        objects.pop(_key(cached.obj), None)
                    else:
                        objects[_key(cached.obj)] = cached.obj
                    rev = cached.mod_revision
                    self._changed(kind)
            except asyncio.CancelledError:
                raise
            except (Compacted, ApiError):
                pass
            except Exception:
                log.exception("rbac watch", extra={"kv": {"kind": kind.kind}})
            await asyncio.sleep(RETRY)
            rev = None

    async def _list_pods(self) -> int:
        items, rev, _ = await self.registry.list(BY_KIND["Pod"], None)
        self.node_graph.replace(c.obj for c in items)
        return rev

    async def _watch_pods(self, rev: int | None) -> None:
        """Keep the Node authorizer's graph as pods are bound, changed and deleted."""
        kind = BY_KIND["Pod"]
        while True:
            try:
                if rev is None:
                    rev = await self._list_pods()
                events = await self.registry.watch(kind, None, rev, None)
                async for type_, cached in events:
                    if type_ == "DELETED":
                        self.node_graph.delete_pod(cached.obj)
                    else:
                        self.node_graph.set_pod(cached.obj)
                    rev = cached.mod_revision
            except asyncio.CancelledError:
                raise
            except (Compacted, ApiError):
                pass
            except Exception:
                log.exception("node graph watch")
            await asyncio.sleep(RETRY)
            rev = None

    async def _aggregate_loop(self) -> None:
        """The clusterrole-aggregation controller: after ClusterRoles change, write each
        aggregating role's rules (a write that fails is tried again after the next change
        or RETRY)."""
        kind = BY_KIND["ClusterRole"]
        opts = WriteOptions(manager="clusterrole-aggregation-controller")
        while True:
            await self._roles_changed.wait()
            # a burst of writes (the bootstrap policy's 70 ClusterRoles) makes one pass
            await asyncio.sleep(SETTLE)
            self._roles_changed.clear()
            roles = list(self._objects["ClusterRole"].values())
            for name, rules in aggregate(roles).items():
                try:
                    current = await self.registry.get(kind, None, name)
                    await self.registry.update(kind, None, name, {**current, "rules": rules}, opts)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning("aggregation", extra={"kv": {"role": name, "error": str(e)}})
                    self._roles_changed.set()
                    await asyncio.sleep(RETRY)


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
