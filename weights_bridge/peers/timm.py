"""timm ``inception_v3`` state_dict files (.pth/.pt), the ``tv_in1k``, ``tf_in1k``, ``tf_adv_in1k``
and ``gluon_in1k`` weights alike (one architecture; only the weights and preprocessing differ).

timm's state_dict keys and shapes equal torchvision's (checked in the tests against
``timm.create_model("inception_v3")``): ``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.bias``,
``AuxLogits.conv0.conv.weight``, ``fc.weight``. timm builds the aux head only with
``aux_logits=True`` (default False), so its non-tv weights carry none: the aux head is read off
the tensors. timm's avg pools include the padding (torch's default), so a timm checkpoint is the
"default" variant; ``timm`` itself is never imported here (the file is read with
``torch.load(weights_only=True)``).

Load a written file with ``timm.create_model("inception_v3", num_classes=N, aux_logits=AUX)`` and
``load_state_dict(..., strict=True)``. timm returns ``(logits, aux_logits)`` from ``forward`` in
eval mode too when ``aux_logits=True``; torchvision and ours return the logits alone in eval.
"""
from __future__ import annotations

from pathlib import Path

from .. import torch_io
from ..checkpoint import Checkpoint
from ..errors import WeightsMismatchError

# inception_v4 / inception_resnet_v2: our state_dict keys and shapes are timm's (impls.spec.inception_v4),
# the same avg pools (count_include_pad=False), no aux head, no transform_input.
ARCHITECTURES = ("inception_v3", "inception_v4", "inception_resnet_v2")
RECORDS_VARIANT = True  # the file fixes the checkpoint variant: --variant must agree with it
REQUIRES = ("torch",)  # its files are read and written with torch.load / torch.save


def _check_arch(architecture, where):
    if architecture not in ARCHITECTURES:
        raise WeightsMismatchError(f"{where}: timm checkpoints are supported for {', '.join(ARCHITECTURES)}, "
                                   f"not {architecture!r}")


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    _check_arch(architecture, str(path))
    ckpt = torch_io.read(path, architecture, allow_nonfinite)
    ckpt.variant = "default"
    return ckpt


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    _check_arch(ckpt.architecture, str(path))
    if ckpt.architecture == "inception_v3" and ckpt.spec().config.avg_pool_count_include_pad is not True:
        raise WeightsMismatchError(
            f"{path}: a {ckpt.variant!r}-variant checkpoint averages its pools without the padding, timm's "
            f"inception_v3 with it: timm would compute different numbers; keep it in a format of ours")
    if ckpt.transform_input:
        raise WeightsMismatchError(f"{path}: checkpoint uses transform_input=True, which timm's inception_v3 lacks "
                                   f"(normalise with timm's mean/std instead)")
    return torch_io.write(ckpt, path, overwrite)
