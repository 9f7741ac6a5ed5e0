"""Keras 3 weight files (.weights.h5) of our Keras model (any backend): plain HDF5 datasets in the
layout Keras's own ``save_weights`` / ``load_weights`` use, read and written with h5py without
building the model (``weights_bridge.keras_h5``); no code is loaded.

A variable's native key is ``<layer name>/<variable name>``; our Keras layers are named by
canonical module path (see ``impls.keras3.layers``).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from . import keras_h5
from .atomic import atomic_path
from .checkpoint import Checkpoint, check_architecture, infer_variant, tensor_variants
from .errors import InputFileError, UnsafeInputError, WeightsMismatchError
from .mapping import MAX_LISTED, native_plan, plan, to_canonical, to_native

SUFFIX = ".weights.h5"
CODE_LAYERS = ("Lambda", "TFOpLambda")


def refuse_archive(path):
    """Always raises: a ``.keras`` archive (model config + weights) is never deserialized. Its
    config.json is scanned as plain JSON only to say whether it holds code (Lambda layers)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    lambdas = []
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("config.json")
            if info.file_size <= 64 << 20:
                _find_layers(json.loads(z.read(info).decode("utf-8")), lambdas)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, RecursionError, EOFError):
        pass  # not a readable archive: refused below all the same
    if lambdas:
        raise UnsafeInputError(f"{path}: refused: a .keras archive with Lambda layer {lambdas[0]!r} (Python code, "
                               f"expected none); only {SUFFIX} weight files are read, never a whole model")
    raise InputFileError(f"{path}: a .keras archive (whole model) is not read, expected a {SUFFIX} weights file "
                         f"(model.save_weights)")


def _find_layers(node, out):
    if isinstance(node, dict):
        if node.get("class_name") in CODE_LAYERS:
            out.append((node.get("config") or {}).get("name", node["class_name"])
                       if isinstance(node.get("config"), dict) else node["class_name"])
        for v in node.values():
            _find_layers(v, out)
    elif isinstance(node, list):
        for v in node:
            _find_layers(v, out)


def native_key(variable) -> str:
    return "/".join(variable.path.split("/")[-2:])


def native_shapes(model) -> dict:
    """'<layer name>/<variable>' -> shape for every variable of our (possibly unbuilt) Keras model,
    from the canonical shape table through the Keras layout rules."""
    from impls.spec.tensors import canonical_shapes

    from .keras_h5 import leaf_variables
    from .layouts import canonical_key

    table, shapes = canonical_shapes(model.spec), {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for var, _ in leaf_variables(layer):
            key = f"{layer.name}/{var}"
            (ck, layout), = canonical_key("keras", key)
            shapes[key] = layout.native_shape(table[ck])
    return shapes


def build_model(architecture, num_classes, aux_logits, input_size=None, variant="default"):
    from impls.keras3 import create_model
    from impls.spec import model_spec

    # Build at the architecture's own input size: Inception v3's aux head does not fit 224.
    input_size = input_size or model_spec(architecture).config.input_size[-1]
    kw = {"variant": variant} if variant and variant != "default" else {}
    return create_model(architecture, num_classes=num_classes, aux_logits=aux_logits, input_size=input_size, **kw)


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
    return _checkpoint(native, model, architecture, allow_nonfinite, where)


def _checkpoint(native, model, architecture, allow_nonfinite, where=None) -> Checkpoint:
    spec = model.spec
    names = [ck for ck, _ in plan("keras", native, where or f"keras model {model.name}").values()]
    ckpt = Checkpoint(architecture, {}, spec.num_classes, bool(spec.aux_heads), transform_input=spec.transform_input,
                      variant=infer_variant(architecture, names, bool(spec.aux_heads)))
    ckpt.tensors = to_canonical("keras", native, ckpt.expected_shapes(), where or f"keras model {model.name}",
                                allow_nonfinite, consume=True)
    return ckpt


def _peek_head(path: Path, architecture, found=None):
    """(num_classes, aux_logits) from the HDF5 layout Keras writes for our model: the aux heads
    live under ``aux_layers``; the trunk's only 2-D kernel is the classifier's (in, out)."""
    datasets = list((found if found is not None else _datasets(path)).items())
    if not datasets:
        raise InputFileError(f"{path}: holds no weights")
    kernels = [(n, s) for n, s in datasets if not n.startswith("aux_layers/") and len(s[0]) == 2]
    if len(kernels) != 1:
        raise WeightsMismatchError(f"{path}: expected one classifier kernel in a Keras {architecture} weights file, "
                                   f"found {len(kernels)}; was it written by this project's Keras model?")
    return int(kernels[0][1][0][1]), any(n.startswith("aux_layers/") for n, _ in datasets)


def _datasets(path) -> dict:
    """HDF5 dataset path -> (shape, dtype), read with h5py only (nothing is deserialized)."""
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: out.__setitem__(name, (tuple(obj.shape), obj.dtype))
                         if isinstance(obj, h5py.Dataset) else None)
    except (OSError, ValueError, RuntimeError) as e:
        raise InputFileError(f"{path}: not a readable HDF5 file ({' '.join(str(e).split())})") from None
    return out


