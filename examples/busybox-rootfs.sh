#!/usr/bin/env bash
# Makes a minimal root filesystem in DIR from Debian's busybox-static: /bin/busybox, its applets, /etc basics.
set -euo pipefail
dir=${1:?usage: busybox-rootfs.sh DIR}
bb=${BUSYBOX:-/bin/busybox}  # Debian's busybox-static (of any architecture): one static binary, no libc needed
[ -x "$bb" ] || { echo "busybox-rootfs.sh: $bb not found (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir"/{bin,sbin,etc,root,tmp,home,proc,sys,dev,var/tmp,usr/bin,usr/sbin}
chmod 1777 "$dir/tmp" "$dir/var/tmp"
cp "$bb" "$dir/bin/busybox"
# Listed apart from the loop: set -e does not stop at a failing command in a `for` list (a busybox of another
# architecture without its binfmt_misc handler), which would leave a rootfs without applets.
applets=$("$dir/bin/busybox" --list)
for applet in $applets; do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
cat > "$dir/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$dir/etc/group" <<'G'
root:x:0:
daemon:x:1:
nogroup:x:65534:
G
echo "127.0.0.1 localhost" > "$dir/etc/hosts"
: > "$dir/etc/resolv.conf"
