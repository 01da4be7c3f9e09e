"""The ServiceAccount admission on pod create: the default account, upstream's refusal of a
missing one, the kube-api-access volume exactly as upstream adds it and when it does not;
and the node's token manager's refresh rule."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.api.errors import ApiError
from kubesvc.apiserver.serviceaccounts import MOUNT_PATH, admit, token_volume_source
from kubesvc.client.rest import ApiException
from kubesvc.node.tokens import Token, TokenKey, TokenManager, requires_refresh, token_request

ACCOUNTS: dict[tuple[str, str], dict[str, Any]] = {
    ("ns", "default"): {"metadata": {"name": "default"}},
    ("ns", "robot"): {"metadata": {"name": "robot"}, "automountServiceAccountToken": False},
    ("ns", "puller"): {"metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "reg"}]},
}


async def get_account(namespace: str, name: str) -> dict[str, Any] | None:
    return ACCOUNTS.get((namespace, name))


def run(pod: dict[str, Any], namespace: str = "ns") -> dict[str, Any]:
    asyncio.run(admit(pod, namespace, get_account))
    return pod


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], **spec},
    }


def test_default_account_and_the_token_volume_as_upstream() -> None:
    p = run(pod(initContainers=[{"name": "init"}]))
    spec = p["spec"]
    assert spec["serviceAccountName"] == "default"
    [volume] = spec["volumes"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", volume["name"])
    assert volume["projected"] == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }
    mount = {"name": volume["name"], "readOnly": True, "mountPath": MOUNT_PATH}
    for c in spec["containers"] + spec["initContainers"]:
        assert c["volumeMounts"] == [mount]


def test_automount_false_on_the_pod_or_the_account() -> None:
    assert "volumes" not in run(pod(automountServiceAccountToken=False))["spec"]
    assert "volumes" not in run(pod(serviceAccountName="robot"))["spec"]
    # the pod's choice wins over the account's
    spec = run(pod(serviceAccountName="robot", automountServiceAccountToken=True))["spec"]
    assert len(spec["volumes"]) == 1


def test_a_container_mounting_the_path_keeps_its_own() -> None:
    own = {"name": "mine", "mountPath": MOUNT_PATH}
    spec = run(
        pod(
            volumes=[{"name": "mine", "emptyDir": {}}],
            containers=[{"name": "a", "volumeMounts": [own]}, {"name": "b"}],
        )
    )["spec"]
    assert spec["containers"][0]["volumeMounts"] == [own]
    assert spec["containers"][1]["volumeMounts"][0]["mountPath"] == MOUNT_PATH
    assert len(spec["volumes"]) == 2
    # every container has its own: no token volume at all
    spec = run(
        pod(
            volumes=[{"name": "mine", "emptyDir": {}}],
            containers=[{"name": "a", "volumeMounts": [own]}],
        )
    )["spec"]
    assert [v["name"] for v in spec["volumes"]] == ["mine"]


def test_an_existing_token_volume_is_reused() -> None:
    volume = {"name": "kube-api-access-abcde", "projected": token_volume_source()}
    spec = run(pod(volumes=[volume]))["spec"]
    assert spec["volumes"] == [volume]
    assert spec["containers"][0]["volumeMounts"][0]["name"] == "kube-api-access-abcde"


def test_a_missing_named_account_is_refused_with_upstreams_message() -> None:
    with pytest.raises(ApiError) as e:
        run(pod(serviceAccountName="ghost"))
    assert e.value.code == 403
    assert e.value.message == (
        'pods "web" is forbidden: error looking up service account ns/ghost: '
        'serviceaccount "ghost" not found'
    )
    p = pod(serviceAccountName="ghost")
    p["metadata"] = {"generateName": "web-"}
    with pytest.raises(ApiError) as e:
        run(p)
    assert e.value.message.startswith('pods "web-" is forbidden')


def test_a_missing_default_account_admits_the_pod_without_a_token() -> None:
    spec = run(pod(), namespace="fresh")["spec"]
    assert spec["serviceAccountName"] == "default"
    assert "volumes" not in spec


def test_deprecated_service_account_field_and_pull_secrets() -> None:
    spec = run(pod(serviceAccount="puller"))["spec"]
    assert spec["serviceAccountName"] == "puller"
    assert spec["imagePullSecrets"] == [{"name": "reg"}]
    spec = run(pod(serviceAccountName="puller", imagePullSecrets=[{"name": "mine"}]))["spec"]
    assert spec["imagePullSecrets"] == [{"name": "mine"}]


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=20,
    ),
    st.sampled_from(["spec", "containers", "volumes", "initContainers", "serviceAccountName"]),
)
def test_hostile_pods_are_admitted_or_refused_never_crash(junk: Any, where: str) -> None:
    p = pod()
    if where == "spec":
        p["spec"] = junk
    else:
        p["spec"][where] = junk
    try:
        run(p)
    except ApiError as e:
        assert e.code == 403


def test_tokens_are_renewed_at_80_percent_or_after_a_day() -> None:
    t = Token("x", expires=10_000.0, expiration=1000)  # issued at 9,000
    assert not requires_refresh(t, now=9_700.0, jitter=0)
    assert requires_refresh(t, now=9_801.0, jitter=0)
    assert requires_refresh(t, now=9_795.0, jitter=10)
    long = Token("x", expires=1_000_000.0, expiration=900_000)  # issued at 100,000
    assert not requires_refresh(long, now=100_000.0 + 86_000, jitter=0)
    assert requires_refresh(long, now=100_000.0 + 86_401, jitter=0)


def test_the_node_asks_for_a_token_bound_to_the_pod() -> None:
    key = TokenKey("ns", "robot", "web", "uid-1", "", 3607)
    assert token_request(key)["spec"] == {
        "audiences": [],
        "expirationSeconds": 3607,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-1"},
    }
    assert token_request(TokenKey("ns", "robot", "web", "u", "vault", 600))["spec"][
        "audiences"
    ] == ["vault"]


class FakeTokenClient:
    """Answers TokenRequests as the API server does: a new token each time, expiring after
    the lifetime asked for; `fail` makes it refuse."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.requests: list[dict[str, Any]] = []
        self.fail = False

    async def request(self, method: str, path: str, *, body: Any = None) -> dict[str, Any]:
        if self.fail:
            raise ApiException(500, {"message": "down"})
        self.requests.append(body)
        expires = self.clock[0] + body["spec"]["expirationSeconds"]
        stamp = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"status": {"token": f"t{len(self.requests)}", "expirationTimestamp": stamp}}


def test_the_token_manager_caches_renews_and_forgets() -> None:
    clock = [1_800_000_000.0]
    client = FakeTokenClient(clock)
    manager = TokenManager(client, lambda: clock[0])  # type: ignore[arg-type]
    key = TokenKey("ns", "robot", "web", "uid-1", "", 3607)

    def get() -> str:
        return asyncio.run(manager.get(key))

    assert get() == "t1"
    clock[0] += 3607 * 0.5
    assert get() == "t1"  # cached
    clock[0] += 3607 * 0.35  # past 80 %
    assert get() == "t2"
    clock[0] += 3607 * 0.85
    client.fail = True
    assert get() == "t2"  # refresh failed: the current token is still good
    clock[0] += 3607
    with pytest.raises(ApiException):
        get()  # and once it is not, there is none
    client.fail = False
    manager.forget_pod("uid-1")
    assert get() == "t3"
