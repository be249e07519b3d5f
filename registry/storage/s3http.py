"""S3 object calls as SigV4-signed HTTP requests on one urllib3 pool: the S3 driver's hot path.

botocore spends about 2 ms of CPU on every call (its event hooks, parameter validation, serialisation, endpoint
rules, checksums, response parsing), ten times the HTTP exchange itself, and the registry makes a dozen calls per
pushed blob.  GET/HEAD/PUT/DELETE/COPY of one object and the two small listings the registry makes on every upload
request go out here instead, signed as botocore signs them (its credentials, its bucket URL), retried as its
"standard" mode retries (connection errors, 5xx, throttling); everything else stays on botocore.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import io
import random
import time
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any, BinaryIO, cast

from registry.storage.driver import StorageError

_ATTEMPTS = 5  # botocore's standard mode: the first try and four retries
_RETRY_STATUS = {500, 502, 503, 504}
_RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                "ServiceUnavailable"}
# The query parameters signature version 2 signs (those the driver sends).
_V2_SUBRESOURCES = {"delete", "partNumber", "uploadId", "uploads"}
_ERROR_MAX = 64 << 10  # the most of an error answer read
_NOT_FOUND = {"NoSuchKey", "NotFound", "NoSuchUpload"}


class S3Error(StorageError):
    """S3 answered a call with an error (after the retries)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def _quote(value: str, safe: str = "~") -> str:
    return urllib.parse.quote(value, safe=safe)


def _xml_code(body: bytes) -> tuple[str, str]:
    """An S3 error body's (Code, Message), ("", "") when it is not one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", ""
    if root.tag.rpartition("}")[2] != "Error":
        return "", ""
    return root.findtext("Code") or "", root.findtext("Message") or ""


def xml(body: bytes) -> ET.Element:
    """An S3 answer's XML document, its tags without S3's namespace."""
    root = ET.fromstring(body)
    for e in root.iter():
        e.tag = e.tag.rpartition("}")[2]
    return root


def _finish(response: Any) -> None:
    """Done with an answer: its connection back to the pool when it was read to the end, else dropped."""
    if response.length_remaining == 0:
        response.release_conn()
    else:
        response.close()


class _Body(io.RawIOBase):
    """An object's streamed content: read and close only (no fileno: a server must not sendfile the socket)."""

    def __init__(self, response: Any):
        self._r = response

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._r.read(len(b))
        b[:len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        return self._r.read(None if size is None or size < 0 else size)

    def close(self) -> None:
        if not self.closed:
            _finish(self._r)
        super().close()


class S3Http:
    """Signed requests for the objects of one bucket at `bucket_url` (botocore's URL of the bucket, "/"-ended)."""

    def __init__(self, bucket_url: str, bucket: str, region: str, credentials: Any, ca_certs: str | None,
                 v4: bool = True):
        import urllib3

        parts = urllib.parse.urlsplit(bucket_url)
        self._https = parts.scheme == "https"
        self._host = parts.netloc
        self._base = parts.path
        self._bucket = bucket
        self._region = region
        self._credentials = credentials
        self._v4 = v4
        self._keys: dict[tuple[str, str], bytes] = {}
        # Gevent workers run many requests at once: more connections than that are opened and dropped, not waited for.
        kw = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_certs} if self._https else {}
        self._pool = urllib3.connection_from_url(bucket_url, maxsize=32, block=False, retries=False,
                                                 timeout=urllib3.Timeout(connect=60, read=60), **kw)

    def _signing_key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = f"AWS4{secret}".encode()
            for part in (day, self._region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}  # one day's key at a time
        return key

    def _sign(self, method: str, key: str, path: str, query: dict[str, str], qs: str, headers: dict[str, str],
              body: bytes) -> None:
        creds = self._credentials.get_frozen_credentials()
        if not self._v4:
            self._sign_v2(creds, method, key, query, headers)
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers["host"] = self._host
        headers["x-amz-date"] = stamp
        # Over https the payload is not hashed (TLS protects it), as botocore does.
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD" if self._https else hashlib.sha256(body).hexdigest()
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        names = sorted(headers)
        canonical = "\n".join([method, path, qs, *(f"{n}:{headers[n].strip()}" for n in names), "",
                               ";".join(names), headers["x-amz-content-sha256"]])
        scope = f"{stamp[:8]}/{self._region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(creds.secret_key, stamp[:8]), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")

    def _sign_v2(self, creds: Any, method: str, key: str, query: dict[str, str], headers: dict[str, str]) -> None:
        """S3's signature version 2 (storage.s3.v4auth false), for services that know no other."""
        headers["date"] = email.utils.formatdate(usegmt=True)
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        amz = "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers) if k.startswith("x-amz-"))
        sub = "&".join(k if v == "" else f"{k}={v}" for k, v in sorted(query.items()) if k in _V2_SUBRESOURCES)
        resource = f"/{self._bucket}/{_quote(key, '/~')}" + (f"?{sub}" if sub else "")
        to_sign = (f"{method}\n{headers.get('content-md5', '')}\n{headers.get('content-type', '')}\n"
                   f"{headers['date']}\n{amz}{resource}")
        signature = base64.b64encode(hmac.new(creds.secret_key.encode(), to_sign.encode(), hashlib.sha1).digest())
        headers["authorization"] = f"AWS {creds.access_key}:{signature.decode()}"

    def request(self, method: str, key: str, query: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, body: bytes = b"", stream: bool = False) -> Any:
        """The answer (a urllib3 response) of a 2xx; FileNotFoundError for a missing key or upload, S3Error else.
        stream=True: the body is left unread (`body()` reads it)."""
        import urllib3

        path = self._base + _quote(key, "/~")
        qs = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted((query or {}).items()))
        for attempt in range(_ATTEMPTS):
            sent = {k.lower(): v for k, v in (headers or {}).items()}
            self._sign(method, key, path, query or {}, qs, sent, body)
            try:
                r = self._pool.urlopen(method, f"{path}?{qs}" if qs else path, body=body or None, headers=sent,
                                       preload_content=False, decode_content=False, redirect=False)
            except urllib3.exceptions.HTTPError as e:
                if attempt + 1 == _ATTEMPTS:
                    raise S3Error(f"S3 bucket {self._bucket}: {method} {key}: {e}", "") from None
                self._backoff(attempt)
                continue
            if r.status < 300 and "x-amz-copy-source" not in sent:
                if not stream:
                    r.read(cache_content=True)  # kept as r.data
                    _finish(r)
                return r
            data = r.read(_ERROR_MAX)  # an answer that is not the content, bounded
            _finish(r)
            code, message = _xml_code(data)
            if r.status < 300 and not code:  # a copy's error can come in a 200 (S3 answers before it is done)
                return r
            if r.status == 404 and (method == "HEAD" or code in _NOT_FOUND):
                raise FileNotFoundError(code or "NotFound")
            if (r.status in _RETRY_STATUS or code in _RETRY_CODES) and attempt + 1 < _ATTEMPTS:
                self._backoff(attempt)
                continue
            raise S3Error(f"S3 bucket {self._bucket}: {method} {key}: {r.status} {code or r.reason}: "
                          f"{message[:200]}", code)
        raise AssertionError("unreachable")

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(random.uniform(0, min(20.0, 2.0 ** attempt)))  # botocore's full jitter, base 1 s

    @staticmethod
    def body(response: Any) -> BinaryIO:
        """A streamed answer's content as a file object."""
        return cast(BinaryIO, _Body(response))
