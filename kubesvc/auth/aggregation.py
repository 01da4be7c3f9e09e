"""ClusterRole aggregation as upstream's clusterrole-aggregation controller computes it
(pkg/controller/clusterroleaggregation): a ClusterRole with an `aggregationRule` gets, as
its rules, the union of the rules of every other ClusterRole its selectors match, taken
selector by selector, the roles of each in name order, each rule once.

Pure: `aggregate` says what the controller would write now; `settle` repeats that until
nothing changes, as the controller's writes re-trigger it (admin aggregates edit, which
aggregates view). An aggregationRule whose selectors cannot be read leaves its role as it
is, as upstream's sync fails and retries.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from kubesvc.api.selectors import Requirement
from kubesvc.api.validation.meta import is_label_value, is_qualified_name
from kubesvc.auth.rules import rule_key

_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def label_selector(raw: Any) -> list[Requirement] | None:
    """metav1.LabelSelectorAsSelector: the selector's requirements ([] selects every
    object), or None when upstream refuses it."""
    if raw.__class__ is not dict:
        return None
    match_labels = raw.get("matchLabels") or {}
    expressions = raw.get("matchExpressions") or []
    if match_labels.__class__ is not dict or expressions.__class__ is not list:
        return None
    reqs: list[Requirement] = []
    for key, value in match_labels.items():
        if key.__class__ is not str or value.__class__ is not str:
            return None
        if is_qualified_name(key) or is_label_value(value):
            return None
        reqs.append(Requirement(key, "=", (value,)))
    for expr in expressions:
        if expr.__class__ is not dict:
            return None
        key, operator = expr.get("key"), expr.get("operator")
        op = _OPERATORS.get(operator) if operator.__class__ is str else None
        values = expr.get("values") or []
        if key.__class__ is not str or op is None or values.__class__ is not list:
            return None
        if is_qualified_name(key) or any(v.__class__ is not str for v in values):
            return None
        if (op in ("in", "notin")) != bool(values):
            return None  # In/NotIn need values, Exists/DoesNotExist take none
        if any(is_label_value(v) for v in values):
            return None
        reqs.append(Requirement(key, op, tuple(values)))
    return reqs


def _name(role: Any) -> str | None:
    meta = role.get("metadata") if role.__class__ is dict else None
    name = meta.get("name") if meta.__class__ is dict else None
    return name if name.__class__ is str and name else None


def _labels(role: Any) -> dict[str, str] | None:
    labels = role["metadata"].get("labels") or {}
    if labels.__class__ is not dict or any(v.__class__ is not str for v in labels.values()):
        return None
    return labels


def _selectors(role: Any) -> list[list[Requirement]] | None:
    """The role's clusterRoleSelectors, or None when it has no aggregationRule or one
    that cannot be read."""
    rule = role.get("aggregationRule")
    if rule.__class__ is not dict:
        return None
    raw = rule.get("clusterRoleSelectors") or []
    if raw.__class__ is not list:
        return None
    selectors = [label_selector(s) for s in raw]
    if any(s is None for s in selectors):
        return None
    return selectors  # type: ignore[return-value]


def aggregated_rules(role: Any, cluster_roles: Iterable[Any]) -> list[dict[str, Any]] | None:
    """The rules the controller gives `role`, or None when it aggregates nothing."""
    name = _name(role)
    selectors = _selectors(role) if name else None
    if selectors is None:
        return None
    candidates = sorted(
        ((n, r) for r in cluster_roles if (n := _name(r)) and n != name),
        key=lambda item: item[0],
    )
    labelled = [(r, labels) for _, r in candidates if (labels := _labels(r)) is not None]
    rules: list[dict[str, Any]] = []
    seen: set[tuple[tuple[str, ...], ...]] = set()
    for reqs in selectors:
        for other, labels in labelled:
            if not all(req.matches(labels) for req in reqs):
                continue
            own = other.get("rules") or []
            if own.__class__ is not list:
                continue
            for rule in own:
                key = rule_key(rule)
                if key is not None and key not in seen:
                    seen.add(key)
                    rules.append(copy.deepcopy(rule))
    return rules


def _same(a: Any, b: Any) -> bool:
    """Rules equal as equality.Semantic compares them (null and [] alike)."""
    a, b = a or [], b or []
    if a.__class__ is not list or b.__class__ is not list or len(a) != len(b):
        return False
    return all(
        rule_key(x) is not None and rule_key(x) == rule_key(y) for x, y in zip(a, b, strict=True)
    )


def aggregate(cluster_roles: Sequence[Any]) -> dict[str, list[dict[str, Any]]]:
    """name -> new rules, for each aggregating ClusterRole whose rules would change."""
    changes: dict[str, list[dict[str, Any]]] = {}
    for role in cluster_roles:
        rules = aggregated_rules(role, cluster_roles)
        if rules is not None and not _same(rules, role.get("rules")):
            changes[role["metadata"]["name"]] = rules
    return changes


def settle(cluster_roles: Sequence[Any]) -> list[Any]:
    """The ClusterRoles once aggregation has run until nothing changes (copies; the input
    is not changed). Roles are synced one after another, each seeing the ones before it
    already written, as the controller's queue does; rounds are bounded, so roles that
    select each other cannot keep it going."""
    roles = list(cluster_roles)
    for _ in range(len(roles) + 1):
        changed = False
        for i, role in enumerate(roles):
            rules = aggregated_rules(role, roles)
            if rules is not None and not _same(rules, role.get("rules")):
                roles[i] = {**role, "rules": rules}
                changed = True
        if not changed:
            break
    return roles
