"""Who may do what: htpasswd basic auth or Docker token auth, per-user pull/push/delete rights."""

from __future__ import annotations

import base64
import binascii
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Request, request

from dockyard.distribution import RegistryError
from registry.auth.htpasswd import Htpasswd
from registry.auth.token import Scope, TokenService, load_or_create_key
from registry.config import Config
from registry.model import lazy

if TYPE_CHECKING:  # the model (SQLAlchemy) is imported only by --projects servers, when first used
    from registry.model.access import Principal
    from registry.model.db import Database

BASIC_REALM = "dockyard-registry"


@dataclass(frozen=True)
class Need:
    """What a request needs: an action on a repository, the catalog, or (name None) just a valid identity."""

    name: str | None
    action: str
    kind: str = "repository"

    @property
    def scope(self) -> Scope:
        actions = ("pull", "push") if self.action == "push" else (self.action,)
        return Scope(self.kind, self.name or "", actions)


CATALOG = Need("catalog", "*", kind="registry")
# Reading /metrics: a Basic-authenticated user listed in the config's auth.metrics (Prometheus cannot fetch tokens).
METRICS = Need("metrics", "*", kind="registry")
IDENTITY = Need(None, "pull")


def generation_of(environ: dict, db: Database) -> str:
    """The model's auth generation, read once per request (`environ`: its WSGI environ; each use of Flask's request
    proxy costs a context lookup)."""
    gen = environ.get("registry.generation")
    if gen is None:
        gen = environ["registry.generation"] = lazy("access").generation(db)
    return gen


