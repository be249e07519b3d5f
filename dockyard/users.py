"""Resolve Docker `USER` strings (name, uid, name:group, uid:gid) against an image's /etc/passwd and /etc/group."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.errors import DockyardError
from dockyard.inroot import layered_path


@dataclass
class User:
    """Numeric identity of a container's process."""

    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)


class UnknownUser(DockyardError):
    """A USER name that the image's passwd/group files do not define."""


def read_layered(dirs: list[str], relpath: str) -> str | None:
    """Text of `relpath` as the overlay of `dirs` (top-most first) would show it; None if absent or whited out."""
    path = layered_path(dirs, relpath)
    if path is None:
        return None
    with open(path, errors="replace") as f:
        return f.read()


def _entries(text: str | None) -> list[list[str]]:
    return [line.split(":") for line in (text or "").splitlines() if line and not line.startswith("#")]


def resolve(user: str, passwd: str | None, group: str | None) -> User:
    """The uid, gid and supplementary gids Docker would run `user` with (root when empty)."""
    name, _, grp = (user or "0").partition(":")  # no USER: uid 0, with or without a passwd file
    users, groups = _entries(passwd), _entries(group)
    entry = next((e for e in users if len(e) > 3 and (e[0] == name or e[2] == name)), None)
    if entry:
        uid, gid, login = int(entry[2]), int(entry[3]), entry[0]
    elif name.isdigit():
        uid, gid, login = int(name), 0, None
    else:
        raise UnknownUser(f"unable to find user {name}: no matching entries in passwd file")
    if grp:
        g = next((e for e in groups if len(e) > 2 and (e[0] == grp or e[2] == grp)), None)
        if g:
            gid = int(g[2])
        elif grp.isdigit():
            gid = int(grp)
        else:
            raise UnknownUser(f"unable to find group {grp}: no matching entries in group file")
    extra = []
    if login and not grp:  # like Docker: supplementary groups from /etc/group only without an explicit group
        extra = sorted({int(e[2]) for e in groups if len(e) > 3 and login in e[3].split(",") and int(e[2]) != gid})
    return User(uid=uid, gid=gid, additional_gids=extra)


def home_of(uid: int, passwd: str | None) -> str:
    """The home directory passwd gives `uid`, or / (runc's fallback for HOME)."""
    entry = next((e for e in _entries(passwd) if len(e) > 5 and e[2] == str(uid)), None)
    return entry[5] if entry else "/"
