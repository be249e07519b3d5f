"""ADD <url>: download a remote file into the build's scratch space, verifying --checksum when given."""

from __future__ import annotations

import email.utils
import http
import http.client
import os
import posixpath
import tempfile
import time
import urllib.parse
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

    HTTP goes as the registry client's does (registry.client): the host's certs.d and insecure setting for
    TLS, the proxy environment, and a server silent for longer than daemon.json's `read-timeout` fails it.
    """
    from registry.client.config import ClientConfig
    from registry.client.connections import TransportError
    from registry.client.transport import describe, host_pool

    u = urllib.parse.urlsplit(url)
    name = posixpath.basename(u.path)
    if not name:
        raise FetchError(f"ADD {url}: cannot determine a file name from the URL; give a destination file path")
    expected = Digest.parse(checksum) if checksum else None
    config = ClientConfig.load()
    pool = host_pool(u.netloc, config)
    fd, path = tempfile.mkstemp(prefix="download-", dir=scratch)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                r = pool.request("GET", url, read_timeout=config.read_timeout, follow=True)
                with r:
                    r.disarm()  # a big file takes its time; each read is still bounded by the read timeout
                    if not 200 <= r.status_code < 300:
                        raise FetchError(f"ADD {url}: download failed: {_reason(r.status_code)}")
                    length = _length(r.headers.get("Content-Length"))
                    if length is not None and length > limit:
                        raise FetchError(f"ADD {url}: the file is larger than {limit} bytes")
                    w = HashingWriter(f, expected.algorithm if expected else "sha256")
                    try:
                        while chunk := r.read(CHUNK):
                            w.write(chunk)
                            if w.size > limit:
                                raise FetchError(f"ADD {url}: the file is larger than {limit} bytes")
                    except (OSError, http.client.HTTPException) as e:
                        raise TransportError(e, connecting=False) from None
                    if length is not None and w.size < length:  # http.client ends a body cut short quietly
                        raise FetchError(f"ADD {url}: download failed: the connection closed "
                                         f"{length - w.size} bytes before the end")
                    modified = r.headers.get("Last-Modified")
            except TransportError as e:
                raise FetchError(f"ADD {url}: download failed: {describe(e, u.netloc)}") from None
            finally:
                pool.close()
        if expected:
            verify(expected, w.digest(), f"ADD {url}")
        when = email.utils.parsedate_to_datetime(modified).timestamp() if modified else time.time()
        return Fetched(path, w.digest(), name, int(when * 1e9))
    except BaseException:
        os.unlink(path)
        raise


def _length(value: str | None) -> int | None:
    """The Content-Length a server promised, None when it gave none (or nonsense, which http.client refuses)."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _reason(status: int) -> str:
    """An HTTP status as words (Not Found), or its number when it has no standard name."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP status {status}"
