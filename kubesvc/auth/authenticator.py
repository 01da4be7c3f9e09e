"""Who a request comes from, as kube-apiserver's authenticators decide it, in their order:
an x509 client certificate the cluster CA signed (CN the user, O the groups), then the
bearer token (`Authorization: Bearer`, any case): the cluster's admin token (an admin in
system:masters) or a service-account JWT. Every authenticated user is also in
system:authenticated.

A service-account token counts when this server's key signed it, its claims are for this
server (issuer, audience, not expired) and the objects it names still exist with the uids it
names: the ServiceAccount, and the Pod or Secret it is bound to. Verified tokens are kept
CACHE_TTL seconds (as upstream's token cache), so a busy client costs one signature check and
lookup per interval, not per request; a token is refused before decoding when too long.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from kubesvc.auth import jwt, serviceaccount
from kubesvc.auth.serviceaccount import InvalidClaims, Ref, ServiceAccountClaims
from kubesvc.auth.user import AUTHENTICATED, SYSTEM_MASTERS, UserInfo

log = logging.getLogger("kubesvc.auth")

ADMIN_USER = "kubernetes-admin"
CACHE_TTL = 10.0  # seconds
CACHE_SIZE = 4096  # tokens
# (kind, namespace, name) -> the stored object or None
Lookup = Callable[[str, str, str], Awaitable[dict[str, Any] | None]]


class Unauthorized(Exception):
    """Credentials were presented and are not good: the request gets upstream's 401."""


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header (scheme in any case), "" for a
    Bearer header without one, None when the header is not a bearer token."""
    parts = header.strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return "" if parts and parts[0].lower() == "bearer" else None
    return parts[1].strip()


def certificate_user(peer_cert: dict[str, Any]) -> UserInfo | None:
    """The user of a verified client certificate (ssl's getpeercert() form)."""
    cn = ""
    orgs: list[str] = []
    for rdn in peer_cert.get("subject") or ():
        for attr, value in rdn:
            if attr == "commonName" and not cn:
                cn = str(value)
            elif attr == "organizationName":
                orgs.append(str(value))
    if not cn:
        return None
    return with_authenticated(UserInfo(cn, "", tuple(orgs)))


def with_authenticated(user: UserInfo) -> UserInfo:
    if AUTHENTICATED in user.groups:
        return user
    return UserInfo(user.name, user.uid, (*user.groups, AUTHENTICATED), user.extra)


ADMIN = UserInfo(ADMIN_USER, "", (SYSTEM_MASTERS, AUTHENTICATED))


class Authenticator:
    def __init__(
        self,
        admin_token: str,
        key: ec.EllipticCurvePublicKey,
        lookup: Lookup,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.admin_token = admin_token.encode()
        self.key = key
        self.lookup = lookup
        self.clock = clock
        self._cache: OrderedDict[bytes, tuple[UserInfo, float]] = OrderedDict()

    async def authenticate(
        self, authorization: str, peer_cert: dict[str, Any] | None
    ) -> UserInfo | None:
        """The request's user; None when it brings no credentials; Unauthorized when what
        it brings is not good."""
        if peer_cert:
            user = certificate_user(peer_cert)
            if user is not None:
                return user
        token = bearer_token(authorization)
        if token is None:
            return None
        if not token:
            raise Unauthorized("empty bearer token")
        if hmac.compare_digest(token.encode(), self.admin_token):
            return ADMIN
        return await self.service_account(token)

    async def service_account(self, token: str) -> UserInfo:
        if len(token) > jwt.MAX_TOKEN_BYTES or token.count(".") != 2:
            raise Unauthorized("not a service-account token")
        digest = hashlib.sha256(token.encode()).digest()
        now = self.clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            self._cache.move_to_end(digest)
            return hit[0]
        try:
            parsed = serviceaccount.parse_claims(jwt.verify(token, self.key), now=int(now))
        except (jwt.InvalidToken, InvalidClaims) as e:
            log.debug("token refused", extra={"kv": {"reason": str(e)}})
            raise Unauthorized(str(e)) from None
        await self._check_objects(parsed, now)
        user = parsed.user()
        self._cache[digest] = (user, min(now + CACHE_TTL, parsed.expires + serviceaccount.LEEWAY))
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return user

    async def _check_objects(self, c: ServiceAccountClaims, now: float) -> None:
        cutoff = datetime.fromtimestamp(now, UTC) - timedelta(seconds=serviceaccount.DELETION_GRACE)
        cutoff_text = cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
        wanted: list[tuple[str, Ref]] = [("ServiceAccount", c.account)]
        if c.pod is not None:
            wanted.append(("Pod", c.pod))
        if c.secret is not None:
            wanted.append(("Secret", c.secret))
        for kind, ref in wanted:
            obj = await self.lookup(kind, c.namespace, ref.name)
            if not serviceaccount.still_backs(obj, ref, cutoff_text):
                raise Unauthorized(f"the token's {kind} {c.namespace}/{ref.name} is gone")
