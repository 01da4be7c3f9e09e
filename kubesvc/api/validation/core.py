"""core/v1 validation (pkg/apis/core/validation, Kubernetes v1.32), over JSON dicts.

Objects arrive already defaulted (see kubesvc.api.defaults), as upstream validates the
internal type after conversion and defaulting; so e.g. a missing `protocol` is reported as
`Required value` just like upstream would for a defaulting bypass.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from kubesvc.api.errors import (
    FieldError,
    GoLiteral,
    duplicate,
    forbidden,
    invalid,
    not_found,
    not_supported,
    required,
    too_long,
)
from kubesvc.api.validation.meta import (
    NOT_A_STRING,
    Errs,
    Obj,
    Seen,
    as_dict,
    as_list,
    dns1123_label,
    dns1123_subdomain,
    go_quote,
    go_string_slice,
    immutable,
    inclusive_range_error,
    is_config_map_key,
    is_dns1123_subdomain,
    is_env_var_name,
    is_http_header_name,
    is_ipv6,
    is_label_value,
    is_valid_port_name,
    is_valid_port_num,
    kube_finalizer_name,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
    non_special_ip,
    nonnegative,
    parse_ip,
    qualified_name,
    utf8_len,
    valid_cidr,
    valid_ip,
    validate_annotations,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
)

PROTOCOLS = ["SCTP", "TCP", "UDP"]
SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
MAX_SECRET_SIZE = 1024 * 1024
MAX_INT32 = 2**31 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def port_num_or_name(path: str, value: Any) -> Errs:
    """ValidatePortNumOrName for an IntOrString."""
    if isinstance(value, str):
        return [invalid(path, value, m) for m in is_valid_port_name(value)]
    return [invalid(path, value, m) for m in is_valid_port_num(value)]


def _protocol(path: str, value: Any) -> Errs:
    if not value:
        return [required(path)]
    if value not in PROTOCOLS:
        return [not_supported(path, value, PROTOCOLS)]
    return []


# ===========================================================================
# Service
# ===========================================================================


def _is_headless(spec: Obj) -> bool:
    ips = as_list(spec.get("clusterIPs"))
    return len(ips) == 1 and ips[0] == "None"


def externally_accessible(spec: Obj) -> bool:
    kind = spec.get("type")
    return kind in ("LoadBalancer", "NodePort") or (
        kind == "ClusterIP" and bool(as_list(spec.get("externalIPs")))
    )


def _needs_health_check(spec: Obj) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def validate_service(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns1035_label)
    spec = as_dict(obj.get("spec"))
    kind = spec.get("type")
    headless = _is_headless(spec)
    ports = as_list(spec.get("ports"))
    if not ports and not headless and kind != "ExternalName":
        errs.append(required("spec.ports"))
    errs.extend(_service_type_rules(spec))
    names = Seen()
    for i, port in enumerate(ports):
        errs.extend(_service_port(as_dict(port), len(ports) > 1, names, f"spec.ports[{i}]"))
    if spec.get("selector") is not None:
        errs.extend(validate_labels(spec.get("selector"), "spec.selector"))
    errs.extend(_session_affinity(spec))
    errs.extend(_cluster_ips(spec))
    for i, ip in enumerate(as_list(spec.get("externalIPs"))):
        path = f"spec.externalIPs[{i}]"
        errs.extend(valid_ip(path, ip) or non_special_ip(path, ip))
    if not kind:
        errs.append(required("spec.type"))
    elif kind not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", kind, SERVICE_TYPES))
    errs.extend(_node_ports(spec, ports))
    errs.extend(_duplicate_ports(ports))
    errs.extend(_source_ranges(obj, spec))
    errs.extend(_allocate_node_ports(spec))
    errs.extend(_load_balancer_class(spec, None))
    errs.extend(_traffic_policies(spec))
    return errs


def _service_type_rules(spec: Obj) -> Errs:
    kind = spec.get("type")
    ips = as_list(spec.get("clusterIPs"))
    if kind in ("LoadBalancer", "NodePort") and _is_headless(spec):
        return [
            invalid("spec.clusterIPs[0]", ips[0], f"may not be set to 'None' for {kind} services")
        ]
    if kind != "ExternalName":
        return []
    errs: Errs = []
    if ips:
        errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
    if as_list(spec.get("ipFamilies")):
        errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
    if spec.get("ipFamilyPolicy") is not None:
        errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
    # the value (a CNAME) may carry a trailing dot to mark it fully qualified
    cname = str(spec.get("externalName") or "").removesuffix(".")
    if cname:
        errs.extend(dns1123_subdomain("spec.externalName", cname))
    else:
        errs.append(required("spec.externalName"))
    return errs


def _service_port(port: Obj, require_name: bool, names: Seen, path: str) -> Errs:
    errs: Errs = []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs.extend(dns1123_label(f"{path}.name", name))
        if name in names:
            errs.append(duplicate(f"{path}.name", name))
        names.add(name)
    errs.extend(
        invalid(f"{path}.port", port.get("port", 0), m)
        for m in is_valid_port_num(port.get("port", 0))
    )
    errs.extend(_protocol(f"{path}.protocol", port.get("protocol")))
    errs.extend(port_num_or_name(f"{path}.targetPort", port.get("targetPort", 0)))
    if port.get("appProtocol") is not None:
        errs.extend(qualified_name(f"{path}.appProtocol", str(port["appProtocol"])))
    return errs


def _session_affinity(spec: Obj) -> Errs:
    affinity = spec.get("sessionAffinity")
    config = spec.get("sessionAffinityConfig")
    path = "spec.sessionAffinityConfig"
    if not affinity:
        return [required("spec.sessionAffinity")]
    if affinity not in ("ClientIP", "None"):
        return [not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"])]
    if affinity == "None":
        if config is not None:
            return [forbidden(path, "must not be set when session affinity is None")]
        return []
    why = "when session affinity type is ClientIP"
    if config is None:
        return [required(path, why)]
    client_ip = as_dict(config).get("clientIP")
    if client_ip is None:
        return [required(f"{path}.clientIP", why)]
    timeout = as_dict(client_ip).get("timeoutSeconds")
    if timeout is None:
        return [required(f"{path}.clientIP.timeoutSeconds", why)]
    if not _is_int(timeout) or timeout <= 0 or timeout > 86400:
        return [
            invalid(
                f"{path}.clientIP.timeoutSeconds",
                timeout,
                "must be greater than 0 and less than 86400",
            )
        ]
    return []


def _cluster_ips(spec: Obj) -> Errs:
    """ValidateServiceClusterIPsRelatedFields."""
    if spec.get("type") == "ExternalName":
        return []
    errs: Errs = []
    cluster_ip = spec.get("clusterIP") or ""
    ips = as_list(spec.get("clusterIPs"))
    families = as_list(spec.get("ipFamilies"))
    if cluster_ip:
        if not ips:
            errs.append(required("spec.clusterIPs"))
        elif ips[0] != cluster_ip:
            errs.append(
                invalid(
                    "spec.clusterIPs", go_string_slice(ips), "first value must match `clusterIP`"
                )
            )
    elif ips:
        errs.append(
            invalid(
                "spec.clusterIPs",
                go_string_slice(ips),
                "must be empty when `clusterIP` is not specified",
            )
        )
    seen = Seen()
    for i, family in enumerate(families):
        if family not in ("IPv4", "IPv6"):
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, ["IPv4", "IPv6"]))
        if family in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    policies = ["PreferDualStack", "RequireDualStack", "SingleStack"]
    if policy is not None and policy not in policies:
        errs.append(not_supported("spec.ipFamilyPolicy", policy, policies))
    bad_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                bad_ips = True
                errs.append(
                    invalid(
                        "spec.clusterIPs",
                        go_string_slice(ips),
                        "'None' must be the first and only value",
                    )
                )
            continue
        ip_errs = valid_ip(f"spec.clusterIPs[{i}]", ip)
        bad_ips = bad_ips or bool(ip_errs)
        errs.extend(ip_errs)
    if len(ips) > 2:
        errs.append(
            invalid("spec.clusterIPs", go_string_slice(ips), "may only hold up to 2 values")
        )
    if bad_ips:
        return errs
    if len(ips) > 1 and len({is_ipv6(ip) for ip in ips}) != len(ips):
        errs.append(
            invalid(
                "spec.clusterIPs",
                go_string_slice(ips),
                "may specify no more than one IP for each IP family",
            )
        )
    if not _is_headless(spec) and ips and families:
        for i, ip in enumerate(ips[: len(families)]):
            want_v6 = families[i] == "IPv6"
            if families[i] in ("IPv4", "IPv6") and is_ipv6(ip) != want_v6:
                fam = families[i]
                errs.append(
                    invalid(
                        f"spec.clusterIPs[{i}]",
                        ip,
                        f"expected an {fam} value as indicated by `ipFamilies[{i}]`",
                    )
                )
    return errs


def _node_ports(spec: Obj, ports: list[Any]) -> Errs:
    errs: Errs = []
    if spec.get("type") == "ClusterIP":
        for i, port in enumerate(ports):
            if as_dict(port).get("nodePort"):
                errs.append(
                    forbidden(
                        f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"
                    )
                )
    seen = Seen()
    for i, raw in enumerate(ports):
        port = as_dict(raw)
        node_port = port.get("nodePort")
        if not node_port:
            continue
        key = (port.get("protocol"), node_port)
        if key in seen:
            errs.append(duplicate(f"spec.ports[{i}].nodePort", node_port))
        seen.add(key)
    return errs


def _go_service_port_key(protocol: Any, port: Any) -> GoLiteral:
    """The (protocol, port) key upstream reports, printed as Go's %#v of core.ServicePort."""
    return GoLiteral(
        f'core.ServicePort{{Name:"", Protocol:{go_quote(str(protocol or ""))}, '
        f"AppProtocol:(*string)(nil), Port:{port}, "
        'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
    )


