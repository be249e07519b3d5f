"""`dockyard build`: run the needed stages of a Dockerfile, instruction by instruction, into an image in the store.

A stage's working state is its image config and layer list; RUN and COPY write into a fresh upperdir over the
stage's unpacked layers, which becomes the next layer (and, moved into the store's layer cache, the next lowerdir
without being extracted again). Every step's result is recorded in the build cache under a key made of the
previous state's config digest and the step's inputs."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from builder.args import PROXY_ARGS, BuildArgs, GlobalScope, StageVars, platform_args
from builder.attest import Attestations
from builder.cache import BuildCache, step_key
from builder.commit import Committer, Layer, resolved, settled
from builder.context import BuildContext
from builder.dockerfile import Dockerfile, Instruction, Stage, parse
from builder.flags import CacheSpec, NamedContext, RunSettings, read_secret
from builder.ignore import Ignore
from builder.output import Progress
from builder.remotecache import INLINE_ANNOTATION, CacheImport, Poisoned, Record, export, inline_annotation
from builder.resolve import config_args, env_pairs, resolve_copy, resolve_run
from builder.stages import StagePlan, StageRefs, lookup, plan
from dockyard import __version__, changes, reference
from dockyard import mediatypes as mt
from dockyard.digest import Digest, chain_ids
from dockyard.errors import DockyardError, NotFound
from dockyard.image import (
    Descriptor,
    Image,
    Platform,
    canonical_json,
    empty_config,
    index_for,
    manifest_for,
    now_rfc3339,
)
from dockyard.inroot import layered_path
from dockyard.store import Store
from runner.spec import DEFAULT_PATH

if TYPE_CHECKING:
    from concurrent.futures import Future

    from runner.forkserver import ForkServer

# What only a step that misses the cache needs (the sandbox, overlay views, the copier, the fork server) is imported
# where it runs: a fully cached rebuild loads none of it.

_URL_RE = re.compile(r"^https?://", re.I)
# A cache entry waiting for its layers to be stored: (cache key, config JSON, layers).
_Record = tuple[str, bytes, Sequence[Layer]]
# A step this build ran or took from a cache, for --cache-to: (stage index, cache key, config JSON, layers).
_Step = tuple[int, str, bytes, Sequence[Layer]]
POISONED_LIMIT = 3  # layers of imported records failing their checks before the whole import is dropped


@functools.cache
def build_platform() -> str:
    """The platform builds run on and target by default: the machine this process runs as (dockyard.machine; under
    `setarch linux32` a 64-bit interpreter's is still linux/amd64, as buildah's GOARCH). Read at the first call,
    never at import: the resident server preloads this module, and nothing read at its import may reach a child."""
    return str(Platform.host())


class BuildFailed(DockyardError):
    """A build step failed (a RUN exited non-zero, a COPY source is missing…)."""


class BuildCancelled(BuildFailed):
    """The build was interrupted (SIGINT, SIGTERM); the steps it finished stay cached."""

    exit_code = 130


def secret_files(secrets: dict[str, str]) -> dict[str, bytes]:
    """Build secrets given as files (id -> host path), read."""
    return {sid: read_secret(sid, src) for sid, src in secrets.items()}


@dataclass
class BuildOptions:
    """Everything `dockyard build` was asked to do."""

    context: str
    dockerfile: str | None = None  # a path; None: Dockerfile in the context
    dockerfile_text: str | None = None  # the Dockerfile itself (`-f -`)
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    network: str = "default"
    secrets: dict[str, bytes] = field(default_factory=dict)  # id -> value
    labels: dict[str, str] = field(default_factory=dict)
    # One os/arch[/variant], or several, comma-separated: an image index.
    platform: str = field(default_factory=build_platform)
    compression: str = "gzip"
    source_date_epoch: int | None = None
    run: RunSettings = field(default_factory=RunSettings)  # --add-host, --ulimit, --shm-size
    ssh: dict[str, list[str]] = field(default_factory=dict)  # --ssh id -> socket or key paths ([]: $SSH_AUTH_SOCK)
    contexts: dict[str, NamedContext] = field(default_factory=dict)  # --build-context name -> source
    annotations: list[tuple[str, str, str]] = field(default_factory=list)  # (level, key, value)
    no_cache_filter: list[str] = field(default_factory=list)  # stages that take nothing from the cache
    cache_from: list[CacheSpec] = field(default_factory=list)  # --cache-from: images, registry caches, layouts
    cache_to: list[CacheSpec] = field(default_factory=list)  # --cache-to
    attest: Attestations = field(default_factory=Attestations)  # --sbom, --provenance, --attest


@dataclass
class StageState:
    """A stage being built: its image config (whole), layers, the cache identity of this state, variables."""

    stage: Stage
    config: dict[str, Any]
    layers: Sequence[Layer]  # replaced, never changed in place
    parent: str
    vars: StageVars
    label: str
    total: int
    platform: Platform

    @property
    def diff_ids(self) -> list[Digest]:
        return [Digest.parse(d) for d in self.config["rootfs"]["diff_ids"]]


def rfc3339(epoch: int) -> str:
    """SOURCE_DATE_EPOCH as an image config timestamp."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


