#!/usr/bin/env bash
# README command 2: set up, then run the conformance suite. With no arguments (or `all`) it runs
# the whole suite, what CI runs: every model x every implementation, peers, training steps;
# 28:45-31:21 on 2 cores from an empty JAX compilation cache (2026-12-04). `bash ci/test.sh quick`
# runs the quick tier for local work (everything not marked slow; 4:39). Both run in two
# test processes (pytest-xdist, whole files per process, the longest first: conformance/tests/conftest.py)
# sharing one set of framework workers.
# Other arguments pass through to pytest and run in one process, e.g. `bash ci/test.sh -m slow`
# or `bash ci/test.sh conformance/tests/test_bridge.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
parallel=(-n 2 --dist loadfile --no-loadscope-reorder)  # files in conftest's order, not xdist's
if [ "$#" -eq 0 ]; then
  set -- "${parallel[@]}"
elif [ "$1" = "all" ]; then
  shift
  set -- "${parallel[@]}" "$@"
elif [ "$1" = "quick" ]; then
  shift
  set -- -m "not slow" "${parallel[@]}" "$@"
fi
exec .venv/bin/python -m pytest conformance/tests "$@"
