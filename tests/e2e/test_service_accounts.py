"""ServiceAccounts and what every namespace gets for them, against a real API server and
controller-manager driven by the real kubectl: the `default` ServiceAccount and the
`kube-root-ca.crt` ConfigMap, each put back when deleted or changed; tokens from the
TokenRequest API (`kubectl create token`) and what the API server makes of them."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kubesvc.auth import jwt
from kubesvc.auth.serviceaccount import claims as claims_for
from tests.e2e.harness import KUBECTL, ApiServerProcess, wait_for

pytestmark = pytest.mark.e2e


def _json(cp: ApiServerProcess, *args: str) -> dict[str, Any]:
    return json.loads(cp.out(*args, "-o", "json"))  # type: ignore[no-any-return]


def _configmap(cp: ApiServerProcess, ns: str) -> dict[str, str] | None:
    res = cp.kubectl("-n", ns, "get", "configmap", "kube-root-ca.crt", "-o", "json", check=False)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout).get("data")  # type: ignore[no-any-return]


def test_new_namespace_gets_default_sa_and_root_ca(cp: ApiServerProcess, cp_ns: str) -> None:
    ca = (cp.data_dir / "pki" / "ca.crt").read_text()
    wait_for(
        lambda: cp.kubectl("-n", cp_ns, "get", "sa", "default", check=False).returncode == 0,
        timeout=30,
        what="the default ServiceAccount",
    )
    out = cp.out("-n", cp_ns, "get", "sa")
    assert out.split("\n")[0].split() == ["NAME", "SECRETS", "AGE"]
    assert out.split("\n")[1].split()[:2] == ["default", "0"]
    assert wait_for(lambda: _configmap(cp, cp_ns), timeout=30, what="kube-root-ca.crt") == {
        "ca.crt": ca
    }
    cm = json.loads(cp.out("-n", cp_ns, "get", "configmap", "kube-root-ca.crt", "-o", "json"))
    assert "kube-apiserver" in cm["metadata"]["annotations"]["kubernetes.io/description"]


def test_root_ca_configmap_is_restored(cp: ApiServerProcess, cp_ns: str) -> None:
    ca = (cp.data_dir / "pki" / "ca.crt").read_text()
    wait_for(lambda: _configmap(cp, cp_ns), timeout=30, what="kube-root-ca.crt")
    cp.out(
        "-n",
        cp_ns,
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "--type=merge",
        "-p",
        '{"data": {"ca.crt": "forged"}}',
    )
    wait_for(lambda: _configmap(cp, cp_ns) == {"ca.crt": ca}, timeout=30, what="the CA again")
    cp.out("-n", cp_ns, "delete", "configmap", "kube-root-ca.crt")
    wait_for(lambda: _configmap(cp, cp_ns) == {"ca.crt": ca}, timeout=30, what="it recreated")


def test_created_service_account_is_listed(cp: ApiServerProcess, cp_ns: str) -> None:
    assert cp.out("-n", cp_ns, "create", "sa", "robot").strip() == "serviceaccount/robot created"
    names = cp.out("-n", cp_ns, "get", "sa", "-o", "name").split()
    assert "serviceaccount/robot" in names


# -- TokenRequest and the service-account authenticator ---------------------------------------


def _with_token(cp: ApiServerProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl holding only `token` (no client certificate: upstream takes a certificate
    before a token)."""
    return subprocess.run(
        [
            KUBECTL,
            "--kubeconfig=/dev/null",
            f"--server=https://127.0.0.1:{cp.port}",
            f"--certificate-authority={cp.data_dir / 'pki' / 'ca.crt'}",
            f"--token={token}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**cp.env(), "KUBECONFIG": "/dev/null"},
    )


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def _whoami(cp: ApiServerProcess, token: str) -> dict[str, Any] | None:
    res = _with_token(cp, token, "auth", "whoami", "-o", "json")
    if res.returncode != 0:
        return None
    return json.loads(res.stdout)["status"]["userInfo"]  # type: ignore[no-any-return]


def _sign(cp: ApiServerProcess, claims: dict[str, Any]) -> str:
    key = serialization.load_pem_private_key((cp.data_dir / "pki" / "sa.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return jwt.sign(claims, key)


def test_created_token_authenticates_as_its_service_account(
    cp: ApiServerProcess, cp_ns: str
) -> None:
    cp.out("-n", cp_ns, "create", "sa", "robot")
    token = cp.out("-n", cp_ns, "create", "token", "robot").strip()
    claims = _claims(token)
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["sub"] == f"system:serviceaccount:{cp_ns}:robot"
    assert claims["exp"] - claims["iat"] == 3600
    sa_uid = _json(cp, "-n", cp_ns, "get", "sa", "robot")["metadata"]["uid"]
    assert claims["kubernetes.io"] == {
        "namespace": cp_ns,
        "serviceaccount": {"name": "robot", "uid": sa_uid},
    }
    user = _whoami(cp, token)
    assert user is not None
    assert user["username"] == f"system:serviceaccount:{cp_ns}:robot"
    assert user["uid"] == sa_uid
    assert user["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{cp_ns}",
        "system:authenticated",
    ]
    # authenticated, but granted nothing by RBAC: upstream's 403, not a 401
    res = _with_token(cp, token, "-n", cp_ns, "get", "sa", "-o", "name")
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f'Error from server (Forbidden): serviceaccounts is forbidden: User "system:'
        f'serviceaccount:{cp_ns}:robot" cannot list resource "serviceaccounts" in API group "" '
        f'in the namespace "{cp_ns}"'
    )
    # the token dies with its ServiceAccount (after the authenticator's cache)
    cp.out("-n", cp_ns, "delete", "sa", "robot")
    wait_for(lambda: _whoami(cp, token) is None, timeout=30, what="the token refused")
    res = _with_token(cp, token, "get", "--raw", "/api")
    assert "error: You must be logged in to the server (Unauthorized)" in res.stderr


def test_token_duration_audience_and_limits(cp: ApiServerProcess, cp_ns: str) -> None:
    cp.out("-n", cp_ns, "create", "sa", "robot")
    token = cp.out("-n", cp_ns, "create", "token", "robot", "--duration=10m").strip()
    claims = _claims(token)
    assert claims["exp"] - claims["iat"] == 600
    err = cp.fails("-n", cp_ns, "create", "token", "robot", "--duration=5m")
    assert (
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
        "Invalid value: 300: may not specify a duration less than 10 minutes"
    ) in err
    err = cp.fails("-n", cp_ns, "create", "token", "nobody")
    assert 'serviceaccounts "nobody" not found' in err
    # a token for another audience is not one for the API server
    other = cp.out("-n", cp_ns, "create", "token", "robot", "--audience=vault").strip()
    assert _claims(other)["aud"] == ["vault"]
    assert _whoami(cp, other) is None
    assert _whoami(cp, token) is not None


def test_expired_token_is_refused(cp: ApiServerProcess, cp_ns: str) -> None:
    cp.out("-n", cp_ns, "create", "sa", "robot")
    uid = _json(cp, "-n", cp_ns, "get", "sa", "robot")["metadata"]["uid"]
    now = int(time.time())
    account = {"metadata": {"name": "robot", "namespace": cp_ns, "uid": uid}}
    aud = ["https://kubernetes.default.svc.cluster.local"]
    good = claims_for(account, now=now - 1800, expiration_seconds=3600, audiences=aud)
    assert _whoami(cp, _sign(cp, good)) is not None
    # expired 5 minutes ago, beyond the minute of clock skew allowed
    old = claims_for(account, now=now - 3900, expiration_seconds=3600, audiences=aud)
    assert _whoami(cp, _sign(cp, old)) is None
    forged = _sign(cp, good)[:-4] + "AAAA"
    assert _whoami(cp, forged) is None


def test_token_bound_to_a_pod_dies_with_the_pod(cp: ApiServerProcess, cp_ns: str) -> None:
    cp.out("-n", cp_ns, "create", "sa", "robot")
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: holder}\n"
        "spec: {serviceAccountName: robot, containers: [{name: c, image: busybox}]}\n"
    )
    cp.out("-n", cp_ns, "apply", "-f", "-", input=pod)
    pod_uid = _json(cp, "-n", cp_ns, "get", "pod", "holder")["metadata"]["uid"]
    token = cp.out(
        "-n",
        cp_ns,
        "create",
        "token",
        "robot",
        "--bound-object-kind=Pod",
        "--bound-object-name=holder",
    ).strip()
    assert _claims(token)["kubernetes.io"]["pod"] == {"name": "holder", "uid": pod_uid}
    user = _whoami(cp, token)
    assert user is not None
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["holder"]
    assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [pod_uid]
    err = cp.fails(
        "-n",
        cp_ns,
        "create",
        "token",
        "default",
        "--bound-object-kind=Pod",
        "--bound-object-name=holder",
    )
    assert (
        'cannot bind token for serviceaccount "default" to pod running with different '
        "serviceaccount name."
    ) in err
    cp.out("-n", cp_ns, "delete", "pod", "holder", "--grace-period=0", "--force")
    wait_for(lambda: _whoami(cp, token) is None, timeout=30, what="the token refused")


