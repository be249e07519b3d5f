"""The keys the Compose Specification allows in each section (anything else is an error, as docker compose's schema
rejects an `additional property`); `x-` keys are allowed everywhere."""

from __future__ import annotations

from typing import Any


def ordered(mapping: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    """`mapping` with the keys in `order` first, in that order, then the others as they came."""
    return {**{k: mapping[k] for k in order if k in mapping}, **{k: v for k, v in mapping.items() if k not in order}}


TOP_LEVEL = frozenset({"version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models"})

SERVICE = frozenset({
    "annotations", "attach", "build", "blkio_config", "cap_add", "cap_drop", "cgroup", "cgroup_parent", "command",
    "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period",
    "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on", "deploy", "develop",
    "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file",
    "environment", "expose", "extends", "external_links", "extra_hosts", "gpus", "group_add", "healthcheck", "hostname",
    "image", "init", "ipc", "isolation", "label_file", "labels", "links", "logging", "mac_address", "mem_limit",
    "mem_reservation", "mem_swappiness", "memswap_limit", "models", "network_mode", "networks", "oom_kill_disable",
    "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start", "pre_start", "pre_stop", "privileged",
    "profiles", "provider", "pull_policy", "read_only", "restart", "runtime", "scale", "secrets", "security_opt",
    "shm_size", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs", "tty", "ulimits",
    "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from", "working_dir",
})

# Where the order matters (`config` prints these mappings in compose-go's field order), a tuple.
BUILD_ORDER = ("context", "dockerfile", "dockerfile_inline", "entitlements", "args", "ssh", "labels", "cache_from",
               "cache_to", "no_cache", "additional_contexts", "network", "provenance", "sbom", "pull", "target",
               "shm_size", "extra_hosts", "isolation", "privileged", "secrets", "tags", "ulimits", "platforms")
BUILD = frozenset(BUILD_ORDER)

DEPLOY_ORDER = ("mode", "replicas", "labels", "update_config", "rollback_config", "resources", "restart_policy",
                "placement", "endpoint_mode")

HEALTHCHECK = frozenset({"test", "interval", "timeout", "start_period", "start_interval", "retries", "disable"})

PORT = frozenset({"name", "mode", "host_ip", "target", "published", "protocol", "app_protocol"})

VOLUME_MOUNT = frozenset({"type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs", "image"})

SERVICE_NETWORK = frozenset({"aliases", "ipv4_address", "ipv6_address", "link_local_ips", "mac_address",
                             "driver_opts", "priority", "gw_priority", "interface_name"})

DEPENDS_ON = frozenset({"condition", "required", "restart"})

MOUNTED_FILE = frozenset({"source", "target", "uid", "gid", "mode"})

EXTENDS = frozenset({"service", "file"})

INCLUDE = frozenset({"path", "project_directory", "env_file"})

NETWORK_ORDER = ("name", "driver", "driver_opts", "ipam", "external", "internal", "attachable", "labels",
                 "enable_ipv4", "enable_ipv6")
NETWORK = frozenset(NETWORK_ORDER)

VOLUME_ORDER = ("name", "driver", "driver_opts", "external", "labels")
VOLUME = frozenset(VOLUME_ORDER)

SECRET_ORDER = ("name", "file", "environment", "content", "external", "labels", "driver", "driver_opts",
                "template_driver")
SECRET = frozenset(SECRET_ORDER)
