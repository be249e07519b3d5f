"""Advisory locks on storage paths: flocks on this host, or reader/writer locks in Redis shared by every replica.

A storage driver takes its `lock` from here (registry.storage.driver).  Without a `[redis]` section the lock is an
flock on a file named like the path, which serialises the processes of one host only.  With one, the lock lives in
Redis under keys named after the storage, so every registry process on every host that serves the same storage
(and `registry gc`) takes the same lock:

- an exclusive holder owns `<key>:w` (its random token, with a PX lease); shared holders are members of the sorted
  set `<key>:r`, scored by when their lease ends; a waiting exclusive locker leaves its token in `<key>:p`, which
  keeps new shared lockers out so a stream of pushes cannot starve GC;
- each step is one Lua script, and lease ends are on the Redis server's clock (TIME), so the hosts' clocks never
  meet;
- a holder's lease is renewed every third of its length by one background thread per process; a process that dies
  (kill -9, a lost host) stops renewing, and its locks end with their lease.

A holder that lost its lease (stalled longer than the lease, cut off from Redis) no longer holds the lock: another
process may hold it now.  It finds out when it releases (the release finds its token gone) or when it calls
`Hold.check` before an irreversible step (GC does, before each delete); both raise LockLost, a StorageError, so the
request answers 500 instead of acknowledging work done without the lock, and GC stops.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dockyard.fsutil import locked
from registry import background
from registry.storage.driver import StorageError

DEFAULT_LEASE = 15.0  # seconds; a killed replica's locks block others at most this long
# How long a waiting exclusive locker's intent outlives its last poll (it polls far more often).
_INTENT_MS = 2000
_POLL_MIN, _POLL_MAX = 0.005, 0.1


class LockLost(StorageError):
    """A Redis lock's lease ended while its holder still used it: someone else may hold it now."""


class Hold:
    """A held lock, as a context manager's value: `check()` before a step that must not happen without it."""

    def check(self) -> None:
        """Raise LockLost unless the lock is still held (a local flock always is)."""


class Locks(abc.ABC):
    """Locks named by storage paths."""

    @abc.abstractmethod
    def hold(self, path: str, shared: bool = False, wait: bool = True) -> contextlib.AbstractContextManager[Hold]:
        """The lock named `path`, for a with-block; wait=False raises BlockingIOError when it is taken."""

    # A default that does nothing on purpose: only flocks in a directory apart from the store leave files behind.
    def forget(self, path: str) -> None:  # noqa: B027
        """Drop what the locks of a removed storage tree left behind (nothing, for most)."""


# -- flocks -----------------------------------------------------------------------------------------------------
@dataclass
class LocalLocks(Locks):
    """flocks on files under `directory` named like the paths; with make_parents, a lock directory apart from the
    store (whose directories are created as needed and removed with the tree they mirror)."""

    directory: str
    make_parents: bool = False

    def hold(self, path: str, shared: bool = False, wait: bool = True) -> contextlib.AbstractContextManager[Hold]:
        local = os.path.join(self.directory, path)
        if self.make_parents:
            os.makedirs(os.path.dirname(local), exist_ok=True)
        return _flock(local, shared, wait)

    def forget(self, path: str) -> None:
        if self.make_parents:  # in the store itself, the lock files went with the tree
            shutil.rmtree(os.path.join(self.directory, path), ignore_errors=True)


@contextlib.contextmanager
def _flock(path: str, shared: bool, wait: bool) -> Iterator[Hold]:
    # The lock file's directory is not created here: locking inside a removed directory fails (FileNotFoundError).
    with locked(path, shared=shared, wait=wait):
        yield Hold()


# -- Redis ------------------------------------------------------------------------------------------------------
# KEYS: writer, readers, intent.  ARGV: token, "s"|"x", lease ms, "1" to leave an intent when blocked, intent ms.
# 1 when acquired, 0 when not.
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
_EXTEND_READERS = ("if redis.call('PTTL', KEYS[2]) < lease then redis.call('PEXPIRE', KEYS[2], lease) end\n")
_ACQUIRE = _NOW + """local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if ARGV[2] == 's' then
  if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
  redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
  """ + _EXTEND_READERS + """  return 1
end
local intent = redis.call('GET', KEYS[3])
if intent and intent ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('ZCARD', KEYS[2]) > 0 then
  if ARGV[4] == '1' then redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[5]) end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', lease)
if intent then redis.call('DEL', KEYS[3]) end
return 1
"""
# KEYS: writer, readers.  ARGV: token, mode, lease ms.  1 when still held (and the lease starts again), else 0:
# an ended shared lease is not revived, since an exclusive holder may have come and gone meanwhile.
_RENEW = _NOW + """local lease = tonumber(ARGV[3])
if ARGV[2] == 'x' then
  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], lease) return 1 end
  return 0
end
local ends = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not ends or tonumber(ends) <= now then return 0 end
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
""" + _EXTEND_READERS + """return 1
"""
# KEYS: writer, readers.  ARGV: token, mode.  1 when it was still held, 0 when its lease had ended.
_RELEASE = _NOW + """if ARGV[2] == 'x' then
  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
  return 0
end
local ends = redis.call('ZSCORE', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if ends and tonumber(ends) > now then return 1 end
return 0
"""


