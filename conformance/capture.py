"""Per-block activations under canonical names (the spec's stage and aux-head names), in NCHW
layout whatever the framework, for ``verify --layers`` and ``diagnose``."""
from __future__ import annotations

import numpy as np


def nchw(a) -> np.ndarray:
    a = np.asarray(a)
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2))) if a.ndim == 4 else a


def torch_blocks(model, x, train=False, eval_aux=False):
    """Our PyTorch model: ``forward_stages`` records every stage. ``eval_aux``: in eval mode also
    run each aux head on its tap (BN on running statistics, as the trunk), so a slip that only
    the aux heads see (GoogLeNet's flatten order before aux fc1) shows without train-mode BN."""
    import torch

    captured = {}
    model.train(train)
    with torch.no_grad():
        model.forward_stages(x, capture=captured)
        if eval_aux and not train:
            ordered = {}
            for name, v in captured.items():
                ordered[name] = v
                ordered.update({head: getattr(model, head)(v) for head, (tap, _) in model.spec.aux_heads.items()
                                if tap == name})
            captured = ordered
    return {k: v.cpu().numpy() for k, v in captured.items()}


def torch_peer_blocks(model, x, names, train=False):
    """A peer torch model (torchvision, timm) via forward hooks on the modules our spec names
    (dotted paths such as timm's ``features.3`` included); a name the peer lacks (or applies
    functionally) is simply absent."""
    import torch

    captured, hooks = {}, []
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(module, torch.nn.Module):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: captured.__setitem__(name, o.detach().cpu().numpy())))
    model.train(train)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return captured


def flax_blocks(model, x, train=False):
    from flax import nnx

    model.train() if train else model.eval()

    def run(m, x):
        captured = {}
        m.forward_stages(x, capture=captured)
        return captured

    return {k: nchw(v) for k, v in nnx.jit(run)(model, x).items()}


def keras_blocks(model, x, backend, train=False):
    from keras import ops

    if backend != "jax":
        captured = {}
        model.forward_stages(ops.convert_to_tensor(x), training=train, capture=captured)
        return {k: nchw(ops.convert_to_numpy(v)) for k, v in captured.items()}
    # jit with the variables bound statelessly: eager Keras-on-JAX dispatches op by op.
    import jax
    import keras

    variables = model.trainable_variables + model.non_trainable_variables

    def run(values, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            captured = {}
            model.forward_stages(x, training=train, capture=captured)
            return captured

    out = jax.jit(run)([v.value for v in variables], x)
    return {k: nchw(v) for k, v in out.items()}


def compare_blocks(ref: dict, other: dict, rel_tol: float):
    """[(block, max_abs, max_rel)] over the blocks both captured, in ``ref``'s order, and the
    first block whose relative difference exceeds ``rel_tol`` (or None)."""
    rows, first = [], None
    for name, a in ref.items():
        if name not in other:
            continue
        b = other[name]
        if a.size != b.size:
            rows.append((name, float("inf"), float("inf")))
        else:
            a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
            d = float(np.abs(a64 - b64).max())
            ref_mag = float(np.abs(a64).max())
            rows.append((name, d, d / ref_mag if ref_mag else (0.0 if d == 0 else float("inf"))))
        if first is None and rows[-1][2] > rel_tol:
            first = name
    return rows, first
