#!/usr/bin/env bash
# Static checks on the four packages (config in pyproject.toml): ruff, mypy, and the layering (import-linter).
# Runs every tool even after one fails, then exits non-zero if any reported a finding.
set -uo pipefail
cd "$(dirname "$0")/.."
packages=(dockyard builder registry runner compose)
status=0
python3 -m ruff check --output-format concise "${packages[@]}" || status=1
python3 -m mypy || status=1  # `files` in [tool.mypy] names the packages
# lint-imports imports nothing of ours, but must find the packages of this checkout rather than an installed copy.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" lint-imports || status=1
exit $status
