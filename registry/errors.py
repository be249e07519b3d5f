"""Spec-shaped JSON error responses (the error and its codes are the core's, dockyard.distribution)."""

from __future__ import annotations

from werkzeug.wrappers import Response

from dockyard.distribution import RegistryError


def error_response(code: str, message: str, detail: object, status: int,
                   headers: dict[str, str] | None = None) -> Response:
    """A spec-shaped error body with the given status."""
    return Response(*RegistryError(code, detail, status, message, headers).response())
