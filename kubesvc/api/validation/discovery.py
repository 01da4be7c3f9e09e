"""discovery.k8s.io/v1 EndpointSlice validation (pkg/apis/discovery/validation, v1.32)."""

from __future__ import annotations

from typing import Any

from kubesvc.api.errors import duplicate, invalid, not_supported, required, too_many
from kubesvc.api.validation.meta import (
    Errs,
    Obj,
    Seen,
    as_dict,
    as_list,
    dns1123_label,
    immutable,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    name_is_dns_subdomain,
    non_special_ip,
    parse_ip,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
)

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
MAX_ADDRESSES = 100
MAX_PORTS = 100
MAX_ENDPOINTS = 1000
MAX_TOPOLOGY_LABELS = 16


def validate_endpoint_slice(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    return errs + _slice_body(obj, ADDRESS_TYPES)


def _slice_body(obj: Obj, allowed: list[str]) -> Errs:
    errs: Errs = []
    address_type = obj.get("addressType") or ""
    if not address_type:
        errs.append(required("addressType"))
    elif address_type not in allowed:
        errs.append(not_supported("addressType", address_type, allowed))
    errs.extend(_endpoints(as_list(obj.get("endpoints")), address_type))
    errs.extend(_ports(as_list(obj.get("ports"))))
    return errs


def validate_endpoint_slice_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    # updates also accept the deprecated "IP" address type for old stored objects
    errs.extend(validate_object_meta(obj, True, name_is_dns_subdomain))
    errs.extend(_slice_body(obj, sorted([*ADDRESS_TYPES, "IP"])))
    errs.extend(
        immutable("addressType", obj.get("addressType") or "", old.get("addressType") or "")
    )
    return errs


def _endpoints(endpoints: list[Any], address_type: str) -> Errs:
    if len(endpoints) > MAX_ENDPOINTS:
        return [too_many("endpoints", len(endpoints), MAX_ENDPOINTS)]
    errs: Errs = []
    for i, raw in enumerate(endpoints):
        ep = as_dict(raw)
        path = f"endpoints[{i}]"
        addresses = as_list(ep.get("addresses"))
        if not addresses:
            errs.append(required(f"{path}.addresses", "must contain at least 1 address"))
        elif len(addresses) > MAX_ADDRESSES:
            errs.append(too_many(f"{path}.addresses", len(addresses), MAX_ADDRESSES))
        for j, address in enumerate(addresses):
            errs.extend(_address(f"{path}.addresses[{j}]", str(address), address_type))
        topology = as_dict(ep.get("deprecatedTopology"))
        if len(topology) > MAX_TOPOLOGY_LABELS:
            errs.append(too_many(f"{path}.topology", len(topology), MAX_TOPOLOGY_LABELS))
        errs.extend(validate_labels(topology, f"{path}.topology"))
        if ep.get("hostname") is not None:
            errs.extend(dns1123_label(f"{path}.hostname", str(ep["hostname"])))
    return errs


def _address(path: str, address: str, address_type: str) -> Errs:
    ip = parse_ip(address)
    if address_type == "IPv4":
        if ip is None or ip.version != 4:
            return [
                invalid(path, address, "must be a valid IPv4 address"),
                *non_special_ip(path, address),
            ]
        return non_special_ip(path, address)
    if address_type == "IPv6":
        if ip is None or ip.version != 6:
            return [
                invalid(path, address, "must be a valid IPv6 address"),
                *non_special_ip(path, address),
            ]
        return non_special_ip(path, address)
    if address_type == "FQDN":
        return _fqdn(path, address)
    if address_type == "IP" and ip is None:
        return [
            invalid(path, address, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
        ]
    return []


def _fqdn(path: str, name: str) -> Errs:
    """IsFullyQualifiedDomainName."""
    if not name:
        return [required(path)]
    name = name.removesuffix(".")
    msgs = is_dns1123_subdomain(name)
    if msgs:
        return [invalid(path, name, ",".join(msgs))]
    if len(name.split(".")) < 2:
        return [
            invalid(path, name, "should be a domain with at least two segments separated by dots")
        ]
    for label in name.split("."):
        msgs = is_dns1123_label(label)
        if msgs:
            return [invalid(path, label, ",".join(msgs))]
    return []


def _ports(ports: list[Any]) -> Errs:
    if len(ports) > MAX_PORTS:
        return [too_many("ports", len(ports), MAX_PORTS)]
    errs: Errs = []
    names = Seen()
    for i, raw in enumerate(ports):
        port = as_dict(raw)
        path = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            errs.extend(dns1123_label(f"{path}.name", name))
        if name in names:
            errs.append(duplicate(f"{path}.name", name))
        names.add(name)
        protocol = port.get("protocol")
        if protocol is None:
            errs.append(required(f"{path}.protocol"))
        elif protocol not in ("SCTP", "TCP", "UDP"):
            errs.append(not_supported(f"{path}.protocol", protocol, ["SCTP", "TCP", "UDP"]))
        app = port.get("appProtocol")
        if app is not None:
            errs.extend(invalid(f"{path}.appProtocol", app, m) for m in is_qualified_name(str(app)))
    return errs
