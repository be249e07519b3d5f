#!/usr/bin/env bash
# What CI runs after scripts/install.sh: the static checks (scripts/lint.sh: ruff, mypy, the import layering),
# then the whole test suite under each interpreter of scripts/pythons.sh, one after the other; extra arguments go
# to pytest. Fails if any of them failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/pythons.sh
failed=0
echo "== static checks"
bash scripts/lint.sh || failed=1
for python in "${PYTHONS[@]}"; do
    echo "== $("$python" -V 2>&1)"
    # The slowest tests listed after each run: where CI's 60 minutes go.
    "$python" -m pytest -q -p no:cacheprovider --durations=15 tests "$@" || failed=1
done
exit "$failed"
