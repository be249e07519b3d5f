"""The Python API against real containers: client.containers and client.volumes, as docker-py scripts use them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from support import read_for

from dockyard.api import APIError, Client, ContainerError, ImageNotFound, NotFound

NET = {"network": "none"}  # no bridge to set up or tear down: these tests are about the lifecycle


@pytest.fixture
def client(store_root, busybox_image):
    """A client over a store with busybox; every container removed after."""
    client = Client(store_root)
    yield client
    for c in client.containers.list(all=True):
        c.remove(force=True)


def test_run_returns_output_and_removes(client):
    out = client.containers.run("busybox", ["sh", "-c", "echo hello; echo oops >&2"], remove=True, **NET)
    assert out == b"hello\n"
    assert client.containers.list(all=True) == []
    both = client.containers.run("busybox", "sh -c 'echo out; echo err >&2'", stderr=True, **NET)
    assert sorted(both.splitlines()) == [b"err", b"out"]


def test_run_nonzero_raises_container_error(client):
    with pytest.raises(ContainerError) as e:
        client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True, **NET)
    assert e.value.exit_status == 3
    assert e.value.stderr == b"bad\n"
    assert e.value.image == "busybox"
    assert client.containers.list(all=True) == []


def test_detached_logs_exec_stop_remove(client):
    c = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; exec sleep 60"],
                              detach=True, name="api-det", labels={"team": "a"}, **NET)
    assert c.status == "running" and c.name == "api-det" and c.labels["team"] == "a"
    assert len(c.short_id) == 12 and c.id.startswith(c.short_id)
    for _ in range(100):
        if c.logs().count(b"\n") == 5:
            break
        import time

        time.sleep(0.05)
    assert c.logs(tail=2) == b"line4\nline5\n"
    assert c.logs(tail=0) == b""
    assert c.logs(stdout=False) == b""
    res = c.exec_run(["sh", "-c", "echo in-$HOSTNAME-$X; exit 4"], environment={"X": "y"})
    assert res.exit_code == 4
    assert res.output.startswith(b"in-") and res.output.endswith(b"-y\n")
    assert "PID" in c.top()["Titles"] and c.top()["Processes"]
    assert client.containers.get("api-det") == c
    assert [x.name for x in client.containers.list(filters={"label": "team=a"})] == ["api-det"]
    c.stop(timeout=1)
    assert c.status == "exited"
    assert c.wait()["StatusCode"] == 137
    assert client.containers.list() == []
    assert [x.id for x in client.containers.list(all=True)] == [c.id]
    c.remove()
    with pytest.raises(NotFound):
        client.containers.get("api-det")


def test_wait_status_code_and_restart(client):
    c = client.containers.create("busybox", ["sh", "-c", "exit 7"], **NET)
    assert c.status == "created"
    c.start()
    assert c.wait(timeout=30) == {"StatusCode": 7}
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 7
    c.rename("renamed")
    assert c.name == "renamed" and client.containers.get("renamed").id == c.id
    assert client.containers.prune()["ContainersDeleted"] == [c.id]


def test_remove_running_needs_force(client):
    c = client.containers.run("busybox", ["sleep", "60"], detach=True, **NET)
    with pytest.raises(Exception, match="force remove"):
        c.remove()
    c.remove(force=True)
    assert client.containers.list(all=True) == []


def test_volumes(client):
    vol = client.volumes.create("data", labels={"k": "v"})
    assert vol.name == "data" and vol.attrs["Labels"] == {"k": "v"}
    assert client.volumes.get("data") == vol
    out = client.containers.run("busybox", ["sh", "-c", "echo hi > /d/f; cat /d/f"],
                                volumes={"data": {"bind": "/d", "mode": "rw"}}, name="user", **NET)
    assert out == b"hi\n"
    with pytest.raises(Exception, match="in use"):
        vol.remove()
    client.containers.get("user").remove()
    anon = client.volumes.create()
    assert {v.name for v in client.volumes.list()} == {"data", anon.name}
    assert client.volumes.prune()["VolumesDeleted"] == [anon.name]
    vol.remove()
    assert client.volumes.list() == []
    vol.remove(force=True)  # already gone: no error
    with pytest.raises(NotFound):
        client.volumes.get("data")


def test_networking_config_joins_every_network_with_aliases_and_address(client, test_networks):
    client.networks.create("apifront", ipam={"Config": [{"Subnet": "10.244.77.0/24"}]})
    client.networks.create("apiback")
    c = client.containers.run("busybox", ["sleep", "60"], detach=True, name="svc", network="apifront",
                              networking_config={"apifront": {"Aliases": ["web"],
                                                              "IPAMConfig": {"IPv4Address": "10.244.77.40"}},
                                                 "apiback": {"aliases": ["api"]}})
    nets = c.attrs["NetworkSettings"]["Networks"]
    assert list(nets) == ["apifront", "apiback"] and c.attrs["HostConfig"]["NetworkMode"] == "apifront"
    assert nets["apifront"]["IPAddress"] == "10.244.77.40" and nets["apifront"]["Aliases"] == ["web"]
    assert nets["apifront"]["IPAMConfig"] == {"IPv4Address": "10.244.77.40"} and nets["apiback"]["Aliases"] == ["api"]
    ping = "ping -c1 -W2 {} | head -1"
    assert b"(10.244.77.40)" in client.containers.run("busybox", ["sh", "-c", ping.format("web")], remove=True,
                                                      network="apifront")
    out = client.containers.run("busybox", ["sh", "-c", ping.format("api")], remove=True, network="apiback")
    assert f"({nets['apiback']['IPAddress']})".encode() in out
    with pytest.raises(NotFound, match="network nowhere not found"):
        client.containers.create("busybox", "true", networking_config={"apifront": {}, "nowhere": {}})
    with pytest.raises(APIError, match="unsupported key"):
        client.containers.create("busybox", "true", network="apifront", networking_config={"apifront": {"Mac": "x"}})
    assert [x.name for x in client.containers.list(all=True)] == ["svc"]


def test_logs_stream_follows_until_the_container_stops(client):
    c = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo l$i; sleep 0.2; done; echo e >&2"],
                              detach=True, **NET)
    chunks = c.logs(stream=True, follow=True)
    assert not isinstance(chunks, bytes)
    assert list(chunks) == [b"l1\n", b"l2\n", b"l3\n", b"e\n"]  # ends once it stopped
    c.reload()
    assert c.status == "exited"
    assert list(c.logs(stream=True, stderr=False, tail=3)) == [b"l2\n", b"l3\n"]  # no follow: at the end
    assert c.logs(stdout=False) == b"e\n"


def test_health_property(client):
    plain = client.containers.run("busybox", ["sleep", "60"], detach=True, **NET)
    assert plain.health == "none"
    checked = client.containers.run("busybox", ["sleep", "60"], detach=True, **NET,
                                    healthcheck={"test": ["CMD-SHELL", "test -e /ok"], "interval": 100_000_000,
                                                 "retries": 1})
    seen = {checked.health}
    checked.exec_run(["touch", "/ok"])
    for _ in range(100):
        checked.reload()
        seen.add(checked.health)
        if checked.health == "healthy":
            break
        time.sleep(0.05)
    assert seen <= {"starting", "healthy"} and checked.health == "healthy"


def test_stop_timeout_takes_fractions_and_engine_refusals_are_api_errors(client):
    c = client.containers.create("busybox", ["sleep", "60"], stop_timeout=1.2, **NET)
    assert c.attrs["Config"]["StopTimeout"] == 2
    with pytest.raises(APIError, match="is not running"):
        c.kill()
    with pytest.raises(APIError, match="invalid restart policy"):
        client.containers.create("busybox", "true", restart_policy={"Name": "sometimes"}, **NET)
    with pytest.raises(ImageNotFound):
        client.containers.create("absent:1", "true", **NET)
    with pytest.raises(ImageNotFound):
        client.containers.run("absent:1", "true", **NET)
    with pytest.raises(APIError, match="no command specified"):
        client.containers.create("busybox", entrypoint="", **NET)


CHILD = """
import os, sys
import dockyard.api
c = dockyard.api.Client(sys.argv[1]).containers.get(sys.argv[2])
what = sys.argv[3]
if what == "start":
    code = c.start_attached(interactive=sys.argv[4] == "i")
