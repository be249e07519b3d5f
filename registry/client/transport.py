"""HTTP to one registry: scheme and TLS choice, certs.d CAs, auth, retries with backoff, 429 Retry-After."""

from __future__ import annotations

import email.utils
import http.client
import os
import socket
import ssl
import threading
import time
from urllib.parse import urljoin, urlsplit

from dockyard.distribution import CODES, RegistryError
from dockyard.errors import NotFound
from registry.client.auth import Authenticator, AuthError, load_credentials
from registry.client.config import ClientConfig, certs_dir
from registry.client.connections import ERROR_BODY_LIMIT, Body, BodyTooLarge, Pool, Response, TooSlow, TransportError

CONNECT_TIMEOUT = 15
# A tags or catalog page is read into memory up to this size (a registry may ignore the page size it is asked
# for and list everything at once); other bodies have their own bounds, or are streamed to disk or discarded.
LIST_BODY_LIMIT = 4 << 20
# The longest a registry's error message may take in our one-line errors.
DETAIL_CHARS = 200
MAX_BACKOFF = 10.0
MAX_RETRY_AFTER = 120.0
RETRY_STATUSES = (429, 500, 502, 503, 504)


class Unreachable(RegistryError):
    """The registry could not be connected to (DNS, refused, timeout, reset)."""


