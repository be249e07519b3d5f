"""`cp` into a container where DEST cannot be: docker's errors, exit 1, nothing written; running or stopped."""

from __future__ import annotations

import tarfile

from support import wait_for


def test_cp_into_missing_directories_fails_as_docker(ctr, tmp_path):
    ctr("run", "-d", "--name", "box", "--network", "none", "busybox", "sh", "-c",
        "ln -s /missing/dir/file /dangling; ln -s /tmp/made /tolink; touch /ready; exec sleep 60")
    wait_for(lambda: ctr("exec", "box", "test", "-e", "/ready", check=False).code == 0)
    src = tmp_path / "f"
    src.write_text("payload\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "inner").write_text("inner\n")
    for state in ("running", "stopped"):
        out = tmp_path / state
        out.mkdir()
        for dest, missing in (("/missing/dir/file", "/missing/dir"), ("/dangling", "/missing/dir")):
            r = ctr("cp", str(src), f"box:{dest}", check=False)
            assert (r.code, r.err) == (1, f"Error: Could not find the file {missing} in container box\n")
        r = ctr("cp", str(src), "box:/tmp/nodir/", check=False)
        assert (r.code, r.err) == (1, "Error: no such directory: box:/tmp/nodir/\n")
        r = ctr("cp", "box:/nothere", str(out), check=False)
        assert (r.code, r.err) == (1, "Error: Could not find the file /nothere in container box\n")
        # Nothing was written: the dangling link is still that link (copied out as it is), /missing still absent.
        ctr("cp", "box:/dangling", str(out / "link"))
        assert (out / "link").is_symlink() and (out / "link").readlink().as_posix() == "/missing/dir/file"
        assert ctr("cp", "box:/missing", str(out), check=False).code == 1
        # A symlink whose target's directory exists is followed, as docker does; "dir/." makes a new directory.
        ctr("cp", str(src), "box:/tolink")
        ctr("cp", f"{tree}/.", f"box:/tmp/{state}")
        ctr("cp", "box:/tmp", str(out / "tmp"))
        assert (out / "tmp" / "made").read_text() == "payload\n" and (out / "tolink").exists() is False
        assert (out / "tmp" / state / "inner").read_text() == "inner\n"
        ctr("stop", "-t", "0", "box")


def test_cp_and_export_of_a_stopped_container_leave_no_temporary_directory(ctr, tmp_path):
    # The copy child mounts the stopped container's overlay in its own mount namespace: on the container's own
    # mount point, never on a directory it would leave behind (it once made /tmp/ctr-root-* and never removed it).
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    ctr("create", "--name", "box", "--network", "none", "busybox", "true")
    src = tmp_path / "f"
    src.write_text("payload\n")
    ctr("cp", str(src), "box:/f", env=env)
    ctr("cp", "box:/f", str(tmp_path / "back"), env=env)
    assert (tmp_path / "back").read_text() == "payload\n"
    assert ctr("cp", str(src), "box:/missing/dir/f", check=False, env=env).code == 1
    assert ctr("cp", "box:/nothere", str(tmp_path), check=False, env=env).code == 1
    ctr("export", "box", "-o", str(tmp_path / "out.tar"), env=env)
    assert list(temp.iterdir()) == []


def test_export_and_cp_out_of_a_container_never_started(ctr, tmp_path):
    # Nothing has written to it yet, so it has no upper dir: the image's files alone are its filesystem.
    ctr("create", "--name", "fresh", "--network", "none", "busybox", "true")
    ctr("export", "fresh", "-o", str(tmp_path / "out.tar"))
    with tarfile.open(tmp_path / "out.tar") as tf:
        assert "bin/busybox" in tf.getnames()
    ctr("cp", "fresh:/bin/busybox", str(tmp_path / "busybox"))
    assert (tmp_path / "busybox").stat().st_size > 0
