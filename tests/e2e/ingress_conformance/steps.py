"""The suite's step definitions (test/conformance/*/feature.go, test/kubernetes/*.go,
test/state/state.go), with the same texts and the same meaning, driving the cluster through
kubectl and sending requests with the suite's client from an outside host.

Where this departs from the Go code, for time only: polls are every 0.2 s (not 5 s); the
Deployments and Services of an Ingress's backends are all created before waiting for their
endpoints (the Go code waits after each); scaling a backend sleeps SCALE_SETTLE, not 60 s,
once its endpoints are ready, for the controller to catch up (the Endpoints the step waits
for and the EndpointSlices the controller reads are written apart, and 100 requests take
about a second); and "should not contain the IP address" waits ABSENT_WAIT, not the
5-minute status timeout.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from kubesvc import netns
from tests.e2e.cluster import Cluster
from tests.e2e.ingress_conformance import client
from tests.e2e.ingress_conformance.gherkin import Step

ECHO_IMAGE = (
    "k8s.gcr.io/ingressconformance/echoserver:v0.0.1"
    "@sha256:9b34b17f391f87fb2155f01da2f2f90b7a4a5c1110ed84cb5379faa4f570dc52"
)
NAMESPACE_LABEL = {"app.kubernetes.io/name": "ingress-conformance"}
POLL = 0.2
STATUS_TIMEOUT = 60.0  # --wait-time-for-ingress-status (5m upstream)
READY_TIMEOUT = 120.0  # --wait-time-for-ready (5m upstream)
ABSENT_WAIT = 5.0  # an Ingress the controller serves has its status in well under a second
SCALE_SETTLE = 5.0  # 60 s upstream


class StepFailed(AssertionError):
    pass


@dataclass(frozen=True)
class Suite:
    cluster: Cluster
    ingress_class: str  # --ingress-class: given to Ingresses that name none
    netns: str | None  # where requests are sent from (an outside host), None: here


@dataclass
class State:
    """test/state.Scenario, and the load-balancing feature's results."""

    namespace: str = ""
    ingress_name: str = ""
    secret_name: str = ""
    request: client.CapturedRequest | None = None
    response: client.CapturedResponse | None = None
    address: str = ""  # IPOrFQDN
    results: dict[int, set[str]] = field(default_factory=dict)

    def fresh(self) -> State:
        """A new scenario's state after a shared Background."""
        return replace(self, request=None, response=None, results={})


StepFn = Callable[..., None]
_STEPS: list[tuple[re.Pattern[str], StepFn]] = []


def step(pattern: str) -> Callable[[StepFn], StepFn]:
    def register(fn: StepFn) -> StepFn:
        _STEPS.append((re.compile(pattern), fn))
        return fn

    return register


def run_step(suite: Suite, state: State, s: Step) -> None:
    """The one definition matching the step's text, called with its groups (and doc string
    or table); an undefined or ambiguous step fails, as godog's strict mode."""
    found = [(fn, m) for pattern, fn in _STEPS if (m := pattern.fullmatch(s.text))]
    if not found:
        raise StepFailed(f"undefined step: {s.text!r}")
    if len(found) > 1:
        raise StepFailed(f"ambiguous step: {s.text!r}")
    fn, m = found[0]
    extra: list[Any] = []
    if s.doc is not None:
        extra.append(s.doc)
    if s.table is not None:
        extra.append(s.table)
    fn(suite, state, *m.groups(), *extra)


# ---------------------------------------------------------------- the cluster


def kubectl_json(c: Cluster, *args: str, input: Any = None) -> Any:
    text = json.dumps(input) if input is not None else None
    return json.loads(c.kubectl(*args, "-o", "json", input=text).stdout)


def wait(what: str, timeout: float, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise StepFailed(f"{what}: not within {timeout:.0f}s")
        time.sleep(POLL)


def new_namespace(c: Cluster) -> str:
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"generateName": "ingress-conformance-", "labels": NAMESPACE_LABEL},
    }
    return str(kubectl_json(c, "create", "-f", "-", input=ns)["metadata"]["name"])


def delete_namespace(c: Cluster, namespace: str, timeout: float = 60.0) -> None:
    """The namespace and all in it, waited for: an Ingress left behind (a defaultBackend)
    would answer what the next feature expects to be a 404."""
    c.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")

    def gone() -> bool:
        res = c.kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name")
        return res.stdout.strip() == ""

    wait(f"namespace {namespace} deleted", timeout, gone)


