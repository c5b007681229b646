#!/usr/bin/env bash
# Runs the whole test suite (unit, data, integration, e2e) and the benchmarks in quick mode.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q "$@"
