"""Why do two implementations disagree? Flip one known convention at a time in our PyTorch
reference and see which flip makes it agree with the peer.

The conventions are the ones every Inception port trips on: BN eps, max-pool ``ceil_mode``,
average-pool ``count_include_pad``, TF/Keras 'same' padding at stride 2, LRN alpha scaling,
``transform_input``, RGB/BGR input, the 1001-class TF-slim head (class 0 = background) and the
flatten order before GoogLeNet's aux fc1 (the only flatten of a map larger than 1x1 in the
family). Each switch is a small surgery on a copy of the torch model (or on its input or the
peer's output); the block where a switch first changes the activations is where it matters.

Outputs compared: the logits, plus each aux head the peer reports, run in eval mode on its
tap (BN on running statistics on both sides: train mode would normalise with batch statistics,
so both sides would have to run it; eval mode keeps the trunk's numbers and still exercises
the aux weights, which is where a flatten-order slip lives).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..compare.blocks import compare_blocks
from ..compare.tolerances import TOLERANCES, within
from ..frameworks.torch_nn.model import blocks as torch_blocks
from ..steps import Step


@dataclass(frozen=True)
class Switch:
    name: str
    description: str
    applies: Callable  # model -> bool: does the model have what this switch changes?
    model: Optional[Callable] = None  # in-place surgery on a deep copy
    inputs: Optional[Callable] = None  # x (NCHW numpy) -> x
    peer: Optional[Callable] = None  # peer logits -> logits comparable with ours


def _modules(model, kind):
    import torch

    return [m for m in model.modules() if isinstance(m, getattr(torch.nn, kind))]


def _set(kind, attr, value_fn):
    def surgery(model):
        for m in _modules(model, kind):
            setattr(m, attr, value_fn(m))

    return surgery


class _TFSamePad:
    """TF 'SAME' at stride s: out = ceil(in / s); total padding split with the extra pixel at the
    bottom/right (PyTorch pads symmetrically)."""

    def __init__(self, module, fill):
        self.module, self.fill = module, fill

    def __call__(self, mod, args):
        import torch.nn.functional as F

        x = args[0]
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return (F.pad(x, pads, value=self.fill),)

    @property
    def kernel(self):
        k = self.module.kernel_size
        return (k, k) if isinstance(k, int) else tuple(k)

    @property
    def stride(self):
        s = self.module.stride
        return (s, s) if isinstance(s, int) else tuple(s)


def _tf_same_padding(model):
    import torch

    for m in model.modules():
        stride = m.stride if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)) else None
        if stride is None or (stride if isinstance(stride, int) else max(stride)) < 2:
            continue
        fill = -math.inf if isinstance(m, torch.nn.MaxPool2d) else 0.0
        m.padding = 0 if not isinstance(m, torch.nn.Conv2d) else (0, 0)
        if isinstance(m, torch.nn.MaxPool2d):
            m.ceil_mode = False
        m.register_forward_pre_hook(_TFSamePad(m, fill))


def _aux_flatten_heads(model):
    """Aux heads whose FC follows a flatten of a map larger than 1x1 (GoogLeNet's 128x4x4)."""
    return [m for m in model.modules() if hasattr(m, "fc1") and hasattr(m, "conv")
            and m.fc1.in_features > m.conv.conv.out_channels]


def _hwc_flatten(model):
    """Makes aux fc1 see its input in (H, W, C) order: what an NHWC framework computes with
    weights laid out for PyTorch's (C, H, W) flatten, i.e. a converter that forgot to permute
    fc1's input dimension (either direction gives this function). Column j of an HWC flatten
    holds the CHW element ``perm[j]``, so fc1's column ``perm[j]`` takes the weight of column j."""
    import torch

    for head in _aux_flatten_heads(model):
        fc, channels = head.fc1, head.conv.conv.out_channels
        side = math.isqrt(fc.in_features // channels)
        perm = torch.arange(fc.in_features).view(channels, side, side).permute(1, 2, 0).reshape(-1)
        with torch.no_grad():
            weight = torch.empty_like(fc.weight)
            weight[:, perm] = fc.weight
            fc.weight.copy_(weight)


def _has_strided(model):
    import torch

    return any(getattr(m, "stride", 1) not in (1, (1, 1)) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d)))


