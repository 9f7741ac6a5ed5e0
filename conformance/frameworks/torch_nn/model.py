"""The torch process's models: ours (``impls.torch_nn`` through the bridge's loader) and the
torch-based peers (torchvision, timm, pretrainedmodels; pytorch-fid and torch-fidelity in
``fid_peers``) holding their own files, each loaded the
way its users load it (``torch.load(weights_only=True)`` + ``load_state_dict(strict=True)``)."""
from __future__ import annotations

import copy
import inspect

import numpy as np

from impls.spec import model_spec

from ..base import outputs_dict
from . import fid_peers

FID_PEERS = ("pytorch-fid", "torch-fidelity")


def model_kwargs(cfg: dict, arch: str, factory=None) -> dict:
    """Constructor keywords from a checkpoint's config, every dropout 0 (train-mode outputs are
    then deterministic); for a peer's ``factory``, only the keywords it takes."""
    kw = dict(num_classes=cfg["num_classes"], aux_logits=cfg["aux_logits"], transform_input=cfg["transform_input"],
              dropout=0.0, dropout_aux=0.0, variant=cfg.get("variant", "default"))
    if factory is not None:
        kw = {k: v for k, v in kw.items() if k in inspect.signature(factory).parameters}
    return kw


def load_ours(neutral_path, **overrides):
    from weights_bridge import torch_io

    from ..base import read_neutral

    ckpt = read_neutral(neutral_path)
    return torch_io.to_model(ckpt, dropout=0.0, dropout_aux=0.0, **overrides)


def load_peer(impl: str, arch: str, cfg: dict, peer_file):
    """A peer's own model holding its own file (exported by the bridge)."""
    import torch

    if impl in FID_PEERS:  # their constructors load the file themselves
        return fid_peers.load(impl, peer_file)
    state = torch.load(peer_file, map_location="cpu", weights_only=True)
    if impl == "timm":
        import timm

        if cfg["transform_input"]:
            raise ValueError("timm's inception_v3 has no transform_input")
        # timm's inception_v4 / inception_resnet_v2 have no aux head and no aux_logits argument.
        aux = {"aux_logits": cfg["aux_logits"]} if arch == "inception_v3" else {}
        model = timm.create_model(arch, pretrained=False, num_classes=cfg["num_classes"], drop_rate=0.0, **aux)
    elif impl == "torchvision":
        import torchvision

        factory = {"googlenet": torchvision.models.GoogLeNet, "inception_v3": torchvision.models.Inception3}[arch]
        model = factory(init_weights=False, **model_kwargs(cfg, arch, factory))
    elif impl == "pretrainedmodels":
        import pretrainedmodels

        model = pretrainedmodels.bninception(num_classes=cfg["num_classes"], pretrained=None)
    else:
        raise ValueError(f"the torch worker has no peer {impl!r}")
    model.load_state_dict(state, strict=True)  # what the peer's users do with the file
    return model


def fp64_reference(model, x, train: bool) -> dict:
    """Our model rerun in float64 on the same input and state: the fp32 floor every tolerance is
    measured against (conformance.compare.tolerances). Train mode adds the BN running statistics."""
    import torch

    twin = copy.deepcopy(model).double().train(train)
    with torch.no_grad():
        out = twin(torch.from_numpy(x).double().to(next(twin.parameters()).device))
    res = {k: v.cpu().numpy() for k, v in outputs_dict(out).items()}
    if train:
        sd = twin.state_dict()
        res.update({f"stat:{k}": sd[k].cpu().numpy() for k in sd if k.endswith(("running_mean", "running_var"))})
    return res


def bn_counts(model) -> dict:
    """{BN module name: elements per channel} filled by the next forward: converts torch's
    unbiased running-variance update to the biased one Flax and Keras use."""
    import torch

    counts = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_hook(lambda mod, inp, out, name=name: counts.__setitem__(
                name, inp[0].numel() // inp[0].shape[1]))
    return counts


def run(model, impl: str, arch: str, cfg: dict, x, train: bool, device) -> dict:
    """Outputs, and in train mode the BN running statistics and per-BN counts, under canonical
    field names (the train-mode named tuple's)."""
    import torch

    model.train(train)
    counts = bn_counts(model) if train else {}
    if impl == "timm":  # timm runs its aux head in eval mode too (it needs ~299 input): only in train
        model.aux_logits = bool(cfg["aux_logits"]) and train
    with torch.no_grad():
        if impl in FID_PEERS:
            res = fid_peers.run(model, impl, x)
        else:
            out = model(torch.from_numpy(x).to(device))
            if impl == "timm" and isinstance(out, tuple):  # timm's (logits, aux) as our named tuple
                out = model_spec(arch, num_classes=cfg["num_classes"], aux_logits=cfg["aux_logits"],
                                 variant=cfg.get("variant", "default")).outputs_type(*out)
            res = {k: v.cpu().numpy() for k, v in outputs_dict(out).items()}
    if train:
        ours = (lambda name: fid_peers.canonical_name(impl, name)) if impl in FID_PEERS else (lambda name: name)
        sd = model.state_dict()
        res.update({f"stat:{ours(k)}": sd[k].cpu().numpy() for k in sd if k.endswith(("running_mean", "running_var"))})
        res.update({f"count:{ours(k)}": np.int64(n) for k, n in counts.items()})
    return res


def blocks(model, x, train=False, eval_aux=False) -> dict:
    """Our model's per-block activations: ``forward_stages`` records every stage. ``eval_aux``: in
    eval mode also run each aux head on its tap (BN on running statistics, as the trunk), so a slip
    only the aux heads see (GoogLeNet's flatten order before aux fc1) shows without train-mode BN."""
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


def peer_blocks(model, x, names, train=False) -> dict:
    """A peer torch model's activations via forward hooks on the modules our spec names (dotted
    paths such as timm's ``features.3`` included); a name the peer lacks (or applies functionally)
    is simply absent."""
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
