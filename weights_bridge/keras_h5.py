"""Our Keras models' ``.weights.h5`` files, read and written with h5py, without building the model.

Building a Keras model creates its variables by tracing a symbolic forward pass: 20-50 s for
Inception-ResNet-v2 on the TF backend, then ``save_weights``/``load_weights`` copy every tensor
through the backend (about 5 s more). That was nearly all of a conversion. The file layout needs
none of it: Keras names each layer's HDF5 group by walking the layer objects (attribute names,
class names in lists), independently of their variables, and tags the group with the layer's
name. So the layout is taken from Keras's own walk (``saving_lib._save_state``) over an unbuilt
model with a store that only records paths, and the datasets are written directly; each layer's
variables are numbered in the order Keras creates them (``save_own_variables``: trainable, then
non-trainable). Reading goes by the layer name each group carries, not by the group's path, so a
file stays readable when the model's internal nesting changes. Keras's own ``load_weights`` reads
these files and ``save_weights`` writes the same layout (checked by the tests on GoogLeNet).
"""
from __future__ import annotations

from pathlib import Path

from .errors import InputFileError
from .layouts import BATCH_NORM, LEAVES, WEIGHTED

KINDS = {"Conv2D": WEIGHTED, "Dense": WEIGHTED, "BatchNormalization": BATCH_NORM}


def leaf_variables(layer):
    """[(variable name, canonical leaf)] of a layer, as its ``build()`` would create them."""
    from keras import layers

    for cls, kind in KINDS.items():
        if isinstance(layer, getattr(layers, cls)):
            if kind == BATCH_NORM:
                skip = ({"gamma"} if not layer.scale else set()) | ({"beta"} if not layer.center else set())
            else:
                skip = set() if layer.use_bias else {"bias"}
            return [(theirs, ours) for ours, theirs, _ in LEAVES["keras"][kind] if theirs not in skip]
    return []


def unbuilt_model(architecture, num_classes, aux_logits, variant="default"):
    from impls.keras3 import create_model

    return create_model(architecture, num_classes=num_classes, aux_logits=aux_logits, variant=variant,
                        input_size=None)


def layout(model) -> dict:
    """{dataset path: native key ('<layer name>/<variable>')} for every variable, from the walk."""
    out = {}
    for path, layer in walk(model):
        for i, (var, _) in enumerate(leaf_variables(layer)):
            out[f"{path}/vars/{i}" if path else f"vars/{i}"] = f"{layer.name}/{var}"
    return out


def walk(model):
    """[(group path, layer)] of every layer, from Keras's walk (its ``make()`` calls carry the
    layer's name as metadata)."""
    from keras.src.saving import saving_lib

    by_name = {layer.name: layer for layer in model._flatten_layers(include_self=True, recursive=True)}
    found = []

    class Recorder(saving_lib.H5IOStore):  # passes _save_state's type check; opens no file
        def __init__(self):
            pass

        def __bool__(self):
            return True

        def make(self, path, metadata=None):
            found.append((path, (metadata or {}).get("name")))
            return self

        def __setitem__(self, key, value):
            raise RuntimeError("the layout walk met a variable: the model must be unbuilt")

    # Keras caches each object type's attribute skip set under a key it never reads back
    # ("saving_attr_skiplist_" vs "saving_attr_skipset_"), so every layer visited builds a
    # reference Layer() and dir()s it: half the walk. Seed the key it reads, for this walk only.
    from keras.src.backend.common import global_state

    seeded = []
    for obj_type in ("Layer", "Functional", "Sequential"):
        key = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(key, None) is None:
            global_state.set_global_attribute(key, saving_lib.get_attr_skipset(obj_type))
            seeded.append(key)
    try:
        saving_lib._save_state(model, weights_store=Recorder(), assets_store=None, inner_path="",
                               visited_saveables=set())
    finally:
        for key in seeded:
            global_state.set_global_attribute(key, None)
    return [(path, by_name[name]) for path, name in found if name in by_name]


def write(path, model, native) -> None:
    """Writes ``native(key)`` ('<layer>/<variable>' -> array, called once per variable) in the
    layout Keras's ``save_weights`` gives ``model`` (a group per layer with its name as
    attribute, datasets '0', '1', ...)."""
    import h5py

    with h5py.File(path, "w") as f:
        for group, layer in walk(model):
            g = f.create_group(f"{group}/vars" if group else "vars")
            g.attrs["name"] = layer.name
            for i, (var, _) in enumerate(leaf_variables(layer)):
                g.create_dataset(str(i), data=native(f"{layer.name}/{var}"))


def datasets(path, where=None) -> dict:
    """{dataset path: (shape, dtype, the layer name its group carries or None)}, read with h5py
    only (nothing is deserialized). ``path``: a file or a binary file object; errors name
    ``where`` (default ``path``)."""
    import h5py

    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            owner = obj.parent.attrs.get("name")
            out[name] = (tuple(obj.shape), obj.dtype, owner if isinstance(owner, str) else None)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except (OSError, ValueError, RuntimeError) as e:
        raise InputFileError(f"{where or path}: not a readable HDF5 file ({' '.join(str(e).split())})") from None
    return out


def read(path, dataset_keys, where=None) -> dict:
    """{native key: array} from the datasets named in ``dataset_keys`` (dataset path -> native key)."""
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as f:
            for ds, key in dataset_keys.items():
                out[key] = f[ds][()]
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise InputFileError(f"{where or Path(path)}: not a readable HDF5 file ({' '.join(str(e).split())})") from None
    return out
