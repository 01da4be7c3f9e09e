"""The ServiceAccounts controller (upstream pkg/controller/serviceaccount): every active
namespace has a ServiceAccount named `default`; one deleted comes back."""

from __future__ import annotations

import logging

from kubesvc.api import objmeta
from kubesvc.client.informer import Obj
from kubesvc.client.rest import ApiException
from kubesvc.controllers.base import Context, Controller

log = logging.getLogger("kubesvc.controllers.serviceaccount")

DEFAULT_ACCOUNT = "default"


def needs_default_account(namespace: Obj | None, accounts: list[str]) -> bool:
    """Whether `namespace` (None: gone) should get its `default` ServiceAccount now."""
    if namespace is None or objmeta.meta(namespace).get("deletionTimestamp"):
        return False
    if (namespace.get("status") or {}).get("phase") == "Terminating":
        return False
    return DEFAULT_ACCOUNT not in accounts


class ServiceAccountsController(Controller):
    name = "serviceaccount"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.namespaces = ctx.factory.informer("Namespace")
        self.accounts = ctx.factory.informer("ServiceAccount")
        self.namespaces.add_handler(self._ns, lambda _o, n: self._ns(n), lambda _o: None)
        self.accounts.add_handler(lambda _o: None, lambda _o, _n: None, self._account_deleted)

    def _ns(self, ns: Obj) -> None:
        self.queue.add(str(objmeta.meta(ns).get("name", "")))

    def _account_deleted(self, sa: Obj) -> None:
        if objmeta.meta(sa).get("name") == DEFAULT_ACCOUNT:
            self.queue.add(str(objmeta.meta(sa).get("namespace", "")))

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        names = [
            str(objmeta.meta(sa).get("name"))
            for sa in self.accounts.list()
            if objmeta.meta(sa).get("namespace") == key
        ]
        if not needs_default_account(ns, names):
            return
        body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_ACCOUNT}}
        try:
            await self.client.create("ServiceAccount", key, body)
        except ApiException as e:
            # it exists already, or the namespace is going away
            if e.status not in (403, 404, 409):
                raise
