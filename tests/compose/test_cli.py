"""`dockyard compose` end to end through the real CLI: up -d, ps, logs, exec, run, foreground up, down."""

from __future__ import annotations

import json
import time

import composekit
import pytest

SLEEP = json.dumps(composekit.SLEEP)  # for the YAML flow sequences below


def states(project) -> dict[str, str]:
    """Each service's container state, from `ps -a --format json`."""
    return {r["Service"]: r["State"] for r in map(json.loads, project("ps", "-a", "--format", "json").out.splitlines())}


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


def test_logs_are_prefixed_per_container(project):
    project.write("""
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo one; echo two; sleep 600"]
  worker:
    image: busybox
    command: ["sh", "-c", "echo working; sleep 600"]
""")
    project("up", "-d", "--scale", "worker=2")
    deadline = time.monotonic() + 20
    while "two" not in project("logs", "web").out and time.monotonic() < deadline:
        time.sleep(0.2)
    out = project("logs").out.splitlines()
    assert "web-1     | one" in out and "web-1     | two" in out
    assert "worker-1  | working" in out and "worker-2  | working" in out
    assert "\033[" not in "".join(out)  # no colour when stdout is not a terminal
    assert project("logs", "--no-log-prefix", "web").out.splitlines() == ["one", "two"]
    assert project("logs", "--tail", "1", "web").out.splitlines() == ["web-1  | two"]


def test_build_inline_dockerfile_names_the_image_and_down_rmi_local_removes_it(project, dockyard):
    project.write(f"""
services:
  app:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        ARG GREETING=unset
        RUN echo "$$GREETING" > /greeting
        CMD {SLEEP}
      args:
        GREETING: built-by-compose
  plain:
    image: busybox
    command: {SLEEP}
""")
    project("up", "-d")
    assert "app-app:latest" in dockyard("images", "--format", "{{.Repository}}:{{.Tag}}").out.split()
    assert dockyard("exec", "app-app-1", "cat", "/greeting").out == "built-by-compose\n"
    before = json.loads(project("ps", "--format", "json", "app").out)["ID"]
    assert "Container app-app-1  Running" in project("up", "-d", "--build").err  # same steps, same image
    project.write((project.dir / "compose.yaml").read_text().replace("built-by-compose", "rebuilt"))
    assert "Container app-app-1  Recreate" in project("up", "-d", "--build").err  # a new image: recreated
    assert json.loads(project("ps", "--format", "json", "app").out)["ID"] != before
    assert dockyard("exec", "app-app-1", "cat", "/greeting").out == "rebuilt\n"
    project("down", "--rmi", "local")
    names = dockyard("images", "--format", "{{.Repository}}:{{.Tag}}").out.split()
    assert "app-app:latest" not in names and "busybox:latest" in names


def test_a_failing_build_names_the_service_and_starts_nothing(project):
    project.write("""
services:
  ok:
    image: busybox
    command: ["sleep", "600"]
  broken:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        RUN exit 7
""")
    r = project("up", "-d", check=False)
    assert r.code != 0 and "service broken: build failed" in r.err
    assert project("ps", "-a", "-q").out == ""


ABORT = """
services:
  quick:
    image: busybox
    command: ["sh", "-c", "echo quick says bye; sleep 1; exit 3"]
  slow:
    image: busybox
    command: ["sleep", "600"]
"""


def test_foreground_up_aborts_on_container_exit_with_its_code(project, dockyard):
    project.write(ABORT)
    r = project("up", "--abort-on-container-exit", "-t", "1", check=False)
    assert r.code == 3, r.err
    assert "quick-1  | quick says bye" in r.out and "quick-1 exited with code 3" in r.out
    assert "Aborting on container exit..." in r.out
    assert json.loads(project("ps", "-a", "--format", "json", "slow").out)["State"] == "exited"


def test_exit_code_from_takes_that_services_code(project):
    project.write(ABORT)
    r = project("up", "--exit-code-from", "slow", "-t", "1", check=False)
    slow = json.loads(project("ps", "-a", "--format", "json", "slow").out)
    assert slow["State"] == "exited" and r.code == slow["ExitCode"] != 3


def test_run_rm_exec_and_their_exit_codes(project):
    project.write(f"""
services:
  web:
    image: busybox
    command: {SLEEP}
    environment:
      FROM_FILE: hello
""")
    r = project("run", "--rm", "-T", "web", "sh", "-c", "echo $FROM_FILE $EXTRA; exit 5", "-e", "EXTRA=x",
                check=False)
    assert r.code == 5 and r.out == "hello\n", r.err
    r = project("run", "--rm", "-T", "-e", "EXTRA=x", "web", "sh", "-c", "echo $FROM_FILE $EXTRA")
    assert r.out == "hello x\n"
    assert project("ps", "-a", "-q").out == ""  # --rm left nothing; web itself was not started
    name = project("run", "-d", "web").out.strip()
    assert name.startswith("app-web-run-")
    rows = [json.loads(line) for line in project("ps", "-a", "--format", "json").out.splitlines()]
    assert [r["Name"] for r in rows] == [name]
    project("up", "-d")
    r = project("exec", "-T", "-e", "V=1", "-w", "/tmp", "web", "sh", "-c", "echo $V $(pwd); exit 4", check=False)
    assert (r.code, r.out) == (4, "1 /tmp\n")
    project("down")
    assert project("ps", "-a", "-q").out == ""  # down removed the one-off container too


