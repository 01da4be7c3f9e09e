"""Where each resource lives in the store: kube-apiserver's etcd key layout, so that
`etcdctl get --prefix /registry/services/specs/default/` shows what upstream would.

Built-in resources are stored under `/registry/<resource>/` (the plural without its group),
with upstream's historical exceptions; custom resources under `/registry/<group>/<resource>/`
(test/integration/etcd/data.go in kubernetes/kubernetes lists every expected path).
Namespaced objects add `<namespace>/`, and every key ends with the object's name.
"""

from __future__ import annotations

from kubesvc.api.catalog import BUILTIN
from kubesvc.api.kinds import Kind

ROOT = "/registry/"
LAYOUT = 1  # the layout SQLite stores are migrated to (legacy_key) once
# What holds a Service's ClusterIP and NodePorts, written in the Service's own transaction
# (services.py): upstream's IPAddress objects (its allocator since v1.33), and one key per
# NodePort (upstream keeps a bitmap at /registry/ranges/servicenodeports, which every
# allocation would have to rewrite).
IP_CLAIMS = ROOT + "ipaddresses/"
NODE_PORT_CLAIMS = ROOT + "servicenodeports/"

# group_resource -> the path under /registry/ that upstream keeps it at
_OVERRIDES: dict[str, str] = {
    "services": "services/specs",
    "endpoints": "services/endpoints",
    "nodes": "minions",
    "replicationcontrollers": "controllers",
    "ingresses.networking.k8s.io": "ingress",
    "customresourcedefinitions.apiextensions.k8s.io": (
        "apiextensions.k8s.io/customresourcedefinitions"
    ),
    "apiservices.apiregistration.k8s.io": "apiregistration.k8s.io/apiservices",
}
_BUILTIN = frozenset(k.group_resource for k in BUILTIN)
# the path under /registry/ -> group_resource, for the built-in resources
_BY_PATH: dict[str, str] = {
    **{k.plural: k.group_resource for k in BUILTIN if k.group_resource not in _OVERRIDES},
    **{path: gr for gr, path in _OVERRIDES.items()},
}


def resource_path(group_resource: str) -> str:
    """'services' -> 'services/specs'; 'deployments.apps' -> 'deployments';
    'widgets.example.com' (custom) -> 'example.com/widgets'."""
    override = _OVERRIDES.get(group_resource)
    if override is not None:
        return override
    plural, _, group = group_resource.partition(".")
    if group and group_resource not in _BUILTIN:
        return f"{group}/{plural}"
    return plural


def resource_prefix(group_resource: str) -> str:
    return f"{ROOT}{resource_path(group_resource)}/"


def prefix_for(kind: Kind, namespace: str | None) -> str:
    """Every object of a kind, or of a kind in one namespace."""
    base = resource_prefix(kind.group_resource)
    return f"{base}{namespace}/" if kind.namespaced and namespace else base


def key_for(kind: Kind, namespace: str | None, name: str) -> str:
    if kind.namespaced:
        return f"{resource_prefix(kind.group_resource)}{namespace}/{name}"
    return f"{resource_prefix(kind.group_resource)}{name}"


def legacy_key(key: str) -> str | None:
    """The key an object had before kubesvc used upstream's layout
    ('/registry/<group_resource>/...'), mapped to its key now; None when it is unchanged."""
    if not key.startswith(ROOT):
        return None
    group_resource, sep, rest = key[len(ROOT) :].partition("/")
    if not sep:
        return None
    new = f"{resource_prefix(group_resource)}{rest}"
    return new if new != key else None


def split_key(key: str) -> tuple[str, list[str]]:
    """'/registry/services/specs/default/x' -> ('services', ['default', 'x']): the resource
    a key belongs to and what follows its prefix (namespace and name, or name)."""
    parts = key[len(ROOT) :].split("/") if key.startswith(ROOT) else []
    for width in (2, 1):
        gr = _BY_PATH.get("/".join(parts[:width]))
        if gr is not None and len(parts) > width:
            return gr, parts[width:]
    if len(parts) >= 3 and "." in parts[0]:  # a custom resource: /registry/GROUP/PLURAL/...
        return f"{parts[1]}.{parts[0]}", parts[2:]
    return "", parts[1:]
