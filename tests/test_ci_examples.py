"""examples/ci: the GitHub Actions and GitLab CI files call only examples/ci/steps.sh, and its stages, run here as
two fresh CI runners against our registry (htpasswd auth), build, share the cache, test in the image and push only
from the default branch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from support import REPO, tool

sys.path.insert(0, str(Path(__file__).resolve().parent / "client"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "builder"))
from registries import Server, start_dockyard_registry
from test_build_cache import steps

CI = REPO / "examples" / "ci"
STAGES = ("login", "build", "test", "push")  # what both CI files run, in this order
APP_STEPS = ("COPY wordfreq.sh test.sh /app/",
             "RUN chmod 0755 /app/wordfreq.sh /app/test.sh && sha256sum /app/wordfreq.sh > /app/wordfreq.sha256",
             'ENTRYPOINT ["/app/wordfreq.sh"]')
USER, PASSWORD = "ci", "ci-secret"


@pytest.fixture(scope="module")
def ci_registry(tmp_path_factory):
    """Our registry on a loopback port, requiring basic auth (user ci)."""
    tmp = tmp_path_factory.mktemp("ci-registry")
    line = subprocess.run([tool("htpasswd"), "-Bbn", "-C", "5", USER, PASSWORD], capture_output=True, text=True,
                          check=True).stdout
    (tmp / "htpasswd").write_text(line)
    server = start_dockyard_registry(tmp / "reg", "--htpasswd", str(tmp / "htpasswd"))
    yield server
    server.stop()


class Runner:
    """A fresh CI runner: its own store (holding only the busybox base) and client config; `dockyard` on PATH is
    this checkout's."""

    def __init__(self, home: Path, busybox_store: Path, registry: str, commit: str, push: bool):
        home.mkdir()
        shutil.copytree(busybox_store, home / "store", symlinks=True)
        (home / "bin").mkdir()
        wrapper = home / "bin" / "dockyard"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m dockyard "$@"\n')
        wrapper.chmod(0o755)
        self.env = {**os.environ, "PATH": f"{home / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
                    "DOCKYARD_ROOT": str(home / "store"), "DOCKER_CONFIG": str(home / "docker"),
                    "DOCKYARD_CONFIG": str(home / "daemon.json"), "DOCKYARD_CERTS_D": str(home / "certs.d"),
                    "REGISTRY": registry, "IMAGE": f"{registry}/ci/app", "COMMIT": commit,
                    "PUSH": "true" if push else "false", "REGISTRY_USER": USER, "REGISTRY_PASSWORD": PASSWORD}
        self.env.pop("DOCKYARD_DEFAULT_REGISTRY", None)

    def stage(self, stage: str, ci: Path = CI, check: bool = True) -> subprocess.CompletedProcess:
        """`steps.sh STAGE`, as the CI files' steps call it."""
        p = subprocess.run(["bash", str(ci / "steps.sh"), stage], env=self.env, capture_output=True, text=True,
                           timeout=120)
        assert not check or p.returncode == 0, f"steps.sh {stage} exited {p.returncode}: {p.stdout}{p.stderr}"
        return p

    def build(self, ci: Path = CI) -> dict[str, str]:
        """The build stage's steps (beyond FROM) -> CACHED or DONE."""
        return {k: v for k, v in steps(self.stage("build", ci).stderr).items() if not k.startswith("FROM ")}


def writes(server: Server) -> list[str]:
    """The requests so far (from the access log) that change the registry (an identical re-push counts too)."""
    records = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    return [f"{r['method']} {r['path']}" for r in records if r["method"] in ("PUT", "POST", "PATCH", "DELETE")]


def tags(registry: str) -> dict[str, str]:
    """ci/app's tags in the registry -> manifest digests, read through the distribution API."""
    auth = (USER, PASSWORD)
    r = requests.get(f"http://{registry}/v2/ci/app/tags/list", auth=auth, timeout=10)
    if r.status_code == 404:
        return {}
    r.raise_for_status()
    accept = ("application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
              "application/vnd.docker.distribution.manifest.v2+json")
    return {tag: requests.head(f"http://{registry}/v2/ci/app/manifests/{tag}", auth=auth, timeout=10,
                               headers={"Accept": accept}).headers["Docker-Content-Digest"]
            for tag in r.json()["tags"] or []}


def test_two_runners_share_the_cache_and_only_the_default_branch_pushes(ci_registry, busybox_store, tmp_path):
    server, registry = ci_registry, ci_registry.host
    # Runner A, the default branch: a cold build exporting the cache, the tests in the image, the push.
    a = Runner(tmp_path / "a", busybox_store, registry, "a1a1a1", push=True)
    assert "Login Succeeded" in a.stage("login").stdout
    assert a.build() == dict.fromkeys(APP_STEPS, "DONE")
    assert "ok: wordfreq" in a.stage("test").stdout
    a.stage("push")
    pushed, written = tags(registry), writes(server)
    assert written
    assert set(pushed) == {"a1a1a1", "latest", "buildcache"}
    assert pushed["latest"] == pushed["a1a1a1"]

    # Runner B, empty but for the base, on a pull-request branch: every step comes from the registry's cache, the
    # tests pass, and neither an image nor the cache is pushed.
    b = Runner(tmp_path / "b", busybox_store, registry, "b2b2b2", push=False)
    b.stage("login")
    assert b.build() == dict.fromkeys(APP_STEPS, "CACHED")
    assert "ok: wordfreq" in b.stage("test").stdout
    assert "nothing pushed" in b.stage("push").stdout
    assert tags(registry) == pushed and writes(server) == written

    # The test stage fails a broken app: a copy of examples/ci whose wordfreq no longer folds case.
    broken = tmp_path / "broken"
    shutil.copytree(CI, broken)
    script = broken / "app" / "wordfreq.sh"
    script.write_text(script.read_text().replace("| tr 'A-Z' 'a-z' ", ""))
    assert b.build(broken)[APP_STEPS[0]] == "DONE"
    failed = b.stage("test", broken, check=False)
    assert failed.returncode != 0 and "FAIL: wordfreq 2" in failed.stderr, failed.stderr


def test_ci_files_run_only_the_steps_script():
    """Every command of both CI files is `examples/ci/steps.sh STAGE`, the stages the test above runs, in order;
    only the default branch sets PUSH=true."""
    calls = [f"examples/ci/steps.sh {stage}" for stage in STAGES]
    github = yaml.safe_load((CI / "github-actions.yml").read_text())
    (job,) = github["jobs"].values()
    assert [s["run"] for s in job["steps"] if "uses" not in s] == calls
    assert [s["uses"].split("@")[0] for s in job["steps"] if "uses" in s] == ["actions/checkout"]
    assert "github.ref_name == github.event.repository.default_branch" in job["env"]["PUSH"]
    gitlab = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    (job,) = gitlab.values()
    assert job["script"] == calls and not {"before_script", "after_script"} & set(job)
    assert job["variables"]["PUSH"] == "false"
    assert job["rules"][0] == {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", "variables": {"PUSH": "true"}}
    assert all("variables" not in rule for rule in job["rules"][1:])
