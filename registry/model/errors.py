"""The model's refusals: a status and a message for whoever asked (the REST API answers them in Harbor's shape)."""

from __future__ import annotations


class ModelError(Exception):
    """A request the model refuses: `status` is the HTTP status that says why (400 bad, 403, 404, 409)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message
