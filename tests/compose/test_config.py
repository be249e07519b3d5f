"""`dockyard compose config`: compose files through the whole loader (interpolation, several -f merged, extends,
include, profiles, anchors) compared with the output written by hand from the Compose Specification's normalization."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from compose.errors import ComposeError
from compose.loader import load
from compose.model import ProjectOptions
from compose.render import config_text


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def config(dockyard, directory: Path, *args: str, env: dict | None = None) -> str:
    return dockyard("compose", "--project-directory", str(directory), *args, "config", env=env).out


def test_merge_of_several_files(dockyard, tmp_path):
    write(tmp_path, {
        "compose.yaml": """
            services:
              web:
                image: nginx:1.25
                command: nginx -g "daemon off;"
                ports: ["8080:80", "8443:443"]
                volumes: ["./html:/usr/share/nginx/html:ro", "logs:/var/log/nginx"]
                environment: [A=1, B=2]
                labels: {tier: front}
                dns: [1.1.1.1]
                cap_add: [NET_ADMIN]
              db:
                image: postgres:16
                ports: ["5432:5432"]
                environment: {POSTGRES_PASSWORD: base}
            volumes:
              logs: {}
        """,
        "prod.yaml": """
            services:
              web:
                command: ["nginx", "-T"]
                ports: ["8080:80", "9090:90"]
                volumes: ["/srv/html:/usr/share/nginx/html"]
                environment: {B: two, C: "3"}
                labels: [owner=ops]
                dns: [8.8.8.8, 1.1.1.1]
                cap_add: [SYS_TIME, NET_ADMIN]
              db:
                ports: !override ["15432:5432"]
                environment: !reset {}
        """,
    })
    out = dockyard("compose", "-f", str(tmp_path / "compose.yaml"), "-f", str(tmp_path / "prod.yaml"),
                   "-p", "shop", "config").out
    assert out == textwrap.dedent("""\
        name: shop
        services:
          db:
            image: postgres:16
            networks:
              default: null
            ports:
              - mode: ingress
                target: 5432
                published: "15432"
                protocol: tcp
          web:
            cap_add:
              - NET_ADMIN
              - SYS_TIME
            command:
              - nginx
              - -T
            dns:
              - 1.1.1.1
              - 8.8.8.8
            environment:
              A: "1"
              B: two
              C: "3"
            image: nginx:1.25
            labels:
              owner: ops
              tier: front
            networks:
              default: null
            ports:
              - mode: ingress
                target: 80
                published: "8080"
                protocol: tcp
              - mode: ingress
                target: 443
                published: "8443"
                protocol: tcp
              - mode: ingress
                target: 90
                published: "9090"
                protocol: tcp
            volumes:
              - type: bind
                source: /srv/html
                target: /usr/share/nginx/html
                bind:
                  create_host_path: true
              - type: volume
                source: logs
                target: /var/log/nginx
        networks:
          default:
            name: shop_default
        volumes:
          logs:
            name: shop_logs
        """)


def test_extends_and_include(dockyard, tmp_path):
    write(tmp_path, {
        "compose.yaml": """
            name: Demo.App
            include:
              - lib/compose.yaml
              - path: other/svc.yaml
                env_file: other/vars.env
            services:
              app:
                extends: {service: base, file: shared/base.yaml}
                image: app:${APP_TAG}
                environment: {MODE: app}
              worker:
                extends: app
                command: work --hard
                depends_on: [cache]
        """,
        ".env": "APP_TAG=2.0\n",
        "shared/base.yaml": """
            services:
              base:
                image: base
                env_file: base.env
                environment: {MODE: base, LEVEL: "1"}
                volumes: [./data:/data]
                healthcheck:
                  test: ["CMD", "true"]
                  interval: 90s
                  retries: 3
        """,
        "shared/base.env": "FROM_FILE=yes\nMODE=file\n",
        "lib/compose.yaml": """
            services:
              cache:
                image: redis:${REDIS_TAG}
                volumes: [./cache:/cache]
        """,
        "lib/.env": "REDIS_TAG=7.2\nAPP_TAG=ignored\n",
        "other/svc.yaml": """
            services:
              side:
                image: side:${SIDE_TAG}
        """,
        "other/vars.env": "SIDE_TAG=3\n",
    })
    out = config(dockyard, tmp_path)
    assert out == textwrap.dedent(f"""\
        name: demoapp
        services:
          app:
            environment:
              FROM_FILE: "yes"
              LEVEL: "1"
              MODE: app
            healthcheck:
              test:
                - CMD
                - "true"
              interval: 1m30s
              retries: 3
            image: app:2.0
            networks:
              default: null
            volumes:
              - type: bind
                source: {tmp_path}/shared/data
                target: /data
                bind:
                  create_host_path: true
          cache:
            image: redis:7.2
            networks:
              default: null
            volumes:
              - type: bind
                source: {tmp_path}/lib/cache
                target: /cache
                bind:
                  create_host_path: true
          side:
            image: side:3
            networks:
              default: null
          worker:
            command:
              - work
              - --hard
            depends_on:
              cache:
                condition: service_started
                required: true
            environment:
              FROM_FILE: "yes"
              LEVEL: "1"
              MODE: app
            healthcheck:
              test:
                - CMD
                - "true"
              interval: 1m30s
              retries: 3
            image: app:2.0
            networks:
              default: null
            volumes:
              - type: bind
                source: {tmp_path}/shared/data
                target: /data
                bind:
                  create_host_path: true
        networks:
          default:
            name: demoapp_default
        """)


ANCHORS = """
    version: "3.8"
    x-defaults: &defaults
      restart: unless-stopped
      environment: &env
        TZ: UTC
        LOG: info
      logging:
        driver: json-file
    x-ports: &ports ["7000:7000"]
    services:
      one:
        <<: *defaults
        image: one
        ports: *ports
      two:
        <<: [*defaults]
        image: two
        restart: "no"
        environment:
          <<: *env
          LOG: debug
        x-note: kept out of the model's meaning, but allowed
