"""Fixtures for the registry server tests: a server per test or per module, on the filesystem or on S3.

A module marked `pytestmark = pytest.mark.drivers("fs", "s3")` runs each of its tests that start servers through
`server` or `make_server` once per storage driver (ids `fs`, `s3`); S3 is a Ceph cluster per module (see `ceph`).
Every test on Ceph carries the `s3` marker, so `-m "not s3"` leaves them out (scripts/test.sh runs them once).
On both: test_api, test_clients, test_gc, test_robustness (their subject is what is stored). On the filesystem only:
test_server_ops (a full disk, the local control socket), test_slow_clients (connection handling; reads a session's
file), test_security, test_hardening and test_fuzz_api (auth, TLS, config and request parsing, not storage);
test_storage_driver and test_s3 choose their drivers themselves."""

from __future__ import annotations

import shutil

import pytest

from pathlib import Path

from regkit import LONG, Server, background_loops, free_port, htpasswd_file  # noqa: F401 (an autouse fixture)

BUCKET = "dockyard"


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("drivers")
    if marker is not None and "storage_driver" in metafunc.fixturenames:
        metafunc.parametrize("storage_driver", [pytest.param(d, marks=[pytest.mark.s3] if d == "s3" else [])
                                                for d in marker.args], indirect=True, scope="module")


@pytest.fixture(scope="module")
def storage_driver(request) -> str:
    """The storage driver of the servers `server` and `make_server` start: "fs" unless the module asks for more."""
    return getattr(request, "param", "fs")


def ceph_settings(ceph, rootdirectory: str) -> dict:
    """distribution's storage.s3 settings for a key prefix in the Ceph cluster's bucket."""
    return {"bucket": BUCKET, "region": "us-east-1", "regionendpoint": ceph.endpoint, "accesskey": ceph.access_key,
            "secretkey": ceph.secret_key, "secure": False, "forcepathstyle": True, "rootdirectory": rootdirectory}


def _remove_prefix(ceph, rootdirectory: str) -> None:
    from registry.storage import open_driver

    open_driver("s3", ceph_settings(ceph, rootdirectory)).delete("")


@pytest.fixture
def make_server(tmp_path, storage_driver, request):
    """Start servers with extra flags: make_server('--read-only', root=...); on S3 each root names its own prefix
    (a restart on the same root finds the same content)."""
    started: list[Server] = []
    ceph = request.getfixturevalue("ceph") if storage_driver == "s3" else None
    prefix = f"/tests/{tmp_path.name}"

    def _make(*args: str, root: Path | None = None, scheme: str = "http", verify: str | bool = False,
              port: int | None = None) -> Server:
        root = root or tmp_path / "root"
        s3 = ceph_settings(ceph, f"{prefix}/{root.name}") if ceph else None
        server = Server(root, port or free_port(), list(args), scheme, verify=verify, s3=s3)
        started.append(server)
        return server.start()

    yield _make
    for s in started:
        s.stop()
    if ceph:
        _remove_prefix(ceph, prefix)
    for s in started:
        s.assert_clean_log()


@pytest.fixture(scope="module")
def server(tmp_path_factory, storage_driver, request):
    """One plain registry shared by a module's tests (deletes enabled)."""
    base = tmp_path_factory.mktemp("registry")
    ceph = request.getfixturevalue("ceph") if storage_driver == "s3" else None
    s3 = ceph_settings(ceph, f"/tests/{base.name}") if ceph else None
    s = Server(base / "root", free_port(), ["--enable-delete", "--workers", "2"], s3=s3)
    s.start()
    yield s
    s.stop()
    if ceph:
        _remove_prefix(ceph, f"/tests/{base.name}")
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
        client.create_bucket(Bucket=BUCKET)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def s3_params(ceph, tmp_path, request):
    """distribution's storage.s3 settings for the test's own prefix in the Ceph bucket (removed after the test)."""
    from registry.storage import open_driver

    params = {**ceph_settings(ceph, f"/tests/{request.node.name.replace('/', '_')}-{tmp_path.name}"),
              "lockdirectory": str(tmp_path / "s3-locks")}
    yield params
    open_driver("s3", params).delete("")
