"""The RBAC authorizer's model at scale: what building the policy and one check cost with
the bootstrap policy plus N namespaces, each with a Role, a RoleBinding of it and a
RoleBinding of `edit` to a ServiceAccount, and N/10 ClusterRoleBindings to users.

    python bench/rbac_bench.py [--namespaces 5000] [--json FILE]

No cluster and no root needed: the model is pure. Prints one Markdown table on stdout
(progress on stderr); see bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Results, Row, exit_status, log, report_rows
from kubesvc.auth.bootstrap import bootstrap_policy
from kubesvc.auth.forbidden import forbidden
from kubesvc.auth.rbac import Policy
from kubesvc.auth.request import request_info
from kubesvc.auth.user import AUTHENTICATED, UserInfo, service_account_user

CHECK_TARGET = 50.0  # µs: a check must be small beside the ~1 ms a request costs anyway
REF = {"apiGroup": "rbac.authorization.k8s.io"}
NS0_SECRETS = "/api/v1/namespaces/ns-0/secrets"


@dataclass(frozen=True)
class Workload:
    namespaces: int
    checks: int


def objects(n: int) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    boot = bootstrap_policy()
    roles, role_bindings = list(boot.roles), list(boot.role_bindings)
    crbs = list(boot.cluster_role_bindings)
    read_cm = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
    for i in range(n):
        ns = f"ns-{i}"
        roles.append({"metadata": {"namespace": ns, "name": "cm-reader"}, "rules": [read_cm]})
        sa = {"kind": "ServiceAccount", "name": "app", "namespace": ns}
        role_bindings.append(
            {
                "metadata": {"namespace": ns, "name": "cm-reader"},
                "roleRef": {**REF, "kind": "Role", "name": "cm-reader"},
                "subjects": [sa],
            }
        )
        role_bindings.append(
            {
                "metadata": {"namespace": ns, "name": "app-edit"},
                "roleRef": {**REF, "kind": "ClusterRole", "name": "edit"},
                "subjects": [sa],
            }
        )
    for i in range(n // 10):
        crbs.append(
            {
                "metadata": {"name": f"user-{i}-view"},
                "roleRef": {**REF, "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": f"user-{i}"}],
            }
        )
    return roles, boot.cluster_roles, role_bindings, crbs


def per_check_us(policy: Policy, user: UserInfo, attrs: Any, checks: int, want: bool) -> float:
    """The median of 5 runs of `checks` checks, per check, in µs."""
    assert policy.authorize(user, attrs).allowed is want
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(checks):
            policy.authorize(user, attrs)
        runs.append(round((time.perf_counter() - t0) * 1e6 / checks, 1))
    return statistics.median(runs)


def run(w: Workload, results: Results[Row]) -> None:
    n = w.namespaces
    log(f"objects for {n:,} namespaces")
    roles, cluster_roles, role_bindings, crbs = objects(n)
    log("build")
    t0 = time.perf_counter()
    policy = Policy(roles, cluster_roles, role_bindings, crbs)
    build = time.perf_counter() - t0
    bindings = len(role_bindings) + len(crbs)
    results.add(Row(f"build the policy ({bindings:,} bindings)", build, "s"))
    sa = service_account_user(f"ns-{n // 2}", "app")
    ns = f"/api/v1/namespaces/ns-{n // 2}"
    member = UserInfo(f"user-{n // 20}", groups=(AUTHENTICATED,))
    anyone = UserInfo("x", groups=(AUTHENTICATED,))
    apps = f"/apis/apps/v1/namespaces/ns-{n // 2}/deployments"
    cases = [
        ("ServiceAccount lists its configmaps (Role)", sa, ("GET", f"{ns}/configmaps"), True),
        ("ServiceAccount creates a Deployment (edit)", sa, ("POST", apps), True),
        ("ServiceAccount lists nodes (denied)", sa, ("GET", "/api/v1/nodes"), False),
        ("ServiceAccount lists secrets elsewhere (denied)", sa, ("GET", NS0_SECRETS), False),
        ("user with view lists pods", member, ("GET", f"{ns}/pods"), True),
        ("user gets /healthz (public-info-viewer)", anyone, ("GET", "/healthz"), True),
    ]
    for what, user, (method, path), want in cases:
        log(what)
        attrs = request_info(method, path, {})
        us = per_check_us(policy, user, attrs, w.checks, want)
        results.add(Row(f"check: {what}", us, "µs", target=CHECK_TARGET))
    log("request attributes and the 403")
    t0 = time.perf_counter()
    for _ in range(w.checks):
        request_info("GET", f"{ns}/pods/web-0/log", {"container": "c"})
    us = round((time.perf_counter() - t0) * 1e6 / w.checks, 1)
    results.add(Row("request attributes of a GET", us, "µs"))
    attrs = request_info("GET", "/api/v1/nodes", {})
    t0 = time.perf_counter()
    for _ in range(w.checks):
        forbidden(sa, attrs).status()
    us = round((time.perf_counter() - t0) * 1e6 / w.checks, 1)
    results.add(Row("the 403's Status", us, "µs"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=5_000)
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    w = Workload(args.namespaces, args.checks)
    results: Results[Row] = Results()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    run(w, results)
    report_rows("RBAC authorizer", results, w, started, args.json)
    return exit_status(False, results)


if __name__ == "__main__":
    sys.exit(main())
