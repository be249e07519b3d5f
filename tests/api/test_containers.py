"""The Python API against real containers: client.containers and client.volumes, as docker-py scripts use them."""

from __future__ import annotations

import pytest

from dockyard.api import APIError, Client, ContainerError, NotFound

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
