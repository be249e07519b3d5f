"""The web UI's pages checked over HTTP without a browser: escaping, paging of huge lists, security headers,
session cookies, CSRF, sign-in throttling and redirects."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import pytest
import requests
from sqlalchemy import insert, select
from uikit import ADMIN, Browserless, image, push, start_server

from registry.model.db import Database, default_url
from registry.model.tables import Artifact, Repository, Tag, WebSession

XSS = '<script>window.pwned=1</script><img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("ui-pages") / "root")
    yield server
    server.stop()
    server.assert_clean_log()
    log = server.log.read_text()
    assert not [p for p in (ADMIN[1], "Guest1234", "Wrong1234") if p in log]  # passwords are never logged


@pytest.fixture(scope="module")
def admin(server) -> Browserless:
    return Browserless(server.url, *ADMIN)


@pytest.fixture(scope="module")
def db(server) -> Database:
    """The server's own metadata database (SQLite in its root), for rows no push needs to make."""
    return Database(default_url(str(server.root)))


def new_project(admin: Browserless, name: str, public: bool = False) -> int:
    r = admin.post("/projects", {"project_name": name, **({"public": "true"} if public else {})})
    assert r.status_code == 303, r.text
    return int(re.search(r"/projects/(\d+)", r.headers["Location"]).group(1))


def test_stored_markup_renders_as_text(server, admin, db):
    """A label, a build step and a repository description holding markup come out escaped, never as markup."""
    pid = new_project(admin, "esc")
    img = image(labels={"evil": XSS}, history=[{"created_by": XSS}])
    assert push(server.url, "esc/app", img, "1").status_code == 201
    with db.session() as s:
        s.execute(Repository.__table__.update().where(Repository.name == "esc/app").values(description=XSS))
    for path in (f"/projects/{pid}", f"/projects/{pid}/repositories/app",
                 f"/projects/{pid}/repositories/app/-/artifacts/{img.digest}"):
        body = admin.get(path).text
        assert "<script>window.pwned" not in body and "<img src=x" not in body, path
        assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in body, path
    assert "onerror=&#34;alert(1)&#34;" in body  # the label and build step shown, as text


def test_ten_thousand_tags_render_one_page(server, admin, db):
    """A repository whose artifact has 10,000 tags, and one with 10,000 artifacts, each render one page quickly."""
    pid = new_project(admin, "big")
    now = time.time()
    with db.session() as s:
        tags_repo = Repository(project_id=pid, name="big/tags")
        arts_repo = Repository(project_id=pid, name="big/artifacts")
        s.add_all([tags_repo, arts_repo])
        s.flush()
        art = Artifact(repository_id=tags_repo.id, digest="sha256:" + "a" * 64, media_type="application/json",
                       size=1)
        s.add(art)
        s.flush()
        s.execute(insert(Tag), [{"repository_id": tags_repo.id, "artifact_id": art.id, "name": f"t{i:05d}",
                                 "push_time": now + i, "pull_time": 0} for i in range(10000)])
        s.execute(insert(Artifact), [{"repository_id": arts_repo.id, "digest": f"sha256:{i:064x}",
                                      "media_type": "application/json", "artifact_type": "", "size": i, "extra": {},
                                      "push_time": now + i, "pull_time": 0} for i in range(10000)])
    body = admin.get(f"/projects/{pid}/repositories/tags").text
    assert body.count('class="tag"') == 5 and "+9995 more" in body
    assert "t09999" in body and "t00000" not in body  # newest first
    detail = admin.get(f"/projects/{pid}/repositories/tags/-/artifacts/sha256:{'a' * 64}?page=1000").text
    assert "10000 tags · page 1000 of 1000" in detail
    assert "t00000" in detail and detail.count('class="tag"') == 10
    body = admin.get(f"/projects/{pid}/repositories/artifacts?page=2&page_size=50").text
    assert "10000 artifacts · page 2 of 200" in body
    assert body.count("Copy pull command") == 50
    assert 'rel="prev"' in body and 'rel="next"' in body
    assert admin.get(f"/projects/{pid}/repositories/artifacts?page=0").status_code == 400


@pytest.mark.parametrize("path", ["/login", "/projects", "/projects/999999", "/static/ui.css"])
def test_security_headers(admin, path):
    """Every UI response forbids inline scripts, framing and MIME sniffing."""
    r = admin.get(path)
    csp = r.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'" and "unsafe" not in csp
    assert directives["frame-ancestors"] == "'none'" and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    if r.headers["Content-Type"].startswith("text/html"):
        assert r.headers["Cache-Control"] == "no-store"
        assert "<script>" not in r.text and " on" + "click=" not in r.text  # our pages carry no inline script


