"""The JWT signer and verifier: what it signs verifies, and nothing else does (garbage, huge
tokens, other algorithms including `none`, another key, a changed header or payload)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.auth import jwt
from kubesvc.auth.jwt import InvalidToken

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
CLAIMS = {"iss": "https://kubernetes.default.svc.cluster.local", "sub": "x", "exp": 1}


def b64(obj: object) -> str:
    return jwt.b64url(json.dumps(obj).encode())


def test_signed_claims_verify_and_the_header_is_upstreams() -> None:
    token = jwt.sign(CLAIMS, KEY)
    assert jwt.verify(token, KEY.public_key()) == CLAIMS
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    der = KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert header == {"alg": "ES256", "kid": kid}
    assert "=" not in token


def test_another_keys_signature_is_refused() -> None:
    with pytest.raises(InvalidToken):
        jwt.verify(jwt.sign(CLAIMS, OTHER), KEY.public_key())
    # even when it claims our key id
    payload = jwt.sign(CLAIMS, OTHER).split(".")[1]
    forged_head = b64({"alg": "ES256", "kid": jwt.key_id(KEY.public_key())})
    other_sig = jwt.sign(CLAIMS, OTHER).split(".")[2]
    with pytest.raises(InvalidToken):
        jwt.verify(f"{forged_head}.{payload}.{other_sig}", KEY.public_key())


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "RS256", "ES384", "", None, 1])
def test_other_algorithms_are_refused(alg: object) -> None:
    head = b64({"alg": alg})
    payload = b64(CLAIMS)
    # HS256 "signed" with the public key's bytes: the classic confusion attack
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mac = jwt.b64url(hmac.new(pem, f"{head}.{payload}".encode(), "sha256").digest())
    for sig in ("", mac, jwt.sign(CLAIMS, KEY).split(".")[2]):
        with pytest.raises(InvalidToken):
            jwt.verify(f"{head}.{payload}.{sig}", KEY.public_key())


def test_a_changed_payload_or_header_is_refused() -> None:
    head, payload, sig = jwt.sign(CLAIMS, KEY).split(".")
    tampered = b64({**CLAIMS, "sub": "system:serviceaccount:kube-system:admin"})
    with pytest.raises(InvalidToken):
        jwt.verify(f"{head}.{tampered}.{sig}", KEY.public_key())
    with pytest.raises(InvalidToken):
        jwt.verify(f"{b64({'alg': 'ES256'})}.{payload}.{sig}", KEY.public_key())
    with pytest.raises(InvalidToken):
        jwt.verify(f"{head}.{payload}.{sig}=", KEY.public_key())


def test_a_huge_token_is_refused_before_decoding() -> None:
    with pytest.raises(InvalidToken, match="too long"):
        jwt.verify("a" * (jwt.MAX_TOKEN_BYTES + 1), KEY.public_key())


def test_deeply_nested_claims_are_refused_not_crashed() -> None:
    head = b64({"alg": "ES256"})
    payload = jwt.b64url(b"[" * 5000 + b"]" * 5000)
    with pytest.raises(InvalidToken):
        jwt.verify(f"{head}.{payload}.{'A' * 86}", KEY.public_key())


def test_signed_non_object_claims_are_refused() -> None:
    head = b64({"alg": "ES256"})
    payload = jwt.b64url(b"[1, 2]")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(KEY.sign(f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
    sig = jwt.b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    with pytest.raises(InvalidToken, match="object"):
        jwt.verify(f"{head}.{payload}.{sig}", KEY.public_key())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        jwt.verify(token, KEY.public_key())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.", max_size=120
        ),
        min_size=3,
        max_size=3,
    )
)
def test_three_part_garbage_is_refused(parts: list[str]) -> None:
    with pytest.raises(InvalidToken):
        jwt.verify(".".join(parts), KEY.public_key())


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_any_flipped_byte_is_refused(position: int, value: int) -> None:
    token = jwt.sign(CLAIMS, KEY)
    i = position % len(token)
    if token[i] == ".":
        return
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = alphabet[value % len(alphabet)]
    changed = token[:i] + replacement + token[i + 1 :]
    if changed == token:
        return
    try:
        claims = jwt.verify(changed, KEY.public_key())
    except InvalidToken:
        return
    # a change in base64's unused low bits decodes to the same bytes: same claims, same signature
    assert claims == CLAIMS


def test_jwk_publishes_the_public_key() -> None:
    jwk = jwt.public_jwk(KEY.public_key())
    numbers = KEY.public_key().public_numbers()
    x = int.from_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="), "big")
    assert (jwk["kty"], jwk["crv"], jwk["alg"], x) == ("EC", "P-256", "ES256", numbers.x)
    assert jwk["kid"] == jwt.key_id(KEY.public_key())
