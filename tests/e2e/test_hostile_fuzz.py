"""Thousands of hostile requests against one real API server process.

A wrong-typed value at every field of every kind's OpenAPI schema, then property-based
families (Hypothesis, derandomized so a failure reproduces): mutated bodies in every content
type and patch type for every kind, odd query parameters, methods, paths and headers, and
the expensive request classes. Every answer must be below 500 and every error a v1 Status
with the HTTP code; every accepted body strict JSON; a rejected write changes nothing.
/healthz, probed from another process the whole time, must never stall for seconds (its
latency target, 100 ms, is bench/hostile_bench.py's, measured on a quiet machine); at the end
the server lists everything as strict JSON and `kubectl get svc -A` works. A summary
(requests, codes, /healthz p50 and max) is printed.
"""

from __future__ import annotations

import gzip
import json
import math
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.api import protobuf
from kubesvc.api.kinds import BY_KIND, KINDS, Kind
from tests.e2e.harness import ApiServerProcess
from tests.hostile import payloads
from tests.hostile.client import Client, Response, snapshot, status_problem, strict_loads
from tests.hostile.probe import HealthzProbe, Stats

pytestmark = pytest.mark.e2e

NS = "fuzz"
MIN_REQUESTS = 5_000
# a stall, not a latency: a request that holds the event loop holds it for seconds
HEALTHZ_STALL_MS = 5_000.0
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
FAMILIES = ("fields", "bodies", "queries", "methods", "headers", "expensive")

CONTENT_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]
PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass
class Fuzz:
    api: ApiServerProcess
    client: Client
    probe: HealthzProbe
    started: float = field(default_factory=time.monotonic)
    requests: int = 0  # hostile requests (the checks that follow them are not counted)
    codes: Counter[int] = field(default_factory=Counter)
    done: set[str] = field(default_factory=set)
    serial: int = 0

    def name(self) -> str:
        self.serial += 1
        return f"fz-{self.serial}"

    def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
        auth: str | None = None,
    ) -> Response:
        """One hostile request; its answer must be a well-formed non-5xx."""
        resp = self.client.request(method, path, body, content_type, headers, auth)
        self.requests += 1
        self.codes[resp.status] += 1
        where = f"{method} {path} [{content_type}] {headers or {}} body={body[:400]!r}"
        problem = status_problem(resp, method)
        assert problem is None, f"{problem}\nrequest: {where}"
        if resp.status < 300 and method != "HEAD" and resp.body[:1] in (b"{", b"["):
            try:
                if b"\n{" not in resp.body:  # a watch stream is one object per line
                    strict_loads(resp.body)
            except ValueError as e:
                raise AssertionError(f"accepted, not strict JSON: {e}\nrequest: {where}") from e
        return resp

    def current(self, kind: Kind, name: str) -> str | None:
        """The object's resourceVersion, None when it does not exist."""
        resp = self.client.get(payloads.object_path(kind, NS, name))
        if resp.status == 404:
            return None
        assert resp.status == 200, resp
        return str(resp.json()["metadata"]["resourceVersion"])


def _base_name(kind: Kind) -> str:
    return "base" if kind.namespaced else f"fuzz-base-{kind.plural}"


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    api = ApiServerProcess(tmp_path_factory.mktemp("fuzz") / "data")
    api.start()
    try:
        with HealthzProbe(api.port, api.data_dir / "pki" / "ca.crt") as probe:
            client = Client(api.port, api.data_dir)
            api.out("create", "namespace", NS)
            for kind in KINDS:
                obj = payloads.sample(kind.kind, _base_name(kind), NS)
                path = payloads.collection_path(kind, NS)
                resp = client.request("POST", path, json.dumps(obj).encode())
                assert resp.status == 201, f"{kind.kind}: {resp}"
            f = Fuzz(api, client, probe)
            try:
                yield f
            finally:
                client.close()
    finally:
        api.stop()


# -- a wrong-typed value at every field of every kind -----------------------------------------