"""


def test_anchors_merge_keys_extensions_and_version(dockyard, tmp_path):
    write(tmp_path, {"compose.yaml": ANCHORS})
    out = config(dockyard, tmp_path, "-p", "anchors")
    assert out == textwrap.dedent("""\
        name: anchors
        services:
          one:
            environment:
              LOG: info
              TZ: UTC
            image: one
            logging:
              driver: json-file
            networks:
              default: null
            ports:
              - mode: ingress
                target: 7000
                published: "7000"
                protocol: tcp
            restart: unless-stopped
          two:
            environment:
              LOG: debug
              TZ: UTC
            image: two
            logging:
              driver: json-file
            networks:
              default: null
            restart: "no"
            x-note: kept out of the model's meaning, but allowed
        networks:
          default:
            name: anchors_default
        x-defaults:
          environment:
            LOG: info
            TZ: UTC
          logging:
            driver: json-file
          restart: unless-stopped
        x-ports:
          - 7000:7000
        """)


NORMALIZE = """
    services:
      app:
        build: ./src
        image: registry.local/app
        entrypoint: /entry.sh --flag "two words"
        ports:
          - 3000
          - "127.0.0.1:8000-8001:80-81/udp"
          - "[::1]:9000:9000"
          - "6000-6005:6000"
          - target: 53
            published: 5353
            protocol: udp
            host_ip: 0.0.0.0
        expose: [4000, "4001/udp"]
        volumes:
          - /var/run/docker.sock:/var/run/docker.sock
          - ~/cfg:/cfg:ro,z
          - /anonymous
          - type: tmpfs
            target: /tmp/cache/
            tmpfs: {size: 64m}
          - type: volume
            source: data
            target: /data
            volume: {nocopy: true}
        healthcheck:
          test: wget -q -O- localhost:3000
          interval: 1m30s
          timeout: 500ms
          start_period: 0s
        stop_grace_period: 90s
        deploy:
          replicas: 2
          resources:
            limits: {cpus: "0.5", memory: 512m, pids: 100}
            reservations: {memory: 1.5g}
        shm_size: 64m
        pids_limit: 100
        extra_hosts: {db.local: 10.0.0.5}
        networks:
          back:
            aliases: [app.internal]
            ipv4_address: 172.28.0.10
        links: ["db:database"]
        secrets: [token, {source: cert, target: /etc/cert.pem, mode: 0440}]
        configs: [site]
        tty: true
        user: 1000
        sysctls: [net.core.somaxconn=1024]
      db:
        image: db
        network_mode: none
        volumes_from: [vols:ro]
      vols:
        image: vols
        network_mode: host
    networks:
      back:
        ipam:
          config: [{subnet: 172.28.0.0/16}]
      outside:
        external: true
    volumes:
      data:
        external: true
        name: the-data
    secrets:
      token: {file: ./token.txt}
      cert: {environment: CERT}
    configs:
      site: {content: "hello"}