def test_session_cookie_flags_and_sign_out(server, db):
    """The session cookie is Secure, HttpOnly, SameSite=Strict; only its hash is stored; signing out ends it."""
    session = Browserless(server.url, *ADMIN)
    flags = [f.strip().lower() for f in session.set_cookie.split(",")[0].split(";")]
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= set(flags)
    with db.session() as s:
        row = s.get(WebSession, hashlib.sha256(session.sid.encode()).hexdigest())
        assert row is not None and session.sid not in (row.token_hash, row.csrf_token)
        assert row.expires_at - row.created_at == 12 * 3600
    assert session.get("/projects").status_code == 200
    r = session.post("/logout")
    assert r.status_code == 303 and "sid=;" in r.headers["Set-Cookie"]
    with db.session() as s:
        assert s.get(WebSession, hashlib.sha256(session.sid.encode()).hexdigest()) is None
    r = session.get("/projects")  # the old cookie is worthless now
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


def test_writes_need_the_csrf_token(server, admin, db):
    """A cookie-authenticated write without the session's CSRF token is refused, from a form or on the API."""
    r = admin.post("/projects", {"project_name": "forged"}, csrf=False)
    assert r.status_code == 403 and "CSRF" in r.text
    r = admin.post("/projects", {"project_name": "forged", "csrf_token": "x" * 43}, csrf=False)
    assert r.status_code == 403
    cookie = {"Cookie": f"sid={admin.sid}"}
    r = requests.post(f"{server.url}/api/v2.0/projects", json={"project_name": "forged"}, headers=cookie)
    assert r.status_code == 403 and "CSRF" in r.text
    from registry.model.tables import Project
    with db.session() as s:
        assert s.scalar(select(Project).where(Project.name == "forged")) is None
    r = requests.post(f"{server.url}/api/v2.0/projects", json={"project_name": "withtoken"},
                      headers={**cookie, "X-Harbor-CSRF-Token": admin.csrf})
    assert r.status_code == 201, r.text