def _duplicate_ports(ports: list[Any]) -> Errs:
    errs: Errs = []
    seen = Seen()
    for i, raw in enumerate(ports):
        port = as_dict(raw)
        key = (port.get("protocol"), port.get("port", 0))
        if key in seen:
            errs.append(duplicate(f"spec.ports[{i}]", _go_service_port_key(*key)))
        seen.add(key)
    return errs


_ONLY_LB = "may only be used when `type` is 'LoadBalancer'"
_LB_SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"


def _source_ranges(obj: Obj, spec: Obj) -> Errs:
    errs: Errs = []
    ranges = as_list(spec.get("loadBalancerSourceRanges"))
    annotations = as_dict(as_dict(obj.get("metadata")).get("annotations"))
    only_lb = _ONLY_LB
    if ranges:
        # upstream's path really is capitalised here
        path = "spec.LoadBalancerSourceRanges"
        if spec.get("type") != "LoadBalancer":
            errs.append(forbidden(path, only_lb))
        for i, value in enumerate(ranges):
            errs.extend(valid_cidr(f"{path}[{i}]", str(value).strip()))
    elif _LB_SOURCE_RANGES_ANNOTATION in annotations:
        path = f"metadata.annotations[{_LB_SOURCE_RANGES_ANNOTATION}]"
        if spec.get("type") != "LoadBalancer":
            errs.append(forbidden(path, only_lb))
        value = str(annotations[_LB_SOURCE_RANGES_ANNOTATION]).strip()
        for cidr in value.split(",") if value else []:
            errs.extend(valid_cidr(path, cidr.strip()))
    return errs


def _allocate_node_ports(spec: Obj) -> Errs:
    is_lb = spec.get("type") == "LoadBalancer"
    if spec.get("allocateLoadBalancerNodePorts") is not None and not is_lb:
        return [forbidden("spec.allocateLoadBalancerNodePorts", _ONLY_LB)]
    if is_lb and spec.get("allocateLoadBalancerNodePorts") is None:
        # upstream reports this one without the `spec.` prefix
        return [required("allocateLoadBalancerNodePorts")]
    return []


def _load_balancer_class(spec: Obj, old_spec: Obj | None) -> Errs:
    """validateLoadBalancerClassField; on update upstream runs it twice (old and nil)."""
    errs: Errs = []
    is_lb = spec.get("type") == "LoadBalancer"
    lb_class = spec.get("loadBalancerClass")
    if (
        old_spec is not None
        and old_spec.get("type") == "LoadBalancer"
        and is_lb
        and old_spec.get("loadBalancerClass") != lb_class
    ):
        errs.append(invalid("spec.loadBalancerClass", lb_class, "may not change once set"))
    if is_lb:
        if lb_class is not None:
            errs.extend(qualified_name("spec.loadBalancerClass", str(lb_class)))
    elif lb_class is not None:
        errs.append(forbidden("spec.loadBalancerClass", _ONLY_LB))
    return errs


def _traffic_policies(spec: Obj) -> Errs:
    errs: Errs = []
    etp = spec.get("externalTrafficPolicy") or ""
    if not externally_accessible(spec):
        if etp:
            errs.append(
                invalid(
                    "spec.externalTrafficPolicy",
                    etp,
                    "may only be set for externally-accessible services",
                )
            )
    elif not etp:
        errs.append(required("spec.externalTrafficPolicy"))
    elif etp not in ("Cluster", "Local"):
        errs.append(not_supported("spec.externalTrafficPolicy", etp, ["Cluster", "Local"]))
    hc = spec.get("healthCheckNodePort") or 0
    if not _needs_health_check(spec):
        if hc:
            errs.append(
                invalid(
                    "spec.healthCheckNodePort",
                    hc,
                    "may only be set when `type` is 'LoadBalancer' and "
                    "`externalTrafficPolicy` is 'Local'",
                )
            )
    elif not hc:
        errs.append(required("spec.healthCheckNodePort"))
    else:
        errs.extend(invalid("spec.healthCheckNodePort", hc, m) for m in is_valid_port_num(hc))
    itp = spec.get("internalTrafficPolicy")
    if itp is None and spec.get("type") in ("ClusterIP", "NodePort", "LoadBalancer"):
        errs.append(required("spec.internalTrafficPolicy"))
    if itp is not None and itp not in ("Cluster", "Local"):
        errs.append(not_supported("spec.internalTrafficPolicy", itp, ["Cluster", "Local"]))
    td = spec.get("trafficDistribution")
    if td is not None and td != "PreferClose":
        errs.append(not_supported("spec.trafficDistribution", td, ["PreferClose"]))
    return errs


