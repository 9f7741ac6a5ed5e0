"""Keras 3 weight files (.weights.h5), written and read by Keras's own ``save_weights`` /
``load_weights`` on our Keras model (any backend): plain HDF5 datasets, no code is loaded.

A variable's native key is ``<layer name>/<variable name>``; our Keras layers are named by
canonical module path (see ``impls.keras3.layers``).
"""
from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .checkpoint import Checkpoint, check_architecture, infer_variant, tensor_variants
from .errors import InputFileError, UnsafeInputError, WeightsMismatchError
from .mapping import MAX_LISTED, plan, to_canonical, to_native

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


# Variables of each weight-holding Keras layer, in creation order, with their canonical leaf.
_LEAVES = {"Conv2D": (("kernel", "weight"), ("bias", "bias")), "Dense": (("kernel", "weight"), ("bias", "bias")),
           "BatchNormalization": (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                  ("moving_variance", "running_var"))}


def _leaf_vars(layer):
    from keras import layers

    for cls, leaves in _LEAVES.items():
        if isinstance(layer, getattr(layers, cls)):
            skip = {"bias"} if cls != "BatchNormalization" and not layer.use_bias else set()
            if cls == "BatchNormalization":
                skip = ({"gamma"} if not layer.scale else set()) | ({"beta"} if not layer.center else set())
            return [(var, leaf) for var, leaf in leaves if var not in skip]
    return []


def weights_model(architecture, num_classes, aux_logits, variant="default", canonical=None, where="keras model"):
    """Our Keras model with each variable created directly, holding ``canonical``'s tensors (zeros
    without), its shape read off the canonical table: the symbolic forward pass that builds it
    otherwise costs 20-50 s for Inception-ResNet-v2 on the TF backend, most of a conversion.
    Layer names, variable order and so the .weights.h5 layout are those of ``build_model``'s
    model (``conformance/test_bridge.py`` loads these files into traced models). Enough to save,
    load and read weights; to run it, use ``build_model``."""
    import keras

    from impls.keras3 import create_model
    from impls.spec.tensors import canonical_shapes

    from .layouts import canonical_key

    kw = {"variant": variant} if variant and variant != "default" else {}
    model = create_model(architecture, num_classes=num_classes, aux_logits=aux_logits, input_size=None, **kw)
    table = canonical_shapes(model.spec)
    leaves = [(layer, _leaf_vars(layer)) for layer in model._flatten_layers(include_self=False, recursive=True)]
    shapes = {}
    for layer, variables in leaves:
        for var, leaf in variables:
            key = f"{layer.name}/{var}"
            (ck, layout), = canonical_key("keras", key)
            shapes[key] = layout.native_shape(table[ck])
    values = to_native("keras", canonical, shapes, where) if canonical is not None else None
    for layer, variables in leaves:
        for var, _ in variables:
            key = f"{layer.name}/{var}"
            init = keras.initializers.Zeros() if values is None else _constant(values[key])
            setattr(layer, "kernel_initializer" if var == "kernel" else f"{var}_initializer", init)
        if variables:
            channels = shapes[f"{layer.name}/{variables[0][0]}"]
            layer.build((None, channels[0]) if len(channels) == 2 else (None, None, None, channels[-2])
                        if len(channels) == 4 else (None, None, None, channels[0]))
    for layer in model._flatten_layers(include_self=True, recursive=True):
        layer.built = True
    return model


def _constant(array):
    return lambda shape, dtype=None: array


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
    spec = model.spec
    names = [ck for ck, _ in plan("keras", native, where or f"keras model {model.name}").values()]
    ckpt = Checkpoint(architecture, {}, spec.num_classes, bool(spec.aux_heads), transform_input=spec.transform_input,
                      variant=infer_variant(architecture, names, bool(spec.aux_heads)))
    ckpt.tensors = to_canonical("keras", native, ckpt.expected_shapes(), where or f"keras model {model.name}",
                                allow_nonfinite)
    return ckpt


def _peek_head(path: Path, architecture):
    """(num_classes, aux_logits) from the HDF5 layout Keras writes for our model: the aux heads
    live under ``aux_layers``; the trunk's only 2-D kernel is the classifier's (in, out)."""
    datasets = list(_datasets(path).items())
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
    num_classes, aux = _peek_head(path, architecture)
    found = _datasets(path)
    model, expected = _reference(architecture, num_classes, aux, "default")
    for variant in tensor_variants(architecture):  # a variant with other tensors, if the file has its layout
        if found.keys() == expected.keys():
            break
        other = _reference(architecture, num_classes, aux, variant)
        if found.keys() == other[1].keys():
            model, expected = other
    _check_layout(path, found, expected, architecture)
    load_weights(model, path, f"Keras {architecture} (num_classes={num_classes}, aux_logits={aux})")
    return from_model(model, architecture, allow_nonfinite, where=str(path))


def _reference(architecture, num_classes, aux, variant):
    """(our Keras model, the datasets Keras writes for it)."""
    model = weights_model(architecture, num_classes, aux, variant=variant)
    with tempfile.TemporaryDirectory(prefix="inception-bridge-") as ref:
        model.save_weights(str(Path(ref) / f"reference{SUFFIX}"))
        return model, _datasets(Path(ref) / f"reference{SUFFIX}")


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
    model = weights_model(ckpt.architecture, ckpt.num_classes, ckpt.aux_logits, ckpt.variant, ckpt.tensors,
                          f"keras {ckpt.architecture}")
    with atomic_path(path, overwrite) as tmp:
        model.save_weights(str(tmp))
    return Path(path)
