"""``.keras`` archives of our Keras models: what ``model.save("x.keras")`` writes and, after
``import impls.keras3``, ``keras.saving.load_model("x.keras")`` reads on any backend (safe mode,
no ``custom_objects``). A zip of config.json (the model's class and ``get_config``: architecture,
``model_spec`` keywords, input size), metadata.json (Keras version, date) and model.weights.h5
(the ``.weights.h5`` layout, ``weights_bridge.keras_io``).

Reading never deserializes: config.json is judged as plain JSON (``keras_config.check``: any
Lambda layer, or any class that is neither ours nor a listed Keras built-in, is refused), then
the weights are read by name with h5py. The archive records the architecture, head, variant and
``transform_input``; the tensors must agree with them.
"""
from __future__ import annotations

import datetime
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from . import keras_config, keras_h5, keras_io
from .atomic import atomic_path
from .checkpoint import Checkpoint
from .errors import InputFileError, OutputError, WeightsMismatchError
from .mapping import check_canonical, native_plan

SUFFIX = ".keras"
CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
MEMBERS = (METADATA, CONFIG, WEIGHTS)  # in the order Keras writes them
MAX_CONFIG_BYTES = 64 << 20
MAX_EXPANSION = 100  # Keras stores members uncompressed; DEFLATE stays under ~1032:1
RECORDS_ARCHITECTURE = True  # config.json names it: --arch is optional, and must agree
REQUIRES = ("keras", "h5py")  # modules its read and write import (extras.require, before either)
RECORDS_VARIANT = True


def _member(z: zipfile.ZipFile, path, name, limit=None) -> bytes:
    try:
        info = z.getinfo(name)
    except KeyError:
        raise InputFileError(f"{path}: no {name} in the archive (found {', '.join(z.namelist()) or 'nothing'}); "
                             f"expected {', '.join(MEMBERS)}") from None
    if limit is not None and info.file_size > limit:
        raise InputFileError(f"{path}: {name} is {info.file_size} bytes; expected at most {limit}")
    if info.file_size > max(1 << 28, MAX_EXPANSION * info.compress_size):
        raise InputFileError(f"{path}: {name} declares {info.file_size} bytes from {info.compress_size} stored "
                             f"(a decompression bomb?)")
    try:
        return z.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:  # CRC, truncation
        raise InputFileError(f"{path}: {name} cannot be read from the archive ({type(e).__name__}: {e})") from None


def read_config(path) -> tuple:
    """(the archive's model config fields, the open-ready weights bytes), after refusing code,
    foreign classes and anything but our model; nothing is deserialized."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    try:
        with zipfile.ZipFile(path) as z:
            unexpected = [n for n in z.namelist() if n not in MEMBERS]
            raw = _member(z, path, CONFIG, MAX_CONFIG_BYTES)
            try:
                config = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                raise InputFileError(f"{path}: {CONFIG} is not valid JSON ({type(e).__name__}: {e})") from None
            fields = keras_config.check(path, config)  # before anything else is believed or read
            if unexpected:
                raise InputFileError(f"{path}: unexpected member {unexpected[0]!r} in the archive; our models' "
                                     f"archives hold {', '.join(MEMBERS)}")
            return fields, _member(z, path, WEIGHTS)
    except (zipfile.BadZipFile, EOFError) as e:
        raise InputFileError(f"{path}: not a readable .keras archive (a zip file): {e}") from None
    except OSError as e:
        raise InputFileError(f"{path}: cannot be read ({e.strerror or e})") from None


def read(path, architecture=None, allow_nonfinite=False) -> Checkpoint:
    fields, weights = read_config(path)
    arch = fields["architecture"]
    if architecture and architecture != arch:
        raise WeightsMismatchError(f"{path}: {CONFIG}: architecture is {arch!r}, expected {architecture!r}")
    ckpt = keras_io.read_weights(io.BytesIO(weights), arch, f"{path} ({WEIGHTS})", allow_nonfinite)
    said = (fields["num_classes"], fields["aux_logits"])
    if (ckpt.num_classes, ckpt.aux_logits) != said:
        fc = ckpt.spec().stages[-1][0]  # canonical module path; the Keras layer spells '.' as '-'
        raise WeightsMismatchError(
            f"{path}: {CONFIG} says num_classes={said[0]}, aux_logits={said[1]}; {WEIGHTS} holds "
            f"num_classes={ckpt.num_classes} (classifier '{fc.replace('.', '-')}/kernel' of shape "
            f"{tuple(reversed(ckpt.tensors[f'{fc}.weight'].shape))}), aux_logits={ckpt.aux_logits}")
    variant = fields.get("variant", "default")
    if variant != ckpt.variant:  # a variant that changes only the computation reads as "default"
        if ckpt.variant != "default":
            raise WeightsMismatchError(f"{path}: {CONFIG} says variant {variant!r}, {WEIGHTS} holds a "
                                       f"{ckpt.variant!r}-variant model")
        ckpt.variant = variant
        check_canonical(ckpt.tensors, ckpt.expected_shapes(), f"{path} (as variant {variant!r})",
                        allow_nonfinite=True)
    ckpt.transform_input = fields.get("transform_input", False)
    return ckpt


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    """The archive ``model.save`` writes for our Keras model holding ``ckpt`` (built at its
    native input size), with the weights streamed one tensor at a time (no model is built)."""
    import keras

    if not str(path).endswith(SUFFIX):
        raise OutputError(f"{path}: a Keras archive's name must end in {SUFFIX} (keras.saving.load_model reads "
                          f"only those)")
    config = keras_config.model_config(ckpt)
    metadata = {"keras_version": keras.__version__, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    model = keras_h5.unbuilt_model(ckpt.architecture, ckpt.num_classes, ckpt.aux_logits, ckpt.variant)
    steps = native_plan("keras", ckpt.tensors, keras_io.native_shapes(model), f"{path} (keras {ckpt.architecture})")
    with atomic_path(path, overwrite) as tmp:
        weights = tmp.parent / WEIGHTS  # scratch beside the temporary, in the write's private folder
        keras_h5.write(weights, model, lambda key: steps[key][1].to_native(np.asarray(ckpt.tensors[steps[key][0]])))
        with zipfile.ZipFile(tmp, "w") as z:  # members stored, as Keras writes them
            z.writestr(METADATA, json.dumps(metadata))
            z.writestr(CONFIG, json.dumps(config))
            z.write(weights, WEIGHTS)
    return Path(path)
