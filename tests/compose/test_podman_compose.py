"""examples/compose run by `dockyard compose` and by podman-compose (Debian's 1.0.3) on the same images: the same
services, container names, published ports, environment and mounts, as each tool's inspect reports them."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from composekit import APP, ComposeCli
from support import run_subnet, tool

SERVICES = ("proxy", "api", "db", "cache")
IMAGES = [f"compose-example/{s}:latest" for s in SERVICES]
# Variables a tool sets in Config.Env of its own accord, not from the compose file or the image: HOSTNAME (the
# container's own), and podman's `container=podman`, HOME and TERM=xterm (podman writes them even without -t).
OWN_VARIABLES = {"HOSTNAME", "container", "HOME", "TERM"}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([tool("podman"), *args], capture_output=True, text=True, check=check, timeout=300)


def comparable(ctr: dict) -> dict:
    """What both tools must agree on for a container: environment (as a set, less each tool's own variables and
    PATH), published ports (podman also lists the image's exposed ports, unbound: null), mount destinations and
    writability."""
    env = {e for e in ctr["Config"]["Env"] if e.split("=", 1)[0] not in OWN_VARIABLES | {"PATH"}}
    published = ctr["HostConfig"].get("PortBindings") or {}
    assert isinstance(published, dict), f"{ctr['Name']}: HostConfig.PortBindings is not docker's map: {published}"
    bindings = {port: [b["HostPort"] for b in binds] for port, binds in published.items() if binds}
    mounts = sorted((m["Destination"], m["RW"]) for m in ctr["Mounts"])
    return {"env": env, "ports": bindings, "mounts": mounts}


@pytest.fixture
def podman_project(app):
    """The project's name for podman-compose; its containers, pods, networks, volumes and our images removed from
    podman after, also when the test failed."""
    yield app.name
    label = f"label=io.podman.compose.project={app.name}"
    ids = podman("ps", "-aq", "--filter", label, check=False).stdout.split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids, check=False)
    pods = podman("pod", "ps", "-q", "--filter", f"name={app.name}", check=False).stdout.split()
    if pods:
        podman("pod", "rm", "-f", *pods, check=False)
    for kind in ("network", "volume"):
        names = podman(kind, "ls", "-q", "--filter", label, check=False).stdout.split()
        if names:
            podman(kind, "rm", "-f", *names, check=False)
    podman("rmi", "-f", *IMAGES, check=False)


def test_podman_compose_makes_the_same_containers(app: ComposeCli, dockyard, podman_project, tmp_path):
    # Both tools get explicit subnets (this run's, never podman's 10.88/16) from an override file.
    subnets = tmp_path / "subnets.yaml"
    subnets.write_text("networks:\n" + "".join(
        f"  {net}:\n    ipam:\n      config:\n        - subnet: {run_subnet(7, f'{200 + i}.0/24')}\n"
        for i, net in enumerate(("frontend", "backend"))))
    app.files.append(subnets)

    app("up", "-d")
    ours = {s: app.inspect(app.container(s))[0] for s in SERVICES}
    for net in ("frontend", "backend"):
        config = json.loads(dockyard("network", "inspect", f"{app.name}_{net}").out)[0]["IPAM"]["Config"]
        assert config[0]["Subnet"] == run_subnet(7, f"{200 + (net == 'backend')}.0/24")
    app("down", "-v")

    # The images dockyard built, moved as they are: save | podman load keeps their names (podman shows them as
    # localhost/compose-example/…, which the compose file's short names resolve to).
    archive = tmp_path / "images.tar"
    dockyard("save", "-o", str(archive), *IMAGES)
    podman("load", "-i", str(archive))
    # podman-compose 1.0.3 ignores ipam (it creates networks without --subnet) but uses a network that exists:
    # make them first, on the same subnets, labelled as its own.
    for i, net in enumerate(("frontend", "backend")):
        podman("network", "create", "--subnet", run_subnet(7, f"{200 + i}.0/24"), "--label",
               f"io.podman.compose.project={podman_project}", f"{podman_project}_{net}")
    # --no-build: the compose file's `build:` keys stay, but podman-compose uses the loaded images as they are.
    pc = subprocess.run([tool("podman-compose"), "-p", podman_project, *(a for f in app.files for a in ("-f", str(f))),
                         "up", "-d", "--no-build"], capture_output=True, text=True, timeout=300,
                        cwd=APP, env={**os.environ, **app.env})
    assert pc.returncode == 0, pc.stdout + pc.stderr
    # podman-compose 1.0.3 names containers <project>_<service>_<n>, docker compose <project>-<service>-<n>:
    # compared after mapping "_" to "-" (the project and service names here have neither).
    names = podman("ps", "-a", "--format", "{{.Names}}", "--filter",
                   f"label=io.podman.compose.project={podman_project}").stdout.split()
    assert sorted(n.replace("_", "-") for n in names) == sorted(app.container(s) for s in SERVICES)
    theirs = {s: json.loads(podman("inspect", f"{podman_project}_{s}_1").stdout)[0] for s in SERVICES}
    for s in SERVICES:
        assert comparable(ours[s]) == comparable(theirs[s]), s
    assert comparable(ours["proxy"])["ports"] == {"80/tcp": [app.env["PROXY_PORT"]]}
    assert comparable(ours["db"])["mounts"] == [("/data", True)]
    assert comparable(ours["proxy"])["mounts"] == [("/www/static", False)]
    assert "GREETING=hello from .env" in comparable(ours["api"])["env"]
    assert "DB_HOST=db" in comparable(ours["api"])["env"]  # from env_file
