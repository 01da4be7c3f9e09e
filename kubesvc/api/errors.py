"""Field errors and API errors, worded exactly as upstream apimachinery words them.

`FieldError` mirrors k8s.io/apimachinery/pkg/util/validation/field.Error; `ApiError` carries a
metav1.Status body and its HTTP code. Message formats follow apimachinery/pkg/api/errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# field.ErrorType -> (cause reason, human text)
_TYPES: dict[str, tuple[str, str]] = {
    "Required": ("FieldValueRequired", "Required value"),
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "NotFound": ("FieldValueNotFound", "Not found"),
    "TooLong": ("FieldValueTooLong", "Too long"),
    "TooMany": ("FieldValueTooMany", "Too many"),
    "Internal": ("InternalError", "Internal error"),
    "TypeInvalid": ("FieldValueTypeInvalid", "Invalid value"),
}
_NO_VALUE = {"Required", "Forbidden", "TooLong", "Internal"}
_OMIT = object()


class GoLiteral(str):
    """A bad value already rendered as Go prints it, e.g. `[]string{"10.96.0.5"}`."""


def go_strings(values: list[str]) -> GoLiteral:
    return GoLiteral("[]string{" + ", ".join(json.dumps(v) for v in values) + "}")


def _go_value(value: Any) -> str:
    """Render a bad value the way Go's fmt does in field.Error.ErrorBody."""
    if isinstance(value, GoLiteral):
        return str(value)
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class FieldError:
    type: str  # a key of _TYPES
    field: str  # "spec.ports[0].port"
    detail: str = ""
    value: Any = _OMIT

    @property
    def reason(self) -> str:
        return _TYPES[self.type][0]

    def body(self) -> str:
        text = _TYPES[self.type][1]
        if self.type not in _NO_VALUE and self.value is not _OMIT:
            text = f"{text}: {_go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.body(), "field": self.field}


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required", path, detail)


def invalid(path: str, value: Any, detail: str = "") -> FieldError:
    return FieldError("Invalid", path, detail, value)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = ""
    if supported:
        detail = "supported values: " + ", ".join(json.dumps(s) for s in supported)
    return FieldError("NotSupported", path, detail, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("Duplicate", path, "", value)


def not_found(path: str, value: Any) -> FieldError:
    return FieldError("NotFound", path, "", value)


def too_long(path: str, max_length: int) -> FieldError:
    return FieldError("TooLong", path, f"may not be more than {max_length} bytes")


def too_many(path: str, actual: int, max_items: int) -> FieldError:
    return FieldError("TooMany", path, f"must have at most {max_items} items", actual)


def aggregate(errors: list[FieldError]) -> str:
    if len(errors) == 1:
        return str(errors[0])
    return "[" + ", ".join(str(e) for e in errors) + "]"


@dataclass
class ApiError(Exception):
    """An error the API server returns as a metav1.Status object."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    list_meta: dict[str, Any] = field(default_factory=dict)  # the Status's metadata

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.list_meta),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code  # after details, in metav1.Status's field order
        return body


def qualified(name: str, group: str) -> str:
    """`services` / `deployments.apps`: upstream's GroupResource.String()."""
    return f"{name}.{group}" if group else name


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def not_found_error(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        _details(name, group, resource),
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        _details(name, group, resource),
    )


def conflict(resource: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        _details(name, group, resource),
    )


MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid_error(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    details = _details(name, group, kind)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(
        422,
        "Invalid",
        f'{qualified(kind, group)} "{name}" is invalid: {aggregate(errors)}',
        details,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden_error(resource: str, group: str, name: str, why: str) -> ApiError:
    what = f'{qualified(resource, group)} "{name}"' if name else qualified(resource, group)
    return ApiError(
        403, "Forbidden", f"{what} is forbidden: {why}", _details(name, group, resource)
    )


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
