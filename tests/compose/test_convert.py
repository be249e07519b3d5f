"""A service of the canonical model as containers.create arguments (no containers: the mapping alone)."""

from __future__ import annotations

import os

import pytest
from composekit import make_project

from compose.convert import Target, create_args
from compose.errors import ComposeError


def target(tmp_path, **kw) -> Target:
    return Target(name="proj-web-1", labels={"com.docker.compose.project": "proj"},
                  container_of=lambda s: f"proj-{s}-1", secrets_dir=str(tmp_path / "secrets"), **kw)


def test_every_key_maps(tmp_path):
    (tmp_path / "s.txt").write_text("s3cret")
    web = {
        "image": "busybox", "command": ["httpd", "-f"], "entrypoint": [], "environment": {"A": "1", "UNSET": None},
        "ports": [{"target": 80, "published": "8080", "host_ip": "127.0.0.1", "protocol": "tcp"},
                  {"target": 53, "protocol": "udp"}],
        "volumes": [{"type": "bind", "source": str(tmp_path / "made"), "target": "/data",
                     "bind": {"create_host_path": True}},
                    {"type": "volume", "source": "db", "target": "/db", "read_only": True},
                    {"type": "volume", "target": "/anon"}, {"type": "tmpfs", "target": "/t", "tmpfs": {"size": 1024}}],
        "tmpfs": ["/run:size=64k"], "user": "1:1", "working_dir": "/w", "labels": {"x": "y"}, "init": True,
        "stop_signal": "SIGINT", "stop_grace_period": "1m30s", "cap_add": ["NET_ADMIN"], "cap_drop": ["MKNOD"],
        "read_only": True, "privileged": False, "restart": "on-failure:3", "hostname": "h",
        "healthcheck": {"test": ["CMD", "true"], "interval": "2s", "retries": 3},
        "deploy": {"resources": {"limits": {"memory": 64 << 20, "cpus": 0.5, "pids": 50}}},
        "secrets": [{"source": "tok"}], "configs": [{"source": "conf", "target": "/etc/app.conf"}],
        "dns": ["10.0.0.2"], "extra_hosts": ["gw:10.0.0.1"], "links": ["db:database"],
        "networks": {"front": {"aliases": ["www"], "ipv4_address": "10.9.0.5"}, "back": {"priority": 10}},
    }
    project = make_project(tmp_path, {"web": web, "db": {"image": "busybox"}},
                           networks={"front": {"name": "proj_front"}, "back": {"name": "custom_back"}},
                           volumes={"db": {"name": "proj_db"}}, secrets={"tok": {"file": str(tmp_path / "s.txt")}},
                           configs={"conf": {"content": "k=v\n"}})
    args = create_args(project, "web", target(tmp_path))
    assert args["image"] == "busybox" and args["command"] == ["httpd", "-f"] and args["entrypoint"] == []
    assert args["environment"] == {"A": "1"}
    assert args["ports"] == {"80/tcp": [("127.0.0.1", "8080")], "53/udp": [None]}
    assert os.path.isdir(tmp_path / "made")  # a short-syntax bind source is created, as docker compose does
    conf = tmp_path / "secrets" / "configs" / "conf"
    assert args["mounts"] == [f"type=bind,target=/data,source={tmp_path / 'made'}",
                              "type=volume,target=/db,source=proj_db,readonly", "type=volume,target=/anon",
                              "type=tmpfs,target=/t,tmpfs-size=1024",
                              f"type=bind,source={tmp_path / 's.txt'},target=/run/secrets/tok,readonly",
                              f"type=bind,source={conf},target=/etc/app.conf,readonly"]
    assert conf.read_text() == "k=v\n"
    assert args["tmpfs"] == {"/run": "size=64k"}
    assert args["stop_timeout"] == 90.0 and args["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert args["healthcheck"] == {"test": ["CMD", "true"], "interval": 2 * 10**9, "retries": 3}
    assert (args["mem_limit"], args["nano_cpus"], args["pids_limit"]) == (64 << 20, 5 * 10**8, 50)
    assert args["links"] == ["proj-db-1:database"] and args["extra_hosts"] == ["gw:10.0.0.1"]
    # The highest priority network first; every network gets the service name and its own aliases.
    assert args["network"] == "custom_back"
    assert args["networking_config"] == {"custom_back": {"Aliases": ["web"]}, "proj_front": {
        "Aliases": ["web", "www"], "IPAMConfig": {"IPv4Address": "10.9.0.5"}}}
    assert args["labels"] == {"x": "y", "com.docker.compose.project": "proj"}


def test_network_mode_service_points_at_its_container(tmp_path):
    project = make_project(tmp_path, {"web": {"image": "busybox", "network_mode": "service:db"},
                                      "db": {"image": "busybox"}})
    assert create_args(project, "web", target(tmp_path))["network_mode"] == "container:proj-db-1"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("sysctls", {"a": "1"}, r"services\.web\.sysctls: not supported"),
    ("restart", "sometimes", r"services\.web\.restart: invalid restart policy 'sometimes'"),
    ("secrets", [{"source": "../../etc/passwd"}], r"services\.web\.secrets\[0\]: invalid secret name"),
])
def test_refusals_name_the_key(tmp_path, key, value, message):
    project = make_project(tmp_path, {"web": {"image": "busybox", key: value}})
    with pytest.raises(ComposeError, match=message):
        create_args(project, "web", target(tmp_path))


def test_a_content_secret_never_leaves_its_directory(tmp_path):
    """A secret key that is a path is refused; nothing is written outside the secrets dir."""
    project = make_project(tmp_path, {"web": {"image": "busybox", "secrets": [{"source": "../escape"}]}},
                           secrets={"../escape": {"content": "x"}})
    with pytest.raises(ComposeError, match="invalid secret name"):
        create_args(project, "web", target(tmp_path))
    assert not (tmp_path / "escape").exists()