"""


def test_normalization(dockyard, tmp_path):
    """Short syntaxes expanded, sizes in bytes, durations in Go form, implicit dependencies added, paths absolute,
    resources named; the network no service uses (`outside`) is left out, as docker compose loads projects."""
    write(tmp_path, {"compose.yaml": NORMALIZE})
    home = str(tmp_path / "home")
    out = config(dockyard, tmp_path, "-p", "norm", env={"HOME": home})
    assert out == textwrap.dedent(f"""\
        name: norm
        services:
          app:
            build:
              context: {tmp_path}/src
              dockerfile: Dockerfile
            configs:
              - source: site
                target: /site
            depends_on:
              db:
                condition: service_started
                restart: true
                required: true
            deploy:
              replicas: 2
              resources:
                limits:
                  cpus: 0.5
                  memory: "536870912"
                  pids: 100
                reservations:
                  memory: "1610612736"
            entrypoint:
              - /entry.sh
              - --flag
              - two words
            expose:
              - "4000"
              - 4001/udp
            extra_hosts:
              - db.local=10.0.0.5
            healthcheck:
              test:
                - CMD-SHELL
                - wget -q -O- localhost:3000
              timeout: 500ms
              interval: 1m30s
              start_period: 0s
            image: registry.local/app
            links:
              - db:database
            networks:
              back:
                aliases:
                  - app.internal
                ipv4_address: 172.28.0.10
            pids_limit: 100
            ports:
              - mode: ingress
                target: 3000
                protocol: tcp
              - mode: ingress
                host_ip: 127.0.0.1
                target: 80
                published: "8000"
                protocol: udp
              - mode: ingress
                host_ip: 127.0.0.1
                target: 81
                published: "8001"
                protocol: udp
              - mode: ingress
                host_ip: ::1
                target: 9000
                published: "9000"
                protocol: tcp
              - mode: ingress
                target: 6000
                published: 6000-6005
                protocol: tcp
              - mode: ingress
                host_ip: 0.0.0.0
                target: 53
                published: "5353"
                protocol: udp
            scale: 2
            secrets:
              - source: token
                target: /run/secrets/token
              - source: cert
                target: /etc/cert.pem
                mode: "0440"
            shm_size: "67108864"
            stop_grace_period: 1m30s
            sysctls:
              net.core.somaxconn: "1024"
            tty: true
            user: "1000"
            volumes:
              - type: bind
                source: /var/run/docker.sock
                target: /var/run/docker.sock
                bind:
                  create_host_path: true
              - type: bind
                source: {home}/cfg
                target: /cfg
                read_only: true
                bind:
                  create_host_path: true
                  selinux: z
              - type: volume
                target: /anonymous
              - type: tmpfs
                target: /tmp/cache
                tmpfs:
                  size: "67108864"
              - type: volume
                source: data
                target: /data
                volume:
                  nocopy: true
          db:
            depends_on:
              vols:
                condition: service_started
                required: true
            image: db
            network_mode: none
            volumes_from:
              - vols:ro
          vols:
            image: vols
            network_mode: host
        networks:
          back:
            name: norm_back
            ipam:
              config:
                - subnet: 172.28.0.0/16
        volumes:
          data:
            name: the-data
            external: true
        secrets:
          cert:
            name: norm_cert
            environment: CERT
          token:
            name: norm_token
            file: {tmp_path}/token.txt
        configs:
          site:
            name: norm_site
            content: hello
        """)


def test_json_format_is_the_same_model(dockyard, tmp_path):
    write(tmp_path, {"compose.yaml": ANCHORS})
    doc = json.loads(dockyard("compose", "--project-directory", str(tmp_path), "-p", "anchors", "config",
                              "--format", "json").out)
    assert list(doc) == ["name", "services", "networks", "x-defaults", "x-ports"]
    assert doc["services"]["two"]["environment"] == {"LOG": "debug", "TZ": "UTC"}
    assert doc["services"]["one"]["ports"][0] == {"mode": "ingress", "target": 7000, "published": "7000",
                                                   "protocol": "tcp"}
    assert doc["networks"] == {"default": {"name": "anchors_default"}}


PROFILES = """
    services:
      web: {image: web, depends_on: [api]}
      api: {image: api, depends_on: [db]}
      db: {image: db}
      debug: {image: busybox, profiles: [debug, all]}
      admin: {image: admin, profiles: [admin]}
