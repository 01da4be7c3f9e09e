"""Random type mutations of valid Services, EndpointSlices, Pods, Endpoints and Nodes, fed
through every consumer's pure parse and compute functions.

The contract: a parse step either returns its model or raises shape.Invalid (the object is
then left out, logged once); whatever it accepts, the compute and render steps behind it
never raise; and the functions that read raw objects directly (informer ingest, GC's
metadata, selector predicates) never raise at all.

IP plan: ClusterIPs 10.96.0.0/16, pods 10.244.0.0/16, nodes 172.31.0.0/24.
"""

from __future__ import annotations

import contextlib
import copy
import math
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.api.selectors import labels_match, make_filter, selector_from_match_labels
from kubesvc.apiserver.gc import gc_meta
from kubesvc.client import shape
from kubesvc.client.informer import Informer, compact
from kubesvc.client.shape import Invalid
from kubesvc.controllers import endpoints as ep_ctl
from kubesvc.controllers import endpointslice as slice_ctl
from kubesvc.controllers import endpointslice_mirroring as mirror
from kubesvc.controllers import podutil, scheduler
from kubesvc.controllers.replicaset import claim_pods, replica_set_status
from kubesvc.dns import server as dns_server
from kubesvc.dns.answers import AnswerTable
from kubesvc.dns.records import Zone, ZoneView, parse_service, parse_slice, service_records
from kubesvc.proxy import model
from kubesvc.proxy.iptables import render as ipt
from kubesvc.proxy.nftables.render import NftTracker

NOW = "2026-01-01T00:00:00Z"
ZONE = Zone("cluster.local.", 5, 1)
REF = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "rs",
    "uid": "rs-1",
    "controller": True,
}

SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "web",
        "namespace": "default",
        "uid": "svc-1",
        "resourceVersion": "7",
        "creationTimestamp": NOW,
        "labels": {"app": "web"},
        "annotations": {"a": "b"},
        "ownerReferences": [REF],
        "finalizers": ["x/y"],
    },
    "spec": {
        "type": "LoadBalancer",
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "ipFamilies": ["IPv4"],
        "selector": {"app": "web"},
        "ports": [
            {
                "name": "http",
                "port": 80,
                "targetPort": "http",
                "protocol": "TCP",
                "nodePort": 30080,
            },
            {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP", "nodePort": 30053},
        ],
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        "externalIPs": ["192.0.2.10"],
        "externalTrafficPolicy": "Local",
        "internalTrafficPolicy": "Cluster",
        "healthCheckNodePort": 31000,
        "loadBalancerSourceRanges": ["198.51.100.0/24"],
        "publishNotReadyAddresses": False,
    },
    "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.20"}]}},
}
EXTERNAL: dict[str, Any] = {
    "metadata": {"name": "ext", "namespace": "default", "resourceVersion": "8"},
    "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"},
}
SLICE: dict[str, Any] = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": {
        "name": "web-abc",
        "namespace": "default",
        "uid": "slice-1",
        "resourceVersion": "9",
        "generation": 2,
        "labels": {
            "kubernetes.io/service-name": "web",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        },
        "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-1"}],
    },
    "addressType": "IPv4",
    "ports": [
        {"name": "http", "port": 8080, "protocol": "TCP"},
        {"name": "dns", "port": 5353, "protocol": "UDP"},
    ],
    "endpoints": [
        {
            "addresses": ["10.244.1.5"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "hostname": "web-0",
            "nodeName": "n1",
            "zone": "z1",
            "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0", "uid": "p0"},
        },
        {"addresses": ["10.244.2.7"], "conditions": {"ready": False}, "nodeName": "n2"},
    ],
}
POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web-0",
        "namespace": "default",
        "uid": "p0",
        "resourceVersion": "11",
        "creationTimestamp": NOW,
        "labels": {"app": "web"},
        "annotations": {"controller.kubernetes.io/pod-deletion-cost": "5"},
        "ownerReferences": [REF],
    },
    "spec": {
        "nodeName": "n1",
        "hostname": "web-0",
        "subdomain": "web",
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
        "containers": [
            {"name": "c", "image": "agnhost", "ports": [{"name": "http", "containerPort": 8080}]}
        ],
        "initContainers": [
            {
                "name": "side",
                "restartPolicy": "Always",
                "ports": [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}],
            }
        ],
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"zone": "z1"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}
                    ]
                }
            }
        },
    },
    "status": {
        "phase": "Running",
        "podIP": "10.244.1.5",
        "podIPs": [{"ip": "10.244.1.5"}],
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": NOW}],
        "containerStatuses": [{"name": "c", "ready": True, "restartCount": 2}],
    },
}
ENDPOINTS: dict[str, Any] = {
    "metadata": {"name": "manual", "namespace": "default", "uid": "e1", "labels": {"a": "b"}},
    "subsets": [
        {
            "addresses": [
                {
                    "ip": "10.244.3.1",
                    "hostname": "h",
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "name": "x"},
                }
            ],
            "notReadyAddresses": [{"ip": "10.244.3.2"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        }
    ],
}
NODE: dict[str, Any] = {
    "metadata": {"name": "n1", "uid": "n1", "labels": {"zone": "z1"}},
    "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
    "status": {
        "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": NOW}],
        "allocatable": {"pods": "110", "cpu": 2},
    },
}

