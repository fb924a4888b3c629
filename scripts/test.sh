#!/usr/bin/env bash
# Everything CI checks: lint, format, types, and every test (unit, emulator, hook,
# operator runs under `airflow dags test`, the example pipeline, the real-Airflow
# integration suite on PostgreSQL with Chromium, and quick benchmark runs).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
started=$(date +%s)

bash scripts/install-system-deps.sh

echo "== ruff"; "$BIN/ruff" check . && "$BIN/ruff" format --check .
echo "== mypy"; "$BIN/mypy"
echo "== pytest"
mkdir -p build
"$BIN/pytest" tests -ra --durations=15 --junitxml=build/junit.xml "$@"
echo "== whole run: $(( $(date +%s) - started ))s"
