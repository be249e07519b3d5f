"""Three registry replicas on one S3 bucket (Ceph) behind HAProxy (examples/deploy/haproxy.cfg), sharing their locks
in a real redis-server: chunked uploads across replicas, shared tokens, GC during pushes, a replica killed
mid-push; and the Redis lock itself, held and killed in other processes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from lb import HAPROXY_CFG, HAProxy, Redis
from registry.gc import CLOCK_SLACK
from registry.storage import open_driver
from registry.storage.locks import LockLost, RedisLocks, RedisSettings
from regkit import Server, free_port, htpasswd_file, layer_tar, make_image, sha256
from support import REPO, run_cli, tool

GRACE = 5  # GC's, in the test during pushes: far longer than one push of a small image takes
LEASE = 3  # the replicas' lock lease: how long a killed replica's upload lock outlives it
USER = ("alice", "alice-pw")
SPACE = "s3:test/"  # the lock tests' storage name


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = Redis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@dataclass
class Cluster:
    """Three replicas, their config, HAProxy in front; a session per test thread goes through the LB."""

    dir: Path
    config: Path
    replicas: list[Server]
    lb: HAProxy
    s3_params: dict
    garbage: list[str] = field(default_factory=list)
    garbage_made: float = 0.0

    def token(self, repo: str, base: str | None = None) -> dict:
        """A Bearer header for pull and push on `repo`, issued by `base` (default: through the LB)."""
        r = requests.get(f"{base or self.lb.url}/token", auth=USER,
                         params={"service": "dockyard-registry", "scope": f"repository:{repo}:pull,push"})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def session(self, repo: str) -> requests.Session:
        s = requests.Session()
        s.headers.update(self.token(repo))
        return s

    def served(self, needle: str) -> dict[int, list[str]]:
        """Per replica, the methods of its access-log lines whose path contains `needle`."""
        out = {}
        for i, _server in enumerate(self.replicas):
            lines = [json.loads(line) for line in (self.dir / f"access-{i}.log").read_text().splitlines()]
            out[i] = [e["method"] for e in lines if needle in e["path"]]
        return out


@pytest.fixture(scope="module")
def cluster(ceph, redis_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("replicas")
    s3_params = {"bucket": "dockyard", "region": "us-east-1", "regionendpoint": ceph.endpoint,
                 "accesskey": ceph.access_key, "secretkey": ceph.secret_key, "secure": False,
                 "forcepathstyle": True, "rootdirectory": f"/replicas-{uuid.uuid4().hex[:8]}",
                 "chunksize": 5 << 20}
    htpasswd = htpasswd_file(base / "htpasswd", dict([USER]))
    key = base / "token-key.pem"
    subprocess.run([tool("openssl"), "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
                   check=True)
    config = base / "registry.toml"
    config.write_text("\n".join([
        "[storage.s3]", *(f"{k} = {json.dumps(v)}" for k, v in s3_params.items()),
        "[redis]", f'addr = "{redis_server.addr}"', f"lease = {LEASE}",
        "[auth]", f'htpasswd = "{htpasswd}"',
        "[auth.token]", "enabled = true", f'key = "{key}"']) + "\n")
    replicas = []
    lb = None
    try:
        for i in range(3):
            replicas.append(Server(base / f"root-{i}", free_port(),
                                   ["--config", str(config), "--workers", "1", "--access-log",
                                    str(base / f"access-{i}.log")],
                                   entry=("dockyard", "registry", "serve")).start())
        lb = HAProxy(base / "haproxy", [s.host for s in replicas]).start()
        c = Cluster(base, config, replicas, lb, s3_params)
        # Unreferenced blobs for the GC test, made first so they are past its grace period by then.
        s = c.session("gc/garbage")
        for _ in range(3):
            blob = os.urandom(1000)
            r = s.post(f"{lb.url}/v2/gc/garbage/blobs/uploads/", params={"digest": sha256(blob)}, data=blob)
            assert r.status_code == 201, r.text
            c.garbage.append(sha256(blob))
        c.garbage_made = time.time()
        yield c
    finally:
        if lb is not None:
            lb.stop()
        for server in replicas:
            server.stop()
        open_driver("s3", s3_params).delete("")
    for server in replicas:
        server.assert_clean_log()


def _push_image(s: requests.Session, url: str, repo: str, tag: str, layers: list[bytes]) -> bytes:
    """Push an image (monolithic blob uploads, then the manifest by tag); its manifest once acknowledged."""
    image = make_image(layers)
    for blob in [image.config, *image.layers]:
        r = s.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob)
        assert r.status_code == 201, r.text
    r = s.put(f"{url}/v2/{repo}/manifests/{tag}", data=image.manifest, headers={"Content-Type": image.media_type})
    assert r.status_code == 201, r.text
    return image.manifest


def _assert_pullable(s: requests.Session, url: str, repo: str, tag: str, manifest: bytes) -> None:
    """The tag still gives these manifest bytes, and every blob it names is there with its digest."""
    r = s.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200 and r.content == manifest, (repo, tag, r.status_code)
    doc = json.loads(manifest)
    for desc in [doc["config"], *doc["layers"]]:
        r = s.get(f"{url}/v2/{repo}/blobs/{desc['digest']}")
        assert r.status_code == 200 and sha256(r.content) == desc["digest"], (repo, tag, desc["digest"])


@pytest.mark.s3
def test_chunked_upload_across_replicas(cluster):
    """One client on one kept-alive connection: HAProxy spreads its PATCHes over the replicas, and the upload
    (S3 parts and the tail below the part minimum carried from replica to replica) completes and verifies."""
    url, s = cluster.lb.url, cluster.session("spread/blob")
    blob = os.urandom(14 << 20)
    r = s.post(f"{url}/v2/spread/blob/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    upload_id = location.rstrip("/").rsplit("/", 1)[1]
    chunk = 2 << 20
    for start in range(0, len(blob), chunk):
        part = blob[start:start + chunk]
        r = s.patch(url + location, data=part, headers={"Content-Range": f"{start}-{start + len(part) - 1}"})
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
    r = s.put(url + location, params={"digest": sha256(blob)})
    assert r.status_code == 201, r.text
    served = cluster.served(upload_id)
    assert sum(len(m) for m in served.values()) == 7 + 1  # the PATCHes and the PUT name the upload
    # Round robin, no stickiness: every replica took part of this one upload.
    assert all(methods for methods in served.values()), served
    assert sum(m.count("PATCH") > 0 for m in served.values()) >= 2, served
    r = s.get(f"{url}/v2/spread/blob/blobs/{sha256(blob)}")
    assert r.status_code == 200 and r.content == blob


@pytest.mark.s3
def test_a_token_from_one_replica_is_accepted_by_all(cluster):
    first, others = cluster.replicas[0], cluster.replicas[1:]
    headers = cluster.token("tok/app", base=first.url)
    for server in [*others, first]:
        blob = os.urandom(64)
        r = requests.post(f"{server.url}/v2/tok/app/blobs/uploads/", params={"digest": sha256(blob)}, data=blob,
                          headers=headers)
        assert r.status_code == 201, (server.port, r.text)
        assert requests.head(f"{server.url}/v2/tok/app/blobs/{sha256(blob)}", headers=headers).status_code == 200
    # Signed with any other key, the same claims are refused everywhere: the replicas do check signatures.
    from cryptography.hazmat.primitives.asymmetric import ec

    from registry.auth.token import Scope, TokenService
    forged, _, _ = TokenService(ec.generate_private_key(ec.SECP256R1()), "dockyard-registry", "dockyard-registry",
                                300).issue("alice", [Scope("repository", "tok/app", ("pull", "push"))])
    for server in cluster.replicas:
        r = requests.get(f"{server.url}/v2/tok/app/tags/list", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401


@pytest.mark.s3
def test_gc_during_pushes_through_the_lb_loses_nothing(cluster):
    """`registry gc --config` runs (again and again) while eight clients push through the LB: what was garbage
    before goes, every acknowledged image stays whole."""
    url = cluster.lb.url
    time.sleep(max(0.0, cluster.garbage_made + GRACE + CLOCK_SLACK + 1.5 - time.time()))
    base_layer = layer_tar({"base": os.urandom(3000)})  # in every image: its blob is touched by every push
    pushed: list[tuple[str, str, bytes]] = []
    errors: list[BaseException] = []
    gc_runs: list[tuple[float, float, str]] = []  # started, ended, what it said
    pushing = threading.Event()

    def pusher(n: int) -> None:
        repo = f"gc/app{n}"
        try:
            s = cluster.session(repo)
            for i in range(2):
                layers = [base_layer, layer_tar({f"f{n}-{i}": os.urandom(2000)})]
                pushed.append((repo, f"v{i}", _push_image(s, url, repo, f"v{i}", layers)))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    def collector() -> None:
        while pushing.is_set() or not gc_runs:
            started = time.monotonic()
            p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", "--config", str(cluster.config),
                                "--root", str(cluster.dir / "gc-state"), "--grace", str(GRACE)],
                               capture_output=True, text=True, cwd=REPO, timeout=120)
            gc_runs.append((started, time.monotonic(), p.stdout if p.returncode == 0 else f"failed: {p.stderr}"))

    pushing.set()
    gc = threading.Thread(target=collector)
    gc.start()
    threads = [threading.Thread(target=pusher, args=(n,)) for n in range(8)]
    pushes_started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pushes_ended = time.monotonic()
    pushing.clear()
    gc.join()
    assert not errors, errors[0]
    assert len(pushed) == 16
    assert all(not out.startswith("failed") for _, _, out in gc_runs), gc_runs
    assert any(started < pushes_ended and ended > pushes_started for started, ended, _ in gc_runs), gc_runs
    removed = sum(int(out.split("removed ")[1].split(" blobs")[0]) for _, _, out in gc_runs)
    assert removed >= len(cluster.garbage), gc_runs
    s = cluster.session("gc/garbage")
    for digest in cluster.garbage:
        assert s.head(f"{url}/v2/gc/garbage/blobs/{digest}").status_code == 404

    def check_repo(repo: str) -> None:
        s = cluster.session(repo)
        for name, tag, manifest in pushed:
            if name == repo:
                _assert_pullable(s, url, repo, tag, manifest)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check_repo, {repo for repo, _, _ in pushed}))


def _busy_replica(cluster: Cluster) -> int:
    """The replica HAProxy has a request in flight at: the one streaming a PATCH (HAProxy's idle kept-alive
    connections to the others, and its health checks, are no requests)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = cluster.lb.stats()
        busy = [i for i in range(len(cluster.replicas)) if stats.get(f"replica{i + 1}", {}).get("scur", "0") != "0"]
        if len(busy) == 1:
            return busy[0]
        time.sleep(0.05)
    raise AssertionError(f"no replica is serving the upload: {cluster.lb.stats()}")