def ingress_from(doc: str, namespace: str, ingress_class: str, name: str | None) -> dict:
    """IngressFromSpec (name given: `doc` is the spec) or IngressFromManifest."""
    if namespace in ("", "default"):
        raise StepFailed(
            f"ingress definitions in the default namespace are not allowed ({namespace})"
        )
    loaded = yaml.safe_load(doc)
    if not isinstance(loaded, dict):
        raise StepFailed(f"deserializing Ingress: not a mapping: {doc!r}")
    if name is not None:
        ing = {"metadata": {"name": name, "namespace": namespace}, "spec": loaded}
    else:
        ing = loaded
        ing.setdefault("metadata", {})["namespace"] = namespace
    ing["apiVersion"], ing["kind"] = "networking.k8s.io/v1", "Ingress"
    spec = ing.setdefault("spec", {})
    if spec.get("ingressClassName") is None:
        spec["ingressClassName"] = ingress_class
    return ing


def backends(ing: dict) -> list[tuple[str, str, int]]:
    """(service, port name, port number) of the defaultBackend, then of each path."""
    spec = ing.get("spec") or {}
    refs = []
    if spec.get("defaultBackend"):
        refs.append(spec["defaultBackend"]["service"])
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            refs.append(path["backend"]["service"])
    return [
        (r["name"], r.get("port", {}).get("name", ""), r.get("port", {}).get("number", 0))
        for r in refs
    ]


def echo_deployment(namespace: str, name: str, ingress: str, service: str, port_name: str) -> dict:
    """The suite's deployment template, as a manifest."""
    probe = {
        "httpGet": {"path": "/health", "port": 3000, "scheme": "HTTP"},
        "initialDelaySeconds": 1,
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 10,
    }
    port: dict[str, Any] = {"containerPort": 3000}
    if port_name:
        port["name"] = port_name
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "INGRESS_NAME", "value": ingress},
        {"name": "SERVICE_NAME", "value": service},
    ]
    container = {
        "name": "ingress-conformance-echo",
        "image": ECHO_IMAGE,
        "env": env,
        "ports": [port],
        "livenessProbe": probe,
        "readinessProbe": probe,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }


def echo_service(namespace: str, name: str, selector: str, port_name: str, port: int) -> dict:
    svc_port: dict[str, Any] = {"port": port or 8080, "targetPort": 3000}
    if port_name:
        svc_port["name"] = port_name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "NodePort", "selector": {"app": selector}, "ports": [svc_port]},
    }


def ready_endpoints(c: Cluster, namespace: str) -> dict[str, int]:
    """Ready addresses of each Endpoints object in the namespace (countReadyEndpoints)."""
    items = kubectl_json(c, "get", "endpoints", "-n", namespace)["items"]
    return {
        e["metadata"]["name"]: sum(len(s.get("addresses") or []) for s in e.get("subsets") or [])
        for e in items
    }


