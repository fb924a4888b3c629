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
echo "== pytest: quick benchmarks first, alone (they measure CPU time)"
"$BIN/pytest" tests/benchmarks -ra --junitxml=build/junit-benchmarks.xml "$@"
# The main run mostly waits on servers (Airflow components, renders): the lowest-Airflow run
# goes beside it instead of after it, and its output follows the main run's.
run_lowest >build/lowest.log 2>&1 &
lowest_pid=$!
echo "== pytest (the lowest-Airflow run goes on beside it: build/lowest.log)"
main_rc=0
"$BIN/pytest" tests --ignore=tests/benchmarks -ra --durations=15 --junitxml=build/junit.xml "$@" || main_rc=$?
echo "== main run: $(( $(date +%s) - started ))s"
lowest_rc=0
wait "$lowest_pid" || lowest_rc=$?
cat build/lowest.log
echo "== whole run: $(( $(date +%s) - started ))s"
if (( main_rc != 0 || lowest_rc != 0 )); then
    echo "== FAILED: main run exit $main_rc, lowest-Airflow run exit $lowest_rc" >&2
    exit 1
fi
