"""Serving `pods/proxy`, `services/proxy` and `nodes/proxy`: one HTTP request passed to a
pod's port or a node's, and the answer streamed back (upstream's upgrade-aware proxy
handler without the upgrade).

Pod IPs live in the pods' network namespaces, which the API server's host cannot route to.
So a request for a pod (or for a Service, which picks one of its pods) travels the way
`kubectl port-forward` does: through a WebSocket port-forward stream to the pod's node
(subprotocol `v4.channel.k8s.io`: data on channel 0, errors on channel 1, each opened by
a frame carrying the port), over which the request is written and the response parsed
with h11. Nodes are reached directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import quote

import aiohttp
import h11
import yarl
from aiohttp import WSMsgType, web

from kubesvc.api import errors
from kubesvc.api.errors import ApiError
from kubesvc.api.kinds import BY_KIND
from kubesvc.apiserver import proxy_location as loc
from kubesvc.apiserver.podstreams import node_endpoint, node_url
from kubesvc.apiserver.registry import Registry

log = logging.getLogger("kubesvc.apiserver.proxy")

CONNECT_TIMEOUT = 10.0
# a backend that sends no response head in this long is given up on, as upstream's
# transport's ResponseHeaderTimeout is not set but its dial and TLS timeouts are: keep a
# hung pod from holding an API server request forever
RESPONSE_TIMEOUT = 60.0
CHUNK = 64 * 1024
MAX_HEAD = 64 * 1024  # h11's limit on a response head
PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io"
DATA, ERROR = 0, 1

Obj = dict[str, Any]


class TunnelError(Exception):
    pass


class PortForwardTunnel:
    """A byte stream to one port of a pod, through the node's port-forward WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._opened: set[int] = set()
        self._error = b""

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(bytes([DATA]) + data)

    async def recv(self) -> bytes:
        """The next bytes from the pod; b"" once the stream has ended."""
        while True:
            msg = await self.ws.receive()
            if msg.type != WSMsgType.BINARY:
                if self._error:
                    raise TunnelError(self._error.decode(errors="replace").strip())
                return b""
            data: bytes = msg.data
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if channel not in self._opened:
                # each channel's first frame is the port number, little-endian
                self._opened.add(channel)
                payload = payload[2:]
            if channel == ERROR:
                self._error += payload[:4096]
                if self._error:
                    raise TunnelError(self._error.decode(errors="replace").strip())
            elif channel == DATA and payload:
                return payload