# -- mutations ----------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 80.0, 80.5, 1e300, 2**64, -(2**70)]),
    st.sampled_from(
        [
            "",
            "x",
            "80",
            "NaN",
            "None",
            "10.96.0.1",
            'a"b',
            "é",
            "-",
            "a" * 300,
            "\x00",
            "10.0.0.1\x00",
        ]
    ),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _slots(value: Any, out: list[tuple[Any, Any]]) -> None:
    """Every (container, key) in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((value, k))
            _slots(v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((value, i))
            _slots(v, out)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """`base` with one to three fields replaced by any JSON value (NaN and Infinity too),
    deleted, or (rarely) the whole object replaced."""
    obj: Any = copy.deepcopy(base)
    if draw(st.integers(0, 40)) == 0:
        return draw(json_values)
    for _ in range(draw(st.integers(1, 3))):
        slots: list[tuple[Any, Any]] = []
        _slots(obj, slots)
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        if draw(st.integers(0, 4)) == 0:
            del container[key]
        else:
            container[key] = draw(json_values)
    return obj


PROPERTY = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _valid(kind: str, obj: Any) -> bool:
    return shape.problem(kind, obj) is None


# -- shape checks and the informer ------------------------------------------------------------
@PROPERTY
@given(st.one_of(mutated(SERVICE), mutated(SLICE), mutated(POD), mutated(ENDPOINTS), mutated(NODE)))
def test_shape_checks_raise_only_invalid(obj: Any) -> None:
    for kind in ("Service", "EndpointSlice", "Pod", "Endpoints", "Node", "ReplicaSet", "Lease"):
        try:
            shape.check(kind, obj)
        except Invalid as e:
            assert str(e)


@PROPERTY
@given(mutated(SERVICE), mutated(SLICE), mutated(POD))
def test_informer_ingest_never_raises_and_caches_only_checked_objects(
    svc: Any, slc: Any, pod: Any
) -> None:
    for kind, obj, base in (
        ("Service", svc, SERVICE),
        ("EndpointSlice", slc, SLICE),
        ("Pod", pod, POD),
    ):
        inf = Informer(None, kind, check=shape.checker(kind))  # type: ignore[arg-type]
        inf._upsert(copy.deepcopy(base))
        inf._upsert(copy.deepcopy(obj))  # an update to the good object
        for cached in inf.cache.values():
            assert _valid(kind, cached)
        plain = Informer(None, kind)  # type: ignore[arg-type]
        plain._upsert(compact(copy.deepcopy(obj)) if isinstance(obj, dict) else obj)
    for transform, obj in ((dns_server.slim_service, svc), (dns_server.slim_slice, slc)):
        inf = Informer(None, "Service", transform=transform)  # type: ignore[arg-type]
        inf._upsert(copy.deepcopy(obj))


# -- cluster DNS --------------------------------------------------------------------------------
@PROPERTY
@given(st.one_of(mutated(SERVICE), mutated(EXTERNAL)), mutated(SLICE))
def test_dns_accepts_only_what_renders(svc: Any, slc: Any) -> None:
    try:
        parsed = parse_service(svc)
    except Invalid:
        parsed = None
    try:
        eps = parse_slice(slc)
    except Invalid:
        eps = []
    view = ZoneView(ZONE)
    if parsed is not None:
        view.set_source(f"svc:{parsed.key}", service_records(parsed, eps, ZONE))
        view.set_source("ns:x", (), [f"{parsed.namespace.lower()}.svc.cluster.local."])
    table = AnswerTable(ZONE)
    table.rebuild(view)
    assert not table._unrenderable  # every name accepted has a wire form
    for transform, obj in ((dns_server.slim_service, svc), (dns_server.slim_slice, slc)):
        with contextlib.suppress(Invalid):
            transform(obj)


# -- kube-proxy ---------------------------------------------------------------------------------
@PROPERTY
@given(
    st.lists(st.one_of(mutated(SERVICE), mutated(EXTERNAL)), max_size=3),
    st.lists(mutated(SLICE), max_size=3),
)
def test_proxy_tracker_and_renderers_never_raise(services: list[Any], slices: list[Any]) -> None:
    tracker = model.ChangeTracker("n1", ("172.31.0.10",), "10.244.0.0/16")
    tracker.service(copy.deepcopy(SERVICE))
    tracker.slice(copy.deepcopy(SLICE))
    for obj in services:
        tracker.service(obj)
    for obj in slices:
        tracker.slice(obj)
    state, _changed = tracker.take()
    nft = NftTracker()
    nft.diff(state)
    nft.applied(state)
    ipt.render(state)
    for obj in services:
        with contextlib.suppress(Invalid):
            model.service_ports(obj)
    for obj in slices:
        with contextlib.suppress(Invalid):
            model.slice_endpoints(obj)


# -- controllers (what the controller-manager's checked informers let through) --------------------
@PROPERTY
@given(mutated(SERVICE), st.lists(mutated(POD), max_size=3), mutated(SLICE), mutated(NODE))
def test_endpoint_controllers_compute_anything_the_check_accepts(
    svc: Any, pods: list[Any], slc: Any, node: Any
) -> None:
    if not _valid("Service", svc):
        return
    pods = [p for p in [copy.deepcopy(POD), *pods] if _valid("Pod", p)]
    nodes = {"n1": node if _valid("Node", node) else NODE}
    existing = [s for s in (copy.deepcopy(SLICE), slc) if _valid("EndpointSlice", s)]
    desired = ep_ctl.desired_endpoints(svc, pods)
    if desired is not None:
        obj = ep_ctl.endpoints_to_write(None, desired, svc, datetime.now(UTC))
        assert obj is not None
        ep_ctl.endpoints_to_write(obj, desired, svc, None)
    groups = slice_ctl.desired_slices(svc, pods, nodes)
    slice_ctl.reconcile_slices(svc, groups, existing)


@PROPERTY
@given(mutated(ENDPOINTS), mutated(SLICE))
def test_mirroring_computes_anything_the_check_accepts(endpoints: Any, slc: Any) -> None:
    if not _valid("Endpoints", endpoints):
        return
    existing = [slc] if _valid("EndpointSlice", slc) else []
    mirror.should_mirror(endpoints)
    desired = mirror.mirror_slices(endpoints)
    mirror.reconcile_mirrored(endpoints, desired, existing)


@PROPERTY
@given(st.lists(mutated(POD), min_size=1, max_size=4), st.lists(mutated(NODE), max_size=3))
def test_scheduler_and_workloads_compute_anything_the_check_accepts(
    pods: list[Any], nodes: list[Any]
) -> None:
    pods = [p for p in pods if _valid("Pod", p)]
    nodes = [n for n in [NODE, *nodes] if _valid("Node", n)]
    now = datetime.now(UTC)
    for pod in pods:
        feasible, reasons = scheduler.filter_nodes(pod, nodes, pods)
        scheduler.pick_node(pod, feasible, pods)
        scheduler.unschedulable_message(reasons, len(nodes))
        scheduler.unschedulable_patch(pod, "m", NOW)
    podutil.sort_for_deletion(pods, pods, now)
    rs = {
        "metadata": {"name": "rs", "namespace": "default", "uid": "rs-1", "generation": 1},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}},
    }
    claimed = claim_pods(rs, pods, rs["spec"]["selector"])  # type: ignore[index]
    replica_set_status(rs, claimed.owned, now)


# -- garbage collection and selectors -----------------------------------------------------------
@PROPERTY
@given(st.one_of(mutated(SERVICE), mutated(POD), mutated(SLICE), json_values))
def test_gc_meta_and_selector_predicates_never_raise(obj: Any) -> None:
    gm = gc_meta(obj)
    assert isinstance(gm.name, str) and (
        gm.owners is None or all(isinstance(u, str) for u in gm.owners)
    )
    if isinstance(obj, dict):
        for kind, labels, fields in (
            ("Pod", "app=web,tier notin (x),!gone", "status.phase=Running,spec.nodeName!=n2"),
            ("EndpointSlice", "kubernetes.io/service-name=web", ""),
            ("Service", "app", "spec.clusterIP=10.96.0.10"),
        ):
            predicate = make_filter(kind, labels, fields)
            assert predicate is not None
            predicate(obj)
        meta = obj.get("metadata")
        labels_match(selector_from_match_labels({"matchLabels": {"app": "web"}}), meta)
        if isinstance(meta, dict):
            labels_match(selector_from_match_labels(meta.get("labels")), meta.get("labels"))
        spec = obj.get("spec")
        if isinstance(spec, dict):
            selector_from_match_labels(spec.get("selector"))


def test_the_mutations_reach_every_kind_of_value() -> None:
    """The strategy itself: NaN, infinities, huge integers and containers do come out."""
    seen: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, float) and math.isnan(value):
            seen.add("nan")
        elif isinstance(value, float) and math.isinf(value):
            seen.add("inf")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
            seen.add("huge")
        elif isinstance(value, dict | list):
            seen.add("container")
            for v in value.values() if isinstance(value, dict) else value:
                walk(v)

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(json_values)
    def collect(value: Any) -> None:
        walk(value)

    collect()
    assert {"nan", "inf", "huge", "container"} <= seen
