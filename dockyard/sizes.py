"""Sizes as docker reads them (its RAMInBytes): `512m`, `1.5g`, `100k`, `1024`, binary multiples."""

from __future__ import annotations

import re

_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kKmMgGtTpP]?)[iI]?[bB]?")
_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """The size `text` names, in bytes; ValueError when it names none."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid size {text!r}")
    return int(float(match.group(1)) * _SCALE[match.group(2).lower()])
