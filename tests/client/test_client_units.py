"""The client's pure parts: challenge parsing, Retry-After, insecure-registry matching, credentials file, the
scheduling of parallel transfers."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from registry.client.auth import Credentials, load_credentials, parse_challenges, remove_credentials, save_credentials
from registry.client.config import ClientConfig
from registry.client.pull import Cancelled, run_transfers
from registry.client.transport import retry_after


def test_parse_challenges():
    [bearer] = parse_challenges('Bearer realm="https://auth.example/token",service="reg",'
                                'scope="repository:a/b:pull,push",error="insufficient_scope"')
    assert bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.example/token", "service": "reg",
                             "scope": "repository:a/b:pull,push", "error": "insufficient_scope"}
    basic, other = parse_challenges('Basic realm="Registry \\"Realm\\"", Bearer realm=https://t/x')
    assert (basic.scheme, basic.params) == ("basic", {"realm": 'Registry "Realm"'})
    assert (other.scheme, other.params) == ("bearer", {"realm": "https://t/x"})
    assert parse_challenges("") == []


def test_retry_after():
    assert retry_after("3") == 3.0
    assert retry_after("100000") == 120.0  # capped
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after("soon") is None and retry_after(None) is None


def test_insecure_matching(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"insecure-registries": ["http://reg.example:5000/", "10.1.0.0/16"],
                                "registry-mirrors": ["https://mirror.example/"]}))
    cfg = ClientConfig.load(str(path))
    assert cfg.registry_mirrors == ["https://mirror.example"]
    assert cfg.is_insecure("reg.example:5000")
    assert not cfg.is_insecure("reg.example:5001")
    assert cfg.is_insecure("10.1.2.3:443") and not cfg.is_insecure("10.2.0.1:443")
    assert cfg.is_insecure("127.0.0.1:5000") and cfg.is_insecure("127.9.9.9") and cfg.is_insecure("[::1]:5000")
    assert cfg.is_insecure("localhost:5000")  # resolves to loopback
    assert not ClientConfig.load(str(tmp_path / "missing.json")).is_insecure("192.0.2.1:5000")


def test_credentials_file_is_docker_compatible(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({
        "auths": {"https://old.example/v1/": {"auth": base64.b64encode(b"bob:pw:with:colons").decode()}},
        "credsStore": "", "psFormat": "keep me"}))
    assert load_credentials("old.example") == Credentials("bob", "pw:with:colons")
    save_credentials("new.example:5000", Credentials("alice", "s3cret"))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["psFormat"] == "keep me"
    assert base64.b64decode(saved["auths"]["new.example:5000"]["auth"]) == b"alice:s3cret"
    assert "s3cret" not in repr(load_credentials("new.example:5000"))
    assert remove_credentials("new.example:5000") and not remove_credentials("new.example:5000")
    assert load_credentials("new.example:5000") is None


def test_cli_builds_one_command_but_lists_all_on_a_typo(dockyard):
    """Only the named command's parser is built (fast start); a typo still gets the full list of commands."""
    from dockyard.cli.main import build_parser
    from dockyard.cli.transfer import cmd_pull

    args = build_parser("pull").parse_args(["pull", "-q", "example.com/a:1"])
    assert args.func is cmd_pull and args.quiet
    r = dockyard("pul", "x", check=False)
    assert r.code == 125 and "'pull'" in r.err and "'images'" in r.err
    r = dockyard("--root", "/nonexistent-root", "push", "--help")
    assert "usage: dockyard push" in r.out and "--all-tags" in r.out


def test_a_released_slot_starts_the_next_transfer_while_the_first_finishes():
    """One slot: the second layer starts once the first releases it (its bytes in), not when the first returns."""
    second_ran = threading.Event()
    order: list[str] = []

    def first(release) -> None:
        release()
        release()  # idempotent: a second call must not free a second slot
        # The first job's tail (its unpack) waits for the second to have run: without the early slot it never does.
        assert second_ran.wait(10), "the second transfer did not start while the first held no slot"
        order.append("first done")

    def second(release) -> None:
        order.append("second")
        second_ran.set()

    def third(release) -> None:
        order.append("third")  # starts only once `second` returns: the double release freed one slot, not two

    run_transfers(None, [first, second, third], 1, threading.Event())
    assert order[0] == "second" and set(order) == {"second", "first done", "third"}


def test_a_failure_after_release_still_fails_the_whole_and_stops_the_rest():
    cancel = threading.Event()
    started: list[int] = []

    def failing(release) -> None:
        release()
        raise ValueError("unpack failed")

    def later(i: int, release) -> None:
        started.append(i)
        if cancel.wait(10):
            raise Cancelled("cancelled")

    jobs = [failing, *(lambda release, i=i: later(i, release) for i in range(5))]
    with pytest.raises(ValueError, match="unpack failed"):
        run_transfers(None, jobs, 1, cancel)
    assert cancel.is_set() and len(started) <= 1  # no new transfer starts once one has failed