def test_ctrl_c_stops_the_foreground_up(project, store_root):
    """SIGINT while attached: "Gracefully stopping...", every container stopped, status 130."""
    import os
    import signal
    import subprocess
    import sys

    project.write(f"""
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo web is up; exec sleep 600"]
    stop_grace_period: 1s
  db:
    image: busybox
    command: ["sleep", "600"]
""")
    argv = [sys.executable, "-m", "dockyard", "compose", "-f", str(project.dir / "compose.yaml"), "up"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "DOCKYARD_ROOT": store_root})
    import threading
    watchdog = threading.Timer(90, p.kill)  # a start that never prints fails the test instead of hanging it
    watchdog.start()
    try:
        seen = b""
        while b"web is up" not in seen:
            line = p.stdout.readline()
            assert line, p.stderr.read().decode()
            seen += line
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert b"Gracefully stopping..." in out, (out, err)
    assert states(project) == {"web": "exited", "db": "exited"}


def test_wait_returns_once_healthy_and_secrets_and_configs_are_mounted(project, tmp_path):
    (project.dir / "token.txt").write_text("t0ken\n")
    project.write("""
services:
  app:
    image: busybox
    command: ["sh", "-c", "sleep 1; touch /tmp/ok; exec sleep 600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 300ms
    secrets: [token]
    configs:
      - source: settings
        target: /etc/app.conf
secrets:
  token:
    file: ./token.txt
configs:
  settings:
    content: "mode=fast"
""")
    project("up", "-d", "--wait", "--wait-timeout", "30")
    row = json.loads(project("ps", "--format", "json").out)
    assert row["Health"] == "healthy"
    assert project("exec", "-T", "app", "cat", "/run/secrets/token", "/etc/app.conf").out == "t0ken\nmode=fast"
    r = project("exec", "-T", "app", "sh", "-c", "echo x > /run/secrets/token", check=False)
    assert r.code != 0  # read-only


def test_lifecycle_verbs_top_images_and_follow(project):
    project.write(f"""
services:
  web:
    image: busybox
    command: {SLEEP}
  job:
    image: busybox
    command: ["sh", "-c", "sleep 2; echo job done"]
""")
    assert "Container app-web-1  Created" in project("create").err
    assert states(project) == {"web": "created", "job": "created"}
    project("start")

    assert project("logs", "-f", "job").out == "job-1  | job done\n"  # follow ends when the container stops
    project("pause", "web")
    assert states(project)["web"] == "paused"
    project("unpause", "web")
    assert states(project)["web"] == "running"
    top = project("top", "web").out
    assert top.startswith("app-web-1\n") and "sleep 600" in top
    images = project("images").out.splitlines()
    assert images[0].split() == ["CONTAINER", "REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    assert any(line.split()[:3] == ["app-web-1", "busybox", "latest"] for line in images[1:])
    project("stop", "-t", "1", "web")
    assert states(project) == {"web": "exited", "job": "exited"}
    project("start", "web")
    assert states(project)["web"] == "running"
    project("restart", "-t", "1", "web")
    assert states(project)["web"] == "running"
    project("kill", "-s", "SIGKILL", "web")
    assert states(project)["web"] == "exited"
    assert "Container app-job-1  Removed" in project("rm", "-f", "job").err
    assert set(states(project)) == {"web"}


def test_up_pulls_a_missing_image_and_push_sends_built_ones(project, dockyard, registry):
    remote = f"{registry.host}/lib/tool:1"
    dockyard("tag", "busybox:latest", remote)
    dockyard("push", remote)
    dockyard("rmi", remote)
    project.write(f"""
services:
  tool:
    image: {remote}
    command: {SLEEP}
  made:
    image: {registry.host}/lib/made:2
    build:
      context: .
      dockerfile_inline: "FROM busybox\\nENV MADE=1\\n"
    command: {SLEEP}
  missing:
    image: {registry.host}/lib/absent:1
    profiles: [never]
""")
    up = project("up", "-d")
    assert f"Image {remote}  Pulled" in up.err and states(project) == {"tool": "running", "made": "running"}
    project("push")
    project("down")
    dockyard("rmi", f"{registry.host}/lib/made:2")
    project("pull", "made")
    assert f"{registry.host}/lib/made:2" in dockyard("images", "--format", "{{.Repository}}:{{.Tag}}").out
    r = project("up", "-d", "missing", check=False)
    assert r.code != 0 and r.err.strip().splitlines()[-1].startswith("Error: service missing: pull of image")
    assert "Traceback" not in r.err
