"""Fixtures for the registry server tests: a server per test or per module."""

from __future__ import annotations

import shutil

import pytest

from pathlib import Path

from regkit import LONG, Server, free_port, htpasswd_file


@pytest.fixture
def make_server(tmp_path):
    """Start servers with extra flags: make_server('--read-only', root=...)."""
    started: list[Server] = []

    def _make(*args: str, root: Path | None = None, scheme: str = "http", verify: str | bool = False,
              port: int | None = None) -> Server:
        server = Server(root or tmp_path / "root", port or free_port(), list(args), scheme, verify=verify)
        started.append(server)
        return server.start()

    yield _make
    for s in started:
        s.stop()
    for s in started:
        s.assert_clean_log()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One plain registry shared by a module's tests (deletes enabled)."""
    s = Server(tmp_path_factory.mktemp("registry") / "root", free_port(), ["--enable-delete", "--workers", "2"])
    s.start()
    yield s
    s.stop()
    s.assert_clean_log()
    shutil.rmtree(s.root.parent)  # what the module pushed (and its log, checked): kept only while its tests run


@pytest.fixture
def htpasswd(tmp_path):
    """Users alice, bob, carol (password <name>-pw) and lena, whose password is LONG."""
    return htpasswd_file(tmp_path / "htpasswd", {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw",
                                                 "lena": LONG})


@pytest.fixture
def access_config(tmp_path):
    """alice may do anything and read /metrics, bob and lena only pull, carol pull and push to team/* only."""
    path = tmp_path / "registry.toml"
    path.write_text('[auth]\nmetrics = ["alice"]\n[auth.access]\nalice = ["pull", "push", "delete"]\n'
                    'bob = ["pull"]\nlena = ["pull"]\n[auth.access.carol]\n"team/*" = ["pull", "push"]\n')
    return path


@pytest.fixture(scope="module")
def ceph(tmp_path_factory):
    """A one-node Ceph cluster with a RADOS Gateway on loopback, for one module's tests; its S3 bucket "dockyard".

    Per module, not per run: its daemons are this process's children, and later tests (tests/runner's) check that
    they leave none; a start costs about a second."""
    import boto3
    from botocore.config import Config

    from ceph import Ceph

    cluster = Ceph(tmp_path_factory.mktemp("ceph")).start()  # fails with the daemons' log tails
    try:
        client = boto3.client("s3", endpoint_url=cluster.endpoint, region_name="us-east-1",
                              aws_access_key_id=cluster.access_key, aws_secret_access_key=cluster.secret_key,
                              config=Config(s3={"addressing_style": "path"}))
        client.create_bucket(Bucket="dockyard")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def s3_params(ceph, tmp_path, request):
    """distribution's storage.s3 settings for the test's own prefix in the Ceph bucket (removed after the test)."""
    from registry.storage import open_driver

    params = {"bucket": "dockyard", "region": "us-east-1", "regionendpoint": ceph.endpoint,
              "accesskey": ceph.access_key, "secretkey": ceph.secret_key, "secure": False, "forcepathstyle": True,
              "rootdirectory": f"/tests/{request.node.name.replace('/', '_')}-{tmp_path.name}",
              "lockdirectory": str(tmp_path / "s3-locks")}
    yield params
    open_driver("s3", params).delete("")
