"""Containers on several networks at create (aliases, fixed addresses) and in another container's namespace."""

from __future__ import annotations

import json

from support import run_subnet


def _inspect(ctr, name: str) -> dict:
    return json.loads(ctr("inspect", name).out)[0]


def _resolves(ctr, network: str, host: str) -> str:
    """The address `host` resolves to (through /etc/hosts) for a fresh container on `network`, "" if none."""
    r = ctr("run", "--rm", "--network", network, "busybox", "ping", "-c1", "-W2", host, check=False)
    if r.code:
        return ""
    return r.out.split("(")[1].split(")")[0]


def test_several_networks_with_aliases_and_fixed_address(ctr):
    s = run_subnet(2, "")
    ctr("network", "create", "--subnet", f"{s}1.0/24", "front")
    ctr("network", "create", "back")
    ctr("run", "-d", "--name", "multi", "--network", "front", "--network-alias", "www", "--ip", f"{s}1.50",
        "--network", "name=back,alias=api,alias=rpc", "busybox", "sleep", "60")
    info = _inspect(ctr, "multi")
    nets = info["NetworkSettings"]["Networks"]
    assert list(nets) == ["front", "back"] and info["HostConfig"]["NetworkMode"] == "front"
    assert nets["front"]["Aliases"] == ["www"] and nets["front"]["IPAMConfig"] == {"IPv4Address": f"{s}1.50"}
    assert nets["front"]["IPAddress"] == f"{s}1.50" and info["NetworkSettings"]["IPAddress"] == f"{s}1.50"
    assert nets["back"]["Aliases"] == ["api", "rpc"] and nets["back"]["IPAMConfig"] is None
    back_ip = nets["back"]["IPAddress"]
    assert back_ip and not back_ip.startswith(s + "1.")

    # One interface per network, the default route only through the first.
    routes = ctr("exec", "multi", "ip", "route").out
    assert routes.count("default") == 1 and f"via {s}1.1 dev eth0" in routes
    assert "eth1" in ctr("exec", "multi", "ip", "-o", "link").out

    # Peers resolve it by name and by the aliases of the network they share with it, not by the other's.
    assert _resolves(ctr, "front", "multi") == f"{s}1.50" and _resolves(ctr, "front", "www") == f"{s}1.50"
    assert _resolves(ctr, "front", "api") == ""
    assert _resolves(ctr, "back", "api") == back_ip and _resolves(ctr, "back", "rpc") == back_ip
    assert _resolves(ctr, "back", "multi") == back_ip and _resolves(ctr, "back", "www") == ""

    # Stopped, it still shows what it asked for (no address); started or restarted, it is back on both.
    ctr("stop", "-t", "0", "multi")
    stopped = _inspect(ctr, "multi")["NetworkSettings"]["Networks"]
    assert list(stopped) == ["front", "back"] and stopped["front"]["IPAddress"] == ""
    assert stopped["back"]["Aliases"] == ["api", "rpc"]
    ctr("start", "multi")
    assert _resolves(ctr, "back", "rpc") and _resolves(ctr, "front", "www") == f"{s}1.50"
    ctr("restart", "-t", "0", "multi")
    nets = _inspect(ctr, "multi")["NetworkSettings"]["Networks"]
    assert nets["front"]["IPAddress"] == f"{s}1.50" and nets["back"]["IPAddress"]
    assert _resolves(ctr, "back", "api") == nets["back"]["IPAddress"]


def test_restart_policy_rejoins_every_network(ctr, tmp_path):
    ctr("network", "create", "one")
    ctr("network", "create", "two")
    log = tmp_path / "log"
    log.mkdir()
    ctr("run", "-d", "--name", "bouncy", "--restart", "on-failure:2", "--network", "one", "-v", f"{log}:/log",
        "--network", "name=two,alias=bouncer", "busybox", "sh", "-c", "ip -o -4 addr show > /log/$$-$RANDOM; exit 1")
    assert ctr("wait", "bouncy").out.strip() == "1"
    assert _inspect(ctr, "bouncy")["RestartCount"] == 2
    runs = [p.read_text() for p in log.iterdir()]
    assert len(runs) == 3 and all(": eth0 " in run and ": eth1 " in run for run in runs), runs


