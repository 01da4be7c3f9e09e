"""Label and field selectors: parsing and matching, with upstream's error wording."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubesvc.api.errors import ApiError, bad_request
from kubesvc.api.validation.meta import go_quote, is_label_value, is_qualified_name

_TOKEN = re.compile(r"\s*(!=|==|=|!|,|\(|\)|[^\s!=,()]+)")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        value = labels.get(self.key)
        if op in ("=", "in"):
            return value is not None and value in self.values
        # "!=" and "notin" match objects that lack the label, as upstream does
        return value is None or value not in self.values


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or not m.group(1):
            break
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse `a=b,c!=d,e in (x,y),!f,g` into requirements; raise 400 on bad syntax."""
    text = text.strip()
    if not text:
        return []
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def fail(why: str) -> ApiError:
        return bad_request(f"unable to parse requirement: {why}")

    while i < len(toks):
        tok = toks[i]
        if tok == "!":
            if i + 1 >= len(toks):
                raise fail("found '', expected: identifier")
            reqs.append(Requirement(toks[i + 1], "!"))
            i += 2
        else:
            key = tok
            nxt = toks[i + 1] if i + 1 < len(toks) else ","
            if nxt == ",":
                reqs.append(Requirement(key, "exists"))
                i += 1
            elif nxt in ("=", "==", "!="):
                if i + 2 >= len(toks) or toks[i + 2] == ",":
                    reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", ("",)))
                    i += 2
                else:
                    reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (toks[i + 2],)))
                    i += 3
            elif nxt in ("in", "notin"):
                if i + 2 >= len(toks) or toks[i + 2] != "(":
                    raise fail(f"found '{toks[i + 2] if i + 2 < len(toks) else ''}', expected: '('")
                j = i + 3
                values: list[str] = []
                while j < len(toks) and toks[j] != ")":
                    if toks[j] != ",":
                        values.append(toks[j])
                    j += 1
                if j >= len(toks):
                    raise fail("found '', expected: ')'")
                reqs.append(Requirement(key, nxt, tuple(values)))
                i = j + 1
            else:
                raise fail(f"found '{nxt}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(toks):
            if toks[i] != ",":
                raise fail(f"found '{toks[i]}', expected: ','")
            i += 1
    for req in reqs:
        problem = _invalid_requirement(req)
        if problem:
            raise fail(problem)
    return reqs


def _invalid_requirement(req: Requirement) -> str:
    """NewRequirement's checks: a qualified-name key and label-value values (the path is
    upstream's: `key`, `values[i][KEY]`)."""
    errs = (
        [f"key: Invalid value: {go_quote(req.key)}: {'; '.join(m)}"]
        if (m := is_qualified_name(req.key))
        else []
    )
    for i, v in enumerate(req.values):
        if msgs := is_label_value(v):
            errs.append(f"values[{i}][{req.key}]: Invalid value: {go_quote(v)}: {'; '.join(msgs)}")
    if len(errs) > 1:
        return "[" + ", ".join(errs) + "]"
    return errs[0] if errs else ""


def labels_match(reqs: list[Requirement], labels: Any) -> bool:
    """Whether `labels` satisfy every requirement. Labels that are not a map of strings
    (a stored object may have anything there) are read as no labels at all."""
    if labels.__class__ is not dict:
        labels = {}
    elif not all(v.__class__ is str for v in labels.values()):
        labels = {k: v for k, v in labels.items() if v.__class__ is str}
    return all(r.matches(labels) for r in reqs)


# what a selector that cannot be read selects: nothing (no value is in an empty set)
MATCH_NOTHING = [Requirement("", "in", ())]


def selector_from_match_labels(selector: Any) -> list[Requirement]:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as requirements; a selector
    of the wrong shape selects nothing (MATCH_NOTHING)."""
    if not selector:
        return []
    if selector.__class__ is not dict:
        return MATCH_NOTHING
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if match_labels.__class__ is not dict or expressions.__class__ is not list:
        return MATCH_NOTHING
    reqs = []
    for k, v in match_labels.items():
        if v.__class__ is not str:
            return MATCH_NOTHING
        reqs.append(Requirement(k, "=", (v,)))
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in expressions:
        if expr.__class__ is not dict:
            return MATCH_NOTHING
        op, key, values = ops.get(expr.get("operator")), expr.get("key"), expr.get("values") or ()
        if key.__class__ is not str or values.__class__ not in (list, tuple):
            return MATCH_NOTHING
        if op:
            reqs.append(Requirement(key, op, tuple(v for v in values if v.__class__ is str)))
    return reqs


# Field selectors: each kind supports a few paths; every kind supports name and namespace.
_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
SUPPORTED_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    ),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "Secret": ("type",),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "ReplicaSet": ("status.replicas",),
    "Service": ("spec.clusterIP", "spec.type"),
}


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    path: str
    value: str
    negate: bool


def parse_field_selector(kind: str, text: str) -> list[FieldRequirement]:
    text = text.strip()
    if not text:
        return []
    supported = _COMMON_FIELDS + SUPPORTED_FIELDS.get(kind, ())
    reqs: list[FieldRequirement] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^=!]+)(!=|==|=)(.*)", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if path not in supported:
            raise bad_request(f"field label not supported: {path}")
        reqs.append(FieldRequirement(path, value, op == "!="))
    return reqs


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    if path == "source":
        path = "source.component"
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, list):
        return ",".join(str(x.get("ip", x)) if isinstance(x, Mapping) else str(x) for x in cur)
    return str(cur)


def fields_match(reqs: list[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    for r in reqs:
        equal = _field_value(obj, r.path) == r.value
        if equal == r.negate:
            return False
    return True


def make_filter(
    kind: str, label_selector: str, field_selector: str
) -> Callable[[Mapping[str, Any]], bool] | None:
    """A predicate for list/watch, or None when nothing is filtered."""
    lreqs = parse_label_selector(label_selector)
    freqs = parse_field_selector(kind, field_selector)
    if not lreqs and not freqs:
        return None

    def predicate(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata")
        labels = meta.get("labels") if meta.__class__ is dict else None  # type: ignore[union-attr]
        return labels_match(lreqs, labels) and fields_match(freqs, obj)

    return predicate
