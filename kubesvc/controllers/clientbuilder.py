"""Each controller's own credentials, as upstream's kube-controller-manager builds them with
--use-service-account-credentials (SAControllerClientBuilder): the controller-manager
authenticates as itself (system:kube-controller-manager) to read, through the shared
informers, and to make a ServiceAccount per controller in kube-system and ask the
TokenRequest API for its tokens; each controller writes with its own token, so upstream's
bootstrap roles `system:controller:NAME` bound to those accounts are all it may do.

The scheduler, which upstream is a process of its own, writes as `system:kube-scheduler`
(upstream's bootstrap role and binding of that name) with its own kubeconfig.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesvc.api.objmeta import parse_time
from kubesvc.client.kubeconfig import load
from kubesvc.client.rest import ApiClient, ApiException

log = logging.getLogger("kubesvc.controllers")

NAMESPACE = "kube-system"
TOKEN_SECONDS = 3600  # upstream's defaultExpirationSeconds
LEEWAY = 0.2  # renewed with 20 % of its lifetime left (upstream's defaultLeewayPercent)
RETRY = 1.0  # seconds before asking again after a failure

# controller (CONTROLLERS' name) -> its ServiceAccount (namespace, name): upstream's names,
# whose `system:controller:NAME` ClusterRoles and bindings are in the bootstrap policy
ACCOUNTS: dict[str, tuple[str, str]] = {
    "endpoints": (NAMESPACE, "endpoint-controller"),
    "endpointslice": (NAMESPACE, "endpointslice-controller"),
    "endpointslice-mirroring": (NAMESPACE, "endpointslicemirroring-controller"),
    "replicaset": (NAMESPACE, "replicaset-controller"),
    "deployment": (NAMESPACE, "deployment-controller"),
    "nodelifecycle": (NAMESPACE, "node-controller"),
    # upstream: "taint-manager uses existing cluster role from node-controller"
    "taint-eviction-controller": (NAMESPACE, "node-controller"),
    "job": (NAMESPACE, "job-controller"),
    # the Job controller's deletions of finished Jobs past their TTL (upstream a controller
    # of its own)
    "ttl-after-finished": (NAMESPACE, "ttl-after-finished-controller"),
    "daemonset": (NAMESPACE, "daemon-set-controller"),
    "cronjob": (NAMESPACE, "cronjob-controller"),
    "statefulset": (NAMESPACE, "statefulset-controller"),
    "replicationcontroller": (NAMESPACE, "replication-controller"),
    "serviceaccount": (NAMESPACE, "service-account-controller"),
    "root-ca-cert-publisher": (NAMESPACE, "root-ca-cert-publisher"),
    "persistentvolume-binder": (NAMESPACE, "persistent-volume-binder"),
    "resourcequota": (NAMESPACE, "resourcequota-controller"),
    # MetalLB's controller runs as its ServiceAccount `controller` in metallb-system
    "lbipam": ("metallb-system", "controller"),
}
# what writes with an account but is no entry of CONTROLLERS
PARTS = frozenset({"ttl-after-finished"})
SCHEDULER = "scheduler"  # writes with --scheduler-kubeconfig's identity


def token_request(seconds: int = TOKEN_SECONDS) -> dict[str, Any]:
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": seconds},
    }


def renew_at(expires: float, lifetime: float) -> float:
    """When a token that expires at `expires` after `lifetime` seconds is asked for again."""
    return expires - lifetime * LEEWAY


def _expiry(text: Any) -> float | None:
    when = parse_time(text)
    return when.timestamp() if when is not None else None


@dataclass
class _Token:
    value: str = ""
    renew: float = 0.0
    expires: float = 0.0


class AccountToken:
    """A ServiceAccount's token (a TokenSource): the account is made if missing, its token
    asked for on first use and again before it expires. A failure is an ApiException (or a
    connection error) for the request that needed it, retried by the next request."""

    def __init__(
        self,
        root: ApiClient,
        namespace: str,
        name: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root, self.namespace, self.name, self.clock = root, namespace, name, clock
        self._token = _Token()
        self._lock = asyncio.Lock()
        self._failed_at = 0.0
        self._error: Exception | None = None

    async def __call__(self) -> str:
        if self._token.value and self.clock() < self._token.renew:
            return self._token.value
        async with self._lock:
            now = self.clock()
            if self._token.value and now < self._token.renew:
                return self._token.value
            if self._error is not None and now - self._failed_at < RETRY:
                if self._token.value and now < self._token.expires:
                    return self._token.value
                raise self._error
            try:
                await self._fetch()
                self._error = None
            except (ApiException, ValueError, OSError, TimeoutError) as e:
                self._error, self._failed_at = e, now
                log.warning(
                    "no token for the controller's ServiceAccount",
                    extra={"kv": {"account": f"{self.namespace}/{self.name}", "error": str(e)}},
                )
                if self._token.value and now < self._token.expires:
                    return self._token.value  # the current one is still good
                raise
            return self._token.value

    def invalidate(self) -> None:
        self._token = _Token()

    async def _fetch(self) -> None:
        base = f"/api/v1/namespaces/{self.namespace}/serviceaccounts"
        try:
            await self.root.request("GET", f"{base}/{self.name}")
        except ApiException as e:
            if e.status != 404:
                raise
            try:
                await self.root.request(
                    "POST", base, body={"metadata": {"name": self.name}, "kind": "ServiceAccount"}
                )
            except ApiException as e2:
                if e2.status != 409:
                    raise
        answer = await self.root.request("POST", f"{base}/{self.name}/token", body=token_request())
        status = answer.get("status")
        value = status.get("token") if isinstance(status, dict) else None
        expires = _expiry(status.get("expirationTimestamp")) if isinstance(status, dict) else None
        if not isinstance(value, str) or not value or expires is None:
            raise ValueError("the TokenRequest answer has no token")
        self._token = _Token(value, renew_at(expires, TOKEN_SECONDS), expires)


def bindings_needed(controllers: list[str]) -> set[str]:
    """The ClusterRoleBindings (upstream's `system:controller:ACCOUNT`) that let these
    controllers' accounts in kube-system write."""
    wanted = set(controllers) | (PARTS if "job" in controllers else set())
    return {
        f"system:controller:{name}"
        for c, (ns, name) in ACCOUNTS.items()
        if c in wanted and ns == NAMESPACE
    }


async def wait_for_bindings(
    root: ApiClient, controllers: list[str], timeout: float = 30.0, poll: float = 0.05
) -> bool:
    """Until the API server has written the controllers' bootstrap bindings (it writes them
    first after it starts serving): upstream's controller-manager waits for /healthz,
    whose rbac/bootstrap-roles check says the same. False when `timeout` passed first."""
    wanted = bindings_needed(controllers)
    deadline = time.monotonic() + timeout
    while True:
        try:
            body = await root.request(
                "GET", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
            )
            items = body.get("items") if isinstance(body.get("items"), list) else []
            have = {(i.get("metadata") or {}).get("name") for i in items if isinstance(i, dict)}
            if wanted <= have:
                return True
        except (ApiException, OSError, TimeoutError) as e:
            log.debug("listing bindings failed", extra={"kv": {"error": str(e)}})
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)


