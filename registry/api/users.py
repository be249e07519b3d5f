"""`/users`: local users' CRUD, the current user, search, passwords and the sysadmin flag, in Harbor's shape."""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import func, select

from registry.api.common import (
    ApiError,
    bp,
    created,
    filter_q,
    json_body,
    needs,
    page_response,
    paging,
    parse_q,
    rfc3339,
)
from registry.guard import model, principal
from registry.model import users
from registry.model.access import Principal
from registry.model.tables import User


def user_json(u: User) -> dict:
    """A user as Harbor's UserResp (never the password hash)."""
    return {"user_id": u.id, "username": u.username, "email": u.email, "realname": u.realname,
            "comment": u.comment, "sysadmin_flag": u.sysadmin, "admin_role_in_auth": False,
            "creation_time": rfc3339(u.created_at), "update_time": rfc3339(u.updated_at)}


def _caller() -> Principal:
    caller = principal()
    assert caller is not None  # the views' needs refuse anonymous callers
    return caller


def _self_or_sysadmin(user_id: int) -> Principal:
    caller = _caller()
    if caller.user_id != user_id and not caller.sysadmin:
        raise ApiError(403, "only the user or a system admin may do this")
    return caller


@bp.route("/users", methods=["GET"])
@needs("sysadmin")
def list_users():
    """Every user; q on username (=~ fuzzy), email; sort by username or creation_time."""
    page = paging()
    stmt = filter_q(select(User), parse_q(request.args.get("q")),
                    {"username": User.username, "email": User.email, "user_id": User.id})
    sort = request.args.get("sort", "username")
    column = {"username": User.username, "creation_time": User.created_at, "user_id": User.id}.get(sort.lstrip("-"))
    if column is None:
        raise ApiError(400, "sort: username, creation_time or user_id (prefix - for descending)")
    with model().session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = s.scalars(stmt.order_by(column.desc() if sort.startswith("-") else column, User.id)
                         .offset(page.offset).limit(page.size)).all()
        items = [user_json(u) for u in rows]
    return page_response(items, total or 0, page)


@bp.route("/users", methods=["POST"])
@needs("sysadmin")
def create_user():
    """Create a local user (UserCreationReq); 201 with its Location."""
    body = json_body()
    fields = {k: body.get(k) for k in ("username", "password", "email", "realname", "comment")}
    if not all(isinstance(v, str) for v in (fields["username"], fields["password"])):
        raise ApiError(400, "username and password are required")
    text = {k: str(v or "") for k, v in fields.items()}
    user = users.create_user(model(), text["username"], text["password"], text["email"], text["realname"],
                             text["comment"])
    return created(f"/api/v2.0/users/{user.id}")


@bp.route("/users/current", methods=["GET"])
@needs("identity")
def current_user():
    """The signed-in user (robots are no users: 404)."""
    caller = _caller()
    if caller.user_id is None:
        raise ApiError(404, f"{caller.name} is not a user")
    with model().session() as s:
        return jsonify(user_json(users.get_user(s, caller.user_id)))


@bp.route("/users/search", methods=["GET"])
@needs("identity")
def search_users():
    """Users whose name contains `username` (id and name only, as Harbor)."""
    page = paging()
    name = request.args.get("username", "")
    if not name:
        raise ApiError(400, "username is required")
    stmt = select(User).where(User.username.contains(name, autoescape=True))
    with model().session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = s.scalars(stmt.order_by(User.username).offset(page.offset).limit(page.size)).all()
        items = [{"user_id": u.id, "username": u.username} for u in rows]
    return page_response(items, total or 0, page)


@bp.route("/users/<int:user_id>", methods=["GET"])
@needs("identity")
def get_user(user_id: int):
    """One user (themselves, or anyone for a sysadmin)."""
    _self_or_sysadmin(user_id)
    with model().session() as s:
        return jsonify(user_json(users.get_user(s, user_id)))


@bp.route("/users/<int:user_id>", methods=["PUT"])
@needs("identity")
def update_user(user_id: int):
    """Change a user's profile (UserProfile: email, realname, comment)."""
    _self_or_sysadmin(user_id)
    body = json_body()
    values = {k: body[k] for k in ("email", "realname", "comment") if isinstance(body.get(k), str)}
    users.update_user(model(), user_id, **values)
    return Response(status=200)


@bp.route("/users/<int:user_id>", methods=["DELETE"])
@needs("sysadmin")
def delete_user(user_id: int):
    """Delete a user."""
    users.delete_user(model(), _caller(), user_id)
    return Response(status=200)


@bp.route("/users/<int:user_id>/password", methods=["PUT"])
@needs("identity")
def change_password(user_id: int):
    """Change a password (PasswordReq): the old one is needed unless a sysadmin resets another user's."""
    body = json_body()
    new, old = body.get("new_password"), body.get("old_password")
    if not isinstance(new, str) or (old is not None and not isinstance(old, str)):
        raise ApiError(400, "new_password is required")
    users.change_password(model(), _caller(), user_id, new, old)
    return Response(status=200)


@bp.route("/users/<int:user_id>/sysadmin", methods=["PUT"])
@needs("sysadmin")
def set_sysadmin(user_id: int):
    """Grant or revoke system admin (UserSysAdminFlag)."""
    flag = json_body().get("sysadmin_flag")
    if not isinstance(flag, bool):
        raise ApiError(400, "sysadmin_flag: true or false")
    users.set_sysadmin(model(), _caller(), user_id, flag)
    return Response(status=200)
