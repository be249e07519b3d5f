"""Moving images to and from registries: push, pull, login, logout, search."""

from __future__ import annotations

import argparse
import sys

DEFAULT_SEARCH_LIMIT = 25


def register(sub: argparse._SubParsersAction) -> None:
    push = sub.add_parser("push", help="upload an image to a registry")
    push.add_argument("name", metavar="NAME[:TAG]")
    push.add_argument("-a", "--all-tags", action="store_true", help="push all local tags of the repository")
    push.add_argument("-q", "--quiet", action="store_true", help="print only the pushed reference")
    push.add_argument("--parallel", type=int, help="layers uploaded at once (default 3, or max-concurrent-uploads)")
    push.set_defaults(func=cmd_push)
    pull = sub.add_parser("pull", help="download an image from a registry")
    pull.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    pull.add_argument("-a", "--all-tags", action="store_true", help="download all tags of the repository")
    pull.add_argument("-q", "--quiet", action="store_true", help="print only the pulled reference")
    pull.add_argument("--platform", help="os/arch[/variant] to pick from a multi-platform image (default linux/amd64)")
    pull.add_argument("--parallel", type=int, help="layers downloaded at once (default 3, or max-concurrent-downloads)")
    pull.set_defaults(func=cmd_pull)
    login = sub.add_parser("login", help="log in to a registry")
    login.add_argument("server", nargs="?", metavar="HOST[:PORT]")
    login.add_argument("-u", "--username")
    login.add_argument("-p", "--password")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.set_defaults(func=cmd_login)
    logout = sub.add_parser("logout", help="log out from a registry")
    logout.add_argument("server", nargs="?", metavar="HOST[:PORT]")
    logout.set_defaults(func=cmd_logout)
    search = sub.add_parser("search", help="search a registry's catalog for repositories")
    search.add_argument("term", metavar="[HOST[:PORT]/]TERM")
    search.add_argument("--limit", type=int, default=DEFAULT_SEARCH_LIMIT, help="at most this many results")
    search.add_argument("--format", help="'json' or a Go-template subset")
    search.set_defaults(func=cmd_search)

    from dockyard.cli.system import INFO_SECTIONS

    if info_section not in INFO_SECTIONS:
        INFO_SECTIONS.append(info_section)


def info_section() -> dict:
    """`dockyard info` fields: the insecure registries (loopback included, as Docker) and mirrors."""
    from registry.client.config import ALWAYS_INSECURE, ClientConfig

    cfg = ClientConfig.load()
    return {"InsecureRegistries": [*ALWAYS_INSECURE, *cfg.insecure_registries],
            "RegistryMirrors": list(cfg.registry_mirrors)}


def cmd_push(args: argparse.Namespace) -> int:
    from dockyard.store import Store
    from registry.client.progress import make_progress
    from registry.client.transfer import push

    def pushed(p) -> None:
        if args.quiet:
            print(p.reference)

    push(Store(), args.name, all_tags=args.all_tags, parallel=args.parallel, progress=make_progress(args.quiet),
         on_pushed=pushed)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from dockyard.store import Store
    from registry.client.progress import make_progress
    from registry.client.transfer import pull

    pull(Store(), args.name, platform=args.platform, all_tags=args.all_tags, parallel=args.parallel,
         progress=make_progress(args.quiet), on_pulled=lambda p: print(str(p.reference)))
    return 0


def _server(text: str | None) -> str:
    """The registry host a login/logout names: as given, else the default registry."""
    from dockyard import reference
    from dockyard.errors import DockyardError

    if text:
        host = text.split("://", 1)[-1].rstrip("/")
        if host.endswith(("/v2", "/v1")):
            host = host[:-3]
        if not reference.DOMAIN_RE.match(host):
            raise DockyardError(f"invalid registry address: {text!r}")
        return host
    default = reference.default_registry()
    if not default:
        raise DockyardError("no registry given and no default registry is set (DOCKYARD_DEFAULT_REGISTRY)")
    return default


def cmd_login(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from registry.client.auth import Credentials, save_credentials
    from registry.client.login import check_login

    host = _server(args.server)
    if args.password_stdin and args.password:
        raise DockyardError("--password and --password-stdin are mutually exclusive")
    if not args.username:
        raise DockyardError("a username is required: -u USER")
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
        password = args.password
    elif sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
    else:
        raise DockyardError("no password given: use -p PASS or --password-stdin")
    if not password:
        raise DockyardError("the password is empty")
    creds = Credentials(args.username, password)
    check_login(host, creds)
    path = save_credentials(host, creds)
    print(f"Credentials saved in {path}", file=sys.stderr)
    print("Login Succeeded")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from registry.client.auth import remove_credentials

    host = _server(args.server)
    if remove_credentials(host):
        print(f"Removing login credentials for {host}")
    else:
        print(f"Not logged in to {host}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from dockyard import reference
    from dockyard.cli.output import print_formatted, table
    from dockyard.errors import DockyardError
    from registry.client.remote import Transports
    from registry.client.search import search

    # A term is a repository-name fragment, so the reference grammar splits off the host.
    ref = reference.parse(args.term, default_tag=False)
    if ref.tag or ref.digest:
        raise DockyardError(f"a search term has no tag or digest: {args.term!r}")
    host, term = ref.registry or reference.default_registry(), ref.repository
    if not host:
        raise DockyardError(f"no registry in {args.term!r} and no default registry is set: "
                            f"use HOST[:PORT]/TERM or set DOCKYARD_DEFAULT_REGISTRY")
    if args.limit < 1:
        raise DockyardError(f"invalid --limit {args.limit}: must be at least 1")
    transports = Transports()
    try:
        hits = search(transports.get(host), term, args.limit)
    finally:
        transports.close()
    rows = [{"Name": f"{host}/{h.name}", "Tags": h.tags} for h in hits]
    if args.format:
        print_formatted(args.format, rows)
        return 0
    table(["NAME", "TAGS"], [[r["Name"], r["Tags"]] for r in rows])
    return 0
