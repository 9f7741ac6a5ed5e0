"""One implementation's training-step worker: ``python -m conformance.train_worker JOB.json``.

Same rule as ``conformance.worker``: one framework per process (tensorflow before torchvision
segfaults; KERAS_BACKEND is fixed at import). The worker loads the converted weights the way a
user of its framework would, runs one train-mode forward/backward on the job's batch and writes
``<out_dir>/train.npz`` with canonical (PyTorch) names and layouts:

``loss``                      the scalar loss (conformance.training.loss_spec)
``grad:<tensor>``             d loss / d parameter, per trainable tensor
``stat:<bn>.running_*``       BN running statistics after the forward (torch: unbiased update,
                              with ``count:<bn>`` = elements per channel so the parent can translate)
``<opt><k>:<tensor>``         the trainable tensors after k applications of the optimizer to that
                              same gradient, starting from the loaded weights, for every optimizer
                              in conformance.training.OPTIMIZERS (sgd, rmsprop_out, rmsprop_in)
``floor:<key>``               torch only: [max|fp32 - fp64|, max|fp64|, max|fp64 - w0|] for every
                              key above, from an fp64 twin run through the same procedure.

Each optimizer's k-th application reuses the step-1 gradient (one forward/backward only), so the
momentum and second-moment accumulators are exercised without a second, diverging forward.
Weight decay is coupled everywhere (PyTorch's ``grad += wd * w``): natively in torch and optax
(``add_decayed_weights`` before the update), added to the gradient by hand for Keras, whose
``weight_decay`` argument is decoupled. Where a framework's library lacks an RMSProp epsilon
convention, the step is written out in that framework's tensor ops (marked TRANSLATED below).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def _model_kwargs(job):
    """The checkpoint's constructor arguments, every dropout 0 (as conformance.worker)."""
    from .worker import _model_kwargs as kw

    return kw({"arch": job["arch"]}, job["config"])


# ----------------------------------------------------------------------------------- torch
class TorchRMSpropEpsInSqrt:
    """TRANSLATED: Keras 3 / optax(eps_in_sqrt=True) / TF1 RMSProp in torch ops (torch.optim's
    RMSprop adds eps outside the square root, with no option to move it):
    v = rho v + (1-rho) g^2; b = mu b + g / sqrt(v + eps); w -= lr b (g includes wd * w)."""

    def __init__(self, params, lr, rho, momentum, eps, weight_decay):
        import torch

        self.params, self.hp = list(params), (lr, rho, momentum, eps, weight_decay)
        self.v = [torch.zeros_like(p) for p in self.params]
        self.b = [torch.zeros_like(p) for p in self.params]

    def step(self):
        import torch

        lr, rho, mu, eps, wd = self.hp
        with torch.no_grad():
            for p, v, b in zip(self.params, self.v, self.b):
                g = p.grad + wd * p
                v.mul_(rho).addcmul_(g, g, value=1 - rho)
                b.mul_(mu).add_(g / torch.sqrt(v + eps))
                p.sub_(lr * b)


def _torch_optimizer(name, hp, params):
    import torch

    o = hp["optimizers"][name]
    if name == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
    if name == "rmsprop_out":  # torch's own convention: sqrt(v) + eps
        return torch.optim.RMSprop(params, lr=o["lr"], alpha=o["rho"], eps=o["eps"], momentum=o["momentum"],
                                   weight_decay=o["weight_decay"])
    if name == "rmsprop_in":
        return TorchRMSpropEpsInSqrt(params, o["lr"], o["rho"], o["momentum"], o["eps"], o["weight_decay"])
    raise ValueError(name)


def _torch_loss(out, y, hp):
    import torch.nn.functional as F

    ce = lambda logits: F.cross_entropy(logits, y, label_smoothing=hp["label_smoothing"])
    if not isinstance(out, tuple):
        return ce(out)
    return ce(out.logits) + hp["aux_weight"] * sum(ce(getattr(out, f)) for f in out._fields if f != "logits")


