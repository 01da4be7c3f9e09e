"""RBAC enforced by the API server, driven by the real kubectl: a ServiceAccount's token
is refused what no binding grants (upstream's 403 wording), `kubectl auth can-i` (and
`--list`) answers through the access reviews, a RoleBinding grants only in its namespace,
and impersonation (`--as`, `--as-group`) needs the `impersonate` verb."""

from __future__ import annotations

import http.client
import json
import secrets
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import KUBECTL, ApiServerProcess, wait_for

pytestmark = pytest.mark.e2e


def _as(cp: ApiServerProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl holding only `token` (a client certificate would be taken first)."""
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


def _account(cp: ApiServerProcess, ns: str, name: str) -> str:
    """A token of the ServiceAccount ns/name (created when it is not `default`)."""
    if name == "default":
        wait_for(
            lambda: cp.kubectl("-n", ns, "get", "sa", "default", check=False).returncode == 0,
            timeout=30,
            what="the default ServiceAccount",
        )
    else:
        cp.out("-n", ns, "create", "sa", name)
    return cp.out("-n", ns, "create", "token", name).strip()


@pytest.fixture
def rbac(cp: ApiServerProcess) -> ApiServerProcess:
    """The control plane once the bootstrap policy is in the store."""
    wait_for(
        lambda: (
            cp.kubectl("get", "clusterrolebinding", "system:basic-user", check=False).returncode
            == 0
        ),
        timeout=30,
        what="the bootstrap policy",
    )
    return cp


@pytest.fixture
def other_ns(cp: ApiServerProcess) -> Iterator[str]:
    name = "rbac-other-" + secrets.token_hex(3)
    cp.out("create", "namespace", name)
    yield name
    cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _as_node(cp: ApiServerProcess, node: str, method: str, path: str, body: Any) -> tuple[int, Any]:
    """A request the admin makes as node `node` (impersonated), as it is sent."""
    ctx = ssl.create_default_context(cafile=str(cp.data_dir / "pki" / "ca.crt"))
    pki = cp.data_dir / "pki"
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", cp.port, context=ctx, timeout=30)
    headers = {
        "Impersonate-User": f"system:node:{node}",
        "Impersonate-Group": "system:nodes",
        "Content-Type": "application/merge-patch+json",
    }
    try:
        conn.request(method, path, json.dumps(body), headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _can_i(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode in (0, 1), run.stderr
    return run.stdout.strip()


def test_bootstrap_policy_is_created(rbac: ApiServerProcess) -> None:
    names = rbac.out("get", "clusterroles", "-o", "name").split()
    for role in ("cluster-admin", "admin", "edit", "view", "system:node", "system:kube-dns"):
        assert f"clusterrole.rbac.authorization.k8s.io/{role}" in names
    view = json.loads(rbac.out("get", "clusterrole", "view", "-o", "json"))
    assert view["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "true"
    assert any("pods" in r.get("resources", []) for r in view["rules"])
    binding = json.loads(rbac.out("get", "clusterrolebinding", "cluster-admin", "-o", "json"))
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}
    ]


def test_default_service_account_cannot_list_secrets(rbac: ApiServerProcess, cp_ns: str) -> None:
    token = _account(rbac, cp_ns, "default")
    run = _as(rbac, token, "-n", cp_ns, "get", "secrets")
    assert run.returncode == 1
    assert run.stderr.strip() == (
        f'Error from server (Forbidden): secrets is forbidden: User "system:serviceaccount:'
        f'{cp_ns}:default" cannot list resource "secrets" in API group "" in the namespace '
        f'"{cp_ns}"'
    )
    # a denied write changes nothing
    run = _as(rbac, token, "-n", cp_ns, "create", "configmap", "sneaky")
    assert "configmaps is forbidden" in run.stderr
    assert rbac.kubectl("-n", cp_ns, "get", "configmap", "sneaky", check=False).returncode == 1


def test_can_i_for_admin_view_and_impersonated_user(rbac: ApiServerProcess, cp_ns: str) -> None:
    assert _can_i(rbac.kubectl("auth", "can-i", "*", "*", check=False)) == "yes"
    assert _can_i(rbac.kubectl("auth", "can-i", "delete", "nodes", check=False)) == "yes"
    rbac.out(
        "-n",
        cp_ns,
        "create",
        "rolebinding",
        "viewer",
        "--clusterrole=view",
        f"--serviceaccount={cp_ns}:viewer",
    )
    token = _account(rbac, cp_ns, "viewer")
    assert _can_i(_as(rbac, token, "-n", cp_ns, "auth", "can-i", "list", "pods")) == "yes"
    assert (
        _can_i(_as(rbac, token, "-n", cp_ns, "auth", "can-i", "watch", "deployments.apps")) == "yes"
    )
    assert _can_i(_as(rbac, token, "-n", cp_ns, "auth", "can-i", "get", "secrets")) == "no"
    assert _can_i(_as(rbac, token, "-n", cp_ns, "auth", "can-i", "create", "pods")) == "no"
    assert _can_i(_as(rbac, token, "-n", "default", "auth", "can-i", "list", "pods")) == "no"
    assert _as(rbac, token, "-n", cp_ns, "get", "pods").returncode == 0
    # a user the admin impersonates: nothing until bound
    user = "jane-" + secrets.token_hex(3)
    ask = ("-n", cp_ns, "auth", "can-i", "list", "pods", f"--as={user}")
    assert _can_i(rbac.kubectl(*ask, check=False)) == "no"
    rbac.out(
        "-n", cp_ns, "create", "rolebinding", "jane-view", "--clusterrole=view", f"--user={user}"
    )
    wait_for(
        lambda: _can_i(rbac.kubectl(*ask, check=False)) == "yes",
        timeout=10,
        what="the binding to take effect",
    )
    who = json.loads(rbac.out("auth", "whoami", f"--as={user}", "-o", "json"))
    assert who["status"]["userInfo"] == {"username": user, "groups": ["system:authenticated"]}


def test_edit_in_one_namespace_only(rbac: ApiServerProcess, cp_ns: str, other_ns: str) -> None:
    rbac.out(
        "-n",
        cp_ns,
        "create",
        "rolebinding",
        "editor",
        "--clusterrole=edit",
        f"--serviceaccount={cp_ns}:editor",
    )
    token = _account(rbac, cp_ns, "editor")
    made = _as(rbac, token, "-n", cp_ns, "create", "configmap", "mine", "--from-literal=a=b")
    assert made.returncode == 0, made.stderr
    assert _as(rbac, token, "-n", cp_ns, "delete", "configmap", "mine").returncode == 0
    assert _as(rbac, token, "-n", cp_ns, "get", "secrets").returncode == 0
    run = _as(rbac, token, "-n", other_ns, "create", "configmap", "theirs")
    assert run.returncode == 1
    assert (
        f'configmaps is forbidden: User "system:serviceaccount:{cp_ns}:editor" cannot create '
        f'resource "configmaps" in API group "" in the namespace "{other_ns}"'
    ) in run.stderr
    assert _can_i(_as(rbac, token, "-n", other_ns, "auth", "can-i", "get", "pods")) == "no"
    # edit does not grant RBAC itself
    assert _can_i(_as(rbac, token, "-n", cp_ns, "auth", "can-i", "create", "rolebindings")) == "no"


def test_can_i_list(rbac: ApiServerProcess, cp_ns: str) -> None:
    rbac.out(
        "-n",
        cp_ns,
        "create",
        "rolebinding",
        "lister",
        "--clusterrole=view",
        f"--serviceaccount={cp_ns}:lister",
    )
    token = _account(rbac, cp_ns, "lister")
    run = _as(rbac, token, "-n", cp_ns, "auth", "can-i", "--list")
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split()[1:] for line in run.stdout.splitlines()[1:]}
    assert rows["pods"][-3:] == ["[get", "list", "watch]"]
    assert rows["selfsubjectaccessreviews.authorization.k8s.io"] == ["[]", "[]", "[create]"]
    assert "secrets" not in rows


def test_impersonation_needs_the_verb(rbac: ApiServerProcess, cp_ns: str) -> None:
    token = _account(rbac, cp_ns, "actor")
    run = _as(rbac, token, "-n", cp_ns, "get", "pods", "--as=jane")
    assert run.returncode == 1
    assert run.stderr.strip() == (
        'Error from server (Forbidden): users "jane" is forbidden: User '
        f'"system:serviceaccount:{cp_ns}:actor" cannot impersonate resource "users" in API '
        'group "" at the cluster scope'
    )
    role = "impersonate-jane-" + secrets.token_hex(3)
    try:
        rbac.out(
            "create",
            "clusterrole",
            role,
            "--verb=impersonate",
            "--resource=users",
            "--resource-name=jane",
        )
        rbac.out(
            "create",
            "clusterrolebinding",
            role,
            f"--clusterrole={role}",
            f"--serviceaccount={cp_ns}:actor",
        )
        ask = ("-n", cp_ns, "auth", "whoami", "--as=jane", "-o", "json")
        wait_for(lambda: _as(rbac, token, *ask).returncode == 0, timeout=10, what="the grant")
        who = json.loads(_as(rbac, token, *ask).stdout)
        assert who["status"]["userInfo"]["username"] == "jane"
        run = _as(rbac, token, "get", "pods", "--as=jane", "--as-group=system:masters")
        assert run.returncode == 1
        assert 'groups "system:masters" is forbidden' in run.stderr
        run = _as(rbac, token, "get", "pods", "--as=bob")
        assert 'users "bob" is forbidden' in run.stderr
    finally:
        rbac.kubectl("delete", "clusterrolebinding", role, check=False)
        rbac.kubectl("delete", "clusterrole", role, check=False)


def test_aggregated_roles_follow_their_parts(rbac: ApiServerProcess, cp_ns: str) -> None:
    part = "secrets-view-" + secrets.token_hex(3)
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": part,
            "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        },
        "rules": [rule],
    }
    rbac.out(
        "-n",
        cp_ns,
        "create",
        "rolebinding",
        "viewer",
        "--clusterrole=view",
        f"--serviceaccount={cp_ns}:viewer",
    )
    token = _account(rbac, cp_ns, "viewer")
    ask = ("-n", cp_ns, "auth", "can-i", "get", "secrets")
    assert _can_i(_as(rbac, token, *ask)) == "no"

    def aggregated(role: str) -> bool:
        return rule in json.loads(rbac.out("get", "clusterrole", role, "-o", "json"))["rules"]

    try:
        rbac.out("apply", "-f", "-", input=json.dumps(manifest))
        # view aggregates the part; edit and admin aggregate view's parts too
        for role in ("view", "edit", "admin"):
            wait_for(lambda r=role: aggregated(r), timeout=10, what=f"{role} aggregated")
        wait_for(lambda: _can_i(_as(rbac, token, *ask)) == "yes", timeout=10, what="allowed")
    finally:
        rbac.kubectl("delete", "clusterrole", part, check=False)
    wait_for(lambda: not aggregated("view"), timeout=10, what="view without the part")
    assert _can_i(_as(rbac, token, *ask)) == "no"


def test_a_node_reads_only_what_its_pods_refer_to(rbac: ApiServerProcess, cp_ns: str) -> None:
    """The Node authorizer: `system:node:NAME` in `system:nodes` gets the Secrets its pods
    use and its own Node, not another node's nor any other Secret; the refusal carries
    upstream's reason."""
    node = "node-" + secrets.token_hex(3)
    as_node = (f"--as=system:node:{node}", "--as-group=system:nodes")
    for name in ("used", "other"):
        rbac.out("-n", cp_ns, "create", "secret", "generic", name, "--from-literal=k=v")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bound", "namespace": cp_ns},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "s", "secret": {"secretName": "used"}}],
        },
    }
    rbac.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def can_i(*args: str) -> str:
        return _can_i(rbac.kubectl("-n", cp_ns, "auth", "can-i", *args, *as_node, check=False))

    unrelated = f"no - no relationship found between node '{node}' and this object"
    wait_for(lambda: can_i("get", "secret/used") == "yes", timeout=10, what="the node graph")
    assert can_i("get", "secret/other") == unrelated
    assert can_i("list", "secrets") == "no - No Object name found"
    assert can_i("get", f"nodes/{node}") == "yes"
    assert can_i("get", "nodes/someone-else") == (
        f"no - node '{node}' cannot read 'someone-else', only its own Node object"
    )
    assert can_i("list", "services") == "yes"  # the system:node role's rules
    assert can_i("create", "serviceaccounts/default", "--subresource=token") == "yes"
    assert can_i("create", "serviceaccounts/robot", "--subresource=token") == unrelated
    assert rbac.kubectl("-n", cp_ns, "get", "secret", "used", *as_node).returncode == 0
    refused = rbac.kubectl("-n", cp_ns, "get", "secret", "other", *as_node, check=False)
    assert refused.returncode == 1
    assert (
        f'secrets "other" is forbidden: User "system:node:{node}" cannot get resource '
        f'"secrets" in API group "" in the namespace "{cp_ns}": no relationship found between '
        f"node '{node}' and this object"
    ) in refused.stderr
    # the pod gone, so is the node's access to what it used
    rbac.out("-n", cp_ns, "delete", "pod", "bound", "--grace-period=0", "--force")
    wait_for(
        lambda: can_i("get", "secret/used") == unrelated, timeout=10, what="the graph to drop it"
    )


