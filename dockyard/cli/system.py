"""System commands: version, info, system df, system prune."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    version = sub.add_parser("version", help="show the dockyard version information")
    version.add_argument("-f", "--format", help="'json' or a Go-template subset")
    version.set_defaults(func=cmd_version)
    info = sub.add_parser("info", help="display system-wide information")
    info.add_argument("-f", "--format", help="'json' or a Go-template subset")
    info.set_defaults(func=cmd_info)
    system = sub.add_parser("system", help="manage dockyard")
    ssub = system.add_subparsers(dest="system_command", metavar="COMMAND")
    df = ssub.add_parser("df", help="show disk usage")
    df.add_argument("-v", "--verbose", action="store_true", help="show per-image usage")
    df.add_argument("--format", help="'json', 'table TEMPLATE' or a Go-template subset ({{.Type}}, {{.TotalCount}}, "
                    "{{.Active}}, {{.Size}}, {{.Reclaimable}})")
    df.set_defaults(func=cmd_df)
    prune = ssub.add_parser("prune", help="remove stopped containers, unused networks, dangling images and the "
                            "build cache (and the unpacked layers no container mounts)")
    prune.add_argument("-a", "--all", action="store_true", help="remove all images no container uses")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt (accepted for docker compatibility)")
    prune.add_argument("--volumes", action="store_true", help="remove anonymous volumes no container uses too")
    prune.add_argument("--keep-unpacked", action="store_true",
                       help="keep the unpacked copies of image layers no container mounts (docker keeps them)")
    prune.set_defaults(func=cmd_prune)
    ssub.add_parser("info", help="display system-wide information").set_defaults(func=cmd_info, format=None)
    system.set_defaults(func=lambda a: system.print_help() or 0)


def _version_info() -> dict:
    import platform  # here, not at the top: its import and regexes cost every command ~1.5 ms

    from dockyard import __version__

    return {"Version": __version__, "PythonVersion": platform.python_version(),
            "Os": sys.platform, "Arch": platform.machine(), "KernelVersion": platform.release()}


def cmd_version(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_formatted

    info = _version_info()
    if args.format:
        print_formatted(args.format, [info])
        return 0
    print("Client: Dockyard")
    for k in ("Version", "PythonVersion", "Os", "Arch", "KernelVersion"):
        print(f" {k + ':':<16}{info[k]}")
    return 0


def cgroup_version() -> str:
    """'2' on a unified (pure v2) host, '1' on a v1 or hybrid one."""
    import os

    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


# Other areas add sections to `info` here: each returns (title, {key: value}).
INFO_SECTIONS: list = []


def cmd_info(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_formatted
    from dockyard.store import Store

    store = Store()
    images = store.images()
    info = {
        "Images": len(images),
        "Tags": sum(len(n) for _, n in images),
        "DockyardRootDir": store.root,
        "ImageLayout": store.layout,
        "CgroupVersion": cgroup_version(),
        **_version_info(),
    }
    for section in INFO_SECTIONS:
        info.update(section())
    if args.format:
        print_formatted(args.format, [info])
        return 0
    for k, v in info.items():
        if isinstance(v, list):
            print(f" {k}:")
            for item in v:
                print(f"  {item}")
        else:
            print(f" {k}: {v}")
    return 0


def df_rows(usage: dict) -> list[dict[str, str]]:
    """`system df`'s rows from `client.df()`, as docker computes them (its JSON has strings for every field)."""
    from dockyard.cli.output import human_size

    def row(kind: str, total: int, active: int, size: int, reclaimable: int, percent: bool = True) -> dict[str, str]:
        shown = human_size(reclaimable)
        if percent and size:
            shown += f" ({reclaimable * 100 // size}%)"
        return {"Type": kind, "TotalCount": str(total), "Active": str(active), "Size": human_size(size),
                "Reclaimable": shown}

    images, containers = usage["Images"], usage["Containers"]
    volumes, cache = usage["Volumes"], usage["BuildCache"]
    sizes = [v["UsageData"]["Size"] for v in volumes]
    return [
        row("Images", len(images), sum(1 for i in images if i["Containers"]), usage["LayersSize"],
            usage["LayersReclaimable"]),
        row("Containers", len(containers), sum(1 for c in containers if c["Running"]),
            sum(c["SizeRw"] for c in containers), sum(c["SizeRw"] for c in containers if not c["Running"])),
        row("Local Volumes", len(volumes), sum(1 for v in volumes if v["UsageData"]["RefCount"]), sum(sizes),
            sum(s for s, v in zip(sizes, volumes, strict=True) if not v["UsageData"]["RefCount"])),
        row("Build Cache", len(cache), sum(1 for r in cache if r["InUse"]), sum(r["Size"] for r in cache),
            sum(r["Size"] for r in cache if not r["InUse"]), percent=False),
    ]


