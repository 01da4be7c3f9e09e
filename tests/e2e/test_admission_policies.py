"""ValidatingAdmissionPolicy and its Binding (admissionregistration.k8s.io/v1) as stored
kinds: applied from the docs' manifests, shown with upstream's columns, validated. They
are not enforced (README limits)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import ApiServerProcess
from tests.e2e.test_docs_examples import EXAMPLES

pytestmark = pytest.mark.e2e

DENY = EXAMPLES / "service" / "networking" / "vap-servicecidr-deny.yaml"


def test_policies_apply_and_print(api: ApiServerProcess) -> None:
    api.out("apply", "-f", str(DENY))
    try:
        out = api.out("get", "validatingadmissionpolicies", "servicecidrs.deny")
        header, row = out.splitlines()
        assert header.split() == ["NAME", "VALIDATIONS", "PARAMKIND", "AGE"]
        assert row.split()[:3] == ["servicecidrs.deny", "2", "<unset>"]
        out = api.out("get", "validatingadmissionpolicybinding", "servicecidrs-deny-binding")
        header, row = out.splitlines()
        assert header.split() == ["NAME", "POLICYNAME", "PARAMREF", "AGE"]
        assert row.split()[:3] == ["servicecidrs-deny-binding", "servicecidrs.deny", "<unset>"]
        policy = json.loads(
            api.out("get", "validatingadmissionpolicy", "servicecidrs.deny", "-o", "json")
        )
        assert policy["spec"]["failurePolicy"] == "Fail"
        assert policy["spec"]["matchConstraints"]["matchPolicy"] == "Equivalent"
        assert policy["spec"]["matchConstraints"]["resourceRules"][0]["scope"] == "*"
        names = api.out("api-resources", "--api-group=admissionregistration.k8s.io", "-o", "name")
        assert "validatingadmissionpolicies.admissionregistration.k8s.io" in names.split()
    finally:
        api.kubectl("delete", "-f", str(DENY), "--ignore-not-found", check=False)


def test_invalid_policies_are_refused(api: ApiServerProcess) -> None:
    binding = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: bad-binding}
spec:
  validationActions: [Deny, Warn, Nope]
"""
    err = api.fails("create", "-f", "-", input=binding)
    assert "spec.policyName: Required value" in err
    assert 'spec.validationActions[2]: Unsupported value: "Nope"' in err
    assert 'must not contain both "Deny" and "Warn"' in err
    policy = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: bad-policy}
spec:
  failurePolicy: Sometimes
"""
    err = api.fails("create", "-f", "-", input=policy)
    assert 'spec.failurePolicy: Unsupported value: "Sometimes"' in err
    assert (
        "spec.validations: Required value: validations or auditAnnotations must contain at "
        "least one item" in err
    )
    assert "spec.matchConstraints: Required value" in err