class Transport:
    """Pooled HTTP connections to one registry host, with its auth state."""

    def __init__(self, host: str, config: ClientConfig | None = None, auth: Authenticator | None = None):
        self.host = host
        self.config = config or ClientConfig.load()
        self.insecure = self.config.is_insecure(host)
        self.pool = host_pool(host, self.config)
        # By default the credentials `dockyard login` saved; a registry's pull-through cache brings its own.
        self.auth = auth or Authenticator(host, load_credentials(host))
        self.base: str | None = None
        self._connecting = threading.Lock()

    # ---- connecting ----------------------------------------------------------------------------

    def connect(self) -> Response:
        """Find the scheme (HTTPS; HTTP too when insecure) with GET /v2/, and learn the auth challenge."""
        with self._connecting:
            if self.base is not None:
                return self._ping(self.base)
            response, self.base = self._probe()
            return response

    def _probe(self) -> tuple[Response, str]:
        try:
            return self._ping(f"https://{self.host}"), f"https://{self.host}"
        except TransportError as e:
            if self.insecure and not _is_dns_failure(e):
                return self._plain_http()
            if not isinstance(e.cause, ssl.SSLError):
                raise self._unreachable(e) from None
            if self._speaks_http():
                raise RegistryError(
                    message=f"registry {self.host} answers only plain HTTP; if you trust it, add \"{self.host}\" to "
                    f"\"insecure-registries\" in {self.config.path}") from None
            raise RegistryError(
                message=f"TLS with registry {self.host} failed ({_ssl_reason(e)}); put its CA certificate in "
                f"{os.path.join(certs_dir(), self.host, 'ca.crt')} or add it to \"insecure-registries\" "
                f"in {self.config.path}") from None

    def _plain_http(self) -> tuple[Response, str]:
        try:
            return self._ping(f"http://{self.host}"), f"http://{self.host}"
        except TransportError as e:
            raise self._unreachable(e) from None

    def _ping(self, base: str) -> Response:
        attempt = 0
        while True:
            attempt += 1
            r = self.pool.request("GET", f"{base}/v2/", read_timeout=self.config.read_timeout, follow=True)
            r.buffer(ERROR_BODY_LIMIT, truncate=True)  # its body means nothing; read only to reuse the connection
            if r.status_code not in RETRY_STATUSES or attempt >= self.config.max_attempts:
                break
            delay = retry_after(r.headers.get("Retry-After")) if r.status_code == 429 else None
            time.sleep(delay if delay is not None else backoff(attempt))
        if r.status_code == 401:
            # Basic credentials are then sent up front; Bearer tokens are fetched per scope when first needed.
            self.auth.answer(r.headers.get("WWW-Authenticate", ""), (), self, sent=True, fetch=False)
        elif r.status_code == 429:
            raise RegistryError(message=f"{self.host}: too many requests (rate limited by the registry)")
        elif r.status_code != 200:
            raise RegistryError(message=f"{self.host} does not look like a registry: GET /v2/ answered {r.status_code}")
        return r

    def _speaks_http(self) -> bool:
        try:
            r = self.pool.request("GET", f"http://{self.host}/v2/", read_timeout=CONNECT_TIMEOUT)
        except TransportError:
            return False
        r.close()
        return r.status_code in (200, 401) or "Docker-Distribution-Api-Version" in r.headers

    def _unreachable(self, e: TransportError) -> Unreachable:
        if _is_dns_failure(e):
            return Unreachable(message=f"cannot resolve registry host {self.host}")
        return Unreachable(message=describe(e, f"registry {self.host}"))

    # ---- requests ------------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        """Absolute URL for an API path or a (possibly relative) Location header."""
        if self.base is None:
            with self._connecting:
                # Parallel transfers start together: one of them probes, the others wait for its answer.
                if self.base is None:
                    response, self.base = self._probe()
                    response.close()
        return urljoin(self.base + "/", path_or_url)

    def fetch(self, url: str, params: list[tuple[str, str]], headers: dict[str, str], limit: int) -> Response:
        """One GET with nothing added (for a token realm); a 200 body of at most `limit` bytes is read."""
        r = self.pool.request("GET", url, headers, params, read_timeout=self.config.read_timeout, follow=True)
        r.buffer(limit, truncate=r.status_code != 200)
        return r

    def request(self, method: str, path: str, scopes: tuple[str, ...] = (), *, headers: dict | None = None,
                params: dict | None = None, body: Body = None, stream: bool = False, retry: bool = True,
                limit: int | None = None, patience: float = 1) -> Response:
        """Send one API request, answering auth challenges and retrying transient failures with backoff.

        The body of a successful answer is read into memory when `limit` bytes are allowed for it (more is an
        error), left unread with `stream`, and otherwise discarded. The registry may stay silent for the
        configured read timeout times `patience`.
        """
        url = self.url(path)
        attempts = self.config.max_attempts if retry else 1
        fetched = False
        attempt = 0
        while True:
            attempt += 1
            h = dict(headers or {})
            # Credentials are for the registry, never for another host a Location or Link names.
            auth = self._auth_header(scopes) if _same_origin(url, self.base) else None
            if auth:
                h["Authorization"] = auth
            try:
                r = self.pool.request(method, url, h, params, body, self.config.read_timeout * patience,
                                      follow=method in ("GET", "HEAD"))
                if stream:
                    r.disarm()
                else:
                    ok = 200 <= r.status_code < 300
                    r.buffer(limit if ok and limit is not None else ERROR_BODY_LIMIT,
                             truncate=not ok or limit is None)
            except BodyTooLarge as e:
                raise RegistryError(message=f"{self.host} answered {method} {urlsplit(url).path} with {e}") from None
            except TransportError as e:
                if attempt >= attempts or _is_dns_failure(e):
                    raise self._unreachable(e) from None
                time.sleep(backoff(attempt))
                continue
            if r.status_code == 401 and not fetched:
                fetched = True
                if self.auth.answer(r.headers.get("WWW-Authenticate", ""), scopes, self, sent=bool(auth)):
                    r.close()
                    attempt -= 1
                    continue
                return r
            if r.status_code in RETRY_STATUSES and attempt < attempts:
                delay = retry_after(r.headers.get("Retry-After")) if r.status_code == 429 else None
                r.close()
                time.sleep(delay if delay is not None else backoff(attempt))
                continue
            return r

    def _auth_header(self, scopes: tuple[str, ...]) -> str | None:
        """A header for these scopes; with a known Bearer challenge, fetch the token up front (no 401 trip)."""
        header = self.auth.header(scopes)
        if header is None and self.auth.bearer:
            self.auth.refresh(scopes, self, force=False)
            header = self.auth.header(scopes)
        return header

    def close(self) -> None:
        self.pool.close()


