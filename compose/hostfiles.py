"""Reading the host files a compose project names (compose files, env files, included and extended files): regular
files only, so a FIFO or a device named there cannot hang or flood the loader, and bounded in size."""

from __future__ import annotations

import os
import stat

from compose.errors import ComposeError

MAX_BYTES = 16 * 1024 * 1024


def read_regular(path: str, what: str) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed, as the user named it); ComposeError naming
    `what` and the path when it is missing, not a regular file, or larger than MAX_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ComposeError(f"{what} {path}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ComposeError(f"{what} {path}: not a regular file")
        if info.st_size > MAX_BYTES:
            raise ComposeError(f"{what} {path}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
        chunks = []
        size = 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BYTES:
            raise ComposeError(f"{what} {path}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
        return b"".join(chunks)
    except OSError as e:
        raise ComposeError(f"{what} {path}: {e.strerror}") from None
    finally:
        os.close(fd)
