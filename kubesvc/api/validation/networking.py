"""networking.k8s.io/v1 Ingress and IngressClass validation (pkg/apis/networking/validation)."""

from __future__ import annotations

import re
from typing import Any

from kubesvc.api.errors import GoLiteral, forbidden, invalid, not_supported, required, too_long
from kubesvc.api.validation.meta import (
    NOT_A_STRING,
    Errs,
    Obj,
    as_dict,
    as_list,
    immutable,
    is_dns1123_subdomain,
    is_path_segment_name,
    is_valid_port_name,
    is_valid_port_num,
    is_wildcard_dns1123_subdomain,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
    parse_ip,
    valid_ip,
    validate_object_meta,
    validate_object_meta_update,
)

PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")
_MAX_CONTROLLER_LEN = 250


def validate_ingress(obj: Obj) -> Errs:
    errs = _ingress(obj)
    annotations = as_dict(as_dict(obj.get("metadata")).get("annotations"))
    class_name = as_dict(obj.get("spec")).get("ingressClassName")
    annotation = annotations.get(INGRESS_CLASS_ANNOTATION)
    if annotation is not None and class_name is not None and annotation != class_name:
        errs.append(
            invalid(
                f"annotations.{INGRESS_CLASS_ANNOTATION}",
                annotation,
                "must match `ingressClassName` when both are specified",
            )
        )
    return errs


def validate_ingress_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + _ingress(obj)


