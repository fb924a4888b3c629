#!/usr/bin/env bash
# Everything CI checks: lint, format, types, and every test (unit, emulator, hook,
# operator runs under `airflow dags test`, the example pipeline, the real-Airflow
# integration suite on PostgreSQL with Chromium, and quick benchmark runs), then the
# unit, hook and operator suites again on the lowest supported Airflow ($LOWEST_VENV).
#   scripts/test.sh [pytest args]     everything (pytest args go to the main run)
#   scripts/test.sh --lowest-only     only the lowest-Airflow run
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
LOWEST_BIN="${LOWEST_VENV:-.venv-lowest}/bin"
started=$(date +%s)
mkdir -p build

run_lowest() {
    local airflow lowest_started
    airflow="$("$LOWEST_BIN/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))')"
    echo "== pytest on the lowest supported Airflow ($airflow): unit, hook, operators"
    lowest_started=$(date +%s)
    "$LOWEST_BIN/pytest" tests/unit tests/hook tests/operators -ra --durations=10 \
        --junitxml=build/junit-lowest.xml
    echo "== lowest-Airflow run: $(( $(date +%s) - lowest_started ))s"
}

if [[ "${1:-}" == "--lowest-only" ]]; then
    run_lowest
    exit 0
fi

bash scripts/install-system-deps.sh

echo "== ruff"; "$BIN/ruff" check . && "$BIN/ruff" format --check .
echo "== mypy"; "$BIN/mypy"
echo "== pytest"
"$BIN/pytest" tests -ra --durations=15 --junitxml=build/junit.xml "$@"
echo "== main run: $(( $(date +%s) - started ))s"
run_lowest
echo "== whole run: $(( $(date +%s) - started ))s"
