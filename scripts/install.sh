#!/usr/bin/env bash
# Installs everything Dockyard and its test suite need on a fresh Debian 12 machine (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "install.sh: run as root" >&2; exit 1; fi
apt-get update -q
apt-get install -y -q \
    busybox-static skopeo podman podman-compose buildah runc umoci docker-registry apache2-utils wrk openssh-client strace \
    nftables iptables iproute2 uidmap fuse-overlayfs catatonit libseccomp2 gcc libc6-dev tar gzip zstd xz-utils bzip2 ca-certificates \
    ceph-mon ceph-osd radosgw ceph-common postgresql chromium fonts-dejavu-core redis-server haproxy qemu-user-static >/dev/null
# Multi-platform tests: Debian's arm64 busybox-static, fetched now so the suite needs no internet
# (tests/builder/test_platforms.py finds it in /var/cache/dockyard-tests).
dpkg --add-architecture arm64
apt-get update -q
mkdir -p /var/cache/dockyard-tests
(cd /var/cache/dockyard-tests && rm -f busybox-static_*_arm64.deb && apt-get download -q busybox-static:arm64 2>/dev/null)
# podman/buildah on these machines: crun fails on hybrid cgroups and on raising RLIMIT_NOFILE.
mkdir -p /etc/containers
if ! grep -qs 'runtime = "runc"' /etc/containers/containers.conf; then
    cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
fi
# compat: a plain path entry in a .pth; the default editable finder costs every `dockyard` start ~8 ms of imports.
# For every interpreter the suite runs under (scripts/pythons.sh).
source scripts/pythons.sh
for python in "${PYTHONS[@]}"; do
    "$python" -m pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
done
# The `dockyard` command: pip's console script replaced by a launcher that starts the interpreter with -S, without
# the site step and its .pth hooks (dockyard/launcher.py says what that skips and what it saves). -P: the installed
# package writes it, not a copy the cwd would put first.
for python in "${PYTHONS[@]}"; do
    "$python" -P -m dockyard.launcher >/dev/null
done
# Bytecode now, for each interpreter: with PYTHONDONTWRITEBYTECODE=1 (CI images, this machine) nothing would ever
# write it, and every `dockyard` run would compile its modules anew.
for python in "${PYTHONS[@]}"; do
    "$python" -m compileall -q -j 0 dockyard builder registry runner compose >/dev/null
done
