"""Convergence on real containers: up, a second up, changed config, scale, resolution, dependencies, down."""

from __future__ import annotations

import pytest
from composekit import SLEEP

from compose import labels
from compose.engine import UpOptions
from compose.errors import ComposeError


def names(compose, **kw) -> list[str]:
    return [c.name for c in compose.containers(**kw)]


def test_up_labels_and_a_second_up_changes_nothing(engine):
    compose = engine({"web": {"image": "busybox", "command": SLEEP, "environment": {"A": "1"}},
                      "db": {"image": "busybox", "command": SLEEP}})
    first = compose.up(UpOptions())
    assert sorted(c.name for c in first) == ["proj-db-1", "proj-web-1"]
    web = compose.client.containers.get("proj-web-1")
    assert web.status == "running"
    lab = web.labels
    assert lab[labels.PROJECT] == "proj" and lab[labels.SERVICE] == "web" and lab[labels.NUMBER] == "1"
    assert lab[labels.ONEOFF] == "False"
    assert lab[labels.CONFIG_HASH] == labels.config_hash(compose.project.services["web"])
    assert lab[labels.IMAGE] == compose.client.images.get("busybox").id
    net = compose.client.networks.get("proj_default")
    assert net.attrs["Labels"][labels.NETWORK] == "default" and net.attrs["Labels"][labels.PROJECT] == "proj"
    said = []
    compose.say = lambda kind, name, status: said.append((name, status))
    second = compose.up(UpOptions())
    assert [c.id for c in second] == [c.id for c in first]  # nothing recreated
    assert ("proj-web-1", "Running") in said and ("proj-db-1", "Running") in said


def test_changed_environment_recreates_only_that_service(engine):
    compose = engine({"web": {"image": "busybox", "command": SLEEP, "environment": {"A": "1"}},
                      "db": {"image": "busybox", "command": SLEEP}})
    before = {c.name: c.id for c in compose.up(UpOptions())}
    compose.project.services["web"]["environment"]["A"] = "2"
    after = {c.name: c.id for c in compose.up(UpOptions())}
    assert after["proj-db-1"] == before["proj-db-1"]
    assert after["proj-web-1"] != before["proj-web-1"]
    web = compose.client.containers.get("proj-web-1")
    assert "A=2" in web.attrs["Config"]["Env"]
    assert compose.up(UpOptions(force_recreate=True, services=["db"]))[0].id != before["proj-db-1"]


def test_scale_up_and_down(engine):
    compose = engine({"web": {"image": "busybox", "command": SLEEP}})
    compose.up(UpOptions(scale={"web": 3}))
    assert names(compose) == ["proj-web-1", "proj-web-2", "proj-web-3"]
    kept = compose.client.containers.get("proj-web-1").id
    compose.up(UpOptions(scale={"web": 1}))
    assert names(compose) == ["proj-web-1"]
    assert compose.client.containers.get("proj-web-1").id == kept


