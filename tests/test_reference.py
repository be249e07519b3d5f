"""Reference parsing and normalisation by the distribution reference grammar."""

import pytest

from dockyard.digest import Digest
from dockyard.errors import InvalidReference
from dockyard.reference import parse

H = "a" * 64


@pytest.mark.parametrize("text, registry, repo, tag, digest", [
    ("busybox", "", "busybox", "latest", None),
    ("busybox:1.36", "", "busybox", "1.36", None),
    ("library/busybox:x", "", "library/busybox", "x", None),
    ("localhost/foo", "localhost", "foo", "latest", None),
    ("localhost:5000/foo/bar:v1", "localhost:5000", "foo/bar", "v1", None),
    ("127.0.0.1:5000/a", "127.0.0.1:5000", "a", "latest", None),
    ("registry.example.com/team/app:2", "registry.example.com", "team/app", "2", None),
    ("[::1]:5000/foo", "[::1]:5000", "foo", "latest", None),
    (f"foo@sha256:{H}", "", "foo", None, f"sha256:{H}"),
    (f"foo:v1@sha256:{H}", "", "foo", "v1", f"sha256:{H}"),
    (f"foo@sha512:{'b' * 128}", "", "foo", None, f"sha512:{'b' * 128}"),
    ("a.b-c/x", "a.b-c", "x", "latest", None),
    ("a_b__c-d/x", "", "a_b__c-d/x", "latest", None),
    ("Foo.Example/bar", "Foo.Example", "bar", "latest", None),
    ("foo:" + "t" * 128, "", "foo", "t" * 128, None),
    ("foo:_under.score-x", "", "foo", "_under.score-x", None),
])
def test_valid(text, registry, repo, tag, digest):
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repo, tag)
    assert ref.digest == (Digest.parse(digest) if digest else None)


@pytest.mark.parametrize("text", [
    "", " busybox", "Busybox", "foo/Bar", "foo:", "foo:-bad", "foo:" + "t" * 129, "foo@sha256:abc",
    f"foo@md5:{H}", f"foo@sha256:{'A' * 64}", "foo//bar", "/foo", "foo/", "-foo", "foo-", "foo..bar",
    "foo___bar", "a.b_c/x", "foo@", "foo bar", "a" * 256, "foo:bar:baz", "localhost:port/foo", "foo/../bar",
])
def test_invalid(text):
    with pytest.raises(InvalidReference):
        parse(text)


def test_uppercase_message_says_lowercase():
    with pytest.raises(InvalidReference, match="lowercase"):
        parse("MyImage")


def test_str_round_trip_and_ref_name():
    ref = parse(f"localhost:5000/a/b:t@sha256:{H}")
    assert str(ref) == f"localhost:5000/a/b:t@sha256:{H}"
    assert parse("x").ref_name == "x:latest"
    assert parse(f"x@sha256:{H}").ref_name == f"x@sha256:{H}"
    assert parse("x", default_registry="reg.local:5000").name == "reg.local:5000/x"
    assert parse("x", default_tag=False).tag is None


@pytest.mark.parametrize("text", ["foo\n", "foo:bar\n", "foo:tä", f"foo@sha256:{H}\n", "localhost:5000\n/foo"])
def test_no_trailing_newline_or_unicode(text):
    with pytest.raises(InvalidReference):
        parse(text)
