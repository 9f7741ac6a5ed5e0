"""Training-step conformance: one forward/backward and optimizer steps, every framework, compared.

Same converted weights (conformance.agreement.checkpoints), same batch (4 images at the model's
input size, seeded labels), same loss: label-smoothed (0.1) cross-entropy on the main logits plus
AUX_WEIGHT x the aux heads' (GoogLeNet 0.3 as in the paper / seed 004; Inception v3 0.4 as in
torchvision's reference training script). Dropout is 0 so the step is deterministic.

Optimizers (OPTIMIZERS), each applied ``STEPS`` times to the one gradient from the loaded weights:

* ``sgd``: lr 0.1, momentum 0.9, weight decay 1e-4 coupled as torch.optim.SGD does (grad += wd w).
  torch.optim.SGD, optax.chain(add_decayed_weights, sgd), keras.optimizers.SGD with wd*w added
  to the gradient (Keras's ``weight_decay`` is decoupled). Keras's momentum buffer holds
  -lr*g-scaled velocities, torch's and optax's hold gradients: equal for a constant lr.
* ``rmsprop_out`` / ``rmsprop_in``: Inception v3's RMSProp (rho/decay 0.9, momentum 0.9,
  epsilon 1.0; lr 0.045, coupled wd 4e-5), in the two epsilon conventions, which at eps = 1.0
  are different optimizers, not a rounding difference (see EPS_PLACEMENT):
  ``rmsprop_out`` w -= lr b, b = mu b + g / (sqrt(v) + eps): torch.optim.RMSprop,
      optax.rmsprop(eps_in_sqrt=False); Keras TRANSLATED (RMSprop subclass, denominator changed).
  ``rmsprop_in``  b = mu b + g / sqrt(v + eps): keras.optimizers.RMSprop (and TF1's
      RMSPropOptimizer, with which Inception v3 was trained), optax.rmsprop (default);
      torch TRANSLATED (written out in torch ops: torch.optim has no such option).
  Every implementation starts the second-moment accumulator at 0 (torch, Keras 3, optax
  initial_scale=0); TF1's RMSPropOptimizer started it at 1.0, which none of these reproduce.

Compared across every pair: the loss; every parameter's gradient (canonical names and layout,
i.e. HWIO kernels transposed to OIHW); BN running statistics after the forward (torch's
unbiased-variance update translated to the biased one Flax and Keras use, momentum 0.1 == 0.9);
and after each optimizer application the update w_k - w_0, per tensor, relative to the largest
|update| of that tensor (the updated weights themselves agree far more closely relative to |w|;
comparing the update is the strict form). Bounds: conformance.compare.tolerances ("train_loss", "grad",
"update"), raised to FLOOR_FACTOR x the fp32 floor the torch worker measures in the same run
(its model and optimizers rerun in float64): per tensor, max(stated rel, 4 x the largest floor
in its block and the blocks downstream of it); see compare.steps.tensor_bounds. The same step in float64
(``dtype="float64"``) is compared at the tight float64 bounds, unraised:
no branch flips there, so it checks the conventions alone. Every model: SHAPE, AUX_WEIGHT.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

AUX_WEIGHT = {"googlenet": 0.3, "googlenet_paper": 0.3, "inception_v3": 0.4,
              "bn_inception": 0.0, "inception_v4": 0.0, "inception_resnet_v2": 0.0}  # 0: no aux heads
LABEL_SMOOTHING = 0.1
BATCH = 4
# (input size, batch) per model: small enough for five CPU workers, large enough for every head
# (the paper GoogLeNet's aux heads pool 5x5/3 to a 4x4 fc input, so 224; Inception v3's aux 5x5
# conv wants the 17x17 stage, so 299; the aux-less models take any size whose last stage is >= 2x2).
SHAPE = {"googlenet": (224, BATCH), "googlenet_paper": (224, 2), "inception_v3": (299, 2),
         "bn_inception": (128, 2), "inception_v4": (107, 2), "inception_resnet_v2": (107, 2)}
STEPS = 2
OPTIMIZERS = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
    "rmsprop_out": {"lr": 0.045, "rho": 0.9, "momentum": 0.9, "eps": 1.0, "weight_decay": 4e-5},
    "rmsprop_in": {"lr": 0.045, "rho": 0.9, "momentum": 0.9, "eps": 1.0, "weight_decay": 4e-5},
}
# What each implementation runs for each optimizer: "native" (its library's optimizer as
# configured above) or "translated" (the rule written out; see conformance.frameworks.*.train).
PROVENANCE = {
    "torch": {"sgd": "torch.optim.SGD", "rmsprop_out": "torch.optim.RMSprop",
              "rmsprop_in": "TRANSLATED: torch ops (RMSpropEpsInSqrt)"},
    "flax": {"sgd": "optax.sgd + add_decayed_weights", "rmsprop_out": "optax.rmsprop(eps_in_sqrt=False)",
             "rmsprop_in": "optax.rmsprop(eps_in_sqrt=True)"},
    **{f"keras-{b}": {"sgd": "keras.optimizers.SGD (+ wd*w on the gradient)",
                      "rmsprop_out": "TRANSLATED: keras.optimizers.RMSprop subclass, sqrt(v) + eps",
                      "rmsprop_in": "keras.optimizers.RMSprop (+ wd*w on the gradient)"}
       for b in ("tensorflow", "jax", "torch")},
}


def hyper(arch, optimizers=True):
    """The step's hyperparameters, as every worker receives them; ``optimizers=False``: the
    forward and backward alone (loss, gradients, BN statistics), no optimizer applied."""
    return {"label_smoothing": LABEL_SMOOTHING, "aux_weight": AUX_WEIGHT[arch], "steps": STEPS,
            "optimizers": OPTIMIZERS if optimizers else {}}


def make_batch(workdir, size, num_classes, seed=0, batch=BATCH):
    rng = np.random.default_rng([seed, size, batch, 7])
    x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    y = rng.integers(0, num_classes, batch).astype(np.int64)
    paths = Path(workdir) / f"train-input-{batch}x{size}.npy", Path(workdir) / f"train-labels-{batch}.npy"
    np.save(paths[0], x)
    np.save(paths[1], y)
    return tuple(map(str, paths))


