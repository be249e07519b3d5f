"""Image commands: images, inspect, tag, rmi, history, image prune (and the `image …` group)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

# Other areas (containers) add lookups here: each returns an inspect object or None when NAME isn't theirs.
INSPECTORS: list[tuple[str, Callable[[str], dict[str, Any] | None]]] = []
# docker's order of lookups without --type: a container named like an image, or like an image id's prefix, wins.
INSPECT_ORDER = ("container", "image", "network", "volume")


def register(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser("images", help="list images")
    _images_args(images)
    inspect = sub.add_parser("inspect", help="show low-level information on images (and containers)")
    inspect.add_argument("names", nargs="+", metavar="NAME")
    inspect.add_argument("-f", "--format", help="Go-template subset, e.g. '{{.Config.Cmd}}'")
    inspect.add_argument("--type", choices=["image", "container"], help="only look for this kind of object")
    _referrers_arg(inspect)
    inspect.set_defaults(func=cmd_inspect)
    tag = sub.add_parser("tag", help="create a tag TARGET that refers to SOURCE")
    _tag_args(tag)
    rmi = sub.add_parser("rmi", help="remove images")
    _rmi_args(rmi)
    history = sub.add_parser("history", help="show the history of an image")
    _history_args(history)

    group = sub.add_parser("image", help="manage images")
    gsub = group.add_subparsers(dest="image_command", metavar="COMMAND")
    _images_args(gsub.add_parser("ls", aliases=["list"], help="list images"))
    gi = gsub.add_parser("inspect", help="show low-level information on images")
    gi.add_argument("names", nargs="+", metavar="IMAGE")
    gi.add_argument("-f", "--format")
    _referrers_arg(gi)
    gi.set_defaults(func=cmd_inspect, type="image")
    _tag_args(gsub.add_parser("tag", help="create a tag"))
    _rmi_args(gsub.add_parser("rm", aliases=["remove"], help="remove images"))
    _history_args(gsub.add_parser("history", help="show the history of an image"))
    prune = gsub.add_parser("prune", help="remove unused images")
    prune.add_argument("-a", "--all", action="store_true", help="remove all images not used by containers")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    prune.add_argument("--filter", action="append", default=[], help="dangling=true|false, label=KEY[=VALUE], "
                       "label!=KEY[=VALUE]")
    prune.add_argument("--keep-unpacked", action="store_true",
                       help="keep the unpacked copies of the remaining images' layers (docker keeps them)")
    prune.set_defaults(func=cmd_prune)
    group.set_defaults(func=lambda a: group.print_help() or 0)


def _referrers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--referrers", action="store_true",
                   help="list the image's referrers (SBOM, provenance): of the local image, else of "
                        "REGISTRY/REPO:TAG through its registry's referrers API")


def _images_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("repository", nargs="?", help="only images of REPOSITORY[:TAG]")
    p.add_argument("-a", "--all", action="store_true",
                   help="show all images (default hides none: kept for docker compatibility)")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="dangling=true|false, reference=PATTERN")
    p.add_argument("--format", help="'json', 'table TEMPLATE' or a Go-template subset")
    p.set_defaults(func=cmd_images)


def _tag_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=cmd_tag)


def _rmi_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="force removal of the image")
    p.set_defaults(func=cmd_rmi)


def _history_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-H", "--human", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--format", help="'json' or a Go-template subset")
    p.set_defaults(func=cmd_history)


def _store():
    from dockyard.store import Store

    return Store()


def image_rows(root: str) -> list[dict[str, Any]]:
    """One record per (image, tag) as `images --format json` prints it, newest first."""
    from dockyard import summaries
    from dockyard.cli.output import ago, human_size
    from dockyard.imagefilters import repo_tag
    from dockyard.times import parse_time

    rows: list[dict[str, Any]] = []
    for digest, (image_id, created_text, size, compressed, platforms), names in summaries.read(root):
        created = parse_time(created_text)  # size: docker's SIZE, the layers unpacked
        untagged: list[str | None] = [None]
        for name in names or untagged:
            repo, tag = repo_tag(name)
            rows.append({
                "Containers": "N/A",
                "CreatedAt": created.strftime("%Y-%m-%d %H:%M:%S %z UTC") if created else "",
                "CreatedSince": ago(created),
                "Digest": digest,
                "ID": image_id.partition(":")[2][:12],
                "FullID": image_id,
                "Repository": repo,
                "Tag": tag,
                "Size": human_size(size),
                "SizeBytes": size,
                "CompressedSize": human_size(compressed),  # dockyard's: what a push or save moves
                "Platforms": platforms,  # of a multi-platform image (one row, as docker's containerd store)
                "_created": created.timestamp() if created else 0,
                "Name": name,
            })
    rows.sort(key=lambda r: (-r["_created"], r["Repository"], r["Tag"]))
    return rows


def cmd_images(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_formatted, table
    from dockyard.imagefilters import from_cli, listed
    from dockyard.roots import default_root

    filters = from_cli(args.filter)
    rows = [r for r in image_rows(os.path.abspath(default_root())) if listed(r["Name"], args.repository, filters)]
    for r in rows:
        r.pop("_created")
        r.pop("Name")
        if args.no_trunc:
            r["ID"] = r["FullID"]
        r.pop("FullID")
    if args.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        print("\n".join(seen) if seen else "", end="\n" if seen else "")
        return 0
    if args.format:
        for r in rows:
            r.pop("SizeBytes")
        print_formatted(args.format, rows)
        return 0
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if args.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    table(headers, [[r["Repository"], r["Tag"]] + ([r["Digest"]] if args.digests else [])
                    + [r["ID"], r["CreatedSince"], r["Size"]] for r in rows])
    return 0


def _image_inspector(name: str) -> dict[str, Any] | None:
    from dockyard import summaries
    from dockyard.errors import NotFound
    from dockyard.roots import default_root

    if not summaries.may_name_image(os.path.abspath(default_root()), name):
        return None  # surely not an image: on to the containers without the store's imports
    store = _store()
    try:
        image = store.resolve(name)
    except NotFound:
        return None
    from dockyard.api.images import inspect  # the API's imports only when NAME is an image

    return inspect(store, image)


def _referrers(name: str) -> dict[str, Any]:
    """The referrers of a local image, else of a remote one named with its registry: the manifest digest they
    refer to and their descriptors (as the referrers API lists them)."""
    from dockyard import reference
    from dockyard.errors import NotFound

    store = _store()
    try:
        image = store.resolve(name)
        subject, found = image.manifest_digest, [r.to_json() for r in store.referrers(image.manifest_digest)]
    except NotFound:
        if not reference.parse(name).registry:
            raise
        from registry.client.referrers import list_referrers

        subject, found = list_referrers(name)
    return {"Name": name, "Subject": str(subject), "Referrers": found}


def cmd_inspect(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_inspected

    if getattr(args, "referrers", False):
        print_inspected(args.format, [_referrers(name) for name in args.names])
        return 0
    inspectors = sorted([("image", _image_inspector), *INSPECTORS], key=lambda kind_fn: INSPECT_ORDER.index(kind_fn[0]))
    found, missing = [], []
    for name in args.names:
        for kind, fn in inspectors:
            if args.type in (None, kind) and (obj := fn(name)) is not None:
                found.append(obj)
                break
        else:
            missing.append(name)
    print_inspected(args.format, found)
    for name in missing:
        print(f"Error: No such object: {name}", file=sys.stderr)
    return 1 if missing else 0


def cmd_tag(args: argparse.Namespace) -> int:
    from dockyard.api import Client

    Client().images.get(args.source).tag(args.target)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from dockyard.errors import NotFound
    from dockyard.removal import remove_image
    from dockyard.store import Conflict

    store = _store()
    status = 0
    for name in args.images:
        try:
            removal = remove_image(store, name, args.force)
        except (NotFound, Conflict) as e:
            print(f"Error: {e}", file=sys.stderr)
            status = 1
            continue
        for t in removal.untagged:
            print(f"Untagged: {t}")
        if removal.deleted:
            print(f"Deleted: {removal.deleted.id}")
    store.gc()
    return status


def cmd_history(args: argparse.Namespace) -> int:
    from dockyard.api.images import history
    from dockyard.cli.output import ago, human_size, print_formatted, table
    from dockyard.image import parse_time

    store = _store()
    image = store.resolve(args.image)
    rows = [{"ID": "<missing>", "CreatedAt": h.created,
             "CreatedSince": ago(parse_time(h.created)) if args.human else h.created,
             "CreatedBy": h.created_by, "Size": human_size(h.size) if args.human else str(h.size),
             "Comment": h.comment} for h in history(image)]
    if rows:
        rows[0]["ID"] = str(image.id) if args.no_trunc else image.id.short
    if args.quiet:
        print(rows[0]["ID"] if rows else image.id.short)
        return 0
    if args.format:
        print_formatted(args.format, rows)
        return 0
    def trunc(s: str) -> str:
        return s if args.no_trunc or len(s) <= 45 else s[:44] + "…"
    table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
          [[r["ID"], r["CreatedSince"], trunc(r["CreatedBy"]), r["Size"], r["Comment"]] for r in rows])
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from dockyard.cli.output import human_size
    from dockyard.imagefilters import from_cli
    from dockyard.removal import prune_images

    filters = from_cli(args.filter) + ([("dangling", "false")] if args.all else [])
    pruned = prune_images(_store(), filters, not args.keep_unpacked)
    if pruned.images:
        print("Deleted Images:")
        for image, _ in pruned.images:
            print(f"deleted: {image.id}")
        print()
    print(f"Total reclaimed space: {human_size(pruned.reclaimed)}")
    return 0