def _torch_procedure(model, x, y, hp, counts=None):
    import torch

    model.train()
    params = dict(model.named_parameters())
    w0 = {k: p.detach().clone() for k, p in params.items()}
    if counts is not None:
        hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: counts.__setitem__(
            name, inp[0].numel() // inp[0].shape[1])) for name, m in model.named_modules()
            if isinstance(m, torch.nn.BatchNorm2d)]
    loss = _torch_loss(model(x), y, hp)
    if counts is not None:
        for h in hooks:
            h.remove()
    model.zero_grad()
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in params.items()}
    res = {"loss": loss.detach()}
    res.update({f"grad:{k}": g for k, g in grads.items()})
    sd = model.state_dict()
    res.update({f"stat:{k}": sd[k].clone() for k in sd if k.endswith(("running_mean", "running_var"))})
    res.update(_torch_steps(params, w0, grads, hp))
    return {k: v.cpu().numpy() for k, v in res.items()}


def _torch_steps(params, w0, grads, hp):
    """Every optimizer applied hp["steps"] times to ``grads``, each from the weights ``w0``
    (params are left at the last optimizer's result)."""
    import torch

    res = {}
    for name in hp["optimizers"]:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(w0[k])
        opt = _torch_optimizer(name, hp, list(params.values()))
        for step in range(1, hp["steps"] + 1):
            for k, p in params.items():
                p.grad = grads[k].clone()
            opt.step()
            res.update({f"{name}{step}:{k}": p.detach().clone() for k, p in params.items()})
    return res


def run_torch(job, x, y, hp):
    import copy

    import torch

    from impls.torch_nn import MODELS

    from .precision import torch_full_precision

    info = torch_full_precision()
    dev = info["device"]
    model = MODELS[job["arch"]](**_model_kwargs(job))
    model.load_state_dict(torch.load(job["weights"]["torch"], map_location="cpu", weights_only=True), strict=True)
    twin = copy.deepcopy(model).double().to(dev)
    model = model.to(dev)
    yt = torch.from_numpy(y).long().to(dev)
    counts = {}
    t0 = time.perf_counter()
    res = _torch_procedure(model, torch.from_numpy(x).to(dev), yt, hp, counts)
    info["seconds_fp32"] = round(time.perf_counter() - t0, 3)
    # fp64 twin through the same procedure: the fp32 floor every training bound is measured against.
    ref = _torch_procedure(twin, torch.from_numpy(x).double().to(dev), yt, hp)
    w0 = {k: np.asarray(v, np.float64) for k, v in _initial_params(job).items()}
    for k, r in ref.items():
        a = res[k].astype(np.float64)
        base = w0.get(k.split(":", 1)[1]) if ":" in k and not k.startswith(("grad:", "stat:")) else None
        res[f"floor:{k}"] = np.array([np.abs(a - r).max(), np.abs(r).max(),
                                      np.abs(r - base).max() if base is not None else np.abs(r).max()])
    res.update({f"count:{k}": np.int64(n) for k, n in counts.items()})
    return res, info


def _initial_params(job):
    from safetensors.numpy import load_file

    return load_file(os.path.join(job["weights"]["safetensors"], "model.safetensors"))


