"""The weight bridge on Inception-v4, Inception-ResNet-v2 and BN-Inception (both variants): all six
directions between torch, flax and keras, each through a neutral folder, bit-identical.

Random tensors of the canonical shapes stand in for weights (losslessness does not need a working
network), and 10 classes keep the files small. Keras runs in a subprocess (see conftest). Slow:
every Keras read and write builds the Keras model symbolically (four per model): measured 106 s
(bn_inception) to 404 s (inception_resnet_v2) per model on two shared, busy cores. GoogLeNet's six
directions stay in the quick tier (test_bridge.py)."""
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from impls.spec import model_spec
from impls.spec.tensors import canonical_shapes

from .helpers import require, run_python


CASES = [("inception_v4", "default"), ("inception_resnet_v2", "default"), ("bn_inception", "default"),
         ("bn_inception", "caffe")]
# (source, destination): every ordered pair of torch, flax and keras, each hop through a neutral folder.
STEPS = [("src.pth", "a.msgpack"), ("src.pth", "a.weights.h5"), ("a.msgpack", "b.weights.h5"),
         ("a.weights.h5", "b.msgpack"), ("b.weights.h5", "c.pth"), ("b.msgpack", "d.pth")]

CONVERT = """
import os, sys
import weights_bridge as wb
work, arch = sys.argv[1], sys.argv[2]
for i, (a, b) in enumerate({steps!r}):
    neutral = os.path.join(work, f"n{{i}}")
    wb.convert(os.path.join(work, a), neutral, arch)
    wb.convert(neutral, os.path.join(work, b))
"""


def _random_state_dict(arch, variant, num_classes=10):
    kw = {} if variant == "default" else {"variant": variant}
    rng = np.random.default_rng(0)
    return {k: torch.from_numpy(rng.standard_normal(s, dtype=np.float32))
            for k, s in canonical_shapes(model_spec(arch, num_classes=num_classes, **kw)).items()}


@pytest.mark.slow
@pytest.mark.parametrize("arch, variant", CASES)
def test_six_directions_bit_identical(arch, variant, tmp_path, room):
    require("keras", "flax")
    original = _random_state_dict(arch, variant)
    torch.save(original, tmp_path / "src.pth")
    run_python(CONVERT.format(steps=STEPS), tmp_path, arch)
    for i in range(len(STEPS)):  # every hop's neutral folder holds the original tensors, bit for bit
        neutral = load_file(str(tmp_path / f"n{i}" / "model.safetensors"))
        assert neutral.keys() == original.keys()
        assert all(np.array_equal(neutral[k], original[k].numpy()) for k in original), STEPS[i]
        assert f'"variant": "{variant}"' in (tmp_path / f"n{i}" / "config.json").read_text()
    for name in ("c.pth", "d.pth"):  # torch -> flax -> keras -> torch and torch -> keras -> flax -> torch
        back = {k: v for k, v in torch.load(tmp_path / name, weights_only=True).items()
                if not k.endswith("num_batches_tracked")}
        assert back.keys() == original.keys()
        assert all(v.dtype == torch.float32 and torch.equal(v, original[k]) for k, v in back.items()), name
