"""A seeded ``keras.applications.InceptionV3`` (or ``InceptionResNetV2``) checkpoint with O(1)
activations, saved the way Keras users save one (``model.save_weights``, or ``model.save`` for ``.keras``).

He-scaled conv kernels, random biases where a conv has one (IRv2's residual up-projections),
random beta (BN has no gamma: ``scale=False``), BN moving statistics calibrated on one batch (one
training-mode call with momentum 0 stores the batch statistics) then perturbed, a Glorot-like
classifier. Run in its own process (it imports keras/tensorflow):
``python -m conformance.keras_applications_weights OUT.weights.h5 [--seed N] [--num-classes N] [--arch A]``.
"""
from __future__ import annotations

import argparse
import os


def make(out, seed=0, num_classes=1000, size=299, architecture="inception_v3"):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--arch", default="inception_v3", help="inception_v3 or inception_resnet_v2")
    a = p.parse_args(argv)
    make(a.out, a.seed, a.num_classes, architecture=a.arch)


if __name__ == "__main__":
    main()
