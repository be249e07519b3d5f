"""bcrypt htpasswd files (`htpasswd -B`), reloaded when they change, with verified credentials cached."""

from __future__ import annotations

import hashlib
import os
import threading

import bcrypt

from registry.config import ConfigError

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


class Htpasswd:
    """Checks user/password pairs against an htpasswd file of bcrypt hashes."""

    def __init__(self, path: str):
        self.path = path
        self._users: dict[str, bytes] = {}
        self._mtime: float | None = None
        # sha256(user NUL password) -> user, for pairs that passed bcrypt: keeps per-request auth cheap.
        self._verified: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as e:
            raise ConfigError(f"cannot read htpasswd file {self.path}: {e.strerror}") from None
        if mtime == self._mtime:
            return
        users: dict[str, bytes] = {}
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                user, sep, hashed = line.partition(":")
                if not sep or not hashed.startswith(_BCRYPT_PREFIXES):
                    raise ConfigError(f"{self.path}:{lineno}: entry is not bcrypt (create it with htpasswd -B)")
                users[user] = hashed.encode()
        with self._lock:
            self._users, self._mtime, self._verified = users, mtime, {}

    def check(self, user: str, password: str) -> bool:
        """Whether the pair is valid."""
        try:
            self._reload()
        except ConfigError:
            return False
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if self._verified.get(key) == user:
            return True
        hashed = self._users.get(user)
        if hashed is None:
            # Spend the same time as a real check so user names cannot be probed by timing.
            bcrypt.checkpw(b"x", b"$2b$05$" + b"." * 53)
            return False
        if bcrypt.checkpw(password.encode(), hashed):
            with self._lock:
                self._verified[key] = user
            return True
        return False

