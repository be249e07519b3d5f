#!/usr/bin/env bash
# The whole test suite under each interpreter of scripts/pythons.sh, one after the other (what CI runs after
# scripts/install.sh); extra arguments go to pytest. Fails if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/pythons.sh
failed=0
for python in "${PYTHONS[@]}"; do
    echo "== $("$python" -V 2>&1)"
    "$python" -m pytest -q -p no:cacheprovider tests "$@" || failed=1
done
exit "$failed"