def test_signed_out_pages_redirect_to_sign_in(server):
    """Without a session a page redirects to the sign-in form (no Basic challenge a browser would pop up), a write
    gets a 401 page, and `next` never leads off the site."""
    r = requests.get(f"{server.url}/projects/1/members?page=2", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/projects/1/members?page%3D2"
    assert "WWW-Authenticate" not in r.headers
    r = requests.post(f"{server.url}/projects", data={"project_name": "x"}, allow_redirects=False)
    assert r.status_code == 401 and "WWW-Authenticate" not in r.headers and "<h1>Sign-in required</h1>" in r.text
    page = requests.get(f"{server.url}/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = requests.post(f"{server.url}/login?next=//evil.example/x", data={"username": ADMIN[0], "password": ADMIN[1],
                                                                          "csrf_token": token},
                      headers={"Cookie": f"login_csrf={page.cookies['login_csrf']}"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/projects"


def test_sign_in_form_needs_its_token_and_is_throttled(server):
    """Signing in needs the form's own token (no cross-site sign-in); repeated failures are throttled."""
    r = requests.post(f"{server.url}/login", data={"username": ADMIN[0], "password": ADMIN[1]},
                      allow_redirects=False)
    assert r.status_code == 403 and "sid=" not in r.headers.get("Set-Cookie", "")
    statuses = []
    for _ in range(12):
        page = requests.get(f"{server.url}/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = requests.post(f"{server.url}/login", data={"username": "victim", "password": "Wrong1234",
                                                       "csrf_token": token},
                          headers={"Cookie": f"login_csrf={page.cookies['login_csrf']}"}, allow_redirects=False)
        statuses.append(r.status_code)
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    assert "Too many failed sign-ins" in r.text


def test_guest_gets_no_delete_and_the_server_refuses_it(server, admin, db):
    """A guest's pages show no delete button, and a delete it forges (with a valid CSRF token) is refused."""
    pid = new_project(admin, "guarded")
    img = image(payload=b"guarded")
    assert push(server.url, "guarded/app", img, "1").status_code == 201
    assert admin.post("/users", {"username": "gus", "password": "Guest1234", "email": "gus@example.com"}) \
        .status_code == 303
    assert admin.post(f"/projects/{pid}/members", {"username": "gus", "role": "3"}).status_code == 303
    assert 'class="danger">Delete' in admin.get(f"/projects/{pid}/repositories/app").text
    guest = Browserless(server.url, "gus", "Guest1234")
    for path in (f"/projects/{pid}/repositories/app", f"/projects/{pid}/repositories/app/-/artifacts/{img.digest}"):
        body = guest.get(path).text
        assert img.digest[:19] in body and "Delete" not in body and "/delete" not in body
    assert guest.post(f"/projects/{pid}/repositories/app/-/tags/1/delete").status_code == 403
    assert guest.post(f"/projects/{pid}/repositories/app/-/artifacts/{img.digest}/delete").status_code == 403
    assert guest.get(f"/projects/{pid}/robots").status_code == 403
    assert guest.get("/users").status_code == 403
    assert requests.get(f"{server.url}/v2/guarded/app/manifests/1", auth=ADMIN).status_code == 200


def test_webhook_made_in_the_ui_delivers_signed_events(server, admin):
    """A webhook created from its page gets a signed push event; the page lists it and its delivery, never the
    secret or the auth header."""
    from eventkit import Receiver
    pid = new_project(admin, "hooked")
    receiver = Receiver().start()
    try:
        r = admin.post(f"/projects/{pid}/webhooks", {"name": "ci", "address": receiver.url, "event_PUSH_ARTIFACT": "on",
                                                     "payload_format": "Default", "secret": "s3cr3t-value",
                                                     "auth_header": "Bearer hidden-token"})
        assert r.status_code == 303, r.text
        img = image(payload=b"hooked")
        assert push(server.url, "hooked/app", img, "1").status_code == 201
        got = receiver.wait(1)[0]
        expected = "sha256=" + hmac.new(b"s3cr3t-value", got.body, hashlib.sha256).hexdigest()
        assert got.headers["x-dockyard-signature"] == expected
        assert got.headers["authorization"] == "Bearer hidden-token"
        assert json.loads(got.body)["type"] == "PUSH_ARTIFACT"
        deadline = time.monotonic() + 10
        while "Success" not in (body := admin.get(f"/projects/{pid}/webhooks").text) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.url in body and "PUSH_ARTIFACT" in body and "Success" in body and "signed" in body
        assert "s3cr3t-value" not in body and "hidden-token" not in body
    finally:
        receiver.stop()
    assert "s3cr3t-value" not in server.log.read_text()


def test_referrers_show_under_their_subject(server, admin):
    """A signature pushed as a referrer is listed on its subject's page, not among the repository's images."""
    pid = new_project(admin, "signed")
    img = image(payload=b"signed")
    assert push(server.url, "signed/app", img, "1").status_code == 201
    empty = b"{}"
    sig = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                      "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                 "digest": "sha256:" + hashlib.sha256(empty).hexdigest(), "size": 2},
                      "layers": [{"mediaType": "application/vnd.oci.empty.v1+json",
                                  "digest": "sha256:" + hashlib.sha256(empty).hexdigest(), "size": 2}],
                      "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.digest,
                                  "size": len(img.manifest)}}).encode()
    r = requests.post(f"{server.url}/v2/signed/app/blobs/uploads/", auth=ADMIN,
                      params={"digest": "sha256:" + hashlib.sha256(empty).hexdigest()}, data=empty)
    assert r.status_code == 201, r.text
    sig_digest = "sha256:" + hashlib.sha256(sig).hexdigest()
    r = requests.put(f"{server.url}/v2/signed/app/manifests/{sig_digest}", data=sig, auth=ADMIN,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    listing = admin.get(f"/projects/{pid}/repositories/app").text
    assert "<span>1 artifact</span>" in listing and "1 referrer<" in listing and sig_digest[:19] not in listing
    detail = admin.get(f"/projects/{pid}/repositories/app/-/artifacts/{img.digest}").text
    assert "application/vnd.dev.cosign.artifact.sig.v1+json" in detail and sig_digest[:19] in detail
    back = admin.get(f"/projects/{pid}/repositories/app/-/artifacts/{sig_digest}").text
    assert "Refers to" in back and img.digest[:19] in back


def test_idle_session_ends(server, db):
    """A session unused for longer than the idle timeout is refused and its row removed."""
    session = Browserless(server.url, *ADMIN)
    token_hash = hashlib.sha256(session.sid.encode()).hexdigest()
    with db.session() as s:
        s.get(WebSession, token_hash).last_seen = time.time() - 3601
    r = session.get("/projects")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    with db.session() as s:
        assert s.get(WebSession, token_hash) is None
