"""Interpolation and .env files as docker compose documents them: every operator, nesting, `$$`, errors, warnings,
quoting in .env, and which source wins (process environment over --env-file over .env)."""

from __future__ import annotations

import pytest

from compose.dotenv import parse
from compose.errors import ComposeError
from compose.interpolate import Interpolator

ENV = {"SET": "value", "EMPTY": "", "OTHER": "other"}


def sub(template: str, env: dict[str, str] | None = None) -> str:
    return Interpolator((ENV if env is None else env).get).text(template)


@pytest.mark.parametrize(("template", "expected"), [
    ("$SET", "value"),
    ("${SET}", "value"),
    ("a${SET}b$SET.c", "avaluebvalue.c"),
    ("${UNSET:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"),
    ("${SET:-dflt}", "value"),
    ("${UNSET-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""),
    ("${SET:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${UNSET:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${UNSET:-${OTHER}}", "other"),
    ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
    ("${UNSET:-a}-${SET}", "a-value"),
    ("$$SET", "$SET"),
    ("$${SET}", "${SET}"),
    ("cost: $$5", "cost: $5"),
    ("${SET:?must be set}", "value"),
    ("${EMPTY?may be empty}", ""),
    ("${UNSET:-with spaces and : colons}", "with spaces and : colons"),
    ("no variables", "no variables"),
    ("costs $5, a $ alone", "costs $5, a $ alone"),
    ("${UNSET-err?msg}", "err?msg"),  # the first operator after the name is the one
    ("${SET?bar-baz}", "value"),
    ("${UNSET:-/non:-alphanumeric}", "/non:-alphanumeric"),
    ("${UNSET-${SET} ${SET}}", "value value"),
    ("${SET+$OTHER ${SET:+second}}", "other second"),
])
def test_substitution(template, expected):
    assert sub(template) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("${UNSET:?please set it}", "required variable UNSET is missing a value: please set it"),
    ("${EMPTY:?not empty}", "required variable EMPTY is missing a value: not empty"),
    ("${UNSET?}", "required variable UNSET is missing a value"),
    ("${UNSET:?${SET} needed}", "required variable UNSET is missing a value: value needed"),
    ("${SET", "missing closing brace"),
    ("${}", "invalid interpolation format"),
    ("${1A}", "invalid interpolation format"),
    ("${SET!x}", "invalid interpolation format"),
])
def test_substitution_errors(template, message):
    with pytest.raises(ComposeError, match=message.replace("$", r"\$").replace("{", r"\{")):
        sub(template)


def test_unset_variable_warns_once(capsys):
    interp = Interpolator({}.get)
    assert interp.text("$NOPE-${NOPE}") == "-"
    err = capsys.readouterr().err
    assert err == 'WARN: The "NOPE" variable is not set. Defaulting to a blank string.\n'


def test_defaults_are_lazy(capsys):
    """Only the branch taken is substituted: an unused default neither warns nor fails."""
    assert Interpolator({}.get).text("${NOPE:-x}") == "x"
    assert Interpolator({}.get).text("${A:+${A},}B") == "B"
    assert Interpolator({"A": "v"}.get).text("${A?${B}}${A:-${C:?never}}") == "vv"
    assert capsys.readouterr().err == ""
    assert Interpolator({}.get).text("${A:-${B}}") == ""
    assert capsys.readouterr().err == 'WARN: The "B" variable is not set. Defaulting to a blank string.\n'


DOTENV = r"""
# a comment
PLAIN=plain value   # trailing comment
export EXPORTED=yes
SINGLE='literal $PLAIN \n # not a comment'
DOUBLE="tab\there ${PLAIN} \$NOT"
MULTI="line1
line2"
EMPTY=
SPACED = around
INHERITED
MISSING_INHERITED
REF=${PLAIN}-$FROM_PROCESS
HASH=a#b
COLON: value
"""


def test_dotenv_syntax():
    out = parse(DOTENV, {"INHERITED": "from process", "FROM_PROCESS": "p"}.get)
    assert out == {
        "PLAIN": "plain value",
        "EXPORTED": "yes",
        "SINGLE": "literal $PLAIN \\n # not a comment",
        "DOUBLE": "tab\there plain value $NOT",
        "MULTI": "line1\nline2",
        "EMPTY": "",
        "SPACED": "around",
        "INHERITED": "from process",
        "REF": "plain value-p",
        "HASH": "a#b",
        "COLON": "value",
    }


