"""Store keys: kube-apiserver's layout, and back from a key to its resource."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubesvc.api.catalog import BUILTIN
from kubesvc.api.crd.kinds import CRD_KIND
from kubesvc.api.kinds import BY_KIND, Kind
from kubesvc.apiserver.keys import key_for, legacy_key, prefix_for, split_key

NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,30}[a-z0-9])?", fullmatch=True)


def test_upstream_paths() -> None:
    # test/integration/etcd/data.go in kubernetes/kubernetes
    assert key_for(BY_KIND["Service"], "ns", "s") == "/registry/services/specs/ns/s"
    assert key_for(BY_KIND["Endpoints"], "ns", "e") == "/registry/services/endpoints/ns/e"
    assert key_for(BY_KIND["Node"], None, "n") == "/registry/minions/n"
    assert key_for(BY_KIND["Pod"], "ns", "p") == "/registry/pods/ns/p"
    assert key_for(BY_KIND["Deployment"], "ns", "d") == "/registry/deployments/ns/d"
    assert key_for(BY_KIND["ReplicationController"], "ns", "r") == "/registry/controllers/ns/r"
    assert key_for(BY_KIND["Ingress"], "ns", "i") == "/registry/ingress/ns/i"
    assert key_for(BY_KIND["Lease"], "ns", "l") == "/registry/leases/ns/l"
    assert key_for(BY_KIND["Namespace"], None, "ns") == "/registry/namespaces/ns"
    assert (
        key_for(CRD_KIND, None, "ws.example.com")
        == "/registry/apiextensions.k8s.io/customresourcedefinitions/ws.example.com"
    )
    assert prefix_for(BY_KIND["Service"], None) == "/registry/services/specs/"


@given(kind=st.sampled_from(BUILTIN), ns=NAMES, name=NAMES)
def test_every_key_names_its_resource(kind: Kind, ns: str, name: str) -> None:
    key = key_for(kind, ns, name)
    assert key.startswith(prefix_for(kind, ns)) and key.startswith(prefix_for(kind, None))
    assert split_key(key) == (kind.group_resource, [ns, name] if kind.namespaced else [name])


@given(kind=st.sampled_from(BUILTIN), ns=NAMES, name=NAMES)
def test_no_two_resources_share_a_prefix(kind: Kind, ns: str, name: str) -> None:
    key = key_for(kind, ns, name)
    owners = [k for k in BUILTIN if key.startswith(prefix_for(k, None))]
    assert owners == [kind]


@given(ns=NAMES, name=NAMES)
def test_legacy_keys_move_to_upstream_ones(ns: str, name: str) -> None:
    for kind in BUILTIN:
        old = f"/registry/{kind.group_resource}/{ns}/{name}"
        new = legacy_key(old) or old
        assert new == (f"{prefix_for(kind, None)}{ns}/{name}")
    assert legacy_key(f"/registry/widgets.example.com/{ns}/{name}") == (
        f"/registry/example.com/widgets/{ns}/{name}"
    )