def _ingress(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    rules = spec.get("rules")
    if not as_list(rules) and spec.get("defaultBackend") is None:
        shown = GoLiteral(
            "[]networking.IngressRule(nil)" if rules is None else "[]networking.IngressRule{}"
        )
        errs.append(invalid("spec", shown, "either `defaultBackend` or `rules` must be specified"))
    name_fn = name_is_dns1035_label
    if spec.get("defaultBackend") is not None:
        errs.extend(_backend(as_dict(spec["defaultBackend"]), "spec.defaultBackend", name_fn))
    for i, rule in enumerate(as_list(rules)):
        errs.extend(_rule(as_dict(rule), f"spec.rules[{i}]", name_fn))
    for i, tls in enumerate(as_list(spec.get("tls"))):
        errs.extend(_tls(as_dict(tls), f"spec.tls[{i}]"))
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        errs.extend(
            invalid("spec.ingressClassName", class_name, m)
            for m in name_is_dns_subdomain(str(class_name), False)
        )
    return errs


def _host(path: str, host: Any) -> Errs:
    if not isinstance(host, str):
        return [invalid(path, host, NOT_A_STRING)]
    check = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
    return [invalid(path, host, m) for m in check(host)]


def _rule(rule: Obj, path: str, name_fn: Any) -> Errs:
    errs: Errs = []
    host = rule.get("host") or ""
    if host:
        if parse_ip(host) is not None:
            errs.append(invalid(f"{path}.host", host, "must be a DNS name, not an IP address"))
        errs.extend(_host(f"{path}.host", host))
    http = rule.get("http")
    if http is None:
        return errs
    paths = as_list(as_dict(http).get("paths"))
    if not paths:
        errs.append(required(f"{path}.http.paths"))
    for i, item in enumerate(paths):
        errs.extend(_http_path(as_dict(item), f"{path}.http.paths[{i}]", name_fn))
    return errs


def _http_path(item: Obj, path: str, name_fn: Any) -> Errs:
    path_type = item.get("pathType")
    if path_type is None:
        return [required(f"{path}.pathType", "pathType must be specified")]
    errs: Errs = []
    value = item.get("path") or ""
    if not isinstance(value, str):
        return [invalid(f"{path}.path", value, NOT_A_STRING)]
    if path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(invalid(f"{path}.path", value, "must be an absolute path"))
        for seq in _INVALID_PATH_SEQUENCES if value else ():
            if seq in value:
                errs.append(invalid(f"{path}.path", value, f"must not contain '{seq}'"))
        for suffix in _INVALID_PATH_SUFFIXES if value else ():
            if value.endswith(suffix):
                errs.append(invalid(f"{path}.path", value, f"cannot end with '{suffix}'"))
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(invalid(f"{path}.path", value, "must be an absolute path"))
    else:
        errs.append(not_supported(f"{path}.pathType", path_type, PATH_TYPES))
    errs.extend(_backend(as_dict(item.get("backend")), f"{path}.backend", name_fn))
    return errs


def _backend(backend: Obj, path: str, name_fn: Any) -> Errs:
    resource, service = backend.get("resource"), backend.get("service")
    if resource is not None and service is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return _typed_local_ref(as_dict(resource), f"{path}.resource")
    if service is None:
        return [invalid(path, "", "resource or service backend is required")]
    svc = as_dict(service)
    errs: Errs = []
    name = svc.get("name") or ""
    if not name:
        errs.append(required(f"{path}.service.name"))
    else:
        errs.extend(invalid(f"{path}.service.name", name, m) for m in name_fn(name, False))
    port = as_dict(svc.get("port"))
    port_name, number = port.get("name") or "", port.get("number") or 0
    if port_name and number:
        errs.append(invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        errs.extend(
            invalid(f"{path}.service.port.name", port_name, m)
            for m in is_valid_port_name(port_name)
        )
    elif number:
        errs.extend(
            invalid(f"{path}.service.port.number", number, m) for m in is_valid_port_num(number)
        )
    else:
        errs.append(required(path, "port name or number is required"))
    return errs


def _typed_local_ref(ref: Obj, path: str) -> Errs:
    errs: Errs = []
    group = ref.get("apiGroup")
    if group is not None:
        errs.extend(invalid(f"{path}.apiGroup", group, m) for m in is_dns1123_subdomain(str(group)))
    for key in ("kind", "name"):
        value = ref.get(key) or ""
        if not value:
            errs.append(required(f"{path}.{key}"))
        else:
            errs.extend(invalid(f"{path}.{key}", value, m) for m in is_path_segment_name(value))
    return errs


def _tls(tls: Obj, path: str) -> Errs:
    errs: Errs = []
    for i, host in enumerate(as_list(tls.get("hosts"))):
        errs.extend(_host(f"{path}.hosts[{i}]", str(host)))
    secret = tls.get("secretName") or ""
    if secret:
        errs.extend(
            invalid(f"{path}.secretName", secret, m) for m in name_is_dns_subdomain(secret, False)
        )
    return errs


def validate_ingress_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    lb = as_dict(as_dict(obj.get("status")).get("loadBalancer"))
    for i, raw in enumerate(as_list(lb.get("ingress"))):
        ing = as_dict(raw)
        path = f"status.loadBalancer.ingress[{i}]"
        ip, host = ing.get("ip") or "", ing.get("hostname") or ""
        if ip:
            errs.extend(valid_ip(f"{path}.ip", ip))
        if host:
            errs.extend(invalid(f"{path}.hostname", host, m) for m in is_dns1123_subdomain(host))
            if parse_ip(host) is not None:
                errs.append(
                    invalid(f"{path}.hostname", host, "must be a DNS name, not an IP address")
                )
    return errs


# ---------------------------------------------------------------------------
# IngressClass
# ---------------------------------------------------------------------------


def validate_ingress_class(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, name_is_dns_subdomain)
    return errs + _ingress_class_spec(as_dict(obj.get("spec")))


def validate_ingress_class_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    new_ctl = as_dict(obj.get("spec")).get("controller") or ""
    old_ctl = as_dict(old.get("spec")).get("controller") or ""
    errs.extend(immutable("spec.controller", new_ctl, old_ctl))
    errs.extend(validate_ingress_class(obj))
    return errs


def _ingress_class_spec(spec: Obj) -> Errs:
    errs: Errs = []
    controller = spec.get("controller") or ""
    if not controller:
        errs.append(required("spec.controller"))
    elif not isinstance(controller, str):
        errs.append(invalid("spec.controller", controller, NOT_A_STRING))
    else:
        if len(controller) > _MAX_CONTROLLER_LEN:
            errs.append(too_long("spec.controller", _MAX_CONTROLLER_LEN))
        errs.extend(_domain_prefixed_path("spec.controller", controller))
    params = spec.get("parameters")
    if params is not None:
        errs.extend(_parameters(as_dict(params), "spec.parameters"))
    return errs


_HTTP_PATH_FMT = "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+"


def _domain_prefixed_path(path: str, value: str) -> Errs:
    """IsDomainPrefixedPath: `example.com/name`."""
    host, sep, rest = value.partition("/")
    if not sep or not host or not rest:
        return [invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = [invalid(path, host, m) for m in is_dns1123_subdomain(host)]
    if not re.match("^" + _HTTP_PATH_FMT + "$", rest):
        errs.append(
            invalid(path, rest, f"Invalid path (regex used for validation is '{_HTTP_PATH_FMT}')")
        )
    return errs


def _parameters(params: Obj, path: str) -> Errs:
    errs: Errs = []
    group = params.get("apiGroup")
    if group is not None:
        errs.extend(invalid(f"{path}.apiGroup", group, m) for m in is_dns1123_subdomain(str(group)))
    for key in ("kind", "name"):
        value = params.get(key) or ""
        if not value:
            errs.append(required(f"{path}.{key}"))
        else:
            errs.extend(invalid(f"{path}.{key}", value, m) for m in is_path_segment_name(value))
    scope = params.get("scope")
    if scope is None:
        errs.append(required(f"{path}.scope"))
        return errs
    if scope not in ("Cluster", "Namespace"):
        errs.append(not_supported(f"{path}.scope", scope, ["Cluster", "Namespace"]))
        return errs
    namespace = params.get("namespace")
    if scope == "Namespace":
        if namespace is None:
            errs.append(required(f"{path}.namespace", "`parameters.scope` is set to 'Namespace'"))
        else:
            errs.extend(
                invalid(f"{path}.namespace", namespace, m)
                for m in name_is_dns_label(str(namespace), False)
            )
    elif namespace is not None:
        errs.append(forbidden(f"{path}.namespace", "`parameters.scope` is set to 'Cluster'"))
    return errs


# -- NetworkPolicy (stored; nothing enforces it) ------------------------------------------------

_POLICY_TYPES = ["Egress", "Ingress"]
_PROTOCOLS = ["SCTP", "TCP", "UDP"]


def _policy_port(port: Obj, path: str) -> Errs:
    errs: Errs = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in _PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, _PROTOCOLS))
    value = port.get("port")
    if isinstance(value, int):
        errs.extend(invalid(f"{path}.port", value, m) for m in is_valid_port_num(value))
        end = port.get("endPort")
        if isinstance(end, int) and end < value:
            errs.append(invalid(f"{path}.endPort", end, "must be greater than or equal to `port`"))
    elif isinstance(value, str):
        errs.extend(invalid(f"{path}.port", value, m) for m in is_valid_port_name(value))
        if port.get("endPort") is not None:
            errs.append(
                invalid(
                    f"{path}.endPort",
                    port["endPort"],
                    "may not be specified when `port` is non-numeric",
                )
            )
    elif port.get("endPort") is not None:
        errs.append(required(f"{path}.port", "must be specified when `endPort` is specified"))
    return errs


def _policy_peer(peer: Obj, path: str) -> Errs:
    from kubesvc.api.validation.meta import parse_cidr, validate_label_selector

    selectors = [k for k in ("podSelector", "namespaceSelector") if peer.get(k) is not None]
    block = peer.get("ipBlock")
    errs: Errs = []
    if not selectors and block is None:
        return [required(path, "must specify a peer")]
    if block is not None and selectors:
        return [forbidden(path, "may not specify both ipBlock and another peer")]
    for key in selectors:
        errs.extend(validate_label_selector(peer[key], f"{path}.{key}"))
    if block is not None:
        block = as_dict(block)
        cidr = block.get("cidr")
        if not cidr:
            errs.append(required(f"{path}.ipBlock.cidr"))
        else:
            net = parse_cidr(cidr)
            if net is None:
                errs.append(
                    invalid(
                        f"{path}.ipBlock.cidr",
                        cidr,
                        "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                    )
                )
            for i, other in enumerate(as_list(block.get("except"))):
                sub = parse_cidr(other)
                epath = f"{path}.ipBlock.except[{i}]"
                if sub is None:
                    errs.append(
                        invalid(
                            epath,
                            other,
                            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                        )
                    )
                elif net is not None and (
                    sub.version != net.version or not sub.subnet_of(net) or sub == net
                ):  # type: ignore[arg-type]
                    errs.append(invalid(epath, other, "must be a strict subset of `cidr`"))
    return errs


def validate_network_policy(obj: Obj) -> Errs:
    from kubesvc.api.validation.meta import validate_label_selector

    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    errs.extend(validate_label_selector(spec.get("podSelector"), "spec.podSelector"))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(as_list(spec.get(direction))):
            rule = as_dict(rule)
            for j, port in enumerate(as_list(rule.get("ports"))):
                errs.extend(_policy_port(as_dict(port), f"spec.{direction}[{i}].ports[{j}]"))
            for j, peer in enumerate(as_list(rule.get(peers))):
                errs.extend(_policy_peer(as_dict(peer), f"spec.{direction}[{i}].{peers}[{j}]"))
    types = as_list(spec.get("policyTypes"))
    for i, kind in enumerate(types):
        if kind not in _POLICY_TYPES:
            errs.append(not_supported(f"spec.policyTypes[{i}]", kind, _POLICY_TYPES))
    if len(types) > 2:
        errs.append(invalid("spec.policyTypes", types, "may not specify more than two policyTypes"))
    return errs


def validate_network_policy_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_network_policy(obj)
