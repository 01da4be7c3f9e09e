"""The status the server gives CustomResourceDefinitions (upstream's naming, establishing
and finalizer controllers): acceptedNames, NamesAccepted, Established and Terminating.

Pure: `desired_statuses` takes every stored CRD and returns the status each should have.
Names are checked against the CRDs of the same group that came first (creation time, then
name); a CRD keeps names it was already given.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]


def _names(crd: Obj) -> Obj:
    spec = crd.get("spec") if isinstance(crd.get("spec"), dict) else {}
    names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    out = {k: v for k, v in names.items() if k in ("plural", "singular", "kind", "listKind")}
    if names.get("kind") and not out.get("listKind"):
        out["listKind"] = names["kind"] + "List"
    for k in ("shortNames", "categories"):
        if names.get(k):
            out[k] = list(names[k])
    return out


def _taken(names: Obj) -> tuple[set[str], set[str]]:
    """Resource names (plural, singular, short names) and kinds (kind, listKind) in use."""
    resources = {names.get("plural"), names.get("singular"), *(names.get("shortNames") or [])}
    kinds = {names.get("kind"), names.get("listKind")}
    return {r for r in resources if r}, {k for k in kinds if k}


def _conflict(names: Obj, resources: set[str], kinds: set[str]) -> str:
    for key in ("plural", "singular"):
        if names.get(key) and names[key] in resources:
            return f'"{names[key]}" is already in use'
    for short in names.get("shortNames") or []:
        if short in resources:
            return f'"{short}" is already in use'
    for key in ("kind", "listKind"):
        if names.get(key) and names[key] in kinds:
            return f'"{names[key]}" is already in use'
    return ""


def _condition(status: Obj, type_: str, value: str, reason: str, message: str, now: str) -> None:
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    for c in conds:
        if c.get("type") == type_:
            if c.get("status") != value:
                c["lastTransitionTime"] = now
            c["status"], c["reason"], c["message"] = value, reason, message
            break
    else:
        conds.append(
            {
                "type": type_,
                "status": value,
                "lastTransitionTime": now,
                "reason": reason,
                "message": message,
            }
        )
    status["conditions"] = conds


def _order(crd: Obj) -> tuple[str, str]:
    m = crd.get("metadata") or {}
    return (str(m.get("creationTimestamp") or ""), str(m.get("name") or ""))


def desired_statuses(crds: list[Obj], now: str) -> dict[str, Obj]:
    """CRD name -> the status it should have."""
    used: dict[str, tuple[set[str], set[str]]] = {}
    out: dict[str, Obj] = {}
    ordered = sorted(crds, key=_order)
    # names already accepted are kept by their CRD: reserve them first
    for crd in ordered:
        accepted = (crd.get("status") or {}).get("acceptedNames") or {}
        group = (crd.get("spec") or {}).get("group") or ""
        if accepted.get("plural"):
            res, kinds = _taken(accepted)
            u = used.setdefault(group, (set(), set()))
            u[0].update(res)
            u[1].update(kinds)
    for crd in ordered:
        name = (crd.get("metadata") or {}).get("name") or ""
        status = copy.deepcopy(crd.get("status") or {})
        group = (crd.get("spec") or {}).get("group") or ""
        wanted = _names(crd)
        accepted = status.get("acceptedNames") or {}
        res_used, kinds_used = used.setdefault(group, (set(), set()))
        own_res, own_kinds = _taken(accepted) if accepted.get("plural") else (set(), set())
        problem = _conflict(wanted, res_used - own_res, kinds_used - own_kinds)
        if problem:
            _condition(status, "NamesAccepted", "False", "NameConflict", problem, now)
        else:
            status["acceptedNames"] = wanted
            res, kinds = _taken(wanted)
            res_used.update(res)
            kinds_used.update(kinds)
            _condition(status, "NamesAccepted", "True", "NoConflicts", "no conflicts found", now)
        established = any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if not problem and not established:
            _condition(
                status,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
                now,
            )
        elif problem and not established:
            _condition(
                status, "Established", "False", "NotAccepted", "not all names are accepted", now
            )
        if (crd.get("metadata") or {}).get("deletionTimestamp"):
            _condition(
                status,
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
                now,
            )
        status.setdefault("storedVersions", [])
        out[name] = status
    return out
