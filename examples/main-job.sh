#!/usr/bin/env bash
# The main job, end to end: make a busybox base image, import it, list it, save it.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/dockyard-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== base image from Debian's busybox-static"
bash examples/busybox-rootfs.sh "$work/rootfs"
tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
dockyard import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$work/rootfs.tar" busybox:latest

echo "== images"
dockyard images

echo "== save"
dockyard save -o "$work/busybox.tar" busybox:latest
ls -l "$work/busybox.tar"
echo "main job done"
