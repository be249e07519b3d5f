"""The stage graph: which stages a target needs (FROM <stage>, COPY --from, RUN --mount from=), in what order,
and which can run side by side. Stages the target does not need are never examined beyond parsing."""

from __future__ import annotations

from dataclasses import dataclass, field

from builder.args import BuildArgs, GlobalScope, StageVars
from builder.dockerfile import Dockerfile, DockerfileError, Instruction, Stage
from builder.resolve import FromSpec, env_pairs, resolve_from, resolve_mounts
from dockyard import reference
from dockyard.errors import InvalidReference


@dataclass
class StageRefs:
    """What one stage depends on: other stages (by index) and external images (by reference text)."""

    base: FromSpec
    base_stage: int | None = None
    stages: set[int] = field(default_factory=set)
    images: set[str] = field(default_factory=set)


@dataclass
class StagePlan:
    """The stages to build for a target, dependencies first, with the parallel waves they fall into."""

    target: Stage
    order: list[Stage]
    refs: dict[int, StageRefs]
    waves: list[list[int]]


def lookup(df: Dockerfile, stage: Stage, ref: str, ins: Instruction, named: frozenset[str] = frozenset()) -> int | None:
    """A `--from`/`from=` value as a stage index, or None when it names an image or a --build-context (which
    overrides a stage of the same name, as in BuildKit)."""
    if ref.lower() in named:
        return None
    if ref.isdigit():
        index = int(ref)
        if index >= stage.index:
            raise ins.error(f"invalid from flag value {ref}: refers to current or future build stage")
        return index
    found = df.stage(ref)
    if found is stage:
        raise ins.error(f"stage {stage.ref!r} cannot copy from itself")
    if found is not None:
        return found.index
    try:
        reference.parse(ref)
    except InvalidReference as e:
        raise ins.error(f"--from={ref}: not a build stage, and not an image reference: {e}") from None
    return None


def stage_refs(df: Dockerfile, stage: Stage, scope: GlobalScope, named: frozenset[str] = frozenset(),
               triggers: list[Instruction] | None = None) -> StageRefs:
    """Find a stage's dependencies, expanding ARG/ENV as far as the Dockerfile alone allows (the base
    image's own ENV is not known yet, so a --from that needs it resolves as if it were unset). `named`: the
    --build-context names; `triggers`: the base image's ONBUILD instructions, run first."""
    base = resolve_from(stage, scope)
    refs = StageRefs(base)
    earlier = None if base.base.lower() in named else \
        next((s for s in df.stages[:stage.index] if s.name == base.base.lower()), None)
    if earlier is not None:
        refs.base_stage = earlier.index
        refs.stages.add(earlier.index)
    elif base.base != "scratch":
        try:
            reference.parse(base.base)
        except InvalidReference as e:
            raise stage.from_instruction.error(str(e)) from None
        refs.images.add(base.base)
    vars = StageVars(scope)
    for ins in [*(triggers or []), *stage.instructions]:
        froms: list[str] = []
        if ins.name == "ARG":
            vars.declare(ins)
        elif ins.name == "ENV":
            vars.set_env(env_pairs(ins, vars))
        elif ins.name == "COPY" and (source := ins.flag("from")):
            froms.append(vars.word(source))
        elif ins.name == "RUN":
            froms.extend(m.from_ for m in resolve_mounts(ins, vars) if m.from_)
        for ref in froms:
            index = lookup(df, stage, ref, ins, named)
            (refs.stages.add(index) if index is not None else refs.images.add(ref))
    return refs


def plan(df: Dockerfile, build_args: BuildArgs, target: str | None = None, named: frozenset[str] = frozenset(),
         triggers: dict[int, list[Instruction]] | None = None) -> StagePlan:
    """Stages needed for `target` (default: the last), in dependency order, grouped into parallel waves;
    `named` and `triggers` (by stage index) as stage_refs takes them."""
    goal: Stage | None
    if target is None:
        goal = df.stages[-1]
    else:
        goal = df.stage(target) if not target.isdigit() else None
        if goal is None:
            names = ", ".join(s.name for s in df.stages if s.name) or "none"
            raise DockerfileError(f"{df.filename}: target stage {target!r} could not be found (stages: {names})")
    scope = GlobalScope(df, build_args)
    refs: dict[int, StageRefs] = {}
    order: list[Stage] = []
    visiting: list[int] = []

    def visit(stage: Stage) -> None:
        if stage.index in visiting:
            cycle = " -> ".join(df.stages[i].ref for i in visiting[visiting.index(stage.index):])
            raise DockerfileError(f"{df.filename}: circular dependency between stages: {cycle} -> {stage.ref}")
        if stage.index in refs:
            return
        visiting.append(stage.index)
        refs[stage.index] = stage_refs(df, stage, scope, named, (triggers or {}).get(stage.index))
        for dep in sorted(refs[stage.index].stages):
            visit(df.stages[dep])
        visiting.pop()
        order.append(stage)

    visit(goal)
    level: dict[int, int] = {}
    for stage in order:
        level[stage.index] = 1 + max((level[d] for d in refs[stage.index].stages), default=-1)
    waves = [sorted(i for i, lv in level.items() if lv == n) for n in range(max(level.values()) + 1)]
    return StagePlan(goal, order, refs, waves)
