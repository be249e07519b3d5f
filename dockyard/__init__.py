"""Dockyard's shared core: references, digests, media types, the local OCI image store, layers, and the CLI."""

__version__ = "0.1.0"
