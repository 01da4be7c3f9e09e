"""The ingress controller's model: which Ingresses are served, hosts and paths in the order a
request meets them, merging and conflicts, backends resolved to endpoints, and hostile
objects left out one by one."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kubesvc.ingress.model import BackendRef, Route, RoutingTable, routing_table
from tests.unit.test_poison_properties import PROPERTY, mutated


def ingress(
    name: str,
    *rules: dict[str, Any],
    ns: str = "default",
    created: str = "2026-01-01T00:00:00Z",
    cls: str | None = None,
    default: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": list(rules)}
    if cls is not None:
        spec["ingressClassName"] = cls
    if default is not None:
        spec["defaultBackend"] = default
    return {
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
        "spec": spec,
    }


def backend(svc: str, port: int | str = 80) -> dict[str, Any]:
    ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": svc, "port": ref}}


def rule(host: str | None, *paths: tuple[str, str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "http": {"paths": [{"path": p, "pathType": t, "backend": backend(s)} for p, t, s in paths]}
    }
    if host is not None:
        out["host"] = host
    return out


def service(name: str, *ports: tuple[str, int], ns: str = "default") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": n, "port": p, "targetPort": p + 8000} for n, p in ports]},
    }


def endpoint_slice(
    svc: str, port_name: str, port: int, *ips: str, ns: str = "default", **cond: bool
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{svc}-x",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True, **cond}} for ip in ips],
    }


OURS = {
    "metadata": {
        "name": "kubesvc",
        "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
    },
    "spec": {"controller": "kubesvc.io/ingress"},
}


def table(*ings: Any, services: Any = (), slices: Any = (), classes: Any = (OURS,)) -> RoutingTable:
    return routing_table(ings, services, slices, classes)


def match(t: RoutingTable, host: str, path: str) -> Route | None:
    """What the HAProxy configuration does with a request, in Python: the first route (in
    the table's order) whose host and path match."""
    wild = "*." + host.split(".", 1)[1] if "." in host else ""
    for r in t.routes:
        if r.host not in (host, wild, ""):
            continue
        if r.exact and path == r.path:
            return r
        if not r.exact and (r.path == "/" or path == r.path or path.startswith(r.path + "/")):
            return r
    return None


def test_class_selection() -> None:
    a = ingress("a", rule("a.test", ("/", "Prefix", "s")))
    b = ingress("b", rule("b.test", ("/", "Prefix", "s")), cls="kubesvc")
    c = ingress("c", rule("c.test", ("/", "Prefix", "s")), cls="nginx")
    d = ingress("d", rule("d.test", ("/", "Prefix", "s")))
    d["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
    assert table(a, b, c, d).served == ("default/a", "default/b")
    not_default = copy.deepcopy(OURS)
    not_default["metadata"]["annotations"] = {}
    assert table(a, b, c, d, classes=[not_default]).served == ("default/b",)
    assert table(a, b, c, d, classes=[]).served == ("default/b",)


def test_element_wise_prefix_and_exact_precedence() -> None:
    t = table(
        ingress(
            "x",
            rule(
                "foo.test",
                ("/foo", "Prefix", "prefix"),
                ("/foo/bar", "Exact", "exact"),
                ("/foo/bar/", "Prefix", "longer"),
                ("/", "Prefix", "root"),
            ),
        )
    )
    svc = lambda path: (r := match(t, "foo.test", path)) and r.backend.service  # noqa: E731
    assert svc("/foo") == "prefix"
    assert svc("/foo/") == "prefix"
    assert svc("/foo/baz") == "prefix"
    assert svc("/foobar") == "root"
    assert svc("/foo/bar") == "exact"  # Exact beats the equally long Prefix /foo/bar
    assert svc("/foo/bar/x") == "longer"
    assert svc("/foo/barx") == "prefix"


def test_hosts_exact_then_wildcard_then_any() -> None:
    t = table(
        ingress(
            "x",
            rule("a.example.com", ("/", "Prefix", "exact-host")),
            rule("*.example.com", ("/", "Prefix", "wild")),
            rule(None, ("/", "Prefix", "any")),
        )
    )
    assert match(t, "a.example.com", "/").backend.service == "exact-host"  # type: ignore[union-attr]
    assert match(t, "b.example.com", "/").backend.service == "wild"  # type: ignore[union-attr]
    assert match(t, "x.b.example.com", "/").backend.service == "any"  # type: ignore[union-attr]
    assert match(t, "example.com", "/").backend.service == "any"  # type: ignore[union-attr]


def test_merge_and_oldest_wins_a_conflict() -> None:
    old = ingress("old", rule("h.test", ("/a", "Prefix", "old")), created="2026-01-01T00:00:00Z")
    new = ingress(
        "new",
        rule("h.test", ("/a/", "Prefix", "new"), ("/b", "Prefix", "new")),
        created="2026-02-01T00:00:00Z",
    )
    t = table(new, old)
    assert match(t, "h.test", "/a/x").backend.service == "old"  # type: ignore[union-attr]
    assert match(t, "h.test", "/b").backend.service == "new"  # type: ignore[union-attr]
    assert len(t.conflicts) == 1
    assert (t.conflicts[0].loser, t.conflicts[0].winner) == ("default/new", "default/old")


def test_backends_resolve_to_ready_endpoints_by_port_number_or_name() -> None:
    ing = ingress(
        "x",
        {
            "host": "h.test",
            "http": {
                "paths": [
                    {"path": "/n", "pathType": "Prefix", "backend": backend("web", 80)},
                    {"path": "/m", "pathType": "Prefix", "backend": backend("web", "http")},
                ]
            },
        },
    )
    slc = endpoint_slice("web", "http", 8080, "10.244.1.2", "10.244.1.3")
    slc["endpoints"].append(
        {
            "addresses": ["10.244.1.4"],
            "conditions": {"ready": False, "serving": True, "terminating": True},
        }
    )
    t = table(ing, services=[service("web", ("http", 80))], slices=[slc])
    want = (("10.244.1.2", 8080), ("10.244.1.3", 8080))
    assert t.endpoints["default/web:80"] == want
    assert t.endpoints["default/web:http"] == want
    assert t.missing == ()
    # nothing ready: the serving-terminating one is used
    for ep in slc["endpoints"][:2]:
        ep["conditions"]["ready"] = False
        ep["conditions"]["serving"] = False
    t = table(ing, services=[service("web", ("http", 80))], slices=[slc])
    assert t.endpoints["default/web:80"] == (("10.244.1.4", 8080),)


def test_missing_service_and_port_are_reported() -> None:
    ing = ingress("x", rule("h.test", ("/", "Prefix", "nope")), default=backend("web", 81))
    t = table(ing, services=[service("web", ("http", 80))])
    assert t.endpoints == {"default/nope:80": (), "default/web:81": ()}
    assert {why for _, why in t.missing} == {
        "Service default/nope not found",
        "Service default/web has no port 81",
    }
    assert t.default_backend == BackendRef("default", "web", "81")


def test_a_bad_ingress_is_rejected_alone() -> None:
    good = ingress("good", rule("h.test", ("/", "Prefix", "s")))
    bad_path = ingress("bad1", rule("h.test", ("/a b", "Prefix", "s")))
    bad_host = ingress("bad2", rule("a.*.test", ("/", "Prefix", "s")))
    two_labels = ingress("bad3", rule("*.*.test", ("/", "Prefix", "s")))
    t = table(good, bad_path, bad_host, two_labels, "junk", {"spec": 3})
    assert t.served == ("default/good",)
    assert [k for k, _ in t.rejected] == ["default/bad1", "default/bad2", "default/bad3", "?"]


INGRESS = ingress(
    "x",
    rule("h.test", ("/a", "Prefix", "web"), ("/b", "Exact", "web")),
    rule("*.w.test", ("/", "ImplementationSpecific", "web")),
    default=backend("web", "http"),
)
SERVICE = service("web", ("http", 80))
SLICE = endpoint_slice("web", "http", 8080, "10.244.1.2")


@PROPERTY
@given(
    st.lists(mutated(INGRESS), max_size=3),
    st.lists(mutated(SERVICE), max_size=2),
    st.lists(mutated(SLICE), max_size=2),
    st.lists(mutated(OURS), max_size=2),
)
def test_hostile_objects_never_raise_and_never_hide_good_ones(
    ings: list[Any], svcs: list[Any], slcs: list[Any], classes: list[Any]
) -> None:
    good = ingress("zz-good", rule("good.test", ("/", "Prefix", "web")), cls="kubesvc")
    t = routing_table([*ings, good], [*svcs, SERVICE], [*slcs, SLICE], classes)
    assert "default/zz-good" in t.served
    assert any(r.host == "good.test" for r in t.routes)
    for r in t.routes:
        assert r.path.startswith("/") and " " not in r.path and "\n" not in r.path
        assert r.backend.key in t.endpoints


NODE = {"status": {"addresses": [{"type": "InternalIP", "address": "172.31.2.10"}]}}
LB_SERVICE = {"status": {"loadBalancer": {"ingress": [{"ip": "172.31.2.240"}]}}}


@PROPERTY
@given(mutated(LB_SERVICE), st.lists(mutated(NODE), max_size=3))
def test_status_addresses_survive_hostile_objects(svc: Any, nodes: list[Any]) -> None:
    from kubesvc.ingress.controller import lb_addresses, node_addresses

    assert all(isinstance(ip, str) for ip in lb_addresses(svc))
    assert all(isinstance(ip, str) for ip in node_addresses(nodes))
    assert lb_addresses(LB_SERVICE) == ["172.31.2.240"]
    assert node_addresses([*nodes, NODE])[-1:] != []
