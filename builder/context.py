"""The build context: a directory seen through .dockerignore, COPY/ADD source resolution that never leaves it,
and content digests of sources for the build cache."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from builder.ignore import Ignore
from builder.pathmatch import component_regex, go_clean, has_magic
from dockyard.digest import Digest
from dockyard.errors import DockyardError, NotFound
from dockyard.inroot import Escape, resolve_beneath

_MAX_LINKS = 40
# A file changed this close to the start of the build may change again within the same clock tick, unseen by its
# stat: its content hash is not kept for the next build. Generous, as a network filesystem's clock may lag ours.
_RECENT_NS = 2_000_000_000


class ContextError(DockyardError):
    """A path would leave the build context, or the context cannot be read."""


class Held:
    """The bytes of small files one holder keeps in memory, counted against one budget for the whole process.

    Small files are read whole, kept from hashing (the cache key) to copying and by a COPY for the layer diff, so
    each is opened once; the context, each COPY and parallel stages hold at once, and a context may be gigabytes:
    beyond the budget a file is streamed (and opened again). A holder's bytes go back when it is collected."""

    FILE: ClassVar[int] = 1 << 20  # a bigger file is never held
    TOTAL: ClassVar[int] = 128 << 20
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _total: ClassVar[int] = 0  # held by all holders

    def __init__(self, holder: object):
        self.size = 0
        weakref.finalize(holder, self.drop)

    def take(self, size: int) -> bool:
        """Count `size` bytes more here, if a file that small fits in what is left of the budget."""
        if size > Held.FILE:
            return False
        with Held._lock:
            if Held._total + size > Held.TOTAL:
                return False
            Held._total += size
            self.size += size
        return True

    def move(self, size: int, to: Held) -> None:
        """`size` of the bytes held here are now held by `to` (still counted once)."""
        with Held._lock:
            self.size -= size
            to.size += size

    def drop(self, size: int | None = None) -> None:
        """Give `size` bytes (all held here by default) back to the budget."""
        with Held._lock:
            size = self.size if size is None else size
            self.size -= size
            Held._total -= size


@dataclass(frozen=True)
class Entry:
    """One filesystem object as COPY would see it (never following symlinks); `path` is relative to the
    source it was found under ("." for the source itself, or its basename for a file source)."""

    path: str
    rel: str
    kind: str
    mode: int
    uid: int
    gid: int
    link: str | None  # a symlink's target; None for anything else
    key: tuple[int, int, int, int, int]


@dataclass(frozen=True)
class Source:
    """A resolved COPY/ADD source: `rel` is its context-relative path ("" for the root), `given` the text
    it came from; `entry.kind == "symlink"` only when the link is kept as a link (it points outside)."""

    given: str
    rel: str
    entry: Entry


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return None