def validate_service_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
    errs.extend(_cluster_ips_update(old_spec, spec))
    errs.extend(_ip_families_update(old_spec, spec))
    errs.extend(_load_balancer_class(spec, old_spec))
    hc_changed = spec.get("healthCheckNodePort") != old_spec.get("healthCheckNodePort")
    if _needs_health_check(old_spec) and _needs_health_check(spec) and hc_changed:
        errs.append(forbidden("spec.healthCheckNodePort", "field is immutable"))
    errs.extend(validate_service(obj))
    return errs


def _cluster_ips_update(old_spec: Obj, spec: Obj) -> Errs:
    """validateUpgradeDowngradeClusterIPs: clusterIPs may not change except via ExternalName."""
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return []
    if _is_headless(old_spec) and _is_headless(spec):
        return []
    old_ips, ips = as_list(old_spec.get("clusterIPs")), as_list(spec.get("clusterIPs"))
    shown = go_string_slice(spec.get("clusterIPs"))
    errs: Errs = []
    if len(old_ips) == len(ips):
        for i, ip in enumerate(old_ips):
            if ip != ips[i]:
                errs.append(invalid(f"spec.clusterIPs[{i}]", shown, "may not change once set"))
    elif len(old_ips) > len(ips):
        if not ips:
            errs.append(invalid("spec.clusterIPs[0]", shown, "primary clusterIP can not be unset"))
        if old_ips and ips and ips[0] != old_ips[0]:
            errs.append(invalid("spec.clusterIPs[0]", shown, "may not change once set"))
        if len(ips) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(
                invalid(
                    "spec.ipFamilyPolicy",
                    spec.get("ipFamilyPolicy"),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                )
            )
    elif old_ips and ips[0] != old_ips[0]:
        errs.append(invalid("spec.clusterIPs[0]", shown, "may not change once set"))
    return errs


def _ip_families_update(old_spec: Obj, spec: Obj) -> Errs:
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return []
    if _is_headless(old_spec) or _is_headless(spec):
        return []
    old_fams, fams = as_list(old_spec.get("ipFamilies")), as_list(spec.get("ipFamilies"))
    shown = go_string_slice(spec.get("ipFamilies"), "[]core.IPFamily")
    errs: Errs = []
    if len(old_fams) == len(fams):
        for i, fam in enumerate(old_fams):
            if fam != fams[i]:
                errs.append(invalid("spec.ipFamilies[0]", shown, "may not change once set"))
    elif len(old_fams) > len(fams):
        if not as_list(spec.get("clusterIPs")):
            errs.append(invalid("spec.ipFamilies[0]", shown, "primary ipFamily can not be unset"))
        if fams and fams[0] != old_fams[0]:
            errs.append(
                invalid(
                    "spec.ipFamilies[0]",
                    go_string_slice(spec.get("clusterIPs")),
                    "may not change once set",
                )
            )
        if len(fams) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(
                invalid(
                    "spec.ipFamilyPolicy",
                    spec.get("ipFamilyPolicy"),
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                )
            )
    elif old_fams and fams and fams[0] != old_fams[0]:
        errs.append(
            invalid(
                "spec.ipFamilies[0]",
                go_string_slice(spec.get("clusterIPs")),
                "may not change once set",
            )
        )
    return errs


def validate_service_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    spec = as_dict(obj.get("spec"))
    lb = as_dict(as_dict(obj.get("status")).get("loadBalancer"))
    ingress = as_list(lb.get("ingress"))
    path = "status.loadBalancer.ingress"
    if spec.get("type") != "LoadBalancer" and ingress:
        return [*errs, forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'")]
    for i, raw in enumerate(ingress):
        errs.extend(_lb_ingress(as_dict(raw), f"{path}[{i}]"))
    return errs


def _lb_ingress(ing: Obj, path: str) -> Errs:
    errs: Errs = []
    ip, mode, host = ing.get("ip") or "", ing.get("ipMode"), ing.get("hostname") or ""
    if ip:
        errs.extend(valid_ip(f"{path}.ip", ip))
    if mode is None and ip:
        errs.append(required(f"{path}.ipMode", "must be specified when `ip` is set"))
    elif mode is not None and not ip:
        errs.append(forbidden(f"{path}.ipMode", "may not be specified when `ip` is not set"))
    elif mode is not None and mode not in ("Proxy", "VIP"):
        errs.append(not_supported(f"{path}.ipMode", mode, ["Proxy", "VIP"]))
    if host:
        errs.extend(dns1123_subdomain(f"{path}.hostname", host))
        if parse_ip(host) is not None:
            errs.append(invalid(f"{path}.hostname", host, "must be a DNS name, not an IP address"))
    return errs


# ===========================================================================
# Pod spec, pod templates, pods
# ===========================================================================

_PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
_RESTART_POLICIES = ["Always", "OnFailure", "Never"]
_DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
_TERMINATION_POLICIES = ["File", "FallbackToLogsOnError"]
_HANDLER_TYPES = ("exec", "httpGet", "tcpSocket", "grpc", "sleep")


def validate_pod_spec(spec: Obj, path: str, *, is_pod: bool) -> Errs:
    errs: Errs = []
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is None:
        errs.append(required(f"{path}.terminationGracePeriodSeconds"))
    volumes, vol_errs = _volumes(as_list(spec.get("volumes")), f"{path}.volumes")
    errs.extend(vol_errs)
    containers = as_list(spec.get("containers"))
    errs.extend(_containers(containers, volumes, grace, f"{path}.containers"))
    errs.extend(
        _init_containers(as_list(spec.get("initContainers")), containers, volumes, grace, path)
    )
    errs.extend(_host_network_ports(spec, path, is_pod))
    errs.extend(_enum(f"{path}.restartPolicy", spec.get("restartPolicy"), _RESTART_POLICIES))
    errs.extend(_enum(f"{path}.dnsPolicy", spec.get("dnsPolicy"), _DNS_POLICIES))
    errs.extend(validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector"))
    errs.extend(
        _pod_security_context(as_dict(spec.get("securityContext")), f"{path}.securityContext")
    )
    errs.extend(_host_users(spec, f"{path}.securityContext"))
    errs.extend(_dns_config(spec.get("dnsConfig"), spec.get("dnsPolicy"), f"{path}.dnsConfig"))
    for i, gate in enumerate(as_list(spec.get("readinessGates"))):
        cond = str(as_dict(gate).get("conditionType") or "")
        errs.extend(qualified_name(f"{path}.readinessGates[{i}].conditionType", cond))
    errs.extend(_pod_names(spec, path))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not _is_int(deadline) or not 1 <= deadline <= MAX_INT32):
        errs.append(
            invalid(f"{path}.activeDeadlineSeconds", deadline, inclusive_range_error(1, MAX_INT32))
        )
    errs.extend(_tolerations(as_list(spec.get("tolerations")), f"{path}.tolerations"))
    for i, alias in enumerate(as_list(spec.get("hostAliases"))):
        alias_path = f"{path}.hostAliases[{i}]"
        errs.extend(valid_ip(f"{alias_path}.ip", as_dict(alias).get("ip", "")))
        for j, host in enumerate(as_list(as_dict(alias).get("hostnames"))):
            errs.extend(dns1123_subdomain(f"{alias_path}.hostnames[{j}]", str(host)))
    policy = spec.get("preemptionPolicy")
    if policy is not None:
        errs.extend(_enum(f"{path}.preemptionPolicy", policy, ["PreemptLowerPriority", "Never"]))
    errs.extend(_pod_os(spec.get("os"), f"{path}.os"))
    return errs


def _enum(path: str, value: Any, allowed: list[str]) -> Errs:
    if not value:
        return [required(path)]
    if value not in allowed:
        return [not_supported(path, value, allowed)]
    return []


def _pod_names(spec: Obj, path: str) -> Errs:
    errs: Errs = []
    checks = (
        ("serviceAccountName", name_is_dns_subdomain),
        ("nodeName", name_is_dns_subdomain),
        ("priorityClassName", name_is_dns_subdomain),
    )
    for key, fn in checks:
        value = spec.get(key) or ""
        if value:
            errs.extend(invalid(f"{path}.{key}", value, m) for m in fn(value, False))
    for key in ("hostname", "subdomain"):
        value = spec.get(key) or ""
        if value:
            errs.extend(dns1123_label(f"{path}.{key}", value))
    if spec.get("runtimeClassName") is not None:
        rc = str(spec["runtimeClassName"])
        errs.extend(invalid(f"{path}.runtimeClassName", rc, m) for m in is_dns1123_subdomain(rc))
    return errs


def _pod_os(os_spec: Any, path: str) -> Errs:
    if os_spec is None:
        return []
    name = as_dict(os_spec).get("name") or ""
    if not name:
        return [required(f"{path}.name", "cannot be empty")]
    if name not in ("linux", "windows"):
        return [not_supported(path, name, ["linux", "windows"])]
    return []


_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
    "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
    "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
    "storageos", "csi", "ephemeral", "image",
)  # fmt: skip


