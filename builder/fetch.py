"""ADD <url>: download a remote file into the build's scratch space, verifying --checksum when given."""

from __future__ import annotations

import email.utils
import http.client
import os
import posixpath
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from dockyard.digest import CHUNK, Digest, HashingWriter, verify
from dockyard.errors import DockyardError

# A download stops here: a server must not fill the disk with an endless body.
MAX_BYTES = 16 << 30


class FetchError(DockyardError):
    """A URL source could not be downloaded."""


@dataclass(frozen=True)
class Fetched:
    """A downloaded file: where it is, its digest, the name it takes and its mtime (Last-Modified)."""

    path: str
    digest: Digest
    name: str
    mtime_ns: int


def download(url: str, checksum: str | None, scratch: str, limit: int = MAX_BYTES) -> Fetched:
    """Fetch `url` to a temp file under `scratch` (at most `limit` bytes); the caller removes it.

    A server silent for longer than the registry client's read timeout (daemon.json `read-timeout`) fails it.
    """
    from registry.client.config import ClientConfig

    name = posixpath.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise FetchError(f"ADD {url}: cannot determine a file name from the URL; give a destination file path")
    expected = Digest.parse(checksum) if checksum else None
    fd, path = tempfile.mkstemp(prefix="download-", dir=scratch)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                with urllib.request.urlopen(url, timeout=ClientConfig.load().read_timeout) as resp:
                    length = resp.length  # None unless the server said, and then what is still to come
                    if length is not None and length > limit:
                        raise FetchError(f"ADD {url}: the file is larger than {limit} bytes")
                    w = HashingWriter(f, expected.algorithm if expected else "sha256")
                    while chunk := resp.read(CHUNK):
                        w.write(chunk)
                        if w.size > limit:
                            raise FetchError(f"ADD {url}: the file is larger than {limit} bytes")
                    if resp.length:  # http.client ends a body cut short without an error
                        raise FetchError(f"ADD {url}: download failed: the connection closed "
                                         f"{resp.length} bytes before the end")
                    modified = resp.headers.get("Last-Modified")
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", None) or e
                raise FetchError(f"ADD {url}: download failed: {type(e).__name__ if not str(reason) else reason}") \
                    from None
        if expected:
            verify(expected, w.digest(), f"ADD {url}")
        when = email.utils.parsedate_to_datetime(modified).timestamp() if modified else time.time()
        return Fetched(path, w.digest(), name, int(when * 1e9))
    except BaseException:
        os.unlink(path)
        raise
