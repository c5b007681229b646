#!/usr/bin/env bash
# One command that sets up everything dyadsync and its test suite need on a fresh
# Debian machine: system packages (MQTT broker, headless Chromium) and a virtualenv
# in .venv with dyadsync installed editable plus the dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1; then
    # mosquitto: real MQTT broker for integration tests; chromium: dashboard e2e tests.
    need=()
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    if [ ${#need[@]} -gt 0 ]; then
        $SUDO apt-get update
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}" fonts-dejavu-core
    fi
    # The packaged broker starts a system service on port 1883; tests start their own.
    ($SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true)
else
    echo "install.sh: apt-get not found; install mosquitto and chromium yourself" >&2
fi

PYTHON="${PYTHON:-python3}"
[ -d .venv ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --upgrade pip >/dev/null
.venv/bin/python -m pip install -e '.[dev]'

# The official BIDS validator, for the BIDS export's test (docs/bids.md); local to the
# project in .tools/, skipped when this version is already there.
BIDS_VALIDATOR_VERSION=1.15.0
if ! grep -qs "\"version\": \"$BIDS_VALIDATOR_VERSION\"" .tools/node_modules/bids-validator/package.json; then
    if command -v npm >/dev/null 2>&1; then
        npm install --prefix .tools "bids-validator@$BIDS_VALIDATOR_VERSION" --no-audit --no-fund
    else
        echo "install.sh: npm not found; install Node.js to get bids-validator" >&2
    fi
fi
echo "dyadsync installed: activate with 'source .venv/bin/activate'"