def deployments_from_ingress(c: Cluster, ing: dict) -> None:
    """DeploymentsFromIngress: an echoserver Deployment `<ingress>-<service>` and its
    NodePort Service for each backend (the first use of a Service decides its port), then
    one ready endpoint for each."""
    namespace, ingress = ing["metadata"]["namespace"], ing["metadata"]["name"]
    objects: dict[str, list[dict]] = {}
    for service, port_name, port in backends(ing):
        name = f"{ingress}-{service}"
        if name in objects:
            continue  # an existing deployment is assumed to be fine
        deployment = echo_deployment(namespace, name, ingress, service, port_name)
        objects[name] = [deployment, echo_service(namespace, service, name, port_name, port)]
    if not objects:
        return
    items = [o for pair in objects.values() for o in pair]
    c.kubectl(
        "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    services = {pair[1]["metadata"]["name"] for pair in objects.values()}

    def ready() -> bool:
        counts = ready_endpoints(c, namespace)
        return all(counts.get(s) == 1 for s in services)

    wait(f"endpoints of {sorted(services)}", READY_TIMEOUT, ready)


def ingress_address(c: Cluster, namespace: str, name: str) -> list[str]:
    ing = kubectl_json(c, "get", "ingress", "-n", namespace, name)
    out = []
    for a in ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        out += [v for v in (a.get("ip"), a.get("hostname")) if v]
    return out


def wait_for_address(c: Cluster, namespace: str, name: str, timeout: float) -> str:
    return str(wait(f"ingress {namespace}/{name} status", timeout,
                    lambda: (ingress_address(c, namespace, name) or [""])[0]))  # fmt: skip


def self_signed(hosts: list[str]) -> tuple[bytes, bytes]:
    """generateRSACert: (cert PEM, key PEM), RSA 2048, a year, CN default, O Acme Co."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
            x509.NameAttribute(NameOID.COMMON_NAME, "default"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big"))
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "RSA PRIVATE KEY", as the Go code
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def round_trip(
    suite: Suite, method: str, scheme: str, hostname: str, path: str, location: str
) -> tuple[client.CapturedRequest, client.CapturedResponse]:
    def go() -> tuple[client.CapturedRequest, client.CapturedResponse]:
        return client.capture_round_trip(method, scheme, hostname, path, location)

    try:
        return netns.call_in_netns(suite.netns, go) if suite.netns else go()
    except client.RoundTripError as exc:
        raise StepFailed(str(exc)) from None


def parse_url(raw: str) -> tuple[str, str, str]:
    """(scheme, host, path) of a step's URL, as Go's url.Parse."""
    u = urlsplit(raw)
    if not u.scheme:
        raise StepFailed(f"not a URL: {raw!r}")
    return u.scheme, u.netloc, u.path


# ---------------------------------------------------------------- the steps


@step(r"a new random namespace")
def a_new_random_namespace(suite: Suite, state: State) -> None:
    state.namespace = new_namespace(suite.cluster)


def _create_ingress(suite: Suite, state: State, ing: dict) -> None:
    c = suite.cluster
    deployments_from_ingress(c, ing)
    c.kubectl("create", "-f", "-", input=json.dumps(ing))
    state.ingress_name = ing["metadata"]["name"]


@step(r'an Ingress resource named "([^"]*)" with this spec:')
def an_ingress_resource_named_with_this_spec(
    suite: Suite, state: State, name: str, doc: str
) -> None:
    _create_ingress(suite, state, ingress_from(doc, state.namespace, suite.ingress_class, name))


@step(r"an Ingress resource")
def an_ingress_resource(suite: Suite, state: State, doc: str) -> None:
    _create_ingress(suite, state, ingress_from(doc, state.namespace, suite.ingress_class, None))


@step(r"an Ingress resource in a new random namespace")
def an_ingress_resource_in_a_new_random_namespace(suite: Suite, state: State, doc: str) -> None:
    state.namespace = new_namespace(suite.cluster)
    an_ingress_resource(suite, state, doc)


@step(r'a self-signed TLS secret named "([^"]*)" for the "([^"]*)" hostname')
def a_self_signed_tls_secret(suite: Suite, state: State, name: str, host: str) -> None:
    cert, key = self_signed([host])
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": state.namespace},
        "stringData": {"tls.crt": cert.decode(), "tls.key": key.decode()},
    }
    suite.cluster.kubectl("create", "-f", "-", input=json.dumps(secret))
    state.secret_name = name


@step(r"The Ingress status shows the IP address or FQDN where it is exposed")
def the_ingress_status_shows_the_address(suite: Suite, state: State) -> None:
    state.address = wait_for_address(
        suite.cluster, state.namespace, state.ingress_name, STATUS_TIMEOUT
    )


@step(r"The Ingress status should not contain the IP address or FQDN")
def the_ingress_status_should_not_contain_the_address(suite: Suite, state: State) -> None:
    try:
        wait_for_address(suite.cluster, state.namespace, state.ingress_name, ABSENT_WAIT)
    except StepFailed:
        return
    raise StepFailed("waiting for Ingress status should not return an IP address or FQDN")


@step(r'I send a "([^"]*)" request to http:\/\/"([^"]*)"\/"([^"]*)"')
def i_send_a_request_to_http(suite: Suite, state: State, method: str, host: str, path: str) -> None:
    state.request, state.response = round_trip(suite, method, "http", host, path, state.address)


@step(r'I send a "([^"]*)" request to "([^"]*)"')
def i_send_a_request_to(suite: Suite, state: State, method: str, url: str) -> None:
    scheme, host, path = parse_url(url)
    state.request, state.response = round_trip(suite, method, scheme, host, path, state.address)


@step(r'I send (\d+) requests to "([^"]*)"')
def i_send_requests_to(suite: Suite, state: State, total: str, url: str) -> None:
    scheme, host, path = parse_url(url)
    for _ in range(int(total)):
        req, resp = round_trip(suite, "GET", scheme, host, path, state.address)
        state.results.setdefault(resp.status_code, set()).add(req.pod)


def _response(state: State) -> client.CapturedResponse:
    if state.response is None:
        raise StepFailed("no request was sent")
    return state.response


def _request(state: State) -> client.CapturedRequest:
    if state.request is None:
        raise StepFailed("no request was sent")
    return state.request


@step(r"the response status-code must be (\d+)")
def the_response_status_code_must_be(suite: Suite, state: State, code: str) -> None:
    got = _response(state).status_code
    if got != int(code):
        raise StepFailed(f"expected status code {code} but {got} was returned")


@step(r'the response must be served by the "([^"]*)" service')
def the_response_must_be_served_by(suite: Suite, state: State, service: str) -> None:
    got = _request(state).service
    if got != service:
        raise StepFailed(
            f"expected the request to be served by {service} but it was served by {got}"
        )


@step(r'the response proto must be "([^"]*)"')
def the_response_proto_must_be(suite: Suite, state: State, proto: str) -> None:
    got = _response(state).proto
    if got != proto:
        raise StepFailed(f"expected the response protocol to be {proto} but it was {got}")


def _header_table(table: tuple[tuple[str, ...], ...], check: Callable[[str, str], None]) -> None:
    if len(table) < 1:
        raise StepFailed("expected a table with at least one row")
    for i, row in enumerate(table):
        if len(row) != 2:
            raise StepFailed(f"expected a table with 2 cells, it contained {len(row)}")
        key, value = row
        if i == 0:
            if key != "key" and value != "value":
                raise StepFailed(
                    "expected a table with a header row of 'key' and 'value' "
                    f"but got '{key}' and '{value}'"
                )
            continue
        check(key, value)


def _has_header(what: str, headers: dict[str, list[str]], key: str, value: str) -> None:
    values = headers.get(key)
    if values is None:
        raise StepFailed(
            f"expected {what} headers to contain {key} but it only contained {headers}"
        )
    if value != "*" and value not in values:
        raise StepFailed(
            f"expected {what} headers {key} to contain a {value} value but it contained {values}"
        )


@step(r"the response headers must contain <key> with matching <value>")
def the_response_headers_must_contain(suite: Suite, state: State, table: Any) -> None:
    headers = _response(state).headers
    _header_table(table, lambda k, v: _has_header("response", headers, k, v))


@step(r"the request headers must contain <key> with matching <value>")
def the_request_headers_must_contain(suite: Suite, state: State, table: Any) -> None:
    headers = _request(state).headers
    _header_table(table, lambda k, v: _has_header("request", headers, k, v))


@step(r'the request method must be "([^"]*)"')
def the_request_method_must_be(suite: Suite, state: State, method: str) -> None:
    got = _request(state).method
    if got != method:
        raise StepFailed(f"expected the request method to be {method} but it was {got}")


@step(r'the request path must be "([^"]*)"')
def the_request_path_must_be(suite: Suite, state: State, path: str) -> None:
    path = path if path.startswith("/") else f"/{path}"
    got = _request(state).path
    if got != path:
        raise StepFailed(f"expected the request path to be {path} but it was {got}")


@step(r'the request proto must be "([^"]*)"')
def the_request_proto_must_be(suite: Suite, state: State, proto: str) -> None:
    got = _request(state).proto
    if got != proto:
        raise StepFailed(f"expected the request protocol to be {proto} but it was {got}")


@step(r'the request host must be "([^"]*)"')
def the_request_host_must_be(suite: Suite, state: State, host: str) -> None:
    got = _request(state).host
    if got != host:
        raise StepFailed(f"expected the request host to be {host} but was {got}")


@step(r'the secure connection must verify the "([^"]*)" hostname')
def the_secure_connection_must_verify(suite: Suite, state: State, hostname: str) -> None:
    resp = _response(state)
    if resp.tls_hostname != hostname:
        raise StepFailed(
            f"expected the response TLS hostname to be {hostname} but was {resp.tls_hostname}"
        )
    if resp.certificate is None:
        raise StepFailed(
            "hostname verification requires executing a request and also target an HTTPS URL"
        )
    problem = client.verify_hostname(resp.certificate, hostname)
    if problem:
        raise StepFailed(problem)


@step(r'The backend deployment "([^"]*)" for the ingress resource is scaled to (\d+)')
def the_backend_deployment_is_scaled_to(
    suite: Suite, state: State, service: str, replicas: str
) -> None:
    c, n = suite.cluster, int(replicas)
    deployment = f"{state.ingress_name}-{service}"
    c.kubectl("scale", "deployment", deployment, "-n", state.namespace, f"--replicas={n}")
    if n == 0:
        return
    wait(f"{n} endpoints of {service}", READY_TIMEOUT,
         lambda: ready_endpoints(c, state.namespace).get(service) == n)  # fmt: skip
    time.sleep(SCALE_SETTLE)


@step(
    r"all the responses status-code must be (\d+) and the response body should contain "
    r"the IP address of (\d+) different Kubernetes pods"
)
def all_the_responses_must_be(suite: Suite, state: State, code: str, pods: str) -> None:
    results = state.results.get(int(code))
    if results is None:
        raise StepFailed(f"no reponses for status code {code} returned")
    if len(results) != int(pods):
        raise StepFailed(
            f"expected {pods} different POD IP addresses/FQDN for status code {code} "
            f"but {len(results)} was returned"
        )
