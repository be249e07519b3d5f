"""The images API as a script uses it: import, list, tag, inspect, remove, prune, save/load, push/pull, build."""

from __future__ import annotations

import json

import pytest

import dockyard.api
from dockyard.api import APIError, ImageNotFound, NotFound
from dockyard.errors import DockyardError
from dockyard.store import Store


@pytest.fixture
def busybox(client, busybox_tar):
    """busybox:latest imported through the API, labelled team=web."""
    return client.images.import_(busybox_tar, "busybox", "latest", changes=['CMD ["/bin/sh"]', "LABEL team=web"])


def test_import_get_list_tag_and_attrs_are_what_the_cli_shows(client, busybox, dockyard):
    image = busybox
    assert image.tags == ["busybox:latest"] and image.labels == {"team": "web"}
    assert image.id.startswith("sha256:") and image.short_id == image.id[:19]
    assert json.loads(dockyard("inspect", "busybox").out) == [image.attrs]
    assert image.tag("localhost:5000/team/bb", "v1") is True
    assert sorted(image.tags) == ["busybox:latest", "localhost:5000/team/bb:v1"]
    assert client.images.get("localhost:5000/team/bb:v1") == image == client.images.get(image.short_id)
    assert client.images.list() == [image] and client.images.list("busybox") == [image]
    assert client.images.list("busybox:nope") == [] and client.images.list(filters={"dangling": True}) == []
    assert client.images.list(filters={"reference": "localhost:5000/*"}) == [image]
    [step] = image.history()
    assert step["Id"] == image.id and "dockyard import" in step["CreatedBy"] and step["Size"] > 0
    with pytest.raises(ImageNotFound, match="No such image: nothere"):
        client.images.get("nothere")
    with pytest.raises(APIError, match="digest reference"):
        image.tag(f"busybox@sha256:{'0' * 64}")


def test_remove_untags_refuses_in_use_and_forces(client, busybox, store_root):
    busybox.tag("other", "1")
    client.images.remove("other:1")  # one of two names: only that name goes
    busybox.reload()
    assert busybox.tags == ["busybox:latest"]
    Store(store_root).hold("container-abc", [busybox.image.manifest_digest])
    with pytest.raises(APIError, match="being used by container-abc"):
        client.images.remove("busybox")
    client.images.remove(busybox, force=True)
    assert client.images.list() == []
    with pytest.raises(ImageNotFound):
        client.images.remove("busybox")


def test_prune_takes_dangling_images_then_filtered_ones(client, busybox_tar):
    first = client.images.import_(busybox_tar, "app", changes=["LABEL keep=no"])
    client.images.import_(busybox_tar, "app", changes=["LABEL keep=no", 'CMD ["true"]'])  # `first` now dangles
    kept = client.images.import_(busybox_tar, "kept", changes=["LABEL keep=yes"])
    result = client.images.prune()
    assert result["ImagesDeleted"] == [{"Deleted": first.id}] and result["SpaceReclaimed"] > 0
    assert client.images.prune() == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    result = client.images.prune(filters={"dangling": False, "label": "keep=no"})
    assert [d for d in result["ImagesDeleted"] if "Untagged" in d] == [{"Untagged": "app:latest"}]
    assert client.images.list() == [kept]
    with pytest.raises(DockyardError, match="invalid filter 'until'"):
        client.images.prune(filters={"until": "10m"})


def test_save_and_load_keep_the_image(client, busybox, tmp_path):
    other = dockyard.api.Client(str(tmp_path / "other"))
    data = b"".join(busybox.save(named=True))
    assert other.images.load(data) == [busybox] and other.images.get("busybox").tags == ["busybox:latest"]
    path = tmp_path / "bb.tar"
    assert busybox.save(str(path), format="oci-archive") is None
    third = dockyard.api.Client(str(tmp_path / "third"))
    [loaded] = third.images.load(path)
    assert loaded.id == busybox.id and loaded.tags == []  # not named: the archive records no name