"""


def test_profiles_and_listings(dockyard, tmp_path):
    write(tmp_path, {"compose.yaml": PROFILES})
    listing = ("compose", "--project-directory", str(tmp_path), "-p", "prof")
    assert dockyard(*listing, "config", "--services").out == "db\napi\nweb\n"
    assert dockyard(*listing, "--profile", "debug", "config", "--services").out == "db\napi\ndebug\nweb\n"
    assert dockyard(*listing, "config", "--services", env={"COMPOSE_PROFILES": "admin,debug"}).out == \
        "admin\ndb\napi\ndebug\nweb\n"
    assert dockyard(*listing, "config", "--profiles").out == "admin\nall\ndebug\n"
    assert dockyard(*listing, "config", "--images").out == "api\ndb\nweb\n"
    assert dockyard(*listing, "config", "--networks").out == "default\n"
    out = dockyard(*listing, "config").out
    assert "debug:" not in out and "admin:" not in out
    project = load(ProjectOptions(project_directory=str(tmp_path), project_name="prof", environ={}))
    assert sorted(project.disabled) == ["admin", "debug"]
    assert project.service("admin")["image"] == "admin"
    named = load(ProjectOptions(project_directory=str(tmp_path), environ={}, services=["admin"]))
    assert sorted(named.services) == ["admin", "api", "db", "web"]


def test_file_discovery_override_stdin_and_names(dockyard, tmp_path, monkeypatch):
    write(tmp_path / "My Project", {
        "docker-compose.yml": "services:\n  a: {image: a}\n",
        "docker-compose.override.yml": "services:\n  a: {image: a2}\n",
    })
    directory = tmp_path / "My Project"
    monkeypatch.chdir(directory / "..")
    project = load(ProjectOptions(project_directory=str(directory), environ={}))
    assert project.name == "myproject"  # the directory's name, normalized
    assert project.files == [str(directory / "docker-compose.yml"), str(directory / "docker-compose.override.yml")]
    assert project.services["a"]["image"] == "a2"
    monkeypatch.chdir(directory)
    assert load(ProjectOptions(environ={"COMPOSE_PROJECT_NAME": "fromenv"})).name == "fromenv"
    assert load(ProjectOptions(project_name="explicit", environ={"COMPOSE_PROJECT_NAME": "x"})).name == "explicit"
    # COMPOSE_FILE picks the files (the override file is not added then)
    assert load(ProjectOptions(environ={"COMPOSE_FILE": "docker-compose.yml"})).services["a"]["image"] == "a"
    res = dockyard("compose", "-f", "-", "-p", "piped", "config", input=b"name: ignored\nservices:\n  s: {image: s}\n")
    assert res.out.startswith("name: piped\nservices:\n  s:\n    image: s\n")


def test_top_level_name_and_interpolated_name(tmp_path):
    write(tmp_path, {"compose.yaml": "name: ${PREFIX}_Stack\nservices: {}\n"})
    project = load(ProjectOptions(project_directory=str(tmp_path), environ={"PREFIX": "Big"}))
    assert project.name == "big_stack"
    assert config_text(project, "yaml") == "name: big_stack\nservices: {}\n"


def test_env_file_forms_and_precedence(tmp_path):
    write(tmp_path, {
        "compose.yaml": """
            services:
              s:
                image: s
                env_file:
                  - a.env
                  - path: b.env
                  - path: missing.env
                    required: false
                environment:
                  SHARED: compose
                  FROM_PROCESS:
                  NOWHERE:
        """,
        "a.env": "A=1\nSHARED=a\nREF=${A}-x\n",
        "b.env": "B=2\nA=overridden\nFROM_PROCESS=file\n",
    })
    project = load(ProjectOptions(project_directory=str(tmp_path), environ={"FROM_PROCESS": "process"}))
    assert project.services["s"]["environment"] == {
        "A": "overridden", "SHARED": "compose", "REF": "1-x", "B": "2", "FROM_PROCESS": "process", "NOWHERE": None}
    assert "env_file" not in project.services["s"]


def test_relative_paths_resolve_against_the_right_directory(tmp_path):
    """Bind sources, env files, extends and include files are plain host paths, resolved as docker compose does:
    against the project directory for the -f files (even for a second file elsewhere), against the extended file's
    directory, and against the included file's directory; `..` is resolved lexically, so what is shown is what is
    named."""
    write(tmp_path, {
        "proj/compose.yaml": "services:\n  a:\n    image: a\n    volumes: [../shared:/s]\n",
        "elsewhere/override.yaml": "services:\n  a:\n    volumes: [./rel:/r]\n    env_file: vars.env\n",
        "proj/vars.env": "WHERE=proj\n",
        "elsewhere/vars.env": "WHERE=elsewhere\n",
    })
    os.symlink(tmp_path / "proj", tmp_path / "link")
    project = load(ProjectOptions(files=[str(tmp_path / "link" / "compose.yaml"),
                                         str(tmp_path / "elsewhere" / "override.yaml")], environ={}))
    mounts = {m["target"]: m["source"] for m in project.services["a"]["volumes"]}
    assert mounts == {"/s": str(tmp_path / "shared"), "/r": str(tmp_path / "link" / "rel")}
    assert project.services["a"]["environment"] == {"WHERE": "proj"}


@pytest.mark.parametrize("reset", ["!reset []", "!reset null"])
def test_reset_removes_an_inherited_value(tmp_path, reset):
    write(tmp_path, {"compose.yaml": f"""
        services:
          base: {{image: b, ports: ["1:1"], dns: [9.9.9.9]}}
          child:
            extends: base
            ports: {reset}
    """})
    project = load(ProjectOptions(project_directory=str(tmp_path), environ={}))
    assert "ports" not in project.services["child"]
    assert project.services["child"]["dns"] == ["9.9.9.9"]


def test_yaml_scalars_read_as_docker_compose_reads_them(tmp_path):
    """YAML 1.2 core schema (go-yaml v3): `yes`/`on` stay strings, quoted stays a string, `!!str` is honoured,
    a leading-zero mode is octal."""
    write(tmp_path, {"compose.yaml": """
        services:
          s:
            image: s
            environment: {A: yes, B: on, C: "1", D: !!str 2, E: 1.50, F: true, G: 0x10, H: ~, I: ""}
            secrets: [{source: k, mode: 0440}]
        secrets:
          k: {file: k.txt}
    """})
    service = load(ProjectOptions(project_directory=str(tmp_path), environ={})).services["s"]
    assert service["environment"] == {"A": "yes", "B": "on", "C": "1", "D": "2", "E": "1.5", "F": "true",
                                      "G": "16", "H": None, "I": ""}
    assert service["secrets"] == [{"source": "k", "target": "/run/secrets/k", "mode": 0o440}]


def test_config_of_named_services(dockyard, tmp_path):
    """`config SERVICE...`: those services and what they depend on; a named service is enabled whatever its
    profiles; an unknown name is an error."""
    write(tmp_path, {"compose.yaml": PROFILES})
    listing = ("compose", "--project-directory", str(tmp_path), "-p", "prof", "config")
    assert dockyard(*listing, "--services", "api").out == "db\napi\n"
    assert dockyard(*listing, "--services", "admin", "db").out == "admin\ndb\n"
    out = dockyard(*listing, "admin").out
    assert out.startswith("name: prof\nservices:\n  admin:\n    image: admin\n")
    res = dockyard(*listing, "nope", check=False)
    assert (res.code, res.err) == (1, "Error: no such service: nope\n")


def test_reset_and_override_across_files(tmp_path):
    write(tmp_path, {
        "a.yaml": """
            services:
              keep: {image: k, environment: {A: "1", B: "2"}, labels: {x: "1"}}
              gone: {image: g}
        """,
        "b.yaml": """
            services:
              keep:
                environment: !override {C: "3"}
                labels: {y: "2"}
              gone: !reset
        """,
    })
    project = load(ProjectOptions(files=[str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")], environ={},
                                  project_name="p"))
    assert list(project.services) == ["keep"]
    assert project.services["keep"]["environment"] == {"C": "3"}
    assert project.services["keep"]["labels"] == {"x": "1", "y": "2"}


def test_compose_file_variable_with_separator(tmp_path, monkeypatch):
    write(tmp_path, {"one.yaml": "services:\n  s: {image: one}\n", "two.yaml": "services:\n  s: {image: two}\n"})
    monkeypatch.chdir(tmp_path)
    project = load(ProjectOptions(environ={"COMPOSE_FILE": "one.yaml;two.yaml", "COMPOSE_PATH_SEPARATOR": ";"}))
    assert project.services["s"]["image"] == "two"
    assert project.files == [str(tmp_path / "one.yaml"), str(tmp_path / "two.yaml")]


def test_files_found_in_a_parent_directory(tmp_path, monkeypatch):
    """Run from a subdirectory: the compose file (and its .env) is found upwards; the working directory's .env is
    read first and wins, the project's fills the rest."""
    write(tmp_path, {"compose.yaml": "services:\n  s: {image: '${A}-${B}', working_dir: $PWD}\n",
                     ".env": "A=parent\nB=parent\n", "sub/.env": "A=sub\n"})
    monkeypatch.chdir(tmp_path / "sub")
    project = load(ProjectOptions(environ={}))
    assert project.working_dir == str(tmp_path)
    assert project.services["s"]["image"] == "sub-parent"
    assert project.services["s"]["working_dir"] == str(tmp_path / "sub")


