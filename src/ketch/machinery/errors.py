"""Kubernetes-style API errors: every failure becomes a Status object with code, reason and message."""

from __future__ import annotations

from typing import Any

from ketch.kinds.definitions import FieldError, ResourceDefinition


class StatusError(Exception):
    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> dict:
        """The Status body, its fields in kube-apiserver's order (kind, apiVersion, metadata, status,
        message, reason, details, code): clients comparing JSON text notice the order."""
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            out["details"] = self.details
        out["code"] = self.code
        return out


def qualified_resource(rd: ResourceDefinition) -> str:
    return f"{rd.plural}.{rd.group}" if rd.group else rd.plural


def qualified_kind(rd: ResourceDefinition) -> str:
    return f"{rd.kind}.{rd.group}" if rd.group else rd.kind


def _details(rd: ResourceDefinition, name: str) -> dict:
    """Status details in kube-apiserver's order: name, group (when not core), kind."""
    d = {"name": name}
    if rd.group:
        d["group"] = rd.group
    d["kind"] = rd.plural
    return d


def not_found(rd: ResourceDefinition, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{qualified_resource(rd)} "{name}" not found', _details(rd, name))


def already_exists(rd: ResourceDefinition, name: str) -> StatusError:
    return StatusError(
        409, "AlreadyExists", f'{qualified_resource(rd)} "{name}" already exists', _details(rd, name)
    )


def conflict(rd: ResourceDefinition, name: str, why: str | None = None) -> StatusError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return StatusError(
        409, "Conflict", f'Operation cannot be fulfilled on {qualified_resource(rd)} "{name}": {why}',
        _details(rd, name),
    )


def invalid(rd: ResourceDefinition, name: str, errors: list[FieldError]) -> StatusError:
    rendered = [e.render() for e in errors]
    body = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details: dict[str, Any] = {"name": name}
    if rd.group:
        details["group"] = rd.group
    details["kind"] = rd.kind
    # As in Kubernetes, a cause's message leaves the field out (kubectl prints "field: message").
    details["causes"] = [{"reason": e.reason, "message": e.render().removeprefix(f"{e.path}: "), "field": e.path} for e in errors]
    return StatusError(422, "Invalid", f'{qualified_kind(rd)} "{name}" is invalid: {body}', details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def method_not_allowed(message: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def forbidden(rd: ResourceDefinition, name: str, message: str) -> StatusError:
    return StatusError(
        403, "Forbidden", f'{qualified_resource(rd)} "{name}" is forbidden: {message}', _details(rd, name)
    )


def unsupported_media(message: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", message)


def too_large(message: str) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", message)


def no_resource(path: str) -> StatusError:
    return StatusError(404, "NotFound", f"the server could not find the requested resource ({path})")
