"""``ModelSpec``: everything a framework needs to build one model, and the forward pass's
control flow (stage order, aux-head taps, per-block capture), written once for all frameworks."""
from __future__ import annotations

import collections
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Dict, Optional, Tuple


@dataclass(frozen=True)
class ModelSpec:
    """``stages`` run in order; ``aux_heads`` maps a head's name to (the stage whose output feeds
    it, its node); ``output_fields`` gives the train-mode named tuple: (field, aux head name or
    None for the main logits), in the peer library's order. ``capture_children`` names Sequential
    stages whose steps per-block capture reports one by one as ``<stage>.<step>`` (Inception-v4's
    whole trunk is timm's one ``features`` Sequential)."""

    arch: str
    variant: str
    stages: Tuple[Tuple[str, Any], ...]
    aux_heads: Dict[str, Tuple[str, Any]]
    output_fields: Tuple[Tuple[str, Any], ...]
    transform_input: bool
    num_classes: int
    config: Any
    output_name: str = "Outputs"
    capture_children: Tuple[str, ...] = ()
    # A feature extractor (the FID Inception): (output field, stage whose output, averaged over
    # space, it is), and the Linear stage that closes the outputs with logits_unbiased and logits.
    features: Tuple[Tuple[str, str], ...] = ()
    classifier: str = ""
    features_name: str = "Features"

    @property
    def taps(self) -> Dict[str, str]:
        """stage name -> the aux head it feeds."""
        return {tap: head for head, (tap, _) in self.aux_heads.items()}

    def block_names(self):
        """What per-block capture reports, in forward order: each stage (or, for a stage in
        ``capture_children``, each of its steps), each aux head after the stage feeding it."""
        names = []
        for name, node in self.stages:
            if name in self.capture_children:
                names += [f"{name}.{step}" for step, _ in node.steps]
            else:
                names.append(name)
            if name in self.taps:
                names.append(self.taps[name])
        return names

    def forward(self, x, stage: Callable, head: Callable, training: bool, capture: Optional[dict] = None,
                step: Optional[Callable] = None):
        """Runs the trunk with a framework's callables: ``stage(name, x)`` one stage, ``head(name,
        x)`` one aux head (train mode only), ``step(name, index, x)`` one step of a stage named in
        ``capture_children`` (only when capturing, and only if given). ``capture`` receives every
        block's output under ``block_names()``. Returns (logits, {aux head: output})."""
        taps, aux = self.taps, {}
        for name, node in self.stages:
            if capture is not None and step is not None and name in self.capture_children:
                for i, (item, _) in enumerate(node.steps):
                    x = capture[f"{name}.{item}"] = step(name, i, x)
            else:
                x = stage(name, x)
                if capture is not None:
                    capture[name] = x
            if name in taps and training:
                aux[taps[name]] = head(taps[name], x)
                if capture is not None:
                    capture[taps[name]] = aux[taps[name]]
        return x, aux

    def forward_features(self, x, stage: Callable, spatial_mean: Callable, linear: Callable):
        """A feature extractor's forward (``features`` non-empty): the stages before
        ``classifier``, each tapped stage's output averaged over space (``spatial_mean``: a
        framework's mean over H and W, the identity on an already pooled N x C), then
        ``linear(classifier, x)`` -> (x W^T, x W^T + b): logits_unbiased and logits, computed
        as torch-fidelity does. Returns the ``features_type`` named tuple."""
        taps, out = {s: f for f, s in self.features}, {}
        for name, _ in self.stages:
            if name == self.classifier:
                break
            x = stage(name, x)
            if name in taps:
                out[taps[name]] = spatial_mean(x)
        unbiased, logits = linear(self.classifier, x)
        return self.features_type(*(out[f] for f, _ in self.features), unbiased, logits)

    @property
    def features_type(self):
        return _outputs_type(self.features_name, tuple(f for f, _ in self.features) + ("logits_unbiased", "logits"))

    @property
    def outputs_type(self):
        """The train-mode named tuple (one type per architecture, shared by all frameworks)."""
        return _outputs_type(self.output_name, tuple(f for f, _ in self.output_fields))

    def pack_outputs(self, logits, aux: Dict[str, Any]):
        """Train-mode outputs as the peer returns them: the named tuple when aux heads exist,
        the bare logits otherwise (torchvision's ``eager_outputs``)."""
        if not self.aux_heads:
            return logits
        return self.outputs_type(*[logits if head is None else aux[head] for _, head in self.output_fields])


@lru_cache(maxsize=None)
def _outputs_type(name, fields):
    return collections.namedtuple(name, fields)
