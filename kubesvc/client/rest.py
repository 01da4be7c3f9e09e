"""An asyncio client for the Kubernetes REST API, speaking plain JSON dicts.

Works against kubesvc or any conformant API server; objects stay dicts so that caches of
thousands of objects stay cheap and unknown fields survive a round trip.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from kubesvc.api.kinds import BY_KIND, Kind
from kubesvc.client.kubeconfig import ClusterAccess, load

log = logging.getLogger("kubesvc.client")

# no connection could be made: nothing was sent, so the next API server may be asked
UNREACHABLE = (aiohttp.ClientConnectorError,)
# a watch that ends this way is watched again from the next API server
WATCH_BROKEN = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiException(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, body: dict[str, Any] | None, text: str = "") -> None:
        self.status = status
        self.body = body or {}
        self.reason = self.body.get("reason", "")
        self.message = self.body.get("message", text)
        super().__init__(f"{status} {self.reason}: {self.message}")


def resource_path(
    kind: Kind, namespace: str | None = None, name: str | None = None, subresource: str = ""
) -> str:
    base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    if kind.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    path = f"{base}/{kind.plural}"
    if name:
        path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
    return path


def _kind(kind: str | Kind) -> Kind:
    return BY_KIND[kind] if isinstance(kind, str) else kind


# a bearer token obtained (and renewed) while the client runs: a ServiceAccount's
# TokenRequest token, as upstream's controller-manager builds its controllers' clients
TokenSource = Callable[[], Awaitable[str]]


class ApiClient:
    def __init__(
        self,
        access: ClusterAccess,
        user_agent: str = "kubesvc/0.1",
        token_source: TokenSource | None = None,
    ) -> None:
        self.access = access
        self.user_agent = user_agent
        self.token_source = token_source
        self._session: aiohttp.ClientSession | None = None
        self._server = 0  # which of access.servers the session talks to

    @classmethod
    def from_kubeconfig(
        cls, path: str, context: str | None = None, user_agent: str = "kubesvc/0.1"
    ) -> ApiClient:
        return cls(load(path, context), user_agent)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
            if self.access.token and self.token_source is None:
                headers["Authorization"] = f"Bearer {self.access.token}"
            connector = aiohttp.TCPConnector(ssl=self.access.ssl_context, limit=64)
            self._session = aiohttp.ClientSession(
                base_url=self.server,
                headers=headers,
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    @property
    def server(self) -> str:
        return self.access.servers[self._server % len(self.access.servers)]

    async def fail_over(self) -> bool:
        """After a connection to the API server failed: talk to the next one (True), if
        the kubeconfig lists more than one."""
        if len(self.access.servers) < 2:
            return False
        self._server += 1
        if self._session is not None:
            old, self._session = self._session, None
            await old.close()
        log.info("API server unreachable, failing over", extra={"kv": {"server": self.server}})
        return True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        headers.update(await self._auth())
        for _ in range(len(self.access.servers) - 1):
            try:
                return await self._request(method, path, params, data, headers, timeout)
            except UNREACHABLE:
                if not await self.fail_over():
                    raise
        return await self._request(method, path, params, data, headers, timeout)

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        data: bytes | None,
        headers: dict[str, str],
        timeout: float,
    ) -> dict[str, Any]:
        async with self.session.request(
            method,
            path,
            params=_clean(params),
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            raw = await resp.read()
            parsed: Any = None
            if raw:
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
            if resp.status == 401:
                self._unauthorized()
            if resp.status >= 400:
                raise ApiException(
                    resp.status,
                    parsed if isinstance(parsed, dict) else None,
                    raw.decode(errors="replace")[:500],
                )
            return parsed if isinstance(parsed, dict) else {}

    def _unauthorized(self) -> None:
        """A token refused (its ServiceAccount was deleted and made again): the source gets
        a new one for the next request."""
        invalidate = getattr(self.token_source, "invalidate", None)
        if invalidate is not None:
            invalidate()

    async def _auth(self) -> dict[str, str]:
        if self.token_source is None:
            return {}
        return {"Authorization": f"Bearer {await self.token_source()}"}

    # -- verbs ---------------------------------------------------------------------------
    async def get(
        self, kind: str | Kind, namespace: str | None, name: str, subresource: str = ""
    ) -> dict[str, Any]:
        return await self.request("GET", resource_path(_kind(kind), namespace, name, subresource))

    async def list(
        self,
        kind: str | Kind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> dict[str, Any]:
        params = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "resourceVersion": resource_version,
            "limit": limit or None,
            "continue": continue_token,
        }
        return await self.request(
            "GET", resource_path(_kind(kind), namespace), params=params, timeout=300
        )

    async def create(
        self,
        kind: str | Kind,
        namespace: str | None,
        obj: dict[str, Any],
        *,
        field_manager: str = "",
    ) -> dict[str, Any]:
        k = _kind(kind)
        return await self.request(
            "POST",
            resource_path(k, namespace),
            body=_typed(k, obj),
            params={"fieldManager": field_manager},
        )

    async def update(
        self,
        kind: str | Kind,
        obj: dict[str, Any],
        *,
        subresource: str = "",
        field_manager: str = "",
    ) -> dict[str, Any]:
        k = _kind(kind)
        m = obj["metadata"]
        path = resource_path(k, m.get("namespace"), m["name"], subresource)
        return await self.request(
            "PUT", path, body=_typed(k, obj), params={"fieldManager": field_manager}
        )

    async def patch(
        self,
        kind: str | Kind,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str = "",
        field_manager: str = "",
        force: bool = False,
    ) -> dict[str, Any]:
        path = resource_path(_kind(kind), namespace, name, subresource)
        params: dict[str, Any] = {"fieldManager": field_manager}
        if force:
            params["force"] = "true"
        return await self.request(
            "PATCH", path, body=patch, params=params, content_type=PATCH_CONTENT_TYPES[patch_type]
        )

    async def delete(
        self,
        kind: str | Kind,
        namespace: str | None,
        name: str,
        *,
        grace_period: int | None = None,
        propagation: str | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        if propagation:
            body["propagationPolicy"] = propagation
        if preconditions:
            body["preconditions"] = preconditions
        return await self.request("DELETE", resource_path(_kind(kind), namespace, name), body=body)

    async def watch(
        self,
        kind: str | Kind,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        timeout_seconds: int = 300,
        label_selector: str = "",
        field_selector: str = "",
        bookmarks: bool = True,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) pairs from a watch stream; ends when the server closes it."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "allowWatchBookmarks": "true" if bookmarks else "",
        }
        path = resource_path(_kind(kind), namespace)
        try:
            async for item in self._watch(path, params, timeout_seconds):
                yield item
        except WATCH_BROKEN:
            await self.fail_over()  # the caller watches again, from the next server
            raise

    async def _watch(
        self, path: str, params: dict[str, Any], timeout_seconds: int
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async with self.session.get(
            path,
            params=_clean(params),
            headers=await self._auth(),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
        ) as resp:
            if resp.status == 401:
                self._unauthorized()
            if resp.status >= 400:
                raw = await resp.read()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                raise ApiException(resp.status, body, raw.decode(errors="replace")[:500])
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1 :]
                    if line.strip():
                        event = json.loads(line)
                        yield event.get("type", ""), event.get("object") or {}


def _clean(params: dict[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    return {k: str(v) for k, v in params.items() if v not in ("", None)}


def _typed(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("apiVersion") and obj.get("kind"):
        return obj
    return {"apiVersion": kind.api_version, "kind": kind.kind, **obj}


async def sleep_backoff(attempt: int, base: float = 0.2, cap: float = 5.0) -> None:
    await asyncio.sleep(min(cap, base * (2 ** min(attempt, 10))))
