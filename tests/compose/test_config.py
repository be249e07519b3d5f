"""`dockyard compose config`: compose files through the whole loader (interpolation, several -f merged, extends,
include, profiles, anchors) compared with the output written by hand from the Compose Specification's normalization."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

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
                  memory: 536870912
                  pids: 100
                reservations:
                  memory: 1610612736
            entrypoint:
              - /entry.sh
              - --flag
              - two words
            expose:
              - "4000"
              - 4001/udp
            extra_hosts:
              - db.local:10.0.0.5
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
                mode: 288
            shm_size: 67108864
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
                  selinux: z
                  create_host_path: true
              - type: volume
                target: /anonymous
              - type: tmpfs
                target: /tmp/cache
                tmpfs:
                  size: 67108864
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
          outside:
            name: outside
            external: true
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
    assert list(doc) == ["name", "services", "networks"]
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
