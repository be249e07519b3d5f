"""Compose test helpers (imported as `composekit`): projects in the loader's shape, the CLI over a project, GET
with retries, host leftovers."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from compose.model import Project

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))  # ctrkit: host links and leftovers

from ctrkit import _leftovers, _links
from support import REPO, Result

APP = REPO / "examples" / "compose"

# A service that runs until stopped and stops on SIGTERM, as a real server does: a bare `sleep` as a container's
# PID 1 ignores SIGTERM, so every stop, recreate or down without -t waited out the 10 s timeout before its SIGKILL.
# (The kill after the timeout has its own tests: -t 1 and stop_grace_period on a bare sleep.)
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]


@dataclass
class ComposeCli:
    """`dockyard compose -p NAME -f FILE…` on the test's store, with the variables the project reads."""

    name: str
    files: list[Path]
    dockyard: Callable[..., Result]
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> Result:
        files = [arg for f in self.files for arg in ("-f", str(f))]
        return self.dockyard("compose", *files, "-p", self.name, *args, check=check, env=self.env, timeout=timeout)

    def container(self, service: str, index: int = 1) -> str:
        """docker compose's container name: <project>-<service>-<index>."""
        return f"{self.name}-{service}-{index}"

    def inspect(self, *names: str) -> list[dict]:
        return json.loads(self.dockyard("inspect", *names).out)

    def traces(self) -> list[str]:
        """What the project's networks and containers put on the host: bridges, veths (ip link), and per container
        its id, for mounts and cgroups."""
        found = []
        for name in self.dockyard("network", "ls", "--format", "{{.Name}}").out.split():
            if name.startswith(f"{self.name}_"):
                net = json.loads(self.dockyard("network", "inspect", name).out)[0]
                found.append(net["Options"]["com.docker.network.bridge.name"])
                found += [c["EndpointID"] for c in net["Containers"].values()]
        return found


def get(url: str, timeout: float = 20) -> str:
    """GET a URL, retrying while the server is still starting (connection refused or reset, 502 from the proxy)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.read().decode()
        except (urllib.error.URLError, ConnectionError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"GET {url}: {e}") from e
            time.sleep(0.2)


def host_leftovers(cids: list[str], links: list[str], store_root: str) -> list[str]:
    """Anything of these containers and links still on the host: mounts, cgroups, netns pins, links; any mount
    from the store."""
    found = [f"{cid[:12]}: {what}" for cid in cids for what in _leftovers(cid)]
    present = set(_links(""))
    found += [f"link {link}" for link in links if link in present]
    with open("/proc/self/mountinfo") as f:
        found += [line.strip() for line in f if store_root in line]
    return found


def make_project(tmp_path, services: dict, name: str = "proj", networks: dict | None = None,
                 volumes: dict | None = None, **more) -> Project:
    """A Project as the loader returns it: every service on `default` unless it says otherwise."""
    for svc in services.values():
        if "network_mode" not in svc:
            svc.setdefault("networks", {"default": None})
    nets = dict(networks or {})
    if any("default" in (s.get("networks") or {}) for s in services.values()):
        nets.setdefault("default", {"name": f"{name}_default"})
    return Project(name=name, working_dir=str(tmp_path), files=[str(tmp_path / "compose.yaml")],
                   services=services, disabled={}, networks=nets, volumes=dict(volumes or {}), **more)