def tls_context(host: str, config: ClientConfig) -> ssl.SSLContext:
    """Verify against the system CAs or the host's certs.d ca.crt; insecure hosts are not verified at all."""
    cert_dir = os.path.join(certs_dir(), host)
    if config.is_insecure(host):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif os.path.isfile(os.path.join(cert_dir, "ca.crt")):
        ctx = ssl.create_default_context(cafile=os.path.join(cert_dir, "ca.crt"))
    else:
        ctx = ssl.create_default_context()
    client_cert = (os.path.join(cert_dir, "client.cert"), os.path.join(cert_dir, "client.key"))
    if all(os.path.isfile(p) for p in client_cert):
        ctx.load_cert_chain(*client_cert)
    return ctx


def host_pool(host: str, config: ClientConfig) -> Pool:
    """Connections to `host` (host[:port]) as the client makes them: its certs.d and insecure setting for TLS, the
    proxy environment, the connect timeout (a registry's, or any other HTTP server's, as for ADD <url>)."""
    return Pool(lambda: tls_context(host, config), "dockyard", CONNECT_TIMEOUT)


def check(r: Response, what: str, ok: tuple[int, ...] = (200,)) -> Response:
    """Return the response when its status is expected, else raise an error naming `what`."""
    if r.status_code in ok:
        return r
    code, detail = remote_error(r)
    r.close()
    if r.status_code == 401:
        raise AuthError(f"{what}: unauthorized: authentication required" + (f" ({detail})" if detail else ""))
    if r.status_code == 403:
        raise AuthError(f"{what}: denied" + (f": {detail}" if detail else ""))
    if r.status_code == 404:
        raise NotFound(f"not found: {what}" + (f" ({detail})" if detail else ""))
    if r.status_code == 429:
        raise RegistryError(code, status=429, message=f"{what}: too many requests (rate limited by the registry)")
    raise RegistryError(code, status=r.status_code,
                        message=f"{what}: registry answered {r.status_code}" + (f": {detail}" if detail else ""))


def remote_error(r: Response) -> tuple[str, str]:
    """(the first spec error code, the registry's own messages in one short line) from a distribution error
    body; UNKNOWN and "" for what is not one."""
    try:
        r.buffer(ERROR_BODY_LIMIT, truncate=True)
        errors = [e for e in r.json().get("errors") or [] if isinstance(e, dict)]
        code = next((e["code"] for e in errors if isinstance(e.get("code"), str) and e["code"] in CODES), "UNKNOWN")
        return code, one_line("; ".join(str(e.get("message") or e.get("code")) for e in errors))
    except (ValueError, AttributeError, TypeError, TransportError):
        return "UNKNOWN", ""


def one_line(text: str, limit: int = DETAIL_CHARS) -> str:
    """Text a server sent, fit for a one-line error: control characters and runs of space squeezed, cut short."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe(e: TransportError, who: str) -> str:
    """What went wrong below HTTP with `who` (a registry or a token server), in words."""
    cause = e.cause
    if isinstance(cause, TooSlow):
        return f"{who} answers too slowly ({cause})"
    if isinstance(cause, TimeoutError):
        return f"cannot connect to {who}: timed out" if e.connecting else f"{who} stopped answering (timed out)"
    if isinstance(cause, ConnectionRefusedError):
        return f"cannot connect to {who}: connection refused"
    if "No route to host" in str(cause) or "Network is unreachable" in str(cause):
        return f"cannot connect to {who}: host unreachable"
    if isinstance(cause, http.client.HTTPException) and not e.connecting:
        return f"{who} sent a malformed answer ({type(cause).__name__}: {one_line(str(cause))})"
    return f"connection to {who} failed: {one_line(str(cause)) or type(cause).__name__}"


def backoff(attempt: int) -> float:
    """Exponential backoff: 0.5 s, 1 s, 2 s … capped."""
    return min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), MAX_RETRY_AFTER)


def _same_origin(url: str, base: str | None) -> bool:
    a, b = urlsplit(url), urlsplit(base or "")
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _is_dns_failure(e: TransportError) -> bool:
    return isinstance(e.cause, socket.gaierror)


def _ssl_reason(e: Exception) -> str:
    text = str(e)
    for marker in ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "hostname mismatch", "self-signed",
                   "self signed", "unable to get local issuer certificate"):
        if marker in text:
            return {"CERTIFICATE_VERIFY_FAILED": "certificate verify failed",
                    "WRONG_VERSION_NUMBER": "the server does not speak TLS"}.get(marker, marker)
    return "TLS handshake failed"
