"""`dockyard registry serve|gc|cert`: run the OCI registry, collect its garbage, make a TLS certificate."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("registry", help="run and maintain the OCI registry server")
    gsub = group.add_subparsers(dest="registry_command", metavar="COMMAND")

    serve = gsub.add_parser("serve", help="serve the OCI distribution API")
    serve.add_argument("--addr", help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    _root_and_config(serve)
    serve.add_argument("--workers", type=int, help="worker processes (default 2)")
    serve.add_argument("--threads", type=int, help="threads per worker for disk syncs (default 8)")
    serve.add_argument("--connections", type=int,
                       help="open connections per worker, idle ones included (default 1000)")
    serve.add_argument("--tls-cert", help="PEM certificate; serve HTTPS")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--htpasswd", help="bcrypt htpasswd file; require basic auth")
    serve.add_argument("--token", action="store_true", default=None,
                       help="Docker token auth: clients get JWTs from /token (users from --htpasswd)")
    serve.add_argument("--token-key", help="PEM signing key for tokens (default ROOT/token/key.pem, created)")
    serve.add_argument("--anonymous-pull", action="store_true", default=None, help="allow pulls without login")
    serve.add_argument("--read-only", action="store_true", default=None, help="refuse pushes and deletes")
    serve.add_argument("--enable-delete", action="store_true", default=None,
                       help="allow DELETE of manifests and blobs")
    serve.add_argument("--access-log", help="access log file ('-' stderr, the default; '' none)")
    serve.add_argument("--projects", action="store_true", default=None,
                       help="Harbor's model: users, projects, roles, robots, policies, webhooks, API and web UI")
    serve.add_argument("--database-url", help="metadata database for --projects (default SQLite in ROOT)")
    serve.add_argument("--proxy-remote-url", metavar="URL",
                       help="be a pull-through cache of this registry (credentials: [proxy] in --config only)")
    serve.set_defaults(func=cmd_serve)

    gc = gsub.add_parser("gc", help="remove blobs no manifest references")
    _root_and_config(gc)
    gc.add_argument("--dry-run", action="store_true", help="report what would be removed")
    gc.add_argument("--delete-untagged", action="store_true", help="also remove manifests no tag reaches")
    gc.add_argument("--grace", type=int, help="keep blobs used in the last SECONDS (default 3600)")
    gc.add_argument("--upload-max-age", type=int, help="purge upload sessions older than SECONDS (default 86400)")
    gc.set_defaults(func=cmd_gc)

    cert = gsub.add_parser("cert", help="make a self-signed TLS certificate and key")
    cert.add_argument("hosts", nargs="+", metavar="HOST_OR_IP")
    cert.add_argument("--cert", default="registry.crt", help="certificate output (default registry.crt)")
    cert.add_argument("--key", default="registry.key", help="key output (default registry.key)")
    cert.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    cert.set_defaults(func=cmd_cert)
    group.set_defaults(func=lambda args: _usage(group))


def _usage(parser: argparse.ArgumentParser) -> int:
    """`dockyard registry` alone: show its subcommands."""
    parser.print_help()
    return 0


def _root_and_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", dest="registry_root", metavar="DIR",
                   help="storage directory (default $DOCKYARD_ROOT/registry or /var/lib/dockyard/registry)")
    p.add_argument("--config", metavar="FILE", help="TOML (or YAML, with PyYAML) config file")


def _config(args: argparse.Namespace, **overrides):
    from registry.config import build

    if args.registry_root:
        overrides["root"] = os.path.abspath(args.registry_root)
    default_root = os.path.join(os.environ.get("DOCKYARD_ROOT") or "/var/lib/dockyard", "registry")
    return build(args.config, base={"root": default_root}, **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from registry.serve import serve

    config = _config(args, addr=args.addr, workers=args.workers, threads=args.threads,
                     connections=args.connections, tls_cert=args.tls_cert,
                     tls_key=args.tls_key, htpasswd=args.htpasswd, token=args.token, token_key=args.token_key,
                     anonymous=["pull"] if args.anonymous_pull else None, read_only=args.read_only,
                     delete_enabled=args.enable_delete, access_log=args.access_log,
                     projects=args.projects, database_url=args.database_url,
                     proxy_remote_url=args.proxy_remote_url)
    return serve(config)


def cmd_gc(args: argparse.Namespace) -> int:
    from registry.gc import collect, existing_storage

    config = _config(args, gc_grace=args.grace, upload_max_age=args.upload_max_age)
    report = collect(existing_storage(config), dry_run=args.dry_run, delete_untagged=args.delete_untagged,
                     grace=config.gc_grace, upload_max_age=config.upload_max_age)
    print(report.summary(args.dry_run))
    return 0


def cmd_cert(args: argparse.Namespace) -> int:
    from registry.certs import make_self_signed

    make_self_signed(args.hosts, args.cert, args.key, args.days)
    print(f"wrote {args.cert} and {args.key} for {', '.join(args.hosts)}")
    return 0
