"""Keras fine-tuning check in its own process: ``python -m conformance.tests.keras_transfer BACKEND PTH OUT_DIR``.

Converts the .pth to .weights.h5 with the bridge, loads it with Keras's own ``load_weights``,
calls ``impls.keras3.transfer.for_transfer`` for 5 classes, takes 3 SGD steps (batch 4) with a
per-backend training step, and writes ``OUT_DIR/result.json`` for test_transfer.py. The test starts it in the backend's worker
environment (``KERAS_BACKEND`` set before keras is imported); tensorflow never shares a process
with torchvision.
"""
from __future__ import annotations

import json
import os
import sys

from conformance.tests.transfer_data import AUX_WEIGHT, LR, NUM_CLASSES, SIZE, batches, dataset


def _loss_fn(ce):
    def loss(out, y):
        return ce(y, out.logits) + AUX_WEIGHT * (ce(y, out.aux_logits1) + ce(y, out.aux_logits2))

    return loss


def train_steps(model, xs, ys, backend):
    """STEPS SGD steps on ``trainable(model)``, written the way each backend's Keras guide does."""
    import keras

    from impls.keras3.transfer import trainable

    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss_of = _loss_fn(ce)
    opt = keras.optimizers.SGD(LR)
    opt.build(trainable(model))
    losses = []
    if backend == "jax":
        import jax

        def loss_and_state(tv, ntv, x, y):
            out, ntv = model.stateless_call(tv, ntv, x, training=True)
            return loss_of(out, y), ntv

        @jax.jit
        def step(tv, ntv, ov, x, y):
            (loss, ntv), grads = jax.value_and_grad(loss_and_state, has_aux=True)(tv, ntv, x, y)
            tv, ov = opt.stateless_apply(ov, grads, tv)
            return loss, tv, ntv, ov

        for x, y in batches(xs, ys):
            state = [[v.value for v in vs] for vs in (model.trainable_variables, model.non_trainable_variables,
                                                       opt.variables)]
            loss, *new = step(*state, x, y)
            for vs, values in zip((model.trainable_variables, model.non_trainable_variables, opt.variables), new):
                for v, value in zip(vs, values):
                    v.assign(value)
            losses.append(float(loss))
    elif backend == "tensorflow":
        import tensorflow as tf

        for x, y in batches(xs, ys):
            with tf.GradientTape() as tape:
                loss = loss_of(model(x, training=True), y)
            opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            losses.append(float(loss))
    else:  # torch
        import torch

        for x, y in batches(xs, ys):
            model.zero_grad()
            loss = loss_of(model(x, training=True), torch.as_tensor(y))
            loss.backward()
            with torch.no_grad():
                opt.apply([v.value.grad for v in model.trainable_variables], model.trainable_variables)
            losses.append(float(loss.detach()))
    return losses


def main(backend, pth, out_dir):
    import numpy as np
    import keras
    from keras import ops

    from impls.keras3 import create_model
    from impls.keras3.transfer import for_transfer, trainable
    from impls.spec.transfer import head_init
    from weights_bridge import convert, read
    from weights_bridge.keras_io import from_model
    from weights_bridge.neutral import read as read_neutral, write as write_neutral

    h5 = os.path.join(out_dir, "googlenet.weights.h5")
    convert(pth, h5, "googlenet")
    model = create_model("googlenet", input_size=SIZE)
    model.load_weights(h5)
    model = for_transfer(model, NUM_CLASSES, seed=0)
    values = lambda: {v.path: np.array(ops.convert_to_numpy(v.value)) for v in model.weights}
    before = values()
    heads = {v.path for v in trainable(model)}
    fresh = head_init(model.spec, NUM_CLASSES, 0)
    init_ok = bool(np.array_equal(ops.convert_to_numpy(model.get_layer("fc").kernel), fresh["fc"]["weight"].T))

    xs, ys = dataset(channels_last=True)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    eval_loss = lambda: float(ce(ys, model(xs, training=False)))
    eval_before = eval_loss()
    losses = train_steps(model, xs, ys, backend)
    eval_after = eval_loss()
    after = values()

    # The fine-tuned weights convert like any others: save, read with the bridge, neutral round trip.
    ft = os.path.join(out_dir, "finetuned.weights.h5")
    model.save_weights(ft)
    ckpt = read(ft, architecture="googlenet")
    live = from_model(model, "googlenet")
    write_neutral(ckpt, os.path.join(out_dir, "finetuned.neutral"))
    back = read_neutral(os.path.join(out_dir, "finetuned.neutral"))
    result = {
        "trainable": sorted(heads),
        "frozen_changed": [k for k in before if k not in heads and not np.array_equal(before[k], after[k])],
        "frozen_count": len([k for k in before if k not in heads]),
        "heads_unchanged": [k for k in heads if np.array_equal(before[k], after[k])],
        "head_init_shared": init_ok,
        "losses": losses, "eval_before": eval_before, "eval_after": eval_after,
        "roundtrip": {"num_classes": ckpt.num_classes, "aux_logits": ckpt.aux_logits,
                      "file_equals_model": all(np.array_equal(ckpt.tensors[k], live.tensors[k]) for k in live.tensors),
                      "neutral_equals": back.num_classes == NUM_CLASSES and sorted(back.tensors) == sorted(ckpt.tensors)
                      and all(np.array_equal(back.tensors[k], ckpt.tensors[k]) for k in ckpt.tensors)},
    }
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    if os.environ.get("KERAS_BACKEND") != sys.argv[1]:
        raise SystemExit(f"start with KERAS_BACKEND={sys.argv[1]} (conformance.launch.environment)")
    main(*sys.argv[1:4])
