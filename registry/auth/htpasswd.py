"""bcrypt htpasswd files (`htpasswd -B`), reloaded when they change, with verified credentials cached."""

from __future__ import annotations

import hashlib
import os
import re
import threading

import bcrypt

from registry.config import ConfigError

# $2a$/$2b$/$2y$, two-digit cost, 22 characters of salt and 31 of hash in bcrypt's base64.
_BCRYPT_RE = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")
# bcrypt reads at most 72 bytes of password; `htpasswd -B` (and distribution) ignore the rest, and so do we.
PASSWORD_MAX = 72


def read_entries(path: str) -> dict[str, str]:
    """user -> bcrypt hash of an htpasswd file; ConfigError naming the line of an entry that is not bcrypt."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read htpasswd file {path}: {e.strerror}") from None
    users: dict[str, str] = {}
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        m = _BCRYPT_RE.fullmatch(hashed)
        if not sep or not m or not 4 <= int(m.group(1)) <= 31:
            raise ConfigError(f"{path}:{lineno}: entry is not bcrypt (create it with htpasswd -B)")
        users[user] = hashed
    return users


class Htpasswd:
    """Checks user/password pairs against an htpasswd file of bcrypt hashes."""

    def __init__(self, path: str, strict: bool = True):
        """strict: a broken file is a ConfigError now; else every check fails until the file is fixed."""
        self.path = path
        self._users: dict[str, bytes] = {}
        self._mtime: float | None = None
        # sha256(user NUL first 72 bytes of password) -> user, for pairs that passed bcrypt: cheap repeat checks.
        self._verified: dict[bytes, str] = {}
        self.dummy = b""  # the hash unknown users are checked against
        self._lock = threading.Lock()
        try:
            self._reload()
        except ConfigError:
            if strict:
                raise

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as e:
            raise ConfigError(f"cannot read htpasswd file {self.path}: {e.strerror}") from None
        if mtime == self._mtime:
            return
        users = {user: hashed.encode() for user, hashed in read_entries(self.path).items()}
        costs = {int(h[4:6]) for h in users.values()}
        # Unknown users are checked against a hash as slow as the slowest real one, so timing tells nothing.
        dummy = bcrypt.hashpw(b"no such user", bcrypt.gensalt(max(costs, default=5)))
        with self._lock:
            self._users, self._mtime, self._verified, self.dummy = users, mtime, {}, dummy

    def check(self, user: str, password: str) -> bool:
        """Whether the pair is valid (by the first 72 bytes of the password, as `htpasswd -B` checks it)."""
        try:
            self._reload()
        except ConfigError:
            return False
        secret = password.encode()[:PASSWORD_MAX]
        key = hashlib.sha256(user.encode() + b"\0" + secret).digest()
        if self._verified.get(key) == user:
            return True
        hashed = self._users.get(user)
        if bcrypt.checkpw(secret, hashed or self.dummy) and hashed is not None:
            with self._lock:
                self._verified[key] = user
            return True
        return False
