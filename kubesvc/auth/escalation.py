"""RBAC's escalation check (pkg/registry/rbac/validation: Covers, CompactRules,
ConfirmNoEscalation), pure: a user may write a Role or ClusterRole, or bind one, only with
rules the user already holds, unless granted `escalate` (roles) or `bind` (bindings).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kubesvc.auth.rules import ALL, Rule

# what an aggregated ClusterRole may come to hold: only who holds everything may write one
FULL_AUTHORITY = (
    Rule(verbs=(ALL,), api_groups=(ALL,), resources=(ALL,)),
    Rule(verbs=(ALL,), non_resource_urls=(ALL,)),
)


def breakdown(rule: Rule) -> list[Rule]:
    """The rule as rules of one group, resource, verb and name each (or one URL and verb)."""
    out = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    out += [
                        Rule((verb,), (group,), (resource,), (name,))
                        for name in rule.resource_names
                    ]
                else:
                    out.append(Rule((verb,), (group,), (resource,)))
    for url in rule.non_resource_urls:
        out += [Rule((verb,), non_resource_urls=(url,)) for verb in rule.verbs]
    return out


def _url_covers(owner: str, sub: str) -> bool:
    return owner == sub or (owner.endswith("*") and sub.startswith(owner.rstrip("*")))


def rule_covers(owner: Rule, sub: Rule) -> bool:
    """Whether `owner` covers `sub`, a rule of at most one verb, resource and name."""

    def has_all(owned: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
        return ALL in owned or set(wanted) <= set(owned)

    if not (
        has_all(owner.verbs, sub.verbs)
        and has_all(owner.api_groups, sub.api_groups)
        and has_all(owner.resources, sub.resources)
    ):
        return False
    if not all(
        any(_url_covers(o, u) for o in owner.non_resource_urls) for u in sub.non_resource_urls
    ):
        return False
    if not sub.resource_names:
        return not owner.resource_names
    return not owner.resource_names or set(sub.resource_names) <= set(owner.resource_names)


def uncovered(owner_rules: Iterable[Rule], servant_rules: Iterable[Rule]) -> list[Rule]:
    """Covers: the parts of `servant_rules` no owner rule covers."""
    owners = list(owner_rules)
    return [
        sub
        for rule in servant_rules
        for sub in breakdown(rule)
        if not any(rule_covers(o, sub) for o in owners)
    ]


def compact(rules: Sequence[Rule]) -> list[Rule]:
    """CompactRules: rules of one group and one resource, nothing else, merged by verbs."""
    out: list[Rule] = []
    simple: dict[tuple[str, str], list[str]] = {}
    for rule in rules:
        if (
            len(rule.api_groups) == 1
            and len(rule.resources) == 1
            and not rule.resource_names
            and not rule.non_resource_urls
        ):
            simple.setdefault((rule.api_groups[0], rule.resources[0]), []).extend(rule.verbs)
        else:
            out.append(rule)
    out += [
        Rule(tuple(verbs), (group,), (resource,)) for (group, resource), verbs in simple.items()
    ]
    return out


def _go_strings(values: Iterable[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(_go_quote(v) for v in values) + "]"


def _go_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def compact_string(rule: Rule) -> str:
    """rbacv1helpers.CompactString: `{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`."""
    parts = []
    for label, values in (
        ("APIGroups", rule.api_groups),
        ("Resources", rule.resources),
        ("NonResourceURLs", rule.non_resource_urls),
        ("ResourceNames", rule.resource_names),
        ("Verbs", rule.verbs),
    ):
        if values:
            parts.append(f"{label}:{_go_strings(values)}")
    return "{" + ", ".join(parts) + "}"


def escalation(
    user: str,
    groups: Iterable[str],
    owner_rules: Iterable[Rule],
    rules: Iterable[Rule],
    errors: str = "",
) -> str | None:
    """ConfirmNoEscalation: why granting `rules` is an escalation for a user holding
    `owner_rules`, or None when it is not."""
    missing = uncovered(owner_rules, rules)
    if not missing:
        return None
    described = sorted({compact_string(r) for r in compact(missing)})
    message = (
        f"user {_go_quote(user)} (groups={_go_strings(groups)}) is attempting to grant RBAC "
        "permissions not currently held:\n" + "\n".join(described)
    )
    if errors:
        message += f"; resolution errors: [{errors}]"
    return message
