"""Eval throughput of our torch model (plain, fast, fast compiled) and of torchvision's and timm's
(plain, channels_last, channels_last + torch.compile), on one checkpoint for all three: their
state_dict keys are ours."""
from __future__ import annotations

from ..timing import images_per_second


def rows(job):
    import torch

    from weights_bridge.inference import inference_model, optimized

    from ..base import read_neutral

    arch, b, s, impl = job["arch"], job["batch"], job["size"], job["impl"]
    x = torch.randn(b, 3, s, s)
    ckpt = read_neutral(job["weights"]["neutral"])
    if impl == "torchvision":
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None, aux_logits=False, init_weights=False)
    elif impl == "timm":
        import timm

        model = timm.create_model(arch, pretrained=False)
    else:
        model = inference_model(ckpt, "torch", fast=False)
    if impl != "torch":
        from weights_bridge.inference import eval_checkpoint
        from weights_bridge.torch_io import state_dict

        model.load_state_dict(state_dict(eval_checkpoint(ckpt)), strict=True)
    model.eval()
    out = []
    for config in job["configs"]:
        m, xi = model, x
        if config.startswith("fast"):  # ours: BN folded, blocks merged, channels-last (impls/torch_nn/fast.py)
            if config == "fast+compile":  # compiles the folded model inside; no second torch.compile around it
                from impls.torch_nn.fast import optimize_for_inference

                m = optimize_for_inference(model, compile=True)
            else:
                m = optimized(model, "torch")
        else:  # the peers' configurations
            if "channels_last" in config:
                m, xi = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
            if "compile" in config:
                m = torch.compile(m)
        with torch.inference_mode():
            out.append({"impl": impl, "config": config,
                        "images_per_s": images_per_second(lambda: m(xi), job["warmup"], job["repeats"], b)})
    return out
