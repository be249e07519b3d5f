"""What the artifact policies share: the refusal they raise and who acted (for the events they emit)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """Who made a request, for events: the user or robot name ("" when anonymous) and the client's address."""

    name: str = ""
    remote_addr: str = ""


class Refused(Exception):
    """A policy refuses the operation: `status` and `code` (a distribution error code) with a message for the
    client; the v2 API answers it as a registry error, the REST API in Harbor's shape."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
