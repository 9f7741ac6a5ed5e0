"""Why do two implementations disagree? Flip one known convention at a time in our PyTorch
reference and see which flip makes it agree with the peer.

The conventions are the ones every Inception port trips on: BN eps, max-pool ``ceil_mode``,
average-pool ``count_include_pad``, TF/Keras 'same' padding at stride 2, LRN alpha scaling,
``transform_input``, RGB/BGR input and the 1001-class TF-slim head (class 0 = background).
Each switch is a small surgery on a copy of the torch model (or on its input or the peer's
output); the block where a switch first changes the activations is where it matters.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .capture import compare_blocks, torch_blocks
from .tolerances import TOLERANCES, within


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
)


@dataclass
class Trial:
    switch: str
    description: str
    max_abs: float
    max_rel: float
    agrees: bool
    first_block: Optional[str] = None  # where this switch first changes our activations


@dataclass
class Diagnosis:
    baseline_abs: float
    baseline_rel: float
    baseline_agrees: bool
    trials: list = field(default_factory=list)

    @property
    def culprits(self):
        return [t for t in self.trials if t.agrees]


def _logits(model, x):
    import torch

    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _distance(ours, peer):
    if peer is None or ours.shape != peer.shape:
        return float("inf"), float("inf"), False
    d = float(np.abs(ours.astype(np.float64) - peer).max())
    ref = float(np.abs(peer).max())
    return d, d / ref if ref else float("inf"), within(d, ref, "eval")


def diagnose(model, x: np.ndarray, peer_logits: np.ndarray, switches=SWITCHES) -> Diagnosis:
    """``model``: our torch model holding the checkpoint (eval mode); ``x``: the NCHW batch the
    peer saw; ``peer_logits``: the peer's output for it."""
    peer_logits = np.asarray(peer_logits, np.float64)
    base = _logits(model, x)
    d, r, ok = _distance(base, peer_logits)
    report = Diagnosis(d, r, ok)
    base_blocks = None
    block_rel = TOLERANCES[("float32", "block")]["rel"]
    for sw in switches:
        if not sw.applies(model):
            continue
        candidate = model
        if sw.model is not None:
            candidate = copy.deepcopy(model)
            sw.model(candidate)
        xs = sw.inputs(x) if sw.inputs else x
        ours = _logits(candidate, xs)
        peer = sw.peer(peer_logits) if sw.peer else peer_logits
        d, r, ok = _distance(ours, peer)
        trial = Trial(sw.name, sw.description, d, r, ok)
        if ok and sw.model is not None:
            import torch

            if base_blocks is None:
                base_blocks = torch_blocks(model, torch.from_numpy(x))
            _, trial.first_block = compare_blocks(base_blocks, torch_blocks(candidate, torch.from_numpy(xs)), block_rel)
            model.eval()
        report.trials.append(trial)
    return report


def format_report(rep: Diagnosis) -> str:
    lines = [f"baseline: max|Δ| {rep.baseline_abs:.2e}, relative {rep.baseline_rel:.2e} -> "
             + ("agrees: nothing to diagnose" if rep.baseline_agrees else "disagrees")]
    for t in rep.trials:
        mark = "AGREES" if t.agrees else "      "
        where = f" (first matters at {t.first_block})" if t.first_block else ""
        lines.append(f"  {mark} {t.switch:<18} relative {t.max_rel:.2e}  {t.description}{where}")
    if not rep.baseline_agrees:
        c = rep.culprits
        lines.append("verdict: " + (", ".join(t.switch for t in c) if c else
                                    "no single known convention explains the difference"))
    return "\n".join(lines)
