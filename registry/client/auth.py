"""Registry authentication: docker-compatible credential storage and WWW-Authenticate challenges."""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError
from dockyard.fsutil import atomic_write, locked

if TYPE_CHECKING:
    from registry.client.transport import Transport

# Docker Hub's historical key in config.json; other registries are keyed by host[:port].
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
# A token without expires_in is valid for 60 s per the token spec; refresh a little early.
DEFAULT_TOKEN_SECONDS = 60
TOKEN_MARGIN_SECONDS = 5
# A token answer is a few KiB of JSON; a token server sending more is not believed.
TOKEN_BODY_LIMIT = 1 << 20
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # what may follow "Bearer " in a header


class AuthError(DockyardError):
    """The registry refused the credentials (or demanded some we do not have)."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or identity token) for one registry."""

    username: str
    password: str

    def __repr__(self) -> str:  # never let a password reach a log or traceback
        return f"Credentials(username={self.username!r}, password=***)"


def docker_config_path() -> str:
    """`$DOCKER_CONFIG/config.json`, default ~/.docker/config.json."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def _read_config(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            obj = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise DockyardError(f"cannot read {path}: {e}") from None
    return obj if isinstance(obj, dict) else {}


def _keys_for(host: str) -> list[str]:
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    return keys + list(_DOCKER_HUB_KEYS) if host in _DOCKER_HUB_KEYS else keys


def load_credentials(host: str) -> Credentials | None:
    """The saved credentials for a registry host, from the docker config's `auths` section."""
    path = docker_config_path()
    auths = _read_config(path).get("auths") or {}
    for key in _keys_for(host):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise DockyardError(f"{path}: malformed auth entry for {key}") from None
            if sep:
                return Credentials(user, password)
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"])
        if entry.get("identitytoken"):
            return Credentials("<token>", entry["identitytoken"])
    return None


def save_credentials(host: str, creds: Credentials) -> str:
    """Store credentials for a host in the docker config (mode 0600); returns the file's path."""
    path = docker_config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with locked(path + ".lock"):
        config = _read_config(path)
        auths = config.setdefault("auths", {})
        token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        auths[host] = {"auth": token}
        atomic_write(path, json.dumps(config, indent="\t").encode() + b"\n", mode=0o600)
    return path


def remove_credentials(host: str) -> bool:
    """Forget a host's credentials; False when none were saved."""
    path = docker_config_path()
    if not os.path.exists(path):
        return False
    with locked(path + ".lock"):
        config = _read_config(path)
        auths = config.get("auths") or {}
        gone = [k for k in _keys_for(host) if k in auths]
        for k in gone:
            del auths[k]
        if gone:
            atomic_write(path, json.dumps(config, indent="\t").encode() + b"\n", mode=0o600)
    return bool(gone)


_PARAM_RE = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_SCHEME_RE = re.compile(r"([A-Za-z][\w.+-]*)")


@dataclass(frozen=True)
class Challenge:
    """One parsed WWW-Authenticate challenge."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header (`Bearer realm="…",service="…",scope="a,b"`, `Basic realm=…`)."""
    out: list[Challenge] = []
    pos, text = 0, header or ""
    while pos < len(text):
        if text[pos] in " \t,":
            pos += 1
            continue
        m = _PARAM_RE.match(text, pos)
        if m and out:
            quoted, bare = m.group(2), m.group(3)
            out[-1].params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        else:
            m = _SCHEME_RE.match(text, pos)
            if not m:
                break
            out.append(Challenge(m.group(1).lower(), {}))
        pos = m.end()
    return out


@dataclass
class _Token:
    value: str
    expires: float


class Authenticator:
    """Answers one registry's challenges: Basic from saved credentials, Bearer tokens per scope (cached)."""

    def __init__(self, host: str, credentials: Credentials | None):
        self.host = host
        self.credentials = credentials
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._lock = threading.Lock()

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization header to send for a request needing `scopes`, if one is known to be needed."""
        c = self._challenge
        if c is None:
            return None
        if c.scheme == "basic":
            return _basic(self.credentials) if self.credentials else None
        token = self._tokens.get(scopes)
        return f"Bearer {token.value}" if token and token.expires > time.monotonic() else None

    @property
    def bearer(self) -> bool:
        """Whether the registry asked for Bearer tokens."""
        return self._challenge is not None and self._challenge.scheme == "bearer"

    def answer(self, www_authenticate: str, scopes: tuple[str, ...], transport: Transport, sent: bool,
               fetch: bool = True) -> bool:
        """Handle a 401: remember the challenge (and fetch a token); True when a retry may now succeed."""
        challenges = parse_challenges(www_authenticate)
        chosen = next((c for c in challenges if c.scheme == "bearer"), None) or \
            next((c for c in challenges if c.scheme == "basic"), None)
        if chosen is None:
            return False
        self._challenge = chosen
        if chosen.scheme == "basic":
            # Retrying with the same (or no) credentials is pointless.
            return self.credentials is not None and not sent
        if fetch:
            self.refresh(scopes, transport, chosen.params.get("scope"))
        return fetch

    def refresh(self, scopes: tuple[str, ...], transport: Transport, extra_scope: str | None = None,
                force: bool = True) -> None:
        """Fetch a fresh token for `scopes` (plus a scope the challenge named) from the Bearer realm."""
        with self._lock:
            if not force and self.header(scopes):
                return  # a parallel transfer fetched it while this one waited for the lock
            wanted = tuple(sorted(set(scopes) | ({extra_scope} if extra_scope else set())))
            assert self._challenge is not None, "callers refresh only after a Bearer challenge"
            self._tokens[scopes] = self._fetch(self._challenge, wanted, transport)

    def _fetch(self, challenge: Challenge, scopes: tuple[str, ...], transport: Transport) -> _Token:
        """Get a token from the realm, as the distribution token spec describes (GET with Basic credentials)."""
        from registry.client.connections import BodyTooLarge, TransportError
        from registry.client.transport import describe, one_line

        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError(f"registry {self.host} sent a Bearer challenge without a realm")
        shown = one_line(realm)  # for messages: the realm is the registry's text
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params += [("scope", s) for s in scopes]
        headers = {}
        if self.credentials:
            params.append(("account", self.credentials.username))
            headers["Authorization"] = _basic(self.credentials)
        try:
            r = transport.fetch(realm, params, headers, TOKEN_BODY_LIMIT)
        except TransportError as e:
            raise AuthError(f"cannot get a token: {describe(e, f'token server {shown}')}") from None
        except BodyTooLarge as e:
            raise AuthError(f"token server {shown} sent a token answer of {e}") from None
        if r.status_code in (401, 403):
            raise AuthError(f"{self.host}: unauthorized: authentication required"
                            if not self.credentials else f"{self.host}: unauthorized: incorrect username or password")
        if r.status_code != 200:
            raise AuthError(f"token server {shown} answered {r.status_code}")
        try:
            body = r.json()
            value = body.get("token") or body["access_token"]
            lifetime = int(body.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            raise AuthError(f"token server {shown} sent no token") from None
        if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
            raise AuthError(f"token server {shown} sent a malformed token")
        return _Token(value, time.monotonic() + min(max(lifetime - TOKEN_MARGIN_SECONDS, 1), 1 << 31))


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