def test_bad_network_combinations_are_refused_before_anything_is_made(ctr):
    s = run_subnet(2, "")
    ctr("network", "create", "--subnet", f"{s}2.0/24", "solo")
    for argv, message in (
        (["--network", "host", "--network", "solo"], "conflicting options: --network host cannot be combined"),
        (["--network", "solo", "--network", "none"], "conflicting options: --network none cannot be combined"),
        (["--network", "none", "--network-alias", "x"], "aliases are only supported for user-defined networks"),
        (["--network", "host", "--ip", f"{s}2.9"], "IP address is supported on user-defined networks only"),
        (["--network-alias", "x"], "only supported for user-defined networks, not bridge"),
        (["--network", "nope"], "network nope not found"),
        (["--network", "solo", "--network", "name=nope,alias=a"], "network nope not found"),
        (["--network", "solo", "--network", "solo"], "network solo is given twice"),
        (["--network", "name=solo,mac=02:42:ac:11:00:02"], "invalid --network"),
        (["--network", "alias=a"], "it names no network"),
        (["--network", "solo", "--ip", f"{s}3.9"], "not in network solo's subnet"),
        (["--network", "solo", "--ip", "nonsense"], "invalid IP address 'nonsense'"),
        # An alias is written into peers' /etc/hosts: no line of its own may get in.
        (["--network", "name=solo,alias=x\n6.6.6.6 evil"], "invalid network alias"),
        (["--network", "solo", "--network-alias", "a b"], "invalid network alias 'a b'"),
    ):
        r = ctr("create", *argv, "busybox", "true", check=False)
        assert r.code == 125 and message in r.err and "Traceback" not in r.err, (argv, r.err)
        assert len(r.err.strip().splitlines()) == 1
    assert ctr("ps", "-aq").out == ""


def test_network_container_mode_shares_the_other_namespace(ctr, tmp_path):
    import os

    from runner.create import NETNS_DIR

    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("from srv's loopback\n")
    ctr("network", "create", "shared")
    srv = ctr("run", "-d", "--name", "srv", "--network", "name=shared,alias=server", "-v", f"{www}:/www:ro",
              "busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www").out.strip()
    script = ("for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/ && break; sleep 0.2; done; "
              "hostname; cat /etc/hostname; ip -o -4 addr show eth0 | wc -l")
    out = ctr("run", "--rm", "--network", "container:srv", "busybox", "sh", "-c", script).out.splitlines()
    srv_info = _inspect(ctr, "srv")
    hostname = srv_info["Config"]["Hostname"]
    assert out == ["from srv's loopback", hostname, hostname, "1"]

    # Recorded as docker does: the mode by id, the other's hosts/resolv.conf/hostname files, no network of its own.
    ctr("create", "--name", "side", "--network", "container:srv", "busybox", "cat", "/etc/hosts")
    side = _inspect(ctr, "side")
    assert side["HostConfig"]["NetworkMode"] == f"container:{srv}" and side["NetworkSettings"]["Networks"] == {}
    assert side["HostsPath"] == srv_info["HostsPath"] and side["Config"]["Hostname"] == hostname
    ctr("start", "side")
    assert ctr("wait", "side").out.strip() == "0"
    hosts = ctr("logs", "side").out
    assert f"{srv_info['NetworkSettings']['IPAddress']}\t{hostname}" in hosts
    assert not os.path.exists(os.path.join(NETNS_DIR, side["Id"]))  # its pin went with it

    # A container joined in turn shares the same namespace and files.
    ctr("run", "-d", "--name", "mid", "--network", "container:srv", "busybox", "sleep", "60")
    out = ctr("run", "--rm", "--network", "container:mid", "busybox", "sh", "-c",
              "wget -qO- http://127.0.0.1:8080/ && cat /etc/hostname").out
    assert out == f"from srv's loopback\n{hostname}\n"
    ctr("rm", "-f", "mid")

    # What docker refuses with it; a container that is not running cannot be joined.
    for argv, message in (
        (["-p", "80"], "conflicting options: port publishing and the container type network mode"),
        (["-h", "other"], "conflicting options: hostname and the container type network mode"),
        (["--dns", "192.0.2.1"], "conflicting options: dns and the container type network mode"),
        (["--add-host", "a:192.0.2.1"], "conflicting options: custom host-to-IP mapping"),
        (["--network-alias", "a"], "aliases are only supported for user-defined networks"),
        (["--network", "shared"], "cannot be combined with other networks"),
    ):
        r = ctr("create", "--network", "container:srv", *argv, "busybox", "true", check=False)
        assert r.code == 125 and message in r.err and len(r.err.strip().splitlines()) == 1, (argv, r.err)
    r = ctr("create", "--network", "container:nobody", "busybox", "true", check=False)
    assert r.code == 125 and "no such container: nobody" in r.err
    ctr("stop", "-t", "0", "srv")
    r = ctr("start", "side", check=False)
    assert r.code == 1 and "cannot join the network of container srv: it is not running" in r.err, r.err
    r = ctr("run", "--rm", "--network", "container:srv", "busybox", "true", check=False)
    assert r.code == 125 and "cannot join the network of container srv: it is not running" in r.err, r.err
    assert not os.path.exists(os.path.join(NETNS_DIR, side["Id"]))
