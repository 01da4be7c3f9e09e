"""What a request asks to do, read from its method, path and query as upstream's
RequestInfoFactory reads it (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go): the
attributes an authorizer decides on.

Resource requests look like /api/v1/namespaces/NS/pods/NAME/status or
/apis/GROUP/VERSION/RESOURCE/NAME; every other path (/healthz, /apis, /version, ...) is a
non-resource request whose verb is the lower-cased HTTP method. The function never raises:
anything it cannot read is a non-resource request, or a resource request with empty fields,
as upstream's is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubesvc.api.errors import ApiError
from kubesvc.api.selectors import parse_label_selector

API_PREFIXES = frozenset({"api", "apis"})
GROUPLESS_PREFIXES = frozenset({"api"})
# verbs given as a path segment before the resource (/api/v1/watch/pods): deprecated, still served
SPECIAL_VERBS = frozenset({"proxy", "watch"})
SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
# /api/v1/namespaces/NS/status is the namespace's subresource, not a resource called status
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
VERBS_WITH_SELECTORS = frozenset({"list", "watch", "deletecollection"})

_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """upstream's RequestInfo; also the attributes an authorizer is asked about."""

    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple[str, ...] = ()
    # the raw selectors of a list, watch or deletecollection (AuthorizeWithSelectors)
    field_selector: str = ""
    label_selector: str = ""


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """The RequestInfo of a request. `query` maps each parameter to its first value (an
    aiohttp request's `query` does); `path` is the decoded URL path."""
    verb = method.lower()
    parts = _split_path(path)
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return RequestInfo(False, path, verb)
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in GROUPLESS_PREFIXES:
        if len(parts) < 3:
            return RequestInfo(False, path, verb)
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]

    via_path = False
    if parts[0] in SPECIAL_VERBS:
        if len(parts) < 2:
            # upstream returns an error here and the handler chain answers 500; as a
            # resource request with no resource it is simply denied by any authorizer
            return RequestInfo(True, path, verb, prefix, group, version)
        verb, parts = parts[0], parts[1:]
        via_path = True
    else:
        verb = _METHOD_VERBS.get(method, "")

    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]

    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = ""
    if len(parts) >= 3 and verb not in SPECIAL_VERBS_NO_SUBRESOURCES:
        subresource = parts[2]

    if not name and verb == "get":
        watch, field_selector = _list_options(query)
        verb = "watch" if watch else "list"
        if field_selector is not None:
            wanted = _exact_match(field_selector, "metadata.name")
            if wanted is not None and _is_path_segment_name(wanted):
                name = wanted
    if not name and verb == "delete":
        verb = "deletecollection"

    fsel = lsel = ""
    if not via_path and verb in VERBS_WITH_SELECTORS:
        fsel = _text(query.get("fieldSelector"))
        lsel = _text(query.get("labelSelector"))
    return RequestInfo(
        True,
        path,
        verb,
        prefix,
        group,
        version,
        namespace,
        resource,
        subresource,
        name,
        tuple(parts),
        fsel,
        lsel,
    )


def resource_attributes(
    verb: str,
    resource: str,
    *,
    group: str = "",
    version: str = "",
    namespace: str = "",
    subresource: str = "",
    name: str = "",
) -> RequestInfo:
    """The attributes of a SubjectAccessReview's resourceAttributes."""
    return RequestInfo(
        True,
        "",
        verb,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def non_resource_attributes(verb: str, path: str) -> RequestInfo:
    """The attributes of a SubjectAccessReview's nonResourceAttributes."""
    return RequestInfo(False, path, verb)


def _split_path(path: str) -> list[str]:
    path = path.strip("/")
    return path.split("/") if path else []


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _truthy(value: str) -> bool:
    """apimachinery's Convert_Slice_string_To_bool: only "0" and "false" (any case, by
    Unicode case folding) are false once the parameter is present; even "" is true."""
    return not (value == "0" or value.casefold() == "false")


def _list_options(query: Mapping[str, str]) -> tuple[bool, str | None]:
    """(watch, fieldSelector) as decoding metav1.ListOptions from the query gives them;
    when any parameter fails to decode, upstream keeps only `watch` and no selector."""
    raw_watch = _text(query.get("watch")) if "watch" in query else None
    watch = raw_watch is not None and _truthy(raw_watch)
    ok = True
    for key in ("timeoutSeconds", "limit"):
        value = query.get(key)
        if value is not None and not _is_int64(_text(value)):
            ok = False
    for key in ("watch", "allowWatchBookmarks", "sendInitialEvents"):
        value = query.get(key)
        if value is not None and not isinstance(value, str):
            ok = False
    label_selector = query.get("labelSelector")
    if label_selector is not None:
        try:
            parse_label_selector(_text(label_selector))
        except ApiError:
            ok = False
    field_selector = _text(query.get("fieldSelector")) if "fieldSelector" in query else None
    if field_selector is not None and parse_field_selector(field_selector) is None:
        ok = False
    if not ok:
        # upstream's fallback reads watch with strings.ToLower, not case folding
        return raw_watch is not None and raw_watch.lower() not in ("false", "0"), None
    return watch, field_selector


def _is_int64(text: str) -> bool:
    """Go's strconv.ParseInt(text, 10, 64) succeeds."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    if len(digits) > 20:
        return False
    return _INT64[0] <= int(text) <= _INT64[1]


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not escaped with a backslash (fields.splitTerms)."""
    if not selector:
        return []
    terms: list[str] = []
    start = 0
    escaped = False
    for i, c in enumerate(selector):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """The first operator in the term, `!=` before `==` before `=` at each position."""
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def _unescape(value: str) -> str | None:
    """fields.UnescapeValue; None for an unknown escape or a bare `,` or `=`."""
    out: list[str] = []
    escaped = False
    for c in value:
        if escaped:
            if c not in "\\,=":
                return None
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            return None
        else:
            out.append(c)
    return None if escaped else "".join(out)


def parse_field_selector(selector: str) -> list[tuple[str, str, str]] | None:
    """fields.ParseSelector's terms (field, operator, value) in its order (sorted), or
    None when upstream refuses the selector."""
    terms: list[tuple[str, str, str]] = []
    for part in sorted(_split_terms(selector)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            return None
        field, op, raw = split
        value = _unescape(raw)
        if value is None:
            return None
        terms.append((field, op, value))
    return terms


def _exact_match(selector: str, field: str) -> str | None:
    """Selector.RequiresExactMatch(field): the value a `field=value` term demands."""
    for f, op, value in parse_field_selector(selector) or ():
        if f == field and op != "!=":
            return value
    return None


def _is_path_segment_name(name: str) -> bool:
    """path.IsValidPathSegmentName: usable as one segment of a URL path."""
    return name not in (".", "..") and "/" not in name and "%" not in name
