"""Bad compose input: every case ends in one line naming the file, line and key path (or the services), a non-zero
exit and no traceback, including the attacks (alias bomb, oversized file, a FIFO named as env_file)."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from compose.errors import ComposeError
from compose.loader import load
from compose.model import ProjectOptions

BOMB = "".join(f'{c}: &{c} [{",".join([f"*{p}"] * 9)}]\n' for p, c in zip("abcdefghi", "bcdefghij", strict=True))
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB + "services: {}\n"

CASES = {
    "invalid_port": ("services:\n  web:\n    image: x\n    ports:\n      - 8080:80\n      - 80:80:80:80\n",
                     'compose.yaml:6: services.web.ports[1]: invalid port "80:80:80:80"'),
    "port_out_of_range": ("services:\n  web:\n    image: x\n    ports: ['70000:80']\n",
                          'compose.yaml:4: services.web.ports[0]: invalid port "70000:80"'),
    "bad_protocol": ("services:\n  web:\n    image: x\n    ports: ['80/icmp']\n",
                     'compose.yaml:4: services.web.ports[0]: invalid port "80/icmp"'),
    "unknown_service_key": ("services:\n  web:\n    image: x\n    imagee: y\n",
                            'compose.yaml:4: services.web: additional property "imagee" is not allowed'),
    "unknown_top_level_key": ("services: {}\nservice: {}\n",
                              'compose.yaml:2: additional property "service" is not allowed'),
    "unknown_port_key": ("services:\n  web:\n    image: x\n    ports:\n      - {target: 80, publish: 8080}\n",
                         'compose.yaml:5: services.web.ports[0]: additional property "publish" is not allowed'),
    "required_variable": ("services:\n  web:\n    image: ${IMAGE:?the image to run}\n",
                          "compose.yaml:3: services.web.image: required variable IMAGE is missing a value: "
                          "the image to run"),
    "bad_interpolation": ("services:\n  web:\n    image: ${IMAGE\n",
                          'compose.yaml:3: services.web.image: invalid interpolation format "${IMAGE": '
                          "missing closing brace"),
    "dependency_cycle": ("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n"
                         "  c: {image: x, depends_on: [a]}\n",
                         "dependency cycle detected: a -> b -> c -> a"),
    "self_dependency": ("services:\n  a: {image: x, links: [a]}\n", "dependency cycle detected: a -> a"),
    "missing_dependency": ("services:\n  web: {image: x, depends_on: {db: {condition: service_healthy}}}\n",
                           'service "web" depends on undefined service "db"'),
    "disabled_dependency": ("services:\n  web: {image: x, depends_on: [db]}\n  db: {image: x, profiles: [data]}\n",
                            'service "web" depends on service "db", which is disabled (enable its profile: data)'),
    "bad_yaml": ("services:\n  web:\n    image: x\n   ports: [\n", "compose.yaml:4: invalid YAML: did not find "
                                                                 "expected key"),
    "tab_yaml": ("services:\n\tweb: {}\n", "compose.yaml:2: invalid YAML: found character that cannot start any "
                                            "token"),
    "empty_file": ("# nothing here\n", "empty compose file: compose.yaml"),
    "top_level_list": ("- services\n- web\n", "compose.yaml:1: top-level object must be a mapping"),
    "top_level_scalar": ("just text\n", "compose.yaml:1: top-level object must be a mapping"),
    "services_not_mapping": ("services: [web]\n", "compose.yaml:1: services: must be a mapping"),
    "service_not_mapping": ("services:\n  web: nginx\n", 'compose.yaml:2: services.web: must be a mapping, '
                                                          'got a string'),
    "duplicate_key": ("services:\n  web: {image: x}\n  web: {image: y}\n",
                      'compose.yaml:3: services.web: mapping key "web" already defined'),
    "alias_bomb": (BOMB, "compose.yaml: document expands to too many nodes (YAML alias bomb?)"),
    "recursive_alias": ("x: &x [*x]\nservices: {}\n", "compose.yaml:1: x[0][0]: nested more than 100 levels "
                                                       "(a recursive alias?)"),
    "unknown_tag": ("services:\n  web: !include other.yaml\n", "compose.yaml:2: services.web: unknown tag !include"),
    "bad_volume": ("services:\n  web:\n    image: x\n    volumes: ['/a:/b:rx']\n",
                   'compose.yaml:4: services.web.volumes[0]: invalid volume "/a:/b:rx": unknown option "rx"'),
    "home_unset": ("services:\n  web:\n    image: x\n    volumes: ['~/data:/data']\n",
                   'compose.yaml:4: services.web.volumes[0]: cannot expand "~/data": HOME is not set'),
    "relative_target": ("services:\n  web:\n    image: x\n    volumes: ['/data:ro']\n",
                        'compose.yaml:4: services.web.volumes[0]: mount target "ro" must be an absolute path'),
    "bad_duration": ("services:\n  web:\n    image: x\n    healthcheck: {test: 'true', interval: 10 parsecs}\n",
                     "compose.yaml:4: services.web.healthcheck.interval: invalid duration '10 parsecs' "
                     "(want e.g. 30s, 1m30s, 500ms)"),
    "bad_memory": ("services:\n  web:\n    image: x\n    mem_limit: lots\n",
                   'compose.yaml:4: services.web.mem_limit: invalid size "lots" (want e.g. 512m, 1g, 1024)'),
    "bad_condition": ("services:\n  a: {image: x}\n  web:\n    image: x\n    depends_on:\n      a:\n"
                      "        condition: started\n",
                      'compose.yaml:7: services.web.depends_on.a.condition: invalid condition "started" (want one '
                      "of service_started, service_healthy, service_completed_successfully)"),
    "bad_healthcheck_test": ("services:\n  web:\n    image: x\n    healthcheck: {test: [RUN, x]}\n",
                             'compose.yaml:4: services.web.healthcheck.test: must start with "CMD", "CMD-SHELL" '
                             'or "NONE"'),
    "undefined_network": ("services:\n  web: {image: x, networks: [back]}\n",
                          'service "web" refers to undefined network back'),
    "undefined_volume": ("services:\n  web: {image: x, volumes: ['data:/data']}\n",
                         'service "web" refers to undefined volume data'),
    "undefined_secret": ("services:\n  web: {image: x, secrets: [token]}\n",
                         'service "web" refers to undefined secret token'),
    "network_mode_and_networks": ("services:\n  web: {image: x, network_mode: host, networks: [default]}\n",
                                  'service "web" declares mutually exclusive `network_mode` and `networks`'),
    "extends_missing": ("services:\n  web:\n    extends: base\n",
                        'compose.yaml:3: services.web.extends: cannot extend service "web": service "base" not '
                        "found"),
    "extends_cycle": ("services:\n  a: {extends: b}\n  b: {extends: a}\n",
                      "compose.yaml:2: services.a.extends: extends cycle: a -> b -> a"),
    "no_image": ("services:\n  web: {command: [sh]}\n",
                 'service "web" has neither an image nor a build context specified'),
    "dockerfile_twice": ("services:\n  web: {build: {dockerfile: D, dockerfile_inline: 'FROM x'}}\n",
                         'service "web" declares mutually exclusive dockerfile and dockerfile_inline'),
    "bad_bool": ("services:\n  web: {image: x, tty: maybe}\n", 'compose.yaml:2: services.web.tty: must be a boolean, '
                                                                'got "maybe"'),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, monkeypatch):
    text, message = CASES[case]
    (tmp_path / "compose.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with pytest.raises(ComposeError) as caught:
        load(ProjectOptions(project_name="p", environ={}))
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
    assert time.monotonic() - started < 10  # the alias bomb is refused, not expanded


@pytest.mark.parametrize("case", ["invalid_port", "unknown_service_key", "required_variable", "dependency_cycle",
                                  "missing_dependency", "bad_yaml", "top_level_list", "alias_bomb"])
def test_bad_input_through_the_cli(case, dockyard, tmp_path):
    text, message = CASES[case]
    (tmp_path / "compose.yaml").write_text(text)
    res = dockyard("compose", "--project-directory", str(tmp_path), "-p", "p", "config", check=False)
    assert res.code != 0
    assert res.out == ""
    shown = message.replace("compose.yaml", str(tmp_path / "compose.yaml"), 1)
    assert res.err == f"Error: {shown}\n"


def test_oversized_file(dockyard, tmp_path):
    path = tmp_path / "compose.yaml"
    with open(path, "w") as f:
        f.write("services: {}\n")
        f.truncate(16 * 1024 * 1024 + 1)
    res = dockyard("compose", "-f", str(path), "config", check=False)
    assert res.code != 0
    assert res.err == f"Error: compose file {path}: larger than 16 MiB\n"
    res = dockyard("compose", "-f", "-", "config", input=b"#" * (16 * 1024 * 1024 + 1), check=False)
    assert (res.code, res.err) == (1, "Error: <stdin>: file is larger than 16 MiB\n")


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(textwrap.dedent(text))


def error_of(directory: Path, **options) -> str:
    with pytest.raises(ComposeError) as caught:
        load(ProjectOptions(project_directory=str(directory), environ={}, **options))
    return str(caught.value)


def test_named_files_that_are_not_regular_files_are_refused_without_blocking(tmp_path):
    """A FIFO named as env_file would block a plain open() forever, and /dev/zero would never end."""
    os.mkfifo(tmp_path / "pipe")
    write(tmp_path, {"compose.yaml": "services:\n  a: {image: x, env_file: pipe}\n"})
    assert error_of(tmp_path) == f"env file {tmp_path}/pipe: not a regular file"
    write(tmp_path, {"compose.yaml": "include: [/dev/zero]\nservices: {}\n"})
    assert error_of(tmp_path) == "included file /dev/zero: not a regular file"
    write(tmp_path, {"compose.yaml": "services:\n  a: {extends: {service: b, file: pipe}}\n"})
    assert error_of(tmp_path) == f"extended file {tmp_path}/pipe: not a regular file"
    assert error_of(tmp_path, env_files=[str(tmp_path / "pipe")]) == f"env file {tmp_path}/pipe: not a regular file"


def test_missing_files(tmp_path):
    assert error_of(tmp_path, files=[str(tmp_path / "nope.yaml")]) == \
        f"compose file {tmp_path}/nope.yaml: No such file or directory"
    write(tmp_path, {"compose.yaml": "services:\n  a: {image: x, env_file: [missing.env]}\n"})
    assert error_of(tmp_path) == f"env file {tmp_path}/missing.env not found"
    write(tmp_path, {"compose.yaml": "include: [sub/missing.yaml]\nservices: {}\n"})
    assert error_of(tmp_path) == f"included file {tmp_path}/sub/missing.yaml: No such file or directory"


def test_include_cycle(tmp_path):
    write(tmp_path, {"compose.yaml": "include: [a/one.yaml]\nservices: {}\n", "a/one.yaml": "include: [two.yaml]\n",
                     "a/two.yaml": "include: [one.yaml]\n"})
    assert error_of(tmp_path) == (f"{tmp_path}/a/two.yaml:1: include[0]: include cycle: {tmp_path}/compose.yaml -> "
                                  f"{tmp_path}/a/one.yaml -> {tmp_path}/a/two.yaml -> {tmp_path}/a/one.yaml")


def test_project_names(tmp_path):
    write(tmp_path, {"compose.yaml": "services: {}\n"})
    message = ("invalid project name \"{}\": must consist only of lowercase alphanumeric characters, hyphens, and "
               "underscores as well as start with a letter or number")
    assert error_of(tmp_path, project_name="My App") == message.format("My App")
    assert error_of(tmp_path, project_name="-dash") == message.format("-dash")
    with pytest.raises(ComposeError, match='invalid project name "UPPER"'):
        load(ProjectOptions(project_directory=str(tmp_path), environ={"COMPOSE_PROJECT_NAME": "UPPER"}))
    empty = tmp_path / "___"
    write(empty, {"compose.yaml": "services: {}\n"})
    assert error_of(empty) == "project name must not be empty (use -p NAME)"


def test_no_compose_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert error_of(tmp_path) == "no configuration file provided: not found"


@pytest.mark.parametrize(("service", "message"), [
    ("{image: x, scale: 2, deploy: {replicas: 3}}",
     "services.web: can't set distinct values on 'scale' and 'deploy.replicas'"),
    ("{image: x, mem_limit: 1g, deploy: {resources: {limits: {memory: 512m}}}}",
     "services.web: can't set distinct values on 'mem_limit' and 'deploy.resources.limits.memory'"),
    ("{image: x, cpus: 1, deploy: {resources: {limits: {cpus: '0.5'}}}}",
     "services.web: can't set distinct values on 'cpus' and 'deploy.resources.limits.cpus'"),
    ("{image: x, scale: -1}", "services.web.scale: must be greater than or equal to 0"),
    ("{image: x, container_name: one, deploy: {replicas: 2}}",
     "services.web: can't set container_name and scale > 1 (container names are unique)"),
    ("{image: x, tmpfs: [/run], volumes: ['/srv:/run']}",
     "services.web.volumes[0]: target /run already mounted as services.web.tmpfs[0]"),
])
def test_inconsistent_service(service, message, tmp_path):
    write(tmp_path, {"compose.yaml": f"services:\n  web: {service}\n"})
    assert error_of(tmp_path) == message


def test_agreeing_duplicates_are_kept(tmp_path):
    write(tmp_path, {"compose.yaml": "services:\n  web: {image: x, mem_limit: 512m, deploy: {replicas: 2, "
                                     "resources: {limits: {memory: 536870912}}}}\n"})
    web = load(ProjectOptions(project_directory=str(tmp_path), environ={})).services["web"]
    assert (web["mem_limit"], web["deploy"]["resources"]["limits"]["memory"], web["scale"]) == (536870912,) * 2 + (2,)


def _any_value():
    from hypothesis import strategies as st

    leaf = st.sampled_from([None, True, 0, 7, -3, 2.5, "", "x", "80", "80:80", "1-3:4-6", "/a", "./b", "a=b", "1g",
                            "10s", "bind", "volume", "tmpfs", "CMD", "service:t", "${X:-1}"])
    keys = st.sampled_from(["target", "published", "source", "type", "test", "interval", "condition", "aliases",
                            "resources", "limits", "memory", "cpus", "context", "args", "mode", "bind", "size"])
    return st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                        max_leaves=8)


def test_no_shape_of_service_ends_in_a_traceback(tmp_path):
    """Any value under any service key loads or fails with one ComposeError line — never another exception."""
    import yaml
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from compose import schema
    from compose.render import config_text

    service_keys = st.sampled_from(sorted(schema.SERVICE - {"extends"}))

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.dictionaries(service_keys, _any_value(), min_size=1, max_size=4))
    def check(service):
        service.setdefault("image", "x")
        (tmp_path / "compose.yaml").write_text(yaml.safe_dump({"services": {"s": service, "t": {"image": "t"}}}))
        try:
            config_text(load(ProjectOptions(project_directory=str(tmp_path), project_name="p", environ={})), "yaml")
        except ComposeError as e:
            assert "\n" not in str(e)

    check()
