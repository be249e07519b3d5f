"""`build --sbom`: an SPDX 2.3 JSON document of an image's root filesystem: its OS packages (the dpkg database,
distroless's status.d/, apk's) with purls, and its regular files with SHA-1 and SHA-256 checksums.

The root is hostile: the package databases are opened inside it (symlinks resolved as if it were `/`), read only up
to a bound, and what does not parse is skipped with a warning, as BuildKit's scanner does; files are walked without
following any symlink."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from dockyard.inroot import Escape, fd_path, open_beneath, resolve_dir

DB_LIMIT = 64 << 20  # a package database bigger than this is skipped (Debian's biggest images: a few MB)
OS_RELEASE_LIMIT = 64 << 10
STATUS_D_LIMIT = 10_000  # distroless status.d/ entries read at most
FIELD_LIMIT = 256  # a name, version or architecture longer than this is junk
HASH_CHUNK = 1 << 20
_DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
_DEB_VERSION = re.compile(r"^[A-Za-z0-9.+~:-]+$")
_APK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_APK_VERSION = re.compile(r"^[A-Za-z0-9._+~-]+$")
_ARCH = re.compile(r"^[a-z0-9_-]+$")
_DISTRO = re.compile(r"^[a-z0-9._-]+$")
_SPDX_ID_CHARS = re.compile(r"[^A-Za-z0-9.-]")
NOASSERTION = "NOASSERTION"

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Package:
    """One installed OS package."""

    kind: str  # "deb" or "apk"
    name: str
    version: str
    arch: str
    distro: str  # the purl namespace: os-release's ID

    @property
    def purl(self) -> str:
        q = "" if not self.arch else f"?arch={quote(self.arch, safe='')}"
        return f"pkg:{self.kind}/{self.distro}/{quote(self.name, safe='')}@{quote(self.version, safe='')}{q}"

    @property
    def spdx_id(self) -> str:
        tail = hashlib.sha256(self.purl.encode()).hexdigest()[:12]
        return f"SPDXRef-Package-{self.kind}-{_SPDX_ID_CHARS.sub('-', self.name)}-{tail}"


@dataclass(frozen=True)
class File:
    """One regular file of the image."""

    path: str  # "/usr/bin/x", made valid UTF-8
    raw: bytes  # the path as it is on disk (the SPDX ID hashes it: two undecodable names stay apart)
    sha1: str
    sha256: str

    @property
    def spdx_id(self) -> str:
        return f"SPDXRef-File-{hashlib.sha256(self.raw).hexdigest()[:16]}"


@dataclass
class Scan:
    """What a root holds: packages and files."""

    packages: list[Package] = field(default_factory=list)
    files: list[File] = field(default_factory=list)


def scan(root: str, warn: Warn) -> Scan:
    """The packages and files of the root filesystem at `root` (a directory only this process changes)."""
    found: dict[str, Package] = {}
    debian = _distro(root, "debian", warn)
    _collect(found, (_deb(s, debian) for s in _dpkg_stanzas(root, warn)), "dpkg", warn)
    alpine = _distro(root, "alpine", warn)
    _collect(found, (_apk(s, alpine) for s in _apk_stanzas(root, warn)), "apk", warn)
    return Scan(sorted(found.values(), key=lambda p: (p.kind, p.name, p.version, p.arch)), list(_files(root)))


def _collect(found: dict[str, Package], parsed: Iterator[Package | bool | None], db: str, warn: Warn) -> None:
    """Keep the packages; `False` is an entry that is not one (counted, and skipped with one warning)."""
    malformed = 0
    for pkg in parsed:
        if pkg is False:
            malformed += 1
        elif isinstance(pkg, Package):
            found.setdefault(pkg.purl, pkg)
    if malformed:
        warn(f"[Warning] sbom: {malformed} malformed {db} entries skipped")


# -- reading inside the root --------------------------------------------------------------------------------------

def read_bounded(root: str, path: str, limit: int, warn: Warn) -> bytes | None:
    """A regular file's content, `path` resolved inside `root`; None (with a warning unless it is missing) when it
    is not a regular file or is bigger than `limit`."""
    try:
        fd = open_beneath(root, path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (Escape, OSError) as e:
        warn(f"[Warning] sbom: {path}: cannot be opened ({e.strerror if isinstance(e, OSError) else 'escapes'}): "
             "skipped")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            warn(f"[Warning] sbom: {path}: not a regular file: skipped")
            return None
        if st.st_size > limit:
            warn(f"[Warning] sbom: {path}: {st.st_size} bytes, more than the {limit} allowed: skipped")
            return None
        with open(fd_path(fd), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:  # grew meanwhile
            warn(f"[Warning] sbom: {path}: more than the {limit} bytes allowed: skipped")
            return None
        return data
    finally:
        os.close(fd)


def _distro(root: str, default: str, warn: Warn) -> str:
    """os-release's ID (the purl namespace), or `default`."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        data = read_bounded(root, path, OS_RELEASE_LIMIT, warn)
        if data is None:
            continue
        for line in data.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition("=")
            value = value.strip().strip("\"'").lower()
            if key.strip() == "ID" and _DISTRO.match(value) and len(value) <= FIELD_LIMIT:
                return value
        return default
    return default


def _stanzas(data: bytes) -> Iterator[dict[str, str]]:
    """RFC 822-style paragraphs (dpkg's status): `Key: value` lines, continuations indented, blank-line separated."""
    fields: dict[str, str] = {}
    key = ""
    for line in data.decode("utf-8", "replace").split("\n"):
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0] in " \t":
            if key:
                fields[key] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
    if fields:
        yield fields