# ------------------------------------------------------------------------------------ flax
def _flat(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _canonical(framework, native, where):
    """Native {key: array} (any subset of a model's tensors) in canonical names and layouts."""
    from weights_bridge.mapping import plan

    return {ck: layout.to_canonical(np.asarray(native[nk]))  # float32 (or float64: train_fp64)
            for nk, (ck, layout) in plan(framework, native, where).items()}


def _optax(name, hp):
    import optax

    o = hp["optimizers"][name]
    decay = optax.add_decayed_weights(o["weight_decay"])  # coupled: g + wd * w, as torch
    if name == "sgd":
        return optax.chain(decay, optax.sgd(o["lr"], momentum=o["momentum"]))
    return optax.chain(decay, optax.rmsprop(o["lr"], decay=o["rho"], eps=o["eps"], momentum=o["momentum"],
                                            eps_in_sqrt=name == "rmsprop_in"))


def run_flax(job, x, y, hp, mesh=None):
    """``mesh``: a 1-D jax.sharding.Mesh to run data parallel on (conformance.dp_worker): the
    model state replicated, the batch split along the mesh's axis, one jit over all devices."""
    import flax.serialization
    import jax
    import optax
    from flax import nnx

    from weights_bridge.flax_io import build_model, from_model

    from .precision import jax_full_precision

    info = jax_full_precision()
    with open(job["weights"]["flax"], "rb") as f:
        model = build_model(job["arch"], flax.serialization.msgpack_restore(f.read()), **_model_kwargs(job))
    model.train()
    num_classes = model.spec.num_classes
    xh = np.transpose(x, (0, 2, 3, 1))
    if mesh is not None:
        from jax.sharding import NamedSharding, PartitionSpec

        nnx.update(model, jax.device_put(nnx.state(model), NamedSharding(mesh, PartitionSpec())))
        xh, y = (jax.device_put(a, NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))) for a in (xh, y))
        info["input_devices"] = len(xh.sharding.device_set)

    def loss_of(out, y):
        ce = lambda logits: optax.softmax_cross_entropy(
            logits, optax.smooth_labels(jax.nn.one_hot(y, num_classes), hp["label_smoothing"])).mean()
        if not isinstance(out, tuple):
            return ce(out)
        return ce(out.logits) + hp["aux_weight"] * sum(ce(getattr(out, f)) for f in out._fields if f != "logits")

    @nnx.jit
    def forward_backward(model, x, y):
        return nnx.value_and_grad(lambda m: loss_of(m(x), y))(model)

    t0 = time.perf_counter()
    loss, grads = forward_backward(model, xh, y)
    res = {"loss": np.asarray(loss)}
    grads = nnx.to_pure_dict(grads)
    res.update({f"grad:{k}": v for k, v in _canonical("flax", dict(_flat(grads)), "flax grads").items()})
    res.update({f"stat:{k}": v for k, v in from_model(model, job["arch"]).tensors.items()
                if k.endswith(("running_mean", "running_var"))})
    params0 = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    for name in hp["optimizers"]:
        tx = _optax(name, hp)
        params, state = params0, tx.init(params0)
        step = jax.jit(lambda p, s, g, tx=tx: _apply(tx, p, s, g))
        for k in range(1, hp["steps"] + 1):
            params, state = step(params, state, grads)
            res.update({f"{name}{k}:{c}": v for c, v in
                        _canonical("flax", dict(_flat(jax.device_get(params))), "flax params").items()})
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return res, info


def _apply(tx, params, state, grads):
    import optax

    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


# ----------------------------------------------------------------------------------- keras
def _keras_rmsprop_eps_outside():
    import keras
    from keras import ops

    class RMSpropEpsOutsideSqrt(keras.optimizers.RMSprop):
        """TRANSLATED: Keras's RMSprop with torch's denominator sqrt(v) + eps instead of
        sqrt(v + eps) (Keras 3 has no option for it); everything else is Keras's update_step."""

        def update_step(self, gradient, variable, learning_rate):
            lr = ops.cast(learning_rate, variable.dtype)
            gradient = ops.cast(gradient, variable.dtype)
            velocity = self._velocities[self._get_variable_index(variable)]
            momentum = self._momentums[self._get_variable_index(variable)]
            self.assign(velocity, ops.add(ops.multiply(self.rho, velocity),
                                          ops.multiply(1 - self.rho, ops.square(gradient))))
            increment = ops.divide(ops.multiply(lr, gradient), ops.add(ops.sqrt(velocity), self.epsilon))
            self.assign(momentum, ops.add(ops.multiply(self.momentum, momentum), increment))
            self.assign_sub(variable, momentum)

    return RMSpropEpsOutsideSqrt


def _keras_optimizer(name, hp):
    import keras

    o = hp["optimizers"][name]
    if name == "sgd":
        return keras.optimizers.SGD(o["lr"], momentum=o["momentum"])
    cls = keras.optimizers.RMSprop if name == "rmsprop_in" else _keras_rmsprop_eps_outside()
    return cls(o["lr"], rho=o["rho"], momentum=o["momentum"], epsilon=o["eps"])


