"""PyTorch ``state_dict`` files (.pth/.pt): read with ``weights_only=True``, never unpickling code."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .checkpoint import Checkpoint, infer_head, infer_variant
from .errors import InputFileError, UnsafeInputError, WeightsMismatchError
from .mapping import check_canonical

# Wrappers training scripts commonly put around a state_dict.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
REQUIRES = ("torch",)  # modules its read and write import (extras.require, before either)


def load_state_dict(path) -> dict:
    """The file's tensors as float32 numpy arrays, BN ``num_batches_tracked`` dropped."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "GLOBAL" in ln or "nsupported" in ln), lines[-1] if lines else type(e).__name__)
        if "GLOBAL" not in str(e) and "global" not in str(e):
            raise InputFileError(f"{path}: not a readable PyTorch file: expected a state_dict archive or pickle, "
                                 f"found a corrupt or foreign byte stream [{reason}]") from None
        raise UnsafeInputError(f"{path}: refused to unpickle: it holds Python objects, not only tensors "
                               f"(a whole nn.Module or arbitrary code); save model.state_dict() instead. "
                               f"[{reason}]") from None
    except Exception as e:  # torch raises RuntimeError/EOFError/ValueError for corrupt archives
        raise InputFileError(f"{path}: not a readable PyTorch file ({type(e).__name__}: {e})") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise InputFileError(f"{path}: expected a state_dict (a dict of tensors), found {type(obj).__name__}")
    return arrays(obj, path)


def arrays(state_dict: dict, path) -> dict:
    """A state_dict's tensors as float32 numpy arrays (shared, not copied), BN
    ``num_batches_tracked`` dropped, DDP's ``module.`` prefix removed; ``path`` names it in errors."""
    import torch

    out = {}
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise InputFileError(f"{path}: key {k!r} is a {type(k).__name__}, expected a str tensor name")
        if not isinstance(v, torch.Tensor):
            raise InputFileError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
        if k.endswith("num_batches_tracked"):
            continue  # only used by momentum=None BN, which none of these models use
        if k.startswith("module."):  # DistributedDataParallel's prefix
            k = k[len("module."):]
        if v.dtype != torch.float32:
            raise WeightsMismatchError(f"{path}: tensor {k!r} has dtype {str(v.dtype).replace('torch.', '')}, "
                                       f"expected float32 (the bridge never casts silently)")
        if k in out:
            raise WeightsMismatchError(f"{path}: tensor {k!r} appears twice (with and without 'module.'), expected once")
        if v.layout != torch.strided or v.device.type != "cpu" or v.is_quantized:
            raise InputFileError(f"{path}: tensor {k!r} is {v.layout}/{v.device.type}, expected a dense CPU tensor")
        out[k] = v.detach().contiguous().numpy()
    return out


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    return read_state_dict(load_state_dict(path), architecture, str(path), allow_nonfinite)


def read_state_dict(state_dict: dict, architecture, where="state_dict", allow_nonfinite=False) -> Checkpoint:
    """A checkpoint from a state_dict (torch tensors or the numpy arrays ``arrays`` gives), with
    every check ``read`` makes; ``where`` names it in errors."""
    tensors = state_dict if all(isinstance(v, np.ndarray) for v in state_dict.values()) else arrays(state_dict, where)
    num_classes, aux = infer_head(architecture, {k: v.shape for k, v in tensors.items()}, where)
    ckpt = Checkpoint(architecture, tensors, num_classes, aux, variant=infer_variant(architecture, tensors, aux))
    check_canonical(tensors, ckpt.expected_shapes(), where, allow_nonfinite)
    return ckpt


def state_dict(ckpt: Checkpoint) -> dict:
    """torch tensors in the peer's key order, ``num_batches_tracked`` restored as 0 per BN."""
    import torch

    sd = {}
    for k, v in ckpt.tensors.items():
        a = np.asarray(v, dtype=np.float32)  # shared, not copied, where torch can use it as it is
        sd[k] = torch.from_numpy(a if a.flags.writeable and a.flags.c_contiguous else np.array(a))
        if k.endswith(".running_var"):
            sd[k[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return sd


def to_model(ckpt: Checkpoint, **overrides):
    """Our PyTorch model holding ``ckpt``, loaded strictly, in eval mode: the one way a checkpoint
    becomes a torch model. ``overrides``: ``create_model`` keywords (e.g. ``dropout=0.0``)."""
    from impls.torch_nn import create_model

    model = create_model(ckpt.architecture, **ckpt.model_kwargs(**overrides))
    model.load_state_dict(state_dict(ckpt), strict=True)
    return model.eval()


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    import torch

    check_canonical(ckpt.tensors, ckpt.expected_shapes(), f"{path} (before writing)", allow_nonfinite=True)
    with atomic_path(path, overwrite) as tmp:
        torch.save(state_dict(ckpt), tmp)
    return Path(path)