# One line each, with the key and value docker compose's dotenv parser (compose-go) gives for it.
DOTENV_LINES = [
    ("FOO=bar", "FOO", "bar"),
    ("FOO =bar", "FOO", "bar"),
    ("FOO= bar", "FOO", "bar"),
    ('FOO="bar"', "FOO", "bar"),
    ("FOO='bar'", "FOO", "bar"),
    (r'FOO="escaped\"bar"', "FOO", 'escaped"bar'),
    (r'FOO="\"quoted\""', "FOO", '"quoted"'),
    ("FOO=\"'d'\"", "FOO", "'d'"),
    ("OPTION_A: 1", "OPTION_A", "1"),
    ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
    ("OPTION_A=1:B", "OPTION_A", "1:B"),
    ("export OPTION_A=2", "OPTION_A", "2"),
    (r"export OPTION_B='\n'", "OPTION_B", "\\n"),
    ("export exportFoo=2", "exportFoo", "2"),
    ("exportFOO=2", "exportFOO", "2"),
    ("export_FOO =2", "export_FOO", "2"),
    ("export.FOO= 2", "export.FOO", "2"),
    ("export\tOPTION_A=2", "OPTION_A", "2"),
    ("  export OPTION_A=2", "OPTION_A", "2"),
    ("\texport OPTION_A=2", "OPTION_A", "2"),
    ('export OPTION_A="export A"', "OPTION_A", "export A"),
    (r'FOO="bar\nbaz"', "FOO", "bar\nbaz"),
    (r"FOO=a\tb", "FOO", r"a\tb"),
    (r'FOO="a\tb"', "FOO", "a\tb"),
    (r'KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z"', "KEY", "Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\ZSZ"),
    ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
    ("FOO=foobar=", "FOO", "foobar="),
    ("FOO=bar ", "FOO", "bar"),
    ("FOO=bar # this is foo", "FOO", "bar"),
    ("FOO=bar #this is foo", "FOO", "bar"),
    ("FOO=bar #", "FOO", "bar"),
    ("FOO=123#not-an-inline-comment", "FOO", "123#not-an-inline-comment"),
    ('FOO="bar#baz"', "FOO", "bar#baz"),
    ('FOO="bar#baz"#', "FOO", "bar#baz"),
    ('FOO="bar#baz" # comment', "FOO", "bar#baz"),
    ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
    ('FOO="bar#baz#bang" # comment', "FOO", "bar#baz#bang"),
    ('FOO="ba#r"', "FOO", "ba#r"),
    ("FOO='ba#r'", "FOO", "ba#r"),
    (r'FOO="bar\n\ b\az"', "FOO", "bar\n\\ b\az"),
    (r'FOO="bar\\\n\ b\az"', "FOO", "bar\\\n\\ b\az"),
    (r'FOO="bar\\r\ b\az"', "FOO", "bar\\r\\ b\az"),
    (r'FOO="bar\nbaz\\"', "FOO", "bar\nbaz\\"),
    ('="value"', "", "value"),
    (" KEY =value", "KEY", "value"),
    ("   KEY=value", "KEY", "value"),
    ("\tKEY=value", "KEY", "value"),
    (r'KEY="\0123"', "KEY", "S"),
    (r'KEY="\x07"', "KEY", r"\x07"),
    (r'KEY="\u12e4"', "KEY", r"\u12e4"),
    (r'KEY="\U00101234"', "KEY", r"\U00101234"),
]


@pytest.mark.parametrize(("text", "key", "value"), DOTENV_LINES)
def test_dotenv_line(text, key, value):
    assert parse(text, {}.get) == {key: value}


@pytest.mark.parametrize(("text", "message"), [
    ("lol$wut", 'line 1: invalid variable name "lol\\$wut"'),
    ('A="unterminated\n', "line 1: unterminated quoted value"),
    ("\n\nBAD KEY=1\n", "line 3: invalid variable name"),
    ("A=${B:?need B}\n", "line 1: required variable B is missing a value: need B"),
])
def test_dotenv_errors(text, message):
    with pytest.raises(ComposeError, match=message):
        parse(text, {}.get)


COMPOSE = """
services:
  app:
    image: "busybox:${TAG:-latest}"
    environment:
      FROM_DOTENV: $FROM_DOTENV
      OVERRIDDEN: $OVERRIDDEN
      LATER: ${LATER}
      UNSET: x${NOT_SET_ANYWHERE}y
      ESCAPED: $$HOME
      NAME: ${COMPOSE_PROJECT_NAME}
"""


def test_variable_sources_through_the_cli(dockyard, tmp_path):
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / ".env").write_text("TAG=1.36\nFROM_DOTENV=dotenv\nOVERRIDDEN=dotenv\nLATER=dotenv\n")
    (tmp_path / "extra.env").write_text("LATER=extra\n")
    compose = ("compose", "-p", "proj", "--project-directory", str(tmp_path))
    res = dockyard(*compose, "config", env={"OVERRIDDEN": "process"})
    assert 'image: busybox:1.36' in res.out
    assert "FROM_DOTENV: dotenv\n" in res.out
    assert "OVERRIDDEN: process\n" in res.out  # the process environment wins over .env
    assert "LATER: dotenv\n" in res.out
    assert "UNSET: xy\n" in res.out
    assert "ESCAPED: $HOME\n" in res.out
    assert "NAME: proj\n" in res.out
    assert res.err.count('WARN: The "NOT_SET_ANYWHERE" variable is not set. Defaulting to a blank string.') == 1
    # --env-file replaces .env; a later --env-file wins over an earlier one
    res = dockyard(*compose, "--env-file", str(tmp_path / ".env"), "--env-file", str(tmp_path / "extra.env"),
                   "config")
    assert "LATER: extra\n" in res.out and "FROM_DOTENV: dotenv\n" in res.out
    res = dockyard(*compose, "--env-file", str(tmp_path / "extra.env"), "config")
    assert "image: busybox:latest" in res.out


def test_required_variable_through_the_cli(dockyard, tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  app:\n    image: x\n    user: ${APP_USER:?set APP_USER}\n")
    res = dockyard("compose", "-f", str(tmp_path / "compose.yaml"), "config", check=False)
    assert res.code != 0
    assert res.err.strip() == (f"Error: {tmp_path / 'compose.yaml'}:4: services.app.user: required variable "
                               "APP_USER is missing a value: set APP_USER")
