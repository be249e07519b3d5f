"""Container records on disk: `<store root>/containers/<id>/state.json`, names, ids and lookups.

`containers/states.json` caches every state.json by container id, each under its file's inode, ctime and size:
listings and name lookups read it and stat each state.json rather than reading them all (see `Containers.states`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields

from dockyard.errors import DockyardError, NotFound
from dockyard.fsutil import atomic_write, locked
from runner.forking import detached
from runner.procfs import proc_start_time

STATE_FILE = "state.json"
# A removed container's directory is renamed to this prefix + its id when its files go later: no lookup sees it.
REMOVED_PREFIX = ".removed-"
STATES_CACHE = "states.json"
# A state.json changed this recently is not cached: its inode number, freed by a replacement within the same clock
# tick, could come back in a later replacement with the same ctime and size (git's "racily clean" entries).
SETTLE_NS = 1_000_000_000
ZERO_TIME = "0001-01-01T00:00:00Z"

_ADJECTIVES = [
    "admiring", "adoring", "agitated", "amazing", "angry", "awesome", "blissful", "bold", "boring", "brave", "busy",
    "charming", "clever", "cool", "compassionate", "competent", "condescending", "confident", "cranky", "crazy",
    "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant",
    "eloquent", "epic", "exciting", "fervent", "festive", "flamboyant", "focused", "friendly", "frosty", "funny",
    "gallant", "gifted", "goofy", "gracious", "great", "happy", "hardcore", "heuristic", "hopeful", "hungry",
    "infallible", "inspiring", "intelligent", "interesting", "jolly", "jovial", "keen", "kind", "laughing",
    "loving", "lucid", "magical", "modest", "musing", "mystifying", "naughty", "nervous", "nice", "nifty",
    "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive", "practical", "priceless", "quirky",
    "quizzical", "recursing", "relaxed", "reverent", "romantic", "sad", "serene", "sharp", "silly", "sleepy",
    "stoic", "strange", "stupefied", "suspicious", "sweet", "tender", "thirsty", "trusting", "unruffled", "upbeat",
    "vibrant", "vigilant", "vigorous", "wizardly", "wonderful", "xenodochial", "youthful", "zealous", "zen",
]
_NOUNS = [
    "agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "aryabhata", "austin", "babbage",
    "banach", "bardeen", "bartik", "bassi", "beaver", "bell", "bhabha", "bhaskara", "blackwell", "bohr", "booth",
    "borg", "bose", "boyd", "brahmagupta", "brattain", "brown", "carson", "chandrasekhar", "clarke", "colden",
    "cori", "cray", "curie", "darwin", "davinci", "dijkstra", "dubinsky", "easley", "edison", "einstein", "elion",
    "engelbart", "euclid", "euler", "fermat", "fermi", "feynman", "franklin", "galileo", "gates", "goldberg",
    "goldstine", "goldwasser", "golick", "goodall", "hamilton", "hawking", "heisenberg", "hermann", "hodgkin",
    "hoover", "hopper", "hugle", "hypatia", "jackson", "jang", "jennings", "jepsen", "johnson", "joliot", "jones",
    "kalam", "kapitsa", "keldysh", "keller", "kepler", "khorana", "kilby", "kirch", "knuth", "kowalevski",
    "lalande", "lamarr", "lamport", "leakey", "leavitt", "lewin", "lichterman", "liskov", "lovelace", "lumiere",
    "mahavira", "margulis", "matsumoto", "maxwell", "mayer", "mccarthy", "mcclintock", "mclean", "mcnulty",
    "meitner", "mendel", "mestorf", "minsky", "mirzakhani", "montalcini", "moore", "morse", "moser", "murdock",
    "napier", "nash", "neumann", "newton", "nightingale", "nobel", "noether", "northcutt", "noyce", "panini",
    "pare", "pascal", "pasteur", "payne", "perlman", "pike", "poincare", "poitras", "ptolemy", "raman", "ramanujan",
    "ride", "ritchie", "robinson", "roentgen", "rosalind", "rubin", "saha", "sammet", "sanderson", "satoshi",
    "shamir", "shannon", "shaw", "shirley", "shockley", "sinoussi", "snyder", "spence", "stonebraker", "sutherland",
    "swanson", "swartz", "swirles", "tesla", "thompson", "torvalds", "turing", "varahamihira", "visvesvaraya",
    "volhard", "wescoff", "wilbur", "wiles", "williams", "wilson", "wing", "wozniak", "wright", "wu", "yalow",
    "yonath", "zhukovsky",
]


@dataclass
class Container:
    """One container: the OCI state fields (id, status, pid, bundle) plus docker's bookkeeping."""

    id: str
    name: str  # without docker's leading "/"
    image: str  # as the user named it
    image_digest: str  # manifest digest (held while the container exists)
    image_id: str  # config digest
    created: str
    bundle: str
    config: dict = field(default_factory=dict)  # docker's Container.Config (Cmd, Env, Labels…)
    host_config: dict = field(default_factory=dict)  # how to run it: network, ports, restart policy…
    mounts: list[dict] = field(default_factory=list)  # docker's Mounts list (volumes and binds)
    # The networks it joins at each start, in order, as docker's NetworkSettings.Networks: name -> IPAMConfig, Aliases
    networks: dict[str, dict] = field(default_factory=dict)
    status: str = "created"  # created, running, paused, restarting, exited, removing
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    health: dict | None = None
    monitor_pid: int = 0
    monitor_start: str = ""  # the monitor's /proc start time: a recycled pid is not our monitor

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def ephemeral(self) -> bool:
        """Removed when it exits (--rm): its files need not survive a power loss, so they are written without fsync."""
        return bool(self.host_config.get("AutoRemove"))

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")

    def oci_state(self) -> dict:
        """The runtime-spec state object."""
        status = {"created": "created", "paused": "paused"}.get(self.status, "running" if self.running else "stopped")
        return {"ociVersion": "1.0.2", "id": self.id, "status": status, "pid": self.pid if self.running else 0,
                "bundle": self.bundle, "annotations": {}}

    def to_json(self) -> dict:
        """state.json: the OCI state (its `status` the runtime-spec's) followed by our fields (docker's as `state`)."""
        # The fields as they are (asdict's deep copy would only be thrown away: they are serialized at once).
        ours = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("id", "pid", "bundle", "status")}
        return {**self.oci_state(), "pid": self.pid, "state": self.status, **ours}

    @classmethod
    def from_json(cls, d: dict) -> Container:
        return cls(**{k: v for k, v in d.items() if k in _FIELDS}, status=d.get("state", "created"))


