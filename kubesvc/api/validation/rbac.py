"""rbac.authorization.k8s.io/v1 validation (pkg/apis/rbac/validation, v1.32)."""

from __future__ import annotations

from kubesvc.api.errors import invalid, not_supported, required
from kubesvc.api.validation.meta import (
    Errs,
    Obj,
    as_dict,
    as_list,
    is_path_segment_name,
    validate_object_meta,
    validate_object_meta_update,
)

RBAC_GROUP = "rbac.authorization.k8s.io"


def _path_name(name: object, prefix: bool) -> list[str]:
    return is_path_segment_name(str(name or ""))


def _rules(rules: object, path: str, namespaced: bool) -> Errs:
    errs: Errs = []
    for i, rule in enumerate(as_list(rules)):
        rule = as_dict(rule)
        rpath = f"{path}[{i}]"
        if not as_list(rule.get("verbs")):
            errs.append(required(f"{rpath}.verbs", "verbs must contain at least one value"))
        urls = as_list(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                errs.append(
                    invalid(
                        f"{rpath}.nonResourceURLs",
                        urls,
                        "namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if as_list(rule.get("apiGroups")) or as_list(rule.get("resources")):
                errs.append(
                    invalid(
                        f"{rpath}.nonResourceURLs",
                        urls,
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not as_list(rule.get("apiGroups")):
            errs.append(
                required(f"{rpath}.apiGroups", "resource rules must supply at least one api group")
            )
        if not as_list(rule.get("resources")):
            errs.append(
                required(f"{rpath}.resources", "resource rules must supply at least one resource")
            )
    return errs


def validate_role(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, _path_name)
    return errs + _rules(obj.get("rules"), "rules", True)


def validate_cluster_role(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, _path_name)
    return errs + _rules(obj.get("rules"), "rules", False)


def _subjects(subjects: object, namespaced: bool) -> Errs:
    errs: Errs = []
    for i, subject in enumerate(as_list(subjects)):
        subject = as_dict(subject)
        path = f"subjects[{i}]"
        if not subject.get("name"):
            errs.append(required(f"{path}.name"))
        kind = subject.get("kind")
        group = subject.get("apiGroup", "")
        if kind == "ServiceAccount":
            if group:
                errs.append(not_supported(f"{path}.apiGroup", group, [""]))
            if not namespaced and not subject.get("namespace"):
                errs.append(required(f"{path}.namespace"))
        elif kind in ("User", "Group"):
            if group != RBAC_GROUP:
                errs.append(not_supported(f"{path}.apiGroup", group, [RBAC_GROUP]))
        else:
            errs.append(
                not_supported(f"{path}.kind", kind or "", ["ServiceAccount", "User", "Group"])
            )
    return errs


def _role_ref(ref: object, kinds: list[str]) -> Errs:
    ref = as_dict(ref)
    errs: Errs = []
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), [RBAC_GROUP]))
    if ref.get("kind") not in kinds:
        errs.append(not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    if not ref.get("name"):
        errs.append(required("roleRef.name"))
    return errs


def validate_role_binding(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, _path_name)
    errs.extend(_role_ref(obj.get("roleRef"), ["Role", "ClusterRole"]))
    return errs + _subjects(obj.get("subjects"), True)


def validate_cluster_role_binding(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, _path_name)
    errs.extend(_role_ref(obj.get("roleRef"), ["ClusterRole"]))
    return errs + _subjects(obj.get("subjects"), False)


def _ref_unchanged(obj: Obj, old: Obj) -> Errs:
    if obj.get("roleRef") != old.get("roleRef"):
        return [invalid("roleRef", as_dict(obj.get("roleRef")), "cannot change roleRef")]
    return []


def validate_role_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_role(obj)


def validate_cluster_role_update(obj: Obj, old: Obj) -> Errs:
    return validate_object_meta_update(obj, old) + validate_cluster_role(obj)


def validate_role_binding_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old) + validate_role_binding(obj)
    return errs + _ref_unchanged(obj, old)


def validate_cluster_role_binding_update(obj: Obj, old: Obj) -> Errs:
    errs = validate_object_meta_update(obj, old) + validate_cluster_role_binding(obj)
    return errs + _ref_unchanged(obj, old)