@dataclass
class RedisSettings:
    """The config's `[redis]` section (distribution's keys, and the lease of locks)."""

    addr: str
    password: str | None = None
    db: int = 0
    lease: float = DEFAULT_LEASE


class RedisLocks(Locks):
    """Reader/writer locks in Redis for the storage named `space`, held under a renewed lease."""

    def __init__(self, settings: RedisSettings, space: str):
        self.settings = settings
        # Keys of one storage share a prefix; the hash tag keeps a lock's three keys in one Redis Cluster slot.
        self.prefix = f"dockyard-lock:{hashlib.sha256(space.encode()).hexdigest()[:16]}:"
        self.lease_ms = int(settings.lease * 1000)
        self._held: dict[str, _RedisHold] = {}
        self._held_lock = threading.Lock()

    @functools.cached_property
    def client(self) -> Any:
        """The Redis client, made on first use (in the worker, after gevent patched sockets), and its scripts."""
        import redis

        host, _, port = self.settings.addr.rpartition(":")
        client = redis.Redis(host=host, port=int(port), db=self.settings.db, password=self.settings.password,
                             socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        self._scripts = {name: client.register_script(text)
                         for name, text in (("acquire", _ACQUIRE), ("renew", _RENEW), ("release", _RELEASE))}
        return client

    def call(self, script: str, keys: list[str], args: list) -> int:
        """Run one of the scripts; a Redis failure is a StorageError naming the server."""
        import redis

        client = self.client
        try:
            return int(self._scripts[script](keys=keys, args=args, client=client))
        except redis.RedisError as e:
            raise StorageError(f"redis {self.settings.addr}: {e}") from None

    def hold(self, path: str, shared: bool = False, wait: bool = True) -> contextlib.AbstractContextManager[Hold]:
        return _RedisHold(self, self.prefix + "{" + path + "}", path, "s" if shared else "x", wait)

    def _track(self, hold: _RedisHold, on: bool) -> None:
        """Start or stop renewing `hold`'s lease (starting this process's renewer loop when needed)."""
        with self._held_lock:
            if on:
                self._held[hold.token] = hold
            else:
                self._held.pop(hold.token, None)
        if on:
            background.ensure(("redis-lock-renewer", id(self)), "redis-lock-renewer", self._renew_held,
                              self.settings.lease / 3)

    def _renew_held(self) -> None:
        """One round of the renewer: every lease this process holds starts again."""
        with self._held_lock:
            holds = list(self._held.values())
        for hold in holds:
            try:
                hold.renew()
            except StorageError:
                pass  # Redis unreachable: try again next round; past the lease, the release reports the loss


@dataclass
class _RedisHold(contextlib.AbstractContextManager, Hold):
    locks: RedisLocks
    key: str
    path: str
    mode: str
    wait: bool
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    lost: bool = False

    @property
    def _keys(self) -> list[str]:
        return [f"{self.key}:w", f"{self.key}:r", f"{self.key}:p"]

    def __enter__(self) -> Hold:
        delay = _POLL_MIN
        intent = "1" if self.wait else "0"
        while not self.locks.call("acquire", self._keys, [self.token, self.mode, self.locks.lease_ms, intent,
                                                         _INTENT_MS]):
            if not self.wait:
                raise BlockingIOError(f"lock {self.path} is taken")
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
        self.locks._track(self, True)
        return self

    def renew(self) -> None:
        """Start the lease again; a lease already ended marks the hold lost (and stops its renewal)."""
        if not self.locks.call("renew", self._keys[:2], [self.token, self.mode, self.locks.lease_ms]):
            self.lost = True
            self.locks._track(self, False)

    def check(self) -> None:
        # A round trip rather than the renewer's last word: a holder stalled past its lease has not heard it yet.
        # It renews too, so the step that follows has a whole lease to finish in.
        if not self.lost:
            self.renew()
        if self.lost:
            raise LockLost(f"lock {self.path} lost its lease ({self.locks.settings.lease:g} s)")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.locks._track(self, False)
        try:
            held = self.locks.call("release", self._keys[:2], [self.token, self.mode])
        except StorageError:
            if exc_type is not None:  # the block's own failure is the one to report; the lease frees the lock
                return
            raise
        if not held and exc_type is None:  # an exception already on its way says the block did not finish
            raise LockLost(f"lock {self.path} lost its lease ({self.locks.settings.lease:g} s) while held")


def open_locks(redis: RedisSettings | None, space: str, directory: str, make_parents: bool) -> Locks:
    """Redis locks for the storage named `space` when `redis` is configured, else flocks under `directory`."""
    if redis is not None:
        return RedisLocks(redis, space)
    return LocalLocks(directory, make_parents)
