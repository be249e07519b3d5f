"""Authorization of the REST API's and the UI's views: each declares its need (registry.api.common.needs); a
view without one is refused, so the guard fails closed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import current_app, g, request

from dockyard.distribution import RegistryError
from registry.api.common import NEED_ATTR, ApiError
from registry.model import access, projects
from registry.model.access import Principal
from registry.model.tables import Project

if TYPE_CHECKING:
    from registry.model.db import Database

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="dockyard-registry"'}  # registry.auth.BASIC_REALM's


def authorize(view: Callable) -> Principal | None:
    """The caller of this request if it holds what `view` declares it needs; raises ApiError otherwise.

    The caller and (for "project:" needs) the project are kept in flask.g for the view: `principal()`,
    `project()`."""
    need = getattr(view, NEED_ATTR, None)
    if need is None:
        raise ApiError(403, "this operation declares no access rule")
    caller = _caller()
    g.principal = caller
    if need == "public":
        return caller
    kind, _, right = need.partition(":")
    if kind == "project" and right:
        g.project = _project(caller, right)
        return caller
    if caller is None:
        raise ApiError(401, "authentication required", _CHALLENGE)
    if need == "identity":
        return caller
    if need == "sysadmin":
        if not caller.sysadmin:
            raise ApiError(403, "only system admins may do this")
        return caller
    raise ApiError(403, "this operation declares no valid access rule")


def model() -> Database:
    """The app's metadata database (the registry's state is off limits to the product's modules by layering)."""
    return current_app.extensions["registry"].model


def principal() -> Principal | None:
    """The caller authorize() found for this request (None: anonymous)."""
    return g.get("principal")


def project() -> Project:
    """The project a "project:<right>" view's URL names (the caller holds the right)."""
    return g.project


def _project(caller: Principal | None, right: str) -> Project:
    name_or_id = (request.view_args or {}).get("project_name_or_id")
    if name_or_id is None:
        raise ApiError(403, "this operation names no project")
    is_name = request.headers.get("X-Is-Resource-Name", "").lower() == "true"
    db = model()
    with db.session() as s:
        found = projects.find(s, name_or_id, is_name)
    # A project the caller may not even pull from is answered as missing: its existence is no one else's business.
    rights = access.project_rights(db, caller, found) if found is not None else frozenset()
    if right in rights:
        return found  # type: ignore[return-value]
    if caller is None:
        raise ApiError(401, "authentication required", _CHALLENGE)
    if found is None or not rights:
        raise ApiError(404, f"project {str(name_or_id)[:255]} not found")
    raise ApiError(403, f"{right} is not allowed in project {found.name}")


def _caller() -> Principal | None:
    """The session cookie's principal, else Basic credentials (or a registry token) of the request."""
    from registry.session import cookie_principal

    reg = current_app.extensions["registry"]
    found = cookie_principal(reg.model)
    if found is not None:
        return found
    header = request.headers.get("Authorization", "")
    try:
        if header[:7].lower() == "bearer " and reg.auth.tokens is not None:
            claims = reg.auth.tokens.verify(header[7:].strip())
            subject = claims.get("sub") if claims else None
            found = access.principal_by_name(reg.model, subject) if subject else None
            if found is None:
                raise ApiError(401, "invalid token", _CHALLENGE)
            return found
        return reg.auth.basic_principal(request)
    except RegistryError as e:  # wrong credentials, throttled: in Harbor's error shape
        raise ApiError(e.status, e.message, {**_CHALLENGE, **e.headers} if e.status == 401 else e.headers) from None