def test_services_resolve_each_other_by_service_alias_and_container_name(engine, tmp_path):
    """web serves a file with busybox httpd; client fetches it by web's service name, alias and container name."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from web\n")
    compose = engine({
        "web": {"image": "busybox", "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "volumes": [{"type": "bind", "source": str(www), "target": "/www", "read_only": True}],
                "networks": {"back": {"aliases": ["www-alias"]}}},
        "client": {"image": "busybox", "command": SLEEP, "networks": {"back": None}},
    }, networks={"back": {"name": "proj_back"}})
    compose.up(UpOptions())
    client = compose.client.containers.get("proj-client-1")
    for host in ("web", "www-alias", "proj-web-1"):
        result = client.exec_run(["wget", "-qO-", f"http://{host}:8080/index.html"])
        assert (result.exit_code, result.output) == (0, b"hello from web\n"), host
    hosts = client.exec_run(["cat", "/etc/hosts"]).output.decode()
    assert "www-alias" in hosts and "proj-web-1" in hosts


def test_depends_on_healthy_and_completed(engine):
    compose = engine({
        "init": {"image": "busybox", "command": ["sh", "-c", "sleep 1; echo done > /tmp/x"]},
        "db": {"image": "busybox", "command": ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 600"],
               "healthcheck": {"test": ["CMD-SHELL", "test -f /tmp/ready"], "interval": "500ms", "retries": 20}},
        "web": {"image": "busybox", "command": SLEEP, "depends_on": {
            "db": {"condition": "service_healthy", "required": True},
            "init": {"condition": "service_completed_successfully", "required": True}}},
    })
    compose.up(UpOptions())
    db = compose.client.containers.get("proj-db-1")
    web = compose.client.containers.get("proj-web-1")
    init = compose.client.containers.get("proj-init-1")
    assert db.attrs["State"]["Health"]["Status"] == "healthy"
    assert init.attrs["State"]["ExitCode"] == 0 and init.status == "exited"
    # web started only after db was healthy and init had finished
    assert web.attrs["State"]["StartedAt"] > init.attrs["State"]["FinishedAt"]
    assert web.status == "running"


def test_a_failed_dependency_fails_up_naming_it_and_leaves_nothing(engine):
    compose = engine({
        "init": {"image": "busybox", "command": ["sh", "-c", "exit 3"]},
        "web": {"image": "busybox", "command": SLEEP,
                "depends_on": {"init": {"condition": "service_completed_successfully"}}},
    }, volumes={"data": {"name": "proj_data"}})
    compose.project.services["init"]["volumes"] = [{"type": "volume", "source": "data", "target": "/data"}]
    with pytest.raises(ComposeError, match=r'service "init" didn\'t complete successfully: exit 3'):
        compose.up(UpOptions())
    assert compose.containers(oneoff=None) == []
    assert [n.name for n in compose.client.networks.list() if n.name.startswith("proj")] == []
    assert [v.name for v in compose.client.volumes.list() if v.name.startswith("proj")] == []


def test_a_missing_image_names_the_service(engine):
    compose = engine({"web": {"image": "busybox", "command": SLEEP},
                      "api": {"build": {"context": "/nonexistent-context"}}})
    with pytest.raises(ComposeError, match=r"services\.api\.build\.context: no such directory"):
        compose.up(UpOptions())
    assert compose.containers(oneoff=None) == []


def test_down_removes_containers_networks_and_with_v_volumes(engine):
    compose = engine({"web": {"image": "busybox", "command": SLEEP, "volumes": [
        {"type": "volume", "source": "data", "target": "/data"}, {"type": "volume", "target": "/anon"}]}},
        volumes={"data": {"name": "proj_data"}})
    compose.up(UpOptions())
    compose.down()
    assert compose.containers(oneoff=None) == []
    assert "proj_default" not in [n.name for n in compose.client.networks.list()]
    assert "proj_data" in [v.name for v in compose.client.volumes.list()]  # without -v named volumes stay
    compose.up(UpOptions())
    anon = [m["Name"] for m in compose.client.containers.get("proj-web-1").attrs["Mounts"]
            if m["Destination"] == "/anon"]
    assert anon
    compose.down(volumes=True)
    left = [v.name for v in compose.client.volumes.list()]
    assert "proj_data" not in left and not set(anon) & set(left)


def test_orphans_are_kept_with_a_warning_or_removed(engine):
    compose = engine({"web": {"image": "busybox", "command": SLEEP}, "old": {"image": "busybox", "command": SLEEP}})
    compose.up(UpOptions())
    del compose.project.services["old"]
    said = []
    compose.say = lambda kind, name, status: said.append((kind, status))
    compose.up(UpOptions())
    assert any(kind == "Warning" and "proj-old-1" in status for kind, status in said)
    assert compose.client.containers.get("proj-old-1").status == "running"
    compose.up(UpOptions(remove_orphans=True))
    assert [c.name for c in compose.orphans()] == []


def test_fixed_address_on_a_project_subnet_and_network_mode_service(engine):
    """A network with its own ipam subnet and a fixed address; a sidecar in web's namespace reaches it on localhost."""
    from support import run_subnet

    subnet, address = run_subnet(1, "7.0/24"), run_subnet(1, "7.10")
    compose = engine({
        "web": {"image": "busybox", "command": ["sh", "-c", "echo hi > /tmp/i; exec httpd -f -p 8080 -h /tmp"],
                "networks": {"front": {"ipv4_address": address}}},
        "sidecar": {"image": "busybox", "command": SLEEP, "network_mode": "service:web",
                    "depends_on": {"web": {"condition": "service_started"}}},
    }, networks={"front": {"name": "proj_front", "ipam": {"config": [{"subnet": subnet}]}}})
    compose.up(UpOptions())
    web = compose.client.containers.get("proj-web-1")
    assert web.attrs["NetworkSettings"]["Networks"]["proj_front"]["IPAddress"] == address
    sidecar = compose.client.containers.get("proj-sidecar-1")
    result = sidecar.exec_run(["wget", "-qO-", "http://127.0.0.1:8080/i"])
    assert (result.exit_code, result.output) == (0, b"hi\n")


def test_links_add_their_alias_and_no_deps_starts_only_the_named_service(engine):
    compose = engine({"db": {"image": "busybox", "command": SLEEP},
                      "web": {"image": "busybox", "command": SLEEP, "links": ["db:database"],
                              "depends_on": {"db": {"condition": "service_started"}}},
                      "extra": {"image": "busybox", "command": SLEEP,
                                "depends_on": {"web": {"condition": "service_started"}}}})
    compose.up(UpOptions(services=["web"]))
    assert names(compose) == ["proj-db-1", "proj-web-1"]  # web's dependency came along; extra did not
    web = compose.client.containers.get("proj-web-1")
    assert web.exec_run(["ping", "-c", "1", "-W", "2", "database"]).exit_code == 0
    compose.up(UpOptions(services=["extra"], no_deps=True))
    assert names(compose) == ["proj-db-1", "proj-web-1", "proj-extra-1"]