class ClientBuilder:
    """Clients for controllers: one per ServiceAccount (shared by the controllers that
    share one), the scheduler's from its kubeconfig."""

    def __init__(
        self,
        kubeconfig: str,
        root: ApiClient,
        scheduler_kubeconfig: str | None = None,
        user_agent: str = "kube-controller-manager/v1.32.4 (kubesvc)",
    ) -> None:
        self.kubeconfig, self.root, self.user_agent = kubeconfig, root, user_agent
        self.scheduler_kubeconfig = scheduler_kubeconfig
        self._clients: dict[tuple[str, str], ApiClient] = {}

    def client(self, controller: str) -> ApiClient:
        if controller == SCHEDULER and self.scheduler_kubeconfig:
            key = ("", SCHEDULER)
            if key not in self._clients:
                self._clients[key] = ApiClient.from_kubeconfig(
                    self.scheduler_kubeconfig, user_agent="kube-scheduler/v1.32.4 (kubesvc)"
                )
            return self._clients[key]
        account = ACCOUNTS.get(controller)
        if account is None:
            return self.root  # a controller upstream has no account for: the manager's own
        if account not in self._clients:
            access = load(self.kubeconfig, credentials=False)
            source = AccountToken(self.root, *account)
            agent = f"{self.user_agent}/{account[1]}"
            self._clients[account] = ApiClient(access, agent, token_source=source)
        return self._clients[account]

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
