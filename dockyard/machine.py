"""The machine this process runs as: os.uname()'s, except for a 64-bit interpreter under a linux32 personality."""

from __future__ import annotations

import os
import sys

_PER_LINUX32 = 0x0008  # linux/personality.h


def machine() -> str:
    """The machine name (uname's, e.g. x86_64) of the code this interpreter runs: under `setarch linux32` uname says
    i686 to a 64-bit process, which still runs, and calls the kernel, as x86_64; then the build's own, as a Go
    tool's GOARCH would be. Read at each call: the personality is the calling process's."""
    named = os.uname().machine
    built = getattr(sys.implementation, "_multiarch", "").partition("-")[0]
    if not built or sys.maxsize < 2**32:
        return named
    try:
        with open("/proc/self/personality") as f:
            linux32 = int(f.read(), 16) & 0xFF == _PER_LINUX32
    except (OSError, ValueError):
        return named
    return built if linux32 else named
