#!/usr/bin/env bash
# The single way to run MedChain's tests (the README's test command calls this).
# Unit, property, integration (real PostgreSQL, Mosquitto, Chromium) and smoke-training tests.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pytest -q "$@"
