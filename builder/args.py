"""ARG scoping: global ARGs for FROM, per-stage re-declaration, ENV precedence, --build-arg overrides."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from builder.dockerfile import Dockerfile, Instruction
from builder.expand import expand_heredoc, expand_word, expand_words

# Usable in RUN without an ARG line (and, like Docker, kept out of the cache key and image history).
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


def platform_args(target: str, build: str) -> dict[str, str]:
    """BuildKit's automatic TARGET*/BUILD* args for `os/arch[/variant]` platforms."""
    out = {}
    for prefix, platform in (("TARGET", target), ("BUILD", build)):
        os_, arch, variant = [*platform.split("/"), "", ""][:3]
        out.update({f"{prefix}PLATFORM": platform, f"{prefix}OS": os_, f"{prefix}ARCH": arch,
                    f"{prefix}VARIANT": variant})
    return out


@dataclass
class BuildArgs:
    """The build's inputs: `--build-arg` values and automatic (platform) args; records which were consumed."""

    values: dict[str, str] = field(default_factory=dict)
    automatic: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def take(self, name: str) -> str | None:
        """The --build-arg value for a declared name (marking it used), else None."""
        if name in self.values:
            self.used.add(name)
            return self.values[name]
        return None

    def unused(self) -> list[str]:
        """Build args no ARG consumed (Docker warns about these); proxy args never count as unused."""
        return sorted(n for n in self.values if n not in self.used and n not in PROXY_ARGS)


class GlobalScope:
    """The ARGs declared before the first FROM; they expand FROM lines and seed in-stage `ARG NAME`."""

    def __init__(self, dockerfile: Dockerfile, build_args: BuildArgs):
        self.build_args = build_args
        self.escape = dockerfile.escape
        self.values: dict[str, str | None] = {}
        for ins in dockerfile.global_args:
            for kv in ins.pairs:
                value = build_args.take(kv.key)
                if value is None and kv.value is not None:
                    value = expand_word(kv.value, self.env(), self.escape)
                elif value is None:  # `ARG TARGETARCH` before FROM: the automatic value, as BuildKit
                    value = build_args.automatic.get(kv.key)
                self.values[kv.key] = value

    def env(self) -> dict[str, str]:
        """Variables visible in FROM: automatic platform args, then global ARGs."""
        declared = {k: v for k, v in self.values.items() if v is not None}
        return {**self.build_args.automatic, **declared}

    def word(self, text: str) -> str:
        """Expand one FROM word (base image or --platform)."""
        return expand_word(text, self.env(), self.escape)


class StageVars:
    """Variables inside one stage: ARGs declared in it (values from --build-arg, default, or global) and
    ENV (from the base image config and ENV lines), which wins over an ARG of the same name."""

    def __init__(self, scope: GlobalScope, base_env: Iterable[str] = ()):
        self.scope = scope
        self.escape = scope.escape
        self.args: dict[str, str | None] = {}
        self.env_vars: dict[str, str] = {}
        for entry in base_env:
            key, _, value = entry.partition("=")
            self.env_vars[key] = value

    def declare(self, ins: Instruction) -> None:
        """Apply an ARG instruction: --build-arg beats the in-stage default, which beats the global value."""
        for kv in ins.pairs:
            value = self.scope.build_args.take(kv.key)
            if value is None and kv.value is not None:
                value = self.word(kv.value)
            elif value is None and kv.key in self.scope.values:
                value = self.scope.values[kv.key]
            elif value is None:
                value = self.scope.build_args.automatic.get(kv.key)
            self.args[kv.key] = value

    def set_env(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Record ENV values (already expanded) for later expansion and RUN."""
        self.env_vars.update(pairs)

    def mapping(self) -> dict[str, str]:
        """What `$NAME` means at this point of the stage."""
        return {**{k: v for k, v in self.args.items() if v is not None}, **self.env_vars}

    def run_env(self) -> dict[str, str]:
        """RUN's environment: ENV, declared ARGs (not persisted in the image), and given proxy args."""
        proxies = {k: v for k, v in self.scope.build_args.values.items() if k in PROXY_ARGS}
        return {**proxies, **self.mapping()}

    def word(self, text: str) -> str:
        """Expand one word (quotes removed)."""
        return expand_word(text, self.mapping(), self.escape)

    def words(self, text: str) -> list[str]:
        """Expand and split into words."""
        return expand_words(text, self.mapping(), self.escape)

    def heredoc(self, text: str) -> str:
        """Expand a heredoc body (quotes literal)."""
        return expand_heredoc(text, self.mapping(), self.escape)
