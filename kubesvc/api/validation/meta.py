"""ObjectMeta validation plus the apimachinery-level format checks every kind shares.

Mirrors k8s.io/apimachinery/pkg/util/validation (string checks that return messages),
pkg/api/validation/objectmeta.go and pkg/apis/meta/v1/validation (labels, selectors), as of
Kubernetes v1.32. Field paths are plain strings: `spec.ports[0].port`, `data[tls.crt]`.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from kubesvc.api.errors import FieldError, GoLiteral, forbidden, invalid, required, too_long

Obj = dict[str, Any]
Errs = list[FieldError]
NameFn = Callable[[str, bool], list[str]]

IMMUTABLE = "field is immutable"
NEGATIVE = "must be greater than or equal to 0"
NOT_A_STRING = "must be a string"
TOTAL_ANNOTATION_SIZE = 256 * 1024

# ---------------------------------------------------------------------------
# string formats (k8s.io/apimachinery/pkg/util/validation)
# ---------------------------------------------------------------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_WILDCARD_FMT = "\\*\\." + _DNS1123_SUBDOMAIN_FMT
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_PERCENT_FMT = "[0-9]+%"
_HTTP_HEADER_FMT = "[-A-Za-z0-9]+"
_ENV_VAR_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"


def _full(fmt: str) -> re.Pattern[str]:
    return re.compile("^" + fmt + "$")


_DNS1123_LABEL_RE = _full(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = _full(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = _full(_DNS1035_LABEL_FMT)
_WILDCARD_RE = _full(_WILDCARD_FMT)
_QUALIFIED_NAME_RE = _full(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = _full(_LABEL_VALUE_FMT)
_CONFIG_KEY_RE = _full(_CONFIG_KEY_FMT)
_PERCENT_RE = _full(_PERCENT_FMT)
_HTTP_HEADER_RE = _full(_HTTP_HEADER_FMT)
_ENV_VAR_RE = _full(_ENV_VAR_FMT)
_PORT_NAME_CHARSET_RE = re.compile(r"^[-a-z0-9]+$")
_PATH_SEGMENT_BAD = ("/", "%")


def text_check(check: Callable[[str], list[str]]) -> Callable[[Any], list[str]]:
    """A format check that takes any decoded JSON value: a value that is not a string fails
    with NOT_A_STRING. Typed decoding keeps such values out of the API; the checks must
    still answer rather than raise."""

    @functools.wraps(check)
    def checked(value: Any) -> list[str]:
        if not isinstance(value, str):
            return [NOT_A_STRING]
        return check(value)

    return checked


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """RegexError: the double space after each example's comma is upstream's."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