def test_wrong_type_at_every_field(fuzz: Fuzz) -> None:
    """5,000 fields: each gets one of its wrong values (in turn), as a create."""
    failures = []
    fields = payloads.all_typed_fields()
    for i, f in enumerate(fields):
        wrongs = payloads.wrong_values(f)
        if not wrongs:
            continue
        wrong = wrongs[i % len(wrongs)]
        kind = BY_KIND[f.kind]
        name = fuzz.name()
        body = json.dumps(payloads.set_at(payloads.sample(f.kind, name, NS), f.path, wrong.value))
        resp = fuzz.send("POST", payloads.collection_path(kind, NS), body.encode())
        want = payloads.wrong_type_message(f.kind, kind.version, f, wrong)
        if resp.status != 400 or want not in resp.message:
            failures.append(f"{f.id} = {wrong.value!r}: {resp}")
    fuzz.done.add("fields")
    assert len(fields) > 5_000
    assert not failures, f"{len(failures)} fields:\n" + "\n".join(failures[:30])


# -- mutated bodies: every content type and patch type, every kind ---------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 2**64, -(2**63) - 1]),
    st.text(max_size=12),
    st.sampled_from(["\ud800", "a\udc00", "", "-1", "0x1F", "1e400", "::1", "*", "..", "a/b"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_hostile_value = st.one_of(
    _values,
    # deeper nesting goes in as text (_literals): copying it here would recurse too far
    st.integers(min_value=1, max_value=300).map(lambda d: payloads.nested(d)),
    st.integers(min_value=1, max_value=500_000).map(lambda n: "x" * n),
)
_literals = st.one_of(
    st.sampled_from(payloads.NAN_LITERALS + payloads.HUGE_NUMBERS + payloads.BAD_TEXT),
    st.integers(min_value=1, max_value=12_000).map(payloads.nested_json),
)
_kinds = st.sampled_from(KINDS)


@st.composite
def _mutated(draw: st.DrawFn, kind: Kind, name: str) -> bytes | dict[str, Any]:
    """A valid object with hostile changes: a dict, or JSON text with raw literals, duplicate
    keys or cut short."""
    obj = payloads.sample(kind.kind, name, NS)
    fields = payloads.typed_fields(kind.kind)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        f = draw(st.sampled_from(fields))
        obj = payloads.set_at(obj, f.path, draw(_hostile_value))
    how = draw(st.sampled_from(["object", "literal", "duplicate", "truncate", "flip"]))
    if how == "object":
        return obj
    if how == "literal":
        f = draw(st.sampled_from(fields))
        return payloads.json_with(obj, f.path, draw(_literals))
    text = json.dumps(obj).encode()
    if how == "duplicate":
        dup = draw(st.sampled_from([b'"metadata":{"name":"dup"}', b'"kind":"Pod"', b'"spec":1']))
        return b"{" + dup + b"," + text[1:]
    pos = draw(st.integers(min_value=0, max_value=max(0, len(text) - 1)))
    if how == "truncate":
        return text[:pos]
    return text[:pos] + bytes([text[pos] ^ draw(st.integers(1, 255))]) + text[pos + 1 :]


def _encode(value: bytes | dict[str, Any], ctype: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if ctype.endswith("yaml"):
        try:
            return yaml.safe_dump(value, allow_unicode=True).encode("utf-8", "surrogatepass")
        except (yaml.YAMLError, UnicodeEncodeError, RecursionError):
            pass  # JSON is YAML too
    try:
        return json.dumps(value).encode()
    except RecursionError:
        return b'{"kind":' + payloads.nested_json(3000) + b"}"


@st.composite
def _body_request(draw: st.DrawFn) -> tuple[str, Kind, str, str, bytes, bool]:
    """(method, kind, target name, content type, body, whether it targets the base object)."""
    kind = draw(_kinds)
    verb = draw(st.sampled_from(["create", "update", "json", "merge", "strategic", "apply"]))
    base = _base_name(kind)
    if verb == "create":
        ctype = draw(st.sampled_from(CONTENT_TYPES))
        name = f"fzb-{draw(st.integers(0, 10**9))}"
    else:
        ctype = PATCH_TYPES.get(verb, draw(st.sampled_from(CONTENT_TYPES)))
        name = base
    if ctype.endswith("protobuf") and protobuf.message_for(kind.api_version, kind.kind) is None:
        ctype = "application/json"  # kinds kubectl never sends as protobuf
    if ctype.endswith("protobuf"):
        data = payloads.to_protobuf(payloads.sample(kind.kind, name, NS))
        cuts = list(payloads.byte_mutations(data))
        body = draw(st.sampled_from(cuts))
    elif verb == "json":
        f = draw(st.sampled_from(payloads.typed_fields(kind.kind)))
        pointer = "/" + "/".join("0" if p == payloads.LIST_ITEM else p for p in f.path)
        op = draw(st.sampled_from(["add", "replace", "remove", "test", "copy", "move", "x", 5]))
        ops: list[Any] = [{"op": op, "path": pointer, "value": draw(_hostile_value)}]
        if draw(st.booleans()):
            ops[0]["from"] = draw(st.sampled_from(["/metadata", "/", "", "/x/-", "/spec/0"]))
        if draw(st.booleans()):
            ops = draw(st.sampled_from([ops, ops[0], [5], [[]], {"op": "add"}]))
        repeated = ops[:1] * 3 if isinstance(ops, list) else [ops] * 3
        body = _encode(ops if draw(st.booleans()) else repeated, "json")
    else:
        value = draw(_mutated(kind, name))
        if verb in ("merge", "strategic") and isinstance(value, dict):
            value = {k: v for k, v in value.items() if draw(st.booleans())}
            if verb == "strategic" and draw(st.booleans()):
                value["$patch"] = draw(st.sampled_from(["delete", "replace", "merge", 5]))
        body = _encode(value, ctype)
    method = {"create": "POST", "update": "PUT"}.get(verb, "PATCH")
    return method, kind, name, ctype, body, verb != "create"


@settings(FUZZ, max_examples=1_800)
@given(_body_request())
def test_mutated_bodies(fuzz: Fuzz, case: tuple[str, Kind, str, str, bytes, bool]) -> None:
    method, kind, name, ctype, body, _on_base = case
    before = fuzz.current(kind, name)
    path = payloads.collection_path(kind, NS)
    if method != "POST":
        path = payloads.object_path(kind, NS, name)
    if ctype.endswith("apply-patch+yaml"):
        path += "?fieldManager=fuzz&force=true"
    resp = fuzz.send(method, path, body, ctype)
    if resp.status >= 400:
        after = fuzz.current(kind, name)
        assert after == before, f"rejected ({resp.status}) but changed: {before} -> {after}"
    fuzz.done.add("bodies")


# -- odd query parameters ---------------------------------------------------------------------

_junk = st.one_of(
    st.sampled_from(
        ["", "-1", "0", "1", "abc", "1e3", "9" * 30, "-9" * 20, "true", "%00", "\u2603", "None"]
    ),
    st.text(min_size=1, max_size=20),
)
_params = {
    "limit": _junk,
    "continue": st.one_of(
        _junk,
        st.sampled_from(
            ["eyJydiI6MX0", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0IjoiLyJ9"]
        ),
    ),
    "resourceVersion": _junk,
    "resourceVersionMatch": st.sampled_from(["NotOlderThan", "Exact", "x", ""]),
    "fieldSelector": st.one_of(
        _junk,
        st.sampled_from(["metadata.name=x", "spec.x=1", "a==b,c!=d", "=", "metadata.name in (a)"]),
    ),
    "labelSelector": st.one_of(
        _junk, st.sampled_from(["a in (b", "!a,b", "a=b=c", "a notin ()", "a>1", "x/y/z"])
    ),
    "dryRun": st.sampled_from(["All", "all", "None", "", "x"]),
    "fieldValidation": st.sampled_from(["Strict", "Warn", "Ignore", "strict", "", "x"]),
    "fieldManager": st.one_of(_junk, st.just("m" * 200)),
    "propagationPolicy": st.sampled_from(["Orphan", "Foreground", "Background", "", "x"]),
    "gracePeriodSeconds": _junk,
    "orphanDependents": _junk,
    "timeoutSeconds": _junk,
    "allowWatchBookmarks": _junk,
    "sendInitialEvents": _junk,
    "includeObject": st.sampled_from(["None", "Object", "Metadata", "x"]),
    "pretty": _junk,
    "force": _junk,
}


@st.composite
def _query_request(draw: st.DrawFn) -> tuple[str, str, Kind]:
    kind = draw(_kinds)
    method = draw(st.sampled_from(["GET", "GET", "DELETE", "PATCH", "PUT", "POST"]))
    names = st.sampled_from(["", "nonexistent", _base_name(kind)])
    name = draw(names) if method != "POST" else ""
    chosen = draw(st.lists(st.sampled_from(sorted(_params)), max_size=5))
    query = [(k, draw(_params[k])) for k in chosen]
    if method == "DELETE":
        # first, so that they win: the stored objects stay for the other families
        query = [("dryRun", "All"), ("labelSelector", "nothing-has-this-label"), *query]
    watch = draw(st.sampled_from([None, "true", "1", "false", "x"])) if method == "GET" else None
    if watch is not None:
        query.append(("watch", watch))
    if watch in ("true", "1"):
        query = [(k, v) for k, v in query if k != "timeoutSeconds"] + [("timeoutSeconds", "1")]
    path = payloads.object_path(kind, NS, name) if name else payloads.collection_path(kind, NS)
    return method, f"{path}?{urllib.parse.urlencode(query)}", kind


@settings(FUZZ, max_examples=1_200)
@given(_query_request())
def test_odd_query_parameters(fuzz: Fuzz, case: tuple[str, str, Kind]) -> None:
    method, path, kind = case
    base = _base_name(kind)
    before = fuzz.current(kind, base)
    body = b'{"metadata":{"labels":{"q":"1"}}}' if method in ("PATCH", "PUT", "POST") else b""
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    resp = fuzz.send(method, path, body, ctype)
    if resp.status >= 400 and method != "GET":
        assert fuzz.current(kind, base) == before
    fuzz.done.add("queries")


# -- odd methods and paths --------------------------------------------------------------------

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"]
METHODS += ["PROPFIND", "MKCOL", "LOCK", "UNLOCK", "COPY", "MOVE", "SEARCH", "PURGE"]


@st.composite
def _odd_path(draw: st.DrawFn) -> str:
    kind = draw(_kinds)
    segment = st.one_of(
        st.sampled_from(["", ".", "..", "%2e%2e", "status", "scale", "binding", "finalize", "x"]),
        st.sampled_from(["namespaces", NS, "watch", "api", "apis", "v1", "v2", kind.plural]),
        st.text(max_size=10).map(lambda s: urllib.parse.quote(s, safe="")),
        st.just("n" * 300),
    )
    prefix = draw(
        st.sampled_from(
            [
                payloads.collection_path(kind, NS),
                payloads.object_path(kind, NS, _base_name(kind)),
                "/api",
                "/apis",
                "/api/v1",
                "/apis/apps/v1",
                "/openapi/v3",
                "/openapi/v2",
                "/version",
                "/healthz",
                "/",
                "/api/v1/watch",
                "//api//v1",
            ]
        )
    )
    return prefix + "".join("/" + s for s in draw(st.lists(segment, max_size=3)))


@settings(FUZZ, max_examples=1_000)
@given(st.sampled_from(METHODS), _odd_path(), st.booleans())
def test_odd_methods_and_paths(fuzz: Fuzz, method: str, path: str, with_body: bool) -> None:
    if method not in ("GET", "HEAD", "OPTIONS"):
        path += "?dryRun=All"  # the stored objects stay for the other families
    # CONNECT has no content (RFC 9110): a body would be read as the next request
    body = b'{"metadata":{"name":"base"}}' if with_body and method != "CONNECT" else b""
    fuzz.send(method, path, body, "application/merge-patch+json" if method == "PATCH" else None)
    fuzz.done.add("methods")


# -- odd headers ------------------------------------------------------------------------------


@st.composite
def _header_request(
    draw: st.DrawFn,
) -> tuple[str, str, bytes, str | None, dict[str, str], str | None]:
    kind = draw(_kinds)
    obj = payloads.sample(kind.kind, f"fzh-{draw(st.integers(0, 10**9))}")
    body = json.dumps(obj).encode()
    encoding = draw(st.sampled_from([None, "gzip", "gzip", "deflate", "br", "identity", "x"]))
    headers: dict[str, str] = {}
    if encoding:
        headers["Content-Encoding"] = encoding
        if encoding == "gzip" and draw(st.booleans()):
            body = gzip.compress(body)
            if draw(st.booleans()):
                body = body[: len(body) // 2]
    accept = draw(
        st.sampled_from(
            [
                None,
                "*/*",
                "application/json;as=Table;v=v1;g=meta.k8s.io",
                "application/json;as=Table;v=v9;g=x",
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                "application/vnd.kubernetes.protobuf",
                "text/html",
                "application/yaml",
                ";;;",
                "application/json;q=x",
            ]
        )
    )
    if accept:
        headers["Accept"] = accept
    ctype = draw(
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=latin1",
                "APPLICATION/JSON",
                "application/yaml",
                "text/plain",
                "",
                "application/vnd.kubernetes.protobuf",
                "multipart/form-data; boundary=x",
                None,
            ]
        )
    )
    auth = draw(st.sampled_from([None, None, "", "Bearer", "Bearer x", "Basic Og==", "bearer"]))
    method = draw(st.sampled_from(["POST", "GET"]))
    path = payloads.collection_path(kind, NS)
    if method == "GET":
        body = b""
    return method, path, body, ctype, headers, auth


@settings(FUZZ, max_examples=800)
@given(_header_request())
def test_odd_headers(
    fuzz: Fuzz, case: tuple[str, str, bytes, str | None, dict[str, str], str | None]
) -> None:
    method, path, body, ctype, headers, auth = case
    if auth == "bearer":
        auth = f"bearer {fuzz.client.token}"
    resp = fuzz.send(method, path, body, ctype, headers, auth)
    if auth is not None and not auth.startswith("bearer "):
        assert resp.status == 401, resp
    fuzz.done.add("headers")


# -- the expensive request classes ------------------------------------------------------------


def test_expensive_requests(fuzz: Fuzz) -> None:
    cms = payloads.collection_path(BY_KIND["ConfigMap"], NS)
    base = f"{cms}/base"
    cases: list[tuple[str, str, bytes, str, int]] = [
        ("POST", cms, payloads.billion_laughs_yaml(), "application/yaml", 400),
        ("POST", cms, payloads.billion_laughs_yaml(12, 12), "application/yaml", 400),
        ("PATCH", base, payloads.copy_doubling_patch(20), "application/json-patch+json", 422),
        ("PATCH", base, payloads.copy_doubling_patch(30), "application/json-patch+json", 422),
        ("POST", cms, payloads.nested_json(10_001), "application/json", 400),
        ("POST", cms, payloads.nested_json(100_000, "object"), "application/json", 400),
        ("POST", cms, b"x" * (3 * 1024 * 1024 + 1), "application/json", 413),
        ("POST", cms, payloads.big_configmap_json("fz-big"), "application/json", 422),
        ("POST", cms, payloads.many_keys_yaml(20_000, "fz-keys"), "application/yaml", 201),
        ("PATCH", base, b"[" + b'{"op":"test","path":"/kind","value":"ConfigMap"},' * 10_000
         + b"{}]", "application/json-patch+json", 413),
    ]  # fmt: skip
    for method, path, body, ctype, code in cases:
        resp = fuzz.send(method, path, body, ctype)
        assert resp.status == code, f"{method} {path} {body[:80]!r}: {resp}"
    fuzz.done.add("expensive")


# -- at the end -------------------------------------------------------------------------------


def test_server_alive_lists_valid_and_healthz_never_stalled(fuzz: Fuzz) -> None:
    ended = time.monotonic()
    stats: Stats = fuzz.probe.window(fuzz.started, ended)
    snap = snapshot(fuzz.client)
    out = fuzz.api.out("get", "svc", "-A", "-o", "json")
    assert "kubernetes" in {i["metadata"]["name"] for i in json.loads(out)["items"]}
    codes = ", ".join(f"{c}: {n}" for c, n in sorted(fuzz.codes.items()))
    print(
        f"\nhostile fuzz: {fuzz.requests} requests in {ended - fuzz.started:.1f} s; codes {codes}; "
        f"/healthz {stats}; stored objects {sum(len(v) for v in snap.values())}"
    )
    assert stats.failed == 0, stats
    assert stats.max_ms < HEALTHZ_STALL_MS, f"/healthz stalled: {stats}"
    if fuzz.done >= set(FAMILIES):
        assert fuzz.requests >= MIN_REQUESTS, fuzz.requests
