"""``keras.applications.InceptionV3`` checkpoints: ``.weights.h5`` (``model.save_weights``), legacy
``.h5`` (the published ``inception_v3_weights_tf_dim_ordering_tf_kernels.h5``) and ``.keras``
(``model.save``).

What a converted file is: the "keras" variant of our ``inception_v3`` (``impls.spec.inception_v3``
``CONFIGS["keras"]``), i.e. torchvision's layers with three differences that are facts of the
checkpoint, recorded in the neutral config.json's ``variant``:

* the avg pool before every ``branch_pool`` leaves the zero padding out of the divisor (Keras'
  ``AveragePooling2D(padding='same')``); torch's default counts it. Every other padding is the
  same: stride-2 convs and pools 'valid', stride-1 convs 'same' (symmetric: odd kernels, stride 1);
* BN has no gamma (``scale=False``): the importer fills ``bn.weight`` with 1.0; the exporter
  refuses a checkpoint whose gamma is not exactly 1 (folding it into the conv would not be
  lossless, and folding it into beta is wrong), so keras -> ours -> keras is bit-exact;
* no aux head: an imported checkpoint has ``aux_logits=False``; the exporter refuses aux tensors.

The classifier is read as logits: build the Keras model with ``classifier_activation=None`` to
compare (its default is softmax; the weights are the same either way). Input is in [-1, 1]
(``keras.applications.inception_v3.preprocess_input``); ``transform_input`` stays False.

Layers are auto-numbered (``conv2d_57``), so they are mapped by structure, never by name
(``keras_walker``). Files load with Keras' own ``load_weights`` (plain HDF5) or
``keras.saving.load_model(safe_mode=True)``, which refuses Lambda layers and other code.

``keras.applications.InceptionResNetV2`` (same formats) is our ``inception_resnet_v2`` variant
"keras": timm's layers and paddings, BN without gamma (same rule as above).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..checkpoint import Checkpoint, check_architecture
from ..errors import InputFileError, UnsafeInputError
from ..keras_config import code_layers
from ..keras_io import load_weights
from ..mapping import check_canonical
from .keras_walker import Walker, fail

# Our architecture -> its keras.applications model (whose default ``name`` is our architecture's).
KERAS_MODELS = {"inception_v3": "InceptionV3", "inception_resnet_v2": "InceptionResNetV2"}
ARCHITECTURES = tuple(KERAS_MODELS)
VARIANT = "keras"
RECORDS_VARIANT = True  # the file fixes the checkpoint variant: --variant must agree with it
REQUIRES = ("keras", "h5py")  # modules its read and write import


def _spec(num_classes, architecture="inception_v3"):
    from impls.spec import model_spec

    return model_spec(architecture, num_classes=num_classes, aux_logits=False, variant=VARIANT)


def walk(model, num_classes, where, architecture="inception_v3") -> Walker:
    """The model matched to our spec (``keras_walker``): its convs, biased convs, classifier and
    the Keras layer whose output each of our stages is."""
    return Walker(model, _spec(num_classes, architecture), where).run()


def _label(architecture):
    return f"keras.applications {KERAS_MODELS[architecture]}"


def to_checkpoint(model, where, allow_nonfinite=False, architecture=None) -> Checkpoint:
    """A live keras.applications model's weights as a canonical "keras"-variant checkpoint of
    ``architecture`` (default: the model's name if it is one of ours, else inception_v3)."""
    from keras import ops

    architecture = architecture or (model.name if model.name in KERAS_MODELS else "inception_v3")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        fail(where, "expected a model with one (batch, classes) output: include_top=True")
    num_classes = int(model.outputs[0].shape[-1])
    w = walk(model, num_classes, where, architecture)
    arr = lambda v: np.asarray(ops.convert_to_numpy(v), dtype=np.float32) if v.dtype == "float32" else fail(
        where, f"Keras variable {v.path!r} has dtype {v.dtype}, expected float32 (the bridge never casts silently)")
    tensors = {}
    for prefix, (conv, bn) in w.convs.items():
        tensors[f"{prefix}.conv.weight"] = np.ascontiguousarray(np.transpose(arr(conv.kernel), (3, 2, 0, 1)))
        tensors[f"{prefix}.bn.weight"] = np.ones(bn.beta.shape, np.float32)  # scale=False: gamma is 1
        tensors[f"{prefix}.bn.bias"] = arr(bn.beta)
        tensors[f"{prefix}.bn.running_mean"] = arr(bn.moving_mean)
        tensors[f"{prefix}.bn.running_var"] = arr(bn.moving_variance)
    for prefix, conv in w.biased.items():
        tensors[f"{prefix}.weight"] = np.ascontiguousarray(np.transpose(arr(conv.kernel), (3, 2, 0, 1)))
        tensors[f"{prefix}.bias"] = arr(conv.bias)
    fc = w.spec.stages[-1][0]  # fc (torchvision) / classif (timm IRv2)
    tensors[f"{fc}.weight"] = np.ascontiguousarray(arr(w.dense.kernel).T)
    tensors[f"{fc}.bias"] = arr(w.dense.bias)
    ckpt = Checkpoint(architecture, tensors, num_classes, aux_logits=False, variant=VARIANT)
    check_canonical(tensors, ckpt.expected_shapes(), where, allow_nonfinite)
    return ckpt


def load_into(model, ckpt: Checkpoint, where):
    """Assigns a "keras"-variant checkpoint to a live keras.applications model, strictly."""
    check_exportable(ckpt, where)
    w = walk(model, ckpt.num_classes, where, ckpt.architecture)
    t = ckpt.tensors
    for prefix, (conv, bn) in w.convs.items():
        conv.kernel.assign(np.transpose(t[f"{prefix}.conv.weight"], (2, 3, 1, 0)))
        bn.beta.assign(t[f"{prefix}.bn.bias"])
        bn.moving_mean.assign(t[f"{prefix}.bn.running_mean"])
        bn.moving_variance.assign(t[f"{prefix}.bn.running_var"])
    for prefix, conv in w.biased.items():
        conv.kernel.assign(np.transpose(t[f"{prefix}.weight"], (2, 3, 1, 0)))
        conv.bias.assign(t[f"{prefix}.bias"])
    fc = w.spec.stages[-1][0]
    w.dense.kernel.assign(np.ascontiguousarray(t[f"{fc}.weight"].T))
    w.dense.bias.assign(t[f"{fc}.bias"])
    return model


def check_exportable(ckpt: Checkpoint, where):
    if ckpt.architecture not in ARCHITECTURES:
        fail(where, f"keras.applications checkpoints exist for {', '.join(ARCHITECTURES)}, not {ckpt.architecture!r}")
    label = _label(ckpt.architecture)
    if getattr(ckpt.spec().config, "avg_pool_count_include_pad", False):
        fail(where, f"a {ckpt.variant!r}-variant checkpoint averages its pools with the padding counted; "
                     f"{label} leaves it out, so it would compute different numbers. "
                     f"Only variant {VARIANT!r} checkpoints (e.g. read from keras.applications) export to it")
    # Any other layer difference computes different numbers too. IRv2's default (timm) and keras
    # variants have the same layers: only gamma, checked below, can keep one from exporting.
    if ckpt.spec().stages != _spec(ckpt.num_classes, ckpt.architecture).stages:
        fail(where, f"a {ckpt.variant!r}-variant {ckpt.architecture}'s layers (padding, pooling) differ from "
                     f"{label}'s; only variant {VARIANT!r} checkpoints export to it")
    if ckpt.aux_logits:
        fail(where, f"{label} has no aux head; this checkpoint has one (AuxLogits.*)")
    if ckpt.transform_input:
        fail(where, f"{label} has no transform_input; this checkpoint uses it")
    bad = [k for k, v in ckpt.tensors.items() if k.endswith(".bn.weight") and not np.all(v == 1.0)]
    if bad:
        fail(where, f"{label}'s BN has no gamma (scale=False), but {len(bad)} BN layers "
                     f"have gamma != 1, e.g. {bad[0]!r}; refusing a lossy export")


def build(num_classes, input_size=299, architecture="inception_v3"):
    import keras

    factory = getattr(keras.applications, KERAS_MODELS[architecture])
    return factory(weights=None, include_top=True, classes=num_classes, classifier_activation=None,
                   input_shape=(input_size, input_size, 3))


def peek_num_classes(path: Path, architecture="inception_v3") -> int:
    """The classifier's width from the HDF5 file: its only 2-D dataset is the Dense kernel (in, out)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            found = []
            f.visititems(lambda n, o: found.append((n, o.shape)) if isinstance(o, h5py.Dataset) else None)
    except OSError as e:
        raise InputFileError(f"{path}: not a readable HDF5 file ({e})") from None
    kernels = [(n, s) for n, s in found if len(s) == 2]
    features = _spec(1, architecture).stages[-1][1].in_features
    if len(kernels) != 1 or kernels[0][1][0] != features:
        fail(path, f"expected one classifier kernel of shape ({features}, classes) in a {_label(architecture)} "
                    f"weights file (include_top=True), found {[s for _, s in kernels] or 'none'}")
    return int(kernels[0][1][1])


def _refuse_code(path: Path):
    """Scans the archive's config.json as plain JSON first: Lambda layers are refused before
    Keras deserializes anything (``safe_mode=True`` refuses them again)."""
    import json
    import zipfile

    found = []
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("config.json")
            if info.file_size > 64 << 20:
                raise InputFileError(f"{path}: config.json is {info.file_size} bytes; refusing to parse it")
            code_layers(json.loads(z.read(info).decode("utf-8")), found)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, RecursionError, EOFError) as e:
        raise InputFileError(f"{path}: not a readable .keras archive ({type(e).__name__}: {e})") from None
    if found:
        raise UnsafeInputError(f"{path}: refused: a .keras archive with Lambda layer {found[0]!r} (Python code, "
                               f"expected none)")


def load_model(path, input_size=299, architecture="inception_v3"):
    """The Keras model a file describes: .keras through ``load_model(safe_mode=True)``, weight files
    loaded into a fresh ``keras.applications.InceptionV3(classifier_activation=None)`` (or the
    architecture's model, ``KERAS_MODELS``)."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    if str(path).endswith(".keras"):
        _refuse_code(path)
        try:
            return keras.saving.load_model(str(path), compile=False, safe_mode=True)
        except ValueError as e:
            if "safe_mode" in str(e) or "Lambda" in str(e):
                raise UnsafeInputError(f"{path}: refused: loading it would run code ({' '.join(str(e).split())[:300]})") from None
            raise InputFileError(f"{path}: not a loadable .keras model ({' '.join(str(e).split())[:300]})") from None
        except Exception as e:
            raise InputFileError(f"{path}: not a readable .keras file ({type(e).__name__}: {e})") from None
    return load_weights(build(peek_num_classes(path, architecture), input_size, architecture), path,
                        _label(architecture))


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    check_architecture(architecture, str(path))
    if architecture not in ARCHITECTURES:
        fail(path, f"keras.applications checkpoints are supported for {', '.join(ARCHITECTURES)}, "
                    f"not {architecture!r}")
    return to_checkpoint(load_model(path, architecture=architecture), str(path), allow_nonfinite, architecture)


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    if not str(path).endswith((".weights.h5", ".keras")):
        fail(path, "keras.applications files must end in .weights.h5 (weights) or .keras (whole model)")
    check_exportable(ckpt, str(path))  # before building the (large) Keras model
    model = load_into(build(ckpt.num_classes, architecture=ckpt.architecture), ckpt, str(path))
    with atomic_path(path, overwrite) as tmp:
        model.save(str(tmp)) if str(path).endswith(".keras") else model.save_weights(str(tmp))
    return Path(path)