def _check_layout(path, found: dict, expected: dict, architecture):
    """Every dataset Keras would write for this model, no other, each of the same shape and float32."""
    problems = [f"missing {k!r} (expected shape {s}, float32)" for k, (s, _) in expected.items() if k not in found]
    for k, (shape, dtype) in found.items():
        if k not in expected:
            problems.append(f"unexpected {k!r} (shape {shape}): no layer of Keras {architecture} takes it")
        elif shape != expected[k][0]:
            problems.append(f"{k!r} has shape {shape}, expected {expected[k][0]}")
        elif dtype != np.float32:
            problems.append(f"{k!r} has dtype {dtype}, expected float32 (the bridge never casts silently)")
    if problems:
        more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise WeightsMismatchError(f"{path}: {'; '.join(problems[:MAX_LISTED])}{more}")


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    if zipfile.is_zipfile(path):
        refuse_archive(path)
    check_architecture(architecture, str(path))
    found = _datasets(path)
    num_classes, aux = _peek_head(path, architecture, found)
    model, expected, keys = _reference(architecture, num_classes, aux, "default")
    for variant in tensor_variants(architecture):  # a variant with other tensors, if the file has its layout
        if found.keys() == expected.keys():
            break
        other = _reference(architecture, num_classes, aux, variant)
        if found.keys() == other[1].keys():
            model, expected, keys = other
    _check_layout(path, found, expected, architecture)
    return _checkpoint(keras_h5.read(path, keys), model, architecture, allow_nonfinite, where=str(path))


def _reference(architecture, num_classes, aux, variant):
    """(our unbuilt Keras model, {dataset: (shape, float32)} that Keras writes for it,
    {dataset: native key})."""
    model = keras_h5.unbuilt_model(architecture, num_classes, aux, variant)
    datasets = keras_h5.layout(model, native_shapes(model))
    return (model, {ds: (shape, np.dtype(np.float32)) for ds, (_, shape) in datasets.items()},
            {ds: key for ds, (key, _) in datasets.items()})


def load_weights(model, path, what: str):
    """Keras's own ``load_weights``, its errors as the bridge's: a mismatch names ``what``."""
    try:
        model.load_weights(str(path))
    except ValueError as e:
        raise WeightsMismatchError(f"{path}: does not fit {what}: {' '.join(str(e).split())[:500]}") from None
    except OSError as e:
        raise InputFileError(f"{path}: not a readable Keras weights file ({e})") from None
    return model


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    if not str(path).endswith(SUFFIX):
        raise WeightsMismatchError(f"{path}: Keras weight files must end in {SUFFIX}")
    model = keras_h5.unbuilt_model(ckpt.architecture, ckpt.num_classes, ckpt.aux_logits, ckpt.variant)
    steps = native_plan("keras", ckpt.tensors, native_shapes(model), f"keras {ckpt.architecture}")
    with atomic_path(path, overwrite) as tmp:  # one tensor in native layout at a time
        keras_h5.write(tmp, model, lambda key: steps[key][1].to_native(np.asarray(ckpt.tensors[steps[key][0]])))
    return Path(path)