@pytest.mark.s3
def test_kill_9_of_a_replica_mid_push(cluster):
    """A replica dies (SIGKILL) while it streams a PATCH of a big chunked upload: the client's PATCH fails, HAProxy's
    health checks take the replica out, and the client resumes the same upload through the others (the dead
    replica's upload lock ends with its lease), the digest verifying; every image acknowledged before is whole."""
    url = cluster.lb.url
    s = cluster.session("kill/app")
    acknowledged = [("kill/app", f"v{i}", _push_image(s, url, "kill/app", f"v{i}",
                                                     [layer_tar({"x": os.urandom(5000)})])) for i in range(3)]
    blob = os.urandom(24 << 20)
    r = s.post(f"{url}/v2/kill/app/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    # With 5 MiB parts: after two chunks, two parts and a 2 MiB tail; halfway through the third, a third part.
    chunk = 6 << 20
    for start in (0, chunk):  # two chunks acknowledged
        r = s.patch(url + location, data=blob[start:start + chunk],
                    headers={"Content-Range": f"{start}-{start + chunk - 1}"})
        assert r.status_code == 202, r.text
        location = r.headers["Location"]

    halfway, resume = threading.Event(), threading.Event()
    outcome: list[object] = []

    def body():
        piece = 1 << 20
        for offset in range(2 * chunk, 3 * chunk, piece):
            if offset == 2 * chunk + chunk // 2:
                halfway.set()
                resume.wait(30)
            yield blob[offset:offset + piece]

    def third_patch() -> None:
        try:
            outcome.append(requests.patch(url + location, data=body(), headers={
                **s.headers, "Content-Range": f"{2 * chunk}-{3 * chunk - 1}"}, timeout=60).status_code)
        except requests.RequestException as e:
            outcome.append(e)

    t = threading.Thread(target=third_patch)
    t.start()
    try:
        assert halfway.wait(30)
        victim = cluster.replicas[_busy_replica(cluster)]
        # Killed once the third part is in: the tail object it began with is stale, and must not count again.
        data = f"uploads/{location.split('?')[0].rstrip('/').rsplit('/', 1)[1]}/data"
        driver = open_driver("s3", cluster.s3_params)
        deadline = time.monotonic() + 10
        while driver.stat(data).size != 2 * chunk + chunk // 2:
            assert time.monotonic() < deadline, driver.stat(data)
            time.sleep(0.05)
        victim.stop(signal.SIGKILL)
    finally:
        resume.set()
        t.join()
    # HAProxy answers for the dead replica (502), or the connection breaks: either way nothing was acknowledged.
    assert outcome and outcome[0] != 202, outcome
    deadline = time.monotonic() + 10
    name = f"replica{cluster.replicas.index(victim) + 1}"
    while cluster.lb.states().get(name) != "DOWN":
        assert time.monotonic() < deadline, cluster.lb.states()
        time.sleep(0.05)

    # The client resumes from where the storage says the upload is (parts of the broken PATCH may have landed).
    r = s.get(url + location)
    assert r.status_code == 204, r.text
    size = int(r.headers["Range"].split("-")[1]) + 1
    assert size == 2 * chunk + chunk // 2
    started = time.monotonic()
    r = s.patch(url + r.headers["Location"], data=blob[size:],
                headers={"Content-Range": f"{size}-{len(blob) - 1}"})
    assert r.status_code == 202, r.text
    assert time.monotonic() - started < LEASE + 5  # waited at most for the dead replica's lease
    r = s.put(url + r.headers["Location"], params={"digest": sha256(blob)})
    assert r.status_code == 201, r.text
    r = s.get(f"{url}/v2/kill/app/blobs/{sha256(blob)}")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha256(blob).split(":")[1]
    for repo, tag, manifest in acknowledged:
        _assert_pullable(s, url, repo, tag, manifest)
    # Back in service for whatever runs after (HAProxy's checks bring it in again).
    victim.start()
    deadline = time.monotonic() + 10
    while cluster.lb.states().get(name) != "UP":
        assert time.monotonic() < deadline, cluster.lb.states()
        time.sleep(0.05)


def test_the_deploy_files_check(tmp_path):
    """The HAProxy config the cluster above runs (lb.HAPROXY_CFG) is examples/deploy's, valid with the cluster's
    settings and with its defaults; its registry config loads (as compose.yaml runs it) and its compose file
    parses."""
    from registry.config import build

    deploy = REPO / "examples" / "deploy"
    assert deploy / "haproxy.cfg" == HAPROXY_CFG
    for env in (HAProxy(tmp_path, ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]).env(), {}):
        p = subprocess.run([tool("haproxy"), "-c", "-f", str(HAPROXY_CFG)], env={**os.environ, **env},
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
    config = build(str(deploy / "registry.toml"), projects=True)
    assert config.storage_driver == "s3" and config.redis_addr == "redis:6379" and config.token_key
    env = dict.fromkeys(("POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DOCKYARD_REGISTRY_ADMIN_PASSWORD"), "x")
    out = run_cli(str(tmp_path / "store"), "compose", "-f", str(deploy / "compose.yaml"), "config", env=env).out
    for service in ("registry1", "registry2", "registry3", "haproxy", "postgres", "redis"):
        assert f"\n  {service}:\n" in out, out


def test_chunked_upload_alternating_replicas_on_a_shared_filesystem(redis_server, tmp_path):
    """The filesystem driver too keeps an upload's state in the store: two replicas on one root (as over NFS),
    Redis locks, the PATCHes alternating between them and the PUT on the other."""
    config = tmp_path / "registry.toml"
    config.write_text(f'[redis]\naddr = "{redis_server.addr}"\n')
    replicas = [Server(tmp_path / "root", free_port(), ["--config", str(config), "--workers", "1"],
                       entry=("dockyard", "registry", "serve")) for _ in range(2)]
    try:
        for server in replicas:
            server.start()
        blob = os.urandom(5 << 20)
        r = requests.post(f"{replicas[0].url}/v2/fs/blob/blobs/uploads/")
        assert r.status_code == 202, r.text
        location, chunk = r.headers["Location"], 1 << 20
        for n, start in enumerate(range(0, len(blob), chunk)):
            r = requests.patch(replicas[n % 2].url + location, data=blob[start:start + chunk],
                               headers={"Content-Range": f"{start}-{start + chunk - 1}"})
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
        r = requests.put(replicas[1].url + location, params={"digest": sha256(blob)})
        assert r.status_code == 201, r.text
        for server in replicas:
            assert requests.get(f"{server.url}/v2/fs/blob/blobs/{sha256(blob)}").content == blob
        assert not list((tmp_path / "root" / "uploads").iterdir())  # no lock files either: the locks are in Redis
    finally:
        for server in replicas:
            server.stop()
    for server in replicas:
        server.assert_clean_log()


# -- the Redis lock, directly -----------------------------------------------------------------------------------
_HOLDER = """
import sys
from registry.storage.locks import LockLost, RedisLocks, RedisSettings
locks = RedisLocks(RedisSettings(sys.argv[1], lease=float(sys.argv[2])), sys.argv[3])
try:
    with locks.hold("gc.lock") as hold:
        print("held", flush=True)
        sys.stdin.readline()
        try:
            hold.check()
            print("still held", flush=True)
        except LockLost:
            print("lost", flush=True)
except LockLost:
    print("lost at release", flush=True)
"""


def _holder(redis_server: Redis, lease: float) -> subprocess.Popen:
    """Another process holding gc.lock exclusively until a line on its stdin."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, redis_server.addr, str(lease), SPACE], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_redis_lock_exclusive_holder_blocks_shared_lockers(redis_server):
    locks = RedisLocks(RedisSettings(redis_server.addr, lease=5), SPACE)
    holder = _holder(redis_server, 5)
    try:
        started = time.monotonic()
        with pytest.raises(BlockingIOError), locks.hold("gc.lock", shared=True, wait=False):
            pass
        # wait=False: one round trip, no waiting (a wait would last until the holder lets go, below; the lease it
        # renews is 5 s). The margin is wide since a loaded machine stretches a round trip.
        assert time.monotonic() - started < 4
        acquired = threading.Event()

        def shared_locker() -> None:
            with locks.hold("gc.lock", shared=True):
                acquired.set()

        t = threading.Thread(target=shared_locker)
        t.start()
        assert not acquired.wait(0.5)  # blocked while the other process holds it
        holder.communicate("go\n", timeout=10)
        assert holder.returncode == 0
        assert acquired.wait(5)
        t.join()
        # Shared holders share; an exclusive locker waits for both.
        with locks.hold("gc.lock", shared=True), locks.hold("gc.lock", shared=True):
            with pytest.raises(BlockingIOError):
                with locks.hold("gc.lock", wait=False):
                    pass
    finally:
        holder.kill()
        holder.wait()


def test_redis_lock_of_a_killed_holder_ends_with_its_lease(redis_server):
    lease = 1.0
    locks = RedisLocks(RedisSettings(redis_server.addr, lease=lease), SPACE)
    holder = _holder(redis_server, lease)
    time.sleep(lease * 1.5)  # renewed meanwhile: still held past one lease
    with pytest.raises(BlockingIOError), locks.hold("gc.lock", shared=True, wait=False):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    killed = time.monotonic()
    with locks.hold("gc.lock", shared=True):
        waited = time.monotonic() - killed
    assert waited < lease + 1


def test_redis_lock_holder_that_lost_its_lease_knows(redis_server):
    """A holder stalled past its lease (SIGSTOP) finds on waking that it no longer holds the lock."""
    lease = 1.0
    locks = RedisLocks(RedisSettings(redis_server.addr, lease=lease), SPACE)
    holder = _holder(redis_server, lease)
    try:
        holder.send_signal(signal.SIGSTOP)
        with locks.hold("gc.lock"):  # waits out the stalled holder's lease, then holds it
            pass
        holder.send_signal(signal.SIGCONT)
        out, _ = holder.communicate("go\n", timeout=10)
        assert out == "lost\nlost at release\n"
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(LockLost):  # a release that finds its token gone says so (the block itself finished)
        with locks.hold("gc.lock"):
            locks.client.delete(locks.prefix + "{gc.lock}:w")  # as a lease that ended, or a Redis that lost it


def test_filesystem_driver_with_redis_locks(redis_server, tmp_path):
    """A filesystem store shared by hosts (NFS) takes Redis locks: no lock files in the store, and a lock in a
    removed directory still fails as the driver contract says."""
    driver = open_driver("filesystem", {"rootdirectory": str(tmp_path / "store"),
                                        "redis": RedisSettings(redis_server.addr, lease=5)})
    driver.mkdir("uploads/abc")
    with driver.lock("uploads/abc/lock"), pytest.raises(BlockingIOError):
        with driver.lock("uploads/abc/lock", wait=False):
            pass
    assert driver.list("uploads/abc") == []
    with pytest.raises(FileNotFoundError), driver.lock("uploads/gone/lock"):
        pass


def test_redis_config(tmp_path):
    """distribution's `redis` section in YAML and TOML; bad values are one line naming the setting."""
    from registry.config import ConfigError, build

    yml = tmp_path / "config.yml"
    yml.write_text("redis:\n  addr: 10.0.0.7:6379\n  password: pw\n  db: 2\n")
    _, params = build(str(yml), root=str(tmp_path)).storage()
    assert params["redis"] == RedisSettings("10.0.0.7:6379", "pw", 2, 15)
    for text, message in (('[redis]\naddr = "redis"\n', 'redis.addr: not HOST:PORT "redis"'),
                          ('[redis]\naddr = "r:1"\nlease = 0\n', "redis.lease: at least 1 second, got 0"),
                          ('[redis]\naddr = "r:1"\ndialtimeout = "1s"\n', "unknown setting 'redis.dialtimeout'"),
                          ('[redis]\naddr = "r:1"\n[auth.token]\nenabled = true\n[auth]\nanonymous = ["pull"]\n',
                           "auth.token.key must be set with [redis]")):
        (tmp_path / "c.toml").write_text(text)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            build(str(tmp_path / "c.toml"), root=str(tmp_path))
