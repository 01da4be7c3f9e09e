"""Container environment: service links, envFrom/env, $(VAR) expansion, downward API."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubesvc.node.podenv import (
    DictLookup,
    container_env,
    expand,
    field_ref_value,
    parse_quantity,
    resource_field_value,
    service_env,
)

Obj = dict[str, Any]


def svc(name: str, ns: str, ip: str | None, ports: list[Obj] | None = None, **spec: Any) -> Obj:
    s: Obj = {"metadata": {"name": name, "namespace": ns}, "spec": {"ports": ports or [], **spec}}
    if ip is not None:
        s["spec"]["clusterIP"] = ip
    return s


KUBERNETES = svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443}])
MY_SVC = svc(
    "my-svc",
    "ns1",
    "10.0.0.11",
    [
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "metrics-udp", "port": 9090, "protocol": "UDP"},
    ],
)


def test_service_env_matches_reference_example() -> None:
    got = service_env([MY_SVC], "ns1", True)
    assert got == [
        ("MY_SVC_SERVICE_HOST", "10.0.0.11"),
        ("MY_SVC_SERVICE_PORT", "80"),
        ("MY_SVC_SERVICE_PORT_HTTP", "80"),
        ("MY_SVC_SERVICE_PORT_METRICS_UDP", "9090"),
        ("MY_SVC_PORT", "tcp://10.0.0.11:80"),
        ("MY_SVC_PORT_80_TCP", "tcp://10.0.0.11:80"),
        ("MY_SVC_PORT_80_TCP_PROTO", "tcp"),
        ("MY_SVC_PORT_80_TCP_PORT", "80"),
        ("MY_SVC_PORT_80_TCP_ADDR", "10.0.0.11"),
        ("MY_SVC_PORT_9090_UDP", "udp://10.0.0.11:9090"),
        ("MY_SVC_PORT_9090_UDP_PROTO", "udp"),
        ("MY_SVC_PORT_9090_UDP_PORT", "9090"),
        ("MY_SVC_PORT_9090_UDP_ADDR", "10.0.0.11"),
    ]


def test_service_env_kubernetes_service() -> None:
    got = dict(service_env([KUBERNETES], "ns1", False))
    assert got == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
    }


def names(services: list[Obj], ns: str, links: bool) -> set[str]:
    return {
        k.split("_SERVICE_HOST")[0]
        for k, _ in service_env(services, ns, links)
        if k.endswith("_SERVICE_HOST")
    }


OTHER = svc("other", "ns2", "10.0.0.12", [{"port": 81}])
DEFAULT_WEB = svc("web", "default", "10.0.0.13", [{"port": 82}])


@pytest.mark.parametrize(
    ("services", "ns", "links", "want"),
    [
        pytest.param(
            [KUBERNETES, MY_SVC, OTHER], "ns1", True, {"KUBERNETES", "MY_SVC"}, id="same-ns-only"
        ),
        pytest.param([KUBERNETES, MY_SVC], "ns1", False, {"KUBERNETES"}, id="links-disabled"),
        pytest.param(
            [KUBERNETES, DEFAULT_WEB], "ns1", True, {"KUBERNETES"}, id="default-ns-not-master"
        ),
        pytest.param(
            [KUBERNETES, DEFAULT_WEB], "default", True, {"KUBERNETES", "WEB"}, id="pod-in-default"
        ),
        pytest.param(
            [KUBERNETES, DEFAULT_WEB], "default", False, {"KUBERNETES"}, id="default-no-links"
        ),
        pytest.param([svc("h", "ns1", "None", [{"port": 1}])], "ns1", True, set(), id="headless"),
        pytest.param(
            [svc("e", "ns1", None, [{"port": 1}])], "ns1", True, set(), id="no-cluster-ip"
        ),
        pytest.param(
            [svc("x", "ns1", None, type="ExternalName", externalName="a.b")],
            "ns1",
            True,
            set(),
            id="external-name",
        ),
    ],
)
def test_service_env_selection(services: list[Obj], ns: str, links: bool, want: set[str]) -> None:
    assert names(services, ns, links) == want


@pytest.mark.parametrize(
    "order", [pytest.param(False, id="default-first"), pytest.param(True, id="ns-first")]
)
def test_pod_namespace_service_shadows_master(order: bool) -> None:
    mine = svc("kubernetes", "ns1", "10.0.0.99", [{"port": 8443}])
    services = [mine, KUBERNETES] if order else [KUBERNETES, mine]
    got = dict(service_env(services, "ns1", True))
    assert got["KUBERNETES_SERVICE_HOST"] == "10.0.0.99"
    assert got["KUBERNETES_SERVICE_PORT"] == "8443"
    assert "KUBERNETES_SERVICE_PORT_HTTPS" not in got


def test_service_env_order_is_by_name() -> None:
    b = svc("b", "ns1", "10.0.0.2", [{"port": 2}])
    a = svc("a", "ns1", "10.0.0.1", [{"port": 1}])
    keys = [k for k, _ in service_env([b, a], "ns1", True)]
    assert keys.index("A_SERVICE_HOST") < keys.index("B_SERVICE_HOST")


# --- expansion --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param("$(A)", "a", id="simple"),
        pytest.param("x$(A)y$(B)z", "xaybz", id="several"),
        pytest.param("$(MISSING)", "$(MISSING)", id="undefined-literal"),
        pytest.param("$$(A)", "$(A)", id="escaped"),
        pytest.param("$$$(A)", "$a", id="escape-then-ref"),
        pytest.param("$$", "$", id="double-dollar"),
        pytest.param("$(A", "$(A", id="unterminated"),
        pytest.param("$A", "$A", id="bare-dollar"),
        pytest.param("a$", "a$", id="trailing-dollar"),
        pytest.param("$()", "$()", id="empty-name-undefined"),
        pytest.param("$(A)$(A)", "aa", id="adjacent"),
        pytest.param("$(EMPTY)x", "x", id="defined-empty"),
        pytest.param("", "", id="empty"),
        pytest.param("no refs", "no refs", id="plain"),
    ],
)
def test_expand(text: str, want: str) -> None:
    assert expand(text, {"A": "a", "B": "b", "EMPTY": ""}) == want


# --- container_env ----------------------------------------------------------------------


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


LOOKUP = DictLookup(
    config_maps={("ns1", "cfg"): {"data": {"color": "blue", "size": "L"}}},
    secrets={("ns1", "sec"): {"data": {"password": b64("s3cret"), "user": b64("admin")}}},
)


def pod(**spec: Any) -> Obj:
    return {
        "metadata": {
            "name": "p1",
            "namespace": "ns1",
            "uid": "uid-1",
            "labels": {"app": "web", "tier": "fe"},
            "annotations": {"note": 'say "hi"'},
        },
        "spec": {"nodeName": "node-a", "serviceAccountName": "sa1", **spec},
        "status": {"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}], "hostIP": "172.18.0.2"},
    }


def env_of(
    container: Obj, services: list[tuple[str, str]] | None = None, **kw: Any
) -> tuple[dict[str, str], list[str]]:
    return container_env(pod(), {"name": "c", **container}, services or [], LOOKUP, **kw)


def test_env_values_and_order() -> None:
    services = [("SVC_SERVICE_HOST", "10.0.0.1"), ("OVERRIDDEN", "svc")]
    env, errors = env_of(
        {
            "env": [
                {"name": "B", "value": "2"},
                {"name": "A", "value": "1"},
                {"name": "OVERRIDDEN", "value": "mine"},
            ]
        },
        services,
    )
    assert errors == []
    assert list(env.items()) == [
        ("SVC_SERVICE_HOST", "10.0.0.1"),
        ("B", "2"),
        ("A", "1"),
        ("OVERRIDDEN", "mine"),
    ]


@pytest.mark.parametrize(
    ("env", "want"),
    [
        pytest.param(
            [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y"}],
            {"A": "x", "B": "x-y"},
            id="earlier-var",
        ),
        pytest.param(
            [{"name": "B", "value": "$(A)-y"}, {"name": "A", "value": "x"}],
            {"A": "x", "B": "$(A)-y"},
            id="later-var-not-expanded",
        ),
        pytest.param(
            [{"name": "H", "value": "http://$(SVC_SERVICE_HOST)"}],
            {"H": "http://10.0.0.1"},
            id="service-var",
        ),
        pytest.param(
            [{"name": "E", "value": "$$(SVC_SERVICE_HOST)"}],
            {"E": "$(SVC_SERVICE_HOST)"},
            id="escaped",
        ),
        pytest.param([{"name": "U", "value": "$(NOPE)"}], {"U": "$(NOPE)"}, id="undefined"),
        pytest.param([{"name": "S", "value": "$(color)"}], {"S": "blue"}, id="envfrom-var"),
        pytest.param(
            [{"name": "SELF", "value": "a$(SELF)"}], {"SELF": "a$(SELF)"}, id="self-reference"
        ),
        pytest.param(
            [{"name": "A", "value": "1"}, {"name": "A", "value": "$(A)2"}],
            {"A": "12"},
            id="redefine-uses-previous",
        ),
        pytest.param([{"name": "EMPTY"}], {"EMPTY": ""}, id="empty-value"),
    ],
)
def test_env_expansion(env: list[Obj], want: dict[str, str]) -> None:
    got, errors = env_of(
        {"envFrom": [{"configMapRef": {"name": "cfg"}}], "env": env},
        [("SVC_SERVICE_HOST", "10.0.0.1")],
    )
    assert errors == []
    for key, value in want.items():
        assert got[key] == value


def test_env_from_prefix_and_precedence() -> None:
    got, errors = env_of(
        {
            "envFrom": [
                {"configMapRef": {"name": "cfg"}, "prefix": "CM_"},
                {"secretRef": {"name": "sec"}},
                {"configMapRef": {"name": "cfg"}},
            ],
            "env": [{"name": "color", "value": "red"}],
        },
        [("user", "from-service")],
    )
    assert errors == []
    assert got["CM_color"] == "blue"
    assert got["CM_size"] == "L"
    assert got["password"] == "s3cret"
    assert got["user"] == "admin"
    assert got["color"] == "red"
    assert got["size"] == "L"


@pytest.mark.parametrize(
    ("container", "want_env", "want_errors"),
    [
        pytest.param(
            {"envFrom": [{"configMapRef": {"name": "nope", "optional": True}}]},
            {},
            [],
            id="envfrom-optional-missing",
        ),
        pytest.param(
            {"envFrom": [{"configMapRef": {"name": "nope"}}]},
            {},
            ['configmap "nope" not found'],
            id="envfrom-cm-missing",
        ),
        pytest.param(
            {"envFrom": [{"secretRef": {"name": "nope"}}]},
            {},
            ['secret "nope" not found'],
            id="envfrom-secret-missing",
        ),
        pytest.param(
            {
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}}
                ]
            },
            {"X": "blue"},
            [],
            id="cm-key",
        ),
        pytest.param(
            {
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}}
                ]
            },
            {"X": "s3cret"},
            [],
            id="secret-key",
        ),
        pytest.param(
            {
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nokey"}}}
                ]
            },
            {},
            ["couldn't find key nokey in ConfigMap ns1/cfg"],
            id="cm-key-missing",
        ),
        pytest.param(
            {
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "nokey"}}}
                ]
            },
            {},
            ["couldn't find key nokey in Secret ns1/sec"],
            id="secret-key-missing",
        ),
        pytest.param(
            {
                "env": [
                    {
                        "name": "X",
                        "valueFrom": {
                            "secretKeyRef": {"name": "sec", "key": "nokey", "optional": True}
                        },
                    }
                ]
            },
            {},
            [],
            id="secret-key-optional",
        ),
        pytest.param(
            {
                "env": [
                    {
                        "name": "X",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "gone", "key": "k", "optional": True}
                        },
                    }
                ]
            },
            {},
            [],
            id="cm-optional-missing",
        ),
        pytest.param(
            {
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}
                ]
            },
            {},
            ['configmap "gone" not found'],
            id="cm-missing",
        ),
        pytest.param(
            {
                "envFrom": [{"configMapRef": {"name": "cfg"}}],
                "env": [
                    {
                        "name": "color",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "cfg", "key": "x", "optional": True}
                        },
                    }
                ],
            },
            {"color": "blue", "size": "L"},
            [],
            id="optional-skip-keeps-envfrom-value",
        ),
        pytest.param(
            {
                "env": [
                    {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.restartPolicy"}}}
                ]
            },
            {},
            ["field label not supported: spec.restartPolicy"],
            id="bad-field",
        ),
    ],
)
def test_env_sources(container: Obj, want_env: dict[str, str], want_errors: list[str]) -> None:
    got, errors = env_of(container)
    assert errors == want_errors
    assert got == want_env


def test_secret_string_data_and_raw_bytes() -> None:
    lookup = DictLookup(
        secrets={("ns1", "s"): {"data": {"bin": base64.b64encode(b"\xff\x01").decode()}}}
    )
    got, errors = container_env(
        pod(), {"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}, [], lookup
    )
    assert errors == []
    assert got["bin"].encode("utf-8", "surrogateescape") == b"\xff\x01"


def test_nul_byte_is_an_error() -> None:
    lookup = DictLookup(secrets={("ns1", "s"): {"data": {"k": b64("a\0b")}}})
    _, errors = container_env(
        pod(), {"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}, [], lookup
    )
    assert errors and "NUL" in errors[0]


@pytest.mark.parametrize(
    ("path", "want"),
    [
        pytest.param("metadata.name", "p1", id="name"),
        pytest.param("metadata.namespace", "ns1", id="namespace"),
        pytest.param("metadata.uid", "uid-1", id="uid"),
        pytest.param("metadata.labels['app']", "web", id="label"),
        pytest.param("metadata.labels['missing']", "", id="label-missing"),
        pytest.param("metadata.annotations['note']", 'say "hi"', id="annotation"),
        pytest.param("metadata.labels", 'app="web"\ntier="fe"', id="all-labels"),
        pytest.param("metadata.annotations", 'note="say \\"hi\\""', id="all-annotations"),
        pytest.param("spec.nodeName", "node-b", id="node-name"),
        pytest.param("spec.serviceAccountName", "sa1", id="service-account"),
        pytest.param("status.hostIP", "172.18.0.9", id="host-ip"),
        pytest.param("status.hostIPs", "172.18.0.9,fd00::9", id="host-ips"),
        pytest.param("status.podIP", "10.244.9.9", id="pod-ip"),
        pytest.param("status.podIPs", "10.244.9.9,fd00::1", id="pod-ips"),
    ],
)
def test_field_ref(path: str, want: str) -> None:
    got = field_ref_value(
        pod(), path, ["10.244.9.9", "fd00::1"], ["172.18.0.9", "fd00::9"], "node-b"
    )
    assert got == want


def test_field_ref_defaults_from_pod() -> None:
    env, errors = env_of(
        {
            "env": [
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            ]
        }
    )
    assert errors == []
    assert env == {"IP": "10.244.1.5", "HOST": "172.18.0.2", "NODE": "node-a"}


def test_field_ref_explicit_facts_win() -> None:
    env, _ = env_of(
        {"env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]},
        pod_ips=["10.1.1.1"],
    )
    assert env == {"IP": "10.1.1.1"}


def test_value_from_is_not_expanded() -> None:
    lookup = DictLookup(config_maps={("ns1", "c"): {"data": {"k": "$(A)"}}})
    env, _ = container_env(
        pod(),
        {
            "name": "c",
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            ],
        },
        [],
        lookup,
    )
    assert env["B"] == "$(A)"


# --- resources --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param("500m", 0.5, id="milli"),
        pytest.param("2", 2, id="int"),
        pytest.param("1Gi", 2**30, id="gibi"),
        pytest.param("128Mi", 128 * 2**20, id="mebi"),
        pytest.param("1k", 1000, id="kilo"),
        pytest.param("1M", 10**6, id="mega"),
        pytest.param("1e3", 1000, id="exponent"),
        pytest.param("1.5", 1.5, id="decimal"),
        pytest.param("1E", 10**18, id="exa"),
    ],
)
def test_parse_quantity(text: str, want: float) -> None:
    assert parse_quantity(text) == want


ALLOC = {"cpu": "4", "memory": "8Gi"}


@pytest.mark.parametrize(
    ("ref", "resources", "want"),
    [
        pytest.param({"resource": "limits.cpu"}, {"limits": {"cpu": "500m"}}, "1", id="cpu-ceil"),
        pytest.param(
            {"resource": "limits.cpu", "divisor": "1m"},
            {"limits": {"cpu": "500m"}},
            "500",
            id="cpu-milli",
        ),
        pytest.param(
            {"resource": "requests.cpu", "divisor": "1m"},
            {"requests": {"cpu": "250m"}},
            "250",
            id="req-cpu",
        ),
        pytest.param(
            {"resource": "limits.memory"}, {"limits": {"memory": "64Mi"}}, str(64 * 2**20), id="mem"
        ),
        pytest.param(
            {"resource": "limits.memory", "divisor": "1Mi"},
            {"limits": {"memory": "64Mi"}},
            "64",
            id="mem-mi",
        ),
        pytest.param(
            {"resource": "limits.memory", "divisor": "1Gi"},
            {"limits": {"memory": "1.5Gi"}},
            "2",
            id="mem-ceil",
        ),
        pytest.param({"resource": "limits.cpu"}, {}, "4", id="cpu-default-allocatable"),
        pytest.param(
            {"resource": "limits.memory", "divisor": "1Mi"},
            {},
            "8192",
            id="mem-default-allocatable",
        ),
        pytest.param({"resource": "requests.memory"}, {}, "0", id="request-unset"),
    ],
)
def test_resource_field_ref(ref: Obj, resources: Obj, want: str) -> None:
    container = {"name": "c", "resources": resources}
    assert (
        resource_field_value(ref, {"spec": {"containers": [container]}}, container, ALLOC) == want
    )


def test_resource_field_ref_other_container_and_errors() -> None:
    side = {"name": "side", "resources": {"limits": {"cpu": "2"}}}
    main = {"name": "main"}
    p = pod(containers=[main, side])
    env, errors = container_env(
        p,
        {
            **main,
            "env": [
                {
                    "name": "SIDE",
                    "valueFrom": {
                        "resourceFieldRef": {"containerName": "side", "resource": "limits.cpu"}
                    },
                },
                {"name": "BAD", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}},
                {
                    "name": "GONE",
                    "valueFrom": {
                        "resourceFieldRef": {"containerName": "x", "resource": "limits.cpu"}
                    },
                },
            ],
        },
        [],
        LOOKUP,
        allocatable=ALLOC,
    )
    assert env == {"SIDE": "2"}
    assert errors == ["unsupported container resource : limits.gpu", "container x not found"]