class ResourceProxy:
    """The three proxy subresources. `token` authenticates the API server to node agents."""

    def __init__(self, registry: Registry, token: str | None = None) -> None:
        self.registry = registry
        self.token = token

    async def handle(
        self, request: web.Request, target: Any, prefix: str, tail: str
    ) -> web.StreamResponse:
        kind = target.kind.kind
        if kind == "Pod":
            scheme, name, port = loc.parse_id(target.name, "pod")
            pod = await self.registry.get(BY_KIND["Pod"], target.namespace, name)
            return await self._to_pod(request, loc.pod_target(pod, scheme, port), pod, prefix, tail)
        if kind == "Service":
            scheme, name, port = loc.parse_id(target.name, "service")
            service = await self.registry.get(BY_KIND["Service"], target.namespace, name)
            endpoints = await self._maybe(BY_KIND["Endpoints"], target.namespace, name)
            pods = await self._pods(target.namespace, endpoints)
            chosen = loc.service_target(service, endpoints, pods, scheme, port)
            return await self._to_pod(request, chosen, pods[chosen.name], prefix, tail)
        scheme, name, port = loc.parse_id(target.name, "node")
        node = await self.registry.get(BY_KIND["Node"], None, name)
        target_node = loc.node_target(node_endpoint(node), scheme, port)
        return await self._to_node(request, target_node, prefix, tail)

    async def _maybe(self, kind: Any, namespace: str | None, name: str) -> Obj | None:
        try:
            return await self.registry.get(kind, namespace, name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def _pods(self, namespace: str | None, endpoints: Obj | None) -> dict[str, Obj]:
        names = {
            (a.get("targetRef") or {}).get("name", "")
            for s in (endpoints or {}).get("subsets") or []
            for a in s.get("addresses") or []
            if (a.get("targetRef") or {}).get("kind") == "Pod"
        }
        pods = {}
        for name in sorted(n for n in names if n)[:1000]:
            pod = await self._maybe(BY_KIND["Pod"], namespace, name)
            if pod is not None:
                pods[name] = pod
        return pods

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # -- pods, through the node's port-forward ------------------------------------------
    async def _to_pod(
        self, request: web.Request, target: loc.PodTarget, pod: Obj, prefix: str, tail: str
    ) -> web.StreamResponse:
        if target.scheme == "https":
            raise errors.bad_request(
                "https to pods and Services through the API server proxy is not supported"
            )
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise loc.unreachable(f"pod {target.name} does not have a host assigned")
        node = await self.registry.get(BY_KIND["Node"], None, node_name)
        host, port = node_endpoint(node)
        path = f"/portForward/{quote(target.namespace, safe='')}/{quote(target.name, safe='')}"
        url = node_url(host, port, path, [("port", str(target.port))])
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                ws = await session.ws_connect(
                    url,
                    protocols=[PORT_FORWARD_PROTOCOL],
                    headers=self._auth(),
                    ssl=False,
                    max_msg_size=0,
                    compress=0,
                )
            except (aiohttp.ClientError, OSError) as e:
                raise loc.unreachable(str(e)) from None
            async with ws:
                return await self._exchange(request, PortForwardTunnel(ws), target, prefix, tail)

    async def _exchange(
        self,
        request: web.Request,
        tunnel: PortForwardTunnel,
        target: loc.PodTarget,
        prefix: str,
        tail: str,
    ) -> web.StreamResponse:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        backend_host = f"{target.ip}:{target.port}"
        headers = loc.request_headers(
            request.headers.items(),
            forwarded_uri=prefix + loc.join_path(tail),
            forwarded_host=request.host,
            client_ip=request.remote or "",
        )
        headers = [(k, v) for k, v in headers if k.lower() != "host"]
        headers.insert(0, ("Host", request.host or backend_host))
        headers.append(("Connection", "close"))
        chunked = request.body_exists
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        query = request.rel_url.raw_query_string
        target_path = loc.join_path(tail) + (f"?{query}" if query else "")
        try:
            await tunnel.send(
                conn.send(h11.Request(method=request.method, target=target_path, headers=headers))
                or b""
            )
            if chunked:
                async for chunk in request.content.iter_chunked(CHUNK):
                    await tunnel.send(conn.send(h11.Data(data=chunk)) or b"")
            await tunnel.send(conn.send(h11.EndOfMessage()) or b"")
            head = await asyncio.wait_for(_response_head(conn, tunnel), RESPONSE_TIMEOUT)
        except TunnelError as e:
            raise loc.unreachable(str(e)) from None
        except (h11.ProtocolError, TimeoutError) as e:
            raise loc.unreachable(f"malformed or missing HTTP response: {e}") from None
        except (aiohttp.ClientError, ConnectionError) as e:
            raise loc.unreachable(str(e)) from None
        # the standard reason phrase, as upstream's Go server writes: the backend's may be
        # any bytes at all
        resp = web.StreamResponse(status=head.status_code)
        for name, value in loc.response_headers(
            ((k.decode(), v.decode("latin-1")) for k, v in head.headers),
            backend_host=backend_host,
            prefix=prefix,
            host=request.host,
        ):
            resp.headers.add(name, value)
        length = _content_length(head)
        if length is not None:
            resp.content_length = length
        await resp.prepare(request)
        try:
            async for data in _body(conn, tunnel):
                await resp.write(data)
        except (TunnelError, h11.ProtocolError, ConnectionError):
            # a body cut short: close the client's connection too, or it would wait for
            # the rest of an announced length on a kept-alive connection
            resp.force_close()
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    # -- nodes, directly ---------------------------------------------------------------
    async def _to_node(
        self, request: web.Request, target: loc.NodeTarget, prefix: str, tail: str
    ) -> web.StreamResponse:
        host = f"[{target.host}]" if ":" in target.host else target.host
        url = f"{target.scheme}://{host}:{target.port}{loc.join_path(tail)}"
        if request.rel_url.raw_query_string:
            url += "?" + request.rel_url.raw_query_string
        headers = loc.request_headers(
            request.headers.items(),
            forwarded_uri=prefix + loc.join_path(tail),
            forwarded_host=request.host,
            client_ip=request.remote or "",
        )
        headers = [(k, v) for k, v in headers if k.lower() != "host"]
        if target.kubelet:
            headers += list(self._auth().items())
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=RESPONSE_TIMEOUT
        )
        body = request.content.iter_chunked(CHUNK) if request.body_exists else None
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            try:
                upstream = await session.request(
                    request.method,
                    yarl.URL(url, encoded=True),
                    headers=headers,
                    data=body,
                    ssl=False,
                    allow_redirects=False,
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise loc.unreachable(str(e) or type(e).__name__) from None
            async with upstream:
                resp = web.StreamResponse(status=upstream.status)
                for name, value in loc.response_headers(
                    upstream.headers.items(),
                    backend_host=f"{host}:{target.port}",
                    prefix=prefix,
                    host=request.host,
                ):
                    resp.headers.add(name, value)
                if upstream.content_length is not None:
                    resp.content_length = upstream.content_length
                await resp.prepare(request)
                try:
                    async for chunk in upstream.content.iter_chunked(CHUNK):
                        await resp.write(chunk)
                except (aiohttp.ClientError, ConnectionError, TimeoutError):
                    resp.force_close()  # cut short: the client must see it end too
                with contextlib.suppress(ConnectionError):
                    await resp.write_eof()
                return resp


async def _response_head(conn: h11.Connection, tunnel: PortForwardTunnel) -> h11.Response:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await tunnel.recv())
            continue
        if isinstance(event, h11.InformationalResponse):
            continue  # 100 Continue and the like
        if isinstance(event, h11.Response):
            return event
        raise h11.RemoteProtocolError("the backend closed the connection without a response")


async def _body(conn: h11.Connection, tunnel: PortForwardTunnel) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await tunnel.recv())
            continue
        if isinstance(event, h11.Data):
            yield bytes(event.data)
            continue
        return  # EndOfMessage, or the connection closed


def _content_length(head: h11.Response) -> int | None:
    for k, v in head.headers:
        if k == b"content-length" and v.isdigit():
            return int(v)
    return None


__all__ = ["PortForwardTunnel", "ResourceProxy", "TunnelError"]
