"""The torch worker's adapter: our PyTorch models and the torch-based peers (torchvision, timm,
pretrainedmodels). Requests: see ``conformance.frameworks.base``."""
from __future__ import annotations

import time

import numpy as np

from ..base import Adapter, read_neutral, save, write_chunks
from . import model as M


def _renamed_to_ours(res, arch, cfg):
    """pretrainedmodels' BN statistics and counts, under its flat names, renamed to ours."""
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


class TorchAdapter(Adapter):
    OPS = Adapter.OPS + ("seed", "ddp")

    def precision(self):
        from ...precision import torch_full_precision

        return torch_full_precision()

    def load(self, impl, arch, weights, cfg):
        if impl == "torch":
            return M.load_ours(weights["neutral"]).to(self.info["device"])
        return M.load_peer(impl, arch, cfg, weights["peer"]).to(self.info["device"])

    def outputs(self, impl, arch, weights, config, mode, input, out, layers=False):
        import torch

        x, train = np.load(input), mode == "train"
        model = self.models.get((impl, weights["neutral"]), lambda: self.load(impl, arch, weights, config),
                                consume=train)
        # Ours gets an fp64 twin on the same input and state: the floor every tolerance uses.
        reference = M.fp64_reference(model, x, train) if impl == "torch" else None
        res = M.run(model, impl, arch, config, x, train, self.info["device"])
        if reference is not None:
            res.update({f"fp64:{k}": v for k, v in reference.items()})
        if layers:
            xt = torch.from_numpy(x).to(self.info["device"])
            from impls.spec import model_spec

            blocks = (M.blocks(model, xt, train) if impl == "torch"
                      else M.peer_blocks(model, xt, model_spec(arch).block_names(), train))
            res.update({f"layer:{k}": v for k, v in blocks.items()})
        if impl == "pretrainedmodels":
            res = _renamed_to_ours(res, arch, config)
        save(out, res)
        return {"precision": self.info}

    def train(self, impl, arch, weights, config, input, labels, hyper, dtype, out):
        from .train import train_step

        t0 = time.perf_counter()
        ckpt = read_neutral(weights["neutral"])
        model = M.load_ours(weights["neutral"])
        load = time.perf_counter() - t0
        times = write_chunks(train_step(model, np.load(input), np.load(labels), hyper, dtype, self.info["device"],
                                        ckpt.tensors), out)
        return {"precision": self.info, "times": {"load": round(load, 3), **times}}

    def fast(self, impl, arch, weights, input, out):
        """Plain and fast-path logits of ``weights_bridge.inference``'s model, built once."""
        import torch

        from weights_bridge.inference import inference_model, optimized

        x = torch.from_numpy(np.load(input))
        plain = inference_model(read_neutral(weights["neutral"]), "torch", fast=False)
        with torch.no_grad():
            save(out, {"plain": plain(x).numpy(), "fast": optimized(plain, "torch")(x).numpy()})

    def seed(self, arch, out, seed=0, num_classes=None, aux_logits=True, variant="default", fmt=None):
        from .seed import save_seeded

        save_seeded(arch, out, seed, num_classes, aux_logits, variant, fmt, overwrite=True)

    def ddp(self, job):
        from .ddp import run_ddp

        return run_ddp(job)

    def bench(self, **job):
        from .bench import rows

        return {"rows": rows(job)}
