#!/usr/bin/env bash
# The GPU checks, for a machine with a CUDA device whose Python already has torch, torchvision,
# jax (CUDA), flax and keras 3 (TensorFlow is not needed: keras-tensorflow is then not run): the
# `gpu` tests, then every architecture's agreement matrix and one training step, each JSON in
# $GPU_OUT (default out/gpu). Every worker runs in full fp32 (TF32 and bf16 matmuls off:
# conformance/precision.py); the matrix's "precision" table records the device each one used.
# Usage: PYTHON=python3 bash ci/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${GPU_OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# every registered architecture unless ARCHS names some (impls.spec's one registry)
ARCHS=${ARCHS:-$("$PY" -c "from impls.spec import ARCHITECTURES; print(*ARCHITECTURES)")}
rc=0
"$PY" -m pytest -q -p no:cacheprovider -m gpu conformance/tests || rc=1
for arch in $ARCHS; do
  "$PY" -m conformance.cli verify "$arch" --json "$OUT/$arch.json" || rc=1
done
"$PY" -m conformance.cli verify googlenet --train --json "$OUT/googlenet-train.json" || rc=1
exit $rc
