"""TLS and insecure-registry rules, against distribution 2.8 in a network namespace (a non-loopback address,
so not insecure by default)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from dockyard.store import Store
from registries import start_distribution, store_snapshot
from support import run_subnet, tool

# An address the test makes unreachable with a route of its own (in this run's block, so no other run's).
UNROUTED, UNROUTED_HOST = run_subnet(3, "79.0/30"), run_subnet(3, "79.1")


@pytest.fixture(scope="module")
def netns_registries(netns, tls_ca, tmp_path_factory):
    """Plain HTTP on NETNS_IP:5000 and TLS (cert from the test CA) on NETNS_IP:5443, both inside the netns."""
    d = tmp_path_factory.mktemp("netns-registries")
    plain = start_distribution(d / "plain", ip=netns.ip, port=5000, netns=netns.name)
    tls = start_distribution(d / "tls", ip=netns.ip, port=5443, tls=(tls_ca.cert, tls_ca.key), netns=netns.name)
    yield plain, tls
    plain.stop()
    tls.stop()


def test_plain_http_refused_unless_listed(busybox_image, dockyard, store_root, other_store, client_env,
                                          netns_registries):
    plain, _ = netns_registries
    dockyard("tag", "busybox", f"{plain.host}/ns/bb:1")
    refused = dockyard("push", f"{plain.host}/ns/bb:1", check=False)
    assert refused.code == 1
    assert (f'registry {plain.host} answers only plain HTTP; if you trust it, add "{plain.host}" to '
            f'"insecure-registries" in {client_env.daemon_json}') in refused.err
    assert other_store("pull", f"{plain.host}/ns/bb:1", check=False).code == 1

    client_env.write_daemon(insecure_registries=[run_subnet(3, "77.0/30")])
    dockyard("push", f"{plain.host}/ns/bb:1")
    client_env.write_daemon(insecure_registries=[plain.host])
    other_store("pull", f"{plain.host}/ns/bb:1")
    assert Store(other_store.root).resolve(f"{plain.host}/ns/bb:1").manifest_digest == \
        Store(store_root).resolve("busybox").manifest_digest


def test_tls_verified_with_certs_d_ca(busybox_image, dockyard, other_store, client_env, tls_ca, netns_registries):
    _, tls = netns_registries
    dockyard("tag", "busybox", f"{tls.host}/ns/tls:1")
    unknown = dockyard("push", f"{tls.host}/ns/tls:1", check=False)
    assert unknown.code == 1
    assert "certificate verify failed" in unknown.err
    assert f"{client_env.certs_d}/{tls.host}/ca.crt" in unknown.err

    (client_env.certs_d / tls.host).mkdir()
    shutil.copy(tls_ca.ca_crt, client_env.certs_d / tls.host / "ca.crt")
    out = dockyard("push", f"{tls.host}/ns/tls:1").out
    assert "Pushed" in out
    other_store("pull", f"{tls.host}/ns/tls:1")

    # Listed as insecure, an unverifiable certificate is accepted (TLS without verification, as Docker does).
    shutil.rmtree(client_env.certs_d / tls.host)
    client_env.write_daemon(insecure_registries=[tls.host])
    again = other_store("pull", f"{tls.host}/ns/tls:1").out
    assert "Image is up to date" in again


def test_unreachable_host_is_a_clear_error(busybox_image, dockyard, store_root, client_env):
    """An address the kernel has no route to (an `unreachable` route the test adds) fails fast, store unchanged."""
    ip = tool("ip")
    subprocess.run([ip, "route", "add", "unreachable", UNROUTED], check=True, capture_output=True)
    try:
        client_env.write_daemon(insecure_registries=[UNROUTED])
        pull = dockyard("pull", f"{UNROUTED_HOST}:5000/x/y:1", check=False)
        assert pull.code == 1 and f"cannot connect to registry {UNROUTED_HOST}:5000: host unreachable" in pull.err
        dockyard("tag", "busybox", f"{UNROUTED_HOST}:5000/x/y:1")
        before = store_snapshot(store_root)
        push = dockyard("push", f"{UNROUTED_HOST}:5000/x/y:1", check=False)
        assert push.code == 1 and "host unreachable" in push.err
        assert store_snapshot(store_root) == before
    finally:
        subprocess.run([ip, "route", "del", "unreachable", UNROUTED], capture_output=True)
