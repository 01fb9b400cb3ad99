#!/usr/bin/env bash
# Lock the tested versions, with hashes, from pyproject.toml (pip-tools):
#   requirements.txt       what the tests run with: .[all,dev], torch 2.13.0 CPU build
#   requirements-edge.txt  an edge-only device: .[edge]
# Run after changing dependencies in pyproject.toml, then run the tests on the new lock.
# pip-tools runs from a throw-away venv, so the project's own venv is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install -q "pip-tools==7.7.0"
export CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh"
compile=("$tools/bin/pip-compile" --quiet --generate-hashes --strip-extras --no-emit-find-links
  --no-emit-index-url --unsafe-package medchain
  --pip-args "--retries 1" --extra-index-url https://download.pytorch.org/whl/cpu)
"${compile[@]}" --extra all --extra dev --output-file requirements.txt pyproject.toml
"${compile[@]}" --extra edge --output-file requirements-edge.txt pyproject.toml
# medchain itself comes from the clone (pip install --no-deps -e .): drop pip-compile's note on it
sed -i '/^# WARNING: The following packages were not pinned/,$d' requirements.txt requirements-edge.txt
sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' requirements.txt requirements-edge.txt
