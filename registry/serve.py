"""Run the registry under gunicorn (several gthread workers, optional TLS, sendfile for blob bodies)."""

from __future__ import annotations

import logging
import os

from gunicorn.app.base import BaseApplication

from registry.app import create_app
from registry.config import Config

log = logging.getLogger("registry")


class _Gunicorn(BaseApplication):
    """gunicorn configured in code rather than from its own command line."""

    def __init__(self, config: Config):
        self.registry_config = config
        super().__init__()

    def load_config(self) -> None:
        c = self.registry_config
        settings = {
            "bind": [c.addr], "workers": c.workers, "worker_class": "gthread", "threads": c.threads,
            # Uploads of large layers can stream for a long time; a stuck worker is still caught.
            "timeout": 300, "graceful_timeout": 10, "keepalive": 75,
            "accesslog": None, "errorlog": "-", "loglevel": "warning", "proc_name": "dockyard-registry",
            "limit_request_line": 8190, "backlog": 2048,
        }
        # No "sendfile" key: gunicorn reads any value set there (even True) as --no-sendfile.
        if c.tls_cert:
            settings.update(certfile=c.tls_cert, keyfile=c.tls_key)
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        return create_app(self.registry_config)


def serve(config: Config) -> int:
    """Serve until interrupted; returns gunicorn's exit status."""
    os.makedirs(config.root, exist_ok=True)
    # Build the app once in the master so config errors (bad htpasswd, unreadable key) stop startup with a message,
    # and the token key is created before workers race for it.
    create_app(config)
    _Gunicorn(config).run()
    return 0
