"""The exceptions the API raises, named as docker-py names them; all are DockyardErrors."""

from __future__ import annotations

from dockyard.errors import DockyardError, NotFound


class APIError(DockyardError):
    """An operation the store, registry or runtime refused."""


class ImageNotFound(NotFound):
    """No image by that name or id."""


class ContainerError(DockyardError):
    """A container run in the foreground exited non-zero (docker-py's `containers.run` raises it)."""

    def __init__(self, container: object, exit_status: int, command: list[str] | None, image: str, stderr: bytes):
        self.container, self.exit_status, self.command, self.image, self.stderr = (
            container, exit_status, command, image, stderr)
        super().__init__(f"command {command!r} in image {image!r} returned non-zero exit status {exit_status}")


__all__ = ["APIError", "ContainerError", "ImageNotFound", "NotFound"]
