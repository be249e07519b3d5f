"""Docker token auth: a signing key, JWT issue/verify, and scope strings like `repository:name:pull,push`."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dockyard.fsutil import atomic_write, locked
from registry.config import ConfigError

_CACHE_MAX = 1024


@dataclass(frozen=True)
class Scope:
    """One requested or granted access: type (repository/registry), name, actions."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """Parse `type:name:a,b`; None when malformed."""
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not kind or not name:
            return None
        return cls(kind, name, tuple(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def load_or_create_key(path: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """The PEM private key at `path`, creating an EC P-256 key (0600) when there is none."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with locked(path + ".lock"):
        if not os.path.exists(path):
            new_key = ec.generate_private_key(ec.SECP256R1())
            pem = new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            atomic_write(path, pem, mode=0o600)
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot load token signing key {path}: {e}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ConfigError(f"token signing key {path} must be EC P-256 or RSA")
    return key


class TokenService:
    """Issues and verifies short-lived JWTs (ES256 for EC keys, RS256 for RSA keys)."""

    def __init__(self, key, issuer: str, service: str, ttl: int):
        self._key = key
        self._public = key.public_key()
        self.algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        der = self._public.public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
        self.issuer, self.service, self.ttl = issuer, service, ttl
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, subject: str, access: list[Scope]) -> tuple[str, int, int]:
        """A signed token granting `access`; returns (token, expires_in, issued_at)."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": now, "nbf": now - 5,
                  # 96 random bits, base64url: as unique as a UUID's 122 for a token's life, and 16 characters, not 32,
                  # of a header every request sends and gunicorn reads at ~66 instructions a byte.
                  "exp": now + self.ttl, "jti": secrets.token_urlsafe(12),
                  "access": [{"type": s.type, "name": s.name, "actions": list(s.actions)} for s in access]}
        token = jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.kid})
        return token, self.ttl, now

    def verify(self, token: str) -> dict | None:
        """The claims of a valid, unexpired token for this service, else None (verified once, then cached)."""
        claims = self._cache.get(token)  # one call, atomic under the GIL: only the writers below need the lock
        if claims is None:
            try:
                claims = jwt.decode(token, self._public, algorithms=[self.algorithm], audience=self.service,
                                    issuer=self.issuer, options={"require": ["exp", "aud", "iss"]})
            except jwt.PyJWTError:
                return None
            with self._lock:
                self._cache[token] = claims
                while len(self._cache) > _CACHE_MAX:
                    self._cache.popitem(last=False)
        if claims["exp"] < time.time():
            return None
        return claims

    @staticmethod
    def grants(claims: dict, kind: str, name: str, action: str) -> bool:
        """Whether verified claims allow `action` on (kind, name)."""
        for entry in claims.get("access") or []:
            if isinstance(entry, dict) and entry.get("type") == kind and entry.get("name") == name:
                actions = entry.get("actions") or []
                if action in actions or "*" in actions:
                    return True
        return False
