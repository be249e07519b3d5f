"""What every API object shares, as docker-py's `Model`: its inspect JSON in `attrs`, an id, equality by id."""

from __future__ import annotations

from typing import Any


class Model:
    """An image, container, network or volume: `attrs` is what `dockyard inspect` prints for it."""

    id_attribute = "Id"  # the key of `attrs` that holds the id

    def __init__(self, attrs: dict[str, Any]):
        self.attrs = attrs

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.short_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.id == self.id

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id))

    @property
    def id(self) -> str:
        """Its full id."""
        return self.attrs[self.id_attribute]

    @property
    def short_id(self) -> str:
        """The id's first 12 characters, as docker-py shortens it."""
        return self.id[:12]
