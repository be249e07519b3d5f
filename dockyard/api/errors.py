"""The exceptions the API raises, named as docker-py names them; all are DockyardErrors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


class BuildError(APIError):
    """A build failed (docker-py's): the message names the failing step; `build_log` has the log's lines."""

    def __init__(self, reason: str, build_log: list[dict[str, str]]):
        self.msg, self.build_log = reason, build_log
        super().__init__(reason)


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """The engine's refusals (the runner's, builder's, registry client's DockyardErrors) raised as docker-py's
    APIError; a missing thing stays NotFound and the API's own errors pass. Also a decorator."""
    try:
        yield
    except (APIError, ContainerError, NotFound):
        raise
    except DockyardError as e:
        raise APIError(str(e)) from e


__all__ = ["APIError", "BuildError", "ContainerError", "ImageNotFound", "NotFound", "engine_errors"]
