"""The node's service-account token manager (upstream pkg/kubelet/token/token_manager.go):
the projected volumes' serviceAccountToken sources get tokens from the TokenRequest API,
bound to their pod, kept while good and asked for again once 80 % of their lifetime has
passed or they are older than 24 hours."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesvc.api.objmeta import parse_time
from kubesvc.client.rest import ApiClient

log = logging.getLogger("kubesvc.node.tokens")

MAX_TTL = 24 * 3600.0  # seconds: a token older than this is renewed whatever its expiry
MAX_JITTER = 10.0  # seconds
MAX_TOKENS = 10_000  # cached tokens on one node


@dataclass(frozen=True)
class TokenKey:
    namespace: str
    account: str
    pod_name: str
    pod_uid: str
    audience: str  # "" for the API server's audiences
    expiration: int


@dataclass(frozen=True)
class Token:
    value: str
    expires: float  # status.expirationTimestamp, seconds since the epoch
    expiration: int  # the lifetime asked for


def requires_refresh(token: Token, now: float, jitter: float) -> bool:
    """Upstream's requiresRefresh: within 20 % of the lifetime (plus jitter) of the expiry,
    or issued more than 24 hours ago."""
    issued = token.expires - token.expiration
    if now > issued + MAX_TTL - jitter:
        return True
    return now > token.expires - token.expiration * 0.2 - jitter


def token_request(key: TokenKey) -> dict[str, Any]:
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [key.audience] if key.audience else [],
            "expirationSeconds": key.expiration,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": key.pod_name,
                "uid": key.pod_uid,
            },
        },
    }


def _parse_time(text: Any) -> float | None:
    when = parse_time(text)
    return when.timestamp() if when is not None else None


class TokenManager:
    def __init__(self, client: ApiClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._tokens: dict[TokenKey, Token] = {}

    async def get(self, key: TokenKey) -> str:
        """A good token for `key`, from the cache or a new TokenRequest (ApiException and
        ValueError when the API server gives none)."""
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and not requires_refresh(cached, now, random.uniform(0, MAX_JITTER)):
            return cached.value
        try:
            answer = await self.client.request(
                "POST",
                f"/api/v1/namespaces/{key.namespace}/serviceaccounts/{key.account}/token",
                body=token_request(key),
            )
        except Exception:
            if cached is not None and cached.expires > now:
                # keep serving the old token while it is good, as upstream does
                log.warning(
                    "token refresh failed; keeping the current token",
                    extra={"kv": {"pod": key.pod_uid, "account": key.account}},
                )
                return cached.value
            raise
        status = answer.get("status") if isinstance(answer, dict) else None
        value = status.get("token") if isinstance(status, dict) else None
        expires = _parse_time(status.get("expirationTimestamp")) if status else None
        if not isinstance(value, str) or not value or expires is None:
            raise ValueError("the TokenRequest answer has no token")
        if len(self._tokens) >= MAX_TOKENS:
            self.forget_expired()
        self._tokens[key] = Token(value, expires, key.expiration)
        return value

    def forget_pod(self, pod_uid: str) -> None:
        for key in [k for k in self._tokens if k.pod_uid == pod_uid]:
            del self._tokens[key]

    def forget_expired(self) -> None:
        now = self.clock()
        for key in [k for k, t in self._tokens.items() if t.expires <= now]:
            del self._tokens[key]
