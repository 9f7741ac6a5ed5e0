"""Keras 3 weight files (.weights.h5), written and read by Keras's own ``save_weights`` /
``load_weights`` on our Keras model (any backend): plain HDF5 datasets, no code is loaded.

A variable's native key is ``<layer name>/<variable name>``; our Keras layers are named by
canonical module path (see ``impls.keras3.layers``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .checkpoint import Checkpoint, check_architecture
from .errors import InputFileError, WeightsMismatchError
from .mapping import to_canonical, to_native

SUFFIX = ".weights.h5"


def native_key(variable) -> str:
    return "/".join(variable.path.split("/")[-2:])


def build_model(architecture, num_classes, aux_logits, input_size=None):
    from impls.keras3 import create_model
    from impls.spec import model_spec

    # Build at the architecture's own input size: Inception v3's aux head does not fit 224.
    input_size = input_size or model_spec(architecture).config.input_size[-1]
    return create_model(architecture, num_classes=num_classes, aux_logits=aux_logits, input_size=input_size)


def load_into(model, ckpt: Checkpoint):
    """Assigns a checkpoint's tensors to a built Keras model (strict: every variable filled)."""
    shapes = {native_key(v): tuple(v.shape) for v in model.weights}
    if len(shapes) != len(model.weights):
        raise WeightsMismatchError(f"keras model {model.name}: two variables share a layer/variable name")
    native = to_native("keras", ckpt.tensors, shapes, f"keras model {model.name}")
    for v in model.weights:
        v.assign(native[native_key(v)])
    return model


def from_model(model, architecture, allow_nonfinite=True, where=None) -> Checkpoint:
    from keras import ops

    native = {native_key(v): np.asarray(ops.convert_to_numpy(v.value), np.float32) for v in model.weights}
    spec = model.spec
    ckpt = Checkpoint(architecture, {}, spec.num_classes, bool(spec.aux_heads), transform_input=spec.transform_input)
    ckpt.tensors = to_canonical("keras", native, ckpt.expected_shapes(), where or f"keras model {model.name}",
                                allow_nonfinite)
    return ckpt


def _peek_head(path: Path, architecture):
    """(num_classes, aux_logits) from the HDF5 layout Keras writes for our model: the aux heads
    live under ``aux_layers``; the trunk's only 2-D kernel is the classifier's (in, out)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            datasets = []
            f.visititems(lambda name, obj: datasets.append((name, obj.shape)) if isinstance(obj, h5py.Dataset) else None)
    except OSError as e:
        raise InputFileError(f"{path}: not a readable HDF5 file ({e})") from None
    if not datasets:
        raise InputFileError(f"{path}: holds no weights")
    kernels = [(n, s) for n, s in datasets if not n.startswith("aux_layers/") and len(s) == 2]
    if len(kernels) != 1:
        raise WeightsMismatchError(f"{path}: expected one classifier kernel in a Keras {architecture} weights file, "
                                   f"found {len(kernels)}; was it written by this project's Keras model?")
    return int(kernels[0][1][1]), any(n.startswith("aux_layers/") for n, _ in datasets)


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    check_architecture(architecture, str(path))
    num_classes, aux = _peek_head(path, architecture)
    model = build_model(architecture, num_classes, aux)
    try:
        model.load_weights(str(path))
    except ValueError as e:
        raise WeightsMismatchError(f"{path}: does not fit Keras {architecture} "
                                   f"(num_classes={num_classes}, aux_logits={aux}): {e}") from None
    except OSError as e:
        raise InputFileError(f"{path}: not a readable Keras weights file ({e})") from None
    return from_model(model, architecture, allow_nonfinite, where=str(path))


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    if not str(path).endswith(SUFFIX):
        raise WeightsMismatchError(f"{path}: Keras weight files must end in {SUFFIX}")
    model = load_into(build_model(ckpt.architecture, ckpt.num_classes, ckpt.aux_logits), ckpt)
    with atomic_path(path, overwrite) as tmp:
        model.save_weights(str(tmp))
    return Path(path)
