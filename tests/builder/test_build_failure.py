"""A failed or cancelled build keeps every step it finished in the build cache."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

# Two big layers in a row: the second one's blob is still queued for compression when the next RUN fails.
BIG = "RUN head -c 30000000 /dev/urandom > /{0}\n"


def _cached_steps(err: str) -> set[int]:
    return {int(line.split()[0][1:]) for line in err.splitlines() if line.endswith(" CACHED")}


def test_fixing_the_failing_run_reuses_every_earlier_step(context, build):
    head = "FROM busybox\nRUN echo a > /a\n" + BIG.format("big1") + BIG.format("big2") + "COPY f /f\n"
    ctx = context({"f": "x", "Dockerfile": head + "RUN exit 3\n"})
    res = build(ctx, check=False)
    assert res.code == 1
    assert res.err.strip().splitlines()[-1] == "Error: Dockerfile:6: step 6/6: RUN exit 3: exit code 3"
    (ctx / "Dockerfile").write_text(head + "RUN echo fixed > /fixed\n")
    res = build(ctx, "-t", "fixed")
    assert _cached_steps(res.err) == {2, 3, 4, 5}, res.err
    assert "#6 DONE" in res.err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_cancels_and_keeps_finished_steps(context, build, store_root, signum):
    head = "FROM busybox\nRUN echo a > /a\n" + BIG.format("big")
    ctx = context({"Dockerfile": head + "RUN echo started; sleep 60\n"})
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "build", str(ctx)], stderr=subprocess.PIPE,
                            env={**os.environ, "DOCKYARD_ROOT": store_root})
    assert proc.stderr is not None
    err = b""
    deadline = time.monotonic() + 120
    while b"#4 started" not in err:
        assert time.monotonic() < deadline, err.decode()
        select.select([proc.stderr], [], [], 1)
        chunk = os.read(proc.stderr.fileno(), 65536)
        assert chunk, err.decode()
        err += chunk
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=60)
    text = (err + rest).decode()
    assert proc.returncode == 130, text
    assert text.strip().splitlines()[-1] == "Error: cancelled", text
    assert "exit code" not in text
    (ctx / "Dockerfile").write_text(head + "RUN echo done\n")
    res = build(ctx)
    assert _cached_steps(res.err) == {2, 3}, res.err
