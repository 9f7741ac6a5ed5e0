"""One training step in PyTorch (``conformance.training``): loss, gradients, BN statistics and every
optimizer's updates, in canonical names; in float32 also the fp32 floor of every quantity from
an fp64 twin run through the same procedure."""
from __future__ import annotations

import numpy as np

from ...compare.steps import floor_entries
from ..base import outputs_dict


class RMSpropEpsInSqrt:
    """TRANSLATED: Keras's / optax's (eps_in_sqrt=True) / TF1's RMSProp in torch ops (torch.optim's
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


def optimizer(name, hp, params):
    import torch

    o = hp["optimizers"][name]
    if name == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
    if name == "rmsprop_out":  # torch's own convention: sqrt(v) + eps
        return torch.optim.RMSprop(params, lr=o["lr"], alpha=o["rho"], eps=o["eps"], momentum=o["momentum"],
                                   weight_decay=o["weight_decay"])
    if name == "rmsprop_in":
        return RMSpropEpsInSqrt(params, o["lr"], o["rho"], o["momentum"], o["eps"], o["weight_decay"])
    raise ValueError(name)


def loss(out, y, hp):
    import torch.nn.functional as F

    ce = lambda logits: F.cross_entropy(logits, y, label_smoothing=hp["label_smoothing"])
    fields = outputs_dict(out)
    return ce(fields.pop("logits")) + hp["aux_weight"] * sum(ce(v) for v in fields.values())


def procedure(model, x, y, hp, counts=None):
    """The step on ``model`` (left at the last optimizer's result), in chunks of numpy arrays in
    the model's dtype: {"loss", "grad:<tensor>", "stat:<bn>.running_*"}, then one
    {"<optimizer><k>:<tensor>"} per optimizer application (a chunk at a time in memory)."""
    import torch

    model.train()
    params = dict(model.named_parameters())
    w0 = {k: p.detach().clone() for k, p in params.items()} if hp["optimizers"] else {}  # what each starts from
    hooks = []
    if counts is not None:
        hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: counts.__setitem__(
            name, inp[0].numel() // inp[0].shape[1])) for name, m in model.named_modules()
            if isinstance(m, torch.nn.BatchNorm2d)]
    value = loss(model(x), y, hp)
    for h in hooks:
        h.remove()
    model.zero_grad()
    value.backward()
    grads = {k: p.grad.detach().clone() for k, p in params.items()}
    sd = model.state_dict()
    yield _numpy({"loss": value.detach(), **{f"grad:{k}": g for k, g in grads.items()},
                  **{f"stat:{k}": sd[k].clone() for k in sd if k.endswith(("running_mean", "running_var"))}})
    for chunk in steps(params, w0, grads, hp):
        yield _numpy(chunk)


def _numpy(tensors: dict) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in tensors.items()}


def steps(params, w0, grads, hp):
    """Every optimizer applied hp["steps"] times to ``grads``, each from the weights ``w0``: one
    {"<optimizer><k>:<tensor>"} chunk per application."""
    import torch

    for name in hp["optimizers"]:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(w0[k])
        opt = optimizer(name, hp, list(params.values()))
        for step in range(1, hp["steps"] + 1):
            for k, p in params.items():
                p.grad = grads[k]  # read, never written: torch.optim and ours add wd * w out of place
            opt.step()
            yield {f"{name}{step}:{k}": p.detach().clone() for k, p in params.items()}


def train_step(model, x, y, hp, dtype, device, w0):
    """The step in ``dtype`` on a loaded float32 model, in chunks as ``procedure``'s; float32
    adds to each chunk the floors from an fp64 twin run alongside."""
    import copy

    import torch

    yt = torch.from_numpy(y).long().to(device)
    counts = {}
    if dtype == "float64":
        yield from procedure(model.double().to(device), torch.from_numpy(x).double().to(device), yt, hp, counts)
    else:
        twin = copy.deepcopy(model).double().to(device)
        w0 = {k: np.asarray(v, np.float64) for k, v in w0.items()}
        ours = procedure(model.to(device), torch.from_numpy(x).to(device), yt, hp, counts)
        reference = procedure(twin, torch.from_numpy(x).double().to(device), yt, hp)
        for chunk, ref in zip(ours, reference, strict=True):
            yield {**chunk, **floor_entries(chunk, ref, w0)}
    yield {f"count:{k}": np.int64(n) for k, n in counts.items()}
