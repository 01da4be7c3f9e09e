"""ServiceAccounts and what every namespace gets for them, against a real API server and
controller-manager driven by the real kubectl: the `default` ServiceAccount and the
`kube-root-ca.crt` ConfigMap, each put back when deleted or changed."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import ApiServerProcess, wait_for

pytestmark = pytest.mark.e2e


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
