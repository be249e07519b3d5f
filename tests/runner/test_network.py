"""Bridge networking on real namespaces, veths, bridges and nftables/iptables, with busybox as the containers."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time

import pytest

from dockyard.errors import DockyardError, NotFound
from runner.network import attach, hosts, ipam, netns, networks, ports, store
from runner.network.ports import parse_publish
from runner.network.store import PortMapping
from support import RAW_ATTACK, LoopbackServer, free_port, raw_client, run_subnet, tool

BUSYBOX = "/bin/busybox"


def _rand() -> str:
    return os.urandom(3).hex()


@pytest.fixture(params=["nftables", "iptables"])
def net_env(request, store_root, monkeypatch):
    """A store whose default network is a test bridge on this run's subnet 1 and whose NAT lives in a test table."""
    tag = _rand()
    monkeypatch.setenv("DOCKYARD_BRIDGE", f"dyt{tag}")
    monkeypatch.setenv("DOCKYARD_BRIDGE_SUBNET", run_subnet(1))
    monkeypatch.setenv("DOCKYARD_NETWORK_POOL", run_subnet(5))
    monkeypatch.setenv("DOCKYARD_NAT_TABLE", f"dyt{tag}")
    monkeypatch.setenv("DOCKYARD_NAT_BACKEND", request.param)
    tool("nft" if request.param == "nftables" else "iptables-restore")
    yield request.param, f"dyt{tag}"
    networks.reset()
    assert not _links(f"dyt{tag}") and not _nat_rules(request.param, f"dyt{tag}")


def _links(part: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if part in line.split(":")[1]]


def _nat_rules(kind: str, table: str) -> str:
    """Our table's rules and elements, or the iptables lines (nat, raw and filter tables) naming our chains."""
    if kind == "nftables":
        p = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True)
        return p.stdout
    out = "".join(subprocess.run(["iptables-save", "-t", t], capture_output=True, text=True, check=True).stdout
                  for t in ("nat", "raw", "filter"))
    return "\n".join(line for line in out.splitlines() if table.upper() in line)


@pytest.fixture
def make_ns():
    """Make network namespaces standing in for containers; kills what runs in them and deletes them at the end."""
    made: list[str] = []

    def make() -> tuple[str, str]:
        name = f"dytest-{_rand()}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        return name, f"/run/netns/{name}"

    yield make
    for name in made:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "del", name], check=True)


def in_ns(ns: str, *argv: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=check,
                          timeout=timeout)


def _httpd(ns: str, docroot, port: int = 80, text: str = "hello from the container\n") -> None:
    """busybox httpd in the namespace, serving `text` at /; returns once it listens."""
    docroot.mkdir(exist_ok=True)
    (docroot / "index.html").write_text(text)
    in_ns(ns, BUSYBOX, "httpd", "-p", f"0.0.0.0:{port}", "-h", str(docroot))
    for _ in range(100):
        if f":{port:04X}" in in_ns(ns, "cat", "/proc/net/tcp").stdout:
            return
        time.sleep(0.05)
    raise AssertionError("httpd did not start")


