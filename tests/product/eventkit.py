"""Test kit for events: a webhook receiver (a real HTTP server on loopback) and a model database with a project."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from artifactkit import database
from productkit import ADMIN  # noqa: F401 (re-exported for the tests)
from support import free_port, wait_for  # noqa: F401 (wait_for re-exported for the tests)


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 recording POSTs; `answers` are the statuses it gives in turn (then 200),
    `hang` makes it never answer, `endless` streams a body without end after a 500."""

    answers: list[int] = field(default_factory=list)
    hang: bool = False
    endless: bool = False
    got: list[Received] = field(default_factory=list)

    def start(self) -> Receiver:
        receiver = self
        self.released = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.got.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                             time.time()))
                if receiver.hang:
                    receiver.released.wait(60)
                    return
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                if receiver.endless:
                    self.end_headers()
                    while not receiver.released.is_set():
                        try:
                            self.wfile.write(b"x" * 65536)
                        except OSError:
                            return
                    return
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait(self, count: int, timeout: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.got) >= count, f"receiver got {len(self.got)} requests, wanted {count}"
        return self.got

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def model_db(tmp_path, project: str = "test", public: bool = False):
    """A migrated SQLite model in tmp_path with one project; (db, project id)."""
    from registry.model.db import Database
    from registry.model.tables import Project
    db = Database(f"sqlite:///{tmp_path}/registry.db")
    db.migrate()
    with db.session() as s:
        p = Project(name=project, public=public)
        s.add(p)
        s.flush()
        return db, p.id




def server_project(server, name: str = "test", public: bool = False) -> int:
    """Create a project in a running product server's database through the model's own function; its id.
    (The projects API is h-identity's: this keeps these tests independent of it.)"""
    from registry.model.projects import create_project
    db = database(server)
    try:
        return create_project(db, None, name, {"public": "true" if public else "false"}).id
    finally:
        db.engine.dispose()


def server_user(server, username: str, password: str) -> None:
    """Create a local user in a running product server's database (the model's own function)."""
    from registry.model.users import create_user
    db = database(server)
    try:
        create_user(db, username, password)
    finally:
        db.engine.dispose()