class BuildContext:
    """A context directory; every read goes through here so nothing outside the root is ever opened."""

    def __init__(self, root: str, ignore: Ignore | None = None, rootfs: bool = False, hashes: str | None = None):
        """rootfs=True: `root` is an image's root filesystem (COPY --from), where absolute symlinks and `..`
        resolve against that root, as the image itself sees them, instead of being refused. `hashes`: a file
        keeping content hashes from one build of this context to the next (see save_hashes)."""
        self._started_ns = time.time_ns()
        self.root = os.path.realpath(root)
        self.rootfs = rootfs
        self._dirs = threading.local()  # each stage thread keeps its own directory fd
        if not os.path.isdir(self.root):
            raise NotFound(f"build context is not a directory: {root}")
        if ignore is None:
            try:
                ignore = Ignore.parse(self.read_file(".dockerignore").decode("utf-8", "replace"))
            except NotFound:
                ignore = Ignore([])
        self.ignore = ignore
        # Content hashes by (dev, ino, size, mtime_ns, ctime_ns): each file is read once per build, and not at all
        # when the previous build's `hashes` file has its key (a write changes ctime, which no one can set back).
        self._hashes: dict[tuple[int, int, int, int, int], str] = {}
        self._hashes_file = hashes
        self._known: dict[tuple[int, ...], str] | None = None  # what the hashes file held; loaded at first need
        # What the last digest() read, for the copy that follows it: small files' bytes by key, and walks.
        self._contents: dict[tuple[int, int, int, int, int], bytes] = {}
        self._held = Held(self)
        self._contents_lock = threading.Lock()  # stages' threads share the context: contents and count change as one
        self._walks: dict[str, tuple[Ignore | None, list[Entry]]] = {}

    # -- resolving paths -------------------------------------------------------------------------------

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def _resolve(self, rel: str, follow_final: bool, given: str, clamp: bool | None = None) -> str:
        """Resolve symlinks inside the context (physically, like the kernel, but rooted here); refuse any
        that lead outside unless `clamp` (default: rootfs) makes the root their `/`. The final component is
        followed only if asked."""
        try:
            return "/".join(resolve_beneath(self.root, rel, follow_final, clamp=self.rootfs if clamp is None else clamp,
                                           max_links=_MAX_LINKS))
        except Escape as e:
            # User-written paths were cleaned already, so a `..` that climbs out came from a symlink.
            if e.link is None:
                raise ContextError(f"{given}: a symlink on the way leads outside the build context") from None
            raise ContextError(f"{given}: symlink {e.link} -> {e.target} leads outside the build context") from None
        except NotADirectoryError:
            raise NotFound(f"{given}: not a directory in the build context") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ContextError(f"{given}: too many levels of symbolic links") from None
            raise

    def _clean(self, given: str, what: str) -> str:
        """A user-written context path: absolute means relative to the context root; `..` may not climb out."""
        cleaned = go_clean(given)
        if cleaned == ".." or cleaned.startswith("../"):
            raise ContextError(f"{what} {given}: path is outside the build context")
        return cleaned.lstrip("/") if cleaned not in (".", "/") else ""

    def open(self, rel: str) -> int:
        """Open a resolved (symlink-free) regular file under the root, refusing symlinks anywhere on the way."""
        parent, _, name = rel.rpartition("/")
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=self._dir_fd(parent))
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ContextError(f"{rel}: changed into a symlink while being read") from None
            if e.errno == errno.ENOENT:
                raise NotFound(f"{rel}: no such file in the build context") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ContextError(f"{rel}: not a regular file")
        return fd

    def _dir_fd(self, rel: str) -> int:
        """An fd of a directory under the root: the last one opened by this thread stays open for the next file."""
        kept = getattr(self._dirs, "kept", None)
        if kept is None:
            kept = self._dirs.kept = _DirFd()
        return kept.get(rel, self._open_dir)

    def _open_dir(self, rel: str) -> int:
        """Open a directory under the root one component at a time, refusing symlinks on the way."""
        dirfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for p in (p for p in rel.split("/") if p):
                nxt = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
                os.close(dirfd)
                dirfd = nxt
        except BaseException:
            os.close(dirfd)
            raise
        return dirfd

    def read_file(self, given: str) -> bytes:
        """Read a file of the context (the Dockerfile, .dockerignore): .dockerignore does not hide it."""
        rel = self._resolve(self._clean(given, "file"), True, given)
        fd = self.open(rel)
        with os.fdopen(fd, "rb") as f:
            return f.read()

    # -- entries and walking ---------------------------------------------------------------------------

    def _entry(self, rel: str, path: str, st: os.stat_result | None = None) -> Entry | None:
        st = st or os.lstat(self._abs(rel))
        kind = _kind(st.st_mode)
        if kind is None:
            return None
        link = os.readlink(self._abs(rel)) if kind == "symlink" else None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        return Entry(path, rel, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, link, key)

    def _visible(self, rel: str, is_dir: bool) -> bool:
        """Whether .dockerignore leaves a path in the context (a directory counts if it may hold included files)."""
        if not rel or not self.ignore.excluded(rel):
            return True
        return is_dir and self.ignore.may_include_below(rel)

    def walk(self, source: Source, exclude: Ignore | None = None) -> Iterator[Entry]:
        """The source and everything under it, sorted by path, .dockerignore and --exclude applied."""
        top = source.entry
        if top.kind != "dir":
            yield top
            return
        walked = self._walks.get(source.rel)
        if walked is not None and walked[0] is exclude and walked[1][:1] == [top]:
            yield from walked[1]  # the walk digest() just made for this COPY
            return
        info = self.ignore.match_path(source.rel)[1] if source.rel else None
        entries: list[Entry] = []
        self._walk_dir(source.rel, ".", info, None, exclude, False, entries)
        self._walks[source.rel] = (exclude, entries)
        yield from entries

    def _walk_dir(self, rel: str, path: str, info: list[bool] | None, xinfo: list[bool] | None,
                  exclude: Ignore | None, hidden: bool, out: list[Entry]) -> bool:
        """Append the directory and its visible contents; returns whether any child was appended.
        `hidden`: the directory itself is excluded and only searched for re-included files."""
        entry = self._entry(rel, path)
        children: list[Entry] = []
        try:
            with os.scandir(self._abs(rel)) as it:
                listing = sorted((d.name, d.stat(follow_symlinks=False)) for d in it)
        except PermissionError:
            # Like BuildKit: an unreadable directory that is excluded anyway is not an error.
            if hidden:
                return False
            raise ContextError(f"{rel or '.'}: cannot read directory: permission denied") from None
        except OSError as e:
            raise ContextError(f"{rel or '.'}: cannot read directory: {e.strerror}") from None
        for name, st in listing:
            crel = f"{rel}/{name}" if rel else name
            cpath = name if path == "." else f"{path}/{name}"
            is_dir = stat.S_ISDIR(st.st_mode)
            ignored, cinfo = self.ignore.match(crel, info)
            excluded, cxinfo = exclude.match(cpath, xinfo) if exclude else (False, None)
            if excluded and exclude is not None and not (is_dir and exclude.may_include_below(cpath)):
                continue
            if ignored and not (is_dir and self.ignore.may_include_below(crel)):
                continue
            if is_dir:
                sub: list[Entry] = []
                if self._walk_dir(crel, cpath, cinfo, cxinfo, exclude, ignored or excluded, sub) \
                        or not (ignored or excluded):
                    children.extend(sub)
            elif not ignored and not excluded:
                child = self._entry(crel, cpath, st)
                if child is not None:
                    children.append(child)
        if entry is None:
            return False
        out.append(entry)
        out.extend(children)
        return bool(children)

    # -- COPY/ADD sources ------------------------------------------------------------------------------

    def _source(self, given: str, rel: str) -> Source | None:
        """The Source for a context path: a final symlink is followed when it stays inside, kept otherwise."""
        try:
            target = self._resolve(rel, True, given)
        except ContextError:
            target = rel
        if not os.path.lexists(self._abs(target)):
            target = rel
        if not os.path.lexists(self._abs(target)):
            return None
        is_dir = os.path.isdir(self._abs(target)) and not os.path.islink(self._abs(target))
        if not self._visible(target, is_dir) or (target != rel and not self._visible(rel, False)):
            return None
        # A followed link keeps its own name: `COPY link /d/` makes /d/link with the target's content.
        entry = self._entry(target, os.path.basename(rel) if not is_dir else ".")
        return Source(given, target, entry) if entry is not None else None

    def _glob(self, given: str, rel: str) -> list[str]:
        """Expand Go-glob components (`*` never crosses `/`) against the directory tree, sorted. The literal
        prefix must resolve inside the context; matches reached through links that leave it are skipped."""
        parts = [p for p in rel.split("/") if p]
        first = next(i for i, p in enumerate(parts) if has_magic(p))
        paths = [self._resolve("/".join(parts[:first]), True, given)]
        for part in parts[first:]:
            nxt: list[str] = []
            for base in paths:
                try:
                    directory = self._resolve(base, True, given)
                except ContextError:
                    continue
                if not has_magic(part):
                    nxt.append(f"{directory}/{part}" if directory else part)
                    continue
                if not os.path.isdir(self._abs(directory)):
                    continue
                rx = component_regex(part)
                nxt.extend(f"{directory}/{n}" if directory else n
                           for n in sorted(os.listdir(self._abs(directory))) if rx.match(n))
            paths = nxt
        return paths

    def sources(self, patterns: list[str], what: str = "COPY") -> list[Source]:
        """Resolve COPY/ADD source patterns to sources inside the context (in the order given)."""
        out: list[Source] = []
        for given in patterns:
            cleaned = self._clean(given, f"{what} source")
            found = []
            if has_magic(cleaned):
                for cand in self._glob(given, cleaned):
                    src = self._source(given, cand)
                    if src is not None:
                        found.append(src)
            else:
                parent, _, name = cleaned.rpartition("/")
                rel = "/".join(x for x in (self._resolve(parent, True, given), name) if x)
                src = self._source(given, rel)
                found = [src] if src is not None else []
            if not found:
                if has_magic(cleaned):
                    raise NotFound(f"{what} failed: no source files were specified: {given} matched nothing "
                                   "in the build context")
                raise NotFound(f"{what} failed: {given}: not found in the build context or excluded by "
                               ".dockerignore")
            out.extend(found)
        return out

    def mount_source(self, given: str) -> Source:
        """A `RUN --mount=type=bind` source: resolved as RESOLVE_IN_ROOT (and BuildKit) do, a link leading out
        is clamped at the context root instead of followed, then .dockerignore applies."""
        rel = self._resolve(self._clean(given, "RUN --mount source"), True, given, clamp=True)
        src = self._source(given, rel)
        if src is None:
            raise NotFound(f"RUN --mount source {given}: not found in the build context or excluded by "
                           ".dockerignore")
        return src

    # -- cache digests ---------------------------------------------------------------------------------

    def content_hash(self, entry: Entry) -> str:
        """sha256 hex of a regular file's content, cached per build by inode, size and times; a small file's
        bytes are kept for content() (within the Held budget)."""
        cached = self._hashes.get(entry.key) or self._known_hashes().get(entry.key)
        if cached is None:
            data = self._read_held(entry, self._held)
            if data is None:
                fd = self.open(entry.rel)
                try:
                    with os.fdopen(os.dup(fd), "rb") as f:
                        cached = hashlib.file_digest(f, "sha256").hexdigest()
                finally:
                    os.close(fd)
            else:
                cached = hashlib.sha256(data).hexdigest()
                with self._contents_lock:
                    if self._contents.setdefault(entry.key, data) is not data:  # another stage's thread kept it
                        self._held.drop(len(data))
        self._hashes[entry.key] = cached
        return cached

    def _known_hashes(self) -> dict[tuple[int, ...], str]:
        """The content hashes the previous build kept (none when there is no file or it is unreadable)."""
        if self._known is None:
            self._known = {}
            if self._hashes_file is not None:
                try:
                    with open(self._hashes_file, "rb") as f:
                        self._known = {tuple(row[:5]): row[5] for row in json.load(f)
                                       if len(row) == 6 and isinstance(row[5], str)}
                except (OSError, ValueError, TypeError, IndexError, KeyError):
                    pass  # a cache: hash the files again
        return self._known

    def save_hashes(self) -> None:
        """Keep this build's content hashes for the next build (but of files changed just before it started);
        nothing is written when they are the ones kept already."""
        if self._hashes_file is None:
            return
        from dockyard.fsutil import atomic_write

        limit = self._started_ns - _RECENT_NS
        keep = {key: h for key, h in self._hashes.items() if key[4] < limit}
        if keep == self._known_hashes():
            return
        data = json.dumps([[*key, h] for key, h in keep.items()]).encode()
        with contextlib.suppress(OSError):  # a cache: without it the next build hashes the files again (so no fsync)
            os.makedirs(os.path.dirname(self._hashes_file), exist_ok=True)
            atomic_write(self._hashes_file, data, durable=False)

    def content(self, entry: Entry, held: Held) -> bytes | None:
        """A small file's bytes for a copy, counted in `held` from now on: those content_hash() kept of it unchanged
        since (same inode, size and times), else read now; None when the budget has no room (stream the file)."""
        with self._contents_lock:
            data = self._contents.pop(entry.key, None)
            if data is not None:
                self._held.move(len(data), held)
        return self._read_held(entry, held) if data is None else data

    def _read_held(self, entry: Entry, held: Held) -> bytes | None:
        """A small file's bytes read whole and counted in `held`; None when it does not fit in the budget."""
        size = entry.key[2]
        if not held.take(size):
            return None
        try:
            fd = self.open(entry.rel)
            try:
                return _read_exactly(fd, size, entry.rel)
            finally:
                os.close(fd)
        except BaseException:
            held.drop(size)
            raise

    def digest(self, sources: list[Source], exclude: Ignore | None = None, owners: bool = True) -> Digest:
        """Cache key of what COPY would copy: paths, types, modes, owners (unless --chown makes them
        irrelevant: owners=False), link targets and contents — not timestamps, so touching files does
        not invalidate the cache."""
        # A new step: what the previous one kept for its copy is no longer needed.
        with self._contents_lock:
            kept, self._contents = self._contents, {}
        self._held.drop(sum(map(len, kept.values())))
        self._walks.clear()
        h = hashlib.sha256()
        for src in sources:
            h.update(f"source\0{src.rel}\n".encode())
            for e in self.walk(src, exclude):
                owner = f"{e.uid}\0{e.gid}" if owners else "-\0-"
                h.update(f"{e.path}\0{e.kind}\0{e.mode:o}\0{owner}\0".encode())
                if e.link is not None:  # a symlink
                    h.update(os.fsencode(e.link))
                elif e.kind == "file":
                    h.update(self.content_hash(e).encode())
                h.update(b"\n")
        return Digest("sha256", h.hexdigest())