def cmd_df(args: argparse.Namespace) -> int:
    import json

    from dockyard.api import Client
    from dockyard.cli.output import print_formatted, table

    usage = Client().df()
    if args.verbose and args.format == "json":
        print(json.dumps({k: usage[k] for k in ("Images", "Containers", "Volumes", "BuildCache")}))
        return 0
    rows = df_rows(usage)
    if args.format:
        print_formatted(args.format, rows)
        return 0
    table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
          [[r["Type"], r["TotalCount"], r["Active"], r["Size"], r["Reclaimable"]] for r in rows])
    if args.verbose:
        _df_verbose(usage)
    return 0


def _df_verbose(usage: dict) -> None:
    """`system df -v`'s sections, as docker prints them."""
    from datetime import UTC, datetime

    from dockyard.cli.output import ago, human_size, table
    from dockyard.image import parse_time

    def since(stamp: float) -> str:
        return ago(datetime.fromtimestamp(stamp, UTC)) if stamp else ""

    print("\nImages space usage:\n")
    table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
          [[*(t.rpartition(":")[::2] if t else ("<none>", "<none>")), i["Id"].partition(":")[2][:12],
            since(i["Created"]), human_size(i["Size"]), human_size(i["SharedSize"]),
            human_size(i["Size"] - i["SharedSize"]), i["Containers"]]
           for i in usage["Images"] for t in i["RepoTags"] or [""]])
    print("\nContainers space usage:\n")
    table(["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"],
          [[c["Id"][:12], c["Image"], json_quote(c["Command"]), len(c["Mounts"]), human_size(c["SizeRw"]),
            since(c["Created"]), c["State"], c["Names"][0].lstrip("/")] for c in usage["Containers"]])
    print("\nLocal Volumes space usage:\n")
    table(["VOLUME NAME", "LINKS", "SIZE"], [[v["Name"], v["UsageData"]["RefCount"], human_size(v["UsageData"]["Size"])]
                                           for v in usage["Volumes"]])
    cache = usage["BuildCache"]
    print(f"\nBuild cache usage: {human_size(sum(r['Size'] for r in cache))}\n")
    table(["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"],
          [[r["ID"][:12], r["Type"], human_size(r["Size"]), ago(parse_time(r["CreatedAt"])),
            ago(parse_time(r["LastUsedAt"])), r["UsageCount"], str(r["Shared"]).lower()] for r in cache])


def json_quote(command: str) -> str:
    """docker's COMMAND cell: quoted, cut to 20 characters with an ellipsis."""
    return '"' + (command if len(command) <= 20 else command[:19] + "…") + '"'


def cmd_prune(args: argparse.Namespace) -> int:
    from dockyard.api import Client
    from dockyard.cli.output import human_size

    client = Client()
    containers = client.containers.prune()
    networks = client.networks.prune()
    volumes: dict[str, Any] = client.volumes.prune() if args.volumes else {"VolumesDeleted": None}
    # The unpacked layers go once, with the build cache's gc below.
    images = client.images.prune({"dangling": not args.all}, keep_unpacked=True)
    builds = client.images.prune_builds(keep_unpacked=args.keep_unpacked)
    sections = [("Deleted Containers", containers["ContainersDeleted"]),
                ("Deleted Networks", networks["NetworksDeleted"]),
                ("Deleted Volumes", volumes["VolumesDeleted"]),
                ("Deleted Images", [f"{k.lower()}: {v}" for d in images["ImagesDeleted"] or [] for k, v in d.items()])]
    for title, names in sections:
        if names:
            print(f"{title}:")
            print("\n".join(names) + "\n")
    if builds["CachesDeleted"]:
        print(f"Deleted {builds['CachesDeleted']} build cache entries\n")
    total = sum(r.get("SpaceReclaimed") or 0 for r in (containers, volumes, images, builds))
    print(f"Total reclaimed space: {human_size(total)}")
    return 0