@pytest.mark.parametrize(("text", "expected"), [
    ("512m", 512 << 20), ("1g", 1 << 30), ("1.5g", 3 << 29), ("64M", 64 << 20), ("100k", 102400), ("2kb", 2048),
    ("1024", 1024), (1024, 1024), ("-1", -1), ("10 MiB", 10 << 20), ("3b", 3),
])
def test_sizes_as_docker_reads_them(text, expected):
    from compose.units import ram_bytes

    assert ram_bytes(text, "mem_limit") == expected


def test_extra_hosts_forms(tmp_path):
    write(tmp_path, {"compose.yaml": """
        services:
          a: {image: a, extra_hosts: ["db:10.0.0.1", "v6=::1", "multi=10.0.0.2,10.0.0.3"]}
          b: {image: b, extra_hosts: {cache: 10.0.0.4, many: [10.0.0.5, 10.0.0.6]}}
    """})
    project = load(ProjectOptions(project_directory=str(tmp_path), environ={}))
    assert project.services["a"]["extra_hosts"] == ["db:10.0.0.1", "v6:::1", "multi:10.0.0.2", "multi:10.0.0.3"]
    assert project.services["b"]["extra_hosts"] == ["cache:10.0.0.4", "many:10.0.0.5", "many:10.0.0.6"]
    assert "    extra_hosts:\n      - db=10.0.0.1\n      - multi=10.0.0.2\n      - multi=10.0.0.3\n      - v6=::1\n" \
        in config_text(project, "yaml")


