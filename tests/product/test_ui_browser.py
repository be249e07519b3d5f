"""The web UI driven in a real browser (Debian's chromium through Playwright) against a real `--projects` server,
with real pushes by `dockyard push`."""

from __future__ import annotations

import os
import re

import pytest
import requests
from uikit import ADMIN, image, push, screenshots_dir, start_server

from registry.model.db import Database, default_url
from registry.model.tables import Repository

CHROMIUM = "/usr/bin/chromium"
XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("ui-browser") / "root")
    yield server
    server.stop()
    server.assert_clean_log()
    log = server.log.read_text()
    assert not [p for p in (ADMIN[1], "Developer1", "Guest12345") if p in log]  # passwords are never logged


@pytest.fixture(scope="module")
def browser():
    """One chromium for the module: each test opens its own context (its own cookies)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return screenshots_dir(tmp_path_factory.mktemp("ui") / "screenshots")


@pytest.fixture(autouse=True)
def client_config(tmp_path, monkeypatch):
    """The CLI's login store and daemon config in the test's temp dir (127.0.0.1 is insecure by default)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "daemon.json"))
    monkeypatch.setenv("DOCKYARD_CERTS_D", str(tmp_path / "certs.d"))


class UI:
    """A browser tab on the server, with the dialogs it raised (a confirm() accepted, anything else recorded)."""

    def __init__(self, context, url: str, shots):
        self.context, self.url, self.shots = context, url, shots
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept() if dialog.type == "confirm" else dialog.dismiss()

    def go(self, path: str):
        response = self.page.goto(self.url + path)
        return response

    def sign_in(self, username: str, password: str) -> None:
        self.go("/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r".*/projects"))

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def submit(self, form_selector: str) -> None:
        self.page.locator(form_selector).get_by_role("button").last.click()
        self.page.wait_for_load_state()


@pytest.fixture
def ui(browser, server, shots):
    """A factory of tabs, each in its own browser context, closed after the test."""
    contexts = []

    def _open(**options) -> UI:
        context = browser.new_context(**options)
        contexts.append(context)
        return UI(context, server.url, shots)

    yield _open
    for context in contexts:
        context.close()


def create_project(tab: UI, name: str) -> str:
    """Create a project from the projects page; its page's path."""
    tab.go("/projects")
    tab.page.get_by_text("New project").click()
    tab.page.get_by_label("Name").fill(name)
    tab.page.get_by_role("button", name="Create").click()
    tab.page.wait_for_url(re.compile(r".*/projects/\d+\?done=project-created"))
    return re.search(r"/projects/\d+", tab.page.url).group(0)


def create_user(tab: UI, username: str, password: str) -> None:
    tab.go("/users")
    tab.page.get_by_text("New user").click()
    tab.page.get_by_label("Username").fill(username)
    tab.page.get_by_label("E-mail").fill(f"{username}@example.com")
    tab.page.get_by_label("Password").fill(password)
    tab.page.get_by_role("button", name="Create").click()
    tab.page.wait_for_url(re.compile(r".*done=user-created"))


def add_member(tab: UI, project: str, username: str, role: str) -> None:
    tab.go(f"{project}/members")
    tab.page.get_by_text("Add member").click()
    tab.page.get_by_label("Username").fill(username)
    tab.page.get_by_label("Role", exact=True).select_option(label=role)
    tab.page.get_by_role("button", name="Add").click()
    tab.page.wait_for_url(re.compile(r".*done=member-added"))


def test_developer_pushes_and_the_ui_shows_it(ui, server, dockyard, busybox_image):
    """The admin creates a project and a developer; the developer logs in with `dockyard login` and pushes; the UI
    shows the repository, its tag, layers, build history and a pull command that copies to the clipboard."""
    admin = ui()
    admin.go("/projects")
    assert "/login" in admin.page.url
    admin.shot("login")
    admin.sign_in(*ADMIN)
    project = create_project(admin, "team")
    create_user(admin, "dev", "Developer1")
    admin.shot("users")
    add_member(admin, project, "dev", "developer")
    assert admin.page.get_by_role("cell", name="dev", exact=True).is_visible()
    admin.shot("members")

    dockyard("login", server.host, "-u", "dev", "--password-stdin", input=b"Developer1")
    dockyard("tag", busybox_image, f"{server.host}/team/busybox:1.0")
    dockyard("push", f"{server.host}/team/busybox:1.0")

    dev = ui(permissions=["clipboard-read", "clipboard-write"])
    dev.sign_in("dev", "Developer1")
    dev.page.get_by_role("link", name="team").click()
    row = dev.page.get_by_role("row").filter(has_text="team/busybox")
    assert row.get_by_role("cell").nth(1).inner_text() == "1"  # one artifact
    dev.shot("repositories")
    row.get_by_role("link", name="team/busybox").click()
    dev.page.wait_for_url(re.compile(r".*/repositories/busybox$"))
    assert dev.page.locator(".tag", has_text="1.0").is_visible()
    pull = f"docker pull {server.host}/team/busybox:1.0"
    assert dev.page.get_by_text(pull).is_visible()
    dev.page.get_by_role("button", name="Copy pull command").first.click()
    assert dev.page.evaluate("navigator.clipboard.readText()") == pull
    dev.shot("artifacts")
    dev.page.locator("td[data-label=Artifact] a").first.click()
    layers = dev.page.locator("table.layers tbody tr")
    assert layers.count() >= 1 and re.search(r"\d+(\.\d)? (B|KiB|MiB)", layers.first.inner_text())
    assert dev.page.locator("ol.history li").count() >= 1
    assert dev.page.get_by_role("button", name="Delete tag").count() == 0  # a developer may not delete
    dev.shot("artifact")
    dev.go(f"{project}/logs")
    assert dev.page.get_by_role("cell", name="push", exact=True).count() >= 1
    dev.shot("logs")
    assert dev.dialogs == [] and admin.dialogs == []


def test_guest_sees_no_delete_and_a_forged_delete_is_refused(ui, server):
    """A guest's pages have no delete button; a delete POST it forges with its own valid CSRF token gets 403."""
    admin = ui()
    admin.sign_in(*ADMIN)
    project = create_project(admin, "guarded")
    img = image(payload=b"guarded")
    assert push(server.url, "guarded/app", img, "v1").status_code == 201
    create_user(admin, "guest", "Guest12345")
    add_member(admin, project, "guest", "guest")

    guest = ui()
    guest.sign_in("guest", "Guest12345")
    guest.go(f"{project}/repositories/app")
    assert guest.page.locator(".tag", has_text="v1").is_visible()
    assert guest.page.get_by_role("button", name=re.compile("Delete")).count() == 0
    guest.go(f"{project}/repositories/app/-/artifacts/{img.digest}")
    assert guest.page.get_by_role("button", name=re.compile("Delete")).count() == 0
    token = guest.page.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = guest.page.request.post(f"{server.url}{project}/repositories/app/-/artifacts/{img.digest}/delete",
                                     form={"csrf_token": token}, max_redirects=0)
    assert forged.status == 403
    assert requests.get(f"{server.url}/v2/guarded/app/manifests/v1", auth=ADMIN).status_code == 200

    admin.go(f"{project}/repositories/app")  # the admin has the button, and a confirmed delete works
    admin.page.get_by_role("button", name="Delete").first.click()
    admin.page.wait_for_url(re.compile(r".*done=artifact-deleted"))
    assert any("Delete artifact" in d for d in admin.dialogs)
    assert requests.get(f"{server.url}/v2/guarded/app/manifests/v1", auth=ADMIN).status_code == 404


def test_robot_account_pushes(ui, server, dockyard, busybox_image):
    """A robot account made on its project's page (secret shown once) logs in with `dockyard login` and pushes."""
    admin = ui()
    admin.sign_in(*ADMIN)
    project = create_project(admin, "bots")
    admin.go(f"{project}/robots")
    admin.page.get_by_text("New robot account").click()
    admin.page.get_by_label("Name", exact=True).fill("ci")
    admin.page.get_by_label("push").check()
    admin.page.get_by_role("button", name="Create").click()
    secret = admin.page.locator(".secret button[data-copy]").get_attribute("data-copy")
    assert secret and admin.page.get_by_text("robot$bots+ci").first.is_visible()
    admin.shot("robots")
    admin.go(f"{project}/robots")
    assert secret not in admin.page.content()  # shown once only

    dockyard("login", server.host, "-u", "robot$bots+ci", "--password-stdin", input=secret.encode())
    dockyard("tag", busybox_image, f"{server.host}/bots/app:ci")
    dockyard("push", f"{server.host}/bots/app:ci")
    admin.go(f"{project}/repositories/app")
    assert admin.page.locator(".tag", has_text="ci").is_visible()
    assert secret not in server.log.read_text()


def test_quota_exceeded_is_shown(ui, server):
    """Over its quota a push is refused with Harbor's message; the project's pages show the quota and the refusal."""
    admin = ui()
    admin.sign_in(*ADMIN)
    project = create_project(admin, "small")
    admin.go(f"{project}/policies")
    admin.page.get_by_label("Limit (GiB, -1 for none)").fill("0.000002")  # about 2 KiB
    admin.page.get_by_role("button", name="Set quota").click()
    admin.page.wait_for_url(re.compile(r".*done=quota-set"))
    refused = push(server.url, "small/app", image(payload=os.urandom(8192)), "1")
    assert refused.status_code == 403 and "exceed" in refused.text
    admin.go(f"{project}/policies")
    assert admin.page.locator("meter").count() == 1
    assert admin.page.get_by_text(re.compile(r"of 2\.\d KiB")).first.is_visible()
    assert admin.page.get_by_text("A push was refused for exceeding the quota").is_visible()
    admin.shot("policies")
    admin.go(f"{project}/logs")
    assert admin.page.get_by_role("cell", name="quota_exceed").count() >= 1
    admin.go("/projects?q=small")
    assert admin.page.locator("meter").count() == 1


def test_immutable_tag_refuses_a_push(ui, server):
    """An immutability rule added on the policies page makes a push over the tag fail, and its delete too."""
    admin = ui()
    admin.sign_in(*ADMIN)
    project = create_project(admin, "frozen")
    assert push(server.url, "frozen/app", image(payload=b"one"), "release-1").status_code == 201
    admin.go(f"{project}/policies")
    admin.page.get_by_text("Add immutability rule").click()
    admin.page.locator("#im_tag_pattern").fill("release-*")
    admin.page.get_by_role("button", name="Add rule").click()
    admin.page.wait_for_url(re.compile(r".*done=rule-added"))
    assert admin.page.get_by_text("release-*").is_visible()
    over = push(server.url, "frozen/app", image(payload=b"two"), "release-1")
    assert over.status_code in (403, 412) and "immutable" in over.text
    assert push(server.url, "frozen/app", image(payload=b"three"), "dev-1").status_code == 201
    admin.go(f"{project}/repositories/app")
    admin.page.locator("td[data-label=Artifact] a").last.click()  # the oldest: release-1
    admin.page.get_by_role("button", name="Delete tag").click()
    admin.page.wait_for_load_state()
    assert admin.page.locator("h1").inner_text() == "Refused by a policy"
    assert "configured as immutable" in admin.page.get_by_role("alert").inner_text()
    assert requests.get(f"{server.url}/v2/frozen/app/manifests/release-1", auth=ADMIN).status_code == 200


def test_retention_removes_old_tags(ui, server):
    """A retention rule (keep the 2 most recently pushed) run from the policies page removes the older tags."""
    admin = ui()
    admin.sign_in(*ADMIN)
    project = create_project(admin, "tidy")
    for i in range(4):
        assert push(server.url, "tidy/app", image(payload=f"v{i}".encode()), f"v{i}").status_code == 201
    admin.go(f"{project}/policies")
    admin.page.get_by_text("Add retention rule").click()
    admin.page.get_by_label("Rule").select_option("latestPushedK")
    admin.page.get_by_label("N", exact=True).fill("2")
    admin.page.get_by_role("button", name="Add rule").click()
    admin.page.wait_for_url(re.compile(r".*done=retention-saved"))
    admin.page.get_by_role("button", name="Run now").click()
    admin.page.wait_for_url(re.compile(r".*done=retention-run"))
    assert any("Run tag retention now" in d for d in admin.dialogs)
    removed = admin.page.locator("td[data-label=Removed]").first.inner_text()
    assert "tidy/app:v0" in removed and "tidy/app:v1" in removed
    admin.go(f"{project}/repositories/app")
    tags = admin.page.locator(".tag").all_inner_texts()
    assert sorted(tags) == ["v2", "v3"]
    assert requests.get(f"{server.url}/v2/tidy/app/manifests/v0", auth=ADMIN).status_code == 404


def test_stored_xss_renders_inert(ui, server):
    """Markup in an image label, a build step and a repository description shows as text and never runs."""
    admin = ui()
    admin.sign_in(*ADMIN)
    project = create_project(admin, "xss")
    img = image(labels={"org.example.note": XSS}, history=[{"created_by": XSS}])
    assert push(server.url, "xss/app", img, "1").status_code == 201
    with Database(default_url(str(server.root))).session() as s:
        s.execute(Repository.__table__.update().where(Repository.name == "xss/app").values(description=XSS))
    for path in (project, f"{project}/repositories/app", f"{project}/repositories/app/-/artifacts/{img.digest}"):
        admin.go(path)
        assert admin.page.get_by_text(XSS).first.is_visible(), path
        assert admin.page.evaluate("window.pwned") is None
    assert admin.page.locator("table.labels").get_by_text(XSS).is_visible()
    admin.shot("xss")
    assert admin.dialogs == []


def test_post_without_csrf_token_is_refused(ui, server):
    """A signed-in browser's POST without the CSRF token (what a cross-site form would send) is refused."""
    admin = ui()
    admin.sign_in(*ADMIN)
    r = admin.page.request.post(f"{server.url}/projects", form={"project_name": "forged"}, max_redirects=0)
    assert r.status == 403 and "CSRF" in r.text()
    admin.go("/projects?q=forged")
    assert admin.page.get_by_text("No projects match").is_visible()
    admin.shot("projects")
    admin.go("/system")
    admin.shot("system")


def test_phone_width_and_dark_mode(ui, server):
    """On a phone-sized dark-mode screen the pages stay readable: no horizontal scrolling, dark background."""
    phone = ui(viewport={"width": 375, "height": 740}, color_scheme="dark")
    phone.sign_in(*ADMIN)
    phone.go("/projects")
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 375
    background = phone.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert sum(int(c) for c in re.findall(r"\d+", background)[:3]) < 150, background
    phone.shot("projects-phone-dark")
    phone.page.keyboard.press("Tab")  # the skip link comes first, for keyboard users
    assert phone.page.evaluate("document.activeElement.textContent") == "Skip to content"