else:
    code = c.exec_attached(sys.argv[4:], tty=what == "exec-t", interactive=what != "exec")
os.write(2, b"code=%d" % code)
"""


def _child(client, name: str, *argv: str, **popen) -> subprocess.Popen:
    """This API, in a child whose stdio the test owns: start_attached/exec_attached use its stdin/stdout/stderr."""
    return subprocess.Popen([sys.executable, "-c", CHILD, client.root, name, *argv], **popen)


def test_start_attached_gives_our_stdio_and_the_exit_code(client):
    client.containers.create("busybox", ["sh", "-c", "echo out; echo err >&2; exit 5"], name="plain", **NET)
    p = _child(client, "plain", "start", "-", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=60)
    assert (out, err) == (b"out\n", b"err\ncode=5"), (out, err)

    client.containers.create("busybox", ["sh", "-c", "read x; echo got-$x; exit 2"], name="fed", stdin_open=True,
                             **NET)
    p = _child(client, "fed", "start", "i", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(b"hello\n", timeout=60)
    assert (out, err) == (b"got-hello\n", b"code=2"), (out, err)
    assert client.containers.get("fed").attrs["State"]["ExitCode"] == 2

    # With a TTY: the container's terminal, raw keys in, its echo and output back.
    client.containers.create("busybox", ["sh", "-c", "tty; read x; echo got-$x; exit 3"], name="term", tty=True,
                             stdin_open=True, **NET)
    master, slave = os.openpty()
    p = _child(client, "term", "start", "i", stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        seen = read_for(master, 2)
        os.write(master, b"typed\r")
        seen += read_for(master, 3)
        assert p.wait(60) == 0
    finally:
        os.close(master)
    assert seen.startswith(b"/dev/") and b"got-typed" in seen and b"code=3" in seen, seen  # `tty`: a terminal
    with pytest.raises(APIError, match="already running"):
        running = client.containers.run("busybox", ["sleep", "60"], detach=True, **NET)
        running.start_attached()


def test_exec_attached_runs_in_the_container_on_our_stdio(client):
    c = client.containers.run("busybox", ["sleep", "60"], detach=True, name="host", **NET)
    p = _child(client, "host", "exec", "sh", "-c", "echo in-$(hostname); echo oops >&2; exit 4",
               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=60)
    assert (out, err) == (f"in-{c.attrs['Config']['Hostname']}\n".encode(), b"oops\ncode=4"), (out, err)
    p = _child(client, "host", "exec-i", "sh", "-c", "read x; echo got-$x",
               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.communicate(b"fed\n", timeout=60) == (b"got-fed\n", b"code=0")
    master, slave = os.openpty()
    p = _child(client, "host", "exec-t", "sh", "-c", "tty; exit 6", stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        seen = read_for(master, 3)
        assert p.wait(60) == 0
    finally:
        os.close(master)
    assert seen.startswith(b"/dev/pts/") and b"code=6" in seen, seen
    # -it needs a terminal to take raw keys from: refused by name, as `dockyard exec -it` refuses it.
    p = _child(client, "host", "exec-t", "true", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
               stderr=subprocess.PIPE)
    out, err = p.communicate(b"", timeout=60)
    assert p.returncode == 1 and b"APIError: the input device is not a TTY" in err, err
    c.stop(timeout=0)
    with pytest.raises(APIError, match="is not running"):
        c.exec_attached(["true"])


