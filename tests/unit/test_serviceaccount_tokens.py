"""Service-account token claims as upstream writes them, what makes them acceptable (issuer,
audience, expiry, the bound objects), and the authenticator that puts it together: x509
users, the admin token, Bearer in any case, the cache."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.auth import jwt, serviceaccount
from kubesvc.auth.authenticator import (
    ADMIN_USER,
    Authenticator,
    Unauthorized,
    bearer_token,
    certificate_user,
)
from kubesvc.auth.serviceaccount import InvalidClaims, claims, parse_claims
from kubesvc.auth.user import AUTHENTICATED, SYSTEM_MASTERS

KEY = ec.generate_private_key(ec.SECP256R1())
NOW = 1_800_000_000
SA = {"metadata": {"name": "robot", "namespace": "team", "uid": "sa-uid"}}
POD = {"metadata": {"name": "web", "namespace": "team", "uid": "pod-uid"}}
NODE = {"metadata": {"name": "node-1", "uid": "node-uid"}}


def sa_claims(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "now": NOW,
        "expiration_seconds": 3600,
        "audiences": ["https://kubernetes.default.svc.cluster.local"],
    }
    args.update(kw)
    return claims(SA, **args)


def test_claims_are_upstreams() -> None:
    c = sa_claims(pod=POD, node=NODE)
    jti = c.pop("jti")
    assert len(jti) == 36
    assert c == {
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": NOW + 3600,
        "iat": NOW,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "kubernetes.io": {
            "namespace": "team",
            "serviceaccount": {"name": "robot", "uid": "sa-uid"},
            "pod": {"name": "web", "uid": "pod-uid"},
            "node": {"name": "node-1", "uid": "node-uid"},
        },
        "nbf": NOW,
        "sub": "system:serviceaccount:team:robot",
    }


def test_parsed_claims_give_the_service_accounts_user() -> None:
    parsed = parse_claims(sa_claims(pod=POD, node=NODE), now=NOW)
    user = parsed.user()
    assert user.name == "system:serviceaccount:team:robot"
    assert user.uid == "sa-uid"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:team", AUTHENTICATED)
    assert user.extra[serviceaccount.EXTRA_POD_NAME] == ("web",)
    assert user.extra[serviceaccount.EXTRA_POD_UID] == ("pod-uid",)
    assert user.extra[serviceaccount.EXTRA_NODE_NAME] == ("node-1",)
    assert user.extra[serviceaccount.EXTRA_CREDENTIAL_ID][0].startswith("JTI=")


@pytest.mark.parametrize(
    ("change", "now"),
    [
        pytest.param({"iss": "https://elsewhere"}, NOW, id="issuer"),
        pytest.param({"aud": ["vault"]}, NOW, id="audience"),
        pytest.param({"aud": []}, NOW, id="no-audience"),
        pytest.param({}, NOW + 3600 + serviceaccount.LEEWAY + 1, id="expired"),
        pytest.param({"exp": "never"}, NOW, id="exp-string"),
        pytest.param({"exp": None}, NOW, id="exp-null"),
        pytest.param({}, NOW - serviceaccount.LEEWAY - 1, id="not-yet"),
        pytest.param({"sub": "system:serviceaccount:kube-system:robot"}, NOW, id="sub-other"),
        pytest.param({"kubernetes.io": None}, NOW, id="no-private"),
        pytest.param({"kubernetes.io": {"namespace": "team"}}, NOW, id="no-account"),
        pytest.param(
            {"kubernetes.io": {"namespace": "team", "serviceaccount": {"name": "robot"}}},
            NOW,
            id="no-uid",
        ),
    ],
)
def test_unacceptable_claims_are_refused(change: dict[str, Any], now: int) -> None:
    with pytest.raises(InvalidClaims):
        parse_claims({**sa_claims(), **change}, now=now)


def test_no_expiry_is_refused() -> None:
    c = sa_claims()
    del c["exp"]
    with pytest.raises(InvalidClaims):
        parse_claims(c, now=NOW)


def test_expiry_within_the_leeway_is_accepted() -> None:
    assert parse_claims(sa_claims(), now=NOW + 3600 + serviceaccount.LEEWAY).expires == NOW + 3600


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["iss", "aud", "exp", "nbf", "iat", "sub", "kubernetes.io", "jti"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=10), inner, max_size=3)
            ),
            max_leaves=10,
        ),
    )
)
def test_any_claims_parse_or_are_refused(c: dict[str, Any]) -> None:
    base = sa_claims()
    try:
        parsed = parse_claims({**base, **c}, now=NOW)
    except InvalidClaims:
        return
    # accepted: still names one ServiceAccount by name and uid
    assert parsed.user().name.startswith("system:serviceaccount:")
    assert parsed.account.uid and parsed.namespace


def test_bearer_header_is_matched_in_any_case() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bEaReR abc") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("") is None
    assert bearer_token("Bearer") == ""
    assert bearer_token("Bearer  ") == ""


def test_certificate_user_is_cn_and_organisations() -> None:
    cert = {
        "subject": (
            (("organizationName", "system:nodes"),),
            (("organizationName", "team"),),
            (("commonName", "system:node:n1"),),
        )
    }
    user = certificate_user(cert)
    assert user is not None
    assert (user.name, user.groups) == ("system:node:n1", ("system:nodes", "team", AUTHENTICATED))
    assert certificate_user({"subject": ((("organizationName", "x"),),)}) is None


class Objects:
    def __init__(self, *objs: tuple[str, dict[str, Any]]) -> None:
        self.objs = {(k, o["metadata"]["namespace"], o["metadata"]["name"]): o for k, o in objs}
        self.lookups = 0

    async def __call__(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.lookups += 1
        return self.objs.get((kind, namespace, name))


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def authenticator(objects: Objects, clock: Clock) -> Authenticator:
    return Authenticator("admin-secret", KEY.public_key(), objects, clock)


def run(auth: Authenticator, header: str) -> Any:
    return asyncio.run(auth.authenticate(header, None))


def test_admin_token_is_a_master() -> None:
    auth = authenticator(Objects(), Clock())
    user = run(auth, "bearer admin-secret")
    assert (user.name, user.groups) == (ADMIN_USER, (SYSTEM_MASTERS, AUTHENTICATED))
    assert run(auth, "") is None
    with pytest.raises(Unauthorized):
        run(auth, "Bearer admin-secreT")
    with pytest.raises(Unauthorized):
        run(auth, "Bearer ")


def test_a_pod_bound_token_lives_as_long_as_its_pod() -> None:
    pod = {"metadata": {**POD["metadata"]}}
    objects = Objects(("ServiceAccount", SA), ("Pod", pod))
    clock = Clock()
    auth = authenticator(objects, clock)
    token = jwt.sign(sa_claims(pod=POD), KEY)
    assert run(auth, f"Bearer {token}").name == "system:serviceaccount:team:robot"
    seen = objects.lookups
    assert run(auth, f"Bearer {token}").name == "system:serviceaccount:team:robot"
    assert objects.lookups == seen  # cached
    # deleted gracefully: still good within the grace, not after
    pod["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"  # NOW is 08:00:00
    clock.now += 50
    assert run(auth, f"Bearer {token}")
    clock.now += 20
    with pytest.raises(Unauthorized):
        run(auth, f"Bearer {token}")
    # gone, or another pod of that name
    del objects.objs[("Pod", "team", "web")]
    with pytest.raises(Unauthorized):
        run(auth, f"Bearer {token}")
    objects.objs[("Pod", "team", "web")] = {"metadata": {**POD["metadata"], "uid": "new"}}
    with pytest.raises(Unauthorized):
        run(auth, f"Bearer {token}")


def test_a_token_of_a_recreated_service_account_is_refused() -> None:
    objects = Objects(("ServiceAccount", {"metadata": {**SA["metadata"], "uid": "other"}}))
    auth = authenticator(objects, Clock())
    with pytest.raises(Unauthorized):
        run(auth, f"Bearer {jwt.sign(sa_claims(), KEY)}")


def test_an_expired_token_is_refused_even_when_cached() -> None:
    objects = Objects(("ServiceAccount", SA))
    clock = Clock()
    auth = authenticator(objects, clock)
    token = jwt.sign(sa_claims(expiration_seconds=600), KEY)
    assert run(auth, f"Bearer {token}")
    clock.now += 600 + serviceaccount.LEEWAY + 1
    with pytest.raises(Unauthorized):
        run(auth, f"Bearer {token}")


def test_another_keys_token_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    auth = authenticator(Objects(("ServiceAccount", SA)), Clock())
    with pytest.raises(Unauthorized):
        run(auth, f"Bearer {jwt.sign(sa_claims(), other)}")
