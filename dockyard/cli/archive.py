"""Archive commands: import (rootfs tarball), save and load (docker-archive, oci-archive)."""

from __future__ import annotations

import argparse
import contextlib
import sys


def register(sub: argparse._SubParsersAction) -> None:
    imp = sub.add_parser("import", help="create an image from a root filesystem tarball")
    imp.add_argument("file", metavar="FILE|-")
    imp.add_argument("name", nargs="?", metavar="REPOSITORY[:TAG]")
    imp.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction")
    imp.add_argument("-m", "--message", default="", help="commit message for the imported image")
    imp.add_argument("--compression", choices=["gzip", "zstd"], default="gzip")
    imp.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="the image's platform (default linux/amd64)")
    imp.set_defaults(func=cmd_import)
    save = sub.add_parser("save", help="save images to a tar archive")
    save.add_argument("images", nargs="+", metavar="IMAGE")
    save.add_argument("-o", "--output", help="write to a file instead of standard output")
    save.add_argument("--format", choices=["docker-archive", "oci-archive"], default="docker-archive")
    save.set_defaults(func=cmd_save)
    load = sub.add_parser("load", help="load images from a tar archive")
    load.add_argument("-i", "--input", help="read from a file instead of standard input")
    load.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")
    load.set_defaults(func=cmd_load)


@contextlib.contextmanager
def _input(path: str | None, what: str):
    """A named input file, or standard input for '-' / no path."""
    from dockyard.errors import NotFound

    if path in (None, "-"):
        if sys.stdin.isatty():
            from dockyard.errors import DockyardError

            raise DockyardError(f"{what}: no input: use a file name or redirect standard input")
        yield sys.stdin.buffer
        return
    try:
        # Opened apart from `with f:` below so that only the open's errors become these messages.
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise NotFound(f"open {path}: no such file or directory") from None
    except IsADirectoryError:
        raise NotFound(f"open {path}: is a directory") from None
    with f:
        yield f


def cmd_import(args: argparse.Namespace) -> int:
    from dockyard import reference
    from dockyard.image import Platform
    from dockyard.importer import import_rootfs
    from dockyard.store import Store

    names = [reference.parse(args.name)] if args.name else []
    platform = Platform.parse(args.platform) if args.platform else None
    store = Store()
    with _input(args.file, "import") as f:
        image = import_rootfs(store, f, args.file if args.file != "-" else "standard input", names,
                              args.change, args.message, args.compression, platform)
    print(image.id)
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from dockyard import reference
    from dockyard.archive import save
    from dockyard.errors import DockyardError
    from dockyard.store import Store

    if args.output is None and sys.stdout.isatty():
        raise DockyardError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    store = Store()
    chosen: dict = {}
    for name in args.images:
        image = store.resolve(name)
        names = chosen.setdefault(image.top, (image, []))[1]
        with contextlib.suppress(DockyardError):
            ref = reference.parse(name)
            if not ref.digest and ref.ref_name in store.tags_of(image.top):
                names.append(ref.ref_name)
    save(store, list(chosen.values()), sys.stdout.buffer if args.output is None else args.output, args.format)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from dockyard.archive import load
    from dockyard.store import Store

    store = Store()
    what = args.input or "standard input"
    with _input(args.input, "load") as f:
        loaded = load(store, f, what)
    if not args.quiet:
        for item in loaded:
            for name in item.names:
                print(f"Loaded image: {name}")
            if not item.names:
                print(f"Loaded image ID: {item.image.id}")
    return 0
