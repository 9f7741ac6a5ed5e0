"""``pretrainedmodels``' ``bninception`` state_dict files (.pth): Cadene's port of yjxiong's Caffe
BN-Inception, our ``bn_inception`` in variant ``caffe`` (conv biases, BN eps 1e-5, Caffe pools;
see ``impls.spec.bn_inception``).

Its tensors are flat attributes named after the Caffe prototxt: ``conv1_7x7_s2.weight`` (the conv,
with bias), ``conv1_7x7_s2_bn.running_mean`` (its BN), ``inception_3a_double_3x3_1.weight``,
``last_linear.bias``. Every name is derived from our canonical one by the tables below, and the
table is checked to be one-to-one over the whole model, so an unknown, duplicated or missing tensor
is an error naming it. ``pretrainedmodels`` itself is never imported here (files are read with
``torch.load(weights_only=True)``).

Load a written file with ``pretrainedmodels.bninception(num_classes=N, pretrained=None)`` and
``load_state_dict(..., strict=True)``. Feed it what its weights expect: BGR, 0..255, minus
(104, 117, 128), at 223..230 pixels (224 native).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import torch_io
from ..atomic import atomic_path
from ..checkpoint import Checkpoint
from ..errors import WeightsMismatchError
from ..mapping import check_canonical, fail

ARCHITECTURES = ("bn_inception",)
VARIANT = "caffe"
RECORDS_VARIANT = True  # the file fixes the checkpoint variant: --variant must agree with it
REQUIRES = ("torch",)  # its files are read and written with torch.load / torch.save
STEMS = {"conv1": "conv1_7x7_s2", "conv2": "conv2_3x3_reduce", "conv3": "conv2_3x3"}
# Our branch path inside a module -> the Caffe layer's suffix.
BRANCHES = {"branch1": "1x1", "branch2.0": "3x3_reduce", "branch2.1": "3x3", "branch3.0": "double_3x3_reduce",
            "branch3.1": "double_3x3_1", "branch3.2": "double_3x3_2", "branch4.1": "pool_proj"}
CLASSIFIER = ("fc", "last_linear")


def peer_name(canonical: str) -> str:
    """Our canonical tensor name -> pretrainedmodels' (``inception3a.branch3.1.bn.weight`` ->
    ``inception_3a_double_3x3_1_bn.weight``)."""
    head, leaf = canonical.rsplit(".", 1)
    if head == CLASSIFIER[0]:
        return f"{CLASSIFIER[1]}.{leaf}"
    module, kind = head.rsplit(".", 1)  # kind: 'conv' or 'bn'
    if module in STEMS:
        layer = STEMS[module]
    else:
        stage, branch = module.split(".", 1)
        if not stage.startswith("inception") or branch not in BRANCHES:
            raise KeyError(canonical)
        layer = f"inception_{stage[len('inception'):]}_{BRANCHES[branch]}"
    return f"{layer}{'_bn' if kind == 'bn' else ''}.{leaf}"


def name_table(ckpt: Checkpoint) -> dict:
    """canonical -> peer name for every tensor of ``ckpt``'s model, checked one-to-one."""
    table = {k: peer_name(k) for k in ckpt.expected_shapes()}
    if len(set(table.values())) != len(table):
        raise AssertionError("pretrainedmodels name table is not one-to-one")  # a bug here, not bad input
    return table


def _check(architecture, variant, where):
    if architecture not in ARCHITECTURES:
        raise WeightsMismatchError(f"{where}: pretrainedmodels checkpoints are supported for "
                                   f"{', '.join(ARCHITECTURES)}, not {architecture!r}")
    if variant != VARIANT:
        raise WeightsMismatchError(
            f"{where}: a {variant!r}-variant bn_inception checkpoint is not pretrainedmodels' bninception (the "
            f"{VARIANT!r} variant: conv biases, BN eps 1e-5, Caffe pools); it would compute different numbers")


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    _check(architecture, VARIANT, str(path))
    native = torch_io.load_state_dict(path)
    fc = f"{CLASSIFIER[1]}.weight"
    if fc not in native or native[fc].ndim != 2:
        raise WeightsMismatchError(f"{path}: classifier tensor {fc!r} missing or not 2-D; "
                                   f"is this a pretrainedmodels bninception state_dict?")
    ckpt = Checkpoint(architecture, {}, int(native[fc].shape[0]), False, variant=VARIANT)
    to_ours = {peer: ours for ours, peer in name_table(ckpt).items()}
    problems = [f"pretrainedmodels tensor {k!r} (shape {tuple(v.shape)}) has no counterpart in bn_inception "
                f"({VARIANT})" for k, v in native.items() if k not in to_ours]
    if problems:
        fail(str(path), problems)
    ckpt.tensors = {to_ours[k]: v for k, v in native.items()}
    expected = ckpt.expected_shapes()
    try:
        check_canonical(ckpt.tensors, expected, str(path), allow_nonfinite)
    except WeightsMismatchError as e:  # say it in the file's own names
        message = str(e)
        for ours, peer in name_table(ckpt).items():
            message = message.replace(f"'{ours}'", f"'{peer}'")
        raise WeightsMismatchError(message) from None
    return ckpt


def state_dict(ckpt: Checkpoint) -> dict:
    """torch tensors under pretrainedmodels' names, in its order, ``num_batches_tracked`` as 0."""
    import torch

    _check(ckpt.architecture, ckpt.variant, f"bn_inception ({ckpt.variant})")
    sd = {}
    for ours, peer in name_table(ckpt).items():
        sd[peer] = torch.from_numpy(np.array(ckpt.tensors[ours], dtype=np.float32))
        if peer.endswith("_bn.running_var"):
            sd[peer[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return sd


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    import torch

    _check(ckpt.architecture, ckpt.variant, str(path))
    if ckpt.transform_input:
        raise WeightsMismatchError(f"{path}: checkpoint uses transform_input=True, which bninception lacks")
    check_canonical(ckpt.tensors, ckpt.expected_shapes(), f"{path} (before writing)", allow_nonfinite=True)
    sd = state_dict(ckpt)
    with atomic_path(path, overwrite) as tmp:
        torch.save(sd, tmp)
    return Path(path)
