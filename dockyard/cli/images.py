"""Image commands: images, inspect, tag, rmi, history, image prune (and the `image …` group)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

# Other areas (containers) add lookups here: each returns an inspect object or None when NAME isn't theirs.
INSPECTORS: list[tuple[str, Callable[[str], dict[str, Any] | None]]] = []


def register(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser("images", help="list images")
    _images_args(images)
    inspect = sub.add_parser("inspect", help="show low-level information on images (and containers)")
    inspect.add_argument("names", nargs="+", metavar="NAME")
    inspect.add_argument("-f", "--format", help="Go-template subset, e.g. '{{.Config.Cmd}}'")
    inspect.add_argument("--type", choices=["image", "container"], help="only look for this kind of object")
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
    gi.set_defaults(func=cmd_inspect, type="image")
    _tag_args(gsub.add_parser("tag", help="create a tag"))
    _rmi_args(gsub.add_parser("rm", aliases=["remove"], help="remove images"))
    _history_args(gsub.add_parser("history", help="show the history of an image"))
    prune = gsub.add_parser("prune", help="remove unused images")
    prune.add_argument("-a", "--all", action="store_true", help="remove all images not used by containers")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    prune.set_defaults(func=cmd_prune)
    group.set_defaults(func=lambda a: group.print_help() or 0)


def _images_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("repository", nargs="?", help="only images of REPOSITORY[:TAG]")
    p.add_argument("-a", "--all", action="store_true", help="show all images (default hides none: kept for docker compatibility)")
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


def _split(name: str) -> tuple[str, str]:
    from dockyard import reference

    ref = reference.parse(name)
    return ref.name, ref.tag or "<none>"


def image_rows(store) -> list[dict[str, Any]]:
    """One record per (image, tag) as `images --format json` prints it, newest first."""
    from dockyard.cli.output import ago, human_size

    rows = []
    for image, names in store.images():
        created = image.created
        for name in names or [None]:
            repo, tag = _split(name) if name else ("<none>", "<none>")
            rows.append({
                "Containers": "N/A",
                "CreatedAt": created.strftime("%Y-%m-%d %H:%M:%S %z UTC") if created else "",
                "CreatedSince": ago(created),
                "Digest": str(image.manifest_digest),
                "ID": image.id.short,
                "FullID": str(image.id),
                "Repository": repo,
                "Tag": tag,
                "Size": human_size(image.size),
                "SizeBytes": image.size,
                "_created": created.timestamp() if created else 0,
            })
    rows.sort(key=lambda r: (-r["_created"], r["Repository"], r["Tag"]))
    return rows


def _matches(row: dict[str, Any], repository: str | None, filters: list[str]) -> bool:
    from fnmatch import fnmatchcase

    from dockyard.errors import DockyardError

    if repository:
        repo, _, tag = repository.partition(":") if "/" not in repository.rpartition(":")[2] else (repository, "", "")
        if row["Repository"] != repo or (tag and row["Tag"] != tag):
            return False
    for f in filters:
        key, _, value = f.partition("=")
        if key == "dangling":
            if (row["Repository"] == "<none>") != (value.lower() == "true"):
                return False
        elif key == "reference":
            if not fnmatchcase(f"{row['Repository']}:{row['Tag']}", value) and not fnmatchcase(row["Repository"], value):
                return False
        else:
            raise DockyardError(f"invalid filter {key!r} (supported: dangling, reference)")
    return True


def cmd_images(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_formatted, table

    store = _store()
    rows = [r for r in image_rows(store) if _matches(r, args.repository, args.filter)]
    for r in rows:
        r.pop("_created")
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


def image_inspect(store, image) -> dict[str, Any]:
    """The `docker image inspect` object for an image."""
    from dockyard import reference

    tags = store.tags_of(image.manifest_digest)
    cfg = image.config
    return {
        "Id": str(image.id),
        "RepoTags": tags,
        "RepoDigests": sorted({f"{reference.parse(t).name}@{image.manifest_digest}" for t in tags}),
        "Parent": "",
        "Comment": (cfg.get("history") or [{}])[-1].get("comment", "") if cfg.get("history") else "",
        "Created": cfg.get("created", ""),
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant", ""),
        "Os": cfg.get("os", ""),
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": [str(d) for d in image.diff_ids]},
        "Manifest": {"Digest": str(image.manifest_digest), "MediaType": image.manifest.get("mediaType", "")},
        "Metadata": {"LastTagTime": ""},
    }


def _image_inspector(name: str) -> dict[str, Any] | None:
    from dockyard.errors import NotFound

    store = _store()
    try:
        return image_inspect(store, store.resolve(name))
    except NotFound:
        return None


def cmd_inspect(args: argparse.Namespace) -> int:
    from dockyard.cli.output import render

    inspectors = [("image", _image_inspector), *INSPECTORS]
    found, missing = [], []
    for name in args.names:
        for kind, fn in inspectors:
            if args.type in (None, kind) and (obj := fn(name)) is not None:
                found.append(obj)
                break
        else:
            missing.append(name)
    if args.format:
        for obj in found:
            print(render(args.format, obj))
    else:
        print(json.dumps(found, indent=4))
    for name in missing:
        print(f"Error: No such object: {name}", file=sys.stderr)
    return 1 if missing else 0


def cmd_tag(args: argparse.Namespace) -> int:
    from dockyard import reference
    from dockyard.errors import DockyardError

    store = _store()
    image = store.resolve(args.source)
    target = reference.parse(args.target)
    if target.digest:
        raise DockyardError(f"refusing to create a tag with a digest reference: {args.target}")
    store.tag(image, target)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from dockyard import reference
    from dockyard.errors import DockyardError, NotFound
    from dockyard.store import Conflict

    store = _store()
    status = 0
    for name in args.images:
        try:
            image = store.resolve(name)
            tags = store.tags_of(image.manifest_digest)
            holders = store.holders(image.manifest_digest)
            by_tag = None
            try:
                ref = reference.parse(name)
                by_tag = ref.ref_name if (not ref.digest and ref.ref_name in tags) else None
            except DockyardError:
                pass
            if by_tag and len(tags) > 1:
                store.untag(by_tag)
                print(f"Untagged: {by_tag}")
                continue
            if holders and not args.force:
                raise Conflict(f"conflict: unable to remove {name} (must force) - image is being used by "
                               f"{holders[0]}")
            if not by_tag and len(tags) > 1 and not args.force:
                raise Conflict(f"conflict: unable to delete {image.id.short} (must be forced) - image is "
                               f"referenced in multiple repositories")
            for t in tags:
                store.untag(t)
                print(f"Untagged: {t}")
            store.delete_image(image.manifest_digest)
            print(f"Deleted: {image.id}")
        except (NotFound, Conflict) as e:
            print(f"Error: {e}", file=sys.stderr)
            status = 1
    store.gc()
    return status


def cmd_history(args: argparse.Namespace) -> int:
    from dockyard.cli.output import ago, human_size, print_formatted, table
    from dockyard.image import parse_time

    store = _store()
    image = store.resolve(args.image)
    layers = iter(image.layers)
    rows = []
    for h in image.config.get("history") or []:
        size = 0 if h.get("empty_layer") else getattr(next(layers, None), "size", 0)
        rows.append({"ID": "<missing>", "CreatedAt": h.get("created", ""),
                     "CreatedSince": ago(parse_time(h.get("created"))) if args.human else h.get("created", ""),
                     "CreatedBy": h.get("created_by", ""), "Size": human_size(size) if args.human else str(size),
                     "Comment": h.get("comment", "")})
    rows.reverse()
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

    store = _store()
    deleted = []
    held = store.held()
    for image, names in store.images():
        if (names and not args.all) or image.manifest_digest in held:
            continue
        for t in names:
            store.untag(t)
        store.delete_image(image.manifest_digest)
        deleted.append(image)
    freed = store.gc()
    if deleted:
        print("Deleted Images:")
        for image in deleted:
            print(f"deleted: {image.id}")
        print()
    print(f"Total reclaimed space: {human_size(freed)}")
    return 0
