"""What a container asks of its networks at create: the network mode's default and one endpoint's request (a
module of its own, so that a start without a bridge need not import the network records)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_NETWORK = "bridge"


@dataclass
class EndpointConfig:
    """What a container asks of one network at create (docker's EndpointSettings): fixed address, aliases."""

    network: str  # name (or id, until create resolves it)
    ip: str = ""
    aliases: list[str] = field(default_factory=list)

    def settings(self) -> dict:
        """As docker records it under NetworkSettings.Networks.<name> (the part the user chose)."""
        return {"IPAMConfig": {"IPv4Address": self.ip} if self.ip else None, "Aliases": list(self.aliases) or None}

    @classmethod
    def from_settings(cls, network: str, d: dict) -> EndpointConfig:
        """Back from settings()."""
        return cls(network, (d.get("IPAMConfig") or {}).get("IPv4Address", ""), list(d.get("Aliases") or []))
