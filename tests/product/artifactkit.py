"""Helpers for the artifact tests: the server's metadata database, projects in it, pushes and pulls."""

from __future__ import annotations

import json

import requests
from productkit import ADMIN
from regkit import Image, Server, layer_tar, make_image, push_image, sha256

from dockyard import mediatypes as mt
from registry.model.db import Database, default_url
from registry.model.tables import Project

COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"


def database(server: Server) -> Database:
    """The server's own metadata database (SQLite in its root unless the server was given another)."""
    return Database(getattr(server, "database_url", None) or default_url(str(server.root)))


def make_project(server: Server, name: str, storage_limit: int = -1, **metadata: str) -> int:
    """Create a project through the model (as the API does) in the server's database; its id."""
    from registry.model import projects
    db = database(server)
    project_id = projects.create_project(db, None, name, metadata, storage_limit).id
    db.engine.dispose()
    return project_id


def set_project(server: Server, name: str, **settings) -> None:
    """Change a project's settings directly in the server's database, announcing the change as the model's writers do
    (the server caches project settings per auth generation)."""
    from registry.model.access import changed
    db = database(server)
    with db.session() as s:
        project = s.query(Project).filter_by(name=name).one()
        for key, value in settings.items():
            setattr(project, key, value)
        changed(s)
    db.engine.dispose()


def image(seed: str, size: int = 1000, history: list[str] | None = None) -> Image:
    """A one-layer image whose layer is `size` bytes of incompressible data derived from `seed`."""
    data = b"".join(sha256(f"{seed}{i}".encode()).encode() for i in range(size // 71 + 1))[:size]
    img = make_image([layer_tar({f"{seed}.bin": data}, compress=True)])
    if history is not None:
        config = json.loads(img.config)
        config["history"] = [{"created_by": h, "created": "2026-01-01T00:00:00Z"} for h in history]
        config["config"] = {"Labels": {"org.example.seed": seed}}
        config["created"] = "2026-01-02T00:00:00Z"
        img.config = json.dumps(config).encode()
        doc = json.loads(img.manifest)
        doc["config"]["digest"], doc["config"]["size"] = sha256(img.config), len(img.config)
        img.manifest = json.dumps(doc).encode()
    return img


def push(server: Server, repo: str, img: Image, tag: str | None = "latest") -> requests.Response:
    return push_image(server.url, repo, img, tag, auth=ADMIN)


def referrer(server: Server, repo: str, subject: Image, artifact_type: str = COSIGN_SIG,
             tag: str | None = None) -> requests.Response:
    """Push an OCI artifact whose subject is `subject` (a signature by default)."""
    empty = b"{}"
    payload = f"signature of {subject.digest}".encode()
    for blob in (empty, payload):
        r = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob,
                          auth=ADMIN)
        assert r.status_code == 201, r.text
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": artifact_type,
           "config": {"mediaType": mt.OCI_EMPTY, "digest": sha256(empty), "size": 2},
           "layers": [{"mediaType": "application/octet-stream", "digest": sha256(payload), "size": len(payload)}],
           "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.manifest)}}
    data = json.dumps(doc).encode()
    return requests.put(f"{server.url}/v2/{repo}/manifests/{tag or sha256(data)}", data=data,
                        headers={"Content-Type": mt.OCI_MANIFEST}, auth=ADMIN)


def pull(server: Server, repo: str, reference: str) -> requests.Response:
    return requests.get(f"{server.url}/v2/{repo}/manifests/{reference}",
                        headers={"Accept": f"{mt.OCI_MANIFEST}, {mt.OCI_INDEX}"}, auth=ADMIN)


def api(server: Server, method: str, path: str, **kwargs) -> requests.Response:
    """A call to the server's Harbor API as admin."""
    return requests.request(method, f"{server.url}/api/v2.0{path}", auth=ADMIN, **kwargs)


def make_member(server: Server, project: str, username: str, password: str, role: int) -> None:
    """A local user with a role in a project, made through the model."""
    from registry.model import projects, users
    db = database(server)
    user = users.create_user(db, username, password)
    with db.session() as s:
        project_id = projects.get(s, project, True).id
    projects.add_member(db, project_id, role, user_id=user.id)
    db.engine.dispose()