def test_push_and_pull_through_a_registry(client, busybox, registry, tmp_path):
    repo = f"{registry.host}/lib/bb"
    busybox.tag(repo, "1")
    busybox.tag(repo, "2")
    assert client.images.push(repo, "1") == busybox.attrs["Manifest"]["Digest"]
    assert client.images.push(f"{repo}:2") == busybox.attrs["Manifest"]["Digest"]
    other = dockyard.api.Client(str(tmp_path / "other"))
    pulled = other.images.pull(repo, "1")
    assert pulled == busybox and pulled.tags == [f"{repo}:1"] and pulled.attrs["RepoDigests"] == busybox.attrs[
        "RepoDigests"][:1]
    every = other.images.pull(repo, all_tags=True)
    assert every == [busybox, busybox] and sorted(other.images.get(busybox.id).tags) == [f"{repo}:1", f"{repo}:2"]
    with pytest.raises(NotFound):
        other.images.pull(repo, "nope")
    with pytest.raises(ImageNotFound):
        client.images.push(repo, "absent")


def test_build_from_a_context(client, busybox, tmp_path, test_networks):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "greeting").write_text("hello\n")
    (ctx / "Dockerfile.api").write_text('FROM busybox\nCOPY greeting /greeting\nCMD ["cat", "/greeting"]\n')
    image, logs = client.images.build(path=str(ctx), dockerfile="Dockerfile.api", tag="hello:1", labels={"x": "y"},
                                      quiet=False)
    assert image.tags == ["hello:1"] and image.labels == {"team": "web", "x": "y"}
    assert image.attrs["Config"]["Cmd"] == ["cat", "/greeting"]
    lines = [item["stream"] for item in logs]
    assert any("COPY greeting /greeting" in line for line in lines)
    assert any(line.endswith("naming to hello:1 done\n") for line in lines)
    assert client.images.get("hello:1") == image


def test_build_pulls_a_missing_base_image(client, busybox, registry, tmp_path, test_networks):
    base = f"{registry.host}/lib/base:1"
    busybox.tag(base)
    client.images.push(base)
    other = dockyard.api.Client(str(tmp_path / "other"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nENV FROM_REGISTRY=1\n")
    image, logs = other.images.build(path=str(ctx), tag="derived", quiet=False)
    lines = [item["stream"] for item in logs]
    assert lines[:2] == [f"#1 pulling {base}\n", f"#1 {base}\n"], lines
    assert other.images.get(base) == busybox and "FROM_REGISTRY=1" in image.attrs["Config"]["Env"]


def test_build_with_secrets_an_outside_dockerfile_and_a_failure(client, busybox, tmp_path, test_networks):
    from dockyard.api.errors import BuildError

    ctx, elsewhere = tmp_path / "ctx", tmp_path / "elsewhere"
    ctx.mkdir()
    elsewhere.mkdir()
    (tmp_path / "token").write_text("s3cret")
    inline = elsewhere / "Dockerfile.inline"  # as compose writes dockerfile_inline: a file outside the context
    inline.write_text("FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen\n")
    image, _ = client.images.build(path=str(ctx), dockerfile=str(inline), tag="sec:1", labels={"built": "api"},
                                   secrets={"tok": str(tmp_path / "token")})
    assert image.labels["built"] == "api"
    assert client.containers.run("sec:1", ["cat", "/seen"], remove=True, network="none") == b"s3cret"
    with pytest.raises(APIError, match="secret id=tok: no such file"):
        client.images.build(path=str(ctx), dockerfile=str(inline), secrets={"tok": str(tmp_path / "absent")})

    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo fine\nRUN echo broken-step >&2; exit 3\n")
    with pytest.raises(BuildError) as e:
        client.images.build(path=str(ctx), tag="broken:1", network_mode="none")
    message = str(e.value)
    assert isinstance(e.value, APIError) and message.startswith("Dockerfile:3: step 3/3: RUN echo broken-step") and \
        message.endswith("exit code 3"), message
    with pytest.raises(ImageNotFound):
        client.images.get("broken:1")
