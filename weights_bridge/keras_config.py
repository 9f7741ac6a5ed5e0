"""A ``.keras`` archive's config.json judged as plain JSON, before (and instead of) Keras
deserializing it: deserializing imports and calls whatever classes it names, and a Lambda layer
is Python code. Every serialized object (a dict with ``class_name``) must be one of this
project's Keras models, registered as "inception_bridge>GoogLeNet" and so on, or one of the few
Keras built-ins listed below; nothing here imports Keras.

``model_config(ckpt)`` is the config.json ``model.save`` writes for our model holding ``ckpt``
(``impls.keras3.models.SpecModel.get_config``; the tests check they are equal).
"""
from __future__ import annotations

from impls.spec.registry import ARCHITECTURES, SERIALIZATION_PACKAGE, spec_arguments

from .checkpoint import Checkpoint, check_architecture
from .errors import InputFileError, UnsafeInputError

CODE_LAYERS = ("Lambda", "TFOpLambda")
CODE = ("__lambda__",)  # a serialized Python function (a Lambda layer's)
MODELS = {"SpecModel": None, **{entry.class_name: arch for arch, entry in ARCHITECTURES.items()}}
# The Python module Keras records for each (``impls.keras3.MODELS`` live in the package itself).
MODULES = {cls: "impls.keras3.models" if arch is None else "impls.keras3" for cls, arch in MODELS.items()}
# Keras classes a saved model of ours may name besides itself: its dtype policy; a compiled
# model's optimizer, learning-rate schedule, losses and metrics. None runs user code.
KERAS_BUILTINS = frozenset({
    "DTypePolicy", "FloatDTypePolicy",
    "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Ftrl", "Lion",
    "ExponentialDecay", "CosineDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay",
    "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy", "MeanSquaredError",
    "SparseCategoricalAccuracy", "CategoricalAccuracy", "Accuracy", "SparseTopKCategoricalAccuracy",
    "TopKCategoricalAccuracy", "Mean", "MeanMetricWrapper",
})
# The fields of our models' config (SpecModel.get_config), their types, which are required.
FIELDS = {"name": str, "input_size": int, "architecture": str, "variant": str, "num_classes": int,
          "aux_logits": bool, "transform_input": bool, "dropout": (int, float), "dropout_aux": (int, float)}
REQUIRED = ("architecture", "input_size", "num_classes", "aux_logits")
MAX_CLASSES = 1 << 20


def objects(config):
    """[(class_name, module, registered_name, its config's name)] of every serialized object
    in parsed JSON, walked without recursion (the JSON may be deep)."""
    found, stack = [], [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "class_name" in node:
                inner = node.get("config")
                name = inner.get("name") if isinstance(inner, dict) else None
                cls = node["class_name"]
                found.append((cls if isinstance(cls, str) else repr(cls)[:80], node.get("module"),
                              node.get("registered_name"), name))
            stack += node.values()
        elif isinstance(node, list):
            stack += node
    return found


def code_layers(config, out):
    """Appends to ``out`` the name of every layer (or function) in a parsed Keras config that
    holds Python code."""
    out += [name if isinstance(name, str) else cls for cls, _, _, name in objects(config) if cls in CODE_LAYERS]


def _ours(cls, module, registered) -> bool:
    return cls in MODELS and module in (None, MODULES[cls]) and registered == f"{SERIALIZATION_PACKAGE}>{cls}"


def _keras_builtin(cls, module, registered) -> bool:
    return isinstance(module, str) and (module == "keras" or module.startswith("keras.")) \
        and registered in (None, cls)


def check(path, config) -> dict:
    """Refuses code (exit 4), classes from anywhere but Keras or this project (exit 4), and
    any other model than ours (exit 3); returns the model's config fields, checked."""
    found = objects(config)
    for cls, module, _, name in found:
        if cls in CODE_LAYERS or cls in CODE:
            what = f"Lambda layer {name!r}" if cls in CODE_LAYERS else f"a serialized Python function ({cls!r})"
            raise UnsafeInputError(f"{path}: refused: config.json names {what} (Python code, expected none); "
                                   f"nothing was deserialized")
    for cls, module, registered, name in found:
        if not _ours(cls, module, registered) and not _keras_builtin(cls, module, registered):
            raise UnsafeInputError(f"{path}: refused: config.json names class {cls!r} (module {module!r}, registered "
                                   f"as {registered!r}), neither one of this project's Keras models nor Keras's own; "
                                   f"nothing was deserialized")
    top = (config.get("class_name"), config.get("module"), config.get("registered_name")) \
        if isinstance(config, dict) else (None, None, None)
    if not _ours(*top):
        raise InputFileError(f"{path}: not an archive of this project's Keras models: its model is {top[0]!r} "
                             f"(expected one of {', '.join(MODELS)}; a keras.applications archive is read with "
                             f"--from keras-applications)")
    others = sorted({cls for cls, module, registered, _ in found
                     if not _ours(cls, module, registered) and cls not in KERAS_BUILTINS})
    if others:
        raise InputFileError(f"{path}: config.json names Keras class {others[0]!r} inside our model; "
                             f"expected only {', '.join(sorted(KERAS_BUILTINS)[:4])}, ... (dtype, optimizer, losses)")
    return _fields(path, top[0], config.get("config"))


def _fields(path, cls, fields) -> dict:
    if not isinstance(fields, dict):
        raise InputFileError(f"{path}: config.json: the model's 'config' must be an object, found {type(fields).__name__}")
    for key, value in fields.items():
        if key not in FIELDS:
            raise InputFileError(f"{path}: config.json: unexpected field {key!r} in {cls}'s config "
                                 f"(expected {', '.join(FIELDS)})")
        if not isinstance(value, FIELDS[key]) or (FIELDS[key] is not bool and isinstance(value, bool)):
            raise InputFileError(f"{path}: config.json: field {key!r} must be "
                                 f"{getattr(FIELDS[key], '__name__', 'a number')}, found {repr(value)[:80]}")
    missing = [key for key in REQUIRED if key not in fields]
    if missing:
        raise InputFileError(f"{path}: config.json: {cls}'s config lacks {missing[0]!r}")
    check_architecture(fields["architecture"], f"{path}: config.json")
    if MODELS[cls] not in (None, fields["architecture"]):
        raise InputFileError(f"{path}: config.json: class {cls} is {MODELS[cls]!r}, but its config says "
                             f"architecture {fields['architecture']!r}")
    if not 1 <= fields["num_classes"] <= MAX_CLASSES:
        raise InputFileError(f"{path}: config.json: num_classes must be between 1 and {MAX_CLASSES}, "
                             f"found {fields['num_classes']}")
    return fields


def model_config(ckpt: Checkpoint, input_size=None) -> dict:
    """The config.json of our Keras model holding ``ckpt``, built for ``input_size`` (default:
    the architecture's own), as ``model.save`` writes it."""
    cls = ARCHITECTURES[ckpt.architecture].class_name
    size = input_size or ckpt.spec().config.input_size[-1]
    return {"module": MODULES[cls], "class_name": cls,
            "config": {"name": ckpt.architecture, "input_size": size, "architecture": ckpt.architecture,
                       **spec_arguments(ckpt.spec())},
            "registered_name": f"{SERIALIZATION_PACKAGE}>{cls}", "build_config": {"input_shape": [None, size, size, 3]},
            "compile_config": {}}
