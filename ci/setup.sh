#!/usr/bin/env bash
# Creates .venv in the checkout and installs the project with every extra. Idempotent:
# a second run only checks that the pinned packages are there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch and torchvision must be installed together (older torch wheels break torchvision ops).
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[all]" 2>&1 \
  | grep -v -E "^WARNING: Location .* is ignored" || true
# (through the CLI's own filter of TensorFlow's start-up log lines: conformance/quiet.py)
.venv/bin/python -c "from conformance import quiet; quiet.configure()
import torch, torchvision, jax, flax, orbax.checkpoint, keras, tensorflow, safetensors, pytest, xdist, pytorch_fid, torch_fidelity, cleanfid" \
  || { echo "ci/setup.sh: install incomplete" >&2; exit 1; }
