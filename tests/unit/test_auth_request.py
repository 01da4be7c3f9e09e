# ruff: noqa: E501  (upstream's table, one case a line)
"""Request attributes from method, path and query: upstream's requestinfo_test.go cases."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.auth.request import RequestInfo, request_info


def info(method: str, url: str) -> RequestInfo:
    parts = urlsplit(url)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(key, value)  # the first value, as aiohttp's query.get gives
    return request_info(method, parts.path, query)


# method, url, verb, prefix, group, version, namespace, resource, subresource, name, parts
CASES = [
    # resource paths
    ("GET", "/api/v1/namespaces", "list", "api", "", "v1", "", "namespaces", "", "", ["namespaces"]),
    ("GET", "/api/v1/namespaces/other", "get", "api", "", "v1", "other", "namespaces", "", "other", ["namespaces", "other"]),
    ("GET", "/api/v1/namespaces/other/pods", "list", "api", "", "v1", "other", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("GET", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", ["pods"]),
    ("HEAD", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", ["pods"]),
    # upstream's table expects no namespace here, but its NewRequestInfo (read from
    # requestinfo.go) sets it for every method, as for the GET above
    ("PATCH", "/api/v1/namespaces/new-namespace", "patch", "api", "", "v1", "new-namespace", "namespaces", "", "new-namespace", ["namespaces", "new-namespace"]),
    # special verbs
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "api", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "api", "", "v1", "other", "pods", "", "foo", ["pods", "foo", "subpath", "not", "a", "subresource"]),
    ("GET", "/api/v1/watch/pods", "watch", "api", "", "v1", "", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/pods?watch=true", "watch", "api", "", "v1", "", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/pods?watch=false", "list", "api", "", "v1", "", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/watch/namespaces/other/pods", "watch", "api", "", "v1", "other", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch", "api", "", "v1", "other", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", "list", "api", "", "v1", "other", "pods", "", "", ["pods"]),
    # subresource identification
    ("GET", "/api/v1/namespaces/other/pods/foo/status", "get", "api", "", "v1", "other", "pods", "status", "foo", ["pods", "foo", "status"]),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "api", "", "v1", "other", "pods", "proxy", "foo", ["pods", "foo", "proxy", "subpath"]),
    ("PUT", "/api/v1/namespaces/other/finalize", "update", "api", "", "v1", "other", "namespaces", "finalize", "other", ["namespaces", "other", "finalize"]),
    ("PUT", "/api/v1/namespaces/other/status", "update", "api", "", "v1", "other", "namespaces", "status", "other", ["namespaces", "other", "status"]),
    # verb identification
    ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "api", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "api", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("POST", "/api/v1/namespaces/other/pods", "create", "api", "", "v1", "other", "pods", "", "", ["pods"]),
    # deletecollection verb identification
    ("DELETE", "/api/v1/nodes", "deletecollection", "api", "", "v1", "", "nodes", "", "", ["nodes"]),
    ("DELETE", "/api/v1/namespaces", "deletecollection", "api", "", "v1", "", "namespaces", "", "", ["namespaces"]),
    ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "api", "", "v1", "other", "pods", "", "", ["pods"]),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "apis", "extensions", "v1", "other", "pods", "", "", ["pods"]),
    # api group and version identification
    ("POST", "/apis/extensions/v1/namespaces/other/pods", "create", "apis", "extensions", "v1", "other", "pods", "", "", ["pods"]),
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", "apis", "extensions", "v1beta3", "other", "pods", "", "", ["pods"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "url", "verb", "prefix", "group", "version", "ns", "res", "sub", "name", "parts"),
    CASES,
    ids=[f"{c[0]} {c[1]}" for c in CASES],
)
def test_resource_requests(
    method: str,
    url: str,
    verb: str,
    prefix: str,
    group: str,
    version: str,
    ns: str,
    res: str,
    sub: str,
    name: str,
    parts: list[str],
) -> None:
    got = info(method, url)
    assert got.is_resource_request
    assert (got.verb, got.api_prefix, got.api_group, got.api_version) == (
        verb,
        prefix,
        group,
        version,
    )
    assert (got.namespace, got.resource, got.subresource, got.name) == (ns, res, sub, name)
    assert list(got.parts) == parts


@pytest.mark.parametrize(
    ("url", "resource_request"),
    [
        ("/api/version/resource", True),
        ("/apis/group/version/resource/name/subresource", True),
        ("/api/version/resource/name/subresource", True),
        ("/apis/batch/v1/job", True),
        ("/apis/batch/v1/job/foo", True),
        ("/apis/batch/v1/job/foo/scale", True),
        ("/not-api/version/resource", False),
        ("/apis/extensions/v1beta1", False),
        ("/apis/extensions/v1beta1/", False),
        ("/api/version", False),
        ("/api", False),
        ("/", False),
        ("", False),
        ("/api/version/", False),
        ("/apis/group/version/", False),
        ("/badprefix/version/resource", False),
        ("/apis/version/resource", False),
    ],
)
def test_resource_or_not(url: str, resource_request: bool) -> None:
    assert info("GET", url).is_resource_request is resource_request


def test_non_resource_requests_keep_the_method_and_path() -> None:
    got = info("POST", "/healthz/ping")
    assert (got.is_resource_request, got.verb, got.path) == (False, "post", "/healthz/ping")
    assert info("GET", "/apis").verb == "get"


@pytest.mark.parametrize(
    ("url", "name", "verb"),
    [
        ("/apis/group/version/resource", "", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1", "name1", "list"),
        (
            "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1",
            "name1",
            "watch",
        ),
        ("/apis/group/version/resource?fieldSelector=foo=bar", "", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "", "list"),
        (
            "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true",
            "",
            "watch",
        ),
        (
            "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false",
            "",
            "list",
        ),
        # not a name that fits in a path, so not taken for one
        ("/apis/group/version/resource?fieldSelector=metadata.name=a/b", "", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name==n", "n", "list"),
        ("/apis/group/version/resource?fieldSelector=metadata.name!=n", "", "list"),
        # any query parameter that does not decode drops the selector, not the watch
        ("/apis/g/v/r?fieldSelector=metadata.name=n&limit=x&watch=yes", "", "watch"),
        ("/apis/g/v/r?fieldSelector=metadata.name=n&labelSelector=a%20b", "", "list"),
        ("/apis/g/v/r?fieldSelector=metadata.name=n&timeoutSeconds=30", "n", "list"),
        ("/apis/g/v/r?watch=", "", "watch"),
        ("/apis/g/v/r?watch=FALSE", "", "list"),
    ],
)
def test_field_selector_names_the_object(url: str, name: str, verb: str) -> None:
    got = info("GET", url)
    assert (got.name, got.verb) == (name, verb)


def test_selectors_are_kept_for_collections_not_for_path_verbs() -> None:
    got = info("GET", "/api/v1/pods?labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn1")
    assert (got.label_selector, got.field_selector) == ("app=web", "spec.nodeName=n1")
    got = info("DELETE", "/api/v1/namespaces/ns/pods?labelSelector=app%3Dweb")
    assert (got.verb, got.label_selector) == ("deletecollection", "app=web")
    got = info("GET", "/api/v1/watch/pods?labelSelector=app%3Dweb")
    assert (got.verb, got.label_selector) == ("watch", "")
    got = info("GET", "/api/v1/namespaces/ns/pods/p?labelSelector=app%3Dweb")
    assert (got.verb, got.label_selector) == ("get", "")


def test_a_path_verb_without_a_resource_is_a_resource_request_with_none() -> None:
    got = info("GET", "/api/v1/watch")
    assert got.is_resource_request and got.resource == ""


def test_unknown_methods_have_no_verb() -> None:
    assert info("OPTIONS", "/api/v1/pods").verb == ""


@settings(max_examples=500, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "x"]),
    segments=st.lists(
        st.one_of(
            st.sampled_from(
                ["api", "apis", "v1", "namespaces", "watch", "proxy", "status", "", "pods"]
            ),
            st.text(max_size=8),
        ),
        max_size=8,
    ),
    query=st.dictionaries(
        st.sampled_from(
            ["watch", "fieldSelector", "labelSelector", "limit", "timeoutSeconds", "x"]
        ),
        st.text(max_size=30),
    ),
)
def test_any_request_has_attributes(
    method: str, segments: list[str], query: dict[str, str]
) -> None:
    got = request_info(method, "/" + "/".join(segments), query)
    if not got.is_resource_request:
        assert got.verb == method.lower()
    assert all(isinstance(v, str) for v in (got.verb, got.namespace, got.resource, got.name))
