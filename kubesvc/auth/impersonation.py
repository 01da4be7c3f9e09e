"""Impersonation headers as upstream's filter reads them (k8s.io/apiserver's
endpoints/filters/impersonation.go): `Impersonate-User`, `Impersonate-Group` (repeated),
`Impersonate-Uid` and `Impersonate-Extra-KEY` (KEY percent-decoded and lower-cased).
`impersonation(headers)` gives the user to act as and what the caller must be allowed
(verb `impersonate` on users, serviceaccounts, groups, uids, userextras/KEY), in upstream's
order; the caller checks each. Pure: no authorizer here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from kubesvc.auth.request import RequestInfo, resource_attributes
from kubesvc.auth.user import (
    ANONYMOUS,
    AUTHENTICATED,
    SERVICE_ACCOUNTS,
    UNAUTHENTICATED,
    UserInfo,
    split_service_account,
)

USER = "impersonate-user"
GROUP = "impersonate-group"
UID = "impersonate-uid"
EXTRA = "impersonate-extra-"
AUTHENTICATION_GROUP = "authentication.k8s.io"
MAX_VALUES = 256  # groups and extra values one request may ask for


class BadImpersonation(Exception):
    """A 400: impersonation asked for wrongly."""


@dataclass(frozen=True)
class Impersonation:
    user: UserInfo
    checks: tuple[RequestInfo, ...]


def impersonation(headers: Iterable[tuple[str, str]]) -> Impersonation | None:
    """None when the request impersonates no one."""
    name: str | None = None
    uid: str | None = None
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for key, value in headers:
        low = key.lower()
        if low == USER:
            name = value
        elif low == GROUP:
            groups.append(value)
        elif low == UID:
            uid = value
        elif low.startswith(EXTRA):
            extra.setdefault(unquote(low[len(EXTRA) :]), []).append(value)
    if name is None and uid is None and not groups and not extra:
        return None
    if sum(map(len, extra.values())) + len(groups) > MAX_VALUES:
        raise BadImpersonation(f"at most {MAX_VALUES} impersonated groups and extra values")
    if name is None:
        raise BadImpersonation("requested impersonation without impersonating a user")
    checks: list[RequestInfo] = []
    account = split_service_account(name)
    if account is not None:
        namespace, sa = account
        checks.append(_check("serviceaccounts", sa, namespace=namespace))
    else:
        checks.append(_check("users", name))
    checks.extend(_check("groups", g) for g in groups)
    if account is not None and not groups:  # a ServiceAccount's own groups need no check
        groups = [SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{account[0]}"]
    for key, values in extra.items():
        checks.extend(
            _check("userextras", v, group=AUTHENTICATION_GROUP, subresource=key) for v in values
        )
    if uid is not None:
        checks.append(_check("uids", uid, group=AUTHENTICATION_GROUP))
    always = UNAUTHENTICATED if name == ANONYMOUS else AUTHENTICATED
    if always not in groups:
        groups.append(always)
    user = UserInfo(name, uid or "", tuple(groups), {k: tuple(v) for k, v in extra.items()})
    return Impersonation(user, tuple(checks))


def _check(
    resource: str, name: str, *, group: str = "", namespace: str = "", subresource: str = ""
) -> RequestInfo:
    return resource_attributes(
        "impersonate",
        resource,
        group=group,
        namespace=namespace,
        subresource=subresource,
        name=name,
    )