def test_admin_whoami_discovery_and_issuer_documents(cp: ApiServerProcess) -> None:
    user = json.loads(cp.out("auth", "whoami", "-o", "json"))["status"]["userInfo"]
    assert user == {
        "username": "kubernetes-admin",
        "groups": ["system:masters", "system:authenticated"],
    }
    resources = json.loads(cp.out("get", "--raw", "/api/v1"))["resources"]
    token = next(r for r in resources if r["name"] == "serviceaccounts/token")
    assert token["verbs"] == ["create"]
    assert (token["group"], token["version"], token["kind"]) == (
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
    )
    config = json.loads(cp.out("get", "--raw", "/.well-known/openid-configuration"))
    assert config["issuer"] == "https://kubernetes.default.svc.cluster.local"
    keys = json.loads(cp.out("get", "--raw", "/openid/v1/jwks"))["keys"]
    assert [k["alg"] for k in keys] == ["ES256"]


def test_a_bad_token_gets_upstreams_401(cp: ApiServerProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(cp.data_dir / "pki" / "ca.crt"))
    for header in ("Bearer nonsense", "bearer a.b.c", "BEARER " + "x.y." * 2000):
        req = urllib.request.Request(
            f"https://127.0.0.1:{cp.port}/api/v1/namespaces", headers={"Authorization": header}
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, context=ctx, timeout=10)
        assert e.value.code == 401
        assert json.loads(e.value.read()) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
