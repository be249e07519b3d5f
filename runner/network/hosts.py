"""Contents of a container's /etc/hosts and /etc/resolv.conf, and rewriting a bind-mounted file in place."""

from __future__ import annotations

import ipaddress
import os

from dockyard.errors import DockyardError

BASE_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
              "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"]  # what docker uses when the host has only loopback resolvers


def hosts_file(hostname: str, own_ip: str | None, entries: list[tuple[str, list[str]]]) -> str:
    """localhost lines, the container's own name, then (ip, names) entries: peers, --link and --add-host."""
    text = BASE_HOSTS
    for ip, names in entries:
        text += f"{ip}\t{' '.join(names)}\n"
    if hostname:
        text += f"{own_ip or '127.0.1.1'}\t{hostname}\n"
    return text


def resolv_conf(host_text: str, dns: list[str] | None = None, search: list[str] | None = None,
                options: list[str] | None = None) -> str:
    """The host's resolv.conf with loopback nameservers dropped (unreachable from a container) and overrides applied."""
    nameservers, searches, opts = [], [], []
    for line in host_text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        if fields[0] == "nameserver" and not (fields[1].startswith("127.") or fields[1] == "::1"):
            nameservers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            opts += fields[1:]
    nameservers = dns or nameservers or FALLBACK_DNS
    searches = [s for s in search if s != "."] if search is not None else searches
    opts = options if options is not None else opts
    text = "".join(f"nameserver {n}\n" for n in nameservers)
    if searches:
        text += f"search {' '.join(searches)}\n"
    if opts:
        text += f"options {' '.join(opts)}\n"
    return text


def parse_add_host(text: str) -> tuple[str, str]:
    """`--add-host HOST:IP` (or HOST=IP; the IP may be IPv6, so split at the first separator)."""
    host, _, addr = text.partition("=" if "=" in text else ":")
    try:
        ip = str(ipaddress.ip_address(addr.strip("[]")))
    except ValueError:
        ip = ""
    if not host or not ip:
        raise DockyardError(f"invalid --add-host {text!r}: want HOST:IP")
    return host, ip


def parse_link(text: str) -> tuple[str, str]:
    """`--link NAME[:ALIAS]`; the alias defaults to the name."""
    name, _, alias = text.partition(":")
    if not name:
        raise DockyardError(f"invalid --link {text!r}: want NAME[:ALIAS]")
    return name, alias or name


def rewrite_in_place(path: str, text: str) -> None:
    """Replace a file's content keeping its inode: a bind mount of it would still show the old file after a rename."""
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # the container's files are gone already: nothing mounts them
    try:
        # Write first, then cut: a reader sees old or new bytes, never an empty file.
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))  # no fsync: every attach writes the file afresh, so a reboot loses nothing
    finally:
        os.close(fd)