def _volumes(volumes: list[Any], path: str) -> tuple[Seen, Errs]:
    """Names, uniqueness and exactly-one-source; per-source details are not checked."""
    names = Seen()
    errs: Errs = []
    for i, raw in enumerate(volumes):
        vol = as_dict(raw)
        vpath = f"{path}[{i}]"
        name = vol.get("name") or ""
        if not name:
            errs.append(required(f"{vpath}.name"))
        else:
            errs.extend(dns1123_label(f"{vpath}.name", name))
        if name and name in names:
            errs.append(duplicate(f"{vpath}.name", name))
        sources = [s for s in _VOLUME_SOURCES if vol.get(s) is not None]
        if not sources:
            errs.append(required(vpath, "must specify a volume type"))
        for extra in sources[1:]:
            errs.append(forbidden(f"{vpath}.{extra}", "may not specify more than 1 volume type"))
        if name:
            names.add(name)
    return names, errs


def _containers(containers: list[Any], volumes: Seen, grace: Any, path: str) -> Errs:
    if not containers:
        return [required(path)]
    errs: Errs = []
    names = Seen()
    for i, raw in enumerate(containers):
        ctr = as_dict(raw)
        cpath = f"{path}[{i}]"
        errs.extend(_container_common(ctr, volumes, cpath))
        name = ctr.get("name") or ""
        if name in names:
            errs.append(duplicate(f"{cpath}.name", name))
        names.add(name)
        errs.extend(_probes_and_lifecycle(ctr, grace, cpath))
        if ctr.get("restartPolicy") is not None:
            errs.append(
                forbidden(f"{cpath}.restartPolicy", "may not be set for non-init containers")
            )
    errs.extend(_host_port_conflicts(containers, path))
    return errs


def _init_containers(
    inits: list[Any], regular: list[Any], volumes: Seen, grace: Any, spec_path: str
) -> Errs:
    errs: Errs = []
    names = Seen()
    for c in regular:
        names.add(as_dict(c).get("name"))
    path = f"{spec_path}.initContainers"
    not_allowed = "may not be set for init containers without restartPolicy=Always"
    for i, raw in enumerate(inits):
        ctr = as_dict(raw)
        cpath = f"{path}[{i}]"
        errs.extend(_container_common(ctr, volumes, cpath))
        policy = ctr.get("restartPolicy")
        if policy is not None and policy != "Always":
            errs.append(not_supported(f"{cpath}.restartPolicy", policy, ["Always"]))
        name = ctr.get("name") or ""
        if name in names:
            errs.append(duplicate(f"{cpath}.name", name))
        elif name:
            names.add(name)
        errs.extend(_host_port_conflicts([ctr], path))
        if policy == "Always":
            errs.extend(_probes_and_lifecycle(ctr, grace, cpath))
        else:
            for key in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if ctr.get(key) is not None:
                    errs.append(forbidden(f"{cpath}.{key}", not_allowed))
    return errs


def _container_common(ctr: Obj, volumes: Seen, path: str) -> Errs:
    errs: Errs = []
    name = ctr.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs.extend(dns1123_label(f"{path}.name", name))
    if not ctr.get("image"):
        errs.append(required(f"{path}.image"))
    errs.extend(
        _enum(
            f"{path}.terminationMessagePolicy",
            ctr.get("terminationMessagePolicy"),
            _TERMINATION_POLICIES,
        )
    )
    errs.extend(_container_ports(as_list(ctr.get("ports")), f"{path}.ports"))
    errs.extend(_env(as_list(ctr.get("env")), f"{path}.env"))
    errs.extend(_env_from(as_list(ctr.get("envFrom")), f"{path}.envFrom"))
    errs.extend(_volume_mounts(as_list(ctr.get("volumeMounts")), volumes, f"{path}.volumeMounts"))
    errs.extend(_enum(f"{path}.imagePullPolicy", ctr.get("imagePullPolicy"), _PULL_POLICIES))
    sc = ctr.get("securityContext")
    if sc is not None:
        errs.extend(_id_fields(as_dict(sc), f"{path}.securityContext"))
    return errs


def _container_ports(ports: list[Any], path: str) -> Errs:
    errs: Errs = []
    names = Seen()
    for i, raw in enumerate(ports):
        port = as_dict(raw)
        ppath = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            msgs = is_valid_port_name(name)
            errs.extend(invalid(f"{ppath}.name", name, m) for m in msgs)
            if not msgs and name in names:
                errs.append(duplicate(f"{ppath}.name", name))
            names.add(name)
        cport = port.get("containerPort") or 0
        if not cport:
            errs.append(required(f"{ppath}.containerPort"))
        else:
            errs.extend(
                invalid(f"{ppath}.containerPort", cport, m) for m in is_valid_port_num(cport)
            )
        hport = port.get("hostPort") or 0
        if hport:
            errs.extend(invalid(f"{ppath}.hostPort", hport, m) for m in is_valid_port_num(hport))
        errs.extend(_protocol(f"{ppath}.protocol", port.get("protocol")))
    return errs


def _host_port_conflicts(containers: list[Any], path: str) -> Errs:
    errs: Errs = []
    seen = Seen()
    for ci, ctr in enumerate(containers):
        for pi, raw in enumerate(as_list(as_dict(ctr).get("ports"))):
            port = as_dict(raw)
            host_port = port.get("hostPort") or 0
            if not host_port:
                continue
            key = f"{port.get('protocol', '')}/{port.get('hostIP', '')}/{host_port}"
            if key in seen:
                errs.append(duplicate(f"{path}[{ci}].ports[{pi}].hostPort", key))
            seen.add(key)
    return errs


