"""`dockyard compose` end to end through the real CLI: up -d, ps, logs, exec, run, foreground up, down."""

from __future__ import annotations

import json

import pytest

SLEEP = '["sleep", "600"]'


@pytest.fixture
def project(tmp_path, dockyard, busybox_image, test_networks):
    """write(yaml) puts compose.yaml in a project dir; compose(*args) runs `dockyard compose` there; down -v after."""
    d = tmp_path / "app"
    d.mkdir()

    def compose(*args, **kw):
        return dockyard("compose", "-f", str(d / "compose.yaml"), *args, **kw)

    compose.dir = d
    compose.write = lambda text: (d / "compose.yaml").write_text(text)
    yield compose
    if (d / "compose.yaml").exists():
        compose("down", "-v", "-t", "1", check=False)


def test_up_detached_ps_and_down(project, dockyard):
    project.write(f"""
services:
  web:
    image: busybox
    command: {SLEEP}
    ports: ["127.0.0.1::8080"]
  db:
    image: busybox
    command: {SLEEP}
""")
    up = project("up", "-d")
    assert "Container app-web-1  Started" in up.err and "Network app_default  Created" in up.err
    table = project("ps").out.splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]
    assert [line.split()[0] for line in table[1:]] == ["app-web-1", "app-db-1"]
    rows = [json.loads(line) for line in project("ps", "--format", "json").out.splitlines()]
    web = next(r for r in rows if r["Service"] == "web")
    assert web["Name"] == "app-web-1" and web["State"] == "running" and web["Project"] == "app"
    assert web["Publishers"][0]["URL"] == "127.0.0.1" and web["Publishers"][0]["TargetPort"] == 8080
    port = project("port", "web", "8080").out.strip()
    assert port == f"127.0.0.1:{web['Publishers'][0]['PublishedPort']}"
    assert project("ps", "--services").out.split() == ["web", "db"]
    ids = project("ps", "-q").out.split()
    assert len(ids) == 2 and all(len(i) == 64 for i in ids)
    listed = json.loads(project("ls", "--format", "json").out)
    assert listed == [{"Name": "app", "Status": "running(2)", "ConfigFiles": str(project.dir / "compose.yaml")}]
    again = project("up", "-d")
    assert "Container app-web-1  Running" in again.err
    down = project("down")
    assert "Container app-web-1  Removed" in down.err and "Network app_default  Removed" in down.err
    assert project("ps", "-a", "-q").out == ""
    assert "app_default" not in dockyard("network", "ls").out


def test_bad_input_is_one_line(project):
    project.write(f"services:\n  web:\n    image: busybox\n    command: {SLEEP}\n")
    for args, message in ((("up", "-d", "--scale", "web=x"), "invalid --scale 'web=x'"),
                          (("up", "-d", "ghost"), "no such service: ghost"),
                          (("exec", "-T", "web", "true"), "service 'web' is not running"),
                          (("up", "-d", "--build", "--no-build"), "incompatible")):
        r = project(*args, check=False)
        assert r.code != 0 and r.err.strip().startswith("Error: ") and message in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