class Builder:
    """One build: parse, plan, run stages (independent ones in parallel), write the image."""

    def __init__(self, options: BuildOptions, store: Store | None = None, progress: Progress | None = None):
        self.options = options
        self.store = store or Store()
        self.cache = BuildCache(self.store)
        self.progress = progress or Progress()
        self.sde = options.source_date_epoch
        self.results: dict[int, StageState] = {}
        self.images: dict[tuple[str, Platform], Image] = {}
        self._images_lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._running: set[str] = set()  # container IDs of RUNs under way
        self._stopping = False
        self._signal_pipe = -1  # the read end of the signal wakeup pipe (main thread builds only)
        self._signals: set[int] = set()
        self.spawner: ForkServer | None = None  # see _fork_server
        self._closing = contextlib.ExitStack()  # what build() ends: the fork server
        self.triggers: dict[int, list[Instruction]] = {}  # stage index -> its base image's ONBUILD instructions
        self.cache_images: list[Image] = []  # --cache-from images
        self.imported = CacheImport(self.store, self.progress.message)  # records of --cache-from caches
        self._steps: list[_Step] = []
        self.gathered: dict[str, list[Record]] | None = None  # a platform's --cache-to records (multi-platform)
        self.ssh: dict[str, str] = {}  # --ssh id -> agent socket
        self._dir_digests: dict[str, str] = {}  # --build-context directory -> content digest
        self.added: set[Digest] = set()
        self.workspace = ""
        self.dockerfile_data = b""  # the Dockerfile's bytes, for the provenance's digest of it
        self.started = rfc3339(int(time.time()))  # whole seconds: SPDX's `created` allows no fraction
        self.names = [reference.parse(t) for t in options.tags]  # bad tags fail before any work
        self.platforms = Platform.parse_list(options.platform)
        self.platform = self.platforms[0]
        self.index: Digest | None = None  # the image index a multi-platform build made
        if options.network not in ("default", "host", "none"):
            raise BuildFailed(f"--network {options.network}: expected default, host or none")
        for level, key, _ in options.annotations:
            if level != "manifest" and (level != "index" or len(self.platforms) == 1):
                # BuildKit's words: one platform makes no index
                raise BuildFailed(f"--annotation {level}:{key}: {level} annotations not supported for single "
                                  "platform export" if level == "index" else
                                  f"--annotation {level}:{key}: expected manifest or index annotations")

    # -- entry -------------------------------------------------------------------------------------------

    def _own_ignore(self) -> Ignore | None:
        """`<Dockerfile>.dockerignore` next to a -f Dockerfile replaces the context's .dockerignore (BuildKit)."""
        if self.options.dockerfile is None:
            return None
        try:
            with open(self.options.dockerfile + ".dockerignore", encoding="utf-8", errors="replace") as f:
                return Ignore.parse(f.read())
        except FileNotFoundError:
            return None

    def _dockerfile(self) -> Dockerfile:
        o = self.options
        if o.dockerfile_text is not None:
            self.dockerfile_data = o.dockerfile_text.encode()
            return parse(o.dockerfile_text, "Dockerfile")
        if o.dockerfile is None:
            self.dockerfile_data = self.context.read_file("Dockerfile")
            return parse(self.dockerfile_data.decode("utf-8", "replace"), "Dockerfile")
        try:
            with open(o.dockerfile, "rb") as f:
                self.dockerfile_data = f.read()
        except FileNotFoundError:
            raise NotFound(f"Dockerfile not found: {o.dockerfile}") from None
        return parse(self.dockerfile_data.decode("utf-8", "replace"), os.path.basename(o.dockerfile))

    def build(self) -> Image:
        """Run the build; the image is stored (and tagged) only when every step succeeded. Of a multi-platform
        build, the image for the host (or the first platform); `index` is then the tagged image index."""
        if len(self.platforms) > 1:
            return self._build_platforms()
        from builder.ssh import agents

        with contextlib.ExitStack() as self._closing, self._watch_signals():
            try:
                with agents(self.options.ssh) as self.ssh:
                    self._import_caches()
                    image = self._build_trusting()
                    self._export_caches()
                    return image
            except KeyboardInterrupt:
                raise BuildCancelled("cancelled") from None
            finally:
                self.imported.close()

    def _build_platforms(self) -> Image:
        """One build per platform (every step cached as in a single-platform build), then an image index of
        their images, tagged."""
        children: list[tuple[Descriptor, Platform]] = []
        builders: list[Builder] = []
        manifest_annotations = [a for a in self.options.annotations if a[0] == "manifest"]
        for platform in self.platforms:
            self.progress.message(f"building for {platform}")
            options = dataclasses.replace(self.options, platform=str(platform), tags=[],
                                          annotations=manifest_annotations)
            builders.append(Builder(options, self.store, self.progress))
            builders[-1].gathered = {}
            image = builders[-1].build()
            size = os.path.getsize(self.store.blob_path(image.manifest_digest))
            children.append((Descriptor(mt.OCI_MANIFEST, image.manifest_digest, size), platform))
        annotations = {k: v for level, k, v in self.options.annotations if level == "index"}
        data = canonical_json(index_for(children, annotations))
        with self.store.transaction() as added:
            self.index = self.store.add_index(data, self.names, added)
        for name in self.names:
            self.progress.message(f"naming to {name.ref_name} (index {self.index}, {len(children)} platforms) done")
        self._export_caches(builders)
        return self.store.image(self.index)

    def _build_trusting(self) -> Image:
        """Build; a layer of an imported record failing its checks means building again without the records
        naming it (the steps finished meanwhile are in the local cache), or without any after POISONED_LIMIT."""
        while True:
            try:
                return self._build()
            except Poisoned as e:
                drop = len(self.imported.bad) >= POISONED_LIMIT
                if drop:
                    self.imported.records.clear()
                self.progress.message(f"[Warning] {e}: building again without "
                                      f"{'the imported cache' if drop else 'the cache records naming it'}")

    @contextlib.contextmanager
    def _watch_signals(self) -> Iterator[None]:
        """Note SIGINT/SIGTERM/SIGHUP even while a RUN's signal forwarding handles them (the RUN then ends
        killed), so the build reports "cancelled" instead of the killed RUN's exit code."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._signal_pipe = r
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous)
            self._signal_pipe = -1
            os.close(r)
            os.close(w)

    def _fork_server(self) -> ForkServer:
        """The fork server RUNs start containers through, forked at its first need (a fully cached build never
        forks it). The fork must happen while no other thread runs: callers are the main thread before it starts
        any (a RUN, a layer commit, whose compression thread lives on, a wave of parallel stages)."""
        if self.spawner is None:
            from runner.forkserver import ForkServer

            # Nor may the server note its signals in our wakeup pipe (_watch_signals).
            previous = signal.set_wakeup_fd(-1) if self._signal_pipe >= 0 else None
            try:
                self.spawner = self._closing.enter_context(ForkServer.start())
            finally:
                if previous is not None:
                    signal.set_wakeup_fd(previous, warn_on_full_buffer=False)
        return self.spawner

    def _interrupted(self) -> bool:
        """Whether a stopping signal has arrived since the build started."""
        with contextlib.suppress(BlockingIOError, OSError):
            while data := os.read(self._signal_pipe, 64):
                self._signals.update(data)
        return bool(self._signals & {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})

    def _build(self) -> Image:
        o = self.options
        self.context = BuildContext(o.context, self._own_ignore(), hashes=self.cache.context_hashes(o.context))
        self.df = self._dockerfile()
        build_args = BuildArgs(dict(o.build_args), platform_args(str(self.platform), build_platform()))
        named = frozenset(o.contexts)
        self.plan: StagePlan = plan(self.df, build_args, o.target, named)
        self.scope = GlobalScope(self.df, build_args)
        with self.store.transaction() as added:
            self.added = added
            self.workspace = tempfile.mkdtemp(prefix="build-", dir=self.store.tmp_dir)
            self.committer = Committer(self.store, o.compression, self.sde, added, self.workspace)
            self._records: list[_Record] = []
            self._steps = []
            try:
                self._fetch_images()
                if self.triggers:  # ONBUILD COPY --from / --mount from= a stage: plan again with them
                    self.plan = plan(self.df, build_args, o.target, named, self.triggers)
                    self._fetch_images()
                for wave in self.plan.waves:
                    stages = [self.df.stages[i] for i in wave]
                    if len(stages) == 1:
                        self._stage(stages[0])
                    else:
                        from concurrent.futures import ThreadPoolExecutor

                        self._fork_server()  # before the stages' threads
                        with ThreadPoolExecutor(len(stages), thread_name_prefix="stage") as pool:
                            futures = [pool.submit(self._stage, s) for s in stages]
                            try:
                                for f in futures:
                                    f.result()
                            except BaseException:
                                self._stop_all(futures)
                                raise
                final = self.results[self.plan.target.index]
                if o.labels:
                    args = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(o.labels.items()))
                    self._config_step(final, "LABEL", args)
                image = self._write_image(final)
                if o.attest.wanted:
                    self._attest(final, image)
            finally:
                try:
                    self.committer.close()
                    self._flush()  # steps that succeeded stay cached, even when a later one failed
                    self.context.save_hashes()
                finally:
                    shutil.rmtree(self.workspace, ignore_errors=True)
        unused = build_args.unused()
        if unused:
            self.progress.message(f"[Warning] One or more build-args {unused} were not consumed")
        return image

    def _fetch_images(self) -> None:
        """Every external image the plan needs (not local --build-context directories), and the ONBUILD
        triggers of the stages based on them."""
        wanted = {(i, self._base_platform(refs) if i == refs.base.base and refs.base_stage is None else
                   self.platform) for refs in self.plan.refs.values() for i in refs.images}
        for ref, platform in sorted(wanted, key=str):
            if self._context(ref, "dir") is None:
                self._image(ref, platform)
        for index, refs in self.plan.refs.items():
            base = refs.base.base
            if refs.base_stage is None and base != "scratch" and index not in self.triggers:
                stage = self.df.stages[index]
                config = self._image(base, self._base_platform(refs)).config.get("config") or {}
                self.triggers[index] = [self._trigger(stage, t) for t in config.get("OnBuild") or []]
        self.triggers = {i: t for i, t in self.triggers.items() if t}

    def _base_platform(self, refs: StageRefs) -> Platform:
        """A stage's platform: its FROM --platform (e.g. $BUILDPLATFORM, for a cross-compiling stage), else its
        base stage's, else the build's."""
        if refs.base.platform:
            return Platform.parse(refs.base.platform)
        return self.results[refs.base_stage].platform if refs.base_stage is not None else self.platform

    def _context(self, ref: str, kind: str) -> NamedContext | None:
        """The --build-context named `ref` when it is of `kind`."""
        found = self.options.contexts.get(ref.lower())
        return found if found is not None and found.kind == kind else None

    def _stop_all(self, futures: list[Future]) -> None:
        """Ctrl-C or a failed stage: end the RUNs of the other stages' threads (only the main thread gets
        signals), again and again until they are done, as one may have been starting just now."""
        from concurrent.futures import wait

        from builder.run import stop

        self._stopping = True
        while not all(f.done() for f in futures):
            for cid in list(self._running):
                stop(cid)
            wait(futures, timeout=0.2)

    def _write_image(self, state: StageState) -> Image:
        n = self.progress.step("exporting to image")
        data = canonical_json(state.config)
        config = self.store.write_blob_bytes(data, added=self.added)
        layers = resolved(state.layers)
        self.imported.fetch(state.config, layers, self.added)
        annotations = {k: v for level, k, v in self.options.annotations if level == "manifest"}
        if any(spec.kind == "inline" for spec in self.options.cache_to):
            annotations[INLINE_ANNOTATION] = inline_annotation(self._cache_records("min"), layers)
        manifest = canonical_json(manifest_for(Descriptor(mt.OCI_CONFIG, config, len(data)), layers,
                                               annotations or None))
        image = self.store.add_image(manifest, self.names, added=self.added)
        self.progress.line(n, f"writing image {image.id} done")
        for name in self.names:
            self.progress.line(n, f"naming to {name.ref_name} done")
        self.progress.done(n)
        return image

    def _attest(self, state: StageState, image: Image) -> None:
        """--sbom, --provenance: documents about the image, stored as its referrers."""
        import uuid

        from builder.attest import Subject, attach
        from builder.provenance import BuildFacts, docker_purl

        o = self.options
        n = self.progress.step("exporting attestations")
        now = rfc3339(int(time.time()) if self.sde is None else self.sde)
        name = self.names[0].ref_name if self.names else str(image.id)
        path = "Dockerfile"
        if o.dockerfile is not None and o.dockerfile_text is None:
            rel = os.path.relpath(o.dockerfile, o.context)
            path = os.path.basename(o.dockerfile) if rel.startswith("..") else rel
        facts = BuildFacts(
            subject_name=docker_purl(name, str(self.platform)) if self.names else name,
            manifest_digest=image.manifest_digest, dockerfile_path=path,
            dockerfile_digest=Digest.of_bytes(self.dockerfile_data), build_args=o.build_args, target=o.target,
            platform=str(self.platform), bases={ref: img.manifest_digest for (ref, _), img in self.images.items()},
            # With SOURCE_DATE_EPOCH the same build gives the same document.
            invocation_id=str(uuid.uuid4() if self.sde is None else uuid.uuid5(uuid.NAMESPACE_URL,
                                                                               str(image.manifest_digest))),
            started=self.started if self.sde is None else now, finished=now, version=__version__)
        attached = attach(self.store, o.attest, Subject(image, name, now, facts), self._lowerdirs(state),
                          self.workspace, self.added, self.progress.message)
        for r in attached:
            self.progress.line(n, f"{r.artifact_type} {r.digest} done")
        self.progress.done(n)

    # -- images --------------------------------------------------------------------------------------------

    def _image(self, ref: str, platform: Platform | None = None) -> Image:
        """An external image by reference, for the stage's platform (default: the build's): from the store,
        pulled when missing or when --pull asks."""
        platform = platform or self.platform
        with self._images_lock:
            if (ref, platform) not in self.images:
                self.images[ref, platform] = self._fetch(ref, platform)
            return self.images[ref, platform]

    def _fetch(self, ref: str, platform: Platform) -> Image:
        named = self.options.contexts.get(ref.lower())
        if named is not None:
            if named.kind == "dir":
                raise BuildFailed(f"--build-context {ref}: a local directory cannot be a FROM base")
            if named.kind == "oci-layout":
                from builder.layout import load_layout

                return load_layout(self.store, named.value, named.tag)
            ref = named.value
        local: NotFound | None = None
        if not self.options.pull:
            try:
                return self.store.resolve(ref, platform)
            except NotFound as e:
                local = e
        from registry.client.transfer import pull  # the registry client: only when an image must be pulled

        n = self.progress.step(f"pulling {ref}")
        try:
            pulled = pull(self.store, ref, platform=str(platform))
        except DockyardError as e:
            if self.options.pull:
                raise NotFound(f"--pull: cannot look for a newer {ref}: {e}") from None
            if local is not None and str(local) != f"No such image: {reference.parse(ref)}":
                raise NotFound(f"{local} (and pulling it failed: {e})") from None  # there, but not for this platform
            raise NotFound(f"No such image: {ref} (not in the store, and pulling it failed: {e})") from None
        self.progress.line(n, str(pulled[0].reference))
        self.progress.done(n)
        return self.store.resolve(ref, platform)

    # -- stages ---------------------------------------------------------------------------------------------

    def _stage(self, stage: Stage) -> None:
        refs = self.plan.refs[stage.index]
        base = refs.base.base
        layers: Sequence[Layer]
        platform = self._base_platform(refs)
        if refs.base_stage is not None:
            src = self.results[refs.base_stage]
            config, layers, parent = copy.deepcopy(src.config), list(src.layers), src.parent
        elif base == "scratch":
            config, layers = empty_config(now_rfc3339() if self.sde is None else rfc3339(self.sde)), []
            config.pop("variant", None)
            config.update(platform.to_json())
            parent = step_key("FROM scratch", str(platform))
        else:
            image = self._image(base, platform)
            config, layers, parent = copy.deepcopy(image.config), image.layers, image.id.hex
        cfg = config.setdefault("config", {})
        config.setdefault("rootfs", {"type": "layers", "diff_ids": []}).setdefault("diff_ids", [])
        triggers = cfg.pop("OnBuild", None) or []
        if not any(e.startswith("PATH=") for e in cfg.get("Env") or []):
            cfg["Env"] = [f"PATH={DEFAULT_PATH}", *(cfg.get("Env") or [])]  # as BuildKit does
        parent = step_key("FROM", parent, triggers, str(platform))
        if refs.base_stage is None:
            instructions = self.triggers.get(stage.index, []) + stage.instructions  # parsed when planning
        else:
            instructions = [self._trigger(stage, t) for t in triggers] + stage.instructions
        multi = len(self.plan.order) > 1
        label = f"{stage.name or f'stage-{stage.index}'} " if multi else ""
        state = StageState(stage, config, list(layers), parent, StageVars(self.scope, cfg["Env"]), label,
                           1 + len(instructions), platform)
        n = self.progress.step(f"[{label}1/{state.total}] FROM {base}")
        self.progress.done(n)
        for k, ins in enumerate(instructions, start=2):
            self._instruction(state, ins, k)
        self.results[stage.index] = state

    def _trigger(self, stage: Stage, text: str) -> Instruction:
        """A base image's ONBUILD trigger, parsed as an instruction of this stage."""
        return parse(f"FROM scratch\n{text}\n", f"{stage.from_instruction.where} ONBUILD").stages[0].instructions[0]

    def _instruction(self, state: StageState, ins: Instruction, k: int) -> None:
        n = self.progress.step(f"[{state.label}{k}/{state.total}] {ins.name} {_one_line(ins.value)}")
        try:
            if ins.name == "ARG":
                state.vars.declare(ins)
                cached = False
            elif ins.name == "RUN":
                cached = self._run(state, ins, n, k)
            elif ins.name in ("COPY", "ADD"):
                cached = self._copy(state, ins, n)
            else:
                args = config_args(ins, state.vars)
                if ins.name == "ENV":
                    state.vars.set_env(env_pairs(ins, state.vars))
                cached = self._config_step(state, ins.name, args, n)
        except (BuildFailed, Poisoned):
            raise
        except DockyardError as e:
            msg = str(e)
            raise BuildFailed(msg if msg.startswith(ins.filename) else f"{ins.where}: {msg}") from None
        if not cached:
            self.progress.done(n)

    # -- cache ----------------------------------------------------------------------------------------------

    def _cached(self, state: StageState, key: str, n: int | None) -> bool:
        """Take the step's result from the cache when there is one (and --no-cache is not given)."""
        if self._no_cache(state):
            return False
        image = self.cache.get(key)
        if image is not None:
            state.config, state.layers, state.parent = image.config, image.layers, image.id.hex
        else:
            hit = self.imported.get(key)  # its layers are fetched only when needed (_lowerdirs, _write_image)
            if hit is None:
                return False
            state.config, state.layers = hit
            state.parent = Digest.of_bytes(canonical_json(state.config)).hex
        self._note(state, key, canonical_json(state.config))
        if n is not None:
            self.progress.cached(n)
        return True

    def _no_cache(self, state: StageState) -> bool:
        """--no-cache, or --no-cache-filter naming the stage."""
        stage = state.stage
        return self.options.no_cache or any(f.lower() in (stage.name, str(stage.index))
                                            for f in self.options.no_cache_filter)

    def _from_cache_images(self, state: StageState, created_by: str, env: dict[str, str], n: int) -> bool:
        """A RUN served by a --cache-from image: one whose history and layers so far are ours and whose next
        step is this command. A RUN that sees build args beyond the image's ENV never matches (the history
        does not record them)."""
        env_list = state.config["config"].get("Env") or []
        if self._no_cache(state) or any(f"{k}={v}" not in env_list for k, v in env.items() if k not in PROXY_ARGS):
            return False
        ours = [h.get("created_by", "") for h in state.config.get("history") or []]
        diff_ids = list(state.config["rootfs"]["diff_ids"])
        d = len(diff_ids)
        for image in self.cache_images:
            theirs = image.config.get("history") or []
            their_ids = [str(x) for x in image.diff_ids]
            if len(theirs) <= len(ours) or [h.get("created_by", "") for h in theirs[:len(ours)]] != ours \
                    or theirs[len(ours)].get("created_by") != created_by or their_ids[:d] != diff_ids:
                continue
            entry = dict(theirs[len(ours)])
            if not entry.get("empty_layer"):
                if len(their_ids) <= d:
                    continue
                state.config["rootfs"]["diff_ids"].append(their_ids[d])
                state.layers = [*state.layers, image.layers[d]]
            state.config["created"] = entry.get("created", state.config.get("created"))
            state.config.setdefault("history", []).append(entry)
            self.progress.cached(n)
            return True
        return False

    def _record(self, state: StageState, key: str) -> None:
        """Note the state after a step for the cache; written once its layers are stored."""
        data = canonical_json(state.config)
        state.parent = Digest.of_bytes(data).hex  # the config digest, as the cache entry's image ID
        with self._records_lock:
            self._records.append((key, data, list(state.layers)))
        self._note(state, key, data)
        if settled(state.layers):
            self._flush()

    def _flush(self) -> None:
        """Write the cache entries whose layers are all stored (after a failure, the rest are dropped)."""
        with self._records_lock:
            ready: list[_Record] = []
            waiting: list[_Record] = []
            for record in self._records:
                (ready if settled(record[2]) else waiting).append(record)
            self._records = waiting
        for key, data, layers in ready:
            self.cache.put(key, data, resolved(layers), self.added)

    def _note(self, state: StageState, key: str, data: bytes) -> None:
        """Remember a step's result for --cache-to."""
        with self._records_lock:
            self._steps.append((state.stage.index, key, data, list(state.layers)))

    def _cache_records(self, mode: str) -> list[Record]:
        """The steps a cache exports: every stage's (mode=max) or the final image's (min), once per key."""
        stages = set(self.results)
        index: int | None = self.plan.target.index
        if mode == "min":
            stages = set()
            while index is not None:
                stages.add(index)
                index = self.plan.refs[index].base_stage
        out: dict[str, Record] = {}
        for stage, key, data, layers in self._steps:
            if stage in stages and key not in out:
                out[key] = Record(key, data, resolved(layers))
        return list(out.values())

    def _import_caches(self) -> None:
        """Read the records of every --cache-from (only the records: layers come when a hit needs them)."""
        for spec in self.options.cache_from:
            if spec.kind != "image":
                self.imported.add(spec, str(self.platform))
                continue
            try:  # a local image serves by its history (and inline records); else, as buildx, a registry's
                image = self.store.resolve(spec.ref)
            except NotFound:
                if not reference.parse(spec.ref).registry and not reference.default_registry():
                    raise
                self.imported.add(spec, str(self.platform))
                continue
            self.cache_images.append(image)
            self.imported.add_image(image)

    def _export_caches(self, platforms: list[Builder] | None = None) -> None:
        """--cache-to type=registry|local: the records, with every layer they name (imported ones fetched); of a
        multi-platform build, every platform's records in one cache (as BuildKit's), from `platforms`."""
        if self.gathered is not None:  # one platform of several: its layers fetched, its records kept for one export
            for spec in self.options.cache_to:
                self.gathered[str(spec)] = self._fetched_records(spec.mode) if spec.kind != "inline" else []
            return
        for spec in self.options.cache_to:
            if spec.kind == "inline":
                continue
            n = self.progress.step(f"exporting cache to {spec.kind} {spec} (mode={spec.mode})")
            try:
                records = self._fetched_records(spec.mode) if platforms is None else list(
                    {r.key: r for b in platforms for r in (b.gathered or {}).get(str(spec), [])}.values())
                export(self.store, spec, records)
            except DockyardError as e:
                if not spec.ignore_error:
                    raise BuildFailed(f"--cache-to {spec}: {e}") from None
                self.progress.message(f"[Warning] --cache-to {spec}: {e}")
            self.progress.done(n)

    def _fetched_records(self, mode: str) -> list[Record]:
        """The records a cache exports, with the imported layers they name brought into the store."""
        records = self._cache_records(mode)
        with self.store.transaction() as added:
            for r in records:
                self.imported.fetch(json.loads(r.config), r.layers, added)
        return records

    def _lowerdirs(self, state: StageState) -> list[str]:
        """The stage's layers as overlay lowerdirs (top-most first), without waiting for blobs being compressed."""
        dirs = [self.store.layer_dir(c) for c in chain_ids(state.diff_ids)]
        if all(os.path.isdir(d) for d in dirs):
            return dirs[::-1]
        self.imported.fetch(state.config, state.layers, self.added)  # imported layers, now they are needed
        manifest = {"layers": [d.to_json() for d in resolved(state.layers)]}
        return self.store.lowerdirs(Image(None, manifest, state.config))  # type: ignore[arg-type]

    def _history(self, state: StageState, created_by: str, empty: bool) -> None:
        now = now_rfc3339() if self.sde is None else rfc3339(self.sde)
        state.config["created"] = now
        entry: dict[str, Any] = {"created": now, "created_by": created_by, "comment": "dockyard build"}
        if empty:
            entry["empty_layer"] = True
        state.config.setdefault("history", []).append(entry)

    # -- steps ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _step_dir(self, memory: int = 0) -> Iterator[tuple[str, str, bool]]:
        """A scratch directory for one step with a fresh upperdir in it; removed afterwards. `memory`: the upper is
        on a tmpfs of that size where one can be mounted (the third value says so: Committer.commit's `in_memory`)."""
        from builder import views

        path = tempfile.mkdtemp(prefix="step-", dir=self.workspace)
        try:
            with views.in_memory(path, memory) if memory else contextlib.nullcontext(False) as staged:
                yield path, views.new_upper(path), staged
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _commit(self, state: StageState, upper: str, created_by: str, contents: dict[str, bytes] | None = None,
                in_memory: bool = False, before: Image | None = None) -> None:
        """Turn an upperdir into the stage's next layer (nothing when it is empty); `contents`, `in_memory`: see
        Committer.commit; `before`: the step's cache entry (not used, as --no-cache said), which may hold the blob."""
        if not os.listdir(upper):
            self._history(state, created_by, True)
            return
        self._fork_server()  # before the committer's thread
        previous = (before.diff_ids[-1], before.layers[-1]) if before is not None and before.layers else None
        diff_id, blob = self.committer.commit(upper, state.diff_ids, contents, in_memory, previous)
        state.config["rootfs"]["diff_ids"].append(str(diff_id))
        state.layers = [*state.layers, blob]
        self._history(state, created_by, False)

    def _config_step(self, state: StageState, name: str, args: str, n: int | None = None) -> bool:
        """A config-only instruction (WORKDIR also creates its directory); True when served from the cache."""
        key = step_key(state.parent, name, args)
        if self._cached(state, key, n):
            return True
        cfg = state.config.setdefault("config", {})
        maintainer = changes.apply(cfg, name, args)
        if maintainer is not None:
            state.config["author"] = maintainer
        created_by = f"{name} {args}"
        workdir = cfg.get("WorkingDir")
        if name == "WORKDIR" and layered_path(self._lowerdirs(state), workdir) is None:
            from builder import views
            from builder.copy import Copier
            from builder.run import run_user

            lowerdirs = self._lowerdirs(state)
            # As BuildKit: the directories WORKDIR creates belong to the current USER.
            who = run_user(cfg.get("User") or "", lowerdirs)
            with self._step_dir() as (_, upper, _):
                with views.writable(lowerdirs, upper) as root:
                    Copier(root, (who.uid, who.gid), None, None).ensure_dir(workdir)
                self._commit(state, upper, created_by)
        else:
            self._history(state, created_by, True)
        self._record(state, key)
        return False

    def _run(self, state: StageState, ins: Instruction, n: int, k: int) -> bool:
        """RUN in the sandbox; True when served from the cache."""
        cfg = state.config["config"]
        spec = resolve_run(ins, state.vars, cfg.get("Shell") or changes.DEFAULT_SHELL)
        if spec.security != "sandbox":
            raise BuildFailed(f"{ins.where}: RUN --security={spec.security} is not supported by dockyard build")
        network = spec.network if spec.network != "default" else self.options.network
        env = state.vars.run_env()
        cwd = cfg.get("WorkingDir") or "/"
        mount_inputs = []
        for m in spec.mounts:
            if m.type == "bind" and not m.from_:
                found = self.context.mount_source(m.source or ".")
                mount_inputs.append(str(self.context.digest([found], owners=False)))
            elif m.from_:
                mount_inputs.append(self._source(state.stage, m.from_, ins)[0])
        key = step_key(state.parent, "RUN", spec.argv, sorted((k_, v) for k_, v in env.items()
                                                              if k_ not in PROXY_ARGS),
                       [(s.name, s.data, s.mode) for s in spec.scripts], [repr(m) for m in spec.mounts],
                       mount_inputs, self.options.compression)  # as docker's, the network mode is no input
        created_by = "RUN " + " ".join(spec.argv)
        if self._cached(state, key, n):
            return True
        if self._from_cache_images(state, created_by, env, n):
            self._record(state, key)
            return True
        if self._stopping:
            raise BuildFailed(f"{ins.where}: build stopped")
        from builder.run import MountSources, execute
        from runner import binfmt

        spawner = self._fork_server()
        binfmt.ensure(state.platform)  # a foreign platform's RUN: its binaries run under qemu
        sources = MountSources(self.context, self.cache, self.options.secrets, self.ssh,
                               lambda ref: self._rootfs(state.stage, ref, ins))
        cid = "build-" + os.urandom(6).hex()
        with self._step_dir() as (scratch, upper, _):
            self._running.add(cid)
            try:
                with self.progress.stream(n) as out:
                    code = execute(spec, lowerdirs=self._lowerdirs(state), upper=upper, env=env,
                                   user=cfg.get("User") or "", cwd=cwd,
                                   network=network, sources=sources, scratch=scratch, out_fd=out,
                                   container_id=cid, store_root=self.store.root, spawner=spawner,
                                   settings=self.options.run)
            finally:
                self._running.discard(cid)
            if code != 0:
                if self._interrupted():
                    raise BuildCancelled("cancelled")
                if self.progress.quiet:
                    print(self.progress.failed(n), file=sys.stderr)
                where = f"stage {state.label.strip()}: " if state.label else ""
                raise BuildFailed(f"{ins.where}: {where}step {k}/{state.total}: RUN {_one_line(ins.args)}: "
                                  f"exit code {code}")
            self._commit(state, upper, created_by)
        self._record(state, key)
        return False

    # -- COPY / ADD --------------------------------------------------------------------------------------------

    def _source(self, stage: Stage, ref: str, ins: Instruction) -> tuple[str, StageState | Image | str]:
        """A --from / from= value: (cache identity, state) of a stage, an external image or a --build-context
        directory (its path)."""
        directory = self._context(ref, "dir")
        if directory is not None:
            if directory.value not in self._dir_digests:
                reader = BuildContext(directory.value, hashes=self.cache.context_hashes(directory.value))
                self._dir_digests[directory.value] = str(reader.digest(reader.sources(["."]), owners=False))
                reader.save_hashes()
            return self._dir_digests[directory.value], directory.value
        index = lookup(self.df, stage, ref, ins, frozenset(self.options.contexts))
        if index is not None:
            if index not in self.results:
                raise BuildFailed(f"{ins.where}: stage {ref} has not been built")
            st = self.results[index]
            return st.parent, st
        image = self._image(ref)
        return image.id.hex, image

    @contextlib.contextmanager
    def _rootfs(self, stage: Stage, ref: str, ins: Instruction) -> Iterator[str]:
        """The merged root of a stage or image named by --from / from=."""
        src = self._source(stage, ref, ins)[1]
        if isinstance(src, str):  # a --build-context directory, bound as it is (a read-write bind copies it)
            yield src
            return
        from builder import views

        lowerdirs = self._lowerdirs(src) if isinstance(src, StageState) else self.store.lowerdirs(src)
        with views.merged(lowerdirs, self.workspace) as root:
            yield root

    def _owner(self, chown: str | None, lowerdirs: list[str]) -> tuple[int, int]:
        """--chown: names resolved in the stage's /etc/passwd and /etc/group; a lone user means gid = uid."""
        if not chown:
            return 0, 0
        from builder.run import run_user

        user = run_user(chown, lowerdirs)
        return user.uid, (user.gid if ":" in chown else user.uid)

    def _copy(self, state: StageState, ins: Instruction, n: int) -> bool:
        """COPY/ADD into a fresh layer; True when served from the cache."""
        spec = resolve_copy(ins, state.vars)
        add = ins.name == "ADD"
        urls = [s for s in spec.sources if add and _URL_RE.match(s)]
        local = [s for s in spec.sources if s not in urls]
        if spec.keep_git_dir or any(s.startswith("git@") or s.endswith(".git") for s in spec.sources):
            raise BuildFailed(f"{ins.where}: ADD of git repositories is not supported by dockyard build")
        if spec.checksum and (len(urls) != 1 or local):
            raise BuildFailed(f"{ins.where}: ADD --checksum needs exactly one URL source")
        exclude = Ignore(spec.exclude) if spec.exclude else None
        if spec.from_:
            source_id = self._source(state.stage, spec.from_, ins)[0]
            context_sources = []
        else:
            context_sources = self.context.sources(local, ins.name) if local else []
            source_id = str(self.context.digest(context_sources, exclude, owners=False))
        fetched = {}
        if urls and not spec.checksum:
            from builder.fetch import download  # urllib: only for ADD <url>

            fetched = {u: download(u, None, self.workspace) for u in urls}
        url_ids = [spec.checksum] if spec.checksum else [str(f.digest) for f in fetched.values()]
        cfg = state.config["config"]
        key = step_key(state.parent, ins.name, source_id, local, [(f.name, f.data, f.mode) for f in spec.inline],
                       url_ids, spec.dest, spec.chown, spec.chmod, spec.link, spec.parents, spec.exclude,
                       cfg.get("WorkingDir"), self.options.compression)
        try:
            if self._cached(state, key, n):
                return True
            if urls and spec.checksum:
                from builder.fetch import download

                fetched = {urls[0]: download(urls[0], spec.checksum, self.workspace)}
            from builder import views
            from builder.copy import Copier, Item, copy_items, staging_size

            lowerdirs = self._lowerdirs(state)
            owner = self._owner(spec.chown, lowerdirs)
            before = self.cache.get(key)  # a miss, or --no-cache: what the step made last time
            # Written in memory first only when the layer is likely stored already (as last time, unpacked): then
            # the store gets no files at all. A new layer is written on disk straight away, each file once.
            likely_stored = before is not None and bool(before.diff_ids) \
                and os.path.isdir(self.store.layer_dir(chain_ids(before.diff_ids)[-1]))
            memory = staging_size(self.context, context_sources, exclude, spec.inline) \
                if likely_stored and not add and not spec.from_ else 0
            with self._step_dir(memory) as (_, upper, staged), contextlib.ExitStack() as stack:
                items: list[Item] = []
                if spec.from_:
                    root = stack.enter_context(self._rootfs(state.stage, spec.from_, ins))
                    local_dir = self._context(spec.from_, "dir") is not None  # its .dockerignore applies
                    reader = BuildContext(root, None if local_dir else Ignore([]), rootfs=not local_dir)
                    items += [Item(reader, s) for s in reader.sources(local, ins.name)]
                else:
                    items += [Item(self.context, s) for s in context_sources]
                items += [Item(inline=f) for f in spec.inline]
                items += [Item(path=f.path, name=f.name, mode=0o600, mtime_ns=f.mtime_ns) for f in fetched.values()]
                with contextlib.ExitStack() as view:
                    target = upper if spec.link else view.enter_context(views.writable(lowerdirs, upper))
                    copier = Copier(target, owner, spec.chmod, exclude)
                    copy_items(copier, items, spec.dest, cfg.get("WorkingDir") or "/", add=add,
                               parents=spec.parents, instruction=ins.name)
                self._commit(state, upper, f"{ins.name} {_one_line(ins.value, 1000)}", copier.written, staged,
                             before)
            self._record(state, key)
            return False
        finally:
            for f in fetched.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f.path)


def build(options: BuildOptions, store: Store | None = None, progress: Progress | None = None) -> Image:
    """Build per `options`; returns the stored image."""
    return Builder(options, store, progress).build()
