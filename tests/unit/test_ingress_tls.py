"""TLS for the ingress controller: a Secret's certificate and key checked as HAProxy would
load them (weak keys, SHA-1 signatures, keys of another certificate, garbage and oversized
data refused), hosts chosen per Secret (oldest Ingress wins, wildcards), Events for missing
and invalid Secrets, the 308 redirect's rules and annotations, the crt-list and redirect map,
the https frontend sharing the http frontend's routing, the runtime steps between two sets
of certificates, and hostile Ingresses and Secrets that never raise."""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.ingress import tls
from kubesvc.ingress.certs import BadCertificate, default_certificate, pair_pem, secret_pem
from kubesvc.ingress.haproxy import Layout, Paths, Ports, plan_layout, render
from kubesvc.ingress.model import routing_table
from tests.unit.test_ingress_model import OURS, ingress, rule, service
from tests.unit.test_poison_properties import PROPERTY, json_values, mutated

PATHS = Paths("/run/ingress")


# -- certificates for tests ---------------------------------------------------------------------
@functools.cache
def _rsa(bits: int, n: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_cert(
    *hosts: str,
    key: Any = None,
    issuer: tuple[x509.Certificate, Any] | None = None,
    algo: Any = None,
    serial: int | None = None,
    ca: bool = False,
) -> tuple[bytes, bytes, x509.Certificate]:
    """(certificate PEM, key PEM, certificate) for `hosts`; self-signed unless `issuer`
    (its certificate and key) signs it."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "ca")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False
        )
    signer = issuer[1] if issuer else key
    if isinstance(signer, ed25519.Ed25519PrivateKey):
        algo = None
    else:
        algo = algo or hashes.SHA256()
    cert = builder.sign(signer, algo)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL
        if not isinstance(key, ed25519.Ed25519PrivateKey)
        else serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, cert


def tls_secret(
    name: str, crt: bytes, key: bytes, ns: str = "default", kind: str = "kubernetes.io/tls"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "type": kind,
        "data": {
            "tls.crt": base64.b64encode(crt).decode(),
            "tls.key": base64.b64encode(key).decode(),
        },
    }


def with_tls(ing: dict[str, Any], *entries: tuple[list[str], str | None], **notes: str) -> Any:
    ing["spec"]["tls"] = [
        {"hosts": hosts, **({"secretName": s} if s else {})} for hosts, s in entries
    ]
    if notes:
        ing["metadata"]["annotations"] = notes
    return ing


# -- certs.py -----------------------------------------------------------------------------------
def test_a_valid_pair_is_rewritten_from_the_parsed_objects() -> None:
    crt, key, cert = make_cert("a.test")
    pem = secret_pem(tls_secret("a", b"junk before\n" + crt, key))
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")
    assert "junk" not in pem and "BEGIN PRIVATE KEY" in pem  # PKCS#8, not the Secret's text
    assert x509.load_pem_x509_certificate(pem.encode()).serial_number == cert.serial_number
    rsa_crt, rsa_key, _ = make_cert("b.test", key=_rsa(2048))
    assert "BEGIN PRIVATE KEY" in secret_pem(tls_secret("b", rsa_crt, rsa_key))
    ed_crt, ed_key, _ = make_cert("c.test", key=ed25519.Ed25519PrivateKey.generate())
    assert secret_pem(tls_secret("c", ed_crt, ed_key))


def test_a_chain_keeps_its_order() -> None:
    ca_crt, ca_key_pem, ca = make_cert(ca=True)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    leaf_crt, leaf_key, leaf = make_cert("a.test", issuer=(ca, ca_key))
    pem = secret_pem(tls_secret("a", leaf_crt + ca_crt, leaf_key))
    chain = x509.load_pem_x509_certificates(pem.encode())
    assert [c.serial_number for c in chain] == [leaf.serial_number, ca.serial_number]


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda s: s.update(type="Opaque"), "type is 'Opaque'"),
        (lambda s: s["data"].pop("tls.key"), "no tls.key"),
        (lambda s: s.pop("data"), "no tls.crt"),
        (lambda s: s["data"].update({"tls.crt": "%%%"}), "not base64"),
        (lambda s: s["data"].update({"tls.crt": "aGVsbG8="}), "no PEM certificate"),
        (lambda s: s["data"].update({"tls.key": "aGVsbG8="}), "no PEM private key"),
        (lambda s: s["data"].update({"tls.crt": "QUFB" * 30000}), "larger than 64 KiB"),
        (lambda s: s["data"].update({"tls.key": 7}), "no tls.key"),
    ],
)
def test_unusable_secrets(mangle: Any, why: str) -> None:
    crt, key, _ = make_cert("a.test")
    s = tls_secret("a", crt, key)
    mangle(s)
    with pytest.raises(BadCertificate, match=why):
        secret_pem(s)


def test_keys_and_signatures_haproxy_refuses(tmp_path: Path) -> None:
    crt, _, _ = make_cert("a.test")
    _, other_key, _ = make_cert("a.test")
    with pytest.raises(BadCertificate, match="does not match"):
        pair_pem(crt, other_key)
    weak_crt, weak_key, _ = make_cert("a.test", key=_rsa(1024))
    with pytest.raises(BadCertificate, match="RSA key of 1024 bits"):
        pair_pem(weak_crt, weak_key)
    # cryptography no longer signs with SHA-1; openssl still does
    subprocess.run(
        ["openssl", "req", "-x509", "-sha1", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=a.test", "-days", "1",
         "-keyout", tmp_path / "k", "-out", tmp_path / "c"],
        check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(BadCertificate, match="signed with SHA1"):
        pair_pem((tmp_path / "c").read_bytes(), (tmp_path / "k").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    ec_crt, _, _ = make_cert("a.test", key=key)
    with pytest.raises(BadCertificate, match="encrypted"):
        pair_pem(ec_crt, encrypted)
    with pytest.raises(BadCertificate, match="more than 10"):
        pair_pem(crt * 11, encrypted)


def test_the_default_certificate_is_ingress_nginx_like() -> None:
    pem = default_certificate()
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.subject.rfc4514_string() == (
        "CN=Kubernetes Ingress Controller Fake Certificate,O=kubesvc"
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["ingress.local"]
    assert "BEGIN PRIVATE KEY" in pem
    assert default_certificate() != pem  # a new one each time


# -- tls.py: hosts, Secrets, Events ------------------------------------------------------------
A = make_cert("a.test")
B = make_cert("b.test", "*.b.test")


def test_hosts_get_their_secret_and_bad_ones_the_default_with_an_event() -> None:
    secrets = {
        "default/a": tls_secret("a", A[0], A[1]),
        "default/b": tls_secret("b", B[0], B[1]),
        "default/bad": tls_secret("bad", A[0], B[1]),
        "other/a": tls_secret("a", B[0], B[1], ns="other"),
    }
    ings = [
        with_tls(ingress("one", rule("a.test")), (["a.test"], "a"), (["*.b.test"], "b")),
        with_tls(ingress("two", rule("c.test")), (["c.test"], "bad"), (["d.test"], "gone")),
        with_tls(ingress("three", rule("e.test")), (["e.test"], None)),
        # newer: a.test stays on default/a; Secrets are looked up in the Ingress's namespace
        with_tls(ingress("four", ns="other"), (["a.test", "f.test"], "a")),
    ]
    t = tls.tls_table(ings, secrets.get)
    assert sorted(t.certs) == ["*.b.test", "a.test", "f.test"]
    assert t.certs["a.test"] == secret_pem(secrets["default/a"])
    assert t.certs["f.test"] == secret_pem(secrets["other/a"])
    assert t.secrets == {"default/a", "default/b", "default/bad", "default/gone", "other/a"}
    assert t.problems == (
        (
            "default/two",
            "TLSSecretInvalid",
            "Secret default/bad is not a usable TLS Secret (tls.key does not match the "
            "certificate in tls.crt): c.test use the default certificate",
        ),
        (
            "default/two",
            "SecretNotFound",
            "Secret default/gone not found: d.test use the default certificate",
        ),
    )
    assert tls.crt_list(tls.cert_files(t, "/c")) == (
        "/c/_.b.test.pem *.b.test\n/c/a.test.pem a.test\n/c/f.test.pem f.test\n"
    )


def test_redirects() -> None:
    ings = [
        with_tls(ingress("one", rule("a.test"), rule("x.w.test")), (["a.test", "*.w.test"], "s")),
        with_tls(
            ingress("off", rule("b.test")),
            (["b.test"], "s"),
            **{"nginx.ingress.kubernetes.io/ssl-redirect": "false"},
        ),
        with_tls(ingress("off2"), (["c.test"], "s"), **{"kubesvc.io/ssl-redirect": "False"}),
        with_tls(
            ingress("force", rule("plain.test"), rule(None)),
            **{"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"},
        ),
        ingress("plain", rule("d.test")),
        with_tls(ingress("junk", rule("e.test")), (["e.test"], "s"), **{"kubesvc.io/x": "1"}),
    ]
    t = tls.tls_table(ings, lambda _ref: None)
    assert t.redirect == {
        "a.test": True,
        "*.w.test": True,
        "x.w.test": False,  # a host of its own, without TLS: not the wildcard's
        "b.test": False,
        "c.test": False,
        "plain.test": True,
        "d.test": False,
        "e.test": True,
    }
    # `*` first: some wildcard host is in the map, so requests look their wildcard up
    assert tls.redirect_map(t).splitlines()[:3] == ["* 1", "*.w.test 1", "a.test 1"]
    plain = {h: on for h, on in t.redirect.items() if not h.startswith("*.")}
    assert "* 1" not in tls.redirect_map(replace(t, redirect=plain)).splitlines()


def test_cert_steps() -> None:
    old = {"/c/a.test.pem": "A", "/c/gone.test.pem": "G", "/c/same.test.pem": "S"}
    new = {"/c/a.test.pem": "A2", "/c/_.new.test.pem": "N", "/c/same.test.pem": "S"}
    steps = tls.cert_steps(old, new, "/l")
    assert [(s.command, s.payload) for s in steps] == [
        ("set ssl cert /c/a.test.pem", "A2"),
        ("commit ssl cert /c/a.test.pem", ""),
        ("new ssl cert /c/_.new.test.pem", ""),
        ("set ssl cert /c/_.new.test.pem", "N"),
        ("commit ssl cert /c/_.new.test.pem", ""),
        ("add ssl crt-list /l", "/c/_.new.test.pem *.new.test\n"),
        ("del ssl crt-list /l /c/gone.test.pem", ""),
        ("del ssl cert /c/gone.test.pem", ""),
    ]
    assert tls.cert_steps(old, old, "/l") == []


# -- the https frontend ---------------------------------------------------------------------------
def test_https_frontend_shares_the_routing_and_http_redirects() -> None:
    ing = with_tls(ingress("a", rule("a.test", ("/", "Prefix", "web"))), (["a.test"], "a"))
    table = routing_table([ing], [service("web", ("", 80))], [], [OURS])
    t = tls.tls_table([ing], {"default/a": tls_secret("a", A[0], A[1])}.get)
    layout = plan_layout(Layout(), table)
    r = render(table, layout, PATHS, Ports(https=8443), t)
    http, https = r.config.split("\nfrontend http\n")[1].split("\nfrontend https\n")
    https = https.split("\nbackend ")[0]
    assert https.startswith(
        "    bind :8443 ssl crt /run/ingress/default.pem crt-list /run/ingress/crt-list"
        " alpn h2,http/1.1\n"
    )
    assert "X-Forwarded-Proto https" in https and "X-Forwarded-Proto http\n" in http
    routing = http[http.index("    acl routed var(txn.be)") :]
    assert https.endswith(routing) and "use_backend" in routing
    assert (
        "http-request redirect location https://%[var(txn.host)]:8443%[pathq] code 308"
        " if { var(txn.redir) -m str 1 }" in http
    )
    assert "redirect" not in https
    assert r.maps["/run/ingress/redirect.map"] == "a.test 1\n"
    assert list(r.certs) == ["/run/ingress/certs/a.test.pem"]
    # certificates and redirects are not in the skeleton: they change without a reload
    assert render(table, layout, PATHS, Ports(https=8443)).skeleton == r.skeleton
    assert ":443" not in render(table, layout, PATHS).config.split("redirect location")[1][:40]


# -- hostile objects ----------------------------------------------------------------------------
GOOD = with_tls(ingress("zz-good", rule("good.test")), (["good.test"], "good"))
SECRET = tls_secret("good", A[0], A[1])
HOSTILE_ING = with_tls(
    ingress("h", rule("h.test")),
    (["h.test", "*.w.test"], "good"),
    **{"nginx.ingress.kubernetes.io/ssl-redirect": "false"},
)


@PROPERTY
@given(st.lists(mutated(HOSTILE_ING), max_size=3), mutated(SECRET), json_values)
def test_hostile_ingresses_and_secrets_never_raise_nor_hide_good_ones(
    ings: list[Any], secret: Any, other: Any
) -> None:
    secrets = {"default/good": SECRET, "default/bad": secret, "default/x": other}
    t = tls.tls_table([*ings, GOOD], secrets.get)
    assert "good.test" in t.certs
    for host in [*t.certs, *t.redirect]:
        assert tls._HOST.match(host) and host == host.strip()
    for ing, reason, message in t.problems:
        assert isinstance(ing, str) and reason and isinstance(message, str)
    bad = tls.tls_table([with_tls(ingress("b", rule("b.test")), (["b.test"], "bad"))], secrets.get)
    assert set(bad.certs) <= {"b.test"}
    for obj in (secret, other):
        with contextlib.suppress(BadCertificate):
            secret_pem(obj)


@PROPERTY
@given(mutated({"type": "Opaque", "metadata": {"name": "x"}, "data": {"password": "cw=="}}))
def test_the_controller_caches_no_data_of_other_secrets(secret: Any) -> None:
    from kubesvc.ingress.controller import tls_secrets_only

    kept = tls_secrets_only(secret)
    if isinstance(secret, dict) and secret.get("type") != "kubernetes.io/tls":
        assert "data" not in kept and "stringData" not in kept
        assert kept.get("metadata") is secret.get("metadata")  # the same object: NaN too
    assert tls_secrets_only(SECRET) is SECRET
