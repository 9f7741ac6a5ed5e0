"""Transfer learning in Keras 3: new classifiers for ``num_classes``, the backbone frozen.

    model = create_model("googlenet", input_size=224); model.load_weights("googlenet.weights.h5")
    model = for_transfer(model, num_classes=5)        # a new model (see for_transfer)
    model.compile(optimizer=keras.optimizers.SGD(0.01), ...)   # trains trainable(model) only
    model(x, training=True)   # dropout and aux heads on; frozen BatchNorm uses running statistics

Frozen means ``layer.trainable = False`` on every backbone layer; Keras then also runs frozen
BatchNormalization in inference mode (running statistics, never updated) during training.
The new classifiers keep the canonical layer names (``fc``, ``aux1-fc2``), so the fine-tuned
model saves, loads and converts like any other with ``num_classes`` classes.
"""
from __future__ import annotations

from keras import ops

from ..spec.transfer import classifier_layers, head_init, with_num_classes
from .models import SpecModel


def _key(variable):
    return "/".join(variable.path.split("/")[-2:])  # "<layer name>/<variable name>", as keras_io


def for_transfer(model, num_classes: int, freeze_backbone: bool = True, seed: int = 0):
    """A new model, built at ``model``'s input size, holding ``model``'s backbone weights and
    fresh ``num_classes``-way classifiers (``impls.spec.transfer.head_init``), the rest frozen.

    A built Keras layer accepts no new sublayers, so the model is rebuilt from its spec with
    the new number of classes rather than edited in place; layer names are unchanged."""
    spec = with_num_classes(model.spec, num_classes)
    new = SpecModel(spec, input_size=model.get_build_config()["input_shape"][1], name=model.name)
    old = {_key(v): v for v in model.weights}
    fresh = {}  # native key -> value; Dense kernels are (in, out)
    for path, t in head_init(spec, num_classes, seed).items():
        name = path.replace(".", "-")  # the canonical layer name, as impls.keras3.layers names it
        fresh[f"{name}/kernel"], fresh[f"{name}/bias"] = t["weight"].T, t["bias"]
    for v in new.weights:
        k = _key(v)
        v.assign(fresh[k] if k in fresh else ops.convert_to_numpy(old[k].value))
    if freeze_backbone:
        heads = {path.replace(".", "-") for path in classifier_layers(spec)}  # the classifiers' layer names
        for layer in new._flatten_layers(include_self=False):
            if layer.name not in heads and not list(layer._flatten_layers(include_self=False)):
                layer.trainable = False  # leaves only: containers stay trainable for their heads
    return new


def trainable(model):
    """The variables to optimise (``model.trainable_weights``, what ``fit`` trains)."""
    return model.trainable_weights
