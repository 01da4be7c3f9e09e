"""JSON Web Tokens as upstream's service-account tokens are (JWS compact serialisation,
ES256 with the P-256 key kept in the cluster's pki dir), signed and verified.

Verification trusts nothing it is given: a token longer than MAX_TOKEN_BYTES is refused
before any decoding, the header must name ES256 (so `none`, HS256 signed with the public key
and other algorithms are refused whatever the token says), and the claims must be a JSON
object. Whether the claims are acceptable (issuer, audience, times) is the caller's to say:
kubesvc.auth.serviceaccount.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ALGORITHM = "ES256"
MAX_TOKEN_BYTES = 16 * 1024  # a pod's token is about 1 KiB
_COORDINATE = 32  # bytes of a P-256 coordinate, and of each half of an ES256 signature


class InvalidToken(Exception):
    """The token is not one this key signed (the reason is for logs, never for clients)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(part: str) -> bytes:
    if not part or len(part) % 4 == 1 or not all(c in _B64URL for c in part):
        raise InvalidToken("not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as e:
        raise InvalidToken("not base64url") from e


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The `kid` upstream gives a signing key: the SHA-256 of its PKIX form, base64url."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64url(hashlib.sha256(der).digest())


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def sign(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    header = {"alg": ALGORITHM, "kid": key_id(key.public_key())}
    signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}"
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_COORDINATE, "big") + s.to_bytes(_COORDINATE, "big")
    return f"{signing_input}.{b64url(raw)}"


def verify(token: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The claims of `token` if `key` signed it with ES256; InvalidToken otherwise."""
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken("too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a compact JWS")
    header = _object(_unb64url(parts[0]))
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("unexpected algorithm")
    if "crit" in header:
        raise InvalidToken("critical header parameters are not understood")
    kid = header.get("kid")
    if kid is not None and kid != key_id(key):
        raise InvalidToken("signed by another key")
    raw = _unb64url(parts[2])
    if len(raw) != 2 * _COORDINATE:
        raise InvalidToken("malformed signature")
    der = encode_dss_signature(
        int.from_bytes(raw[:_COORDINATE], "big"), int.from_bytes(raw[_COORDINATE:], "big")
    )
    try:
        key.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise InvalidToken("bad signature") from None
    return _object(_unb64url(parts[1]))


def _object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise InvalidToken("not JSON") from e
    if not isinstance(value, dict):
        raise InvalidToken("not a JSON object")
    return value


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The key as a JWK, as /openid/v1/jwks publishes it."""
    numbers = key.public_numbers()
    return {
        "use": "sig",
        "kty": "EC",
        "kid": key_id(key),
        "crv": "P-256",
        "alg": ALGORITHM,
        "x": b64url(numbers.x.to_bytes(_COORDINATE, "big")),
        "y": b64url(numbers.y.to_bytes(_COORDINATE, "big")),
    }
