"""`dockyard build` and `dockyard builder prune`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from builder.build import BuildOptions
    from dockyard.image import Image
    from dockyard.store import Store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build an image from a Dockerfile")
    p.add_argument("context", metavar="CONTEXT", nargs="?",  # "?": an optional-valued flag may take it (below)
                   help="the build context directory (-: a tar archive or a Dockerfile on stdin)")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]", help="name the image (repeatable)")
    p.add_argument("-f", "--file", metavar="FILE", help="the Dockerfile (default: CONTEXT/Dockerfile; - reads stdin)")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]", help="set a build-time variable")
    p.add_argument("--target", metavar="STAGE", help="build this stage instead of the last one")
    p.add_argument("--no-cache", action="store_true", help="do not use cached steps")
    p.add_argument("--no-cache-filter", action="append", default=[], metavar="STAGE",
                   help="do not use cached steps in this stage")
    p.add_argument("--cache-from", action="append", default=[],
                   metavar="IMAGE|type=registry,ref=REF|type=local,src=DIR",
                   help="a cache to take steps from: an image (local, else its registry's, with inline records), a "
                        "cache in a registry or an OCI layout directory (repeatable)")
    p.add_argument("--cache-to", action="append", default=[],
                   metavar="type=registry,ref=REF|type=local,dest=DIR|type=inline[,mode=min|max][,compression=…]",
                   help="export the build cache (mode=min: the final image's steps; max: every stage's)")
    p.add_argument("--pull", action="store_true", help="always look for a newer base image in its registry")
    p.add_argument("--network", default="default", choices=("default", "none", "host"),
                   help="network for RUN (default: its own on the default bridge)")
    p.add_argument("--add-host", action="append", default=[], metavar="HOST:IP", help="add an /etc/hosts line for RUN")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="a resource limit for RUN")
    p.add_argument("--shm-size", metavar="SIZE", help="size of /dev/shm for RUN (default 64m)")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID,src=PATH|env=VAR",
                   help="a secret for RUN --mount=type=secret")
    p.add_argument("--ssh", action="append", default=[], metavar="default|ID[=SOCKET|KEY[,KEY]]",
                   help="an SSH agent for RUN --mount=type=ssh ($SSH_AUTH_SOCK's, or one holding the keys given)")
    p.add_argument("--build-context", action="append", default=[],
                   metavar="NAME=DIR|docker-image://REF|oci-layout://PATH[@TAG]",
                   help="an additional context, for FROM NAME and --from=NAME")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="add an image label")
    p.add_argument("--annotation", action="append", default=[], metavar="[manifest:]KEY=VALUE",
                   help="add a manifest annotation")
    p.add_argument("--iidfile", metavar="FILE", help="write the image ID to FILE")
    p.add_argument("--metadata-file", metavar="FILE", help="write the build result's metadata (JSON) to FILE")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT][,…]",
                   help="target platform(s); several make an image index (default: the host's)")
    p.add_argument("--progress", default="auto", choices=("auto", "tty", "plain", "rawjson", "quiet"),
                   help="progress output (auto: tty on a terminal, else plain)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    p.add_argument("--compression", default="gzip", choices=("gzip", "zstd"), help="layer compression")
    p.add_argument("--output", "-o", action="append", default=[],
                   metavar="type=local|oci|docker,dest=PATH[,compression=gzip|zstd]", help="also export the result")
    p.add_argument("--push", action="store_true", help="push every -t name after building")
    p.add_argument("--sbom", nargs="?", action=_OptionalValue, metavar="true|false",
                   help="attach an SPDX SBOM of the image (its dpkg/apk packages and files) as a referrer")
    p.add_argument("--provenance", nargs="?", action=_OptionalValue, metavar="true|false|mode=min|max",
                   help="attach SLSA provenance v1 as a referrer (true: mode=min)")
    p.add_argument("--attest", action="append", default=[], metavar="type=sbom|provenance[,mode=min|max]",
                   help="an attestation to attach, as docker buildx takes it (repeatable)")
    for flag, what in (("--load", "the image is always loaded into the store"),
                       ("--rm", "intermediate containers are always removed"),
                       ("--force-rm", "intermediate containers are always removed"),
                       ("--compress", "the context is never sent anywhere")):
        p.add_argument(flag, action="store_true", help=f"accepted for compatibility ({what})")
    p.set_defaults(func=cmd_build)

    b = sub.add_parser("builder", help="manage the build cache")
    bsub = b.add_subparsers(dest="builder_command", metavar="COMMAND")
    prune = bsub.add_parser("prune", help="remove the build cache")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt (accepted for docker compatibility)")
    prune.add_argument("--keep-unpacked", action="store_true",
                       help="keep the unpacked copies of image layers no container mounts (docker keeps them)")
    prune.set_defaults(func=cmd_builder_prune)
    b.set_defaults(func=lambda args: b.print_help() or 0)


class _OptionalValue(argparse.Action):
    """--sbom/--provenance [VALUE] as buildx reads them (pflag's NoOptDefVal): alone they mean `true`; the next word
    is their value only when it is a boolean or KEY=VALUE, else it is the CONTEXT."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from builder.attest import is_value

        if isinstance(values, str) and not is_value(values):
            namespace.context_after_flag = values
            values = None
        setattr(namespace, self.dest, "true" if values is None else values)


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


def _options(args: argparse.Namespace, context: str, text: str | None) -> BuildOptions:
    """The BuildOptions the flags ask for (each flag's value checked before any work)."""
    import os

    from builder import flags
    from builder.attest import parse_flags
    from builder.build import BuildOptions, build_platform
    from dockyard.errors import DockyardError
    from runner.network.hosts import parse_add_host

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and not epoch.isdigit():
        raise DockyardError(f"SOURCE_DATE_EPOCH={epoch!r}: expected a number of seconds")
    run = flags.RunSettings(extra_hosts=[parse_add_host(h) for h in args.add_host],
                      rlimits=dict(flags.parse_ulimit(u) for u in args.ulimit),
                      shm_size=flags.parse_shm_size(args.shm_size) if args.shm_size else None)
    return BuildOptions(
        context=context, dockerfile=None if args.file in (None, "-") or text is not None else args.file,
        dockerfile_text=text, tags=args.tag, build_args=_pairs(args.build_arg, "--build-arg", env_fallback=True),
        target=args.target, no_cache=args.no_cache, pull=args.pull, network=args.network,
        secrets=dict(flags.parse_secret(s) for s in args.secret), labels=_pairs(args.label, "--label"),
        platform=args.platform or build_platform(), compression=args.compression,
        source_date_epoch=int(epoch) if epoch is not None else None, run=run,
        ssh=dict(flags.parse_ssh(s) for s in args.ssh),
        contexts=dict(flags.parse_build_context(c) for c in args.build_context),
        annotations=[flags.parse_annotation(a) for a in args.annotation], no_cache_filter=args.no_cache_filter,
        cache_from=[flags.parse_cache(c, "--cache-from") for c in args.cache_from],
        cache_to=[flags.parse_cache(c, "--cache-to") for c in args.cache_to],
        attest=parse_flags(args.sbom, args.provenance, args.attest))


def cmd_build(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from dockyard.errors import DockyardError
    from dockyard.store import Store

    taken = getattr(args, "context_after_flag", None)
    if taken is not None:
        if args.context is not None:
            raise DockyardError(f"build: one CONTEXT expected, got {taken!r} and {args.context!r}")
        args.context = taken
    if args.context is None:
        raise DockyardError("build: CONTEXT is required (a directory, or - for stdin)")
    if args.context == "-" and args.file == "-":
        raise DockyardError("build -: stdin cannot be both the context and the Dockerfile (-f -)")
    if args.push and not args.tag:
        raise DockyardError("--push needs at least one -t NAME")
    if args.context != "-":
        return _build(args, args.context, sys.stdin.read() if args.file == "-" else None)
    from builder.context import BuildContext, unpack_stdin_context

    data = sys.stdin.buffer.read()
    store = Store()
    os.makedirs(store.tmp_dir, exist_ok=True)
    context = tempfile.mkdtemp(prefix="stdin-context-", dir=store.tmp_dir)
    try:
        if not unpack_stdin_context(data, context):  # a Dockerfile alone: the context is empty
            return _build(args, context, data.decode("utf-8", "replace"))
        text = BuildContext(context).read_file(args.file).decode("utf-8", "replace") if args.file else None
        return _build(args, context, text)
    finally:
        shutil.rmtree(context, ignore_errors=True)


def _build(args: argparse.Namespace, context: str, text: str | None) -> int:
    """Build the context directory `context` (`text`: the Dockerfile, when not read from a file)."""
    import signal

    from builder.build import Builder
    from builder.output import export_archive, export_local, layer_compression, make_progress, parse_output

    outputs = [parse_output(o) for o in args.output]
    options = _options(args, context, text)
    # An archive's layers are the store's blobs: `compression=` on an --output makes the build's layers so.
    options.compression = layer_compression(outputs, options.compression)
    progress = make_progress("quiet" if args.quiet else args.progress)
    builder = Builder(options, progress=progress)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every cleanup: mounts, temp dirs, uncommitted blobs

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        image = builder.build()
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
    if args.iidfile:
        from dockyard.fsutil import atomic_write

        atomic_write(args.iidfile, str(builder.index or image.id).encode())
    if args.metadata_file:
        _write_metadata(args.metadata_file, builder.store, image, [n.ref_name for n in builder.names])
    for out in outputs:
        if out.kind == "local":
            export_local(builder.store, image, out.dest)
        else:
            export_archive(builder.store, image, [n.ref_name for n in builder.names], out.kind, out.dest)
    if args.push:
        _push(builder.store, builder.names, args.quiet or args.progress == "quiet")
    if args.quiet:
        print(builder.index or image.id)  # as buildx: a multi-platform image is known by its index
    return 0


def _write_metadata(path: str, store: Store, image: Image, names: list[str]) -> None:
    """--metadata-file: buildx's keys for the image exported (digests of its manifest and config)."""
    import json

    from dockyard.fsutil import atomic_write

    top = json.loads(store.read_blob(image.top))  # an index, for a multi-platform image
    manifest = {"mediaType": top.get("mediaType") or "application/vnd.oci.image.manifest.v1+json",
                "digest": str(image.top), "size": os.path.getsize(store.blob_path(image.top))}
    if top.get("annotations"):
        manifest["annotations"] = top["annotations"]
    data = {"containerimage.config.digest": str(image.id), "containerimage.descriptor": manifest,
            "containerimage.digest": str(image.top)}
    if names:
        data["image.name"] = ",".join(names)
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


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

    count, freed = BuildCache(Store()).prune(not args.keep_unpacked)
    print(f"Deleted {count} build cache entries")
    print(f"Total reclaimed space: {human_size(freed)}")
    return 0
