#!/usr/bin/env bash
# README command 1: set up, then convert a GoogLeNet checkpoint PyTorch -> Flax -> Keras -> PyTorch
# through the neutral format, check the round trip is bit-identical, and print the agreement matrix.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
OUT=${OUT_DIR:-out/main_job}
rm -rf "$OUT" && mkdir -p "$OUT"
PY=.venv/bin/python
BRIDGE=.venv/bin/inception-bridge
$BRIDGE seed-weights googlenet "$OUT/googlenet.pth" --seed 0
$BRIDGE convert "$OUT/googlenet.pth" "$OUT/googlenet.neutral" --arch googlenet
$BRIDGE convert "$OUT/googlenet.neutral" "$OUT/googlenet.msgpack"
$BRIDGE convert "$OUT/googlenet.msgpack" "$OUT/googlenet.weights.h5" --arch googlenet
$BRIDGE convert "$OUT/googlenet.weights.h5" "$OUT/roundtrip.pth" --arch googlenet
$PY - "$OUT/googlenet.pth" "$OUT/roundtrip.pth" <<'PYEOF'
import sys, torch
a, b = (torch.load(p, weights_only=True) for p in sys.argv[1:])
same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if not k.endswith("num_batches_tracked"))
print(f"round trip torch -> neutral -> flax -> keras -> torch: {'bit-identical' if same else 'DIFFERENT'} ({len(a)} tensors)")
sys.exit(0 if same else 1)
PYEOF
for arch in googlenet googlenet_paper; do
  $BRIDGE verify "$arch" --json "$OUT/$arch-matrix.json" --workdir "$OUT/verify-$arch"
done
