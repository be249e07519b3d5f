#!/usr/bin/env bash
# The main job, end to end: make a busybox base image and import it, build an image from one of the example
# Dockerfiles on it, list and save it, serve a registry, push to it, pull back from it, run it; then bring up the
# four-tier app of examples/compose with `dockyard compose`, ask its proxy, and take it down.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/dockyard-demo.XXXXXX)
registry_pid=
app=(dockyard compose -f examples/compose/compose.yaml -p dockyard-demo)
app_up=
cleanup() {
    [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
    [ -z "$app_up" ] || "${app[@]}" down -v >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
port=${DOCKYARD_DEMO_PORT:-5055}
export PROXY_PORT=${DOCKYARD_DEMO_PROXY_PORT:-5056}  # the compose app's published proxy port

echo "== base image from Debian's busybox-static"
bash examples/busybox-rootfs.sh "$work/rootfs"
tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
dockyard import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$work/rootfs.tar" busybox:latest

echo "== build examples/Dockerfiles/basics.Dockerfile"
dockyard build --progress plain -t demo/app:1 -f examples/Dockerfiles/basics.Dockerfile examples/Dockerfiles

echo "== images"
dockyard images

echo "== save"
dockyard save -o "$work/app.tar" demo/app:1
ls -l "$work/app.tar"

echo "== registry on 127.0.0.1:$port"
dockyard registry serve --addr "127.0.0.1:$port" --root "$work/registry" --access-log '' &
registry_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

echo "== push, remove, pull"
dockyard tag demo/app:1 "127.0.0.1:$port/demo/app:1"
dockyard push "127.0.0.1:$port/demo/app:1"
dockyard rmi demo/app:1 "127.0.0.1:$port/demo/app:1"
dockyard pull "127.0.0.1:$port/demo/app:1"
dockyard images --digests

echo "== run"
dockyard run --rm "127.0.0.1:$port/demo/app:1"
dockyard run --rm busybox sh -c 'echo "hello from $(hostname), pid $$"'

echo "== compose: examples/compose (proxy -> api -> db, cache) on 127.0.0.1:$PROXY_PORT"
app_up=1
"${app[@]}" up -d
curl -fsS --retry 10 --retry-connrefused --retry-delay 1 "http://127.0.0.1:$PROXY_PORT/"
"${app[@]}" ps
"${app[@]}" down -v
app_up=
echo "main job done"
