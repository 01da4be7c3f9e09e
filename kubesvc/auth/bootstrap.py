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
from kubesvc.auth.rules import Rule, parse_rules, rule_key

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


@cache
def node_rules() -> tuple[Rule, ...]:
    """The `system:node` ClusterRole's rules: what the Node authorizer allows a node beyond
    what it decides itself (upstream's NodeRules)."""
    for role in _load()["clusterRoles"]:
        if role["metadata"]["name"] == "system:node":
            return parse_rules(role["rules"]) or ()
    return ()


def _merged(expected: Any, existing: Any) -> dict[str, Any]:
    """Labels or annotations: the expected ones, with what the object already says winning."""
    out = dict(expected) if expected.__class__ is dict else {}
    if existing.__class__ is dict:
        out.update(existing)
    return out


def reconciled(existing: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any] | None:
    """What upstream's bootstrap reconciliation (pkg/registry/rbac/reconciliation) writes over
    a stored bootstrap object: missing labels, annotations, rules (roles) or subjects
    (bindings) added, nothing removed; a binding whose roleRef differs gets the expected one
    (upstream deletes and recreates it). None: leave it (already right, or annotated
    `autoupdate: "false"`, or not an object)."""
    if existing.__class__ is not dict:
        return None
    meta = existing.get("metadata")
    if meta.__class__ is not dict:
        return None
    annotations = meta.get("annotations")
    if annotations.__class__ is dict and annotations.get(AUTOUPDATE) == "false":
        return None
    want = expected["metadata"]
    out = copy.deepcopy(existing)
    out_meta = out["metadata"]
    out_meta["labels"] = _merged(want.get("labels"), meta.get("labels"))
    out_meta["annotations"] = _merged(want.get("annotations"), annotations)
    if "roleRef" in expected:
        if existing.get("roleRef") != expected["roleRef"]:
            out["roleRef"] = copy.deepcopy(expected["roleRef"])
        _add_missing(out, "subjects", expected.get("subjects") or [], _subject_key)
    else:
        if "aggregationRule" in expected and existing.get("aggregationRule") is None:
            out["aggregationRule"] = copy.deepcopy(expected["aggregationRule"])
        _add_missing(out, "rules", expected.get("rules") or [], rule_key)
    if not out_meta["labels"]:
        out_meta.pop("labels")
    if not out_meta["annotations"]:
        out_meta.pop("annotations")
    return None if out == existing else out


def _subject_key(raw: Any) -> tuple[Any, ...] | None:
    if raw.__class__ is not dict:
        return None
    return (raw.get("kind"), raw.get("apiGroup") or "", raw.get("name"), raw.get("namespace"))


def _add_missing(obj: dict[str, Any], field: str, expected: list[Any], key: Any) -> None:
    """Append the expected entries the object's list lacks (a list of the wrong type is
    replaced: it grants nothing as it is)."""
    current = obj.get(field)
    if current.__class__ is not list:
        current = []
    have = {key(entry) for entry in current}
    added = [copy.deepcopy(e) for e in expected if key(e) not in have]
    if added or field in obj:
        obj[field] = current + added