def test_a_node_writes_only_its_own_objects(rbac: ApiServerProcess, cp_ns: str) -> None:
    """NodeRestriction: what the Node authorizer lets a node write by kind, admission limits
    to the node's own Node (not its taints nor others' labels), pods bound to it, its Lease
    and tokens bound to its pods."""
    n1, n2 = ("node-" + secrets.token_hex(3) for _ in range(2))
    as_n1 = (f"--as=system:node:{n1}", "--as-group=system:nodes")
    for n in (n1, n2):
        rbac.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": n},
        }))  # fmt: skip
    for name, node in (("mine", n1), ("theirs", n2)):
        rbac.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": cp_ns},
            "spec": {"nodeName": node, "automountServiceAccountToken": False,
                     "containers": [{"name": "c", "image": "busybox"}]},
        }))  # fmt: skip

    def refused(*args: str) -> str:
        run = rbac.kubectl(*args, *as_n1, check=False)
        assert run.returncode != 0, f"{args} was allowed"
        return run.stderr

    assert rbac.kubectl("label", "node", n1, "example.com/team=a", *as_n1).returncode == 0
    # (a bare PATCH: kubectl reads the other node first, which the authorizer refuses)
    code, status = _as_node(rbac, n1, "PATCH", f"/api/v1/nodes/{n2}", {"metadata": {}})
    assert (code, status["message"]) == (
        403,
        f'nodes "{n2}" is forbidden: node "{n1}" is not allowed to modify node "{n2}"',
    )
    assert status["details"] == {"name": n2, "kind": "nodes"}
    assert (
        f'nodes "{n1}" is forbidden: is not allowed to modify labels: '
        "node-restriction.kubernetes.io/pool"
    ) in refused("label", "node", n1, "node-restriction.kubernetes.io/pool=gold")
    assert f'node "{n1}" is not allowed to modify taints' in refused(
        "taint", "node", n1, "k=v:NoSchedule"
    )
    pods = f"/api/v1/namespaces/{cp_ns}/pods"
    status = {"status": {"message": "from the node"}}
    assert _as_node(rbac, n1, "PATCH", f"{pods}/mine/status", status)[0] == 200
    code, out = _as_node(rbac, n1, "PATCH", f"{pods}/theirs/status", status)
    assert (code, out["message"]) == (
        403,
        f'pods "theirs" is forbidden: node "{n1}" can only update pod status for pods with '
        "spec.nodeName set to itself",
    )
    code, out = _as_node(rbac, n1, "DELETE", f"{pods}/theirs", {})
    assert (code, out["message"]) == (
        403,
        f'pods "theirs" is forbidden: node "{n1}" can only delete pods with spec.nodeName set '
        "to itself",
    )
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": n2, "namespace": "kube-node-lease"},
    }
    assert "can only access node lease with the same name as the requesting node" in (
        rbac.kubectl("create", "-f", "-", *as_n1, input=json.dumps(lease), check=False).stderr
    )
    lease["metadata"]["name"] = n1
    rbac.kubectl("create", "-f", "-", *as_n1, input=json.dumps(lease))
    theirs = json.loads(rbac.out("-n", cp_ns, "get", "pod", "theirs", "-o", "json"))
    bound = ("-n", cp_ns, "create", "token", "default", "--bound-object-kind=Pod")
    assert "node requested token bound to a pod scheduled on a different node" in refused(
        *bound, "--bound-object-name=theirs", f"--bound-object-uid={theirs['metadata']['uid']}"
    )
    assert "node requested token not bound to a pod" in refused(
        "-n", cp_ns, "create", "token", "default"
    )
    assert (
        rbac.kubectl("-n", cp_ns, "delete", "pod", "mine", "--wait=false", *as_n1).returncode == 0
    )


