"""Certificates for the ingress controller: a `kubernetes.io/tls` Secret's `tls.crt` and
`tls.key` checked and rewritten as one PEM file HAProxy loads, and the generated default
certificate.

HAProxy (OpenSSL 3 at security level 2) refuses a whole configuration when one certificate
file does not load, so only what it is known to load gets through: PEM certificates (leaf
first, then its chain) signed with SHA-2 or EdDSA, RSA keys of 2048-8192 bits, EC keys of
224 bits or more, Ed25519/Ed448; the key must be the leaf's (proved by signing with it and
checking with the certificate). The file HAProxy gets is written from the parsed objects,
never the Secret's own text. What a Secret can make this spend is bounded: sizes and the
number of certificates are capped before parsing, and RSA's slow full key check (seconds
for a large key) is replaced by the signature.
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from kubesvc import pki

SECRET_TYPE = "kubernetes.io/tls"
MAX_CERT_PEM = 64 * 1024  # tls.crt: a leaf and its chain
MAX_KEY_PEM = 16 * 1024  # tls.key: an 8192-bit RSA key is about 6.4 KiB
MAX_CHAIN = 10
MIN_RSA_BITS, MAX_RSA_BITS = 2048, 8192
MIN_EC_BITS = 224
WEAK_HASHES = ("md5", "sha1")
DEFAULT_HOST = "ingress.local"
DEFAULT_CN = "Kubernetes Ingress Controller Fake Certificate"  # ingress-nginx's

_PROOF = b"kubesvc ingress: the key belongs to the certificate"


class BadCertificate(ValueError):
    """Why a Secret's certificate and key cannot be served (said in an Event)."""


def _decoded(data: object, name: str, limit: int) -> bytes:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise BadCertificate(f"no {name}")
    if len(value) > limit * 4 // 3 + 4:
        raise BadCertificate(f"{name} is larger than {limit // 1024} KiB")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadCertificate(f"{name} is not base64") from None


def secret_pem(secret: object) -> str:
    """The PEM file (certificate chain, then key) for a `kubernetes.io/tls` Secret object;
    raises BadCertificate."""
    if not isinstance(secret, dict):
        raise BadCertificate("not an object")
    if secret.get("type") != SECRET_TYPE:
        kind = secret.get("type")
        raise BadCertificate(f"type is {kind!r:.60}, not {SECRET_TYPE!r}")
    data = secret.get("data")
    crt = _decoded(data, "tls.crt", MAX_CERT_PEM)
    key = _decoded(data, "tls.key", MAX_KEY_PEM)
    return pair_pem(crt, key)


@functools.lru_cache(maxsize=256)
def pair_pem(crt: bytes, key: bytes) -> str:
    """The checked PEM file for a certificate chain and its key (memoised: a Secret that did
    not change costs nothing on the next sync); raises BadCertificate."""
    if len(crt) > MAX_CERT_PEM or len(key) > MAX_KEY_PEM:
        raise BadCertificate("too large")
    if crt.count(b"-----BEGIN") > MAX_CHAIN:
        raise BadCertificate(f"more than {MAX_CHAIN} certificates in tls.crt")
    try:
        chain = x509.load_pem_x509_certificates(crt)
    except ValueError:
        raise BadCertificate("tls.crt holds no PEM certificate that parses") from None
    try:
        private = serialization.load_pem_private_key(
            key, password=None, unsafe_skip_rsa_key_validation=True
        )
    except TypeError:
        raise BadCertificate("tls.key is encrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise BadCertificate("tls.key holds no PEM private key that parses") from None
    _check_key(private, "tls.key")
    for i, cert in enumerate(chain):
        what = "the certificate" if i == 0 else f"certificate {i + 1} of tls.crt"
        try:
            _check_key(cert.public_key(), what)
            algo = cert.signature_hash_algorithm
        except (ValueError, UnsupportedAlgorithm):
            raise BadCertificate(f"{what} has an unsupported key or signature") from None
        if algo is not None and algo.name in WEAK_HASHES:
            raise BadCertificate(f"{what} is signed with {algo.name.upper()}")
    if not _belongs(private, chain[0]):
        raise BadCertificate("tls.key does not match the certificate in tls.crt")
    text = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    text += private.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return text.decode()


def _check_key(key: object, what: str) -> None:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise BadCertificate(
                f"{what}: an RSA key of {key.key_size} bits"
                f" (from {MIN_RSA_BITS} to {MAX_RSA_BITS} are served)"
            )
    elif isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.key_size < MIN_EC_BITS:
            raise BadCertificate(f"{what}: an EC key of {key.curve.key_size} bits")
    elif not isinstance(
        key,
        ed25519.Ed25519PrivateKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PrivateKey
        | ed448.Ed448PublicKey,
    ):
        raise BadCertificate(f"{what}: unsupported key type")


def _belongs(private: object, cert: x509.Certificate) -> bool:
    """Whether `private` signs what the certificate's public key verifies."""
    public = cert.public_key()
    try:
        if isinstance(private, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey):
            sig = private.sign(_PROOF, padding.PKCS1v15(), hashes.SHA256())
            public.verify(sig, _PROOF, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(
            public, ec.EllipticCurvePublicKey
        ):
            sig = private.sign(_PROOF, ec.ECDSA(hashes.SHA256()))
            public.verify(sig, _PROOF, ec.ECDSA(hashes.SHA256()))
        elif (
            isinstance(private, ed25519.Ed25519PrivateKey)
            and isinstance(public, ed25519.Ed25519PublicKey)
        ) or (
            isinstance(private, ed448.Ed448PrivateKey) and isinstance(public, ed448.Ed448PublicKey)
        ):
            public.verify(private.sign(_PROOF), _PROOF)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def default_certificate(days: int = 3650) -> str:
    """A new self-signed certificate and key for unknown hosts (as ingress-nginx's "Fake
    Certificate": CN as theirs, SAN ingress.local), as one PEM file."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kubesvc"),
            x509.NameAttribute(NameOID.COMMON_NAME, DEFAULT_CN),
        ]
    )
    cert, key = pki.self_signed(name, [x509.DNSName(DEFAULT_HOST)], days, leaf=True)
    return (pki.cert_pem(cert) + pki.key_pem(key)).decode()
