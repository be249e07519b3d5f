"""Choosing the storage driver by configuration: distribution's `storage.<driver>` section, `--root` as before."""

from __future__ import annotations

import hashlib

import pytest

from registry.app import create_app
from registry.config import ConfigError, build


def test_storage_section_names_the_driver_and_its_root(tmp_path):
    store = tmp_path / "store"
    conf = tmp_path / "registry.toml"
    conf.write_text(f'access_log = ""\n[storage.filesystem]\nrootdirectory = "{store}"\n')
    config = build(str(conf))
    assert config.root == str(store)
    assert config.storage() == ("filesystem", {"rootdirectory": str(store)})
    # A flag overrides the file, as --root always did.
    assert build(str(conf), root=str(tmp_path / "flag")).storage()[1] == {"rootdirectory": str(tmp_path / "flag")}
    # Without a storage section: the filesystem driver at root.
    assert build(None, base={"root": str(store)}).storage() == ("filesystem", {"rootdirectory": str(store)})

    blob = b"stored by the configured driver"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    client = create_app(config).test_client()
    assert client.post(f"/v2/cfg/x/blobs/uploads/?digest={digest}", data=blob).status_code == 201
    assert (store / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data").read_bytes() == blob
    assert (store / "repositories" / "cfg" / "x" / "_layers" / "sha256" / digest[7:]).read_text() == digest
    assert client.get(f"/v2/cfg/x/blobs/{digest}").data == blob


@pytest.mark.parametrize("section, message", [
    ('[storage.s4]\nbucket = "b"\n', "unknown storage driver 's4'; use one of filesystem"),
    ('[storage.filesystem]\nmaxthreads = 100\n', "unknown setting 'storage.filesystem.maxthreads'"),
    ('[storage.filesystem]\n[storage.inmemory]\n', "'storage' must name one driver"),
    ('storage = "filesystem"\n', "'storage' must name one driver"),
    ('[storage]\nfilesystem = 1\n', "'storage.filesystem' must be a table of driver settings"),
])
def test_bad_storage_sections_are_refused(tmp_path, section, message):
    conf = tmp_path / "registry.toml"
    conf.write_text(section)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build(str(conf))
