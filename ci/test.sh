#!/usr/bin/env bash
# README command 2: set up, then run the conformance suite. With no arguments it runs the quick
# tier (everything not marked slow; about 5 minutes on 2 cores), what CI runs; `bash ci/test.sh
# all` runs the whole suite (every model x every implementation, peers, training steps; 31-33
# minutes on 2 cores from an empty JAX compilation cache, 2026-12-04). Both run in two
# test processes (pytest-xdist, whole files per process, the longest first: conformance/tests/conftest.py)
# sharing one set of framework workers.
# Other arguments pass through to pytest and run in one process, e.g. `bash ci/test.sh -m slow`
# or `bash ci/test.sh conformance/tests/test_bridge.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
parallel=(-n 2 --dist loadfile --no-loadscope-reorder)  # files in conftest's order, not xdist's
if [ "$#" -eq 0 ]; then
  set -- -m "not slow" "${parallel[@]}"
elif [ "$1" = "all" ]; then
  shift
  set -- "${parallel[@]}" "$@"
fi
exec .venv/bin/python -m pytest conformance/tests "$@"
