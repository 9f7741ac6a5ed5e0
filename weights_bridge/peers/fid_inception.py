"""The FID Inception's weight file as pytorch-fid and torch-fidelity use it: a torch state_dict
(.pth) of TF's 2015-12-05 Inception v3 graph, our ``inception_v3`` in variant ``fid``.

pytorch-fid 0.3.0 loads it into ``fid_inception_v3()`` (torchvision's ``Inception3`` with 1008
classes, no aux head, its FID blocks swapped in) from torch.hub's cache, file
``pt_inception-2015-12-05-6726825d.pth``; torch-fidelity 0.4.0 into
``FeatureExtractorInceptionV3`` from ``feature_extractor_weights_path`` or the same cache, file
``weights-inception-2015-12-05-6726825d.pth``. Both use torchvision's names
(``Conv2d_1a_3x3.conv.weight`` ... ``fc.weight`` [1008, 2048]), both load with
``load_state_dict(strict=True)``. A tensors-only file: the variant is fixed by the format (the
FID graph's pools are not in its tensors), so a file read this way is always ``fid``. Neither
library is imported here (files are read with ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import os
from pathlib import Path

from impls.spec import model_spec

from .. import torch_io
from ..checkpoint import Checkpoint
from ..errors import WeightsMismatchError

ARCHITECTURES = ("inception_v3",)
VARIANT = "fid"
RECORDS_VARIANT = True  # the format fixes the checkpoint variant: --variant must agree with it
REQUIRES = ("torch",)  # its files are read and written with torch.load / torch.save
# Where each library looks for the weights when it is given none: torch.hub's checkpoint cache.
CACHED_FILES = {"pytorch-fid": "pt_inception-2015-12-05-6726825d.pth",
                "torch-fidelity": "weights-inception-2015-12-05-6726825d.pth"}


def _check(architecture, variant, where):
    if architecture not in ARCHITECTURES:
        raise WeightsMismatchError(f"{where}: the FID Inception's weights are inception_v3 (variant {VARIANT!r}), "
                                   f"not {architecture!r}")
    if variant != VARIANT:
        raise WeightsMismatchError(f"{where}: a {variant!r}-variant checkpoint is not the FID Inception; pytorch-fid "
                                   f"and torch-fidelity would compute different numbers (keep it in a format of ours)")


def _check_head(ckpt: Checkpoint, where):
    """Both libraries build 1008 classes and no aux head, and load strictly."""
    classes = model_spec(ckpt.architecture, variant=VARIANT).num_classes
    if ckpt.num_classes != classes or ckpt.aux_logits:
        found = f"{ckpt.num_classes} classes" + (" and an aux head" if ckpt.aux_logits else "")
        raise WeightsMismatchError(f"{where}: tensor 'fc.weight' is for {found}; the FID Inception has {classes} "
                                   f"classes and no aux head")


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    _check(architecture, VARIANT, str(path))
    ckpt = torch_io.read(path, architecture, allow_nonfinite)
    ckpt.variant = VARIANT
    _check_head(ckpt, str(path))
    return ckpt


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    _check(ckpt.architecture, ckpt.variant, str(path))
    _check_head(ckpt, str(path))
    return torch_io.write(ckpt, path, overwrite)


def cache_candidates() -> list:
    """The files pytorch-fid and torch-fidelity download their weights to, in torch.hub's
    checkpoint folder (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/...``)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return [Path(home) / "hub" / "checkpoints" / name for name in CACHED_FILES.values()]