SWITCHES = (
    Switch("bn_eps=1e-5", "BatchNorm eps 1e-5 (PyTorch's default) where the checkpoint expects 1e-3",
           lambda m: any(b.eps != 1e-5 for b in _modules(m, "BatchNorm2d")), _set("BatchNorm2d", "eps", lambda b: 1e-5)),
    Switch("bn_eps=1e-3", "BatchNorm eps 1e-3 (TF/Keras, Inception) where the model uses another",
           lambda m: any(b.eps != 1e-3 for b in _modules(m, "BatchNorm2d")), _set("BatchNorm2d", "eps", lambda b: 1e-3)),
    Switch("ceil_mode", "max pooling with ceil_mode flipped (torchvision GoogLeNet rounds up; Keras has no ceil_mode)",
           lambda m: bool(_modules(m, "MaxPool2d")), _set("MaxPool2d", "ceil_mode", lambda p: not p.ceil_mode)),
    Switch("count_include_pad", "average pooling with padding counted in the divisor flipped (torch counts, Keras does not)",
           lambda m: any(p.padding not in (0, (0, 0)) for p in _modules(m, "AvgPool2d")),
           _set("AvgPool2d", "count_include_pad", lambda p: not p.count_include_pad)),
    Switch("tf_same_padding", "TF/Keras 'same' padding at stride 2 (the extra pixel at the bottom/right)",
           _has_strided, _tf_same_padding),
    Switch("lrn_alpha_tf", "LRN alpha not divided by size (TF's local_response_normalization)",
           lambda m: bool(_modules(m, "LocalResponseNorm")), _set("LocalResponseNorm", "alpha", lambda n: n.alpha * n.size)),
    Switch("transform_input", "torchvision's transform_input flipped (input re-normalised to [-1, 1])",
           lambda m: hasattr(m, "transform_input"), lambda m: setattr(m, "transform_input", not m.transform_input)),
    Switch("bgr", "input channels in BGR order (Caffe) instead of RGB",
           lambda m: True, inputs=lambda x: np.ascontiguousarray(x[:, ::-1])),
    Switch("label_offset", "1001-class TF-slim head: class 0 is background, ImageNet classes start at 1",
           lambda m: True, peer=lambda logits: logits[:, 1:] if logits.shape[1] == 1001 else None),
    Switch("flatten_order", "aux fc1 fed an (H, W, C) flatten (NHWC) with weights laid out for PyTorch's (C, H, W)",
           lambda m: bool(_aux_flatten_heads(m)), _hwc_flatten),
)


@dataclass
class Trial:
    switch: str
    description: str
    max_abs: float
    max_rel: float
    agrees: bool
    first_block: Optional[str] = None  # where this switch first changes our activations
    output: str = "logits"  # the output furthest from the peer's


@dataclass
class Diagnosis:
    baseline_abs: float
    baseline_rel: float
    baseline_agrees: bool
    trials: list = field(default_factory=list)
    outputs: tuple = ("logits",)  # what was compared: the logits and the aux heads the peer gave
    baseline_output: str = "logits"
    silent: list = field(default_factory=list)  # switches that change none of the compared outputs

    @property
    def culprits(self):
        return [t for t in self.trials if t.agrees]


def _run(model, x, heads):
    """Every block's eval-mode activation (aux heads on their taps when asked) and the outputs."""
    import torch

    blocks = torch_blocks(model, torch.from_numpy(x), eval_aux=bool(heads))
    outputs = {"logits": blocks[model.spec.stages[-1][0]]}
    outputs.update({h: blocks[h] for h in heads})
    return blocks, outputs