def _dpkg_stanzas(root: str, warn: Warn) -> Iterator[dict[str, str]]:
    data = read_bounded(root, "/var/lib/dpkg/status", DB_LIMIT, warn)
    if data is not None:
        yield from _stanzas(data)
    try:
        status_d = resolve_dir(root, "/var/lib/dpkg/status.d")
    except (NotADirectoryError, Escape, OSError):
        status_d = None
    if status_d is None:
        return
    try:
        names = sorted(os.listdir(os.path.join(root, status_d)))
    except OSError:
        return
    if len(names) > STATUS_D_LIMIT:
        warn(f"[Warning] sbom: /var/lib/dpkg/status.d: more than {STATUS_D_LIMIT} entries: only the first read")
    for name in names[:STATUS_D_LIMIT]:
        if not name.endswith(".md5sums"):
            data = read_bounded(root, f"/{status_d}/{name}", DB_LIMIT, warn)
            if data is not None:
                yield from _stanzas(data)


def _apk_stanzas(root: str, warn: Warn) -> Iterator[dict[str, str]]:
    """apk's installed database: `K:value` lines, a blank line between packages."""
    data = read_bounded(root, "/lib/apk/db/installed", DB_LIMIT, warn)
    if data is None:
        return
    fields: dict[str, str] = {}
    seen = False  # a stanza has begun (it may hold none of the keys read here)
    for line in data.decode("utf-8", "replace").split("\n"):
        if not line.strip():
            if seen:
                yield fields
            fields, seen = {}, False
            continue
        seen = True
        if len(line) > 1 and line[1] == ":" and line[0] in "PVA":
            fields.setdefault(line[0], line[2:].strip())
    if seen:
        yield fields


def _valid(value: str | None, pattern: re.Pattern) -> bool:
    return bool(value) and len(value or "") <= FIELD_LIMIT and bool(pattern.match(value or ""))


def _deb(fields: dict[str, str], distro: str) -> Package | bool | None:
    """A dpkg stanza as a package; None when not installed, False when malformed."""
    status = fields.get("Status")
    if status is not None and not status.endswith(" installed"):
        return None
    name, version, arch = fields.get("Package"), fields.get("Version"), fields.get("Architecture", "")
    if not (_valid(name, _DEB_NAME) and _valid(version, _DEB_VERSION) and (not arch or _valid(arch, _ARCH))):
        return False
    return Package("deb", name or "", version or "", arch, distro)


def _apk(fields: dict[str, str], distro: str) -> Package | bool:
    name, version, arch = fields.get("P"), fields.get("V"), fields.get("A", "")
    if not (_valid(name, _APK_NAME) and _valid(version, _APK_VERSION) and (not arch or _valid(arch, _ARCH))):
        return False
    return Package("apk", name or "", version or "", arch, distro)


def _files(root: str) -> Iterator[File]:
    """Every regular file under `root`, by path, with its checksums; no symlink is followed."""
    stack = [b""]
    base = os.fsencode(root)
    while stack:
        rel = stack.pop()
        with os.scandir(base + rel if rel else base) as it:
            entries = sorted(it, key=lambda e: e.name)
        dirs = []
        for e in entries:
            path = rel + b"/" + e.name
            if e.is_dir(follow_symlinks=False):
                dirs.append(path)
            elif e.is_file(follow_symlinks=False):
                yield _hashed(base, path)
        stack.extend(reversed(dirs))


def _hashed(base: bytes, path: bytes) -> File:
    sha1, sha256 = hashlib.sha1(usedforsecurity=False), hashlib.sha256()
    fd = os.open(base + path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            sha1.update(chunk)
            sha256.update(chunk)
    return File(path.decode("utf-8", "replace"), path, sha1.hexdigest(), sha256.hexdigest())


# -- the document ---------------------------------------------------------------------------------------------------

def spdx_document(found: Scan, name: str, image_id: str, created: str, tool: str) -> dict[str, Any]:
    """The SPDX 2.3 document: the image as the described package, containing its OS packages and files."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}\n{image_id}\n{created}")
    image = {"SPDXID": "SPDXRef-Image", "name": name, "versionInfo": image_id, "downloadLocation": NOASSERTION,
             "filesAnalyzed": False, "licenseConcluded": NOASSERTION, "licenseDeclared": NOASSERTION,
             "copyrightText": NOASSERTION, "primaryPackagePurpose": "CONTAINER"}
    packages = [image]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-Image"}]
    for p in found.packages:
        packages.append({
            "SPDXID": p.spdx_id, "name": p.name, "versionInfo": p.version, "downloadLocation": NOASSERTION,
            "filesAnalyzed": False, "licenseConcluded": NOASSERTION, "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION, "supplier": NOASSERTION,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": p.purl}]})
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": p.spdx_id})
    files = []
    for f in found.files:
        files.append({"SPDXID": f.spdx_id, "fileName": f.path,
                      "checksums": [{"algorithm": "SHA1", "checksumValue": f.sha1},
                                    {"algorithm": "SHA256", "checksumValue": f.sha256}],
                      "licenseConcluded": NOASSERTION, "copyrightText": NOASSERTION})
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": f.spdx_id})
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": name,
        "documentNamespace": f"https://spdx.org/spdxdocs/dockyard-{_SPDX_ID_CHARS.sub('-', name)}-{namespace}",
        "creationInfo": {"created": created, "creators": [f"Tool: {tool}"]},
        "packages": packages, "files": files, "relationships": relationships,
    }