def _get(url: str) -> str:
    """The body at `url`, or 'failed: why'."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError as e:
        return f"failed: {e}"


def test_default_bridge_publishes_ports_on_localhost_and_cleans_up(net_env, make_ns, tmp_path):
    kind, tag = net_env
    ns, path = make_ns()
    fixed = free_port()
    ep = attach.attach(path, "c1" * 32, "web", publish=parse_publish(f"127.0.0.1:{fixed}:80") + parse_publish("80"))
    assert ep.network == "bridge" and ep.ifname == "eth0" and ep.gateway == run_subnet(1, "0.1")
    assert ipaddress.IPv4Address(ep.ip) in ipaddress.IPv4Network(run_subnet(1)) and ep.ip != ep.gateway
    assert ep.mac == ipam.mac_for(ep.ip) and ep.prefix_len == 16
    random_port = ep.ports[1].host_port
    assert ep.ports[0].host_port == fixed and random_port not in (0, fixed)

    # Inside: lo and eth0 up with the address, default route via the gateway on the bridge.
    assert f"inet {ep.ip}/16" in in_ns(ns, "ip", "-o", "addr", "show", "eth0").stdout
    assert f"default via {ep.gateway} dev eth0" in in_ns(ns, "ip", "route").stdout
    assert "UP" in in_ns(ns, "ip", "-o", "link", "show", "lo").stdout
    assert _links(ep.veth_host) and _links(tag)
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "1"
    assert in_ns(ns, BUSYBOX, "ping", "-c1", "-W2", ep.gateway).returncode == 0

    _httpd(ns, tmp_path / "www")
    assert _get(f"http://127.0.0.1:{fixed}/") == "hello from the container\n"
    assert _get(f"http://127.0.0.1:{random_port}/") == "hello from the container\n"
    ns2, path2 = make_ns()
    with pytest.raises(DockyardError, match="already allocated"):
        attach.attach(path2, "c2" * 32, "other", publish=parse_publish(f"{fixed}:80"))
    assert "c2" * 32 not in store.read().attachments  # the failed attach left nothing
    assert in_ns(ns2, "ip", "-o", "link").stdout.count("\n") == 1

    attach.detach("c1" * 32)
    assert not _links(ep.veth_host) and "veth" not in in_ns(ns, "ip", "-o", "link").stdout
    assert str(fixed) not in _nat_rules(kind, tag) and str(random_port) not in _nat_rules(kind, tag)
    assert _get(f"http://127.0.0.1:{fixed}/").startswith("failed")
    assert _links(tag), "the default bridge stays when its last container goes"
    attach.detach("c1" * 32)  # idempotent
    again = attach.attach(path, "c3" * 32, "again")
    assert again.ip == ep.ip  # the address was released


def test_user_network_resolves_names_and_rewrites_hosts_in_place(net_env, make_ns, tmp_path):
    net = networks.create("appnet")
    assert net.bridge == f"dy-{net.id[:12]}" and _links(net.bridge)
    subnet = ipaddress.IPv4Network(net.subnet)
    assert subnet.prefixlen == 16 and subnet.network_address >= ipaddress.IPv4Network(run_subnet(5)).network_address
    assert not any(subnet.overlaps(r) for r in ipam.routed_subnets() if str(r) != net.subnet)
    (ns1, p1), (ns2, p2), (ns3, p3) = make_ns(), make_ns(), make_ns()
    h1, h2, h3 = (str(tmp_path / f"hosts{i}") for i in (1, 2, 3))
    e1 = attach.attach(p1, "a1" * 32, "db", network="appnet", aliases=["database"], hostname="dbhost", hosts_path=h1)
    e2 = attach.attach(p2, "a2" * 32, "app", network="appnet", hostname="apphost", hosts_path=h2,
                       extra_hosts=[hosts.parse_add_host("printer:192.0.2.77")])
    hosts2 = open(h2).read()
    assert f"{e1.ip}\tdb database\n" in hosts2 and f"{e2.ip}\tapphost\n" in hosts2
    assert "192.0.2.77\tprinter\n" in hosts2 and "127.0.0.1\tlocalhost" in hosts2
    assert f"{e2.ip}\tapp\n" in open(h1).read()

    # The name resolves inside "app" through its hosts file mounted at /etc/hosts, as the container will see it.
    ping = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           f"mount --bind {h2} /etc/hosts && exec ip netns exec {ns2} {BUSYBOX} ping -c1 -W2 database"],
                          capture_output=True, text=True, timeout=20)
    assert ping.returncode == 0 and e1.ip in ping.stdout, ping.stdout + ping.stderr

    # A bind mount of db's hosts file sees the newcomer: the file is rewritten in place, not replaced.
    view = tmp_path / "mounted-hosts"
    view.write_text("")
    subprocess.run(["mount", "--bind", h1, str(view)], check=True)
    try:
        e3 = attach.attach(p3, "a3" * 32, "cache", network="appnet", hosts_path=h3, links=[hosts.parse_link("db:primary")])
        assert f"{e3.ip}\tcache\n" in view.read_text()
        assert f"{e1.ip}\tprimary db\n" in open(h3).read()
        attach.detach("a3" * 32)
        assert "cache" not in view.read_text()
    finally:
        subprocess.run(["umount", str(view)], check=True)

    with pytest.raises(DockyardError, match="active endpoints"):
        networks.remove("appnet")
    attach.detach("a1" * 32)
    assert "db" not in open(h2).read().split("localhost")[-1]
    attach.detach("a2" * 32)
    networks.remove("appnet")
    assert not _links(net.bridge) and net.subnet not in _nat_rules(*net_env)


def test_static_ip_connect_and_disconnect(net_env, make_ns):
    s = run_subnet(3, "")  # "10.x.": a /16 of this run's for fixed subnets
    networks.create("static", subnet=f"{s}7.0/24", gateway=f"{s}7.254")
    (ns1, p1), (ns2, p2) = make_ns(), make_ns()
    e1 = attach.attach(p1, "b1" * 32, "one", network="static", ip=f"{s}7.10")
    assert e1.ip == f"{s}7.10" and e1.gateway == f"{s}7.254" and e1.prefix_len == 24
    for bad, msg in ((f"{s}7.10", "already in use"), (f"{s}8.1", "not a usable"), (f"{s}7.254", "already in use"),
                     ("nonsense", "invalid IP address")):
        with pytest.raises(DockyardError, match=msg):
            attach.attach(p2, "b2" * 32, "two", network="static", ip=bad)
    e2 = attach.attach(p2, "b2" * 32, "two", network="static")
    assert e2.ip == f"{s}7.1"
    assert in_ns(ns2, BUSYBOX, "ping", "-c1", "-W2", e1.ip).returncode == 0

    # A second network: eth1, no second default route; disconnect takes exactly that interface away.
    extra = attach.connect(p2, "b2" * 32, "bridge")
    assert extra.ifname == "eth1" and ipaddress.IPv4Address(extra.ip) in ipaddress.IPv4Network(run_subnet(1))
    assert in_ns(ns2, "ip", "route").stdout.count("default") == 1
    with pytest.raises(DockyardError, match="already connected"):
        attach.connect(p2, "b2" * 32, "bridge")
    attach.disconnect("b2" * 32, "bridge")
    assert "eth1" not in in_ns(ns2, "ip", "-o", "link").stdout and not _links(extra.veth_host)
    assert "eth0" in in_ns(ns2, "ip", "-o", "link").stdout
    with pytest.raises(NotFound):
        attach.connect(p1, "zz" * 32, "bridge")
    with pytest.raises(NotFound, match="network nope not found"):
        attach.attach(p1, "b9" * 32, "nine", network="nope")
    attach.detach("b1" * 32)
    attach.detach("b2" * 32)
    assert networks.prune() == ["static"]


def test_networks_are_isolated_from_each_other_but_published_ports_are_not(net_env, make_ns, tmp_path):
    """As docker's isolation chains: a container reaches peers on its own networks and published ports, never an
    address on a network it is not on, even though the host routes between the bridges."""
    networks.create("front")
    networks.create("back")
    (ns1, p1), (ns2, p2), (ns3, p3) = make_ns(), make_ns(), make_ns()
    proxy = attach.attach(p1, "d1" * 32, "proxy", network="front")
    port = free_port()
    db = attach.attach(p2, "d2" * 32, "db", network="back", publish=parse_publish(f"{port}:80"))
    api = attach.attach(p3, "d3" * 32, "api", network="back")
    _httpd(ns2, tmp_path / "db", text="db\n")

    def fetch(ns: str, url: str) -> str:
        # Dropped packets leave wget waiting; busybox wget's own -T crashes, so the host's timeout ends it.
        return in_ns(ns, "timeout", "3", BUSYBOX, "wget", "-q", "-O", "-", url, check=False, timeout=15).stdout

    assert fetch(ns3, f"http://{db.ip}/") == "db\n"  # the same network: bridged, untouched
    assert fetch(ns1, f"http://{db.ip}/") == ""  # another network: dropped
    assert in_ns(ns1, BUSYBOX, "ping", "-c1", "-W1", api.ip, check=False).returncode != 0
    host = proxy.gateway  # a host address the proxy reaches: its gateway; the DNAT of the published port applies
    assert fetch(ns1, f"http://{host}:{port}/") == "db\n"

    # A container on both networks reaches both; leaving one takes that back.
    attach.connect(p1, "d1" * 32, "back")
    assert fetch(ns1, f"http://{db.ip}/") == "db\n"
    attach.disconnect("d1" * 32, "back")
    assert fetch(ns1, f"http://{db.ip}/") == ""
    for cid in ("d1", "d2", "d3"):
        attach.detach(cid * 32)
    assert sorted(networks.prune()) == ["back", "front"]


def test_none_and_host_modes(make_ns, store_root):
    ns, path = make_ns()
    assert attach.attach(path, "n1" * 32, "loner", network="none") is None
    links = in_ns(ns, "ip", "-o", "link").stdout.splitlines()
    assert len(links) == 1 and ": lo:" in links[0] and "UP" in links[0]
    assert in_ns(ns, BUSYBOX, "ping", "-c1", "-W1", "127.0.0.1").returncode == 0
    assert attach.attach("/proc/1/ns/net", "h1" * 32, "hosty", network="host") is None
    assert store.read() is None  # neither mode records anything


def test_netns_create_and_remove(tmp_path):
    own = os.stat("/proc/thread-self/ns/net").st_ino
    path = netns.create(str(tmp_path / "ns"))
    try:
        assert os.stat(path).st_ino != own
        out = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link"], capture_output=True, text=True, check=True)
        assert out.stdout.count("\n") == 1 and "lo" in out.stdout
        # Code runs in the namespace in this very thread, which is back in its own afterwards, also after a failure.
        seen: list[int] = []
        netns.run_in(path, lambda: seen.append(os.stat("/proc/thread-self/ns/net").st_ino))
        assert seen == [os.stat(path).st_ino]
        with pytest.raises(ZeroDivisionError):
            netns.run_in(path, lambda: seen.append(1 // 0))
        assert os.stat("/proc/thread-self/ns/net").st_ino == own
    finally:
        netns.remove(path)
    assert not os.path.exists(path)
    assert os.stat("/proc/thread-self/ns/net").st_ino == own


def test_cli_network_commands(net_env, dockyard):
    s = run_subnet(3, "")  # "10.x.": a /16 of this run's for fixed subnets
    nid = dockyard("network", "create", "--subnet", f"{s}5.0/24", "--label", "team=web", "front").out.strip()
    assert len(nid) == 64
    ls = dockyard("network", "ls").out.splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1] for line in ls[1:]] == ["bridge", "front"]
    assert nid[:12] in dockyard("network", "ls", "-q").out
    import json

    info = json.loads(dockyard("network", "inspect", "front").out)[0]
    assert info["IPAM"]["Config"] == [{"Subnet": f"{s}5.0/24", "Gateway": f"{s}5.1"}]
    assert info["Labels"] == {"team": "web"} and info["Containers"] == {}
    assert dockyard("network", "inspect", "-f", "{{.Name}} {{.Driver}}", "front").out == "front bridge\n"
    for args, msg in ((("create", "front"), "already exists"), (("create", "--subnet", f"{s}5.128/25", "x"), "overlaps"),
                      (("create", "--subnet", "banana", "x"), "invalid subnet banana"), (("rm", "bridge"), "pre-defined"),
                      (("inspect", "ghost"), "network ghost not found"), (("create", "bad name"), "invalid network name")):
        r = dockyard("network", *args, check=False)
        assert r.code == 1 and r.err.startswith("Error: ") and msg in r.err and "Traceback" not in r.err, r.err
    bridge_name = info["Options"]["com.docker.network.bridge.name"]
    assert _links(bridge_name)
    assert dockyard("network", "rm", "front").out == "front\n"
    assert not _links(bridge_name)
    dockyard("network", "create", "spare")
    assert dockyard("network", "prune", "-f").out == "Deleted Networks:\nspare\n"


def test_parse_publish_and_exposed():
    assert parse_publish("8080:80") == [PortMapping(80, 8080, "tcp", "")]
    assert parse_publish("127.0.0.1:53:53/udp") == [PortMapping(53, 53, "udp", "127.0.0.1")]
    assert parse_publish("127.0.0.1::80") == [PortMapping(80, 0, "tcp", "127.0.0.1")]
    assert parse_publish("0.0.0.0:81:80") == [PortMapping(80, 81, "tcp", "")]
    assert parse_publish("9000-9001:90-91") == [PortMapping(90, 9000), PortMapping(91, 9001)]
    for bad in ("80/icmp", "x:80", "1.2.3.4.5:1:2", "70000", "1:2:3:4", "8000-8002:80-81"):
        with pytest.raises(DockyardError):
            parse_publish(bad)
    assert ports.from_exposed(["80/tcp", "53/udp"]) == [PortMapping(80, 0, "tcp"), PortMapping(53, 0, "udp")]


def test_assign_refuses_ports_held_on_the_host():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(DockyardError, match=f"cannot publish 127.0.0.1:{busy}/tcp"):
            ports.assign([PortMapping(80, busy, "tcp", "127.0.0.1")], [])
    with pytest.raises(DockyardError, match="cannot publish 192.0.2.250"):
        ports.assign([PortMapping(80, 0, "tcp", "192.0.2.250")], [])  # not an address of this host
    two = ports.assign([PortMapping(80, 0, "tcp"), PortMapping(81, 0, "tcp")], [])
    assert two[0].host_port and two[1].host_port and two[0].host_port != two[1].host_port
    with pytest.raises(DockyardError, match="already allocated"):
        ports.assign([PortMapping(80, two[0].host_port, "tcp", "127.0.0.1")], two)


def test_resolv_conf_and_hosts_builders():
    host = "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.org corp\noptions edns0\n"
    assert hosts.resolv_conf(host) == "nameserver 192.0.2.53\nsearch example.org corp\noptions edns0\n"
    assert hosts.resolv_conf("nameserver 127.0.0.1\n").startswith("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    assert hosts.resolv_conf(host, dns=["10.0.0.2"], search=["."], options=["ndots:2"]) == \
        "nameserver 10.0.0.2\noptions ndots:2\n"
    assert hosts.parse_add_host("gw:fd00::1") == ("gw", "fd00::1")
    assert hosts.parse_add_host("gw=10.0.0.1") == ("gw", "10.0.0.1")
    assert hosts.parse_link("db") == ("db", "db")
    for bad in ("nohost", ":10.0.0.1", "h:not-an-ip"):
        with pytest.raises(DockyardError, match="invalid --add-host"):
            hosts.parse_add_host(bad)
    text = hosts.hosts_file("box", "10.1.0.5", [("10.1.0.6", ["peer", "alias"])])
    assert text.startswith("127.0.0.1\tlocalhost\n") and text.endswith("10.1.0.6\tpeer alias\n10.1.0.5\tbox\n")


def test_free_subnet_skips_taken_and_stays_private():
    pool = ipaddress.IPv4Network("172.18.0.0/16")
    taken = [ipaddress.IPv4Network("172.18.0.0/16"), ipaddress.IPv4Network("172.19.4.0/24")]
    assert ipam.free_subnet(pool, taken) == ipaddress.IPv4Network("172.20.0.0/16")
    # 172.32.0.0/16 is public address space: the search ends with 172.31.0.0/16.
    with pytest.raises(DockyardError, match="no free /16"):
        ipam.free_subnet(pool, [ipaddress.IPv4Network("172.18.0.0/15"), ipaddress.IPv4Network("172.20.0.0/14"),
                                ipaddress.IPv4Network("172.24.0.0/13")])
    assert ipam.free_subnet(ipaddress.IPv4Network("10.89.0.0/16"), [ipaddress.IPv4Network("10.89.0.0/16")]) == \
        ipaddress.IPv4Network("10.90.0.0/16")
    with pytest.raises(DockyardError, match="too small"):
        ipam.parse_subnet("10.0.0.0/31")


def test_default_subnets_are_dockers_and_skip_host_routes(store_root, monkeypatch):
    """Not podman's 10.88.0.0/16; and a subnet the host already routes (here via a port-less bridge, since this
    kernel has no dummy links; deleting it takes the route along) is skipped."""
    for var in ("DOCKYARD_BRIDGE_SUBNET", "DOCKYARD_NETWORK_POOL"):
        monkeypatch.delenv(var, raising=False)

    def default_subnet() -> ipaddress.IPv4Network:
        state = networks.new_state()
        assert state.pool == "172.18.0.0/16"
        return ipaddress.IPv4Network(state.network("bridge").subnet)

    first = default_subnet()
    assert first == ipam.free_subnet(ipaddress.IPv4Network("172.17.0.0/16"), ipam.routed_subnets())
    assert first.subnet_of(ipaddress.IPv4Network("172.16.0.0/12")) and first.prefixlen == 16
    link = f"dyr{_rand()}"
    subprocess.run(["ip", "link", "add", link, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        subprocess.run(["ip", "route", "add", str(first), "dev", link], check=True)
        second = default_subnet()
        assert second != first and second.network_address > first.network_address
        assert not any(second.overlaps(r) for r in ipam.routed_subnets())
    finally:
        subprocess.run(["ip", "link", "del", link], check=True)
    assert not _links(link) and first not in ipam.routed_subnets()


def test_concurrent_attaches_get_distinct_addresses(net_env, make_ns):
    """Container starts racing each other: the state lock keeps IPAM and the one-time bridge setup consistent."""
    paths = [make_ns()[1] for _ in range(4)]
    code = ("import sys; from runner.network import attach; "
            "print(attach.attach(sys.argv[1], sys.argv[2], sys.argv[3]).ip)")
    procs = [subprocess.Popen([sys.executable, "-c", code, p, f"{i:064x}", f"racer{i}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i, p in enumerate(paths)]
    results = [p.communicate(timeout=30) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    ips = {out.strip() for out, _ in results}
    assert len(ips) == 4 and ips == {a.endpoints[next(iter(a.endpoints))].ip for a in store.read().attachments.values()}
    for i in range(4):
        attach.detach(f"{i:064x}")
    assert store.read().attachments == {}


@pytest.fixture(scope="session")
def rawtcp(tmp_path_factory) -> str:
    """The directory holding the static raw-socket attacker (tests/rawtcp.c), to bind-mount into containers."""
    directory = tmp_path_factory.mktemp("rawtcp")
    raw_client(directory)
    return str(directory)


def test_containers_cannot_reach_host_loopback(net_env, dockyard, busybox_image, rawtcp, tmp_path):
    """CVE-2020-8558 style: route_localnet on the bridge must not open the host's 127.0.0.1 to raw packets."""
    with LoopbackServer() as server:
        r = dockyard("run", "--rm", "-v", f"{rawtcp}:/x:ro", busybox_image, "sh", "-c", RAW_ATTACK, "attack",
                     str(server.port), check=False)
        assert (r.code, r.out) == (1, "no answer\n"), r.out + r.err
        assert server.received == []

    # Published ports on 127.0.0.1 still work from the host.
    port = free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("published\n")
    cid = dockyard("run", "-d", "-p", f"127.0.0.1:{port}:80", "-v", f"{tmp_path / 'www'}:/www:ro", busybox_image,
                   "httpd", "-f", "-p", "80", "-h", "/www").out.strip()
    try:
        body = _get(f"http://127.0.0.1:{port}/")
        for _ in range(100):
            if not body.startswith("failed"):
                break
            time.sleep(0.05)
            body = _get(f"http://127.0.0.1:{port}/")
        assert body == "published\n"
    finally:
        dockyard("rm", "-f", cid)


