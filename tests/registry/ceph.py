"""A one-node Ceph cluster on loopback for the S3 tests: one monitor, one memstore OSD and a RADOS Gateway (beast).

Debian's Ceph 16.2 packages (ceph-mon, ceph-osd, radosgw, ceph-common), everything under one directory, no cephx.
Start-up is about 2 s: the monitor proposes every 0.05 s and the RGW pools exist before radosgw starts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from regkit import free_port, tool

# The pools radosgw would otherwise create one by one at start-up, each a monitor round trip.
RGW_POOLS = (".rgw.root", "default.rgw.log", "default.rgw.control", "default.rgw.meta",
             "default.rgw.buckets.index", "default.rgw.buckets.data", "default.rgw.buckets.non-ec")

# python3-rados is built for Debian's interpreter, not for whatever python3 runs the tests.
_CREATE_POOLS = """
import sys, rados
cluster = rados.Rados(conffile=sys.argv[1])
cluster.connect(timeout=30)
for pool in sys.argv[2:]:
    if not cluster.pool_exists(pool):
        cluster.create_pool(pool)
cluster.shutdown()
"""

CONF = """[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# Without cephx, clients (radosgw) never join the monitor in the default secure mode.
ms_mon_client_mode = crc
ms_bind_msgr1 = false
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
run_dir = {dir}/run
admin_socket = {dir}/run/$name.asok
log_file = {dir}/log/$name.log
pid_file = {dir}/run/$name.pid
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
paxos_propose_interval = 0.05
mon_data_avail_crit = 0
mon_data_avail_warn = 0

[mon.a]
mon_data = {dir}/mon

[osd.0]
osd_objectstore = memstore
osd_data = {dir}/osd
memstore_device_bytes = {memstore_bytes}

[client.rgw]
# tcp_nodelay: beast writes an answer's head and body apart, and with Nagle on the body waits for the client's
# delayed ACK: 40 ms on most S3 calls, five times the registry's request time.
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw_data = {dir}/rgw
rgw_dns_name = 127.0.0.1
# Deleted objects' space comes back within seconds, so memstore does not grow through a test run.
rgw_gc_obj_min_wait = 2
rgw_gc_processor_period = 2
rgw_gc_processor_max_time = 2
"""


class CephError(Exception):
    """The cluster did not come up; the message carries the failing step and its log's tail."""


@dataclass
class Ceph:
    """A one-node cluster under `dir`: start(), then S3 at `endpoint` with `access_key`/`secret_key`; stop()."""

    dir: Path
    mon_port: int = field(default_factory=free_port)
    rgw_port: int = field(default_factory=free_port)
    access_key: str = "DOCKYARDTESTKEY"
    secret_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    # The OSD's room, held in memory as used; when full, Ceph blocks every write (radosgw then answers nothing).
    memstore_bytes: int = 2 << 30

    @property
    def conf(self) -> str:
        return str(self.dir / "ceph.conf")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rgw_port}"

    def start(self) -> Ceph:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for name in ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin"):
            tool(name)  # fails naming what scripts/install.sh should have installed
        for sub in ("run", "log", "mon", "osd", "rgw"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        Path(self.conf).write_text(CONF.format(fsid=fsid, mon_port=self.mon_port, rgw_port=self.rgw_port,
                                               dir=self.dir, memstore_bytes=self.memstore_bytes))
        monmap = str(self.dir / "monmap")
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]",
                  monmap)
        self._run("ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap)
        self._daemon("mon.a", "ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        self._run("ceph", "-c", self.conf, "--connect-timeout", "30", "osd", "new", osd_uuid, "0")
        self._run("ceph-osd", "-c", self.conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("osd.0", "ceph-osd", "-i", "0")
        self._run("/usr/bin/python3", "-c", _CREATE_POOLS, self.conf, *RGW_POOLS)
        self._daemon("client.rgw", "radosgw", "-n", "client.rgw")
        self._run("radosgw-admin", "-c", self.conf, "user", "create", "--uid", "dockyard", "--display-name",
                  "dockyard", "--access-key", self.access_key, "--secret-key", self.secret_key)
        self._wait_for_s3()

    def _run(self, *argv: str) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if result.returncode:
            raise CephError(f"{' '.join(argv[:3])} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
                            f"\n{self.log_tail()}")

    def _daemon(self, name: str, *argv: str) -> None:
        log = open(self.dir / "log" / f"{name}.out", "wb")  # noqa: SIM115 - the child keeps it
        with log:
            self.procs[name] = subprocess.Popen([argv[0], "-f", "-c", self.conf, *argv[1:]], stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_for_s3(self) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise CephError(f"{name} exited with {proc.returncode}\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # an S3 error answer is an answer
            except OSError:
                time.sleep(0.1)
        raise CephError(f"radosgw did not answer at {self.endpoint} within 60 s\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every daemon's log, for a failure message."""
        out = []
        for log in sorted((self.dir / "log").glob("*")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        """Kill the daemons (radosgw first) and remove the cluster's directory."""
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                # SIGKILL: memstore keeps nothing worth a clean shutdown, and a SIGTERMed OSD takes seconds.
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
