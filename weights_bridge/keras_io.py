"""Keras 3 weight files (.weights.h5) of our Keras model (any backend): plain HDF5 datasets in the
layout Keras's own ``save_weights`` / ``load_weights`` use, read and written with h5py without
building the model (``weights_bridge.keras_h5``); no code is loaded.

A variable's native key is ``<layer name>/<variable name>``; our Keras layers are named by
canonical module path (see ``impls.keras3.blocks``). ``to_model(ckpt)`` is the one way a checkpoint
becomes a Keras model.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from impls.spec import model_spec
from impls.spec.registry import tensor_variants
from impls.spec.tensors import canonical_shapes

from . import keras_h5
from .atomic import atomic_path
from .checkpoint import Checkpoint, check_architecture
from .errors import InputFileError, WeightsMismatchError
from .layouts import canonical_key
from .mapping import fail, native_plan, to_canonical, to_native

SUFFIX = ".weights.h5"
REQUIRES = ("keras", "h5py")  # modules its read and write import (extras.require, before either)


def native_key(variable) -> str:
    return "/".join(variable.path.split("/")[-2:])


def native_shapes(model) -> dict:
    """'<layer name>/<variable>' -> shape for every variable of our (possibly unbuilt) Keras model,
    from the canonical shape table through the Keras layout rules."""
    table, shapes = canonical_shapes(model.spec), {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for var, _ in keras_h5.leaf_variables(layer):
            key = f"{layer.name}/{var}"
            (ck, layout), = canonical_key("keras", key)
            shapes[key] = layout.native_shape(table[ck])
    return shapes


def load_into(model, ckpt: Checkpoint):
    """Assigns a checkpoint's tensors to a built Keras model (strict: every variable filled)."""
    shapes = {native_key(v): tuple(v.shape) for v in model.weights}
    if len(shapes) != len(model.weights):
        raise WeightsMismatchError(f"keras model {model.name}: two variables share a layer/variable name")
    native = to_native("keras", ckpt.tensors, shapes, f"keras model {model.name}")
    for v in model.weights:
        v.assign(native[native_key(v)])
    return model


def to_model(ckpt: Checkpoint, input_size=None, **overrides):
    """Our Keras model holding ``ckpt``, built for ``input_size`` (default: the architecture's
    own; Inception v3's aux head does not fit 224); ``overrides``: ``create_model`` keywords."""
    from impls.keras3 import NATIVE, create_model

    model = create_model(ckpt.architecture, input_size=input_size or NATIVE, initialize=False,
                         **ckpt.model_kwargs(**overrides))
    return load_into(model, ckpt)


def native_state(model, variables=None) -> dict:
    """{'<layer>/<variable>': numpy array} of a live Keras model's ``variables`` (default all its
    weights), in whatever dtype they hold."""
    from keras import ops

    return {native_key(v): np.asarray(ops.convert_to_numpy(v.value))
            for v in (model.weights if variables is None else variables)}


def from_model(model, architecture, allow_nonfinite=True, where=None) -> Checkpoint:
    return _checkpoint(native_state(model), model, architecture, allow_nonfinite, where)


def _checkpoint(native, model, architecture, allow_nonfinite, where=None) -> Checkpoint:
    spec = model.spec
    ckpt = Checkpoint(architecture, {}, spec.num_classes, bool(spec.aux_heads), transform_input=spec.transform_input,
                      variant=spec.variant)
    ckpt.tensors = to_canonical("keras", native, ckpt.expected_shapes(), where or f"keras model {model.name}",
                                allow_nonfinite, consume=True)
    return ckpt


def _by_layer(found: dict) -> dict:
    """{(layer name, variable index): dataset path} for the datasets that sit where Keras puts a
    layer's variables (``.../vars/<i>`` in a group tagged with the layer's name)."""
    out = {}
    for ds, (_, _, owner) in found.items():
        group, _, index = ds.rpartition("/")
        if owner and index.isdigit() and (group == "vars" or group.endswith("/vars")):
            out[(owner, int(index))] = ds
    return out


def _peek_head(path, architecture, by_layer: dict, found: dict):
    """(num_classes, aux_logits): the classifier layer's (in, out) kernel and whether any layer
    of an aux head is present."""
    spec = model_spec(architecture)
    classifier = spec.stages[-1][0]
    kernel = by_layer.get((classifier, 0))
    if kernel is None or len(found[kernel][0]) != 2:
        raise WeightsMismatchError(f"{path}: no classifier kernel (layer {classifier!r}) in a Keras {architecture} "
                                   f"weights file; was it written by this project's Keras model?")
    aux = any(name.startswith(tuple(f"{head}-" for head in spec.aux_heads)) for name, _ in by_layer) \
        if spec.aux_heads else False
    return int(found[kernel][0][1]), aux


def _expected(model) -> dict:
    """{(layer name, variable index): (native key, native shape)} of our unbuilt Keras model."""
    shapes = native_shapes(model)
    return {(layer.name, i): (f"{layer.name}/{var}", shapes[f"{layer.name}/{var}"])
            for layer in model._flatten_layers(include_self=False, recursive=True)
            for i, (var, _) in enumerate(keras_h5.leaf_variables(layer))}


def _check_layout(path, found: dict, by_layer: dict, expected: dict, architecture):
    """Every variable Keras would write for this model, no other dataset, each of its shape and float32."""
    problems = [f"missing {key!r} (expected shape {shape}, float32)" for at, (key, shape) in expected.items()
                if at not in by_layer]
    placed = {ds: at for at, ds in by_layer.items()}
    for ds, (shape, dtype, _) in found.items():
        at = placed.get(ds)
        if at not in expected:
            problems.append(f"unexpected {ds!r} (shape {shape}): no layer of Keras {architecture} takes it")
        elif shape != expected[at][1]:
            problems.append(f"{ds!r} ({expected[at][0]}) has shape {shape}, expected {expected[at][1]}")
        elif dtype != np.float32:
            problems.append(f"{ds!r} ({expected[at][0]}) has dtype {dtype}, expected float32 "
                            f"(the bridge never casts silently)")
    if problems:
        fail(str(path), problems)


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    if zipfile.is_zipfile(path):
        raise InputFileError(f"{path}: a zip archive (a whole Keras model), not a {SUFFIX} weights file: "
                             f"name it .keras or read it with --from keras-archive")
    return read_weights(path, architecture, str(path), allow_nonfinite)


def read_weights(source, architecture, where: str, allow_nonfinite=False) -> Checkpoint:
    """A checkpoint from our Keras model's weights file ``source`` (a path, or a binary file
    object: a .keras archive's model.weights.h5); errors name ``where``."""
    check_architecture(architecture, where)
    found = keras_h5.datasets(source, where)
    if not found:
        raise InputFileError(f"{where}: holds no weights")
    by_layer = _by_layer(found)
    num_classes, aux = _peek_head(where, architecture, by_layer, found)
    model = keras_h5.unbuilt_model(architecture, num_classes, aux)
    expected = _expected(model)
    for variant in tensor_variants(architecture, aux):  # a variant with other tensors, if the file has its layout
        other = keras_h5.unbuilt_model(architecture, num_classes, aux, variant)
        if set(by_layer) != set(expected) and set(by_layer) == set(_expected(other)):
            model, expected = other, _expected(other)
    _check_layout(where, found, by_layer, expected, architecture)
    keys = {by_layer[at]: key for at, (key, _) in expected.items()}
    return _checkpoint(keras_h5.read(source, keys, where), model, architecture, allow_nonfinite, where=where)


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
