"""Dockerfile parsing, expansion, ARG scoping, flags, RUN/COPY resolution and the stage graph."""

from __future__ import annotations

import io

import pytest
from dockerfile_parse import DockerfileParser

from builder.args import BuildArgs, GlobalScope, StageVars, platform_args
from builder.dockerfile import DockerfileError, parse
from builder.expand import ExpansionError, expand_heredoc, expand_word, expand_words
from builder.mounts import Mount, MountError, parse_mount, parse_size
from builder.resolve import (CopySpec, InlineFile, config_args, env_pairs, resolve_copy, resolve_from, resolve_run,
                             run_argv)
from builder.stages import plan
from dockyard.changes import apply

SH = ["/bin/sh", "-c"]


def instructions(text: str) -> list[tuple]:
    """(NAME, args, flags, [(heredoc name, content, expand)], lineno) for every instruction after FROM."""
    df = parse(text)
    return [(i.name, i.args, i.flags, [(h.name, h.content, h.expand) for h in i.heredocs], i.lineno)
            for s in df.stages for i in s.instructions]


PARSE_CASES = [
    ("plain", "FROM a\nRUN echo hi\n", [("RUN", "echo hi", {}, [], 2)]),
    ("lowercase keyword", "from a\nrun echo hi\n", [("RUN", "echo hi", {}, [], 2)]),
    ("continuation", "FROM a\nRUN echo a \\\n    && echo b\n", [("RUN", "echo a     && echo b", {}, [], 2)]),
    ("continuation with comment and blank lines", "FROM a\nRUN a \\\n# note\n\n   \n  # indented note\n b\nRUN c\n",
     [("RUN", "a  b", {}, [], 2), ("RUN", "c", {}, [], 8)]),
    ("trailing spaces after backslash", "FROM a\nRUN a \\  \nb\n", [("RUN", "a b", {}, [], 2)]),
    ("crlf", "FROM a\r\nRUN a \\\r\nb\r\n", [("RUN", "a b", {}, [], 2)]),
    ("exec form", 'FROM a\nCMD ["echo", "hi there"]\n', [("CMD", '["echo", "hi there"]', {}, [], 2)]),
    ("heredoc", "FROM a\nRUN <<EOF\necho a\n  echo b\nEOF\nRUN x\n",
     [("RUN", "<<EOF", {}, [("EOF", "echo a\n  echo b\n", True)], 2), ("RUN", "x", {}, [], 6)]),
    ("heredoc chomp", "FROM a\nRUN <<-EOF\n\t\techo a\n\tEOF\n",
     [("RUN", "<<-EOF", {}, [("EOF", "echo a\n", True)], 2)]),
    ("heredoc quoted", "FROM a\nRUN <<\"EOF\"\necho $A\nEOF\nRUN <<'X'\n$B\nX\n",
     [("RUN", '<<"EOF"', {}, [("EOF", "echo $A\n", False)], 2), ("RUN", "<<'X'", {}, [("X", "$B\n", False)], 5)]),
    ("heredoc with command", "FROM a\nRUN <<EOF sh -x\nset -e\nEOF\n",
     [("RUN", "<<EOF sh -x", {}, [("EOF", "set -e\n", True)], 2)]),
    ("two heredocs", "FROM a\nRUN <<A cat > /a && <<B cat > /b\n1\nA\n2\nB\n",
     [("RUN", "<<A cat > /a && <<B cat > /b", {}, [("A", "1\n", True), ("B", "2\n", True)], 2)]),
    ("heredoc body keeps backslash and comment lines", "FROM a\nRUN <<EOF\necho a \\\n# not a comment\n\nEOF\n",
     [("RUN", "<<EOF", {}, [("EOF", "echo a \\\n# not a comment\n\n", True)], 2)]),
    ("copy heredoc", "FROM a\nCOPY <<EOF /dest\nhello\nEOF\n",
     [("COPY", "<<EOF /dest", {}, [("EOF", "hello\n", True)], 2)]),
    ("heredoc marker inside quotes is text", "FROM a\nRUN echo '<<EOF'\n", [("RUN", "echo '<<EOF'", {}, [], 2)]),
    ("no heredocs in exec form", 'FROM a\nRUN ["cat", "<<EOF"]\n', [("RUN", '["cat", "<<EOF"]', {}, [], 2)]),
    ("escape directive backtick", "# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo\n",
     [("RUN", "dir c:\\   && echo", {}, [], 3)]),
    ("syntax then escape", "# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN a `\nb\n", [("RUN", "a b", {}, [], 4)]),
    ("escape after blank line is a comment", "\n# escape=`\nFROM a\nRUN a `\n", [("RUN", "a `", {}, [], 4)]),
    ("run flags", "FROM a\nRUN --network=none --mount=type=cache,target=/c --mount=type=tmpfs,target=/t x\n",
     [("RUN", "x", {"network": "none", "mount": ["type=cache,target=/c", "type=tmpfs,target=/t"]}, [], 2)]),
    ("copy flags", "FROM a\nCOPY --from=build --chown=1:2 --chmod=0755 --link --parents --exclude=*.md a b\n",
     [("COPY", "a b", {"from": "build", "chown": "1:2", "chmod": "0755", "link": True, "parents": True,
                       "exclude": ["*.md"]}, [], 2)]),
    ("quoted flag value", 'FROM a\nCOPY --chown="x y" a b\n', [("COPY", "a b", {"chown": "x y"}, [], 2)]),
    ("bool flag false", "FROM a\nCOPY --link=false a b\n", [("COPY", "a b", {"link": False}, [], 2)]),
    ("add flags", "FROM a\nADD --checksum=sha256:00 --keep-git-dir=true --chmod=644 u /d\n",
     [("ADD", "u /d", {"checksum": "sha256:00", "keep-git-dir": True, "chmod": "644"}, [], 2)]),
    ("healthcheck flags", "FROM a\nHEALTHCHECK --interval=5s --retries=3 CMD true\n",
     [("HEALTHCHECK", "CMD true", {"interval": "5s", "retries": "3"}, [], 2)]),
    ("double dash ends flags", "FROM a\nRUN -- --not-a-flag\n", [("RUN", "--not-a-flag", {}, [], 2)]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parse_table(text, expected):
    assert instructions(text) == expected


def test_directives_recorded():
    df = parse("# syntax=docker/dockerfile:1.7\n# ESCAPE = `\nFROM a\n")
    assert (df.syntax, df.escape) == ("docker/dockerfile:1.7", "`")
    assert (parse("FROM a\n# escape=`\n").escape, parse("FROM a\n").syntax) == ("\\", None)


def test_stages_and_global_args():
    df = parse("ARG A=1\nARG B\nFROM --platform=$P img:$A AS Build\nRUN x\nFROM build\nFROM scratch AS out\n")
    assert [(a.key, a.value) for i in df.global_args for a in i.pairs] == [("A", "1"), ("B", None)]
    assert [(s.index, s.name, s.base, s.platform) for s in df.stages] == [
        (0, "build", "img:$A", "$P"), (1, None, "build", None), (2, "out", "scratch", None)]
    assert df.stage("BUILD") is df.stages[0] and df.stage("2") is df.stages[2] and df.stage("x") is None


def test_onbuild_trigger_and_original_text():
    df = parse("FROM a\nONBUILD RUN --network=none echo $X\nRUN <<EOF\nx\nEOF\n")
    onbuild, run = df.stages[0].instructions
    assert onbuild.trigger.name == "RUN" and onbuild.trigger.flags == {"network": "none"}
    assert onbuild.trigger.args == "echo $X"
    assert run.original == "RUN <<EOF\nx\nEOF" and (run.lineno, run.end_lineno) == (3, 5)


def test_env_label_arg_pairs():
    df = parse('FROM a\nENV A=1 B="two words" C=\nENV LEGACY some value\nLABEL "k"=v\nARG X Y=2\n')
    env1, env2, label, arg = df.stages[0].instructions
    assert [(p.key, p.value) for p in env1.pairs] == [("A", "1"), ("B", '"two words"'), ("C", "")]
    assert [(p.key, p.value) for p in env2.pairs] == [("LEGACY", "some value")]
    assert [(p.key, p.value) for p in label.pairs] == [('"k"', "v")]
    assert [(p.key, p.value) for p in arg.pairs] == [("X", None), ("Y", "2")]


ERROR_CASES = [
    ("FROM a\n\n\nRUNN x\n", "Dockerfile:4: unknown instruction: RUNN (did you mean RUN?)"),
    ("FROM a\nRUN --mnt=type=cache x\n", "Dockerfile:2: unknown flag: --mnt for RUN"),
    ("FROM a\nCMD --verbose\n", "Dockerfile:2: unknown flag: --verbose for CMD"),
    ("FROM a\nCOPY --from a b\n", "Dockerfile:2: missing a value on flag: --from"),
    ("FROM a\nCOPY --from=x --from=y a b\n", "Dockerfile:2: duplicate flag specified: --from"),
    ("FROM a\nCOPY --link=maybe a b\n", "Dockerfile:2: expecting boolean value for flag --link"),
    ("RUN x\nFROM a\n", "Dockerfile:1: RUN before the first FROM"),
    ("ARG A\n", "Dockerfile: no FROM instruction"),
    ("# just a comment\n", "Dockerfile: no FROM instruction"),
    ("", "Dockerfile: the Dockerfile is empty"),
    ("FROM a\nRUN <<EOF\necho\n", "Dockerfile:2: unterminated heredoc 'EOF'"),
    ("FROM a\nRUN <<A <<B\n1\nA\n", "Dockerfile:2: unterminated heredoc 'B'"),
    ("FROM a\nCOPY onlyone\n", "Dockerfile:2: COPY requires at least two arguments"),
    ("FROM a\nCOPY <<EOF\nx\nEOF\n", "Dockerfile:2: COPY requires at least two arguments"),
    ("FROM a\nCOPY a <<EOF\nx\nEOF\n", "Dockerfile:2: COPY cannot accept a heredoc as a destination"),
    ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", "Dockerfile:1: invalid name for build stage"),
    ("FROM a AS x\nFROM b AS X\n", "Dockerfile:2: duplicate stage name 'x'"),
    ("FROM a\nRUN\n", "Dockerfile:2: RUN requires at least one argument"),
    ("FROM a\nSHELL /bin/bash -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
    ("FROM a\nENV A\n", "Dockerfile:2: ENV must have two arguments"),
    ("FROM a\nENV A=1 B\n", "Dockerfile:2: syntax error: can't find = in 'B'"),
    ("FROM a\nHEALTHCHECK --retries=3 NONE\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
    ("FROM a\nHEALTHCHECK true\n", "Dockerfile:2: HEALTHCHECK requires CMD"),
    ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nONBUILD RUNX\n", "Dockerfile:2: unknown instruction: RUNX"),
    ("FROM a\nRUN --network=bridge x\n", "Dockerfile:2: invalid --network=bridge"),
    ("FROM a\nRUN --mount=type=nfs,target=/x x\n", "Dockerfile:2: unsupported mount type 'nfs'"),
    ("FROM a\nRUN --mount=type=cache x\n", "Dockerfile:2: cache mount requires a target"),
    ("FROM a\nRUN --mount=type=bind,target=/x,size=1m x\n", "Dockerfile:2: unexpected key 'size' for mount type"),
    ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x'"),
    ("# escape=`\n# escape=\\\nFROM a\n", "Dockerfile:2: only one escape parser directive can be used"),
]


@pytest.mark.parametrize("text,message", ERROR_CASES)
def test_errors_name_the_line(text, message):
    with pytest.raises(DockerfileError) as e:
        parse(text)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_error_uses_the_given_filename():
    with pytest.raises(DockerfileError, match=r"^app\.Dockerfile:2: unknown instruction"):
        parse("FROM a\nBOGUS\n", filename="app.Dockerfile")


DIFFERENTIAL = [
    "FROM a\nRUN echo hi\n",
    "FROM a AS b\nRUN apt-get update && \\\n    apt-get install -y x \\\n # why\n    y\nCMD [\"a\"]\n",
    "FROM a\nLABEL a=b \\\n  c=d\nENV X=1\nEXPOSE 80/tcp 443\nUSER nobody\nWORKDIR /app\n",
    "# escape=`\nFROM a\nRUN dir `\n  c:\\\nCOPY a b\n",
    "ARG V=1\nFROM a:$V\nHEALTHCHECK --interval=1s CMD true\nONBUILD RUN x\nSTOPSIGNAL SIGTERM\n",
]


@pytest.mark.parametrize("text", DIFFERENTIAL)
def test_agrees_with_dockerfile_parse(text):
    """Where dockerfile-parse is right (no heredocs, no blank continuation lines), we agree with it."""
    theirs = [(d["instruction"], d["value"], d["startline"] + 1)
              for d in DockerfileParser(fileobj=io.BytesIO(text.encode())).structure if d["instruction"] != "COMMENT"]
    df = parse(text)
    ours = [(i.name, i.value, i.lineno) for i in df.global_args]
    for s in df.stages:
        ours += [(s.from_instruction.name, s.from_instruction.value, s.from_instruction.lineno)]
        ours += [(i.name, i.value, i.lineno) for i in s.instructions]
    assert ours == theirs


ENV = {"A": "a", "EMPTY": "", "SPACE": "x  y", "B": "b"}
EXPAND_CASES = [
    ("$A", "a"), ("${A}", "a"), ("pre${A}post", "preapost"), ("$A$B", "ab"),
    ("${UNSET}", ""), ("$UNSET-x", "-x"),
    ("${A:-d}", "a"), ("${EMPTY:-d}", "d"), ("${UNSET:-d}", "d"),
    ("${A-d}", "a"), ("${EMPTY-d}", ""), ("${UNSET-d}", "d"),
    ("${A:+p}", "p"), ("${EMPTY:+p}", ""), ("${UNSET:+p}", ""),
    ("${A+p}", "p"), ("${EMPTY+p}", "p"), ("${UNSET+p}", ""),
    ("${UNSET:-${A}}", "a"), ("${UNSET:-${ALSO:-deep}}", "deep"), ("${A:+${B}x}", "bx"),
    ("${UNSET:-two words}", "two words"), ('${UNSET:-"q}"}', "q}"),
    ("\\$A", "$A"), ("\\${A}", "${A}"), ("\\\\$A", "\\a"), ("'$A'", "$A"), ('"$A"', "a"), ('"\\$A"', "$A"),
    ("'a'\"b\"c", "abc"), ('"it\'s"', "it's"), ("a\\ b", "a b"), ("$", "$"), ("a$ b", "a$ b"), ("$1x", "x"),
    ("$A.txt", "a.txt"), ("${A}_1", "a_1"), ("$A_1", ""),
]


@pytest.mark.parametrize("word,expected", EXPAND_CASES)
def test_expand_word(word, expected):
    assert expand_word(word, ENV) == expected


def test_expand_words_splits_unquoted_values():
    assert expand_words('$SPACE "$SPACE" z\\ w "" end', ENV) == ["x", "y", "x  y", "z w", "", "end"]


def test_expand_with_backtick_escape():
    assert expand_word("`$A \\$A", ENV, escape="`") == "$A \\a"


def test_expand_heredoc_keeps_quotes():
    assert expand_heredoc("'$A' \"$B\" \\$A \\n ${UNSET:-'d'}\n", ENV) == "'a' \"b\" $A \\n 'd'\n"


@pytest.mark.parametrize("word,message", [
    ("${UNSET?must be set}", "UNSET: must be set"), ("${EMPTY:?}", "EMPTY: is not allowed to be unset"),
    ("${A", "missing '}'"), ("${}", "bad substitution"), ("${A%x}", "unsupported modifier (%)"),
    ("'open", "matching single-quote"), ('"open', "matching double-quote"),
])
def test_expansion_errors(word, message):
    with pytest.raises(ExpansionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        expand_word(word, ENV)


def stage_vars(text: str, build_args=None, stage: int = 0, automatic=None) -> StageVars:
    """Apply a stage's ARG and ENV lines and return its variables."""
    df = parse(text)
    scope = GlobalScope(df, BuildArgs(dict(build_args or {}), dict(automatic or {})))
    vars = StageVars(scope, ["PATH=/bin"])
    for ins in df.stages[stage].instructions:
        if ins.name == "ARG":
            vars.declare(ins)
        elif ins.name == "ENV":
            vars.set_env(env_pairs(ins, vars))
    return vars


ARG_CASES = [
    ("global ARG not visible without re-declaration", "ARG V=g\nFROM a\n", {}, {"PATH": "/bin"}),
    ("re-declared global ARG takes the global value", "ARG V=g\nFROM a\nARG V\n", {}, {"PATH": "/bin", "V": "g"}),
    ("in-stage default wins over global", "ARG V=g\nFROM a\nARG V=s\n", {}, {"PATH": "/bin", "V": "s"}),
    ("build arg wins over in-stage default", "ARG V=g\nFROM a\nARG V=s\n", {"V": "b"}, {"PATH": "/bin", "V": "b"}),
    ("build arg wins over global", "ARG V=g\nFROM a\nARG V\n", {"V": "b"}, {"PATH": "/bin", "V": "b"}),
    ("undeclared build arg is invisible", "FROM a\n", {"V": "b"}, {"PATH": "/bin"}),
    ("declared without value and not given is unset", "FROM a\nARG V\n", {}, {"PATH": "/bin"}),
    ("ARG default expands earlier ARGs", "FROM a\nARG A=1\nARG B=${A}2\n", {}, {"PATH": "/bin", "A": "1", "B": "12"}),
    ("ENV wins over ARG", "FROM a\nARG V=arg\nENV V=env\n", {"V": "b"}, {"PATH": "/bin", "V": "env"}),
    ("ENV uses base image env", "FROM a\nENV PATH=/x:$PATH\n", {}, {"PATH": "/x:/bin"}),
    ("ENV on one line sees earlier values only", "FROM a\nENV A=1\nENV A=2 B=$A\n", {}, {"PATH": "/bin", "A": "2", "B": "1"}),
    ("second stage does not see first stage ARG", "FROM a\nARG V=1\nFROM b\nARG V\n", {}, {"PATH": "/bin"}),
]


@pytest.mark.parametrize("text,build_args,expected", [c[1:] for c in ARG_CASES], ids=[c[0] for c in ARG_CASES])
def test_arg_scoping(text, build_args, expected):
    stage = 1 if text.count("FROM") > 1 else 0
    assert stage_vars(text, build_args, stage).mapping() == expected


def test_global_args_expand_from_and_platform_args():
    df = parse("ARG TAG=3\nARG IMG=alpine:${TAG}\nFROM --platform=$BUILDPLATFORM $IMG AS b\nARG TARGETARCH\n")
    args = BuildArgs({"TAG": "4"}, platform_args("linux/arm64/v8", "linux/amd64"))
    scope = GlobalScope(df, args)
    assert resolve_from(df.stages[0], scope).base == "alpine:4"
    assert resolve_from(df.stages[0], scope).platform == "linux/amd64"
    vars = StageVars(scope)
    vars.declare(df.stages[0].instructions[0])
    assert vars.mapping() == {"TARGETARCH": "arm64"}
    assert args.unused() == []


def test_proxy_args_reach_run_without_declaration_and_unused_args_reported():
    df = parse("FROM a\nARG USED\nRUN env\n")
    args = BuildArgs({"HTTP_PROXY": "http://p:3128", "no_proxy": "x", "USED": "1", "EXTRA": "2"})
    vars = StageVars(GlobalScope(df, args))
    vars.declare(df.stages[0].instructions[0])
    assert vars.run_env() == {"HTTP_PROXY": "http://p:3128", "no_proxy": "x", "USED": "1"}
    assert "HTTP_PROXY" not in vars.mapping()
    assert args.unused() == ["EXTRA"]


def resolve(text: str, build_args=None):
    """Parse one stage, declare its ARGs/ENVs, and return (last instruction, vars)."""
    df = parse(text)
    vars = StageVars(GlobalScope(df, BuildArgs(dict(build_args or {}))))
    *setup, last = df.stages[0].instructions
    for ins in setup:
        vars.declare(ins) if ins.name == "ARG" else vars.set_env(env_pairs(ins, vars))
    return last, vars


RUN_CASES = [
    ("RUN echo $HOME", SH + ["echo $HOME"], []),
    ('RUN ["echo", "$HOME"]', ["echo", "$HOME"], []),
    ("RUN <<EOF\necho $A\nEOF", SH + ["echo $A\n"], []),
    ("RUN <<-EOF\n\techo a\n\tEOF", SH + ["echo a\n"], []),
    ("RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF", ["/dev/pipes/EOF"],
     [InlineFile("EOF", "#!/usr/bin/env python3\nprint(1)\n", 0o755)]),
    ("RUN <<EOF sh -e\necho a\nEOF", SH + ["<<EOF sh -e\necho a\nEOF"], []),
    ("RUN <<'A' cat >/a && <<-B cat >/b\n$x\nA\n\ty\n\tB", SH + ["<<'A' cat >/a && <<-B cat >/b\n$x\nA\n\ty\nB"], []),
]


@pytest.mark.parametrize("text,argv,scripts", RUN_CASES)
def test_run_argv(text, argv, scripts):
    ins, _ = resolve("FROM a\n" + text + "\n")
    assert run_argv(ins, SH) == (argv, scripts)


def test_run_mounts_are_expanded_and_command_is_not():
    ins, vars = resolve("FROM a\nARG C=/cache\nARG S=b\n"
                        "RUN --network=host --mount=type=cache,target=$C,id=x,sharing=locked,mode=0700,uid=1 "
                        "--mount=type=bind,from=$S,source=/src,target=/s,rw --mount=type=secret,id=tok,required "
                        "--mount=type=tmpfs,target=/t,size=64m echo $C\n")
    spec = resolve_run(ins, vars, SH)
    assert spec.argv == SH + ["echo $C"] and spec.network == "host"
    assert spec.mounts == [
        Mount("cache", target="/cache", id="x", sharing="locked", readonly=False, mode=0o700, uid=1),
        Mount("bind", target="/s", source="/src", from_="b", readonly=False),
        Mount("secret", target="/run/secrets/tok", id="tok", readonly=True, required=True, mode=0o400),
        Mount("tmpfs", target="/t", size=64 << 20),
    ]


def test_run_mount_error_after_expansion_names_the_line():
    ins, vars = resolve("FROM a\nARG T=nfs\nRUN --mount=type=$T,target=/x true\n")
    with pytest.raises(DockerfileError, match=r"^Dockerfile:3: unsupported mount type 'nfs'"):
        resolve_run(ins, vars, SH)


MOUNT_CASES = [
    ("target=/x", Mount("bind", target="/x", readonly=True)),
    ("type=bind,src=a,dst=/x,ro=false", Mount("bind", target="/x", source="a", readonly=False)),
    ("type=cache,target=/c", Mount("cache", target="/c", id="/c", sharing="shared")),
    ("type=cache,target=/c,ro", Mount("cache", target="/c", id="/c", sharing="shared", readonly=True)),
    ("type=secret,target=/run/k", Mount("secret", target="/run/k", id="k", readonly=True, mode=0o400)),
    ("type=secret,id=t,env=TOKEN", Mount("secret", id="t", env="TOKEN", readonly=True, mode=0o400)),
    ("type=ssh", Mount("ssh", target="/run/buildkit/ssh_agent.0", id="default", readonly=True, mode=0o600)),
    ("type=tmpfs,target=rel", Mount("tmpfs", target="rel")),
]


@pytest.mark.parametrize("spec,mount", MOUNT_CASES)
def test_parse_mount(spec, mount):
    assert parse_mount(spec) == mount


@pytest.mark.parametrize("spec,message", [
    ("type=cache,target=/c,sharing=bogus", "invalid cache sharing"), ("type=bind,target=/x,id=1", "unexpected key 'id'"),
    ("type=secret,source=a,id=b", "both source and id"), ("type=secret", "requires an id or a target"),
    ("type=bind,target=/x,ro=maybe", "invalid boolean"), ("type=cache,target=/c,uid=x", "invalid value 'x'"),
    ("type=tmpfs,target=/t,size=lots", "invalid size"), ("target", "must be a key=value pair"),
])
def test_parse_mount_errors(spec, message):
    with pytest.raises(MountError, match=message):
        parse_mount(spec)


def test_parse_size():
    assert [parse_size(s) for s in ("1024", "1k", "64m", "1GiB", "1.5g")] == [1024, 1024, 64 << 20, 1 << 30, 3 << 29]


def test_resolve_copy():
    ins, vars = resolve("FROM a\nARG D=/dst F=st U=app\n"
                        "COPY --from=build-$F --chown=$U:$U --chmod=0640 --exclude=*.$F src/$F.txt \"a b\" <<A <<'B' $D/\n"
                        "hello $U\nA\nraw $U\nB\n")
    assert resolve_copy(ins, vars) == CopySpec(
        sources=["src/st.txt", "a b"], inline=[InlineFile("A", "hello app\n", 0o644), InlineFile("B", "raw $U\n", 0o644)],
        dest="/dst/", from_="build-st", chown="app:app", chmod=0o640, exclude=["*.st"])


def test_resolve_copy_exec_form_and_add_flags():
    ins, vars = resolve('FROM a\nARG X=1\nADD --checksum=sha256:$X --keep-git-dir --link ["a $X", "/d"]\n')
    spec = resolve_copy(ins, vars)
    assert (spec.sources, spec.dest, spec.checksum, spec.keep_git_dir, spec.link) == (["a 1"], "/d", "sha256:1", True, True)


def test_resolve_copy_bad_chmod():
    ins, vars = resolve("FROM a\nCOPY --chmod=u+x a b\n")
    with pytest.raises(DockerfileError, match="^Dockerfile:2: invalid --chmod=u\\+x"):
        resolve_copy(ins, vars)


CONFIG_CASES = [
    ('ENV A=$X B="two words" C=\'$X\'', {"Env": ["A=1", "B=two words", "C=$X"]}),
    ("ENV LEGACY $X and more", {"Env": ["LEGACY=1 and more"]}),
    ('LABEL "k $X"=v$X', {"Labels": {"k 1": "v1"}}),
    ("EXPOSE ${X}0 $X0 ${X}1/udp", {"ExposedPorts": {"10/tcp": {}, "11/udp": {}}}),
    ("VOLUME /v$X /w", {"Volumes": {"/v1": {}, "/w": {}}}),
    ('VOLUME ["/v$X"]', {"Volumes": {"/v1": {}}}),
    ("USER u$X", {"User": "u1"}),
    ('WORKDIR "/w $X"', {"WorkingDir": "/w 1"}),
    ("STOPSIGNAL SIG$X", {"StopSignal": "SIG1"}),
    ("CMD echo $X", {"Cmd": ["/bin/sh", "-c", "echo $X"]}),
    ('ENTRYPOINT ["echo", "$X"]', {"Entrypoint": ["echo", "$X"]}),
    ("HEALTHCHECK --retries=2 CMD check $X", {"Healthcheck": {"Test": ["CMD-SHELL", "check $X"], "Retries": 2}}),
    ("ONBUILD RUN echo $X", {"OnBuild": ["RUN echo $X"]}),
]


@pytest.mark.parametrize("line,expected", CONFIG_CASES)
def test_config_args_feed_changes_apply(line, expected):
    ins, vars = resolve("FROM a\nARG X=1\n" + line + "\n")
    config: dict = {}
    apply(config, ins.name, config_args(ins, vars))
    assert config == expected


STAGES = """\
ARG BASE=alpine
FROM $BASE AS deps
RUN true
FROM deps AS build
ARG FROM_STAGE=deps
COPY --from=$FROM_STAGE /x /x
FROM busybox AS tools
FROM scratch AS broken
COPY --from=no/such/stage:latest /a /b
COPY --from=7 /a /b
FROM build AS test
RUN --mount=type=bind,from=tools,target=/t true
COPY --from=0 /x /y
FROM scratch
COPY --from=build /x /x
COPY --from=tools /bin /bin
"""


def test_plan_default_target():
    p = plan(parse(STAGES), BuildArgs({"BASE": "debian"}))
    assert [s.ref for s in p.order] == ["deps", "build", "tools", "5"]
    assert p.waves == [[0, 2], [1], [5]]
    assert p.refs[0].images == {"debian"} and p.refs[1].base_stage == 0 and p.refs[1].stages == {0}
    assert p.refs[5].stages == {1, 2} and p.refs[5].images == set()


def test_plan_named_target_skips_unused_broken_stage():
    p = plan(parse(STAGES), BuildArgs(), target="test")
    assert [s.ref for s in p.order] == ["deps", "build", "tools", "test"]
    assert p.waves == [[0, 2], [1], [4]]


@pytest.mark.parametrize("target,message", [
    ("broken", "Dockerfile:10: invalid from flag value 7: refers to current or future build stage"),
    ("nosuch", "Dockerfile: target stage 'nosuch' could not be found"),
])
def test_plan_errors(target, message):
    with pytest.raises(DockerfileError, match="^" + message):
        plan(parse(STAGES), BuildArgs(), target=target)


def test_plan_cycle_and_self_reference():
    with pytest.raises(DockerfileError, match="circular dependency between stages: a -> b -> a"):
        plan(parse("FROM x AS a\nCOPY --from=b / /\nFROM x AS b\nCOPY --from=a / /\n"), BuildArgs(), "a")
    with pytest.raises(DockerfileError, match="^Dockerfile:2: stage 'a' cannot copy from itself"):
        plan(parse("FROM x AS a\nCOPY --from=a / /\n"), BuildArgs())
    with pytest.raises(DockerfileError, match="^Dockerfile:1: invalid reference format"):
        plan(parse("FROM Bad:Image::x\n"), BuildArgs())


def test_from_later_stage_name_is_an_image():
    p = plan(parse("FROM later AS first\nFROM x AS later\n"), BuildArgs(), target="first")
    assert p.refs[0].images == {"later"} and p.refs[0].stages == set()