class _DirFd:
    """The one directory fd kept open between opens: a walk opens files directory by directory."""

    def __init__(self) -> None:
        self._rel: str | None = None
        self._fd = -1

    def get(self, rel: str, opener: Callable[[str], int]) -> int:
        """The fd of directory `rel`, opened with `opener` unless it is the one kept."""
        if rel != self._rel:
            fd = opener(rel)
            self.close()
            self._rel, self._fd = rel, fd
        return self._fd

    def close(self) -> None:
        """Close the kept fd."""
        if self._fd >= 0:
            os.close(self._fd)
        self._rel, self._fd = None, -1

    def __del__(self) -> None:
        self.close()


def _read_exactly(fd: int, size: int, rel: str) -> bytes:
    """A file's `size` bytes; a file that changed size since it was listed fails (its key would be stale)."""
    data = b""
    while len(data) <= size:
        more = os.read(fd, size + 1 - len(data))
        if not more:
            break
        data += more
    if len(data) != size:
        raise ContextError(f"{rel}: changed while being read")
    return data


def unpack_stdin_context(data: bytes, dest: str) -> bool:
    """`build -`: when `data` is a tar archive (plain or compressed), extract it into `dest` as the context and
    return True; otherwise it is a Dockerfile with no context (False). Extraction refuses absolute names, `..`
    and links leading out of `dest` (tarfile's data filter), and device nodes."""
    import io
    import tarfile

    from dockyard.compression import decompressed, sniff

    plain = decompressed(io.BytesIO(data)).read() if sniff(data[:512]) != "none" else data
    if plain[257:262] != b"ustar" and not (sniff(data[:512]) != "none" and tarfile.is_tarfile(io.BytesIO(plain))):
        return False
    try:
        with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tf:
            tf.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise ContextError(f"build context from stdin: {e}") from None
    return True