_FIELDS = frozenset(f.name for f in fields(Container)) - {"status"}  # the keys from_json takes from state.json


def now() -> str:
    """RFC 3339 with nanoseconds, as docker prints times."""
    ns = time.time_ns()  # (not datetime: its import is a cost on every `run`)
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(ns // 10**9)) + f"{ns // 1000 % 10**6:06d}000Z"


class Containers:
    """All containers of one store root."""

    def __init__(self, root: str):
        self.root = root
        self.dir = os.path.join(root, "containers")
        os.makedirs(self.dir, exist_ok=True)

    def path(self, cid: str, *parts: str) -> str:
        return os.path.join(self.dir, cid, *parts)

    def ids(self) -> list[str]:
        return [n for n in os.listdir(self.dir) if len(n) == 64 and os.path.exists(self.path(n, STATE_FILE))]

    def load(self, cid: str) -> Container:
        """A container by full id, its status corrected if its monitor died (crash or reboot)."""
        try:
            with open(self.path(cid, STATE_FILE)) as f:
                c = Container.from_json(json.load(f))
        except FileNotFoundError:
            raise NotFound(f"No such container: {cid}") from None
        return self._checked(c)

    def _checked(self, c: Container) -> Container:
        """The container, marked exited (and saved so) if it is recorded running but its monitor is gone."""
        if c.running and not self._monitor_alive(c):
            c = self.update(c.id, _mark_dead)
        return c

    @staticmethod
    def _monitor_alive(c: Container) -> bool:
        return bool(c.monitor_pid) and proc_start_time(c.monitor_pid) == c.monitor_start

    def states(self) -> dict[str, dict]:
        """Every container's state.json content by id: from the states cache for each file whose inode, ctime and
        size are the cached ones, else read (a container another process made or changed shows at once); the cache
        is rewritten when it gained or lost entries. A missing, corrupt or foreign cache only costs the reads."""
        cache_path = os.path.join(self.dir, STATES_CACHE)
        try:
            with open(cache_path, "rb") as f:
                cached = json.load(f)
        except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep for the parser
            cached = {}
        if not isinstance(cached, dict):
            cached = {}
        settled = time.time_ns() - SETTLE_NS
        states: dict[str, dict] = {}
        kept: dict[str, list] = {}
        read = False  # whether a file read is to be cached
        for cid in os.listdir(self.dir):
            if len(cid) != 64:  # not a container directory: the cache itself, locks, temp files
                continue
            try:
                st = os.stat(self.path(cid, STATE_FILE))
            except (FileNotFoundError, NotADirectoryError):
                continue  # not a container (yet, or any more)
            key = [st.st_ino, st.st_ctime_ns, st.st_size]
            row = cached.get(cid)
            if (isinstance(row, list) and len(row) == 2 and row[0] == key and isinstance(row[1], dict)
                    and row[1].get("id") == cid):
                state, hit = row[1], True
            else:
                hit = False
                try:
                    with open(self.path(cid, STATE_FILE), "rb") as f:
                        st = os.fstat(f.fileno())  # the key of what is read: state.json is replaced, never changed
                        state = json.load(f)
                except (OSError, ValueError, RecursionError):
                    continue
                if not (isinstance(state, dict) and state.get("id") == cid):
                    continue
                key = [st.st_ino, st.st_ctime_ns, st.st_size]
            states[cid] = state
            if st.st_ctime_ns < settled:
                kept[cid] = [key, state]
                read = read or not hit
        if read or len(kept) != len(cached):  # else `kept` is `cached`, or what of it is still right
            with contextlib.suppress(OSError, DockyardError):  # e.g. a reader without write access: reads stay right
                atomic_write(cache_path, json.dumps(kept, separators=(",", ":")).encode(), durable=False)
        return states

    def all(self) -> list[Container]:
        """Every container, newest first."""
        out = []
        for state in self.states().values():
            with contextlib.suppress(NotFound, TypeError):  # TypeError: a state.json without the required fields
                out.append(self._checked(Container.from_json(state)))
        return sorted(out, key=lambda c: c.created, reverse=True)

    def save(self, c: Container) -> None:
        atomic_write(self.path(c.id, STATE_FILE), json.dumps(c.to_json()).encode(), durable=not c.ephemeral)

    @contextlib.contextmanager
    def lock(self, cid: str) -> Iterator[None]:
        with locked(self.path(cid, "lock")):
            yield

    def update(self, cid: str, change: Callable[[Container], None]) -> Container:
        """Read, change and write one container's state under its lock."""
        with self.lock(cid):
            try:
                with open(self.path(cid, STATE_FILE)) as f:
                    c = Container.from_json(json.load(f))
            except FileNotFoundError:
                raise NotFound(f"No such container: {cid}") from None
            change(c)
            self.save(c)
        return c

    def find(self, ref: str) -> Container:
        """By name (with or without "/"), full id or unique id prefix."""
        if not ref:
            raise NotFound("No such container: (empty)")
        name = ref.lstrip("/")
        states = self.states()
        if ref in states:
            return self.load(ref)
        for cid, state in states.items():
            if state.get("name") == name:
                return self.load(cid)
        matches = [cid for cid in states if cid.startswith(ref.lower())] if _is_hex(ref) else []
        if len(matches) > 1:
            raise DockyardError(f"multiple containers match {ref!r}; use more of the id")
        if not matches:
            raise NotFound(f"No such container: {ref}")
        return self.load(matches[0])

    @contextlib.contextmanager
    def naming(self) -> Iterator[set[str]]:
        """Hold the names lock; yields the names in use (to check and reserve one)."""
        with locked(os.path.join(self.dir, ".names.lock")):
            yield {state["name"] for state in self.states().values() if isinstance(state.get("name"), str)}

    def add(self, c: Container) -> None:
        """Record a new container, its name checked unique (or picked) under the names lock."""
        with self.naming() as names:
            if not c.name:
                c.name = random_name(names)
            elif c.name in names:
                raise DockyardError(f'Conflict. The container name "/{c.name}" is already in use')
            os.makedirs(self.path(c.id), exist_ok=True)
            self.save(c)

    def rename(self, c: Container, new: str) -> Container:
        check_name(new)
        with self.naming() as names:
            if new in names:
                raise DockyardError(f'Conflict. The container name "/{new}" is already in use')
            return self.update(c.id, lambda x: setattr(x, "name", new))

    def remove_record(self, cid: str, later: bool = False) -> None:
        """Remove a container's directory; `later`: it is gone for every lookup at once (one rename) and its files
        are deleted by a detached child (for a process about to exit, which then need not wait for them)."""
        path = self.path(cid)
        if later:
            gone = os.path.join(self.dir, REMOVED_PREFIX + cid)
            try:
                os.rename(path, gone)
            except OSError:
                pass  # (e.g. gone already): whatever is left goes below, here and now
            else:
                detached(lambda: _rmtree(gone))
                return
        _rmtree(path)

    def sweep_removed(self) -> None:
        """Delete what a detached removal left (its child killed before it finished)."""
        for name in os.listdir(self.dir):
            if name.startswith(REMOVED_PREFIX):
                _rmtree(os.path.join(self.dir, name))


def _rmtree(path: str) -> None:
    """Remove a tree, whatever fails; shutil is imported here, so a `run --rm` imports it in its detached child."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _mark_dead(c: Container) -> None:
    # The monitor is gone: whatever ran is no longer supervised; report it as exited.
    if c.running:
        c.status, c.pid, c.finished_at = "exited", 0, c.finished_at if c.finished_at != ZERO_TIME else now()
        if not c.exit_code:
            c.exit_code, c.error = 255, "monitor process died"


def _is_hex(text: str) -> bool:
    return all(ch in "0123456789abcdef" for ch in text.lower())


def new_id() -> str:
    return os.urandom(32).hex()


def random_name(taken: set[str]) -> str:
    """docker-style adjective_noun, with a digit appended if it happens to be taken."""
    for i in range(100):
        name = f"{_pick(_ADJECTIVES)}_{_pick(_NOUNS)}" + (_pick("0123456789") if i > 5 else "")
        if name not in taken:
            return name
    raise DockyardError("could not pick a free container name")


def _pick(choices: Sequence[str]) -> str:
    """A random item, from os.urandom (the `random` module's import would cost every `run` more)."""
    return choices[int.from_bytes(os.urandom(4), "big") % len(choices)]


def check_name(name: str) -> None:
    """Docker's container name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+."""
    import re

    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name.lstrip("/")):
        raise DockyardError(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
