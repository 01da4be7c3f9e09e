"""The RBAC objects a cluster starts with: upstream's bootstrap policy (cluster-admin, admin,
edit, view, system:node, system:node-proxier, system:kube-dns, the controllers' roles and the
rest, with their bindings), kept in bootstrap_policy.json as upstream's golden files have
them (tools/gen_bootstrap_policy.py; the file names its sources).

Upstream's API server creates the aggregated roles (admin, edit, view) with no rules and
the clusterrole-aggregation controller fills them in; here they come with their aggregated
rules already (aggregation.settle), which is what that controller would write.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kubesvc.auth.aggregation import settle
from kubesvc.auth.rbac import Policy

DATA = Path(__file__).with_name("bootstrap_policy.json")
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"


@dataclass(frozen=True)
class BootstrapPolicy:
    cluster_roles: list[dict[str, Any]]
    cluster_role_bindings: list[dict[str, Any]]
    roles: list[dict[str, Any]]
    role_bindings: list[dict[str, Any]]

    def objects(self) -> list[dict[str, Any]]:
        """Everything to create, roles before the bindings that refer to them."""
        return [*self.cluster_roles, *self.roles, *self.cluster_role_bindings, *self.role_bindings]

    def policy(self) -> Policy:
        return Policy(
            self.roles, self.cluster_roles, self.role_bindings, self.cluster_role_bindings
        )


@cache
def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text())
    data["clusterRoles"] = settle(data["clusterRoles"])
    return data


def bootstrap_policy() -> BootstrapPolicy:
    """The objects to create at cluster start (fresh copies: the caller may change them)."""
    data = copy.deepcopy(_load())
    return BootstrapPolicy(
        data["clusterRoles"], data["clusterRoleBindings"], data["roles"], data["roleBindings"]
    )
