"""PolicyRules read defensively from stored objects, and upstream's rule matching
(pkg/apis/rbac/v1/evaluation_helpers.go and the RBAC authorizer's RuleAllows).

A rule with any field of the wrong type is dropped whole, never in part: dropping one
entry of `resourceNames` could leave an empty list, which means every name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubesvc.auth.request import RequestInfo

ALL = "*"
_FIELDS = ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")


@dataclass(frozen=True, slots=True)
class Rule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    # sets for the checks; the tuples (upstream's order) are what is shown
    _verbs: frozenset[str] = field(init=False, repr=False, compare=False)
    _groups: frozenset[str] = field(init=False, repr=False, compare=False)
    _resources: frozenset[str] = field(init=False, repr=False, compare=False)
    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_verbs", frozenset(self.verbs))
        object.__setattr__(self, "_groups", frozenset(self.api_groups))
        object.__setattr__(self, "_resources", frozenset(self.resources))
        object.__setattr__(self, "_names", frozenset(self.resource_names))

    def allows(self, attrs: RequestInfo) -> bool:
        """RuleAllows: verb, group, resource (`*`, exact, `resource/sub` or `*/sub`) and
        name for resource requests; verb and URL for the others."""
        verbs = self._verbs
        if ALL not in verbs and attrs.verb not in verbs:
            return False
        if not attrs.is_resource_request:
            return url_matches(self.non_resource_urls, attrs.path)
        groups = self._groups
        if ALL not in groups and attrs.api_group not in groups:
            return False
        resources = self._resources
        sub = attrs.subresource
        combined = f"{attrs.resource}/{sub}" if sub else attrs.resource
        if not (ALL in resources or combined in resources or (sub and f"*/{sub}" in resources)):
            return False
        names = self._names
        return not names or attrs.name in names

    def to_object(self) -> dict[str, list[str]]:
        """The rule as the API writes a PolicyRule (empty lists left out)."""
        out: dict[str, list[str]] = {}
        for key, values in zip(
            _FIELDS,
            (
                self.verbs,
                self.api_groups,
                self.resources,
                self.resource_names,
                self.non_resource_urls,
            ),
            strict=True,
        ):
            if values:
                out[key] = list(values)
        return out


def url_matches(rule_urls: tuple[str, ...], path: str) -> bool:
    """NonResourceURLMatches: `*`, the exact path, or a prefix ending in `*`."""
    for url in rule_urls:
        if url in (ALL, path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if value.__class__ is not list:
        return None
    for item in value:
        if item.__class__ is not str:
            return None
    return tuple(value)


def parse_rule(raw: Any) -> Rule | None:
    """A PolicyRule object as a Rule, or None when any field has the wrong type."""
    if raw.__class__ is not dict:
        return None
    fields = [_strings(raw.get(key)) for key in _FIELDS]
    if any(f is None for f in fields):
        return None
    return Rule(*fields)  # type: ignore[arg-type]


def parse_rules(raw: Any) -> tuple[Rule, ...] | None:
    """A role's `rules`: None when it is not a list (the role is unusable); rules of the
    wrong shape are left out."""
    if raw is None:
        return ()
    if raw.__class__ is not list:
        return None
    return tuple(rule for rule in map(parse_rule, raw) if rule is not None)


def rule_key(raw: Any) -> tuple[tuple[str, ...], ...] | None:
    """What makes two PolicyRules equal (absent, null and [] are the same, as
    equality.Semantic has it); None for a rule of the wrong shape."""
    rule = parse_rule(raw)
    if rule is None:
        return None
    return (
        rule.verbs,
        rule.api_groups,
        rule.resources,
        rule.resource_names,
        rule.non_resource_urls,
    )