@text_check
def is_dns1123_label(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL_RE.match(value):
        if _DNS1123_SUBDOMAIN_RE.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(
                regex_error(
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric character",
                    _DNS1123_LABEL_FMT,
                    "my-name",
                    "123-abc",
                )
            )
    return errs


@text_check
def is_dns1123_subdomain(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(
            regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character",
                _DNS1123_SUBDOMAIN_FMT,
                "example.com",
            )
        )
    return errs


@text_check
def is_dns1035_label(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(
            regex_error(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character",
                _DNS1035_LABEL_FMT,
                "my-name",
                "abc-123",
            )
        )
    return errs


@text_check
def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _WILDCARD_RE.match(value):
        errs.append(
            regex_error(
                "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
                "subdomain, which must consist of lower case alphanumeric characters, '-' or "
                "'.' and end with an alphanumeric character",
                _WILDCARD_FMT,
                "*.example.com",
            )
        )
    return errs


_QUALIFIED_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character"
)


@text_check
def is_qualified_name(value: str) -> list[str]:
    """Label keys, annotation keys, finalizers: `[prefix/]name`."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QUALIFIED_NAME_RE.match(name):
        errs.append(
            "name part "
            + regex_error(_QUALIFIED_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


@text_check
def is_label_value(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(
            regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character",
                _LABEL_VALUE_FMT,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errs


def _chdir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


@text_check
def is_config_map_key(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY_RE.match(value):
        errs.append(
            regex_error(
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                _CONFIG_KEY_FMT,
                "key.name",
                "KEY_NAME",
                "key-name",
            )
        )
    return errs + _chdir_prefix(value)


@text_check
def is_env_var_name(value: str) -> list[str]:
    errs: list[str] = []
    if not _ENV_VAR_RE.match(value):
        errs.append(
            regex_error(
                "a valid environment variable name must consist of alphabetic characters, "
                "digits, '_', '-', or '.', and must not start with a digit",
                _ENV_VAR_FMT,
                "my.env-name",
                "MY_ENV.NAME",
                "MyEnvName1",
            )
        )
    return errs + _chdir_prefix(value)


def is_valid_port_num(port: Any) -> list[str]:
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return []
    return [inclusive_range_error(1, 65535)]


@text_check
def is_valid_port_name(port: str) -> list[str]:
    errs: list[str] = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET_RE.match(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


@text_check
def is_valid_percent(value: str) -> list[str]:
    if _PERCENT_RE.match(value):
        return []
    return [
        regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'",
            _PERCENT_FMT,
            "1%",
            "93%",
        )
    ]


@text_check
def is_http_header_name(value: str) -> list[str]:
    if _HTTP_HEADER_RE.match(value):
        return []
    return [
        regex_error(
            "a valid HTTP header must consist of alphanumeric characters or '-'",
            _HTTP_HEADER_FMT,
            "X-Header-Name",
        )
    ]


@text_check
def is_path_segment_name(value: str) -> list[str]:
    errs: list[str] = []
    if value in (".", ".."):
        errs.append(f"may not be '{value}'")
    errs.extend(f"may not contain '{bad}'" for bad in _PATH_SEGMENT_BAD if bad in value)
    return errs


# ---------------------------------------------------------------------------
# IPs (Go's net.ParseIP "sloppy" parsing: IPv4 octets may carry leading zeros)
# ---------------------------------------------------------------------------

_SLOPPY_V4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


def parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str) or not value or "%" in value:
        return None
    m = _SLOPPY_V4.match(value)
    if m:
        octets = [int(o) for o in m.groups()]
        if all(o <= 255 for o in octets):
            return ipaddress.IPv4Address(".".join(str(o) for o in octets))
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # Go's net.IP treats ::ffff:a.b.c.d as IPv4
    return ip


def parse_cidr(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    addr, _, bits = value.partition("/")
    ip = parse_ip(addr)
    if ip is None or not bits.isdigit():
        return None
    try:
        return ipaddress.ip_network(f"{ip}/{int(bits)}", strict=False)
    except ValueError:
        return None


def is_ipv6(value: str) -> bool:
    ip = parse_ip(value)
    return isinstance(ip, ipaddress.IPv6Address)


def valid_ip(path: str, value: Any) -> Errs:
    if parse_ip(value) is None:
        return [
            invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
        ]
    return []


def valid_cidr(path: str, value: Any) -> Errs:
    if parse_cidr(value) is None:
        return [
            invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
        ]
    return []


def non_special_ip(path: str, value: str) -> Errs:
    """ValidateNonSpecialIP: endpoints and external IPs may not be node-local addresses."""
    ip = parse_ip(value)
    if ip is None:
        return [invalid(path, value, "must be a valid IP address")]
    errs: Errs = []
    if ip.is_unspecified:
        errs.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        errs.append(
            invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        )
    if _link_local_multicast(ip):
        errs.append(
            invalid(
                path,
                value,
                "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
            )
        )
    return errs


def _link_local_multicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in ipaddress.IPv4Network("224.0.0.0/24")
    packed = ip.packed
    return packed[0] == 0xFF and packed[1] & 0x0F == 0x02


# ---------------------------------------------------------------------------
# Go %#v renderings of composite bad values, as field.Error prints them
# ---------------------------------------------------------------------------


def go_quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def go_string_slice(values: Any, type_name: str = "[]string") -> GoLiteral:
    if values is None:
        return GoLiteral(f"{type_name}(nil)")
    items = ", ".join(go_quote(str(v)) for v in as_list(values))
    return GoLiteral(type_name + "{" + items + "}")


def go_string_map(values: Any) -> GoLiteral:
    if values is None:
        return GoLiteral("map[string]string(nil)")
    values = as_dict(values)
    items = ", ".join(f"{go_quote(k)}:{go_quote(str(values[k]))}" for k in sorted(values))
    return GoLiteral("map[string]string{" + items + "}")


def go_int_or_string(value: Any) -> GoLiteral:
    if isinstance(value, str):
        return GoLiteral(f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{go_quote(value)}}}")
    num = value if isinstance(value, int) else 0
    return GoLiteral(f'intstr.IntOrString{{Type:0, IntVal:{num}, StrVal:""}}')


def go_label_selector(selector: Any) -> GoLiteral:
    selector = as_dict(selector)
    exprs = selector.get("matchExpressions")
    if not isinstance(exprs, list):
        rendered = "[]v1.LabelSelectorRequirement(nil)"
    else:
        items = ", ".join(
            "v1.LabelSelectorRequirement{Key:"
            + go_quote(str(e.get("key", "")))
            + ", Operator:"
            + go_quote(str(e.get("operator", "")))
            + ", Values:"
            + go_string_slice(e.get("values"))
            + "}"
            for e in exprs
            if isinstance(e, Mapping)
        )
        rendered = "[]v1.LabelSelectorRequirement{" + items + "}"
    return GoLiteral(
        "v1.LabelSelector{MatchLabels:"
        + go_string_map(selector.get("matchLabels"))
        + ", MatchExpressions:"
        + rendered
        + "}"
    )


# ---------------------------------------------------------------------------
# small accessors and generic field checks
# ---------------------------------------------------------------------------


def utf8_len(text: str) -> int:
    """Bytes of text in UTF-8; a lone surrogate counts as the U+FFFD Go decodes it to."""
    return len(text.encode("utf-8", "surrogatepass"))


def as_dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def json_key(value: Any) -> Hashable:
    """A hashable stand-in for a decoded JSON value (lists and objects too), for duplicate
    checks."""
    if isinstance(value, tuple):
        return tuple(json_key(v) for v in value)
    if isinstance(value, Hashable):
        return value
    try:
        return ("json", json.dumps(value, sort_keys=True))
    except (TypeError, ValueError, RecursionError):
        return ("id", id(value))


class Seen:
    """The values met so far, of any JSON type, for duplicate checks."""

    def __init__(self) -> None:
        self._keys: set[Hashable] = set()

    def __contains__(self, value: Any) -> bool:
        return json_key(value) in self._keys

    def add(self, value: Any) -> None:
        self._keys.add(json_key(value))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def nonnegative(path: str, value: Any) -> Errs:
    if isinstance(value, int) and value < 0:
        return [invalid(path, value, NEGATIVE)]
    return []


def immutable(path: str, new: Any, old: Any, shown: Any = None) -> Errs:
    if new == old:
        return []
    return [invalid(path, new if shown is None else shown, IMMUTABLE)]


def dns1123_label(path: str, value: str) -> Errs:
    return [invalid(path, value, m) for m in is_dns1123_label(value)]


def dns1123_subdomain(path: str, value: str) -> Errs:
    return [invalid(path, value, m) for m in is_dns1123_subdomain(value)]


def qualified_name(path: str, value: str) -> Errs:
    return [invalid(path, value, m) for m in is_qualified_name(value)]


def validate_labels(labels: Any, path: str) -> Errs:
    """metav1 ValidateLabels: every error is reported on the map path itself."""
    errs: Errs = []
    for key, value in as_dict(labels).items():
        errs.extend(invalid(path, key, m) for m in is_qualified_name(key))
        text = value if isinstance(value, str) else str(value)
        errs.extend(invalid(path, text, m) for m in is_label_value(text))
    return errs


def validate_label_selector(selector: Any, path: str) -> Errs:
    """metav1 ValidateLabelSelector (matchLabels + matchExpressions)."""
    if selector is None:
        return []
    sel = as_dict(selector)
    errs: Errs = []
    for i, expr in enumerate(as_list(sel.get("matchExpressions"))):
        errs.extend(_selector_requirement(as_dict(expr), f"{path}.matchExpressions[{i}]"))
    errs.extend(validate_labels(sel.get("matchLabels"), f"{path}.matchLabels"))
    return errs


def _selector_requirement(req: Obj, path: str) -> Errs:
    errs: Errs = []
    op = req.get("operator", "")
    values = as_list(req.get("values"))
    if op in ("In", "NotIn"):
        if not values:
            errs.append(
                required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'")
            )
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(
                forbidden(
                    f"{path}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
            )
    else:
        errs.append(invalid(f"{path}.operator", op, "not a valid selector operator"))
    key = str(req.get("key", ""))
    errs.extend(invalid(f"{path}.key", key, m) for m in is_qualified_name(key))
    for j, value in enumerate(values):
        errs.extend(invalid(f"{path}.values[{j}]", value, m) for m in is_label_value(str(value)))
    return errs


def selector_matches(selector: Any, labels: Any) -> bool:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels)."""
    selector, labels = as_dict(selector), as_dict(labels)
    for key, value in as_dict(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in as_list(selector.get("matchExpressions")):
        e = as_dict(expr)
        key, op, values = e.get("key"), e.get("operator"), as_list(e.get("values"))
        present = isinstance(key, str) and key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


# ---------------------------------------------------------------------------
# names (apimachinery NameIs* functions; prefix=True is for generateName)
# ---------------------------------------------------------------------------


def _mask_trailing_dash(name: Any) -> Any:
    if isinstance(name, str) and len(name) > 1 and name.endswith("-"):
        return name[:-1] + "a"
    return name


def name_is_dns_subdomain(name: Any, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: Any, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: Any, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


# ---------------------------------------------------------------------------
# ObjectMeta
# ---------------------------------------------------------------------------

_STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}
_BANNED_OWNERS = {("v1", "Event")}


def validate_object_meta(obj: Obj, namespaced: bool, name_fn: NameFn) -> Errs:
    """ValidateObjectMeta (core flavour, which also checks kube finalizer names)."""
    meta = as_dict(obj.get("metadata"))
    path = "metadata"
    errs: Errs = []
    generate = meta.get("generateName") or ""
    if generate:
        errs.extend(invalid(f"{path}.generateName", generate, m) for m in name_fn(generate, True))
    name = meta.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs.extend(invalid(f"{path}.name", name, m) for m in name_fn(name, False))
    errs.extend(_namespace(meta, namespaced, path))
    errs.extend(nonnegative(f"{path}.generation", meta.get("generation")))
    errs.extend(_common_meta(meta, path))
    for finalizer in as_list(meta.get("finalizers")):
        errs.extend(kube_finalizer_name(f"{path}.finalizers", str(finalizer)))
    return errs


def _namespace(meta: Obj, namespaced: bool, path: str) -> Errs:
    ns = meta.get("namespace") or ""
    if not namespaced:
        return [forbidden(f"{path}.namespace", "not allowed on this type")] if ns else []
    if not ns:
        return [required(f"{path}.namespace")]
    return [invalid(f"{path}.namespace", ns, m) for m in name_is_dns_label(ns, False)]


def _common_meta(meta: Obj, path: str) -> Errs:
    errs = validate_labels(meta.get("labels"), f"{path}.labels")
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    errs.extend(_owner_references(as_list(meta.get("ownerReferences")), f"{path}.ownerReferences"))
    errs.extend(_finalizers(as_list(meta.get("finalizers")), f"{path}.finalizers"))
    return errs


def validate_annotations(annotations: Any, path: str) -> Errs:
    errs: Errs = []
    total = 0
    for key, value in as_dict(annotations).items():
        # annotation keys are qualified names, except that case does not matter
        errs.extend(invalid(path, key, m) for m in is_qualified_name(key.lower()))
        total += utf8_len(key) + utf8_len(str(value))
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE))
    return errs


