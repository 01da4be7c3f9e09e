#!/usr/bin/env python3
"""Generate kubesvc/auth/bootstrap_policy.json, the RBAC objects a cluster starts with, from
upstream's golden files of its bootstrap policy
(kubernetes/kubernetes plugin/pkg/auth/authorizer/rbac/bootstrappolicy/testdata/).

DIR holds cluster-roles.yaml, cluster-role-bindings.yaml, namespace-roles.yaml,
namespace-role-bindings.yaml and controller-roles.yaml as upstream has them. The controllers'
ClusterRoleBindings are derived from controller-roles.yaml as upstream's addControllerRole
derives them (each `system:controller:NAME` role bound to the ServiceAccount NAME in
kube-system), so the two always agree. Objects are kept as upstream writes them (names,
labels, the `rbac.authorization.kubernetes.io/autoupdate` annotation, rules, aggregation
rules), without `creationTimestamp: null`.

Run:  python tools/gen_bootstrap_policy.py DIR [--source TEXT]...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "kubesvc" / "auth" / "bootstrap_policy.json"
CONTROLLER_PREFIX = "system:controller:"
LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def items(path: Path) -> list[dict[str, Any]]:
    objs = yaml.safe_load(path.read_text())["items"]
    for obj in objs:
        obj["metadata"].pop("creationTimestamp", None)
    return objs


def controller_binding(role: dict[str, Any]) -> dict[str, Any]:
    name = role["metadata"]["name"]
    if not name.startswith(CONTROLLER_PREFIX):
        raise SystemExit(f"controller role {name!r} does not start with {CONTROLLER_PREFIX}")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"annotations": ANNOTATIONS, "labels": LABELS, "name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": name[len(CONTROLLER_PREFIX) :],
                "namespace": "kube-system",
            }
        ],
    }


def compact(policy: dict[str, Any]) -> str:
    """Compact JSON with one object a line, so a change to the policy reads as a diff."""

    def dump(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    sections = []
    for key, value in policy.items():
        if key == "source":
            sections.append(f"{dump(key)}:{dump(value)}")
        else:
            body = ",\n".join(dump(obj) for obj in value)
            sections.append(f"{dump(key)}:[\n{body}\n]")
    return "{\n" + ",\n".join(sections) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--source", action="append", default=[], help="a note on the inputs")
    args = parser.parse_args()
    d: Path = args.dir
    controller_roles = items(d / "controller-roles.yaml")
    policy = {
        "source": args.source,
        "clusterRoles": items(d / "cluster-roles.yaml") + controller_roles,
        "clusterRoleBindings": items(d / "cluster-role-bindings.yaml")
        + [controller_binding(r) for r in controller_roles],
        "roles": items(d / "namespace-roles.yaml"),
        "roleBindings": items(d / "namespace-role-bindings.yaml"),
    }
    OUT.write_text(compact(policy))
    counts = {k: len(v) for k, v in policy.items() if k != "source"}
    print(f"wrote {OUT.relative_to(ROOT)}: {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
