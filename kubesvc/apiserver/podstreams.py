"""The pod subresources the API server proxies to the node that runs the pod: `pods/log`
(a streamed HTTP GET), `pods/exec`, `pods/attach` and `pods/portforward` (WebSockets).

The API server looks up the pod and its node (InternalIP, kubeletEndpoint port), checks what
upstream checks before connecting (container name, node assignment, container state for
logs), then talks to the node agent's server with its bearer token. For the streaming
subresources it accepts the client's WebSocket itself, opens one to the node with the same
subprotocol, and copies messages both ways. A plain SPDY/3.1 upgrade is passed on as
upstream's upgrade-aware proxy does it: the same request to the node, and once the node
has switched protocols (101, with the version it chose), raw bytes both ways. A refused
upgrade at the node comes back to the client as the node's status code and text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import WSMsgType, web

from kubesvc.api import errors
from kubesvc.api.errors import ApiError
from kubesvc.api.kinds import BY_KIND
from kubesvc.apiserver.registry import Registry
from kubesvc.kubelet.errors import ERROR_HEADER
from kubesvc.kubelet.portforward import MAX_PORTS, parse_uint16
from kubesvc.kubelet.upgrade import (
    PROTOCOL_HEADER,
    UpgradeError,
    relay,
    request_upgrade,
    switch_protocols,
    wants_upgrade,
)

log = logging.getLogger("kubesvc.apiserver.podstreams")

DEFAULT_KUBELET_PORT = 10250
CONNECT_TIMEOUT = 10.0
MAX_MESSAGE = 4 << 20  # bytes in one WebSocket message, either way (as the node bounds it)
PROXY_SUBRESOURCES = ("log", "exec", "attach", "portforward")
LOG_PARAMS = ("follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime")
STREAM_PARAMS = ("stdin", "stdout", "stderr", "tty")

Obj = dict[str, Any]


# -- pure checks ----------------------------------------------------------------------------


def _names(containers: list[Obj] | None) -> list[str]:
    return [c.get("name", "") for c in containers or []]


def choose_container(pod: Obj, requested: str) -> str:
    """The container a log/exec request is for (upstream's LogLocation/streamLocation)."""
    spec = pod.get("spec") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    containers = _names(spec.get("containers"))
    if not requested:
        if len(containers) == 1:
            return containers[0]
        if not containers:
            raise errors.bad_request(f"a container name must be specified for pod {name}")
        message = (
            f"a container name must be specified for pod {name}, "
            f"choose one of: [{' '.join(containers)}]"
        )
        init = _names(spec.get("initContainers"))
        if init:
            message += f" or one of the init containers: [{' '.join(init)}]"
        ephemeral = _names(spec.get("ephemeralContainers"))
        if ephemeral:
            message += f" or one of the ephemeral containers: [{' '.join(ephemeral)}]"
        raise errors.bad_request(message)
    every = (
        containers + _names(spec.get("initContainers")) + _names(spec.get("ephemeralContainers"))
    )
    if requested not in every:
        raise errors.bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def container_status(pod: Obj, container: str) -> Obj | None:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == container:
                return cs
    return None


def log_state_error(pod: Obj, container: str, previous: bool) -> str | None:
    """Why the container has no logs to show yet, from the pod's status (the kubelet's
    validateContainerLogStatus); None when the node should be asked. Without a status for
    the container the node decides."""
    cs = container_status(pod, container)
    if cs is None:
        return None
    name = (pod.get("metadata") or {}).get("name", "")
    state = cs.get("state") or {}
    last = (cs.get("lastState") or {}).get("terminated")
    where = f'container "{container}" in pod "{name}"'
    if previous:
        if not last or not last.get("containerID", "x"):
            return f'previous terminated container "{container}" in pod "{name}" not found'
        return None
    if state.get("running") is not None:
        return None
    terminated = state.get("terminated")
    if terminated is not None or last:
        return None
    waiting = state.get("waiting")
    if waiting is not None:
        reason = waiting.get("reason", "")
        if reason == "ErrImagePull":
            return f"{where} is waiting to start: image can't be pulled"
        if reason == "ImagePullBackOff":
            return f"{where} is waiting to start: trying and failing to pull image"
        return f"{where} is waiting to start: {reason}"
    return f"{where} is waiting to start - no logs yet"


def container_running(pod: Obj, container: str) -> bool:
    cs = container_status(pod, container)
    if cs is None:
        return True  # unknown: let the node follow while the container is there
    return (cs.get("state") or {}).get("running") is not None


def node_endpoint(node: Obj) -> tuple[str, int]:
    """The node's InternalIP and kubelet port (upstream prefers InternalIP)."""
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    for kind in ("InternalIP", "ExternalIP", "Hostname"):
        for a in addresses:
            if a.get("type") == kind and a.get("address"):
                port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get(
                    "Port"
                ) or DEFAULT_KUBELET_PORT
                return a["address"], int(port)
    known = ", ".join(f"{{{a.get('type', '')} {a.get('address', '')}}}" for a in addresses)
    raise ApiError(
        500, "InternalError", f"no preferred addresses found; known addresses: [{known}]"
    )


def log_query(query: Any) -> dict[str, str]:
    """PodLogOptions checks the API server makes; returns the parameters for the node."""
    out: dict[str, str] = {}
    for name in (*LOG_PARAMS, "limitBytes"):
        value = query.get(name)
        if value is None or value == "":
            continue
        if name in ("tailLines", "sinceSeconds", "limitBytes"):
            try:
                number = int(value)
            except ValueError:
                raise errors.bad_request(
                    f'{name}: Invalid value: "{value}": must be an integer'
                ) from None
            minimum = 0 if name == "tailLines" else 1
            if number < minimum:
                detail = (
                    "must be greater than or equal to 0"
                    if minimum == 0
                    else "must be greater than 0"
                )
                raise errors.invalid_error(
                    "PodLogOptions", "", "", [errors.invalid(name, number, detail)]
                )
        out[name] = value
    if "sinceSeconds" in out and "sinceTime" in out:
        raise errors.invalid_error(
            "PodLogOptions",
            "",
            "",
            [errors.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified")],
        )
    return out


def portforward_ports(values: list[str]) -> list[int]:
    """PodPortForwardOptions.ports from the query: repeated and comma-separated values, each
    a 16-bit unsigned number (apimachinery's Convert_Slice_string_To_Slice_int32); 0 passes
    here and the node refuses it."""
    ports = []
    for value in values:
        for part in value.split(","):
            try:
                ports.append(parse_uint16(part))
            except ValueError as e:
                raise errors.bad_request(f"cannot convert to []int32: {e}") from None
            if len(ports) > MAX_PORTS:
                raise errors.bad_request(f"too many ports: at most {MAX_PORTS} in one session")
    return ports


def node_error(status: int, text: str, resource: str, name: str) -> ApiError:
    """A node's error reply as upstream's GenericHttpResponseChecker turns it into a Status."""
    if status == 400:
        return errors.bad_request(text)
    if status == 500:
        return errors.internal(text)
    reasons = {404: "NotFound", 401: "Unauthorized", 403: "Forbidden", 503: "ServiceUnavailable"}
    messages = {
        404: "the server could not find the requested resource",
        401: "the server has asked for the client to provide credentials",
        503: "the server is currently unable to handle the request",
    }
    message = messages.get(
        status,
        f"the server responded with the status code {status} but did not return more information",
    )
    if status == 403:
        message = text
    return ApiError(
        status,
        reasons.get(status, ""),
        f"{message} ( {resource} {name})",
        {"name": name, "kind": resource},
    )


def node_url(host: str, port: int, path: str, params: list[tuple[str, str]]) -> str:
    h = f"[{host}]" if ":" in host else host
    qs = f"?{urlencode(params)}" if params else ""
    return f"https://{h}:{port}{path}{qs}"


def _seg(value: str) -> str:
    return quote(value, safe="")


def wants_websocket(request: web.Request) -> bool:
    return (
        request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


# -- the proxy ------------------------------------------------------------------------------


class PodProxy:
    """Serves pods/log, pods/exec, pods/attach and pods/portforward by proxying to the pod's
    node.

    `token` is sent to node agents as a bearer token. TLS to the node is not verified:
    node serving certificates are self-signed, and upstream's kubelet client does not verify
    them either unless configured with a CA."""

    def __init__(self, registry: Registry, token: str | None = None) -> None:
        self.registry = registry
        self.token = token

    async def handle(self, request: web.Request, target: Any) -> web.StreamResponse:
        sub = target.subresource
        if sub == "log":
            if request.method != "GET":
                raise _not_allowed()
            return await self._logs(request, target.namespace, target.name)
        if request.method not in ("GET", "POST"):
            raise _not_allowed()
        if sub == "exec":
            return await self._exec(request, target.namespace, target.name)
        if sub == "attach":
            return await self._attach(request, target.namespace, target.name)
        if sub == "portforward":
            return await self._port_forward(request, target.namespace, target.name)
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    # lookups
    async def _pod(self, namespace: str, name: str) -> Obj:
        return await self.registry.get(BY_KIND["Pod"], namespace, name)

    async def _node(self, pod: Obj) -> tuple[str, int]:
        node = await self.registry.get(BY_KIND["Node"], None, pod["spec"]["nodeName"])
        return node_endpoint(node)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # logs
    async def _logs(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        pod = await self._pod(namespace, name)
        container = choose_container(pod, request.query.get("container", ""))
        params = log_query(request.query)
        if not (pod.get("spec") or {}).get("nodeName"):
            return web.Response(body=b"", content_type="text/plain")  # nothing to show yet
        previous = params.get("previous", "").lower() in ("1", "true")
        problem = log_state_error(pod, container, previous)
        if problem:
            raise errors.bad_request(problem)
        if params.get("follow") and (previous or not container_running(pod, container)):
            params.pop("follow")  # a finished container's log does not grow
        host, port = await self._node(pod)
        path = f"/containerLogs/{_seg(namespace)}/{_seg(name)}/{_seg(container)}"
        url = node_url(host, port, path, list(params.items()))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                upstream = await session.get(url, headers=self._headers(), ssl=False)
            except (aiohttp.ClientError, OSError) as e:
                raise _dial_error(url, e) from None
            async with upstream:
                if upstream.status != 200:
                    text = (await upstream.content.read(50000)).decode(errors="replace")
                    raise node_error(upstream.status, text, "pods/log", name)
                return await self._copy_body(request, upstream)

    @staticmethod
    async def _copy_body(
        request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientPayloadError):
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
        return resp

    # exec / port-forward
    async def _exec(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        pod = await self._pod(namespace, name)
        container = choose_container(pod, request.query.get("container", ""))
        _require_node(pod, name)
        params = [("command", c) for c in request.query.getall("command", [])]
        params += [(k, request.query[k]) for k in STREAM_PARAMS if k in request.query]
        path = f"/exec/{_seg(namespace)}/{_seg(name)}/{_seg(container)}"
        return await self._tunnel(request, pod, path, params)

    async def _attach(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        pod = await self._pod(namespace, name)
        container = choose_container(pod, request.query.get("container", ""))
        _require_node(pod, name)
        params = [(k, request.query[k]) for k in STREAM_PARAMS if k in request.query]
        path = f"/attach/{_seg(namespace)}/{_seg(name)}/{_seg(container)}"
        return await self._tunnel(request, pod, path, params)

    async def _port_forward(
        self, request: web.Request, namespace: str, name: str
    ) -> web.StreamResponse:
        ports = portforward_ports(request.query.getall("ports", []))
        pod = await self._pod(namespace, name)
        _require_node(pod, name)
        path = f"/portForward/{_seg(namespace)}/{_seg(name)}"
        # the node reads them as one `port` parameter (upstream's streamParams)
        params = [("port", ",".join(str(p) for p in ports))] if ports else []
        return await self._tunnel(request, pod, path, params)

    async def _tunnel(
        self, request: web.Request, pod: Obj, path: str, params: list[tuple[str, str]]
    ) -> web.StreamResponse:
        host, port = await self._node(pod)
        url = node_url(host, port, path, params)
        if wants_upgrade(request.headers):
            return await self._spdy(request, host, port, path, params, url)
        if not wants_websocket(request):
            # e.g. kubectl's SPDY fallback after a refused WebSocket: the node's answer (its
            # reason for refusing, or "Upgrade request required") goes back as it is
            return await self._plain(url)
        offered = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                node_ws = await session.ws_connect(
                    url,
                    protocols=offered,
                    headers=self._headers(),
                    ssl=False,
                    max_msg_size=MAX_MESSAGE,
                    compress=0,
                    autoping=True,
                )
            except aiohttp.WSServerHandshakeError as e:
                text = (e.headers or {}).get(ERROR_HEADER, "") or e.message
                return web.Response(status=e.status, text=text)
            except (aiohttp.ClientError, OSError) as e:
                raise _dial_error(url, e) from None
            async with node_ws:
                protocols = (node_ws.protocol,) if node_ws.protocol else ()
                client_ws = web.WebSocketResponse(
                    protocols=protocols, max_msg_size=MAX_MESSAGE, compress=False
                )
                await client_ws.prepare(request)
                await _splice(client_ws, node_ws)
                return client_ws

    async def _spdy(
        self,
        request: web.Request,
        host: str,
        port: int,
        path: str,
        params: list[tuple[str, str]],
        url: str,
    ) -> web.StreamResponse:
        """A SPDY/3.1 upgrade: asked of the node with the client's protocol versions; once
        the node switches, so does the client's connection, and bytes are copied."""
        headers = [(k, v) for k, v in self._headers().items()]
        headers += [("Connection", "Upgrade"), ("Upgrade", request.headers["Upgrade"])]
        headers += [(PROTOCOL_HEADER, v) for v in request.headers.getall(PROTOCOL_HEADER, [])]
        target = path + (f"?{urlencode(params)}" if params else "")
        try:
            reply = await request_upgrade(host, port, target, headers, _node_tls(), CONNECT_TIMEOUT)
        except (OSError, TimeoutError, UpgradeError) as e:
            raise _dial_error(url, e) from None
        if reply.status != 101:
            try:
                body = await reply.body(CONNECT_TIMEOUT)
            finally:
                reply.close()
            return web.Response(status=reply.status, body=body, content_type="text/plain")
        switched = {
            name: reply.headers[name]
            for name in ("Connection", "Upgrade", PROTOCOL_HEADER)
            if name in reply.headers
        }
        try:
            client = await switch_protocols(request, switched)
        except BaseException:
            reply.close()
            raise
        await relay(client, reply)
        return client.response

    async def _plain(self, url: str) -> web.Response:
        timeout = aiohttp.ClientTimeout(total=CONNECT_TIMEOUT * 3, sock_connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.get(url, headers=self._headers(), ssl=False) as upstream:
                    body = await upstream.content.read(50000)
                    return web.Response(
                        status=upstream.status,
                        body=body,
                        content_type="text/plain",
                    )
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise _dial_error(url, e) from None


def _require_node(pod: Obj, name: str) -> None:
    if not (pod.get("spec") or {}).get("nodeName"):
        raise errors.bad_request(f"pod {name} does not have a host assigned")


def _not_allowed() -> ApiError:
    return errors.method_not_allowed(
        "the server does not allow this method on the requested resource"
    )


def _node_tls() -> ssl.SSLContext:
    """TLS to a node without verification (see PodProxy)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _dial_error(url: str, e: BaseException) -> ApiError:
    # upstream passes the transport error through as an unclassified 500
    return ApiError(500, "", f'error dialing backend: Get "{url}": {e}')


async def _pipe(src: Any, dst: Any) -> None:
    async for msg in src:
        if msg.type == WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
            break


async def _splice(client: web.WebSocketResponse, node: aiohttp.ClientWebSocketResponse) -> None:
    """Copy messages both ways until either side ends, then close the other side with the
    same close code (kubectl reads a normal close as the end of every stream)."""
    to_node = asyncio.create_task(_pipe(client, node))
    to_client = asyncio.create_task(_pipe(node, client))
    try:
        done, _ = await asyncio.wait({to_node, to_client}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_node, to_client):
            if not task.done():
                task.cancel()
        await asyncio.gather(to_node, to_client, return_exceptions=True)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        if to_client in done:
            await client.close(code=node.close_code or 1000)
            await node.close()
        else:
            await node.close(code=client.close_code or 1000)
            await client.close()


__all__ = [
    "PROXY_SUBRESOURCES",
    "PodProxy",
    "choose_container",
    "log_query",
    "log_state_error",
    "node_endpoint",
    "node_error",
    "portforward_ports",
]
