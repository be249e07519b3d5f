"""Each worker's background loops over the product's model: the webhook sender, the retention scheduler and the
replication worker, started on the worker's first request (after fork: never in gunicorn's master)."""

from __future__ import annotations

import os

from registry.context import Registry


def start(reg: Registry) -> None:
    """Start this process's loops for the app of `reg` (once per process and app)."""
    assert reg.model is not None, "background loops without --projects"
    from registry.events import webhooks
    from registry.model import retention
    from registry.replication import engine
    webhooks.start(reg.model)
    retention.ensure_scheduler(reg.model, reg.storage, reg.config.gc_grace)
    engine.start(reg.model, reg.storage, reg.config.root)
    reg.background_pid = os.getpid()
