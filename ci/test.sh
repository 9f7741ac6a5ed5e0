#!/usr/bin/env bash
# README command 2: set up, then run the conformance suite. With no arguments it runs the
# default tier (everything not marked slow) in two test processes (pytest-xdist, whole files per
# process: about 5 minutes on 2 cores). pytest options pass through and run in one process, e.g.
# `bash ci/test.sh -m slow` for the heavy cross-framework matrices or
# `bash ci/test.sh -m "slow or not slow"` for everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
if [ "$#" -eq 0 ]; then
  set -- -m "not slow" -n 2 --dist loadfile
fi
exec .venv/bin/python -m pytest conformance/tests "$@"
