"""`volume` commands: create, ls, inspect, rm, prune."""

from __future__ import annotations

import argparse
import sys

from dockyard.cli.run import store_root


def register(sub: argparse._SubParsersAction) -> None:
    volume = sub.add_parser("volume", help="manage volumes")
    vsub = volume.add_subparsers(dest="volume_command", metavar="COMMAND")
    vc = vsub.add_parser("create", help="create a volume")
    vc.add_argument("name", nargs="?", default="")
    vc.add_argument("--label", action="append", default=[])
    vc.add_argument("-d", "--driver", default="local")
    vc.set_defaults(func=cmd_volume_create)
    vl = vsub.add_parser("ls", aliases=["list"], help="list volumes")
    vl.add_argument("-q", "--quiet", action="store_true")
    vl.add_argument("--format")
    vl.set_defaults(func=cmd_volume_ls)
    vi = vsub.add_parser("inspect", help="display detailed information on volumes")
    vi.add_argument("names", nargs="+")
    vi.add_argument("-f", "--format")
    vi.set_defaults(func=cmd_volume_inspect)
    vr = vsub.add_parser("rm", aliases=["remove"], help="remove volumes")
    vr.add_argument("-f", "--force", action="store_true")
    vr.add_argument("names", nargs="+")
    vr.set_defaults(func=cmd_volume_rm)
    vp = vsub.add_parser("prune", help="remove unused anonymous volumes (-a: all unused)")
    vp.add_argument("-a", "--all", action="store_true")
    vp.add_argument("-f", "--force", action="store_true")
    vp.set_defaults(func=cmd_volume_prune)
    volume.set_defaults(func=lambda a: volume.print_help() or 0)


def _volumes():
    from dockyard.api import Client

    return Client(store_root()).volumes


def cmd_volume_create(args: argparse.Namespace) -> int:
    labels = dict(item.partition("=")[::2] for item in args.label)
    print(_volumes().create(args.name or None, args.driver, labels=labels).name)
    return 0


def cmd_volume_ls(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_listing

    rows = [{"Driver": v.attrs["Driver"], "Name": v.name, "Mountpoint": v.attrs["Mountpoint"],
             "Labels": v.attrs["Labels"]} for v in _volumes().list()]
    print_listing(rows, ["DRIVER", "VOLUME NAME"], ["Driver", "Name"], "Name" if args.quiet else None, args.format)
    return 0


def cmd_volume_inspect(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_inspected

    vols = _volumes()
    found = [vols.get(n).attrs for n in args.names]
    print_inspected(args.format, found)
    return 0


def cmd_volume_rm(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError, NotFound

    vols, status = _volumes(), 0
    for name in args.names:
        try:
            vols.get(name).remove()
            print(name)
        except DockyardError as e:
            if not (args.force and isinstance(e, NotFound)):
                print(f"Error: {e}", file=sys.stderr)
                status = 1
    return status


def cmd_volume_prune(args: argparse.Namespace) -> int:
    removed = _volumes().prune({"all": args.all})["VolumesDeleted"]
    if removed:
        print("Deleted Volumes:", *removed, sep="\n")
    return 0
