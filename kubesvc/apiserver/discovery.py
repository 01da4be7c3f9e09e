"""Discovery documents: /version, legacy /api and /apis, and aggregated discovery (v2)."""

from __future__ import annotations

from typing import Any

from kubesvc.api import catalog
from kubesvc.api.kinds import VERBS, Kind

GIT_VERSION = "v1.32.4"
AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "binding": ["create"],
    "token": ["create"],
    "finalize": ["update"],
    "log": ["get"],
    "exec": ["create", "get"],
    "attach": ["create", "get"],
    "portforward": ["create", "get"],
    "proxy": ["create", "delete", "get", "patch", "update"],
}
_PROXY_OPTIONS = {
    "Pod": "PodProxyOptions",
    "Service": "ServiceProxyOptions",
    "Node": "NodeProxyOptions",
}


# groups served by handlers rather than stored kinds: (group, version) -> (resource, kind,
# verbs), as upstream lists them (create-only reviews, no storage)
VIRTUAL: dict[tuple[str, str], list[tuple[str, str, list[str]]]] = {
    ("authentication.k8s.io", "v1"): [("selfsubjectreviews", "SelfSubjectReview", ["create"])],
    ("authorization.k8s.io", "v1"): [
        ("localsubjectaccessreviews", "LocalSubjectAccessReview", ["create"]),
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", ["create"]),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", ["create"]),
        ("subjectaccessreviews", "SubjectAccessReview", ["create"]),
    ],
}


def _namespaced(resource: str) -> bool:
    return resource == "localsubjectaccessreviews"


def version_info() -> dict[str, str]:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "kubesvc",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "python",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


def _verbs(kind: Kind) -> list[str]:
    return list(VERBS)


def _subresource_kind(kind: Kind, sub: str) -> tuple[str, str, str]:
    """(group, version, kind) of a subresource's response."""
    if sub == "scale":
        return "autoscaling", "v1", "Scale"
    if sub == "binding":
        return "", "v1", "Binding"
    if sub == "token":
        return "authentication.k8s.io", "v1", "TokenRequest"
    if sub == "proxy":
        return "", "v1", _PROXY_OPTIONS[kind.kind]
    return kind.group, kind.version, kind.kind


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list() -> dict[str, Any]:
    items = []
    for group, versions in catalog.groups().items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        items.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    for group, version in VIRTUAL:
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        items.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    kinds = catalog.groups().get(group, {}).get(version, [])
    if (group, version) in VIRTUAL:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}",
            "resources": [
                {
                    "name": r,
                    "singularName": "",
                    "namespaced": _namespaced(r),
                    "kind": k,
                    "verbs": verbs,
                }
                for r, k, verbs in VIRTUAL[(group, version)]
            ],
        }
    if not kinds:
        return None
    resources: list[dict[str, Any]] = []
    for k in kinds:
        entry: dict[str, Any] = {
            "name": k.plural,
            "singularName": k.singular,
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": _verbs(k),
        }
        if k.short_names:
            entry["shortNames"] = list(k.short_names)
        if k.categories:
            entry["categories"] = list(k.categories)
        entry["storageVersionHash"] = _hash(k)
        resources.append(entry)
        for sub in k.subresources:
            g, v, kind = _subresource_kind(k, sub)
            sub_entry: dict[str, Any] = {
                "name": f"{k.plural}/{sub}",
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": kind,
                "verbs": _SUBRESOURCE_VERBS[sub],
            }
            if g != k.group:
                sub_entry["group"], sub_entry["version"] = g, v
            resources.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _hash(k: Kind) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(f"{k.group}/{k.version}/{k.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def aggregated(core: bool, version: str) -> dict[str, Any]:
    """An APIGroupDiscoveryList for /api (core=True) or /apis."""
    items = []
    for group, versions in catalog.groups().items():
        if core != (group == ""):
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": v,
                        "resources": _aggregated_resources(kinds),
                        "freshness": "Current",
                    }
                    for v, kinds in versions.items()
                ],
            }
        )
    if not core:
        for (group, version), resources in VIRTUAL.items():
            items.append(
                {
                    "metadata": {"name": group, "creationTimestamp": None},
                    "versions": [
                        {
                            "version": version,
                            "resources": [
                                {
                                    "resource": r,
                                    "responseKind": {"group": group, "version": version, "kind": k},
                                    "scope": "Namespaced" if _namespaced(r) else "Cluster",
                                    "singularResource": r[:-1],
                                    "verbs": verbs,
                                }
                                for r, k, verbs in resources
                            ],
                            "freshness": "Current",
                        }
                    ],
                }
            )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def _aggregated_resources(kinds: list[Kind]) -> list[dict[str, Any]]:
    resources = []
    for k in kinds:
        res: dict[str, Any] = {
            "resource": k.plural,
            "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
            "scope": "Namespaced" if k.namespaced else "Cluster",
            "singularResource": k.singular,
            "verbs": _verbs(k),
        }
        if k.short_names:
            res["shortNames"] = list(k.short_names)
        if k.categories:
            res["categories"] = list(k.categories)
        subs = []
        for sub in k.subresources:
            g, v, kind = _subresource_kind(k, sub)
            subs.append(
                {
                    "subresource": sub,
                    "responseKind": {"group": g, "version": v, "kind": kind},
                    "verbs": _SUBRESOURCE_VERBS[sub],
                }
            )
        if subs:
            res["subresources"] = subs
        resources.append(res)
    return resources
