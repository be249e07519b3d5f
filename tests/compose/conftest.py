"""Compose tests: the loader and `compose config` are pure Python; the engine tests run containers."""
