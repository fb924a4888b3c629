#!/usr/bin/env bash
# Installs the Debian packages the integration suite (pytest -m airflow_integration) needs:
# PostgreSQL (private metadata DB cluster), Chromium and its WebDriver (UI checks), Redis
# (the Celery broker of the CeleryExecutor scenarios).
# Idempotent and quiet: does nothing when everything is already there. Needs root (or sudo).
set -euo pipefail

PACKAGES=(postgresql chromium chromium-driver redis-server)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "install-system-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
run_quiet() {
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
}
run_quiet "${SUDO[@]}" apt-get update -qq
# policy-rc.d keeps the package's own cluster (port 5432) from being started:
# the suite runs a private PostgreSQL cluster on a free port instead.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    created_policy=1
fi
cleanup() {
    if [[ "$created_policy" -eq 1 ]]; then
        "${SUDO[@]}" rm -f "$policy"
    fi
    rm -f "$log"
}
trap cleanup EXIT
run_quiet "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
