"""A raw HTTPS client for hostile requests (any method, body and header, one keep-alive
connection), strict JSON, the Status checks and a snapshot of everything the server stores."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubesvc.api.kinds import KINDS
from tests.hostile.payloads import collection_path

NO_RESPONSE = 0  # Response.status when the server closed the connection without answering


class NotStrictJSON(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise NotStrictJSON(f"{name} is not JSON")


def strict_loads(data: bytes | str) -> Any:
    """json.loads that refuses NaN and Infinity (which Python accepts and JSON does not)."""
    return json.loads(data, parse_constant=_refuse_constant)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return strict_loads(self.body)

    @property
    def message(self) -> str:
        try:
            doc = self.json()
        except ValueError:
            return ""
        return str(doc.get("message", "")) if isinstance(doc, dict) else ""

    def __str__(self) -> str:
        return f"{self.status} {self.body[:300]!r}"


@dataclass
class Client:
    """One keep-alive HTTPS connection to the API server, with the bearer token."""

    port: int
    data_dir: Path
    timeout: float = 60.0
    _conn: http.client.HTTPSConnection | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.ctx = ssl.create_default_context(cafile=str(self.data_dir / "pki" / "ca.crt"))
        self.token = (self.data_dir / "pki" / "token").read_text().strip()

    def _connect(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.ctx, timeout=self.timeout
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
        auth: str | None = None,
    ) -> Response:
        """Send one request; Response.status is NO_RESPONSE when the server closed the
        connection instead of answering. `auth` replaces the Authorization header ("" for
        none)."""
        h: dict[str, str] = {}
        if content_type is not None:
            h["Content-Type"] = content_type
        h["Authorization"] = f"Bearer {self.token}" if auth is None else auth
        if not h["Authorization"]:
            del h["Authorization"]
        h.update(headers or {})
        for attempt in (1, 2):
            fresh = self._conn is None
            conn = self._connect()
            t0 = time.perf_counter()
            try:
                conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in h.items():
                    conn.putheader(k, v)
                if body or method in ("POST", "PUT", "PATCH"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body or None)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                pass  # the server may have answered (413) before reading everything
            try:
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, ConnectionError, ssl.SSLError, OSError) as e:
                self.close()
                if isinstance(e, socket.timeout):
                    raise
                if attempt == 1 and not fresh:
                    continue  # a kept-alive connection the server had closed: once more
                return Response(NO_RESPONSE, {}, b"", time.perf_counter() - t0)
            elapsed = time.perf_counter() - t0
            headers_out = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close or method == "CONNECT":
                self.close()  # after CONNECT the connection is not HTTP any more
            return Response(resp.status, headers_out, data, elapsed)
        raise AssertionError("unreachable")

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, content_type=None, **kw)


def status_problem(resp: Response, method: str = "GET") -> str | None:
    """What is wrong with an answer, or None: no answer, a 5xx, or an error whose body is not
    a v1 Status with status Failure and the HTTP code."""
    if resp.status == NO_RESPONSE:
        return "connection closed without an answer"
    if resp.status >= 500:
        return f"server error {resp}"
    if resp.status < 400 or method == "HEAD":
        return None
    try:
        doc = resp.json()
    except (ValueError, UnicodeDecodeError):
        return f"error body is not JSON: {resp}"
    if not isinstance(doc, dict):
        return f"error body is not an object: {resp}"
    want = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": resp.status}
    got = {k: doc.get(k) for k in want}
    if got != want or not isinstance(doc.get("message"), str) or not doc.get("reason"):
        return f"error body is not a Status for {resp.status}: {resp}"
    return None


def assert_status(resp: Response, code: int, fragment: str = "", method: str = "GET") -> None:
    """resp is a Status error with this code whose message contains fragment."""
    assert resp.status == code, f"want {code}, got {resp}"
    problem = status_problem(resp, method)
    assert problem is None, problem
    assert fragment in resp.message, f"{fragment!r} not in {resp.message!r}"


Snapshot = dict[str, dict[str, str]]


def snapshot(client: Client) -> Snapshot:
    """kind -> {namespace/name: resourceVersion} of everything stored, from one list per kind;
    every list must be strict JSON (no NaN, valid UTF-8), as JSON and as a Table."""
    out: Snapshot = {}
    table = "application/json;as=Table;v=v1;g=meta.k8s.io"
    for kind in KINDS:
        path = collection_path(kind, "").replace("/namespaces//", "/")
        resp = client.get(path)
        assert resp.status == 200, f"list {path}: {resp}"
        doc = resp.json()
        items = {}
        for item in doc["items"]:
            m = item["metadata"]
            items[f"{m.get('namespace', '')}/{m['name']}"] = m["resourceVersion"]
        out[kind.kind] = items
        resp = client.get(path, headers={"Accept": table})
        assert resp.status == 200, f"list {path} as Table: {resp}"
        assert len(resp.json()["rows"]) == len(items)
    return out
