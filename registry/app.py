"""The Flask application: blueprints, the auth gate, spec-shaped errors, access log and metrics."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import time

from flask import Flask, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from dockyard.digest import InvalidDigest
from dockyard.errors import DigestMismatch
from dockyard.fsutil import DiskFull
from registry import background
from registry.auth import CATALOG, IDENTITY, METRICS, Authorizer, Need
from registry.auth.endpoint import bp as token_bp
from registry.config import ACTIONS, Config
from registry.context import BodyError, Registry, state
from registry.endpoints import BLUEPRINTS
from registry.errors import RegistryError, error_response
from registry.metrics import Metrics
from registry.names import check_repository
from registry.storage import UploadUnknown, open_storage

log = logging.getLogger("registry")
access_log = logging.getLogger("registry.access")

# endpoint -> what it needs: "public", "identity" (valid credentials when auth is on), "catalog", "metrics", or an
# action on the repository named in its URL.  An endpoint missing here is refused: the gate fails closed.
ACCESS: dict[str, str] = {
    "base.version": "identity", "base.healthz": "public", "base.metrics": "metrics", "token.token": "public",
    "catalog.catalog": "catalog",
    "blobs.get_blob": "pull", "blobs.delete_blob": "delete",
    "uploads.start_upload": "push", "uploads.upload_status": "push", "uploads.upload_chunk": "push",
    "uploads.finish_upload": "push", "uploads.cancel_upload": "push",
    "manifests.get_manifest": "pull", "manifests.put_manifest": "push", "manifests.delete_manifest": "delete",
    "tags.list_tags": "pull", "referrers.referrers": "pull",
}
_NEEDS = {"identity": IDENTITY, "catalog": CATALOG, "metrics": METRICS}
_SELF_GUARDED = ("api", "ui")


def create_app(config: Config, strict: bool = True) -> Flask:
    """A registry app on the storage `config` names; not strict: an htpasswd file broken since startup fails closed."""
    app = Flask("registry", static_folder=None)  # no /static/ route: the registry serves no files of its own
    storage = open_storage(*config.storage())
    storage.create()
    model = _open_model(config)
    app.extensions["registry"] = Registry(config, storage, Authorizer(config, strict, model),
                                          Metrics(os.path.join(os.path.abspath(config.root), "metrics")),
                                          model, _open_proxy(config, storage))
    for bp in [*BLUEPRINTS, token_bp]:
        app.register_blueprint(bp)
    if config.projects:
        from registry.api import blueprint
        from registry.ui import blueprint as ui_blueprint
        app.register_blueprint(blueprint())
        app.register_blueprint(ui_blueprint())
    app.before_request(_gate)
    app.register_error_handler(Exception, _handle_error)
    _setup_access_log(config.access_log)
    # Flask's documented way to wrap its WSGI app in middleware; mypy sees only a method being replaced.
    app.wsgi_app = _Observer(app.wsgi_app, app.extensions["registry"].metrics)  # type: ignore[method-assign]
    return app


def _open_model(config: Config):
    """The product's metadata database, migrated, when `projects` is on."""
    if not config.projects:
        return None
    from registry.model.db import default_url, open_database
    return open_database(config.database_url or default_url(config.root))


def _open_proxy(config: Config, storage):
    """The upstream of a pull-through cache, when `proxy.remoteurl` is set."""
    if not config.proxy_remote_url:
        return None
    from registry.proxy import Proxy
    return Proxy(config, storage)


def _gate() -> None:
    """Start the model's background loops in a new worker; validate the repository name, apply read-only/delete
    switches, and authorize the request."""
    reg = state()
    if reg.model is not None and reg.background_epoch != background.epoch:  # here: a hook more costs every request
        from registry.api.webhooks import start_background
        start_background(reg)
    # The request itself, not Flask's proxy: each attribute read through the proxy costs a context lookup.
    req = request._get_current_object()  # type: ignore[attr-defined]
    environ = req.environ
    rule = req.url_rule
    environ["registry.route"] = rule.rule if rule is not None else "unmatched"
    endpoint = req.endpoint
    if endpoint is None:  # nothing matched: the routing error (404, 405) is the answer
        return
    if req.blueprint in _SELF_GUARDED:  # the product's API and UI: each view declares its need
        from flask import current_app

        from registry.guard import authorize
        environ["registry.user"] = getattr(authorize(current_app.view_functions[endpoint]), "name", None)
        return
    access = ACCESS.get(endpoint)
    name = (req.view_args or {}).get("name")
    if access is None or (access in ACTIONS and name is None):
        log.error("refused %s %s: endpoint %s has no access rule", req.method, req.path, endpoint)
        raise RegistryError("DENIED", message="no access rule for this endpoint")
    if access == "public":
        return
    if name is not None:
        check_repository(name)
    if access in ("push", "delete") and reg.config.read_only:
        raise RegistryError("UNSUPPORTED", "the registry is read-only")
    if access in ("push", "delete") and reg.proxy is not None:  # as distribution's proxy mode
        raise RegistryError("UNSUPPORTED", {"upstream": reg.proxy.host},
                            message="the registry is a pull-through cache: pushes and deletes are refused")
    if access == "delete" and not reg.config.delete_enabled:
        raise RegistryError("UNSUPPORTED", "deletes are disabled")
    need = _NEEDS.get(access) or Need(name, access)
    environ["registry.user"] = reg.auth.check(req, need)


