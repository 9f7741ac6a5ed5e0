"""The keras.applications peer: ``InceptionV3`` / ``InceptionResNetV2`` on TensorFlow, holding a
"keras"-variant checkpoint exported by the bridge, loaded the way its users load it.

Built with ``classifier_activation=None`` (logits; its default is softmax) at the task's input
size. Train mode: its BN momentum is 0.99 (Keras' default); a training hyperparameter, not a
checkpoint fact, so it is set to 0.9 (= torch's 0.1, what our implementations use) before the
step, making the running statistics comparable. It has no aux head: train mode returns logits.
"""
from __future__ import annotations

import numpy as np

from ..base import nchw, nhwc


def load(peer_file, arch, input_size):
    from weights_bridge.peers import keras_applications as ka

    return ka.load_model(peer_file, input_size=input_size, architecture=arch)


def run(model, arch, x_nchw, train) -> dict:
    from keras import ops

    from weights_bridge.peers import keras_applications as ka

    if train:
        for layer in model.layers:
            if type(layer).__name__ == "BatchNormalization":
                layer.momentum = 0.9
    res = {"logits": np.asarray(ops.convert_to_numpy(model(nhwc(x_nchw), training=train)))}
    if train:
        ckpt = ka.to_checkpoint(model, "keras.applications model", allow_nonfinite=True, architecture=arch)
        res.update({f"stat:{k}": v for k, v in ckpt.tensors.items() if k.endswith(("running_mean", "running_var"))})
    return res


def blocks(model, arch, x_nchw, train=False) -> dict:
    """Every stage's activation as NCHW under our names: one functional sub-model over the Keras
    layers the bridge's structural walk matched to our stages (``mixed0``..``mixed10`` are
    ``Mixed_5b``..``Mixed_7c``), never found by layer names."""
    import keras
    from keras import ops

    from weights_bridge.peers import keras_applications as ka

    walker = ka.walk(model, int(model.outputs[0].shape[-1]), "keras.applications model", arch)
    stages = {name: walker.stages[name] for name, _ in walker.spec.stages if name in walker.stages}
    unique = list({id(layer): layer for layer in stages.values()}.values())  # dropout shares avgpool's layer
    outs = keras.Model(model.inputs, [layer.output for layer in unique])(nhwc(x_nchw), training=train)
    by_layer = {id(layer): nchw(ops.convert_to_numpy(o)) for layer, o in zip(unique, outs)}
    return {name: by_layer[id(layer)] for name, layer in stages.items()}


def seeded_file(out, seed=0, num_classes=1000, size=299, architecture="inception_v3"):
    """A keras.applications checkpoint with O(1) activations, saved the way Keras users save one
    (``save_weights``, or ``save`` for ``.keras``): He-scaled conv kernels, random biases where a
    conv has one, random beta (BN has no gamma), BN moving statistics calibrated on one batch
    (one training call with momentum 0 stores the batch statistics) then perturbed, a Glorot-like
    classifier."""
    from weights_bridge.peers.keras_applications import build

    rng = np.random.default_rng(seed)
    model = build(num_classes, size, architecture)
    bns = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            k = layer.kernel
            fan_in = int(np.prod(k.shape[:3]))
            k.assign(rng.standard_normal(k.shape).astype("float32") * np.float32(np.sqrt(2.0 / fan_in)))
            if layer.use_bias:
                layer.bias.assign(rng.uniform(-0.1, 0.1, layer.bias.shape).astype("float32"))
        elif kind == "BatchNormalization":
            layer.beta.assign(rng.uniform(-0.2, 0.2, layer.beta.shape).astype("float32"))
            bns.append((layer, layer.momentum))
            layer.momentum = 0.0  # the next training call stores this batch's statistics
        elif kind == "Dense":
            layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype("float32")
                                * np.float32(np.sqrt(1.0 / layer.kernel.shape[0])))
            layer.bias.assign(rng.uniform(-0.1, 0.1, layer.bias.shape).astype("float32"))
    model(rng.standard_normal((4, size, size, 3)).astype("float32"), training=True)
    for layer, momentum in bns:
        layer.momentum = momentum
        var = np.asarray(layer.moving_variance) * rng.uniform(0.8, 1.25, layer.moving_variance.shape)
        mean = np.asarray(layer.moving_mean) + 0.1 * np.sqrt(var) * rng.standard_normal(var.shape)
        layer.moving_variance.assign(var.astype("float32"))
        layer.moving_mean.assign(mean.astype("float32"))
    model.save(out) if str(out).endswith(".keras") else model.save_weights(out)
    return model


def count_params(architecture) -> int:
    """keras.applications' own ``count_params()`` of the stock model (1000 classes)."""
    import keras

    from weights_bridge.peers.keras_applications import KERAS_MODELS

    return int(getattr(keras.applications, KERAS_MODELS[architecture])(weights=None).count_params())