def test_include_with_several_files_and_a_project_directory(tmp_path):
    """`include: {path: [a, b], project_directory}`: the files merge in order, their relative paths resolve against
    the given project directory, and the including file's own definition of a service wins over the included."""
    write(tmp_path, {
        "compose.yaml": """
            include:
              - path: [inc/a.yaml, inc/b.yaml]
                project_directory: proj
            services:
              s: {environment: {FROM: main}}
        """,
        "inc/a.yaml": "services:\n  s: {image: a, volumes: [./data:/data], environment: {FROM: a, A: '1'}}\n",
        "inc/b.yaml": "services:\n  s: {image: b}\n",
    })
    service = load(ProjectOptions(project_directory=str(tmp_path), environ={})).services["s"]
    assert service["image"] == "b"
    assert service["environment"] == {"FROM": "main", "A": "1"}
    assert service["volumes"][0]["source"] == str(tmp_path / "proj" / "data")


def _port(target: int, published: str | None = None, protocol: str = "tcp", host_ip: str | None = None) -> dict:
    entry: dict = {"mode": "ingress"}
    if host_ip:
        entry["host_ip"] = host_ip
    entry["target"] = target
    if published:
        entry["published"] = published
    entry["protocol"] = protocol
    return entry


@pytest.mark.parametrize(("spec", "expected"), [
    ("80", [_port(80)]),
    ("80:8080", [_port(8080, "80")]),
    ("80-90:8080", [_port(8080, "80-90")]),
    ("8080:80/tcp", [_port(80, "8080")]),
    ("80:8080/udp", [_port(8080, "80", "udp")]),
    ("80-81:8080-8081/tcp", [_port(8080, "80"), _port(8081, "81")]),
    ("80-82:8080/udp", [_port(8080, "80-82", "udp")]),
    ("80-80:8080/tcp", [_port(8080, "80")]),
    ("1.1.1.1:80:80", [_port(80, "80", host_ip="1.1.1.1")]),
    ("127.0.0.1::80", [_port(80, host_ip="127.0.0.1")]),
    ("[::1]:80:80/sctp", [_port(80, "80", "sctp", "::1")]),
    ("8000-8001", [_port(8000), _port(8001)]),
])
def test_short_port_syntax(spec, expected, tmp_path):
    """The short syntax as compose-go's ParsePortConfig reads it: one entry per container port."""
    write(tmp_path, {"compose.yaml": f"services:\n  s: {{image: s, ports: ['{spec}']}}\n"})
    assert load(ProjectOptions(project_directory=str(tmp_path), environ={})).services["s"]["ports"] == expected


@pytest.mark.parametrize("spec", ["9999999", "80/xyz", "tcp", "", "1:2:3:4", "80-81:90-92", "[::1]80", "0"])
def test_invalid_short_port(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"compose.yaml": f"services:\n  s: {{image: s, ports: ['{spec}']}}\n"})
    with pytest.raises(ComposeError, match=r'^compose.yaml:2: services.s.ports\[0\]: invalid port "'):
        load(ProjectOptions(project_directory=str(tmp_path), environ={}))


def test_multi_line_strings_print_as_literal_blocks(tmp_path):
    write(tmp_path, {"compose.yaml": """
        services:
          s:
            build:
              context: .
              dockerfile_inline: |
                FROM busybox
                RUN echo hi
            command: ["sh", "-c", "echo a\\necho b"]
    """})
    text = config_text(load(ProjectOptions(project_directory=str(tmp_path), project_name="p", environ={})), "yaml")
    assert "      dockerfile_inline: |\n        FROM busybox\n        RUN echo hi\n" in text
    assert "      - |-\n        echo a\n        echo b\n" in text
