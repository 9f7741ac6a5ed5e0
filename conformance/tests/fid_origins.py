"""The FID input pipelines' origins, run through the installed peers' own code (torch-fidelity,
pytorch-fid, clean-fid), for tests to compare against: expected values never come from ours.

The peers' networks download their weights when built, so the two nn.Modules are made without
``__init__`` and given just what their ``forward`` reads before the first convolution: their
preprocessing runs exactly as they ship it and the network stops there.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

SIZE = 299


class _Stop(Exception):
    """Carries the first convolution's input out of a peer's forward."""


class _StopHere(nn.Module):
    def forward(self, x):
        raise _Stop(x)


def _bare(cls, **attributes):
    module = nn.Module.__new__(cls)
    nn.Module.__init__(module)
    for name, value in attributes.items():
        setattr(module, name, value)
    return module


def nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def tf1(images: np.ndarray) -> np.ndarray:
    """torch-fidelity's FeatureExtractorInceptionV3 up to Conv2d_1a_3x3: uint8 NHWC -> NCHW."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = _bare(FeatureExtractorInceptionV3, features_list=["2048"], feature_extractor_internal_dtype=torch.float32,
                Conv2d_1a_3x3=_StopHere())
    try:
        net(torch.from_numpy(nchw(images)))
    except _Stop as stop:
        return stop.args[0].numpy()
    raise AssertionError("torch-fidelity's forward never reached Conv2d_1a_3x3")


def pytorch_fid_pixels(images: np.ndarray) -> np.ndarray:
    """pytorch-fid's data path (fid_score: ``TF.ToTensor()``): uint8 NHWC -> float [0, 1] NCHW."""
    import torchvision.transforms as TF

    return torch.stack([TF.ToTensor()(image) for image in images]).numpy()


def pytorch_fid(images: np.ndarray) -> np.ndarray:
    """pytorch-fid's ``InceptionV3.forward`` with its defaults (resize_input, normalize_input) up to
    its first block, from ToTensor's pixels: uint8 NHWC -> NCHW."""
    from pytorch_fid.inception import InceptionV3

    net = _bare(InceptionV3, resize_input=True, normalize_input=True, blocks=nn.ModuleList([nn.Identity()]),
                output_blocks=[0], last_needed_block=0)
    return net(torch.from_numpy(pytorch_fid_pixels(images)))[0].numpy()


def clean(images: np.ndarray) -> np.ndarray:
    """clean-fid's "clean" mode: ``build_resizer("clean")`` per image, ResizeDataset's ToTensor
    (float32: no scaling), then ``InceptionV3W.forward``'s (x - 128) / 128: uint8 NHWC -> NCHW."""
    import torchvision.transforms as TF
    from cleanfid.resize import build_resizer

    resize = build_resizer("clean")
    x = torch.stack([TF.ToTensor()(resize(image)) for image in images])
    return ((x - 128) / 128).numpy()


ORIGINS = {"tf1": tf1, "pytorch-fid": pytorch_fid, "clean": clean}


def rule_matrix(rule: str, in_size: int, out_size: int = SIZE) -> np.ndarray:
    """The origin's own (out_size, in_size) resize weights: an identity image resized along its
    width only (its height kept, which every origin leaves untouched), so row r of the result is
    the weights' column r, as the origin computes them (float32)."""
    eye = np.eye(in_size, dtype=np.float32)
    if rule == "tf1-bilinear":
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        out = interpolate_bilinear_2d_like_tensorflow1x(torch.from_numpy(eye)[None, None], size=(in_size, out_size),
                                                        align_corners=False)[0, 0].numpy()
    elif rule == "torch-bilinear":  # as pytorch-fid's InceptionV3.forward calls it
        out = torch.nn.functional.interpolate(torch.from_numpy(eye)[None, None], size=(in_size, out_size),
                                              mode="bilinear", align_corners=False)[0, 0].numpy()
    elif rule == "pil-bicubic":  # as clean-fid's make_resizer("PIL", False, "bicubic", ...) calls it
        from PIL import Image

        out = np.asarray(Image.fromarray(eye, mode="F").resize((out_size, in_size), resample=Image.BICUBIC))
    else:
        raise ValueError(rule)
    return out.T.astype(np.float64)
