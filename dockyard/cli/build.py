"""`dockyard build` and `dockyard builder prune`."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build an image from a Dockerfile")
    p.add_argument("context", metavar="CONTEXT", help="the build context directory")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]", help="name the image (repeatable)")
    p.add_argument("-f", "--file", metavar="FILE", help="the Dockerfile (default: CONTEXT/Dockerfile; - reads stdin)")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]", help="set a build-time variable")
    p.add_argument("--target", metavar="STAGE", help="build this stage instead of the last one")
    p.add_argument("--no-cache", action="store_true", help="do not use cached steps")
    p.add_argument("--pull", action="store_true", help="always pull base images")
    p.add_argument("--network", default="default", choices=("default", "none", "host"),
                   help="network for RUN (default: its own on the default bridge)")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID,src=PATH",
                   help="a secret file for RUN --mount=type=secret")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="add an image label")
    p.add_argument("--iidfile", metavar="FILE", help="write the image ID to FILE")
    p.add_argument("--platform", default="linux/amd64", help="target platform (only linux/amd64)")
    p.add_argument("--progress", default="auto", choices=("auto", "plain", "quiet"), help="progress output")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    p.add_argument("--compression", default="gzip", choices=("gzip", "zstd"), help="layer compression")
    p.add_argument("--output", "-o", action="append", default=[], metavar="type=local|oci|docker,dest=PATH",
                   help="also export the result")
    p.add_argument("--push", action="store_true", help="push every -t name after building")
    p.set_defaults(func=cmd_build)

    b = sub.add_parser("builder", help="manage the build cache")
    bsub = b.add_subparsers(dest="builder_command", metavar="COMMAND")
    prune = bsub.add_parser("prune", help="remove the build cache")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt (accepted for docker compatibility)")
    prune.set_defaults(func=cmd_builder_prune)
    b.set_defaults(func=lambda args: b.print_help() or 0)


def _pairs(values: list[str], what: str, env_fallback: bool = False) -> dict[str, str]:
    """KEY=VALUE options; with env_fallback a bare KEY takes its value from the environment (docker's rule)."""
    import os

    from dockyard.errors import DockyardError

    out: dict[str, str] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not key:
            raise DockyardError(f"{what} {v!r}: expected KEY=VALUE")
        if not eq:
            if not env_fallback:
                raise DockyardError(f"{what} {v!r}: expected KEY=VALUE")
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def _secrets(values: list[str]) -> dict[str, str]:
    """--secret id=ID,src=PATH (or source=PATH): secret id -> absolute host path."""
    from builder.build import secret_files
    from dockyard.errors import DockyardError

    out: dict[str, str] = {}
    for v in values:
        fields = dict(f.partition("=")[::2] for f in v.split(","))
        sid = fields.get("id")
        src = fields.get("src") or fields.get("source")
        if not sid or not src:
            raise DockyardError(f"--secret {v!r}: expected id=ID,src=PATH")
        out[sid] = src
    return secret_files(out)


def cmd_build(args: argparse.Namespace) -> int:
    import os
    import signal

    from builder.build import Builder, BuildOptions
    from builder.output import Progress, export_archive, export_local, parse_output
    from dockyard.errors import DockyardError

    if args.platform != "linux/amd64":
        raise DockyardError(f"--platform {args.platform}: only linux/amd64 can be built here")
    outputs = [parse_output(o) for o in args.output]
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and not epoch.isdigit():
        raise DockyardError(f"SOURCE_DATE_EPOCH={epoch!r}: expected a number of seconds")
    text = sys.stdin.read() if args.file == "-" else None
    options = BuildOptions(
        context=args.context, dockerfile=None if args.file in (None, "-") else args.file, dockerfile_text=text,
        tags=args.tag, build_args=_pairs(args.build_arg, "--build-arg", env_fallback=True), target=args.target,
        no_cache=args.no_cache, pull=args.pull, network=args.network, secrets=_secrets(args.secret),
        labels=_pairs(args.label, "--label"), platform=args.platform, compression=args.compression,
        source_date_epoch=int(epoch) if epoch is not None else None)
    if args.push and not args.tag:
        raise DockyardError("--push needs at least one -t NAME")
    quiet = args.quiet or args.progress == "quiet"
    builder = Builder(options, progress=Progress("quiet" if quiet else "plain"))

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every cleanup: mounts, temp dirs, uncommitted blobs

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        image = builder.build()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.iidfile:
        from dockyard.fsutil import atomic_write

        atomic_write(args.iidfile, str(image.id).encode())
    for kind, dest in outputs:
        if kind == "local":
            export_local(builder.store, image, dest)
        else:
            export_archive(builder.store, image, [n.ref_name for n in builder.names], kind, dest)
    if args.push:
        _push(builder.store, builder.names, quiet)
    if args.quiet:
        print(image.id)
    return 0


def _push(store, names: list, quiet: bool) -> None:
    """Push each tag with the registry client (as `dockyard push NAME` would), reporting on stderr."""
    from registry.client.progress import make_progress
    from registry.client.transfer import push

    for name in names:
        push(store, name.ref_name, progress=make_progress(quiet, sys.stderr),
             on_pushed=lambda p: print(p.reference, file=sys.stderr) if quiet else None)


def cmd_builder_prune(args: argparse.Namespace) -> int:
    from builder.cache import BuildCache
    from dockyard.cli.output import human_size
    from dockyard.store import Store

    count, freed = BuildCache(Store()).prune()
    print(f"Deleted {count} build cache entries")
    print(f"Total reclaimed space: {human_size(freed)}")
    return 0