def test_default_bridge_block_is_cleaned_up_and_reaped_after_a_crash(net_env):
    """on_default_bridge (the builder's RUN): gone after the block; an owner killed inside it is reaped by the next."""
    with attach.on_default_bridge("build-first") as path:
        ep = store.read().attachments["build-first"].endpoints
        veth = next(iter(ep.values())).veth_host
        assert os.path.exists(path) and _links(veth)
    assert not os.path.exists(path) and not _links(veth) and store.read().attachments == {}

    code = ("import os, sys; from runner.network import attach; block = attach.on_default_bridge('build-killed'); "
            "print(block.__enter__(), flush=True); os.kill(os.getpid(), 9)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == -9 and os.path.exists(p.stdout.strip())
    killed = store.read().attachments["build-killed"]
    veth = next(iter(killed.endpoints.values())).veth_host
    with attach.on_default_bridge("build-next"):
        assert list(store.read().attachments) == ["build-next"]
        assert next(iter(store.read().attachments["build-next"].endpoints.values())).ip == \
            next(iter(killed.endpoints.values())).ip  # the dead one's address is free again
    assert not os.path.exists(p.stdout.strip()) and not os.path.exists(p.stdout.strip() + ".lock")
    assert not _links(veth) and store.read().attachments == {}


def test_bridges_of_an_older_version_get_the_loopback_guard(net_env, make_ns):
    kind, tag = net_env
    attach.attach(make_ns()[1], "o1" * 32, "old")
    guard = "daddr 127.0.0.0/8 drop" if kind == "nftables" else f"-d 127.0.0.0/8 -i {tag} -j DROP"
    assert guard in _nat_rules(kind, tag)
    # What an older dockyard left: the bridge up, no guard, no rules version in the state.
    if kind == "nftables":
        subprocess.run(["nft", "delete", "chain", "ip", tag, "guard"], check=True)
    else:
        chain = f"{tag.upper()}-GUARD"
        for args in (["-D", "PREROUTING", "-j", chain], ["-F", chain], ["-X", chain]):
            subprocess.run(["iptables", "-t", "raw", *args], check=True)
    with store.transaction() as state:
        state.nat_rules = 0
    assert guard not in _nat_rules(kind, tag)
    attach.attach(make_ns()[1], "o2" * 32, "new")
    assert guard in _nat_rules(kind, tag) and store.read().nat_rules == networks.NAT_RULES
    attach.detach("o1" * 32)
    attach.detach("o2" * 32)
