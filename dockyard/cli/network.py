"""`dockyard network`: create, ls, inspect, rm and prune bridge networks (connect/disconnect live with containers)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    network = sub.add_parser("network", help="manage networks")
    nsub = network.add_subparsers(dest="network_command", metavar="COMMAND")
    create = nsub.add_parser("create", help="create a network")
    create.add_argument("--subnet", help="subnet in CIDR form (default: the next free /16 from 172.18.0.0)")
    create.add_argument("--gateway", help="gateway address in the subnet (default: its first address)")
    create.add_argument("-d", "--driver", default="bridge", help="network driver (only 'bridge')")
    create.add_argument("--label", action="append", default=[], help="set metadata on the network (KEY=VALUE)")
    create.add_argument("name", metavar="NAME")
    create.set_defaults(func=cmd_create)
    ls = nsub.add_parser("ls", aliases=["list"], help="list networks")
    ls.add_argument("-q", "--quiet", action="store_true", help="only show network IDs")
    ls.add_argument("--no-trunc", action="store_true", help="do not truncate IDs")
    ls.add_argument("--format", help="'json' or a Go-template subset")
    ls.set_defaults(func=cmd_ls)
    inspect = nsub.add_parser("inspect", help="display detailed information on one or more networks")
    inspect.add_argument("-f", "--format", help="format the output using a Go-template subset")
    inspect.add_argument("names", nargs="+", metavar="NETWORK")
    inspect.set_defaults(func=cmd_inspect)
    rm = nsub.add_parser("rm", aliases=["remove"], help="remove one or more networks")
    rm.add_argument("names", nargs="+", metavar="NETWORK")
    rm.set_defaults(func=cmd_rm)
    prune = nsub.add_parser("prune", help="remove all unused networks")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    prune.set_defaults(func=cmd_prune)
    connect = nsub.add_parser("connect", help="connect a running container to a network")
    connect.add_argument("--ip", help="IPv4 address on that network")
    connect.add_argument("--alias", action="append", default=[], help="add a network-scoped alias for the container")
    connect.add_argument("network", metavar="NETWORK")
    connect.add_argument("container", metavar="CONTAINER")
    connect.set_defaults(func=cmd_connect)
    disconnect = nsub.add_parser("disconnect", help="disconnect a container from a network")
    disconnect.add_argument("-f", "--force", action="store_true", help="force the container to disconnect")
    disconnect.add_argument("network", metavar="NETWORK")
    disconnect.add_argument("container", metavar="CONTAINER")
    disconnect.set_defaults(func=cmd_disconnect)
    network.set_defaults(func=lambda a: network.print_help() or 0)


def _networks():
    from dockyard.api import Client

    return Client().networks


def cmd_create(args: argparse.Namespace) -> int:
    labels = {}
    for item in args.label:
        key, _, value = item.partition("=")
        labels[key] = value
    network = _networks().create(args.name, args.driver, subnet=args.subnet, gateway=args.gateway, labels=labels)
    print(network.id)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_listing

    rows = []
    for n in _networks().list():
        [pool] = n.attrs["IPAM"]["Config"]
        rows.append({"ID": n.id if args.no_trunc else n.short_id, "Name": n.name, "Driver": "bridge",
                     "Scope": "local", "Subnet": pool["Subnet"], "Gateway": pool["Gateway"],
                     "Bridge": n.attrs["Options"]["com.docker.network.bridge.name"], "CreatedAt": n.attrs["Created"]})
    print_listing(rows, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"], ["ID", "Name", "Driver", "Scope"],
                  "ID" if args.quiet else None, args.format)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from dockyard.cli.output import print_formatted

    collection = _networks()
    found = [collection.get(name).attrs for name in args.names]
    if args.format:
        print_formatted(args.format, found)
    else:
        print(json.dumps(found, indent=4))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    import sys

    from dockyard.errors import DockyardError

    collection = _networks()
    status = 0
    for name in args.names:
        try:
            collection.remove(name)
            print(name)
        except DockyardError as e:  # like docker: report each failure, remove the rest
            print(f"Error: {e}", file=sys.stderr)
            status = 1
    return status


def cmd_prune(args: argparse.Namespace) -> int:
    removed = _networks().prune()["NetworksDeleted"]
    if removed:
        print("Deleted Networks:")
        print("\n".join(removed))
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    _networks().get(args.network).connect(args.container, ipv4_address=args.ip, aliases=args.alias)
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    _networks().get(args.network).disconnect(args.container, force=args.force)
    return 0
