"""How many waiting connections a worker accepts when it wakes on the listening socket its siblings share: its share
of the accept queue, so a burst is neither left in the backlog for a loop pass per connection nor taken whole by the
first worker to wake."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from registry.worker import accept_share


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0), backlog=64) as s:
        yield s


def _connect(listener: socket.socket, n: int) -> list[socket.socket]:
    """`n` connections, returned once the listener's accept queue holds them all (a lone worker's share is all)."""
    clients = [socket.create_connection(listener.getsockname()) for _ in range(n)]
    deadline = time.monotonic() + 10  # the handshakes' last ACKs are processed in the kernel, not always at once
    while accept_share(listener, 1) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return clients


def test_a_worker_takes_its_share_of_a_burst_rounded_up(listener):
    clients = _connect(listener, 7)
    try:
        assert accept_share(listener, 1) == 7
        assert accept_share(listener, 2) == 4
        assert accept_share(listener, 4) == 2
        for _ in range(5):
            listener.accept()[0].close()
        assert accept_share(listener, 2) == 1  # 2 left: one each
        assert accept_share(listener, 4) == 1  # fewer than workers: still one, not none
    finally:
        for c in clients:
            c.close()


def test_an_empty_queue_still_lets_a_wake_accept_one(listener):
    """gevent asks only when the socket is readable; a connection that came after the count is taken all the same."""
    assert accept_share(listener, 2) == 1
