"""Terminals: a pty pair on a container's devpts, window sizes, raw mode, relaying a pty master to our stdio."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import termios
import threading

_TIOCGPTN = 0x80045430  # the pty's number (its /dev/pts/N)
_TIOCSPTLCK = 0x40045431  # (un)lock the slave
_CHUNK = 16 * 1024


def open_pty() -> tuple[int, str]:
    """(master fd, slave path) of a new pty on the devpts of our mount namespace (a container's, after setns)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, struct.pack("I", 0)))[0]
    return master, f"/dev/pts/{number}"


def become_controlling(slave_path: str) -> int:
    """(in a fresh child) a new session whose controlling terminal is the slave; its fd."""
    os.setsid()
    fd = os.open(slave_path, os.O_RDWR)
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
    return fd


def copy_window_size(to: int) -> None:
    """Give the pty `to` the size of our terminal (the first of stdin/stdout/stderr that is one)."""
    for fd in (0, 1, 2):
        try:
            size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        except OSError:
            continue
        fcntl.ioctl(to, termios.TIOCSWINSZ, size)
        return


@contextlib.contextmanager
def raw_stdin(on: bool = True):
    """Our stdin in raw mode while inside (when `on` and it is a terminal): keys reach the container's pty as typed."""
    if not (on and os.isatty(0)):
        yield
        return
    import tty

    old = termios.tcgetattr(0)
    tty.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, old)


def relay(master: int, interactive: bool) -> None:
    """Our stdin to the pty master (if `interactive`), its output to our stdout, until its slave side is closed."""
    with raw_stdin(interactive):
        if interactive:
            threading.Thread(target=feed_stdin, args=(master,), daemon=True).start()
        while True:
            try:
                data = os.read(master, _CHUNK)
            except OSError:  # EIO: every slave fd is closed
                break
            if not data:
                break
            os.write(1, data)


def feed_stdin(master: int) -> None:
    """Copy our stdin to `master` until EOF."""
    try:
        while data := os.read(0, _CHUNK):
            os.write(master, data)
    except OSError:
        pass