def _handle_error(e: Exception):
    """Every failure as the spec's JSON error; never a traceback in the body."""
    if isinstance(e, RegistryError):
        return e.response()
    if request.blueprint in _SELF_GUARDED:
        return _product_error(e)
    if isinstance(e, (DigestMismatch, InvalidDigest)):
        return RegistryError("DIGEST_INVALID", str(e)).response()
    if isinstance(e, UploadUnknown):
        return RegistryError("BLOB_UPLOAD_UNKNOWN", str(e)).response()
    if isinstance(e, BodyError):
        return RegistryError("BLOB_UPLOAD_INVALID", f"request body: {e}").response()
    if isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)):
        return error_response("BLOB_UPLOAD_INVALID", "no space left on the registry's storage", None, 507)
    if isinstance(e, HTTPException):
        code = "SIZE_INVALID" if e.code == 413 else "UNSUPPORTED"
        resp = error_response(code, e.name.lower(), None, e.code or 400)
        if isinstance(e, MethodNotAllowed) and e.valid_methods:
            resp.headers["Allow"] = ", ".join(e.valid_methods)
        return resp
    log.exception("internal error handling %s %s", request.method, request.path)
    return error_response("UNKNOWN", "internal server error", None, 500)


def _product_error(e: Exception):
    """The API's failures in Harbor's error shape; the UI's as pages, a missing sign-in as a redirect to it."""
    from registry.api.common import ApiError
    from registry.model.errors import ModelError
    if isinstance(e, HTTPException):
        e = ApiError(e.code or 400, e.name)
    elif isinstance(e, ModelError) and not isinstance(e, ApiError):
        e = ApiError(e.status, e.message)
    elif not isinstance(e, ApiError):
        log.exception("internal error handling %s %s", request.method, request.path)
        e = ApiError(500, "internal server error")
    if request.blueprint == "ui":
        from registry.ui.errors import error_page
        return error_page(e.status, e.message)
    return e.response()


def _setup_access_log(target: str) -> None:
    access_log.propagate = False
    for handler in list(access_log.handlers):
        access_log.removeHandler(handler)
    if not target:
        access_log.disabled = True
        return
    handler = logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.disabled = False


class _Observer:
    """WSGI middleware: adds the API version header, counts metrics and writes one JSON access-log line.

    It never wraps the response iterator, so gunicorn still sees its file wrapper and can use sendfile."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        seen: dict = {}

        def _start(status, headers, exc_info=None):
            headers.append(("Docker-Distribution-Api-Version", "registry/2.0"))
            seen["status"], seen["headers"] = status, headers
            return start_response(status, headers, exc_info)

        result = self.app(environ, _start)
        status = seen.get("status", "500")[:3]
        bytes_out = 0
        if environ.get("REQUEST_METHOD") != "HEAD":
            for key, value in seen.get("headers", ()):
                if key.lower() == "content-length":
                    bytes_out = int(value) if value.isdigit() else 0
        bytes_in = environ.get("registry.bytes_in", 0)
        route = environ.get("registry.route", "unmatched")
        method = environ.get("REQUEST_METHOD", "")
        self.metrics.observe(route, method, status, bytes_in, bytes_out)
        if not access_log.disabled:
            access_log.info(json.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "remote": environ.get("REMOTE_ADDR"), "method": method,
                "path": environ.get("PATH_INFO"), "status": int(status) if status.isdigit() else 0,
                "bytes_in": bytes_in, "bytes_out": bytes_out, "user": environ.get("registry.user"),
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "user_agent": environ.get("HTTP_USER_AGENT", "")[:200]}))
        return result
