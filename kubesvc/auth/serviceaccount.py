"""Service-account tokens' claims, as upstream's pkg/serviceaccount/claims.go writes and
reads them, and the signing key they are made with.

`claims` builds what a TokenRequest gets signed; `parse_claims` checks a verified token's
claims (issuer, audience, times, the `kubernetes.io` private claim) into a ServiceAccountClaims
that says which objects must still exist for the token to be good. Both are pure; looking the
objects up is the authenticator's (kubesvc.auth.authenticator).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kubesvc.auth.user import SERVICE_ACCOUNT_PREFIX, UserInfo, service_account_user

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (ISSUER,)  # kube-apiserver's --api-audiences default: the issuer
LEEWAY = 60  # seconds of clock skew allowed on exp and nbf, as go-jose's DefaultLeeway
# a deleted (terminating) ServiceAccount, Pod or Secret still backs its tokens this long after
# its deletionTimestamp, as upstream's validator allows for graceful deletion
DELETION_GRACE = 60
# the kubelet's tokens (3607 s) are extended to a year, as kube-apiserver's
# --service-account-extend-token-expiration (default true) does: clients that read their
# token once keep working, while the pod binding still ends the token with its pod
EXTENDED_REQUEST_SECONDS = 3607
EXTENSION_SECONDS = 365 * 24 * 3600
KEY_FILE = "sa.key"
PUBLIC_KEY_FILE = "sa.pub"
# the user's extra attributes upstream's authenticator adds for a bound token
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


class InvalidClaims(Exception):
    """Claims that do not make a service-account token (the reason is for logs)."""


@dataclass(frozen=True)
class Ref:
    name: str
    uid: str


@dataclass(frozen=True)
class ServiceAccountClaims:
    namespace: str
    account: Ref
    expires: int
    jti: str = ""
    pod: Ref | None = None
    secret: Ref | None = None
    node: Ref | None = None

    def user(self) -> UserInfo:
        """The user the token authenticates as, with upstream's extra attributes."""
        base = service_account_user(self.namespace, self.account.name, self.account.uid)
        extra: dict[str, tuple[str, ...]] = {}
        if self.pod is not None:
            extra[EXTRA_POD_NAME] = (self.pod.name,)
            extra[EXTRA_POD_UID] = (self.pod.uid,)
        if self.node is not None:
            extra[EXTRA_NODE_NAME] = (self.node.name,)
            if self.node.uid:
                extra[EXTRA_NODE_UID] = (self.node.uid,)
        if self.jti:
            extra[EXTRA_CREDENTIAL_ID] = (f"JTI={self.jti}",)
        return UserInfo(base.name, base.uid, base.groups, extra)


def _ref(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {"name": str(meta.get("name", "")), "uid": str(meta.get("uid", ""))}


def claims(
    account: dict[str, Any],
    *,
    now: int,
    expiration_seconds: int,
    audiences: list[str],
    pod: dict[str, Any] | None = None,
    secret: dict[str, Any] | None = None,
    node: dict[str, Any] | None = None,
    warn_after: int | None = None,
) -> dict[str, Any]:
    """The claims of a token for `account`, bound to `pod` (and its `node`) or `secret`;
    `warn_after` marks a token whose lifetime was extended (upstream's `warnafter`)."""
    meta = account.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    private: dict[str, Any] = {"namespace": namespace, "serviceaccount": _ref(account)}
    if pod is not None:
        private["pod"] = _ref(pod)
        if node is not None:
            private["node"] = _ref(node)
    if secret is not None:
        private["secret"] = _ref(secret)
    if warn_after is not None:
        private["warnafter"] = warn_after
    return {
        "aud": list(audiences),
        "exp": now + expiration_seconds,
        "iat": now,
        "iss": ISSUER,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": private,
        "nbf": now,
        "sub": f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
    }


def _int(value: Any, what: str) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer() and abs(value) < 2**63:
        return int(value)
    raise InvalidClaims(f"{what} is not a number")


def _parse_ref(value: Any, what: str, *, uid_required: bool = True) -> Ref:
    if not isinstance(value, dict):
        raise InvalidClaims(f"{what} is not an object")
    name, uid = value.get("name"), value.get("uid", "")
    if not isinstance(name, str) or not name or not isinstance(uid, str):
        raise InvalidClaims(f"{what} has no name")
    if uid_required and not uid:
        raise InvalidClaims(f"{what} has no uid")
    return Ref(name, uid)


def parse_claims(
    c: dict[str, Any], *, now: int, audiences: tuple[str, ...] = API_AUDIENCES
) -> ServiceAccountClaims:
    """The service-account claims of a token whose signature was verified, or InvalidClaims
    when it is not (or no longer) a service-account token for these audiences."""
    if c.get("iss") != ISSUER:
        raise InvalidClaims("another issuer")
    aud = c.get("aud")
    token_auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(token_auds, list) or not any(
        isinstance(a, str) and a in audiences for a in token_auds
    ):
        raise InvalidClaims("not for this audience")
    if "exp" not in c:
        raise InvalidClaims("no expiry")  # upstream's bound tokens always have one
    expires = _int(c["exp"], "exp")
    if now > expires + LEEWAY:
        raise InvalidClaims("expired")
    if "nbf" in c and now < _int(c["nbf"], "nbf") - LEEWAY:
        raise InvalidClaims("not valid yet")
    if "iat" in c and now < _int(c["iat"], "iat") - LEEWAY:
        raise InvalidClaims("issued in the future")
    private = c.get("kubernetes.io")
    if not isinstance(private, dict):
        raise InvalidClaims("no kubernetes.io claim")
    namespace = private.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise InvalidClaims("no namespace")
    account = _parse_ref(private.get("serviceaccount"), "serviceaccount")
    if c.get("sub") != f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{account.name}":
        raise InvalidClaims("sub does not name the serviceaccount")
    pod = _parse_ref(private["pod"], "pod") if private.get("pod") is not None else None
    secret = _parse_ref(private["secret"], "secret") if private.get("secret") is not None else None
    node = None
    if pod is not None and private.get("node") is not None:
        node = _parse_ref(private["node"], "node", uid_required=False)
    jti = c.get("jti", "")
    return ServiceAccountClaims(
        namespace,
        account,
        expires,
        jti if isinstance(jti, str) else "",
        pod,
        secret,
        node,
    )


def still_backs(obj: dict[str, Any] | None, ref: Ref, now_rfc3339_minus_grace: str) -> bool:
    """Whether a looked-up object is the one a token names and is not long deleted:
    same uid, and no deletionTimestamp older than DELETION_GRACE (the cut-off is passed as
    RFC 3339 text, which sorts as time does)."""
    if obj is None:
        return False
    meta = obj.get("metadata") or {}
    if meta.get("uid") != ref.uid:
        return False
    deleted = meta.get("deletionTimestamp")
    return not (isinstance(deleted, str) and deleted < now_rfc3339_minus_grace)


def load_or_create_key(pki: Path) -> ec.EllipticCurvePrivateKey:
    """The service-account signing key, generated once into `pki` (0600) with its public half
    beside it, as kube-apiserver's --service-account-key-file/--signing-key-file."""
    path = pki / KEY_FILE
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.replace(path)
    loaded = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
        raise ValueError(f"{path}: not a P-256 private key")
    public = pki / PUBLIC_KEY_FILE
    pem = loaded.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not public.exists() or public.read_bytes() != pem:
        public.write_bytes(pem)
    return loaded
