"""RUN's network: by default a namespace of its own on the default bridge with outbound NAT (never the host's
loopback), `--network host` opt-in, the mode outside the cache key, and nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from runner.network import store
from support import RAW_ATTACK, LoopbackServer, raw_client, run_subnet

# The test's stand-in for the world beyond the bridge.
OUTSIDE_HOST, OUTSIDE_NS = run_subnet(3, "39.1"), run_subnet(3, "39.2")

# Answers each connection with the address it came from (so NAT shows), forever; prints "ready" when listening.
PEER_ECHO = """
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 8080))
s.listen()
print("ready", flush=True)
while True:
    c, addr = s.accept()
    c.sendall(addr[0].encode() + b"\\n")
    c.close()
"""


@pytest.fixture
def outside():
    """A network namespace the host routes to over a veth (OUTSIDE_HOST here, OUTSIDE_NS there), serving PEER_ECHO."""
    tag = os.urandom(3).hex()
    ns, veth = f"dybo-{tag}", f"dyo{tag}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        for cmd in (f"link add {veth} type veth peer name eth0 netns {ns}", f"addr add {OUTSIDE_HOST}/24 dev {veth}",
                    f"link set {veth} up", f"-n {ns} addr add {OUTSIDE_NS}/24 dev eth0", f"-n {ns} link set eth0 up",
                    f"-n {ns} link set lo up"):
            subprocess.run(["ip", *cmd.split()], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", PEER_ECHO, OUTSIDE_NS],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline() == "ready\n"
        yield OUTSIDE_NS
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", veth], check=False)  # the pair: its eth0 goes with it
        subprocess.run(["ip", "netns", "del", ns], check=True)
    assert not os.path.exists(f"/sys/class/net/{veth}")


def cached(err: str) -> list[str]:
    """The instructions the progress output reports as CACHED."""
    names = dict(re.findall(r"^#(\d+) \[(?:\S+ )?\d+/\d+\] (.*)$", err, re.M))
    return [names[n] for n in re.findall(r"^#(\d+) CACHED$", err, re.M) if n in names]


def test_run_has_its_own_network_with_outbound_nat_and_host_is_opt_in(build, context, inspect, outside):
    with LoopbackServer() as server:
        ctx = context({"Dockerfile": f"""FROM busybox
RUN (echo probe | nc 127.0.0.1 {server.port} && echo reached || echo refused) > /loopback; \\
    nc {outside} 8080 </dev/null > /outside; ip -o -4 addr show eth0 > /addr
"""})
        build(ctx, "-t", "net:default")
        assert inspect.read("net:default", "loopback") == "refused\n"
        assert server.received == []
        # Reached through the host, which masqueraded the RUN's bridge address as its own on the way out.
        assert inspect.read("net:default", "outside") == f"{OUTSIDE_HOST}\n"
        assert f" inet {run_subnet(2, '')}" in inspect.read("net:default", "addr")

        build(ctx, "-t", "net:host", "--network", "host", "--no-cache")
        assert inspect.read("net:host", "loopback") == "reached\n"
        assert server.wait_for_message() == b"probe\n"


def test_network_mode_is_not_part_of_the_cache_key(build, context, inspect):
    ctx = context({"Dockerfile": "FROM busybox\nRUN ls /sys/class/net > /net\n"})
    build(ctx, "-t", "c:default")
    assert inspect.read("c:default", "net") == "eth0\nlo\n"
    for mode in ("host", "none"):
        res = build(ctx, "-t", f"c:{mode}", "--network", mode)
        assert cached(res.err) == ["RUN ls /sys/class/net > /net"]
        assert inspect.image(f"c:{mode}").id == inspect.image("c:default").id
    res = build(ctx, "-t", "c:none", "--network", "none", "--no-cache")
    assert cached(res.err) == [] and inspect.read("c:none", "net") == "lo\n"


def test_runs_leave_no_veth_netns_or_address_behind(build, context, inspect, build_network):
    pins = set(os.listdir("/run/dockyard/netns")) if os.path.isdir("/run/dockyard/netns") else set()
    ctx = context({"Dockerfile": "FROM busybox\nRUN echo one > /one\nRUN echo two; exit 3\n"})
    res = build(ctx, check=False)
    assert res.code == 1 and "exit code 3" in res.err
    assert store.read().attachments == {}
    assert os.listdir(f"/sys/class/net/{build_network}/brif") == []  # no veth left on the bridge
    assert set(os.listdir("/run/dockyard/netns")) <= pins
    with open("/proc/self/mountinfo") as f:
        assert "/run/dockyard/netns/build-" not in f.read()
    # The addresses were given back: the next RUN gets the first one again.
    ctx = context({"Dockerfile": "FROM busybox\nRUN ip -o -4 addr show eth0 > /addr\n"})
    build(ctx, "-t", "again")
    assert f" inet {run_subnet(2, '0.2/16')} " in inspect.read("again", "addr")
    assert store.read().attachments == {}


def test_run_cannot_reach_host_loopback_with_raw_packets(build, context, inspect):
    """The bridge's loopback guard covers builds: a RUN crafting frames to 127.0.0.1 gets no answer."""
    ctx = context({"attack.sh": RAW_ATTACK})
    raw_client(ctx)
    with LoopbackServer() as server:
        # Only ever from the test bridge: never aim at the machine's real gateway.
        (ctx / "Dockerfile").write_text(f"""FROM busybox
RUN --mount=type=bind,target=/x if ip route | grep -q '^default via {run_subnet(2, "0.1")} '; \\
    then sh /x/attack.sh {server.port}; else echo not on the test bridge; fi > /attack || true
""")
        build(ctx, "-t", "attack")
        assert inspect.read("attack", "attack") == "no answer\n"
        assert server.received == []
