"""The API server's identity endpoints: the TokenRequest API (`serviceaccounts/NAME/token`,
upstream's pkg/registry/core/serviceaccount/storage/token.go), SelfSubjectReview (who am I,
`kubectl auth whoami`) and the service-account issuer's discovery documents
(`/.well-known/openid-configuration`, `/openid/v1/jwks`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from kubesvc.api import errors
from kubesvc.api.kinds import BY_KIND
from kubesvc.api.validation.meta import go_quote
from kubesvc.apiserver import offload
from kubesvc.apiserver.authz import USER
from kubesvc.apiserver.decoding import decode_as, decode_body, field_validation, read_body
from kubesvc.apiserver.http import json_response
from kubesvc.auth import jwt, noderestriction, serviceaccount
from kubesvc.auth.forbidden import admission_forbidden
from kubesvc.auth.user import UserInfo, node_name

GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"
DEFAULT_EXPIRATION = 3600  # seconds, TokenRequestSpec's default
MIN_EXPIRATION = 600  # 10 minutes
MAX_EXPIRATION = 1 << 32
MAX_AUDIENCES = 100  # bounds what one request can put in a token (upstream has no limit)


def validate_spec(spec: dict[str, Any]) -> list[errors.FieldError]:
    """Upstream's ValidateTokenRequest (spec.expirationSeconds), with kubesvc's bound on
    audiences."""
    errs = []
    seconds = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
    if seconds < MIN_EXPIRATION:
        errs.append(
            errors.invalid(
                "spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes"
            )
        )
    if seconds > MAX_EXPIRATION:
        errs.append(
            errors.invalid(
                "spec.expirationSeconds",
                seconds,
                "may not specify a duration larger than 2^32 seconds",
            )
        )
    audiences = spec.get("audiences") or []
    if len(audiences) > MAX_AUDIENCES:
        errs.append(errors.too_many("spec.audiences", len(audiences), MAX_AUDIENCES))
    return errs


async def _body(request: web.Request) -> Any:
    raw = await read_body(request)
    ctype = request.headers.get("Content-Type", "application/json")
    return await offload.run(len(raw) > offload.HEAVY_BYTES, decode_body, raw, ctype)


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gvk_string(api_version: str, kind: str) -> str:
    """Go's schema.GroupVersionKind.String(): `group/version, Kind=kind`."""
    group, _, version = api_version.rpartition("/")
    if "/" not in api_version:
        group, version = "", api_version
    return f"{group}/{version}, Kind={kind}"


