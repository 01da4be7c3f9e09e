"""Validation messages and paths, checked against upstream's exact wording."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kubesvc.api.defaults import apply_defaults, prepare_for_update
from kubesvc.api.validation import validate, validate_status_update

Obj = dict[str, Any]

DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
NAME_PART = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
    "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def _service(**spec: Any) -> Obj:
    base: Obj = {"ports": [{"port": 80}], "selector": {"app": "web"}}
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": base}


def _pod(**spec: Any) -> Obj:
    base: Obj = {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    base.update(spec)
    return {"metadata": {"name": "pod", "namespace": "default"}, "spec": base}


def _template(labels: Obj | None = None) -> Obj:
    return {
        "metadata": {"labels": {"app": "web"} if labels is None else labels},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
    }


def _deployment(**spec: Any) -> Obj:
    base: Obj = {"selector": {"matchLabels": {"app": "web"}}, "template": _template()}
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": base}


def _ingress(**spec: Any) -> Obj:
    return {"metadata": {"name": "ing", "namespace": "default"}, "spec": spec}


def _backend(name: str = "web", number: int = 80) -> Obj:
    return {"service": {"name": name, "port": {"number": number}}}


def _slice(**body: Any) -> Obj:
    base: Obj = {"addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.5"]}]}
    base.update(body)
    return {"metadata": {"name": "web-abc", "namespace": "default"}, **base}


def _messages(kind: str, obj: Obj, old: Obj | None = None) -> list[str]:
    obj = copy.deepcopy(obj)
    if old is not None:
        old = copy.deepcopy(old)
        apply_defaults(kind, old)
        prepare_for_update(kind, obj, old)
    apply_defaults(kind, obj)
    return [str(e) for e in validate(kind, obj, old)]


# ---------------------------------------------------------------------------
# creates: (kind, object, expected full messages)
# ---------------------------------------------------------------------------

CREATE_CASES = [
    pytest.param("Service", _service(), [], id="service-valid"),
    pytest.param(
        "Service",
        {**_service(), "metadata": {"name": "Foo", "namespace": "default"}},
        [f'metadata.name: Invalid value: "Foo": {DNS1035}'],
        id="service-name-dns1035",
    ),
    pytest.param(
        "Service",
        {"metadata": {"namespace": "default"}, "spec": {"ports": [{"port": 80}]}},
        ["metadata.name: Required value: name or generateName is required"],
        id="name-required",
    ),
    pytest.param(
        "Service",
        {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
        ["metadata.namespace: Required value"],
        id="namespace-required",
    ),
    pytest.param(
        "Service", _service(ports=[]), ["spec.ports: Required value"], id="ports-required"
    ),
    pytest.param("Service", _service(ports=[], clusterIP="None"), [], id="headless-no-ports"),
    pytest.param(
        "Service",
        _service(ports=[{"port": 80, "name": "http"}, {"port": 81}]),
        ["spec.ports[1].name: Required value"],
        id="multiport-name-required",
    ),
    pytest.param(
        "Service",
        _service(ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]),
        ['spec.ports[1].name: Duplicate value: "a"'],
        id="port-name-duplicate",
    ),
    pytest.param(
        "Service",
        _service(ports=[{"port": 0, "targetPort": 80}]),
        ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"],
        id="port-range",
    ),
    pytest.param(
        "Service",
        _service(ports=[{"port": 80, "targetPort": 70000}]),
        ["spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"],
        id="target-port-range",
    ),
    pytest.param(
        "Service",
        _service(ports=[{"port": 80, "targetPort": "http--x"}]),
        [
            'spec.ports[0].targetPort: Invalid value: "http--x": '
            "must not contain consecutive hyphens"
        ],
        id="target-port-name",
    ),
    pytest.param(
        "Service",
        _service(ports=[{"port": 80, "protocol": "ICMP"}]),
        [
            'spec.ports[0].protocol: Unsupported value: "ICMP": '
            'supported values: "SCTP", "TCP", "UDP"'
        ],
        id="protocol",
    ),
    pytest.param(
        "Service",
        _service(type="Foo"),
        [
            'spec.type: Unsupported value: "Foo": supported values: '
            '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'
        ],
        id="type-unsupported",
    ),
    pytest.param(
        "Service",
        _service(ports=[{"port": 80, "nodePort": 30080}]),
        ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        id="nodeport-on-clusterip",
    ),
    pytest.param(
        "Service",
        _service(type="NodePort", ports=[{"port": 80, "nodePort": 30080}]),
        [],
        id="nodeport-valid",
    ),
    pytest.param(
        "Service",
        _service(type="NodePort", clusterIP="None"),
        [
            'spec.clusterIPs[0]: Invalid value: "None": '
            "may not be set to 'None' for NodePort services"
        ],
        id="headless-nodeport",
    ),
    pytest.param(
        "Service",
        _service(type="ExternalName", ports=[]),
        ["spec.externalName: Required value"],
        id="externalname-required",
    ),
    pytest.param(
        "Service",
        _service(type="ExternalName", externalName="Bad_Name.example.com"),
        [f'spec.externalName: Invalid value: "Bad_Name.example.com": {DNS1123_SUBDOMAIN}'],
        id="externalname-invalid",
    ),
    pytest.param(
        "Service",
        _service(type="ExternalName", externalName="db.example.com.", ports=[]),
        [],
        id="externalname-trailing-dot",
    ),
    pytest.param(
        "Service",
        _service(type="ExternalName", externalName="db.example.com", clusterIP="10.0.0.1"),
        ["spec.clusterIPs: Forbidden: may not be set for ExternalName services"],
        id="externalname-clusterip",
    ),
    pytest.param(
        "Service",
        _service(clusterIP="10.0.0.300"),
        [
            'spec.clusterIPs[0]: Invalid value: "10.0.0.300": must be a valid IP address, '
            "(e.g. 10.9.8.7 or 2001:db8::ffff)"
        ],
        id="clusterip-invalid",
    ),
    pytest.param(
        "Service",
        _service(sessionAffinity="Sticky"),
        ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"'],
        id="affinity-unsupported",
    ),
    pytest.param(
        "Service",
        _service(
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}},
        ),
        [
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: "
            "must be greater than 0 and less than 86400"
        ],
        id="affinity-timeout",
    ),
    pytest.param(
        "Service",
        _service(externalTrafficPolicy="Local"),
        [
            'spec.externalTrafficPolicy: Invalid value: "Local": '
            "may only be set for externally-accessible services"
        ],
        id="etp-on-clusterip",
    ),
    pytest.param(
        "Service",
        _service(type="NodePort", externalTrafficPolicy="Foo"),
        [
            'spec.externalTrafficPolicy: Unsupported value: "Foo": '
            'supported values: "Cluster", "Local"'
        ],
        id="etp-unsupported",
    ),
    pytest.param(
        "Service",
        _service(internalTrafficPolicy="Nearby"),
        [
            'spec.internalTrafficPolicy: Unsupported value: "Nearby": '
            'supported values: "Cluster", "Local"'
        ],
        id="itp-unsupported",
    ),
    pytest.param(
        "Service",
        _service(ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]),
        [
            'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", '
            "AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, "
            'IntVal:0, StrVal:""}, NodePort:0}'
        ],
        id="duplicate-port-protocol",
    ),
    pytest.param(
        "Service",
        _service(ports=[{"port": 53, "name": "a"}, {"port": 53, "name": "b", "protocol": "UDP"}]),
        [],
        id="same-port-different-protocols",
    ),
    pytest.param(
        "Service",
        _service(selector={"app": "a b"}),
        [f'spec.selector: Invalid value: "a b": {LABEL_VALUE}'],
        id="selector-value",
    ),
    pytest.param(
        "Service",
        _service(externalIPs=["1.2.3.4", "127.0.0.1"]),
        [
            'spec.externalIPs[1]: Invalid value: "127.0.0.1": '
            "may not be in the loopback range (127.0.0.0/8, ::1/128)"
        ],
        id="external-ip-loopback",
    ),
    pytest.param(
        "Service",
        _service(type="LoadBalancer", loadBalancerSourceRanges=["10.0.0.0/8", "nope"]),
        [
            'spec.LoadBalancerSourceRanges[1]: Invalid value: "nope": must be a valid CIDR '
            "value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        ],
        id="source-ranges",
    ),
    pytest.param(
        "Service",
        _service(loadBalancerSourceRanges=["10.0.0.0/8"]),
        [
            "spec.LoadBalancerSourceRanges: Forbidden: "
            "may only be used when `type` is 'LoadBalancer'"
        ],
        id="source-ranges-not-lb",
    ),
    # metadata
    pytest.param(
        "ConfigMap",
        {"metadata": {"name": "cm", "namespace": "default", "labels": {"a b": "x"}}},
        [f'metadata.labels: Invalid value: "a b": {NAME_PART}'],
        id="label-key",
    ),
    pytest.param(
        "ConfigMap",
        {"metadata": {"name": "cm", "namespace": "default", "labels": {"x": "-bad"}}},
        [f'metadata.labels: Invalid value: "-bad": {LABEL_VALUE}'],
        id="label-value",
    ),
    pytest.param(
        "ConfigMap",
        {"metadata": {"name": "cm", "namespace": "default", "annotations": {"k": "x" * 262145}}},
        ["metadata.annotations: Too long: may not be more than 262144 bytes"],
        id="annotations-size",
    ),
    pytest.param(
        "ConfigMap",
        {
            "metadata": {
                "name": "cm",
                "namespace": "default",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p"}],
            }
        },
        ['metadata.ownerReferences.uid: Invalid value: "": must not be empty'],
        id="owner-reference-uid",
    ),
    pytest.param(
        "Namespace",
        {"metadata": {"name": "Prod"}},
        [f'metadata.name: Invalid value: "Prod": {DNS1123_LABEL}'],
        id="namespace-name",
    ),
    pytest.param(
        "Namespace",
        {"metadata": {"name": "a.b"}},
        ['metadata.name: Invalid value: "a.b": must not contain dots'],
        id="namespace-name-dots",
    ),
    pytest.param(
        "ConfigMap",
        {"metadata": {"name": "My.Config", "namespace": "default"}},
        [f'metadata.name: Invalid value: "My.Config": {DNS1123_SUBDOMAIN}'],
        id="subdomain-name",
    ),
    # pods
    pytest.param("Pod", _pod(), [], id="pod-valid"),
    pytest.param("Pod", _pod(containers=[]), ["spec.containers: Required value"], id="containers"),
    pytest.param(
        "Pod",
        _pod(containers=[{"name": "app"}]),
        ["spec.containers[0].image: Required value"],
        id="image-required",
    ),
    pytest.param(
        "Pod",
        _pod(containers=[{"name": "App", "image": "x:1"}]),
        [f'spec.containers[0].name: Invalid value: "App": {DNS1123_LABEL}'],
        id="container-name",
    ),
    pytest.param(
        "Pod",
        _pod(containers=[{"name": "a", "image": "x:1"}, {"name": "a", "image": "y:1"}]),
        ['spec.containers[1].name: Duplicate value: "a"'],
        id="container-name-duplicate",
    ),
    pytest.param(
        "Pod",
        _pod(restartPolicy="Sometimes"),
        [
            'spec.restartPolicy: Unsupported value: "Sometimes": '
            'supported values: "Always", "OnFailure", "Never"'
        ],
        id="restart-policy",
    ),
    pytest.param(
        "Pod",
        _pod(dnsPolicy="Fancy"),
        [
            'spec.dnsPolicy: Unsupported value: "Fancy": supported values: '
            '"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"'
        ],
        id="dns-policy",
    ),
    pytest.param(
        "Pod",
        _pod(dnsPolicy="None"),
        ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"],
        id="dns-none-needs-config",
    ),
    pytest.param(
        "Pod",
        _pod(dnsPolicy="None", dnsConfig={"searches": ["a.svc"]}),
        [
            "spec.dnsConfig.nameservers: Required value: must provide at least one DNS "
            "nameserver when `dnsPolicy` is None"
        ],
        id="dns-none-needs-nameserver",
    ),
    pytest.param(
        "Pod",
        _pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "options": [{}]}),
        ["spec.dnsConfig.options[0]: Required value: must not be empty"],
        id="dns-option-name",
    ),
    pytest.param(
        "Pod",
        _pod(hostname="Web_1", subdomain="svc"),
        [f'spec.hostname: Invalid value: "Web_1": {DNS1123_LABEL}'],
        id="hostname",
    ),
    pytest.param(
        "Pod",
        _pod(containers=[{"name": "a", "image": "x:1", "ports": [{"containerPort": 0}]}]),
        ["spec.containers[0].ports[0].containerPort: Required value"],
        id="container-port-required",
    ),
    pytest.param(
        "Pod",
        _pod(
            containers=[
                {"name": "a", "image": "x:1", "livenessProbe": {"successThreshold": 2, "exec": {}}}
            ]
        ),
        [
            "spec.containers[0].livenessProbe.exec.command: Required value",
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        ],
        id="liveness-probe",
    ),
    pytest.param(
        "Pod",
        _pod(containers=[{"name": "a", "image": "x:1", "readinessProbe": {}}]),
        ["spec.containers[0].readinessProbe: Required value: must specify a handler type"],
        id="probe-handler",
    ),
    # workloads
    pytest.param("Deployment", _deployment(), [], id="deployment-valid"),
    pytest.param(
        "Deployment",
        _deployment(template=_template({"app": "other"})),
        [
            'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: '
            "`selector` does not match template `labels`"
        ],
        id="selector-mismatch",
    ),
    pytest.param(
        "Deployment",
        _deployment(selector=None),
        ["spec.selector: Required value"],
        id="selector-required",
    ),
    pytest.param(
        "Deployment",
        _deployment(replicas=-1),
        ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        id="replicas-negative",
    ),
    pytest.param(
        "Deployment",
        _deployment(
            strategy={
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0},
            }
        ),
        [
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "
            'intstr.IntOrString{Type:0, IntVal:0, StrVal:""}: may not be 0 when `maxSurge` is 0'
        ],
        id="strategy-zero",
    ),
    pytest.param(
        "Deployment",
        _deployment(
            template={**_template(), "spec": {**_template()["spec"], "restartPolicy": "Never"}}
        ),
        [
            'spec.template.spec.restartPolicy: Unsupported value: "Never": '
            'supported values: "Always"'
        ],
        id="template-restart-policy",
    ),
    pytest.param(
        "ReplicaSet",
        {**_deployment(), "metadata": {"name": "web-1", "namespace": "default"}},
        [],
        id="replicaset-valid",
    ),
    # networking
    pytest.param(
        "Ingress",
        _ingress(rules=[{"http": {"paths": [{"path": "/", "backend": _backend()}]}}]),
        ["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"],
        id="path-type-required",
    ),
    pytest.param(
        "Ingress",
        _ingress(
            rules=[{"http": {"paths": [{"path": "/", "pathType": "Glob", "backend": _backend()}]}}]
        ),
        [
            'spec.rules[0].http.paths[0].pathType: Unsupported value: "Glob": '
            'supported values: "Exact", "ImplementationSpecific", "Prefix"'
        ],
        id="path-type-unsupported",
    ),
    pytest.param(
        "Ingress",
        _ingress(
            rules=[
                {
                    "host": "*.foo.com",
                    "http": {"paths": [{"path": "a", "pathType": "Prefix", "backend": _backend()}]},
                }
            ]
        ),
        ['spec.rules[0].http.paths[0].path: Invalid value: "a": must be an absolute path'],
        id="path-absolute",
    ),
    pytest.param(
        "Ingress",
        _ingress(),
        [
            "spec: Invalid value: []networking.IngressRule(nil): "
            "either `defaultBackend` or `rules` must be specified"
        ],
        id="rules-or-default",
    ),
    pytest.param(
        "Ingress",
        _ingress(defaultBackend={"service": {"name": "web", "port": {}}}),
        ["spec.defaultBackend: Required value: port name or number is required"],
        id="backend-port",
    ),
    pytest.param(
        "Ingress",
        _ingress(rules=[{"host": "10.0.0.1"}]),
        ['spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address'],
        id="host-ip",
    ),
    pytest.param(
        "IngressClass",
        {"metadata": {"name": "nginx"}, "spec": {}},
        ["spec.controller: Required value"],
        id="ingressclass-controller",
    ),
    pytest.param(
        "IngressClass",
        {"metadata": {"name": "nginx"}, "spec": {"controller": "example.com/ingress"}},
        [],
        id="ingressclass-valid",
    ),
    # discovery
    pytest.param("EndpointSlice", _slice(), [], id="slice-valid"),
    pytest.param(
        "EndpointSlice",
        _slice(addressType="IP"),
        ['addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6"'],
        id="slice-address-type",
    ),
    pytest.param(
        "EndpointSlice",
        _slice(endpoints=[{"addresses": []}]),
        ["endpoints[0].addresses: Required value: must contain at least 1 address"],
        id="slice-addresses-required",
    ),
    pytest.param(
        "EndpointSlice",
        _slice(endpoints=[{"addresses": [f"10.0.0.{i}" for i in range(1, 102)]}]),
        ["endpoints[0].addresses: Too many: 101: must have at most 100 items"],
        id="slice-too-many",
    ),
    pytest.param(
        "EndpointSlice",
        _slice(endpoints=[{"addresses": ["fd00::1"]}]),
        ['endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address'],
        id="slice-ipv4",
    ),
    # core odds and ends
    pytest.param(
        "Endpoints",
        {
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "nope"}]}],
        },
        [
            'subsets[0].addresses[0].ip: Invalid value: "nope": must be a valid IP address, '
            "(e.g. 10.9.8.7 or 2001:db8::ffff)",
            'subsets[0].addresses[0].ip: Invalid value: "nope": must be a valid IP address',
        ],
        id="endpoints-ip",
    ),
    pytest.param(
        "Secret",
        {"metadata": {"name": "s", "namespace": "default"}, "type": "kubernetes.io/tls"},
        ["data[tls.crt]: Required value", "data[tls.key]: Required value"],
        id="secret-tls",
    ),
    pytest.param(
        "Secret",
        {"metadata": {"name": "s", "namespace": "default"}, "data": {"a/b": "eA=="}},
        [
            'data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric '
            "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', "
            "regex used for validation is '[-._a-zA-Z0-9]+')"
        ],
        id="secret-key",
    ),
    pytest.param(
        "ConfigMap",
        {"metadata": {"name": "c", "namespace": "default"}, "data": {"..x": "1"}},
        ["data[..x]: Invalid value: \"..x\": must not start with '..'"],
        id="configmap-key",
    ),
    pytest.param(
        "Lease",
        {
            "metadata": {"name": "l", "namespace": "kube-node-lease"},
            "spec": {"leaseDurationSeconds": 0},
        },
        ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"],
        id="lease-duration",
    ),
    pytest.param(
        "Event",
        {
            "metadata": {"name": "e.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "namespace": "other", "name": "p"},
        },
        ['involvedObject.namespace: Invalid value: "other": does not match event.namespace'],
        id="event-namespace",
    ),
    pytest.param("Node", {"metadata": {"name": "node-1.example"}}, [], id="node-valid"),
    pytest.param(
        "Pod",
        _pod(hostUsers=False, hostNetwork=True, hostPID=True, hostIPC=True),
        [
            "spec.securityContext.hostNetwork: Forbidden: when `pod.Spec.HostUsers` is false",
            "spec.securityContext.HostPID: Forbidden: when `pod.Spec.HostUsers` is false",
            "spec.securityContext.HostIPC: Forbidden: when `pod.Spec.HostUsers` is false",
        ],
        id="pod-host-users-false-with-host-namespaces",
    ),
    pytest.param("Pod", _pod(hostUsers=True, hostPID=True), [], id="pod-host-users-true"),
]


@pytest.mark.parametrize(("kind", "obj", "expected"), CREATE_CASES)
def test_create(kind: str, obj: Obj, expected: list[str]) -> None:
    assert _messages(kind, obj) == expected


# ---------------------------------------------------------------------------
# updates: (kind, old, mutate(new), expected)
# ---------------------------------------------------------------------------


def _stored(kind: str, obj: Obj, **spec: Any) -> Obj:
    obj = copy.deepcopy(obj)
    if spec:
        obj.setdefault("spec", {}).update(spec)
    obj["metadata"].update(resourceVersion="5", uid="uid-1")
    apply_defaults(kind, obj)
    return obj


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, last = path.split(".")
        node = obj
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


UPDATE_CASES = [
    pytest.param(
        "Service",
        _stored("Service", _service(), clusterIP="10.96.0.10"),
        _set("spec.clusterIP", "10.96.0.11"),
        [
            'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.11"}: may not change once set',
        ],
        id="clusterip-immutable",
    ),
    pytest.param(
        "Service",
        _stored("Service", _service(), clusterIP="10.96.0.10"),
        lambda o: o["spec"].update(type="ExternalName", externalName="db.example.com"),
        [],
        id="clusterip-to-externalname",
    ),
    pytest.param(
        "Service",
        _stored("Service", _service(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])),
        _set("spec.type", "ClusterIP"),
        [],
        id="nodeport-to-clusterip-drops-node-ports",
    ),
    pytest.param(
        "Service",
        _stored("Service", _service(), clusterIP="10.96.0.10"),
        _set("metadata.uid", "uid-2"),
        ['metadata.uid: Invalid value: "uid-2": field is immutable'],
        id="uid-immutable",
    ),
    pytest.param(
        "Service",
        _stored("Service", _service(), clusterIP="10.96.0.10"),
        _set("metadata.name", "other"),
        ['metadata.name: Invalid value: "other": field is immutable'],
        id="name-immutable",
    ),
    pytest.param(
        "Deployment",
        _stored("Deployment", _deployment()),
        lambda o: o["spec"].update(
            selector={"matchLabels": {"app": "new"}}, template=_template({"app": "new"})
        ),
        [
            'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":'
            '"new"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable'
        ],
        id="deployment-selector-immutable",
    ),
    pytest.param(
        "Pod",
        _stored("Pod", _pod()),
        _set("spec.containers", [{"name": "app", "image": "nginx:1.26"}]),
        [],
        id="pod-image-update",
    ),
    pytest.param(
        "IngressClass",
        _stored("IngressClass", {"metadata": {"name": "c"}, "spec": {"controller": "a.io/x"}}),
        _set("spec.controller", "b.io/y"),
        ['spec.controller: Invalid value: "b.io/y": field is immutable'],
        id="ingressclass-controller-immutable",
    ),
    pytest.param(
        "Secret",
        _stored("Secret", {"metadata": {"name": "s", "namespace": "d"}}),
        _set("type", "kubernetes.io/basic-auth"),
        [
            'type: Invalid value: "kubernetes.io/basic-auth": field is immutable',
            "data[username]: Required value",
            "data[password]: Required value",
        ],
        id="secret-type-immutable",
    ),
]


@pytest.mark.parametrize(("kind", "old", "mutate", "expected"), UPDATE_CASES)
def test_update(kind: str, old: Obj, mutate: Callable[[Obj], None], expected: list[str]) -> None:
    new = copy.deepcopy(old)
    mutate(new)
    assert _messages(kind, new, old) == expected


def test_pod_spec_update_forbidden() -> None:
    old = _stored("Pod", _pod())
    new = copy.deepcopy(old)
    new["spec"]["restartPolicy"] = "Never"
    messages = _messages("Pod", new, old)
    assert len(messages) == 1
    assert messages[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than "
        "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
        "`spec.tolerations` (only additions to existing tolerations),"
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)\n"
    )
    assert '+ \tRestartPolicy: "Never",' in messages[0]


def test_unconditional_update_without_resource_version() -> None:
    old = _stored("ConfigMap", {"metadata": {"name": "c", "namespace": "d"}})
    new = copy.deepcopy(old)
    del new["metadata"]["resourceVersion"]
    assert _messages("ConfigMap", new, old) == []


@pytest.mark.parametrize(
    ("kind", "old", "status", "expected"),
    [
        pytest.param(
            "Service",
            _stored("Service", _service()),
            {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ipMode": "VIP"}]}},
            [
                "status.loadBalancer.ingress: Forbidden: "
                "may only be used when `spec.type` is 'LoadBalancer'"
            ],
            id="service-lb-status-not-lb",
        ),
        pytest.param(
            "Service",
            _stored("Service", _service(type="LoadBalancer")),
            {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
            [
                "status.loadBalancer.ingress[0].ipMode: Required value: "
                "must be specified when `ip` is set"
            ],
            id="service-lb-status-ipmode",
        ),
        pytest.param(
            "Deployment",
            _stored("Deployment", _deployment()),
            {"replicas": 1, "readyReplicas": 2},
            [
                "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas",
            ],
            id="deployment-status-counts",
        ),
    ],
)
def test_status_update(kind: str, old: Obj, status: Obj, expected: list[str]) -> None:
    new = copy.deepcopy(old)
    new["status"] = status
    assert [str(e) for e in validate_status_update(kind, new, old)] == expected
