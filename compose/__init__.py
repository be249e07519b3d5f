"""Compose: multi-container applications from compose files, run through the Python API (`dockyard.api`)."""
