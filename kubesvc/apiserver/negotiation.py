"""Content negotiation: what a request body is, and what form the client wants back."""

from __future__ import annotations

from dataclasses import dataclass

from kubesvc.api.errors import ApiError

TABLE = "Table"
PARTIAL = "PartialObjectMetadata"
DISCOVERY = "APIGroupDiscoveryList"

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply-cbor",
}


@dataclass(frozen=True)
class MediaType:
    type: str
    params: dict[str, str]


def parse_accept(header: str) -> list[MediaType]:
    out = []
    for part in header.split(","):
        part = part.strip()
        if not part:
            continue
        fields = [f.strip() for f in part.split(";")]
        params = {}
        for f in fields[1:]:
            if "=" in f:
                k, v = f.split("=", 1)
                params[k.strip()] = v.strip()
        out.append(MediaType(fields[0].lower(), params))
    return out


def wanted_form(accept: str) -> tuple[str, str]:
    """('', '') for plain JSON, (TABLE|PARTIAL|DISCOVERY, version) for `as=` forms."""
    for mt in parse_accept(accept):
        if mt.type not in ("application/json", "*/*", "application/*"):
            continue
        as_ = mt.params.get("as", "")
        if not as_:
            return "", ""
        g, v = mt.params.get("g", ""), mt.params.get("v", "")
        if as_ == TABLE and g == "meta.k8s.io" and v in ("v1", "v1beta1"):
            return TABLE, v
        if as_ in (PARTIAL, PARTIAL + "List") and g == "meta.k8s.io":
            return PARTIAL, v
        if as_ == DISCOVERY and g == "apidiscovery.k8s.io" and v in ("v2", "v2beta1"):
            return DISCOVERY, v
    return "", ""


def content_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def unsupported_media(ctype: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}",  # noqa: E501 (upstream wording)
    )