def test_no_one_grants_what_they_do_not_hold(rbac: ApiServerProcess, cp_ns: str) -> None:
    """RBAC's escalation check: a namespace admin may write Roles and RoleBindings there,
    but only with rules it holds (upstream's message), unless granted `escalate` or
    `bind`."""
    user = "ann-" + secrets.token_hex(3)
    rbac.out(
        "-n", cp_ns, "create", "rolebinding", "ann-admin", "--clusterrole=admin", f"--user={user}"
    )
    as_ann = ("-n", cp_ns, f"--as={user}")
    wait_for(
        lambda: (
            _can_i(rbac.kubectl(*as_ann, "auth", "can-i", "create", "roles", check=False)) == "yes"
        ),
        timeout=10,
        what="the binding to take effect",
    )
    rbac.out(*as_ann, "create", "role", "read-secrets", "--verb=get", "--resource=secrets")
    refused = rbac.kubectl(
        *as_ann, "create", "role", "read-nodes", "--verb=get", "--resource=nodes", check=False
    )
    assert refused.returncode == 1
    assert (
        'roles.rbac.authorization.k8s.io "read-nodes" is forbidden: user '
        f'"{user}" (groups=["system:authenticated"]) is attempting to grant RBAC permissions '
        'not currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}'
    ) in refused.stderr
    # binding: to what the admin holds, yes; to cluster-admin, no, until granted `bind`
    rbac.out(*as_ann, "create", "rolebinding", "viewers", "--clusterrole=view", "--group=viewers")
    refused = rbac.kubectl(
        *as_ann,
        "create",
        "rolebinding",
        "admins",
        "--clusterrole=cluster-admin",
        "--group=x",
        check=False,
    )
    assert 'rolebindings.rbac.authorization.k8s.io "admins" is forbidden: user' in refused.stderr
    assert '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}' in refused.stderr
    refused = rbac.kubectl(
        *as_ann,
        "create",
        "rolebinding",
        "ghost",
        "--clusterrole=no-such-role",
        "--group=x",
        check=False,
    )
    assert (
        'rolebindings.rbac.authorization.k8s.io "ghost" is forbidden: '
        'clusterrole.rbac.authorization.k8s.io "no-such-role" not found' in refused.stderr
    )
    rbac.out(
        "-n",
        cp_ns,
        "create",
        "role",
        "bind-cluster-admin",
        "--verb=bind",
        "--resource=clusterroles",
        "--resource-name=cluster-admin",
    )
    rbac.out(
        "-n",
        cp_ns,
        "create",
        "rolebinding",
        "ann-bind",
        "--role=bind-cluster-admin",
        f"--user={user}",
    )
    wait_for(
        lambda: (
            rbac.kubectl(
                *as_ann,
                "create",
                "rolebinding",
                "admins",
                "--clusterrole=cluster-admin",
                "--group=x",
                check=False,
            ).returncode
            == 0
        ),
        timeout=10,
        what="the bind verb to take effect",
    )
    # and `escalate` lets it write a role beyond its own rights
    rbac.out("-n", cp_ns, "create", "role", "escalate-roles", "--verb=escalate", "--resource=roles")
    rbac.out(
        "-n",
        cp_ns,
        "create",
        "rolebinding",
        "ann-escalate",
        "--role=escalate-roles",
        f"--user={user}",
    )
    wait_for(
        lambda: (
            rbac.kubectl(
                *as_ann,
                "create",
                "role",
                "read-nodes",
                "--verb=get",
                "--resource=nodes",
                check=False,
            ).returncode
            == 0
        ),
        timeout=10,
        what="the escalate verb to take effect",
    )
