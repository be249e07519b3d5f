"""Dockyard's Python API, in docker-py's shape: `client = dockyard.api.from_env(); client.containers.run(...)`."""

from dockyard.api.client import Client, from_env
from dockyard.api.errors import APIError, BuildError, ContainerError, ImageNotFound, NotFound

__all__ = ["APIError", "BuildError", "Client", "ContainerError", "ImageNotFound", "NotFound", "from_env"]
