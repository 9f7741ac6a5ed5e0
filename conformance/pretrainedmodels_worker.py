"""The pretrainedmodels peer: ``pretrainedmodels.bninception`` (the Caffe BN-Inception) holding a
"caffe"-variant bn_inception checkpoint exported by the bridge under its own tensor names, run by
``conformance.worker``.

It is a plain torch module (BN momentum 0.1, unbiased running variance, as ours), so the torch
runner drives it; only its BN statistics and per-BN counts come back under its flat names
(``inception_3a_1x1_bn.running_var``) and are renamed to ours for the comparison. It has no
dropout and no aux head; ``verify --layers`` finds none of our block names in it.
"""
from __future__ import annotations

from .worker import TorchRunner, peer_fits


def _renamed(res, arch, cfg):
    from weights_bridge.checkpoint import Checkpoint
    from weights_bridge.peers.pretrainedmodels import name_table

    table = name_table(Checkpoint(arch, {}, cfg["num_classes"], False, variant=cfg["variant"]))
    ours = {peer: canonical for canonical, peer in table.items()}
    modules = {p.rsplit(".", 1)[0]: c.rsplit(".", 1)[0] for p, c in ours.items()}
    out = {}
    for k, v in res.items():
        kind, _, name = k.partition(":")
        if kind == "stat" and name in ours:
            k = f"stat:{ours[name]}"
        elif kind == "count" and name in modules:
            k = f"count:{modules[name]}"
        out[k] = v
    return out


class PretrainedModelsRunner(TorchRunner):
    def __init__(self):
        super().__init__(peer="pretrainedmodels")

    def load(self, task, cfg, x):
        import pretrainedmodels
        import torch

        if not peer_fits(self.peer, task["arch"], cfg.get("variant")):
            raise ValueError(f"pretrainedmodels has no {cfg.get('variant')!r} variant of {task['arch']}")
        model = pretrainedmodels.bninception(num_classes=cfg["num_classes"], pretrained=None)
        state = torch.load(task["weights"]["pretrainedmodels"], map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)  # what a pretrainedmodels user does with the file
        return model.to(self.info["device"])

    def run(self, task, cfg, x):
        return _renamed(super().run(task, cfg, x), task["arch"], cfg)