class Authorizer:
    """Checks a request's credentials against what it needs; raises UNAUTHORIZED or DENIED."""

    def __init__(self, config: Config, strict: bool = True, model: Database | None = None):
        self.config = config
        self.model = model  # the product's metadata database (--projects)
        self.htpasswd = Htpasswd(config.htpasswd, strict) if config.htpasswd else None
        self.tokens: TokenService | None = None
        if config.token:
            key_path = config.token_key or os.path.join(config.root, "token", "key.pem")
            self.tokens = TokenService(load_or_create_key(key_path), config.token_issuer,
                                       config.token_service, config.token_ttl)

    def _db(self) -> Database:
        """The model's database (--projects only)."""
        assert self.model is not None, "the model's rights are asked without --projects"
        return self.model

    def _credentials(self, request: Request) -> tuple[str, str] | None:
        """The Basic credentials of the request; None when there are none; UNAUTHORIZED when malformed."""
        header = request.headers.get("Authorization", "")
        if header[:6].lower() != "basic ":
            return None
        try:
            user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise self._challenge(None) from None
        if not sep:
            raise self._challenge(None)
        return user, password

    def basic_user(self, request: Request) -> str | None:
        """The user of valid Basic credentials; None when there are none; UNAUTHORIZED when they are wrong."""
        if self.config.projects:
            principal = self.basic_principal(request)
            return principal.name if principal else None
        creds = self._credentials(request)
        if creds is None:
            return None
        if self.htpasswd is None or not self.htpasswd.check(*creds):
            raise self._challenge(None)
        return creds[0]

    def basic_principal(self, request: Request) -> Principal | None:
        """(--projects) The user or robot of valid Basic credentials, None without any; UNAUTHORIZED when wrong,
        TOOMANYREQUESTS after too many failures of that name from that address."""
        access = lazy("access")
        creds = self._credentials(request)
        if creds is None:
            return None
        try:
            db = self._db()
            principal = access.login(db, creds[0], creds[1], request.remote_addr or "",
                                     generation_of(request.environ, db))
        except access.LoginThrottled as e:
            raise RegistryError("TOOMANYREQUESTS", message=str(e),
                                headers={"Retry-After": str(e.retry_after)}) from None
        if principal is None:
            raise self._challenge(None)
        request.environ["registry.principal"] = principal
        return principal

    def check(self, request: Request, need: Need) -> str | None:
        """The authenticated user (None: anonymous) if the request may proceed."""
        if not self.config.auth_enabled:
            return None
        # METRICS' fields, not `need == METRICS`: a dataclass's __eq__ is a Python call on every request. A need
        # named "metrics" of another action would be taken for it too: asked of a metrics reader, never less.
        if need.name == "metrics" and need.kind == "registry":
            return self._metrics_reader(request)
        if self.tokens is not None:
            return self._check_token(self.tokens, request, need)
        if self.config.projects:
            return self._check_projects(request, need)
        user = self.basic_user(request)
        if user is None:
            if need.name is not None and need.action in self.config.rights(None):
                return None
            raise self._challenge(need)
        if need.name is None:
            return user
        if need.kind == "registry" and "pull" in self.config.rights(user):
            return user
        if need.kind == "repository" and need.action in self.config.rights(user, need.name):
            return user
        raise RegistryError("DENIED", {"action": need.action, "name": need.name})

    def _check_projects(self, request: Request, need: Need) -> str | None:
        """Basic auth decided by the model: projects' members, robots, public projects."""
        principal = self.basic_principal(request)
        if need.name is None or need.kind == "registry":  # /v2/ and the catalog (filtered by `may`)
            if principal is None:
                raise self._challenge(need)
            return principal.name
        if need.action in self._project_rights(principal, need.name):
            return principal.name if principal else None
        if principal is None:
            raise self._challenge(need)
        raise RegistryError("DENIED", {"action": need.action, "name": need.name})

    def _principal(self, user: str | None) -> Principal | None:
        """(--projects) The Principal of this request's caller named `user` (a token's subject, or Basic's)."""
        if not user:
            return None
        environ = request.environ
        known = environ.get("registry.principal")
        if known is None or known.name != user:
            db = self._db()
            known = lazy("access").principal_by_name(db, user, generation_of(environ, db))
            environ["registry.principal"] = known
        return known

    def _project_rights(self, principal: Principal | None, repository: str) -> frozenset[str]:
        """What `principal` may do on `repository`'s project (memoized per request); 404 DENIED when an
        authenticated caller names a project that does not exist (anonymous callers get no rights, so a challenge)."""
        name = lazy("projects").project_of(repository)
        environ = request.environ
        memo = environ.setdefault("registry.rights", {})
        if name not in memo:
            db = self._db()
            memo[name] = lazy("access").rights_in(db, principal, name, generation_of(environ, db))
        if memo[name] is None:
            if principal is None:
                return frozenset()
            raise RegistryError("DENIED", {"name": repository}, status=404, message=f"project {name} not found")
        return memo[name]

    def _metrics_reader(self, request: Request) -> str:
        try:
            user = self.basic_user(request)
        except RegistryError:
            user = None
        if user is None:
            raise self._challenge(METRICS)
        if user not in self.config.metrics_users:
            raise RegistryError("DENIED", {"action": "metrics"})
        return user

    def may(self, user: str | None, repo: str, action: str) -> bool:
        """Whether `user` (None: anonymous) holds `action` on `repo` by the configured rights (or the model's)."""
        if self.config.projects:
            try:
                return action in self._project_rights(self._principal(user), repo)
            except RegistryError:
                return False
        return action in self.config.rights(user, repo)

    def _check_token(self, tokens: TokenService, request: Request, need: Need) -> str | None:
        environ = request.environ
        header = environ.get("HTTP_AUTHORIZATION", "")  # not request.headers: the environ costs less
        if header[:7].lower() != "bearer ":
            raise self._challenge(need)
        # The need's fields, not the Need: a dataclass's __hash__ and __eq__ are Python calls, a tuple's are not. The
        # whole header, not the token cut from it: one header carries one token, and the cut would copy a string of
        # hundreds of bytes, and hash it again, on every request.
        key = ("bearer", header, need.name, need.action, need.kind)
        if self.model is not None:  # a verdict kept for this token and need: no decoding, no grant lookup
            kept = lazy("access").decided(generation_of(environ, self.model), key)
            if kept is not None and kept[0] > time.time():
                return kept[1]
        token = header[7:].strip()
        claims = tokens.verify(token)
        if claims is None:
            raise self._challenge(need, error="invalid_token")
        if need.name is not None and not TokenService.grants(claims, need.kind, need.name, need.action):
            if self.config.projects and need.kind == "repository" and claims.get("sub"):
                self._project_rights(self._principal(claims["sub"]), need.name)  # a missing project: 404, named
            raise self._challenge(need, error="insufficient_scope")
        user = claims.get("sub") or None
        if self.config.projects:
            self._still_granted(environ, key, claims["exp"], user, need)
        return user

    def _still_granted(self, environ: dict, key: tuple, expires: float, user: str | None, need: Need) -> None:
        """(--projects) A token's grant decided again by the model's current rights, so a robot disabled, a user
        deleted or rights taken away since the token was issued count at once. The verdict is kept per token and
        need (`key`) for the auth generation (a change drops it), until the token or the caller expires."""
        principal = self._principal(user)
        if user is not None and principal is None:
            raise self._challenge(need, error="invalid_token")
        if need.kind == "repository" and need.name is not None \
                and need.action not in self._project_rights(principal, need.name):
            raise self._challenge(need, error="insufficient_scope")
        until = expires if principal is None or principal.expires_at == -1 else min(expires, principal.expires_at)
        lazy("access").remember(generation_of(environ, self._db()), key, (until, user))

    def allowed(self, request: Request, name: str, action: str) -> bool:
        """Whether the request may do `action` on `name` (for mount sources), without raising."""
        try:
            self.check(request, Need(name, action))
            return True
        except RegistryError:
            return False

    def _challenge(self, need: Need | None, error: str | None = None) -> RegistryError:
        if self.tokens is not None and need != METRICS:
            realm = self.config.token_realm or request.host_url.rstrip("/") + "/token"
            value = f'Bearer realm="{realm}",service="{self.tokens.service}"'
            if need is not None and need.name is not None:
                value += f',scope="{need.scope}"'
            if error:
                value += f',error="{error}"'
        else:
            value = f'Basic realm="{BASIC_REALM}"'
        detail = [{"Type": need.kind, "Name": need.name, "Action": need.action}] if need and need.name else None
        return RegistryError("UNAUTHORIZED", detail, headers={"WWW-Authenticate": value})

    def grant(self, user: str | None, requested: list[Scope]) -> list[Scope]:
        """The part of `requested` that `user` (None: anonymous) holds, for the token endpoint."""
        granted = []
        for scope in requested:
            if scope.type == "repository":
                actions = tuple(a for a in scope.actions if self.may(user, scope.name, a))
            elif scope.type == "registry" and scope.name == "catalog" and user is not None \
                    and (self.config.projects or "pull" in self.config.rights(user)):
                actions = ("*",)
            else:
                actions = ()
            if actions:
                granted.append(Scope(scope.type, scope.name, actions))
        return granted
