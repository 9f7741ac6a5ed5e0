#!/usr/bin/env bash
# README command 2: set up, then run the conformance suite (pass pytest options through,
# e.g. -m "not slow" for the fast tier).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
exec .venv/bin/python -m pytest conformance "$@"