class TokenIssuer:
    def __init__(self, registry: Any, key: ec.EllipticCurvePrivateKey) -> None:
        self.registry = registry
        self.key = key

    async def token_request(self, request: web.Request, namespace: str, name: str) -> web.Response:
        parsed = await _body(request)
        tr = decode_as(API_VERSION, "TokenRequest", parsed, field_validation(request)).obj
        spec = tr.get("spec") or {}
        spec.setdefault("expirationSeconds", DEFAULT_EXPIRATION)
        if spec.get("audiences") is None:
            spec["audiences"] = []
        errs = validate_spec(spec)
        if errs:
            raise errors.invalid_error("TokenRequest", GROUP, "", errs)
        await self._node_restriction(request, namespace, name, tr)
        account = await self.registry.try_get(BY_KIND["ServiceAccount"], namespace, name)
        if account is None:
            raise errors.not_found_error("serviceaccounts", "", name)
        pod = secret = node = None
        ref = spec.get("boundObjectRef")
        if ref is not None:
            ref_api, ref_kind, ref_name = (
                ref.get("apiVersion", ""),
                ref.get("kind", ""),
                ref.get("name", ""),
            )
            group = ref_api.rpartition("/")[0] if "/" in ref_api else ""
            if group == "" and ref_kind == "Pod":
                pod = await self._get("Pod", "pods", namespace, ref_name)
                if (pod.get("spec") or {}).get("serviceAccountName") != name:
                    raise errors.bad_request(
                        f'cannot bind token for serviceaccount "{name}" to pod running with '
                        "different serviceaccount name."
                    )
                bound = pod
                bound_node = (pod.get("spec") or {}).get("nodeName")
                if bound_node:
                    node = await self.registry.try_get(BY_KIND["Node"], None, bound_node)
            elif group == "" and ref_kind == "Secret":
                secret = bound = await self._get("Secret", "secrets", namespace, ref_name)
            else:
                raise errors.bad_request(
                    f"cannot bind token to object of type {_gvk_string(ref_api, ref_kind)}"
                )
            uid = (bound.get("metadata") or {}).get("uid")
            if ref.get("uid") and ref["uid"] != uid:
                raise errors.conflict(
                    ref_kind,
                    group,
                    ref_name,
                    f"the UID in the bound object reference ({ref['uid']}) does not match the "
                    "UID in record. The object might have been deleted and then recreated",
                )
        if not spec["audiences"]:
            spec["audiences"] = list(serviceaccount.API_AUDIENCES)
        now = int(time.time())
        requested = int(spec["expirationSeconds"])
        lifetime, warn_after = requested, None
        if (
            pod is not None
            and requested == serviceaccount.EXTENDED_REQUEST_SECONDS
            and all(a in serviceaccount.API_AUDIENCES for a in spec["audiences"])
        ):
            lifetime, warn_after = serviceaccount.EXTENSION_SECONDS, now + requested
        claims = serviceaccount.claims(
            account,
            now=now,
            expiration_seconds=lifetime,
            audiences=spec["audiences"],
            pod=pod,
            secret=secret,
            node=node,
            warn_after=warn_after,
        )
        token = jwt.sign(claims, self.key)
        meta = dict(tr.get("metadata") or {})
        meta.update(name=name, namespace=namespace, creationTimestamp=_rfc3339(now))
        body = {
            "kind": "TokenRequest",
            "apiVersion": API_VERSION,
            "metadata": meta,
            "spec": spec,
            # the lifetime asked for, also when the token's own is extended (the node
            # renews it by this)
            "status": {"token": token, "expirationTimestamp": _rfc3339(now + requested)},
        }
        return json_response(body, 201)

    async def _node_restriction(
        self, request: web.Request, namespace: str, name: str, tr: dict[str, Any]
    ) -> None:
        """A node may only have tokens bound to a pod of its own (NodeRestriction)."""
        user = request.get(USER)
        node = node_name(user) if user is not None else None
        if node is None:
            return
        ref = (tr.get("spec") or {}).get("boundObjectRef") or {}
        pod = None
        pod_ref = ref.get("apiVersion") == "v1" and ref.get("kind") == "Pod"
        if pod_ref and ref.get("name") and ref.get("uid"):
            pod = await self._get("Pod", "pods", namespace, ref["name"])
        if not node:
            reason: str | None = f"could not determine node from user {go_quote(user.name)}"
        else:
            resource = ("", "serviceaccounts")
            reason = noderestriction.admit(
                node, noderestriction.CREATE, resource, "token", namespace, name, tr, pod
            )
        if reason is not None:
            raise admission_forbidden("", "serviceaccounts", name, reason)

    async def _get(self, kind: str, resource: str, namespace: str, name: str) -> dict[str, Any]:
        obj = await self.registry.try_get(BY_KIND[kind], namespace, name)
        if obj is None:
            raise errors.not_found_error(resource, "", name)
        return obj  # type: ignore[no-any-return]

    async def self_subject_review(self, request: web.Request, user: UserInfo) -> web.Response:
        parsed = await _body(request)
        decode_as(API_VERSION, "SelfSubjectReview", parsed, field_validation(request))
        info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
        if user.uid:
            info["uid"] = user.uid
        if user.extra:
            info["extra"] = {k: list(v) for k, v in user.extra.items()}
        body = {
            "kind": "SelfSubjectReview",
            "apiVersion": API_VERSION,
            "metadata": {"creationTimestamp": _rfc3339(int(time.time()))},
            "status": {"userInfo": info},
        }
        return json_response(body, 201)

    def openid_configuration(self, server: str) -> dict[str, Any]:
        return {
            "issuer": serviceaccount.ISSUER,
            "jwks_uri": f"{server}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [jwt.ALGORITHM],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [jwt.public_jwk(self.key.public_key())]}