def _env(env: list[Any], path: str) -> Errs:
    errs: Errs = []
    for i, raw in enumerate(env):
        var = as_dict(raw)
        epath = f"{path}[{i}]"
        name = var.get("name") or ""
        if not name:
            errs.append(required(f"{epath}.name"))
        else:
            errs.extend(invalid(f"{epath}.name", name, m) for m in is_env_var_name(name))
        errs.extend(_env_value_from(var, f"{epath}.valueFrom"))
    return errs


_VALUE_FROM = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def _env_value_from(var: Obj, path: str) -> Errs:
    source = var.get("valueFrom")
    if source is None:
        return []
    src = as_dict(source)
    errs: Errs = []
    count = sum(1 for key in _VALUE_FROM if src.get(key) is not None)
    for key in ("configMapKeyRef", "secretKeyRef"):
        if src.get(key) is not None:
            errs.extend(_key_selector(as_dict(src[key]), f"{path}.{key}"))
    if src.get("fieldRef") is not None:
        ref = as_dict(src["fieldRef"])
        if not ref.get("apiVersion"):
            errs.append(required(f"{path}.fieldRef.apiVersion"))
        elif not ref.get("fieldPath"):
            errs.append(required(f"{path}.fieldRef.fieldPath"))
    if count == 0:
        errs.append(
            invalid(
                path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` "
                "or `secretKeyRef`",
            )
        )
    elif var.get("value"):
        errs.append(invalid(path, "", "may not be specified when `value` is not empty"))
    elif count > 1:
        errs.append(invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def _key_selector(ref: Obj, path: str) -> Errs:
    name = ref.get("name") or ""
    errs = [invalid(f"{path}.name", name, m) for m in name_is_dns_subdomain(name, False)]
    key = ref.get("key") or ""
    if not key:
        errs.append(required(f"{path}.key"))
    else:
        errs.extend(invalid(f"{path}.key", key, m) for m in is_config_map_key(key))
    return errs


def _env_from(sources: list[Any], path: str) -> Errs:
    errs: Errs = []
    for i, raw in enumerate(sources):
        src = as_dict(raw)
        spath = f"{path}[{i}]"
        prefix = src.get("prefix") or ""
        if prefix:
            errs.extend(invalid(f"{spath}.prefix", prefix, m) for m in is_env_var_name(prefix))
        refs = [key for key in ("configMapRef", "secretRef") if src.get(key) is not None]
        for key in refs:
            name = as_dict(src[key]).get("name") or ""
            if not name:
                errs.append(required(f"{spath}.{key}.name"))
            else:
                errs.extend(
                    invalid(f"{spath}.{key}.name", name, m)
                    for m in name_is_dns_subdomain(name, True)
                )
        if not refs:
            errs.append(invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(refs) > 1:
            errs.append(invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def _volume_mounts(mounts: list[Any], volumes: Seen, path: str) -> Errs:
    errs: Errs = []
    seen = Seen()
    for i, raw in enumerate(mounts):
        mount = as_dict(raw)
        mpath = f"{path}[{i}]"
        name = mount.get("name") or ""
        if not name:
            errs.append(required(f"{mpath}.name"))
        if name not in volumes:
            errs.append(not_found(f"{mpath}.name", name))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            errs.append(required(f"{mpath}.mountPath"))
        if mount_path in seen:
            errs.append(invalid(f"{mpath}.mountPath", mount_path, "must be unique"))
        seen.add(mount_path)
    return errs


def _probes_and_lifecycle(ctr: Obj, grace: Any, path: str) -> Errs:
    errs: Errs = []
    lifecycle = ctr.get("lifecycle")
    if lifecycle is not None:
        for hook in ("postStart", "preStop"):
            handler = as_dict(lifecycle).get(hook)
            if handler is not None:
                errs.extend(
                    _handler(as_dict(handler), grace, f"{path}.lifecycle.{hook}", probe=False)
                )
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = ctr.get(key)
        if probe is None:
            continue
        ppath = f"{path}.{key}"
        p = as_dict(probe)
        errs.extend(_probe(p, grace, ppath))
        if key != "readinessProbe" and p.get("successThreshold", 0) != 1:
            errs.append(
                invalid(f"{ppath}.successThreshold", p.get("successThreshold", 0), "must be 1")
            )
        if key == "readinessProbe" and p.get("terminationGracePeriodSeconds") is not None:
            errs.append(
                invalid(
                    f"{ppath}.terminationGracePeriodSeconds",
                    p["terminationGracePeriodSeconds"],
                    "must not be set for readinessProbes",
                )
            )
    return errs


def _probe(probe: Obj, grace: Any, path: str) -> Errs:
    errs = _handler(probe, grace, path, probe=True)
    for key in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        errs.extend(nonnegative(f"{path}.{key}", probe.get(key, 0)))
    tgps = probe.get("terminationGracePeriodSeconds")
    if tgps is not None and _is_int(tgps) and tgps <= 0:
        errs.append(
            invalid(f"{path}.terminationGracePeriodSeconds", tgps, "must be greater than 0")
        )
    return errs


def _handler(handler: Obj, grace: Any, path: str, *, probe: bool) -> Errs:
    errs: Errs = []
    allowed = (
        ("exec", "httpGet", "tcpSocket", "grpc")
        if probe
        else ("exec", "httpGet", "tcpSocket", "sleep")
    )
    count = 0
    for key in _HANDLER_TYPES:
        if key not in allowed or handler.get(key) is None:
            continue
        if count:
            errs.append(forbidden(f"{path}.{key}", "may not specify more than 1 handler type"))
            continue
        count += 1
        errs.extend(_handler_action(key, as_dict(handler[key]), grace, f"{path}.{key}"))
    if not count:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _handler_action(kind: str, action: Obj, grace: Any, path: str) -> Errs:
    if kind == "exec":
        return [] if as_list(action.get("command")) else [required(f"{path}.command")]
    if kind == "httpGet":
        errs: Errs = []
        if not action.get("path"):
            errs.append(required(f"{path}.path"))
        errs.extend(port_num_or_name(f"{path}.port", action.get("port", 0)))
        scheme = action.get("scheme", "")
        if scheme not in ("HTTP", "HTTPS"):
            errs.append(not_supported(f"{path}.scheme", scheme, ["HTTP", "HTTPS"]))
        for header in as_list(action.get("httpHeaders")):
            hname = str(as_dict(header).get("name", ""))
            errs.extend(
                invalid(f"{path}.httpHeaders", hname, m) for m in is_http_header_name(hname)
            )
        return errs
    if kind in ("tcpSocket", "grpc"):
        return port_num_or_name(f"{path}.port", action.get("port", 0))
    seconds = action.get("seconds", 0)
    if _is_int(grace) and _is_int(seconds) and (seconds <= 0 or seconds > grace):
        return [
            invalid(
                path,
                seconds,
                f"must be greater than 0 and less than terminationGracePeriodSeconds ({grace}). "
                "Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep.",
            )
        ]
    return []


def _host_network_ports(spec: Obj, path: str, is_pod: bool) -> Errs:
    if not spec.get("hostNetwork"):
        return []
    errs: Errs = []
    for i, ctr in enumerate(as_list(spec.get("containers"))):
        for j, raw in enumerate(as_list(as_dict(ctr).get("ports"))):
            port = as_dict(raw)
            hp, cp = port.get("hostPort") or 0, port.get("containerPort") or 0
            if (is_pod or hp != 0) and hp != cp:
                errs.append(
                    invalid(
                        f"{path}.containers[{i}].ports[{j}].hostPort",
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    )
                )
    return errs


def _id_fields(sc: Obj, path: str) -> Errs:
    errs: Errs = []
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        value = sc.get(key)
        if _is_int(value) and not 0 <= value <= 0xFFFFFFFF:
            errs.append(invalid(f"{path}.{key}", value, inclusive_range_error(0, 0xFFFFFFFF)))
    return errs


def _pod_security_context(sc: Obj, path: str) -> Errs:
    errs = _id_fields(sc, path)
    for i, gid in enumerate(as_list(sc.get("supplementalGroups"))):
        if _is_int(gid) and not 0 <= gid <= 0xFFFFFFFF:
            errs.append(
                invalid(
                    f"{path}.supplementalGroups[{i}]", gid, inclusive_range_error(0, 0xFFFFFFFF)
                )
            )
    return errs


def _host_users(spec: Obj, path: str) -> Errs:
    """Upstream's validateHostUsers: no host namespace with a user namespace (its field
    names, HostPID and HostIPC capitalised, as its messages have them)."""
    if spec.get("hostUsers") is not False:
        return []
    fields = (("hostNetwork", "hostNetwork"), ("hostPID", "HostPID"), ("hostIPC", "HostIPC"))
    return [
        forbidden(f"{path}.{name}", "when `pod.Spec.HostUsers` is false")
        for key, name in fields
        if spec.get(key) is True
    ]


def _dns_config(config: Any, policy: Any, path: str) -> Errs:
    if policy == "None":
        if config is None:
            return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not as_list(as_dict(config).get("nameservers")):
            return [
                required(
                    f"{path}.nameservers",
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                )
            ]
    if config is None:
        return []
    cfg = as_dict(config)
    errs: Errs = []
    servers = as_list(cfg.get("nameservers"))
    if len(servers) > 3:
        errs.append(
            invalid(
                f"{path}.nameservers",
                go_string_slice(servers),
                "must not have more than 3 nameservers",
            )
        )
    for i, server in enumerate(servers):
        errs.extend(valid_ip(f"{path}.nameservers[{i}]", server))
    searches = [str(s) for s in as_list(cfg.get("searches"))]
    if len(searches) > 32:
        errs.append(
            invalid(
                f"{path}.searches",
                go_string_slice(searches),
                "must not have more than 32 search paths",
            )
        )
    if len(" ".join(searches)) > 2048:
        errs.append(
            invalid(
                f"{path}.searches",
                go_string_slice(searches),
                "must not have more than 2048 characters (including spaces) in the search list",
            )
        )
    for i, search in enumerate(searches):
        errs.extend(dns1123_subdomain(f"{path}.searches[{i}]", search.removesuffix(".")))
    for i, option in enumerate(as_list(cfg.get("options"))):
        if not as_dict(option).get("name"):
            errs.append(required(f"{path}.options[{i}]", "must not be empty"))
    return errs


def _tolerations(tolerations: list[Any], path: str) -> Errs:
    errs: Errs = []
    effects = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
    for i, raw in enumerate(tolerations):
        tol = as_dict(raw)
        tpath = f"{path}[{i}]"
        key, op = tol.get("key") or "", tol.get("operator") or ""
        value, effect = tol.get("value") or "", tol.get("effect") or ""
        if key:
            errs.extend(qualified_name(f"{tpath}.key", key))
        if not key and op != "Exists":
            errs.append(
                invalid(
                    f"{tpath}.operator",
                    op,
                    "operator must be Exists when `key` is empty, which means "
                    '"match all values and all keys"',
                )
            )
        if tol.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(
                invalid(
                    f"{tpath}.effect",
                    effect,
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
        if op in ("Equal", ""):
            msgs = is_label_value(value)
            if msgs:
                errs.append(invalid(f"{tpath}.operator", value, ";".join(msgs)))
        elif op == "Exists":
            if value:
                errs.append(
                    invalid(
                        f"{tpath}.operator",
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    )
                )
        else:
            errs.append(not_supported(f"{tpath}.operator", op, ["Equal", "Exists"]))
        if effect and effect not in effects:
            errs.append(not_supported(f"{tpath}.effect", effect, effects))
    return errs


def validate_pod_template_spec(template: Obj, path: str) -> Errs:
    """ValidatePodTemplateSpec: metadata labels/annotations and the spec (not a Pod)."""
    meta = as_dict(template.get("metadata"))
    errs = validate_labels(meta.get("labels"), f"{path}.labels")
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    spec = as_dict(template.get("spec"))
    errs.extend(validate_pod_spec(spec, f"{path}.spec", is_pod=False))
    if as_list(spec.get("ephemeralContainers")):
        errs.append(
            forbidden(
                f"{path}.spec.ephemeralContainers",
                "ephemeral containers not allowed in pod template",
            )
        )
    return errs


def _pod_metadata_and_spec(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    errs.extend(validate_pod_spec(spec, "spec", is_pod=True))
    for key in ("containers", "initContainers"):
        for i, ctr in enumerate(as_list(spec.get(key))):
            image = as_dict(ctr).get("image")
            if isinstance(image, str) and image != image.strip():
                errs.append(
                    invalid(
                        f"spec.{key}[{i}].image",
                        image,
                        "must not have leading or trailing whitespace",
                    )
                )
    return errs


def validate_pod(obj: Obj) -> Errs:
    errs = _pod_metadata_and_spec(obj)
    spec = as_dict(obj.get("spec"))
    if as_list(spec.get("ephemeralContainers")):
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    if spec.get("nodeName") and as_list(spec.get("schedulingGates")):
        errs.append(
            forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared")
        )
    return errs


_UPDATABLE_POD_FIELDS = ",".join(
    [
        "`spec.containers[*].image`",
        "`spec.initContainers[*].image`",
        "`spec.activeDeadlineSeconds`",
        "`spec.tolerations` (only additions to existing tolerations)",
        "`spec.terminationGracePeriodSeconds` "
        "(allow it to be set to 1 if it was previously negative)",
    ]
)


def validate_pod_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    errs.extend(_pod_metadata_and_spec(obj))
    spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
    for key in ("containers", "initContainers"):
        new_ctrs, old_ctrs = as_list(spec.get(key)), as_list(old_spec.get(key))
        if len(new_ctrs) != len(old_ctrs):
            errs.append(forbidden(f"spec.{key}", "pod updates may not add or remove containers"))
            return errs
        for i, ctr in enumerate(new_ctrs):
            if not as_dict(ctr).get("image"):
                errs.append(required(f"spec.{key}[{i}].image"))
    deadline, old_deadline = (
        spec.get("activeDeadlineSeconds"),
        old_spec.get("activeDeadlineSeconds"),
    )
    if deadline is not None:
        if not _is_int(deadline) or not 0 <= deadline <= MAX_INT32:
            errs.append(
                invalid("spec.activeDeadlineSeconds", deadline, inclusive_range_error(0, MAX_INT32))
            )
            return errs
        if _is_int(old_deadline) and old_deadline < deadline:
            errs.append(
                invalid(
                    "spec.activeDeadlineSeconds",
                    deadline,
                    "must be less than or equal to previous value",
                )
            )
            return errs
    elif old_deadline is not None:
        errs.append(
            invalid(
                "spec.activeDeadlineSeconds",
                None,
                "must not update from a positive integer to nil value",
            )
        )
    errs.extend(_only_added_tolerations(spec, old_spec))
    if spec == old_spec:
        return errs
    munged = _munge_pod_spec(spec, old_spec)
    if munged != old_spec:
        diff = _spec_diff(old_spec, munged)
        errs.append(
            forbidden(
                "spec",
                f"pod updates may not change fields other than {_UPDATABLE_POD_FIELDS}\n{diff}",
            )
        )
    return errs


def _only_added_tolerations(spec: Obj, old_spec: Obj) -> Errs:
    new = [dict(as_dict(t), tolerationSeconds=None) for t in as_list(spec.get("tolerations"))]
    for tol in as_list(old_spec.get("tolerations")):
        if dict(as_dict(tol), tolerationSeconds=None) not in new:
            return [
                forbidden(
                    "spec.tolerations",
                    "existing toleration can not be modified except its tolerationSeconds",
                )
            ]
    return _tolerations(as_list(spec.get("tolerations")), "spec.tolerations")


def _munge_pod_spec(spec: Obj, old_spec: Obj) -> Obj:
    """Copy the fields a pod update may change from old into new, as upstream does."""
    munged = json.loads(json.dumps(spec))
    for key in ("containers", "initContainers"):
        olds = as_list(old_spec.get(key))
        for i, ctr in enumerate(as_list(munged.get(key))):
            if isinstance(ctr, dict) and i < len(olds):
                if "image" in as_dict(olds[i]):
                    ctr["image"] = as_dict(olds[i])["image"]
                else:
                    ctr.pop("image", None)
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        if key in old_spec:
            munged[key] = old_spec[key]
        else:
            munged.pop(key, None)
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if _is_int(old_grace) and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    return munged


def _spec_diff(old: Obj, new: Obj) -> str:
    """A short cmp.Diff-like listing of the top-level PodSpec fields that differ."""
    lines = ["  core.PodSpec{"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        go_name = key[:1].upper() + key[1:]
        if key in old:
            lines.append(f"- \t{go_name}: {json.dumps(old[key], separators=(',', ':'))},")
        if key in new:
            lines.append(f"+ \t{go_name}: {json.dumps(new[key], separators=(',', ':'))},")
    lines.append("  }")
    return "\n".join(lines) + "\n"


def validate_pod_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
    status, old_status = as_dict(obj.get("status")), as_dict(old.get("status"))
    system = {"PodScheduled", "Ready", "Initialized"}
    for i, cond in enumerate(as_list(status.get("conditions"))):
        ctype = str(as_dict(cond).get("type") or "")
        if ctype not in system:
            errs.extend(qualified_name(f"metadata.conditions[{i}].Type", ctype))
    if spec.get("nodeName") != old_spec.get("nodeName"):
        errs.append(forbidden("status.nodeName", "may not be changed directly"))
    nominated = status.get("nominatedNodeName") or ""
    if nominated and nominated != old_status.get("nominatedNodeName"):
        errs.extend(
            invalid("status.nominatedNodeName", nominated, m)
            for m in name_is_dns_subdomain(nominated, False)
        )
    errs.extend(
        immutable("status.qosClass", status.get("qosClass") or "", old_status.get("qosClass") or "")
    )
    for key in ("podIPs", "hostIPs"):
        for i, entry in enumerate(as_list(status.get(key))):
            errs.extend(valid_ip(f"status.{key}[{i}]", as_dict(entry).get("ip", "")))
    return errs


# ===========================================================================
# Endpoints
# ===========================================================================


def validate_endpoints(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    for i, raw in enumerate(as_list(obj.get("subsets"))):
        subset = as_dict(raw)
        path = f"subsets[{i}]"
        addresses = as_list(subset.get("addresses"))
        not_ready = as_list(subset.get("notReadyAddresses"))
        if not addresses and not not_ready:
            errs.append(required(path, "must specify `addresses` or `notReadyAddresses`"))
        for j, addr in enumerate(addresses):
            errs.extend(_endpoint_address(as_dict(addr), f"{path}.addresses[{j}]"))
        for j, addr in enumerate(not_ready):
            errs.extend(_endpoint_address(as_dict(addr), f"{path}.notReadyAddresses[{j}]"))
        ports = as_list(subset.get("ports"))
        for j, port in enumerate(ports):
            errs.extend(_endpoint_port(as_dict(port), len(ports) > 1, f"{path}.ports[{j}]"))
    return errs


def _endpoint_address(addr: Obj, path: str) -> Errs:
    ip = addr.get("ip") or ""
    errs = valid_ip(f"{path}.ip", ip)
    hostname = addr.get("hostname") or ""
    if hostname:
        errs.extend(dns1123_label(f"{path}.hostname", hostname))
    node = addr.get("nodeName")
    if node is not None:
        errs.extend(
            invalid(f"{path}.nodeName", node, m) for m in name_is_dns_subdomain(str(node), False)
        )
    errs.extend(non_special_ip(f"{path}.ip", ip))
    return errs


def _endpoint_port(port: Obj, require_name: bool, path: str) -> Errs:
    errs: Errs = []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs.extend(dns1123_label(f"{path}.name", name))
    number = port.get("port", 0)
    errs.extend(invalid(f"{path}.port", number, m) for m in is_valid_port_num(number))
    errs.extend(_protocol(f"{path}.protocol", port.get("protocol")))
    if port.get("appProtocol") is not None:
        errs.extend(qualified_name(f"{path}.appProtocol", str(port["appProtocol"])))
    return errs


# ===========================================================================
# Secret, ConfigMap
# ===========================================================================


def _decoded_len(value: Any) -> int:
    try:
        return len(base64.b64decode(str(value), validate=True))
    except (binascii.Error, ValueError):
        return len(str(value))


def validate_secret(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    data = as_dict(obj.get("data"))
    total = 0
    for key, value in data.items():
        errs.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        total += _decoded_len(value)
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    errs.extend(_secret_type_rules(obj, data))
    return errs


def _secret_type_rules(obj: Obj, data: Obj) -> Errs:
    kind = obj.get("type") or ""
    if kind == "kubernetes.io/service-account-token":
        annotations = as_dict(as_dict(obj.get("metadata")).get("annotations"))
        if not annotations.get("kubernetes.io/service-account.name"):
            return [required("metadata.annotations[kubernetes.io/service-account.name]")]
    elif kind in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = ".dockercfg" if kind == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if key not in data:
            return [required(f"data[{key}]")]
        try:
            json.loads(base64.b64decode(str(data[key])))
        except (ValueError, binascii.Error) as exc:
            return [invalid(f"data[{key}]", "<secret contents redacted>", str(exc))]
    elif kind == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            return [required("data[username]"), required("data[password]")]
    elif kind == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            return [required("data[ssh-privatekey]")]
    elif kind == "kubernetes.io/tls":
        return [required(f"data[{key}]") for key in ("tls.crt", "tls.key") if key not in data]
    return []


def _immutable_data(obj: Obj, old: Obj, keys: tuple[str, ...]) -> Errs:
    if old.get("immutable") is not True:
        return []
    msg = "field is immutable when `immutable` is set"
    errs: Errs = []
    if obj.get("immutable") is not True:
        errs.append(forbidden("immutable", msg))
    errs.extend(forbidden(key, msg) for key in keys if (obj.get(key) or {}) != (old.get(key) or {}))
    return errs


def validate_secret_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    errs.extend(immutable("type", obj.get("type") or "", old.get("type") or ""))
    errs.extend(_immutable_data(obj, old, ("data",)))
    errs.extend(validate_secret(obj))
    return errs


def validate_config_map(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    data, binary = as_dict(obj.get("data")), as_dict(obj.get("binaryData"))
    total = 0
    for key, value in data.items():
        errs.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        if key in binary:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        total += utf8_len(str(value))
    for key, value in binary.items():
        errs.extend(invalid(f"binaryData[{key}]", key, m) for m in is_config_map_key(key))
        total += _decoded_len(value)
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("", MAX_SECRET_SIZE))
    return errs


def validate_config_map_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    errs.extend(_immutable_data(obj, old, ("data", "binaryData")))
    errs.extend(validate_config_map(obj))
    return errs


# ===========================================================================
# Namespace, Node, Event
# ===========================================================================


def validate_namespace(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, name_is_dns_label)
    for finalizer in as_list(as_dict(obj.get("spec")).get("finalizers")):
        errs.extend(qualified_name("spec.finalizers", str(finalizer)))
        errs.extend(kube_finalizer_name("spec.finalizers", str(finalizer)))
    return errs


def validate_namespace_status(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    phase = as_dict(obj.get("status")).get("phase") or ""
    if not as_dict(obj.get("metadata")).get("deletionTimestamp"):
        if phase != "Active":
            errs.append(
                invalid(
                    "status.Phase", phase, "may only be 'Active' if `deletionTimestamp` is empty"
                )
            )
    elif phase != "Terminating":
        errs.append(
            invalid(
                "status.Phase",
                phase,
                "may only be 'Terminating' if `deletionTimestamp` is not empty",
            )
        )
    return errs


def validate_node(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, name_is_dns_subdomain)
    spec = as_dict(obj.get("spec"))
    errs.extend(_taints(as_list(spec.get("taints")), "metadata.taints"))
    cidrs = as_list(spec.get("podCIDRs"))
    for i, cidr in enumerate(cidrs):
        errs.extend(valid_cidr(f"spec.podCIDRs[{i}]", cidr))
    if len(cidrs) > 1:
        families = {":" in str(c) for c in cidrs}
        if len(families) != len(cidrs) or len(cidrs) > 2:
            errs.append(
                invalid(
                    "spec.podCIDRs",
                    go_string_slice(cidrs),
                    "may specify no more than one CIDR for each IP family",
                )
            )
        seen = Seen()
        for i, cidr in enumerate(cidrs):
            if cidr in seen:
                errs.append(duplicate(f"spec.podCIDRs[{i}]", cidr))
            seen.add(cidr)
    return errs


def _taints(taints: list[Any], path: str) -> Errs:
    errs: Errs = []
    effects = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
    seen = Seen()
    for i, raw in enumerate(taints):
        taint = as_dict(raw)
        tpath = f"{path}[{i}]"
        key, value, effect = (str(taint.get(k) or "") for k in ("key", "value", "effect"))
        errs.extend(qualified_name(f"{tpath}.key", key))
        msgs = is_label_value(value)
        if msgs:
            errs.append(invalid(f"{tpath}.value", value, ";".join(msgs)))
        if not effect:
            errs.append(required(f"{tpath}.effect"))
        elif effect not in effects:
            errs.append(not_supported(f"{tpath}.effect", effect, effects))
        if (effect, key) in seen:
            errs.append(
                FieldError(
                    "Duplicate",
                    tpath,
                    "taints must be unique by key and effect pair",
                    _go_taint(taint),
                )
            )
            continue
        seen.add((effect, key))
    return errs


def _go_taint(taint: Obj) -> GoLiteral:
    return GoLiteral(
        f"core.Taint{{Key:{go_quote(str(taint.get('key') or ''))}, "
        f"Value:{go_quote(str(taint.get('value') or ''))}, "
        f"Effect:{go_quote(str(taint.get('effect') or ''))}, TimeAdded:<nil>}}"
    )


def validate_node_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
    seen: list[Any] = []
    for i, addr in enumerate(as_list(as_dict(obj.get("status")).get("addresses"))):
        if addr in seen:
            errs.append(duplicate(f"status.addresses[{i}]", GoLiteral(json.dumps(addr))))
        seen.append(addr)
    old_cidrs = as_list(old_spec.get("podCIDRs"))
    if old_cidrs and old_cidrs != as_list(spec.get("podCIDRs")):
        errs.append(
            forbidden(
                "spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'
            )
        )
    old_provider = old_spec.get("providerID") or ""
    if old_provider and old_provider != (spec.get("providerID") or ""):
        errs.append(
            forbidden(
                "spec.providerID", 'node updates may not change providerID except from "" to valid'
            )
        )
    errs.extend(_taints(as_list(spec.get("taints")), "metadata.taints"))
    if spec.get("externalID") != old_spec.get("externalID"):
        errs.append(forbidden("spec.externalID", "may not be updated"))
    return errs


def validate_event(obj: Obj) -> Errs:
    """ValidateEventCreate for core/v1 Events (legacyValidateEvent)."""
    errs = validate_object_meta(obj, True, name_is_dns_subdomain)
    namespace = as_dict(obj.get("metadata")).get("namespace") or ""
    involved_ns = as_dict(obj.get("involvedObject")).get("namespace") or ""
    if not obj.get("eventTime"):
        mismatch = namespace not in ("", "default") if not involved_ns else namespace != involved_ns
        if mismatch:
            errs.append(
                invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
            )
    else:
        errs.extend(_new_style_event(obj))
    errs.extend(invalid("namespace", namespace, m) for m in is_dns1123_subdomain(namespace))
    return errs


def _new_style_event(obj: Obj) -> Errs:
    errs: Errs = []
    controller = obj.get("reportingComponent") or ""
    if not controller:
        errs.append(required("reportingComponent"))
    errs.extend(qualified_name("reportingComponent", controller))
    limits = (("reportingInstance", 128), ("action", 128), ("reason", 128))
    for key, limit in limits:
        value = obj.get(key) or ""
        if not value:
            errs.append(required(key))
        elif not isinstance(value, str):
            errs.append(invalid(key, value, NOT_A_STRING))
        elif len(value) > limit:
            errs.append(invalid(key, "", f"can have at most {limit} characters"))
    message = obj.get("message") or ""
    if not isinstance(message, str):
        errs.append(invalid("message", message, NOT_A_STRING))
    elif len(message) > 1024:
        errs.append(invalid("message", "", "can have at most 1024 characters"))
    return errs


def validate_event_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old)
    if not old.get("eventTime"):
        # legacy recorders patch count, lastTimestamp and message of old-style events
        return errs + validate_event(obj)
    for key in (
        "involvedObject",
        "reason",
        "source",
        "firstTimestamp",
        "reportingComponent",
        "reportingInstance",
        "action",
    ):
        errs.extend(immutable(key, obj.get(key), old.get(key), shown=_shown(obj.get(key))))
    errs.extend(validate_event(obj))
    return errs


def _shown(value: Any) -> Any:
    if isinstance(value, dict | list):
        return GoLiteral(json.dumps(value, separators=(",", ":")))
    return value