def _owner_references(refs: list[Any], path: str) -> Errs:
    errs: Errs = []
    controller = ""
    for raw in refs:
        ref = as_dict(raw)
        api_version = str(ref.get("apiVersion") or "")
        kind = str(ref.get("kind") or "")
        version = api_version.rsplit("/", 1)[-1]
        if not version:
            errs.append(invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
        if not kind:
            errs.append(invalid(f"{path}.kind", kind, "must not be empty"))
        if not ref.get("name"):
            errs.append(invalid(f"{path}.name", ref.get("name") or "", "must not be empty"))
        if not ref.get("uid"):
            errs.append(invalid(f"{path}.uid", ref.get("uid") or "", "must not be empty"))
        if (api_version, kind) in _BANNED_OWNERS:
            errs.append(
                invalid(
                    path,
                    GoLiteral(json.dumps(ref)),
                    "/v1, Kind=Event is disallowed from being an owner",
                )
            )
        if ref.get("controller") is True:
            current = f"{kind}/{ref.get('name', '')}"
            if controller:
                errs.append(
                    invalid(
                        path,
                        GoLiteral(json.dumps(refs)),
                        "Only one reference can have Controller set to true. "
                        f'Found "true" in references for {controller} and {current}',
                    )
                )
            else:
                controller = current
    return errs


def _finalizers(finalizers: list[Any], path: str) -> Errs:
    errs: Errs = []
    for finalizer in finalizers:
        errs.extend(qualified_name(path, str(finalizer)))
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errs.append(
            invalid(
                path,
                go_string_slice(finalizers),
                "finalizer orphan and foregroundDeletion cannot be both set",
            )
        )
    return errs


def kube_finalizer_name(path: str, value: str) -> Errs:
    if "/" not in value and value not in _STANDARD_FINALIZERS:
        return [
            invalid(
                path, value, "name is neither a standard finalizer name nor is it fully qualified"
            )
        ]
    return []


def validate_object_meta_update(obj: Obj, old: Obj) -> Errs:
    """ValidateObjectMetaUpdate: identity fields are immutable; labels etc. revalidated."""
    new_meta, old_meta = as_dict(obj.get("metadata")), as_dict(old.get("metadata"))
    path = "metadata"
    errs: Errs = []
    if old_meta.get("deletionTimestamp"):
        before = Seen()
        for finalizer in as_list(old_meta.get("finalizers")):
            before.add(finalizer)
        added = sorted({str(f) for f in as_list(new_meta.get("finalizers")) if f not in before})
        if added:
            errs.append(
                forbidden(
                    f"{path}.finalizers",
                    "no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {go_string_slice(added)}",
                )
            )
    # upstream also requires metadata.resourceVersion here, but its store fills it in for
    # unconditional updates before validating, so that error never reaches clients
    new_gen, old_gen = new_meta.get("generation") or 0, old_meta.get("generation") or 0
    if isinstance(new_gen, int) and isinstance(old_gen, int) and new_gen < old_gen:
        errs.append(invalid(f"{path}.generation", new_gen, "must not be decremented"))
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
        new_val, old_val = new_meta.get(key) or "", old_meta.get(key) or ""
        errs.extend(immutable(f"{path}.{key}", new_val, old_val))
    errs.extend(
        immutable(
            f"{path}.deletionGracePeriodSeconds",
            new_meta.get("deletionGracePeriodSeconds"),
            old_meta.get("deletionGracePeriodSeconds"),
        )
    )
    errs.extend(_common_meta(new_meta, path))
    return errs
