"""The background loops of a --projects worker (webhook sender, retention scheduler, replication worker, event and
metrics flushers): all owned by registry.background, which stops them after their last writes."""

from __future__ import annotations

import json
import threading
import time

from registry import background
from registry.app import create_app
from registry.config import Config
from registry.events import Event, audit, emit

LOOPS = {"webhook-sender", "retention-scheduler", "replication-worker", "metrics-flush", "event-flusher"}


def threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.is_alive()}


def test_stop_all_ends_every_loop_after_its_last_writes(tmp_path):
    app = create_app(Config(root=str(tmp_path / "root"), projects=True, access_log=""))
    db = app.extensions["registry"].model
    assert app.test_client().get("/v2/").status_code == 401  # the gate started the worker's loops
    # Deferred (written by the event flusher within FLUSH_EVERY): stopped at once, it must still be written.
    emit(db, Event("PULL_ARTIFACT", "test", "test/app", operator="eve", remote_addr="127.0.0.1",
                   resources=({"tag": "1"},), time=time.time()))
    assert threads() >= LOOPS
    started = time.monotonic()
    assert background.stop_all() == []
    assert time.monotonic() - started < 2  # woken, not waited out (the schedulers sleep for seconds)
    assert not LOOPS & threads()
    rows, total = audit.query(db, audit.AuditQuery(username="eve"), 0, 10)
    assert total == 1 and rows[0].operation == "pull"
    (counts,) = (json.loads(p.read_text()) for p in (tmp_path / "root" / "metrics").iterdir())
    assert ["/v2/", "GET", "401", 1] in counts["requests"]
    # A later request starts them anew.
    assert app.test_client().get("/v2/").status_code == 401
    assert threads() >= LOOPS - {"event-flusher"}
    db.engine.dispose()
