"""Checking credentials against a registry before `login` saves them."""

from __future__ import annotations

from registry.client.auth import AuthError, Credentials
from registry.client.transport import Transport, check


def check_login(host: str, creds: Credentials) -> None:
    """Raise AuthError unless the registry accepts these credentials (Basic, or a Bearer token fetch)."""
    t = Transport(host)
    try:
        t.auth.credentials = creds
        t.connect()
        if t.auth.bearer:
            # The token server checks the password; a token with no scope is enough to prove it.
            t.auth.refresh((), t)
        r = t.request("GET", "/v2/", retry=False)
        if r.status_code == 401:
            r.close()
            raise AuthError(f"login to {host} failed: unauthorized: incorrect username or password")
        check(r, f"login to {host}")
        r.close()
    finally:
        t.close()
