"""Run the registry under gunicorn (several gevent workers, optional TLS, sendfile for blob bodies)."""

from __future__ import annotations

import logging
import os
import resource

from gunicorn.app.base import BaseApplication

from registry.app import create_app
from registry.config import Config
from registry.worker import RegistryWorker, deferred_handshake_context

log = logging.getLogger("registry")

# Descriptors a worker holds beyond its client sockets: blobs being sent, upload files, locks, logs.
_FILES_BESIDES_CONNECTIONS = 256


class _Gunicorn(BaseApplication):
    """gunicorn configured in code rather than from its own command line."""

    def __init__(self, config: Config):
        self.registry_config = config
        super().__init__()

    def load_config(self) -> None:
        c = self.registry_config
        settings = {
            "bind": [c.addr], "workers": c.workers, "worker_class": RegistryWorker,
            "worker_connections": c.connections,
            # The event loop answers the arbiter's heartbeat whatever requests do; this catches a wedged loop.
            "timeout": 300, "graceful_timeout": 10,
            # In gevent workers the keep-alive timer bounds the wait for every request's line and headers.
            "keepalive": c.header_timeout,
            "accesslog": None, "errorlog": "-", "loglevel": "warning", "proc_name": "dockyard-registry",
            "limit_request_line": 8190, "backlog": 2048,
            # Its default place, $XDG_RUNTIME_DIR or $HOME/.gunicorn, is one socket for every registry on the
            # host, and nothing of ours uses it.
            "control_socket_disable": True,
        }
        # No "sendfile" key: gunicorn reads any value set there (even True) as --no-sendfile.
        if c.tls_cert:
            settings.update(certfile=c.tls_cert, keyfile=c.tls_key, ssl_context=deferred_handshake_context)
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        # The master checked the config; a worker (re)started after the htpasswd file broke answers 401 until it
        # is fixed, rather than failing to boot and taking the whole registry down.
        return create_app(self.registry_config, strict=False)


def serve(config: Config) -> int:
    """Serve until interrupted; returns gunicorn's exit status."""
    os.makedirs(config.root, exist_ok=True)
    _raise_file_limit(config.connections + _FILES_BESIDES_CONNECTIONS)
    # Build the app once in the master so config errors (bad htpasswd, unreadable key) stop startup with a message,
    # and the token key is created before workers race for it.
    app = create_app(config)
    if config.projects:  # the initial admin (its password printed here once when generated) and the imports
        from registry.auth.htpasswd import read_entries
        from registry.model.users import bootstrap
        bootstrap(app.extensions["registry"].model, config.admin_password,
                  read_entries(config.htpasswd) if config.htpasswd else None, config.access,
                  "pull" in config.anonymous)
    _Gunicorn(config).run()
    return 0


def _raise_file_limit(wanted: int) -> None:
    """Lift the soft open-files limit towards `wanted` (the hard limit caps it): each connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning("open-files limit %d is below the %d connections per worker can need", target, wanted)
