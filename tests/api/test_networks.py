"""The networks API: create (with docker-py's IPAM dict), get, list, remove, prune; attrs as `network inspect`."""

from __future__ import annotations

import json
import os

import pytest

from dockyard.api import APIError, NotFound


def test_create_get_list_remove_prune(client, dockyard, test_networks):
    front = client.networks.create("front", "bridge", ipam={"Config": [{"Subnet": "10.244.7.0/24"}]},
                                   labels={"team": "web"})
    assert front.name == "front" and len(front.id) == 64 and front.short_id == front.id[:12]
    assert front.attrs["IPAM"]["Config"] == [{"Subnet": "10.244.7.0/24", "Gateway": "10.244.7.1"}]
    assert json.loads(dockyard("network", "inspect", "front").out) == [front.attrs]
    assert front.attrs["Labels"] == {"team": "web"} and front.attrs["Containers"] == {} and front.containers == []
    assert client.networks.get(front.short_id) == front
    assert [n.name for n in client.networks.list()] == ["bridge", "front"]
    assert client.networks.list(names=["front"]) == [front]
    bridge = front.attrs["Options"]["com.docker.network.bridge.name"]
    assert os.path.exists(f"/sys/class/net/{bridge}")
    with pytest.raises(APIError, match="already exists"):
        client.networks.create("front")
    with pytest.raises(APIError, match="only bridge"):
        client.networks.create("other", driver="overlay")
    with pytest.raises(APIError, match="pre-defined"):
        client.networks.get("bridge").remove()
    front.remove()
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    with pytest.raises(NotFound, match="network front not found"):
        client.networks.get("front")
    client.networks.create("spare")
    assert client.networks.prune() == {"NetworksDeleted": ["spare"]}
