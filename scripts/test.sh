#!/usr/bin/env bash
# What CI runs after scripts/install.sh: the static checks (scripts/lint.sh: ruff, mypy, the import layering),
# then the whole test suite under each interpreter of scripts/pythons.sh, one after the other; extra arguments go
# to pytest. Fails if any of them failed. The tests on a Ceph cluster (marker `s3`) run under the first interpreter
# only: they exercise the storage driver against a server, not the interpreter, and cost minutes each run.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/pythons.sh
failed=0
echo "== static checks"
bash scripts/lint.sh || failed=1
select=()
for python in "${PYTHONS[@]}"; do
    echo "== $("$python" -V 2>&1)"
    # The slowest tests listed after each run: where CI's 60 minutes go.
    "$python" -m pytest -q -p no:cacheprovider --durations=15 "${select[@]}" tests "$@" || failed=1
    select=(-m "not s3")
done
exit "$failed"
