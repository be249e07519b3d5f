"""System commands: version, info, system df, system prune."""

from __future__ import annotations

import argparse
import sys


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
    df.add_argument("--format", help="'json' or a Go-template subset")
    df.set_defaults(func=cmd_df)
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


def cmd_df(args: argparse.Namespace) -> int:
    from dockyard.cli.output import human_size, print_formatted, table
    from dockyard.removal import prune_candidates
    from dockyard.store import Store

    store = Store()
    images = store.images()
    held = store.held()
    active = [i for i, _ in images if i.manifest_digest in held]
    usage = store.disk_usage()
    total = usage["blobs"] + usage["layers"]
    dangling = sum(i.size for i, _ in prune_candidates(store))
    rows = [{"Type": "Images", "TotalCount": len(images), "Active": len(active), "Size": human_size(total),
             "Reclaimable": human_size(dangling)}]
    if args.format:
        print_formatted(args.format, rows)
        return 0
    table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
          [[r["Type"], r["TotalCount"], r["Active"], r["Size"], r["Reclaimable"]] for r in rows])
    if args.verbose:
        print("\nImages space usage:\n")
        table(["IMAGE ID", "TAGS", "SIZE"], [[i.id.short, ",".join(n) or "<none>", human_size(i.size)]
                                             for i, n in images])
    return 0