def _distance(ours, peer):
    """(max_abs, max_rel, agrees, worst output) over the outputs the peer gave."""
    rows = []
    for name, p in peer.items():
        o = ours[name]
        if p is None or o.shape != p.shape:
            rows.append((float("inf"), float("inf"), False, name))
            continue
        d = float(np.abs(o.astype(np.float64) - p).max())
        ref = float(np.abs(p).max())
        rows.append((d, d / ref if ref else float("inf"), within(d, ref, "eval"), name))
    d, r, _, worst = max(rows, key=lambda row: (not row[2], row[1]))  # a failing output first
    return d, r, all(row[2] for row in rows), worst


def peer_outputs(model, peer):
    """The peer's outputs as {"logits", aux head, ...}: a bare array is its logits. Aux heads
    are named as our spec names them (GoogLeNet ``aux1``/``aux2``, Inception v3 ``AuxLogits``)."""
    peer = {"logits": peer} if not isinstance(peer, dict) else dict(peer)
    unknown = sorted(set(peer) - {"logits"} - set(model.spec.aux_heads))
    if "logits" not in peer or unknown:
        raise ValueError(f"peer outputs must be 'logits' plus any of our aux heads "
                         f"{list(model.spec.aux_heads) or '(none: this model has no aux heads)'}; found {sorted(peer)}")
    return {k: np.asarray(v, np.float64) for k, v in peer.items()}


def diagnose(model, x: np.ndarray, peer, switches=SWITCHES, progress=None) -> Diagnosis:
    """``model``: our torch model holding the checkpoint; ``x``: the NCHW batch the peer saw;
    ``peer``: the peer's logits for it, or {"logits": ..., aux head name: eval-mode output}.
    ``progress`` hears a ``steps.Step`` as each switch is tried and when it is done."""
    report_step = progress or (lambda step: None)
    peer = peer_outputs(model, peer)
    heads = [h for h in model.spec.aux_heads if h in peer]
    base_blocks, base = _run(model, x, heads)
    d, r, ok, worst = _distance(base, peer)
    report = Diagnosis(d, r, ok, outputs=tuple(peer), baseline_output=worst)
    block_rel = TOLERANCES[("float32", "block")]["rel"]
    for sw in switches:
        if not sw.applies(model):
            continue
        what, t0 = f"torch with {sw.name}", time.perf_counter()
        report_step(Step(what))
        candidate = model
        if sw.model is not None:
            candidate = copy.deepcopy(model)
            sw.model(candidate)
        xs = sw.inputs(x) if sw.inputs else x
        blocks, ours = _run(candidate, xs, heads)
        report_step(Step(what, time.perf_counter() - t0))
        if sw.model is not None and all(np.array_equal(ours[k], base[k]) for k in base):
            report.silent.append(sw.name)  # e.g. flatten_order when the peer gave no aux outputs
            continue
        target = {k: sw.peer(v) for k, v in peer.items()} if sw.peer else peer
        d, r, ok, worst = _distance(ours, target)
        trial = Trial(sw.name, sw.description, d, r, ok, output=worst)
        if ok and sw.model is not None:
            _, trial.first_block = compare_blocks(base_blocks, blocks, block_rel)
        report.trials.append(trial)
    return report


def format_report(rep: Diagnosis) -> str:
    lines = [f"compared: {', '.join(rep.outputs)} (eval mode)"]
    if rep.silent:
        lines[0] += (f"; not tried, they change none of these outputs: {', '.join(rep.silent)}"
                     + (" (give the peer's aux head outputs)" if "flatten_order" in rep.silent else ""))
    lines.append(f"baseline: max|Δ| {rep.baseline_abs:.2e}, relative {rep.baseline_rel:.2e} ({rep.baseline_output}) -> "
                 + ("agrees: nothing to diagnose" if rep.baseline_agrees else "disagrees"))
    for t in rep.trials:
        mark = "AGREES" if t.agrees else "      "
        where = f" (first matters at {t.first_block})" if t.first_block else ""
        lines.append(f"  {mark} {t.switch:<18} relative {t.max_rel:.2e} ({t.output})  {t.description}{where}")
    if not rep.baseline_agrees:
        c = rep.culprits
        lines.append("verdict: " + (", ".join(t.switch for t in c) if c else
                                    "no single known convention explains the difference"))
    return "\n".join(lines)
