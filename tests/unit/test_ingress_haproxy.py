"""HAProxy's configuration for a routing table: the route maps (longest prefix first,
element-wise entries), the pool of backends that new and removed Services move through,
server slots that keep each endpoint where it is, a skeleton that endpoint churn and
Service changes leave alone, and the runtime commands between two slot layouts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubesvc.ingress.applier import runtime_commands
from kubesvc.ingress.haproxy import (
    MIN_POOL,
    Layout,
    Paths,
    assign_slots,
    plan_layout,
    render,
    route_maps,
)
from kubesvc.ingress.model import RoutingTable, routing_table
from tests.unit.test_ingress_model import OURS, backend, endpoint_slice, ingress, rule, service
from tests.unit.test_poison_properties import PROPERTY

PATHS = Paths("/run/ingress")


def table(*ips: str):  # type: ignore[no-untyped-def]
    ing = ingress(
        "a",
        rule("a.test", ("/", "Prefix", "web"), ("/api/", "Prefix", "web"), ("/x", "Exact", "web")),
        rule("*.w.test", ("/api", "ImplementationSpecific", "web")),
        rule(None, ("/", "Prefix", "web")),
    )
    return routing_table(
        [ing], [service("web", ("http", 80))], [endpoint_slice("web", "http", 8080, *ips)], [OURS]
    )


def rendered(t: RoutingTable, before: Layout = Layout()):  # type: ignore[no-untyped-def]
    return render(t, plan_layout(before, t), PATHS)


def test_route_maps() -> None:
    t = table()
    exact, prefix = route_maps(t, plan_layout(Layout(), t).assigned)
    be = "be0"
    assert exact.splitlines() == [
        f"*.w.test/api {be}",
        f"/ {be}",
        f"a.test/ {be}",
        f"a.test/api {be}",
        f"a.test/x {be}",
    ]
    # longest first: HAProxy takes the first map_beg hit
    assert prefix.splitlines() == [
        f"*.w.test/api/ {be}",
        f"a.test/api/ {be}",
        f"a.test/ {be}",
        f"/ {be}",
    ]


def test_endpoint_churn_keeps_the_skeleton() -> None:
    one = rendered(table("10.0.0.1"))
    two = rendered(table("10.0.0.1", "10.0.0.2"), one.layout)
    assert one.skeleton == two.skeleton
    assert "server s1 10.0.0.1:8080\n" in two.config
    assert "server s2 10.0.0.2:8080\n" in two.config
    assert "server s2 127.0.0.1:1 disabled\n" in one.config
    # outgrowing its slots does not change the skeleton either (servers are added live)
    five = rendered(table(*(f"10.0.0.{i}" for i in range(1, 6))), two.layout)
    assert five.skeleton == one.skeleton and len(five.slots["be0"]) == 8


def test_route_changes_between_existing_backends_keep_the_skeleton() -> None:
    one = rendered(table("10.0.0.1"))
    ing = ingress("b", rule("b.test", ("/z", "Exact", "web")))
    svc, slc = service("web", ("http", 80)), endpoint_slice("web", "http", 8080, "10.0.0.1")
    two = rendered(routing_table([ing], [svc], [slc], [OURS]), one.layout)
    assert one.skeleton == two.skeleton and one.maps != two.maps


def test_new_and_removed_services_take_and_free_pool_backends_without_a_reload() -> None:
    def services_table(*names: str) -> RoutingTable:
        ing = ingress("a", rule("a.test", *((f"/{n}", "Prefix", n) for n in names)))
        svcs = [service(n, ("http", 80)) for n in names]
        slices = [endpoint_slice(n, "http", 8080, f"10.0.0.{i}") for i, n in enumerate(names)]
        return routing_table([ing], svcs, slices, [OURS])

    one = rendered(services_table("a", "b"))
    assert dict(one.layout.assigned) == {"default/a:80": "be0", "default/b:80": "be1"}
    two = rendered(services_table("b", "c"), one.layout)
    # b stays; c does not take a's backend in the same change (a's requests may be in flight)
    assert dict(two.layout.assigned) == {"default/b:80": "be1", "default/c:80": "be2"}
    assert two.skeleton == one.skeleton
    assert two.slots["be0"] == (None,) * 4 and two.slots["be2"][0] == ("10.0.0.1", 8080)
    assert "be2 default/c:80\n" in two.maps[PATHS.services_map]
    # a default backend is a map entry too
    d = ingress("d", default=backend("b"))
    three_t = routing_table(
        [d], [service("b", ("http", 80))], [endpoint_slice("b", "http", 8080, "10.0.0.9")], [OURS]
    )
    three = rendered(three_t, two.layout)
    assert three.maps[PATHS.default_map] == "default be1\n" and three.skeleton == one.skeleton
    # a pool that is full grows (a reload), by powers of two
    many = rendered(services_table(*(f"s{i}" for i in range(MIN_POOL))), three.layout)
    assert len(many.slots) == 2 * MIN_POOL and many.skeleton != one.skeleton


def test_slots_keep_endpoints_in_place_and_grow_by_powers_of_two() -> None:
    a, b, c = ("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)
    s = assign_slots((), [b, a])
    assert s == (a, b, None, None)
    s = assign_slots(s, [b, c])
    assert s == (c, b, None, None)
    many = [(f"10.0.1.{i}", 80) for i in range(5)]
    assert len(assign_slots(s, many)) == 8
    assert runtime_commands({"be": (a, b, None, None)}, {"be": (c, b, None, None)}) == [
        "set server be/s1 addr 10.0.0.3 port 80",
        "set server be/s1 state ready",
    ]
    assert runtime_commands({"be": (a, None)}, {"be": (None, None)}) == [
        "set server be/s1 state maint",
        "set server be/s1 addr 127.0.0.1 port 1",
    ]
    # slots a backend gains are added at run time: filled ones before the maps change,
    # parking only what was emptied
    grown = (a, None, b, c, ("10.0.0.4", 80), None, None, None)
    assert runtime_commands({"be": (a, b, c, None)}, {"be": grown}, "fill") == [
        "set server be/s3 addr 10.0.0.2 port 80",
        "set server be/s3 state ready",
        "set server be/s4 addr 10.0.0.3 port 80",
        "set server be/s4 state ready",
        "add server be/s5 10.0.0.4:80",
        "set server be/s5 state ready",
        "add server be/s6 127.0.0.1:1 disabled",
        "add server be/s7 127.0.0.1:1 disabled",
        "add server be/s8 127.0.0.1:1 disabled",
    ]
    assert runtime_commands({"be": (a, b, c, None)}, {"be": grown}, "park") == [
        "set server be/s2 state maint",
        "set server be/s2 addr 127.0.0.1 port 1",
    ]


addrs = st.lists(
    st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"]), st.integers(1, 3)), max_size=12
)


@PROPERTY
@given(st.lists(addrs, min_size=1, max_size=5))
def test_slots_hold_exactly_the_endpoints(steps: list[list[tuple[str, int]]]) -> None:
    slots: tuple = ()  # type: ignore[type-arg]
    for eps in steps:
        new = assign_slots(slots, eps)
        assert {a for a in new if a is not None} == set(eps)
        assert len([a for a in new if a is not None]) == len(set(eps))
        for was, now in zip(slots, new, strict=False):
            if was is not None and was in set(eps):
                assert now == was
        slots = new