def run_keras(job, x, y, hp, backend, place=None):
    """``place``: puts the NHWC batch and one-hot labels where they belong (conformance.dp_worker:
    split across devices by the active keras.distribution)."""
    import contextlib

    import keras
    from keras import ops

    from impls.keras3 import MODELS
    from weights_bridge.keras_io import from_model, native_key

    from .precision import keras_full_precision

    info = keras_full_precision(backend)
    model = MODELS[job["arch"]](input_size=x.shape[-1], **_model_kwargs(job))
    model.load_weights(job["weights"]["keras"])
    xh = np.transpose(x, (0, 2, 3, 1))
    yh = np.eye(model.spec.num_classes, dtype=x.dtype)[y]  # float64 labels in train_fp64
    if place is not None:
        xh, yh = place(xh), place(yh)
    cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=hp["label_smoothing"])

    def loss_of(out, y):
        if not isinstance(out, tuple):
            return cce(y, out)
        return cce(y, out.logits) + hp["aux_weight"] * sum(cce(y, getattr(out, f)) for f in out._fields
                                                            if f != "logits")

    tvars = model.trainable_variables
    t0 = time.perf_counter()
    if backend == "jax":
        import jax

        def f(tv, ntv, x, y):
            out, ntv = model.stateless_call(tv, ntv, x, training=True)
            return loss_of(out, y), ntv

        tv = [v.value for v in tvars]
        ntv = [v.value for v in model.non_trainable_variables]
        (loss, ntv), grads = jax.jit(jax.value_and_grad(f, has_aux=True))(tv, ntv, xh, yh)
        for v, value in zip(model.non_trainable_variables, ntv):
            v.assign(value)
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(model(xh, training=True), yh)
        grads = tape.gradient(loss, tvars)
    else:
        model.zero_grad()
        loss = loss_of(model(xh, training=True), ops.convert_to_tensor(yh))
        loss.backward()
        grads = [v.value.grad.detach().clone() for v in tvars]
        loss = loss.detach()
    keys = [native_key(v) for v in tvars]
    res = {"loss": np.asarray(ops.convert_to_numpy(loss))}
    res.update({f"grad:{k}": v for k, v in _canonical(
        "keras", {k: ops.convert_to_numpy(g) for k, g in zip(keys, grads)}, "keras grads").items()})
    res.update({f"stat:{k}": v for k, v in from_model(model, job["arch"]).tensors.items()
                if k.endswith(("running_mean", "running_var"))})
    w0 = [ops.convert_to_numpy(v.value) for v in tvars]
    no_grad = __import__("torch").no_grad if backend == "torch" else contextlib.nullcontext
    for name in hp["optimizers"]:
        wd = hp["optimizers"][name]["weight_decay"]
        for v, w in zip(tvars, w0):
            v.assign(w)
        opt = _keras_optimizer(name, hp)
        opt.build(tvars)
        for k in range(1, hp["steps"] + 1):
            with no_grad():
                # coupled weight decay, as torch: Keras's own weight_decay is decoupled (AdamW-style)
                opt.apply([ops.add(g, ops.multiply(wd, v.value)) for g, v in zip(grads, tvars)], tvars)
            res.update({f"{name}{k}:{c}": a for c, a in _canonical(
                "keras", {nk: ops.convert_to_numpy(v.value) for nk, v in zip(keys, tvars)}, "keras params").items()})
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return res, info


def main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    impl, hp = job["impl"], job["hyper"]
    x, y = np.load(job["input"]), np.load(job["labels"])
    t0 = time.perf_counter()
    if impl == "torch":
        res, info = run_torch(job, x, y, hp)
    elif impl == "flax":
        res, info = run_flax(job, x, y, hp)
    elif impl.startswith("keras-"):
        res, info = run_keras(job, x, y, hp, impl.split("-", 1)[1])
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    res = {k: (np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" and not k.startswith("floor:")
               else np.asarray(v)) for k, v in res.items()}
    np.savez(os.path.join(job["out_dir"], "train.npz"), **res)
    info["total_seconds"] = round(time.perf_counter() - t0, 3)
    with open(os.path.join(job["out_dir"], "report.json"), "w") as f:
        json.dump({"impl": impl, "precision": info}, f, indent=1)


if __name__ == "__main__":
    from conformance.worker import run_job

    run_job(main, sys.argv[1])
