"""examples/compose end to end with `dockyard compose`: build, up, every tier reaching the next by name, logs, ps,
scale, and down -v leaving nothing on the host."""

from __future__ import annotations

import json
import re

from composekit import ComposeCli, get, host_leftovers

SERVICES = {"proxy", "api", "db", "cache"}


def hostname(project: ComposeCli, container: str) -> str:
    return project.inspect(container)[0]["Config"]["Hostname"]


def ps_json(project: ComposeCli, *args: str) -> list[dict]:
    """`compose ps --format json`: docker compose prints one object a line (2.21+) or one array (before)."""
    out = project("ps", "--format", "json", *args).out.strip()
    return json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines()]


def test_app_every_tier_by_name_logs_ps_scale_and_down(app, dockyard, store_root):
    port = app.env["PROXY_PORT"]
    app("up", "-d")

    # The proxy, published on PROXY_PORT, reaches the api by service name; the api reaches db by name and the cache
    # by name and by its links alias; each answers with its hostname, and .env's greeting came through the cache.
    body = get(f"http://127.0.0.1:{port}/")
    names = {s: hostname(app, app.container(s)) for s in SERVICES}
    assert body.splitlines() == [
        f"proxy {names['proxy']} -> http://api:8000/",
        f"api {names['api']}",
        f"db via db: PONG from db {names['db']}",
        "visits: 1",
        f"cache via cache: PONG from cache {names['cache']}",
        f"cache via kv: PONG from cache {names['cache']}",
        "greeting: hello from .env",
    ], body
    assert "visits: 2" in get(f"http://127.0.0.1:{port}/")
    # The proxy's read-only bind mount (a path relative to the project directory) serves static files.
    assert get(f"http://127.0.0.1:{port}/static/about.txt").startswith("static file served by the proxy")

    # logs: every service's lines under its service and number (docker compose v2's prefix); `logs SERVICE` only
    # that one.
    logs = app("logs", "--no-color").out
    for service, line in [("proxy", "response:200"), ("api", "response:200"), ("db", "INCR visits"),
                          ("cache", "GET greeting")]:
        assert re.search(rf"^{service}-1\s*\| .*{line}", logs, re.M), (service, logs)
    db_logs = app("logs", "--no-color", "db").out
    assert db_logs.strip() and all(line.startswith("db-1 ") for line in db_logs.splitlines()), db_logs

    # ps: the table names the four containers; the JSON has their services, states and the proxy's port.
    table = app("ps").out
    assert all(app.container(s) in table for s in SERVICES), table
    rows = {row["Service"]: row for row in ps_json(app)}
    assert set(rows) == SERVICES
    assert {row["Name"] for row in rows.values()} == {app.container(s) for s in SERVICES}
    assert {row["State"] for row in rows.values()} == {"running"}, rows
    assert any(p["PublishedPort"] == int(port) and p["TargetPort"] == 80 for p in rows["proxy"]["Publishers"]), rows

    # --scale api=3: three api containers, each answering the proxy (asked by exec) by its container name with
    # its own hostname.
    app("up", "-d", "--scale", "api=3")
    apis = [app.container("api", i) for i in (1, 2, 3)]
    assert sorted(row["Name"] for row in ps_json(app, "api")) == apis
    seen = set()
    for name in apis:
        out = dockyard("exec", app.container("proxy"), "wget", "-q", "-O", "-", f"http://{name}:8000/").out
        assert out.splitlines()[0] == f"api {hostname(app, name)}", out
        seen.add(out.splitlines()[0])
    assert len(seen) == 3
    assert "visits:" in get(f"http://127.0.0.1:{port}/")

    # down -v: no container, network or volume left in the store, nothing on the host.
    cids = dockyard("ps", "-aq", "--no-trunc").out.split()
    assert len(cids) == 6
    traces = app.traces()
    assert len(traces) == 2 + 1 + 3 * 2 + 2  # two bridges; veths: proxy, three apis on both networks, db, cache
    app("down", "-v")
    assert dockyard("ps", "-aq").out.split() == []
    assert not [n for n in dockyard("network", "ls", "--format", "{{.Name}}").out.split() if n.startswith(app.name)]
    assert dockyard("volume", "ls", "-q").out.split() == []
    assert host_leftovers(cids, traces, store_root) == []


def test_networks_keep_the_tiers_apart(app, dockyard):
    """The proxy (frontend only) neither resolves the db (backend only) nor reaches its address: docker isolates
    bridge networks from each other; the api, on both, reaches both."""
    app("up", "-d")
    db_ip = app.inspect(app.container("db"))[0]["NetworkSettings"]["Networks"][f"{app.name}_backend"]["IPAddress"]
    probe = f"echo PING | nc -w 2 db 5432; echo PING | nc -w 2 {db_ip} 5432; echo done"
    assert dockyard("exec", app.container("api"), "sh", "-c", probe).out.count("PONG from db") == 2
    out = dockyard("exec", app.container("proxy"), "sh", "-c", probe, check=False).out
    assert out == "done\n", out


def test_db_volume_outlives_down_and_goes_with_down_v(app, dockyard):
    port = app.env["PROXY_PORT"]
    app("up", "-d")
    assert "visits: 1" in get(f"http://127.0.0.1:{port}/")
    app("down")
    assert dockyard("ps", "-aq").out.split() == []
    assert dockyard("volume", "ls", "-q").out.split() == [f"{app.name}_dbdata"]
    app("up", "-d")
    assert "visits: 2" in get(f"http://127.0.0.1:{port}/")  # the count the db kept on its named volume
    app("down", "-v")
    assert dockyard("volume", "ls", "-q").out.split() == []


def test_up_named_services_labels_and_exec(app, dockyard):
    """`up -d db cache` starts those two only; their containers carry docker compose's labels and the file's own,
    publish nothing, the db has the project's named volume; `exec` runs in a service's container."""
    app("up", "-d", "db", "cache")
    db, cache = app.inspect(app.container("db"), app.container("cache"))
    for ctr, service in ((db, "db"), (cache, "cache")):
        labels = ctr["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == app.name
        assert labels["com.docker.compose.service"] == service
        assert labels["com.docker.compose.container-number"] == "1"
        assert labels["com.example.tier"] == service
        assert not ctr["HostConfig"].get("PortBindings")
    assert [m["Destination"] for m in db["Mounts"]] == ["/data"] and db["Mounts"][0]["Name"] == f"{app.name}_dbdata"
    assert sorted(ctr["Name"].lstrip("/") for ctr in (db, cache)) == [app.container("cache"), app.container("db")]
    volume_labels = json.loads(dockyard("volume", "inspect", f"{app.name}_dbdata").out)[0]["Labels"]
    assert volume_labels["com.docker.compose.project"] == app.name
    assert volume_labels["com.docker.compose.volume"] == "dbdata"
    assert {row["Service"] for row in ps_json(app)} == {"db", "cache"}  # only the services named started
    # exec: in the service's container, here asking the cache server from inside.
    out = app("exec", "-T", "cache", "sh", "-c", "echo PING | nc 127.0.0.1 6379").out
    assert out == f"PONG from cache {cache['Config']['Hostname']}\n"
