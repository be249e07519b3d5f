#!/bin/sh
# The app's tests, run inside the built image: the binary is the one built, and it counts words right.
set -eu
sha256sum -c -s /app/wordfreq.sha256 || { echo "FAIL: /app/wordfreq.sh is not the file built" >&2; exit 1; }
got=$(printf 'The cat saw the dog; the DOG ran.\n' | /app/wordfreq.sh 2)
want=$(printf '3 the\n2 dog')
[ "$got" = "$want" ] || { printf 'FAIL: wordfreq 2\nwant:\n%s\ngot:\n%s\n' "$want" "$got" >&2; exit 1; }
[ -z "$(printf '' | /app/wordfreq.sh)" ] || { echo "FAIL: empty input gives output" >&2; exit 1; }
echo "ok: wordfreq"
