"""A strict streaming tar reader: one header at a time, PAX/GNU long names, binary-safe xattrs."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from dockyard.digest import Reader
from dockyard.layers import tarheader
from dockyard.layers.format import BLOCK, XATTR_PAX_PREFIX, LayerError

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # names are bytes on Linux; surrogates carry non-UTF-8 ones through
_MAX_META = 16 << 20  # a PAX or GNU long-name payload bigger than this is hostile, not a name
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_DATA_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_SKIP = 1 << 20


@dataclass
class Member:
    """One tar entry with PAX overrides applied; data follows in the stream."""

    name: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    type: bytes
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes] = field(default_factory=dict)


class TarReader:
    """Iterate a tar stream's members (a stream with readinto); read each member's data with `readinto` before the
    next."""

    def __init__(self, stream: Reader):
        self._f = stream
        self._left = 0  # unread data bytes of the current member
        self._pad = 0
        self._scratch = memoryview(bytearray())  # where data nobody read is skipped to
        self.current = ""  # the name of the member being processed, for error messages

    def __iter__(self) -> Iterator[Member]:
        global_pax: dict[str, bytes] = {}
        empty = True
        while True:
            self._skip_rest()
            block = self._f.read(BLOCK)
            if not block and empty:
                return  # a zero-length layer: accepted, as docker does
            if len(block) < BLOCK:
                block += self._exact(BLOCK - len(block))
            if block.count(0) == BLOCK:
                return  # end-of-archive marker; the caller drains what follows
            empty = False
            pax: dict[str, bytes] = {}
            member = self._header(block)
            while member.type in _META_TYPES:
                data = self._meta(member)
                if member.type == tarfile.XGLTYPE:
                    global_pax.update(_pax_records(data, self.current))
                elif member.type == tarfile.GNUTYPE_LONGNAME:
                    pax["path"] = data.split(b"\0", 1)[0]
                elif member.type == tarfile.GNUTYPE_LONGLINK:
                    pax["linkpath"] = data.split(b"\0", 1)[0]
                else:
                    pax.update(_pax_records(data, self.current))
                member = self._header(self._exact(BLOCK))
            if pax or global_pax:
                _apply_pax(member, {**global_pax, **pax} if global_pax else pax)
            if member.size < 0 or member.uid < 0 or member.gid < 0:
                raise LayerError(f"tar entry {member.name!r}: negative size or owner")
            self.current = member.name
            if member.type in (tarfile.GNUTYPE_SPARSE, b"S"):
                raise LayerError(f"tar entry {member.name!r}: GNU sparse files are not supported")
            has_data = member.type in _DATA_TYPES or member.type not in tarfile.SUPPORTED_TYPES
            self._left = member.size if has_data else 0
            self._pad = -self._left % BLOCK
            yield member

    def readinto(self, buf) -> int:
        """Read the current member's data into `buf`; 0 at its end."""
        n = min(len(buf), self._left)
        if n <= 0:
            return 0
        got = self._f.readinto(memoryview(buf)[:n])  # type: ignore[attr-defined]
        if not got:
            raise LayerError(f"tar is truncated inside {self.current!r}")
        self._left -= got
        return got

    def _skip_rest(self) -> None:
        """Discard the unread data and padding of the current member."""
        if len(self._scratch) < min(self._left, _SKIP):
            self._scratch = memoryview(bytearray(min(self._left, _SKIP)))
        while self._left:
            self.readinto(self._scratch)
        if self._pad:
            self._exact(self._pad)
            self._pad = 0

    def _exact(self, n: int) -> bytes:
        data = self._f.read(n)
        while len(data) < n:
            more = self._f.read(n - len(data))
            if not more:
                raise LayerError(f"tar is truncated after {self.current or 'its start'!r}")
            data += more
        return data

    def _header(self, block: bytes) -> Member:
        try:
            return Member(*tarheader.decode(block))
        except ValueError as e:
            where = f"after {self.current!r}" if self.current else "at its start"
            raise LayerError(f"corrupt tar header {where}: {e}") from None

    def _meta(self, info: Member) -> bytes:
        """The payload of a PAX or GNU long-name header, padding consumed."""
        if info.size > _MAX_META:
            raise LayerError(f"tar extended header of {info.size} bytes after {self.current!r}")
        data = self._exact(info.size)
        self._exact(-info.size % BLOCK)
        return data


def _pax_records(data: bytes, where: str) -> dict[str, bytes]:
    """Parse `len key=value\\n` records; values stay bytes so xattrs survive exactly."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # some writers pad the payload with NULs
        sp = data.find(b" ", pos)
        try:
            length = int(data[pos:sp])
        except ValueError:
            length = 0
        end = pos + length
        if sp < 0 or length <= 0 or end > len(data) or data[end - 1:end] != b"\n":
            raise LayerError(f"corrupt PAX header after {where or 'the start'!r}")
        key, eq, value = data[sp + 1:end - 1].partition(b"=")
        if not eq:
            raise LayerError(f"corrupt PAX record after {where or 'the start'!r}")
        out[key.decode(_ENCODING, _ERRORS)] = value
        pos = end
    return out


def _apply_pax(m: Member, pax: dict[str, bytes]) -> None:
    """Override a member's header fields with its PAX records."""
    for key, value in pax.items():
        if not value:
            continue  # an empty record unsets a global one: keep the header's value
        try:
            if key == "path":
                m.name = value.decode(_ENCODING, _ERRORS)
            elif key == "linkpath":
                m.linkname = value.decode(_ENCODING, _ERRORS)
            elif key in ("size", "uid", "gid"):
                setattr(m, key, int(value))
            elif key == "mtime":
                m.mtime = int(float(value))
            elif key.startswith(XATTR_PAX_PREFIX):
                m.xattrs[key[len(XATTR_PAX_PREFIX):]] = value
        except ValueError:
            raise LayerError(f"tar entry {m.name!r}: bad PAX {key} value {value[:40]!r}") from None
